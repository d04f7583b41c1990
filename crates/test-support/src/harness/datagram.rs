//! Pieces of the datagram tests (UDP, DNS, ICMP) over both address
//! families: a pump that hands each frame for the guest to a picker, a UDP
//! echo server and a DNS responder on loopback, and DNS queries.

use std::net::{SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use slipway::{Backend, FrameBackend};

/// Runs the backend until `want` picks a frame for the guest, for at most
/// `limit`.
pub fn pump_until<T>(
    backend: &mut Backend,
    limit: Duration,
    mut want: impl FnMut(&[u8]) -> Option<T>,
) -> Option<T> {
    let end = Instant::now() + limit;
    let mut buf = vec![0u8; 70_000];
    while Instant::now() < end {
        while let Some(len) = backend.poll_guest_frame(&mut buf, Instant::now()) {
            if let Some(found) = want(&buf[..len]) {
                return Some(found);
            }
        }
        backend
            .wait(Some(Instant::now() + Duration::from_millis(20)))
            .expect("the backend waits");
    }
    None
}

/// A UDP server bound to `bind` (a loopback address, port 0) that echoes
/// one datagram back to its sender within 5 s.
#[must_use]
pub fn udp_echo_server(bind: &str) -> (SocketAddr, JoinHandle<()>) {
    let sock = UdpSocket::bind(bind).expect("a loopback UDP socket");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout");
    let addr = sock.local_addr().expect("its address");
    let handle = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        if let Ok((n, peer)) = sock.recv_from(&mut buf) {
            sock.send_to(&buf[..n], peer).expect("the echo is sent");
        }
    });
    (addr, handle)
}

/// A DNS responder on 127.0.0.1 that answers one A query with 192.0.2.7
/// and returns the query it got.
#[must_use]
pub fn dns_responder() -> (SocketAddr, JoinHandle<Vec<u8>>) {
    dns_responder_at("127.0.0.1:0")
}

/// [`dns_responder`] bound to `bind`, a loopback address of either family
/// with port 0.
#[must_use]
pub fn dns_responder_at(bind: &str) -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let sock = UdpSocket::bind(bind).expect("a loopback UDP socket");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout");
    let addr = sock.local_addr().expect("its address");
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let (n, peer) = sock.recv_from(&mut buf).expect("a query within 5 s");
        let query = buf[..n].to_vec();
        let mut reply = query.clone();
        reply[2] = 0x81; // response, recursion desired
        reply[3] = 0x80; // recursion available
        reply[7] = 1; // one answer
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
        sock.send_to(&reply, peer).expect("the reply is sent");
        query
    });
    (addr, handle)
}

/// A DNS query with identifier `id` for the A record of `name`.
#[must_use]
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).expect("a label under 64 bytes"));
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}
