//! The whole backend per frame: a guest TCP data segment of an established
//! flow goes in through `NetworkBackend::handle_guest_frame`, its payload is
//! written to a real loopback socket, and the ACK comes out of
//! `poll_guest_frame`; with 1, 100 and 10 000 flows open. The per-frame cost
//! must not grow with the number of flows.
//!
//! The server is on 127.0.0.1, reached through the gateway address. The
//! bench thread itself reads the measured flow's server end, between
//! samples and outside the timed part, so no second thread competes for
//! the CPU; the other flows sit established in the accept queues of
//! listeners nobody accepts on (each holds 128), so that 10 000 flows cost
//! 10 000 descriptors, not 20 000. The setup (handshakes) is untimed too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use divan::Bencher;
use flow_table::Protocol;
use nat_core::{Plan, Rules};
use slipway::{Backend, BackendConfig};
// `cargo xtask bench-compare` builds these benches against older trees too:
// the glob brings the frame methods' trait into scope by whatever name the
// measured tree gives it (`FrameBackend` now, `NetworkBackend` before).
#[allow(unused_imports)]
use slipway::*;

use common::{ACK, GATEWAY_IP, GUEST_IP, PSH, SYN, Seg, set_seq, tcp_view};

fn main() {
    divan::main();
}

/// Bytes of payload per segment: one Ethernet MSS.
const PAYLOAD: usize = 1460;
/// Flows per listener whose connections nobody accepts: std's backlog.
const PER_LISTENER: usize = 120;
/// SYNs sent before their handshakes are finished.
const SYN_BATCH: usize = 256;
/// Longest the setup or the reader waits.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The guest's initial sequence number on every flow.
const GUEST_ISN: u32 = 1_000;

/// A guest with `flows` established TCP flows through `backend`.
struct Guest {
    backend: Backend,
    gateway_mac: [u8; 6],
    buf: Vec<u8>,
    /// The backend's sequence number after its SYN, by guest port.
    peer_seq: HashMap<u16, u32>,
    _idle: Vec<TcpListener>,
}

impl Guest {
    fn new() -> Self {
        let mut config = BackendConfig::new(Plan::default(), Rules::default());
        config.new_tcp_per_second = 0;
        let gateway_mac = config.plan.gateway_mac().0;
        let buf = vec![0; usize::from(config.plan.mtu()) + 14];
        let backend = Backend::new(config, Instant::now()).expect("backend starts");
        Self {
            backend,
            gateway_mac,
            buf,
            peer_seq: HashMap::new(),
            _idle: Vec::new(),
        }
    }

    fn seg(&self, guest_port: u16, server_port: u16) -> Seg<'static> {
        Seg {
            gateway_mac: self.gateway_mac,
            src: SocketAddrV4::new(GUEST_IP, guest_port),
            dst: SocketAddrV4::new(GATEWAY_IP, server_port),
            seq: GUEST_ISN,
            ack: 0,
            flags: SYN,
            window: 65_535,
            mss: Some(1460),
            payload: &[],
        }
    }

    /// Opens flows from the given guest ports to 127.0.0.1:`server_port`,
    /// `SYN_BATCH` handshakes at a time.
    fn open(&mut self, ports: impl Iterator<Item = (u16, u16)>) {
        let ports: Vec<(u16, u16)> = ports.collect();
        for batch in ports.chunks(SYN_BATCH) {
            for &(guest_port, server_port) in batch {
                let syn = self.seg(guest_port, server_port).frame();
                self.backend.handle_guest_frame(&syn, Instant::now());
            }
            let deadline = Instant::now() + TIMEOUT;
            let mut pending: HashMap<u16, u16> = batch.iter().copied().collect();
            while !pending.is_empty() {
                assert!(Instant::now() < deadline, "handshakes did not finish");
                self.backend
                    .wait(Some(Instant::now() + Duration::from_millis(10)))
                    .unwrap();
                for _ in 0..4 * SYN_BATCH {
                    let Some(len) = self.backend.poll_guest_frame(&mut self.buf, Instant::now())
                    else {
                        break;
                    };
                    let Some(view) = tcp_view(&self.buf[..len]) else {
                        continue;
                    };
                    let port = view.dst.port();
                    let Some(server_port) = pending.get(&port).copied() else {
                        continue;
                    };
                    assert_eq!(view.flags & (SYN | ACK), SYN | ACK, "a SYN-ACK: {view:?}");
                    let ack = Seg {
                        seq: GUEST_ISN + 1,
                        ack: view.seq.wrapping_add(1),
                        flags: ACK,
                        mss: None,
                        ..self.seg(port, server_port)
                    };
                    self.backend
                        .handle_guest_frame(&ack.frame(), Instant::now());
                    self.peer_seq.insert(port, view.seq.wrapping_add(1));
                    pending.remove(&port);
                }
            }
        }
    }
}

