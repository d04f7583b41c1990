//! slipway's [`Backend`] driven by a loop of the caller's own, as an
//! embedder whose program already has an event loop drives it: the loop
//! sleeps in `poll(2)` on [`Served::host_fd`] until the backend's
//! [`Served::poll_timeout`], then lets the backend handle its host
//! events and timers and takes the frames it has for the guest.
//!
//! The guest is synthetic: one UDP datagram built with `smoltcp::wire` to
//! the gateway, 10.0.2.2, which the default rules map to the host's
//! loopback, where the example runs a UDP echo server on 127.0.0.1.
//!
//! ```text
//! cargo run -p slipway --example custom-loop
//! ```
//!
//! Exits non-zero unless the guest gets its payload back from the gateway
//! within ten seconds.

use std::error::Error;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use nat_core::{Plan, Rules};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use slipway::{Backend, BackendConfig, FrameBackend, Served};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

const PAYLOAD: &[u8] = b"hello from a guest through a custom loop";
const GUEST_PORT: u16 = 40000;
const TIME_LIMIT: Duration = Duration::from_secs(10);
/// Rounds of the loop at most; a handful are enough.
const MAX_ROUNDS: usize = 1000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            println!("custom-loop: OK, the datagram came back from 10.0.2.2");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("custom-loop: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let port = udp_echo_server()?;
    let plan = Plan::default();
    let start = Instant::now();
    let mut backend = Backend::new(BackendConfig::new(plan, Rules::default()), start)?;
    let frame = guest_udp_frame(&plan, port)?;
    let gateway = plan.ipv4().ok_or("the plan has no IPv4")?.gateway();
    backend.handle_guest_frame(&frame, start);

    let mut buf = vec![0u8; usize::from(plan.mtu()) + 14];
    for _ in 0..MAX_ROUNDS {
        let now = Instant::now();
        // Every frame the backend has for the guest, until it has none.
        for _ in 0..MAX_ROUNDS {
            let Some(len) = backend.poll_guest_frame(&mut buf, now) else {
                break;
            };
            if let Some(payload) = udp_reply_payload(gateway, &buf[..len], port) {
                if payload != PAYLOAD {
                    return Err(format!("the guest got {payload:?} back").into());
                }
                return Ok(());
            }
        }
        let end = start + TIME_LIMIT;
        if now >= end {
            return Err("no reply within the time limit".into());
        }
        // Sleep until a host socket is ready or the backend's next deadline.
        let wake = backend
            .poll_timeout()
            .map_or(end, |deadline| deadline.min(end));
        let timeout = Timespec::try_from(wake.saturating_duration_since(now))?;
        let mut fds = [PollFd::from_borrowed_fd(backend.host_fd(), PollFlags::IN)];
        poll(&mut fds, Some(&timeout))?;
        let now = Instant::now();
        backend.handle_host_events(now)?;
        if backend
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            backend.handle_timeout(now);
        }
    }
    Err("the loop ran out of rounds".into())
}

/// A UDP server on 127.0.0.1 that echoes one datagram; returns its port.
fn udp_echo_server() -> std::io::Result<u16> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    socket.set_read_timeout(Some(TIME_LIMIT))?;
    let port = socket.local_addr()?.port();
    thread::spawn(move || {
        let mut buf = [0u8; 1500];
        if let Ok((len, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..len], from);
        }
    });
    Ok(port)
}

/// The guest's frame: a UDP datagram from its address to the gateway's
/// `port`, sent to the gateway's MAC address.
fn guest_udp_frame(plan: &Plan, port: u16) -> Result<Vec<u8>, Box<dyn Error>> {
    let v4 = plan.ipv4().ok_or("the plan has no IPv4")?;
    let (guest, gateway) = (v4.guest(), v4.gateway());
    let udp = UdpRepr {
        src_port: GUEST_PORT,
        dst_port: port,
    };
    let ip = Ipv4Repr {
        src_addr: guest,
        dst_addr: gateway,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + PAYLOAD.len(),
        hop_limit: 64,
    };
    let mut frame = vec![0u8; 14 + ip.buffer_len() + ip.payload_len];
    let mut eth = EthernetFrame::new_checked(&mut frame[..])?;
    EthernetRepr {
        src_addr: EthernetAddress(plan.guest_mac().0),
        dst_addr: EthernetAddress(plan.gateway_mac().0),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let checksums = ChecksumCapabilities::default();
    let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut packet, &checksums);
    let (src, dst) = (IpAddress::Ipv4(guest), IpAddress::Ipv4(gateway));
    let mut datagram = UdpPacket::new_unchecked(packet.payload_mut());
    udp.emit(
        &mut datagram,
        &src,
        &dst,
        PAYLOAD.len(),
        |p| p.copy_from_slice(PAYLOAD),
        &checksums,
    );
    Ok(frame)
}

/// The payload of `frame` if it is the gateway's UDP reply from `port` to
/// the guest's port, its checksums checked.
fn udp_reply_payload(gateway: Ipv4Addr, frame: &[u8], port: u16) -> Option<&[u8]> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let packet = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let from_gateway = packet.src_addr() == gateway;
    if !packet.verify_checksum() || !from_gateway || packet.next_header() != IpProtocol::Udp {
        return None;
    }
    let (src, dst) = (packet.src_addr().into(), packet.dst_addr().into());
    let datagram = UdpPacket::new_checked(packet.payload()).ok()?;
    let ours = datagram.src_port() == port && datagram.dst_port() == GUEST_PORT;
    (ours && datagram.verify_checksum(&src, &dst)).then(|| datagram.payload())
}
