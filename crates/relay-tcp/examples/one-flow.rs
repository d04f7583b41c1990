//! One TCP flow from a guest to an echo server on host loopback, carried by
//! `flow-table`'s state machine and `relay-tcp`'s [`TcpFlowDriver`] on a
//! real host socket, with the relay loop written out here: the example
//! plays a tiny guest (it builds its SYN and data segments as
//! `flow_table::tcp::Segment`s, as a frontend would after parsing a frame),
//! and an `epoll-dispatch` poller tells the driver when its socket is ready.
//!
//! ```text
//! cargo run -p relay-tcp --example one-flow
//! ```
//!
//! Exits non-zero unless the server received the guest's bytes and the
//! guest got them echoed back, within ten seconds.

use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::ExitCode;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use epoll_dispatch::{Events, Kind, Poller, Token};
use flow_table::tcp::{Flags, Segment, SeqNum, TcpConfig};
use relay_tcp::{HostSocket, Registration, TcpFlowDriver};

const MESSAGE: &[u8] = b"one flow through slipway's TCP relay";
const TIME_LIMIT: Duration = Duration::from_secs(10);
/// Rounds of the loop at most; a handful are enough.
const MAX_ROUNDS: usize = 1000;
/// Room in front of each payload for the Ethernet, IPv4 and TCP headers a
/// frontend writes around it (not written here).
const HEADROOM: usize = 54;
const GUEST_ISN: u32 = 1000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            println!("one-flow: OK, {} bytes there and back", MESSAGE.len());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("one-flow: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let (server_addr, server) = echo_server()?;
    let start = Instant::now();
    let mut flow = open_flow(server_addr, start)?;
    let mut poller = Poller::new()?;
    let mut events = Events::with_capacity(8);
    let token = Token::new(Kind(1), 0, 0).ok_or("flow index out of range")?;
    let mut frame = vec![0u8; 65536];
    let (end, mut guest_seq) = (start + TIME_LIMIT, SeqNum::new(GUEST_ISN + 1));
    let (mut unsent, mut echoed) = (MESSAGE, Vec::new());
    for _ in 0..MAX_ROUNDS {
        let now = Instant::now();
        if now > end {
            return Err("timed out".into());
        }
        let step = flow.step(now, |fd, change| match change {
            Registration::Add(interest) => poller.register(fd, token, interest),
            Registration::Modify(interest) => poller.modify(fd, token, interest),
        });
        // The guest answers the SYN-ACK with an ACK carrying its message,
        // and acknowledges every echoed byte.
        let acks = guest_reads(&mut flow, now, &mut frame, &mut echoed)?;
        for &ack in &acks {
            let (seq, data) = (guest_seq, std::mem::take(&mut unsent));
            let segment = Segment {
                seq,
                ack: Some(ack),
                window: 65535,
                ..Segment::default()
            };
            let _ = flow.handle_guest_segment(now, &segment, data);
            guest_seq = seq + u32::try_from(data.len())?;
        }
        if echoed.len() >= MESSAGE.len() {
            break;
        }
        if acks.is_empty() {
            // Sleep until the socket is ready or the flow's deadline passes.
            poller.wait(&mut events, Some(step.deadline.map_or(end, |d| d.min(end))))?;
            for (_, readiness) in events.iter() {
                let _ = flow.handle_readiness(readiness.into(), Instant::now());
            }
            if step.deadline.is_some_and(|d| Instant::now() >= d) {
                flow.handle_timeout(Instant::now());
            }
        }
    }
    let received = server.join().map_err(|_| "the server panicked")??;
    if received != MESSAGE || echoed != MESSAGE {
        return Err(format!("the server received {received:?}, the guest got {echoed:?}").into());
    }
    Ok(())
}

/// The flow a guest's SYN opens: the host `connect()` is under way.
fn open_flow(server: SocketAddr, now: Instant) -> io::Result<TcpFlowDriver> {
    let syn = Segment {
        seq: SeqNum::new(GUEST_ISN),
        flags: Flags {
            syn: true,
            ..Flags::default()
        },
        window: 65535,
        mss: Some(1460),
        ..Segment::default()
    };
    let socket = HostSocket::connect(server)?;
    Ok(TcpFlowDriver::for_guest_syn(
        &syn,
        SeqNum::new(1),
        TcpConfig::default(),
        socket,
        now,
    ))
}

/// The guest reads every segment the flow has for it, keeping the payload
/// in `echoed`, and returns the acknowledgement number each one calls for.
fn guest_reads(
    flow: &mut TcpFlowDriver,
    now: Instant,
    frame: &mut [u8],
    echoed: &mut Vec<u8>,
) -> Result<Vec<SeqNum>, Box<dyn Error>> {
    let mut acks = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let Some((transmit, len)) = flow.poll_transmit(now, frame, |_| Some(HEADROOM)) else {
            break;
        };
        if transmit.flags.rst {
            return Err("the flow was reset".into());
        }
        echoed.extend_from_slice(frame.get(HEADROOM..HEADROOM + len).ok_or("payload")?);
        acks.push(transmit.seq + u32::try_from(len)? + u32::from(transmit.flags.syn));
    }
    Ok(acks)
}

/// A server on 127.0.0.1 that echoes one connection's first
/// `MESSAGE.len()` bytes and returns them.
fn echo_server() -> io::Result<(SocketAddr, JoinHandle<io::Result<Vec<u8>>>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(TIME_LIMIT))?;
        let mut received = vec![0; MESSAGE.len()];
        conn.read_exact(&mut received)?;
        conn.write_all(&received)?;
        Ok(received)
    });
    Ok((addr, server))
}