/// The server end of the measured flow, taken from `listener`'s accept
/// queue, non-blocking.
fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true).unwrap();
                return stream;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("no connection from the backend: {e}"),
        }
    }
}

/// Reads what the server end has received so far; returns the count.
fn drain(stream: &mut TcpStream, buf: &mut [u8]) -> u64 {
    let mut total = 0u64;
    // Bounded: a sample writes far less than this many buffers.
    for _ in 0..1024 {
        match stream.read(buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("server read: {e}"),
        }
    }
    total
}

/// One guest data segment of `PAYLOAD` bytes in, its ACK out, on the first
/// of `flows` established flows.
#[divan::bench(args = [1, 100, 10_000], sample_count = 400, sample_size = 16)]
fn guest_data_segment(bencher: Bencher<'_, '_>, flows: usize) {
    let measured = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = measured.local_addr().unwrap().port();
    let mut guest = Guest::new();
    guest.open(std::iter::once((20_000, port)));
    let mut server = accept(&measured);
    let idle: Vec<TcpListener> = (0..(flows - 1).div_ceil(PER_LISTENER))
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let idle_ports: Vec<u16> = idle
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    guest.open((1..flows).map(|i| {
        let guest_port = 20_000 + u16::try_from(i).unwrap();
        (guest_port, idle_ports[(i - 1) / PER_LISTENER])
    }));
    guest._idle = idle;
    assert_eq!(guest.backend.open_flows(Protocol::Tcp) as usize, flows);

    let payload = vec![0x5a; PAYLOAD];
    let mut frame = Seg {
        seq: GUEST_ISN + 1,
        ack: guest.peer_seq[&20_000],
        flags: ACK | PSH,
        mss: None,
        payload: &payload,
        ..guest.seg(20_000, port)
    }
    .frame();
    let mut next = GUEST_ISN + 1;
    let mut stalls = 0u64;
    let mut received = 0u64;
    let mut server_buf = vec![0u8; 1 << 16];
    let Guest { backend, buf, .. } = &mut guest;
    // The server end is read between samples, outside the timed part: a
    // sample's few segments fit in its receive buffer.
    bencher
        .with_inputs(|| received += drain(&mut server, &mut server_buf))
        .bench_local_values(|()| {
            let now = Instant::now();
            set_seq(&mut frame, next);
            backend.handle_guest_frame(&frame, now);
            let before = next;
            while let Some(len) = backend.poll_guest_frame(buf, now) {
                if let Some(view) = tcp_view(&buf[..len]) {
                    if view.dst.port() == 20_000 && view.flags & ACK != 0 {
                        next = view.ack;
                    }
                }
            }
            if next == before {
                stalls += 1;
                backend.handle_host_events(now).unwrap();
            }
        });
    let sent = u64::from(next.wrapping_sub(GUEST_ISN + 1));
    drop(guest);
    server.set_nonblocking(false).unwrap();
    server.set_read_timeout(Some(TIMEOUT)).unwrap();
    received += drain(&mut server, &mut server_buf);
    assert_eq!(
        received % (1u64 << 32),
        sent,
        "the server got every acknowledged byte"
    );
    if stalls > 0 {
        eprintln!("backend/{flows}: {stalls} segments found the host socket full");
    }
}
