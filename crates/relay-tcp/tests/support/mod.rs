//! Shared by the socket and relay tests: real sockets on 127.0.0.1 only,
//! every wait bounded in time.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod guest;
pub mod harness;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use epoll_dispatch::{Events, Interest, Kind, Poller, Readiness, Token};
use relay_tcp::HostSocket;
use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};

/// The only address the tests use.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The longest any single wait in a test may take.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// The token the tests register host sockets under.
pub const SOCKET_TOKEN: Token = match Token::new(Kind(1), 0, 0) {
    Some(token) => token,
    None => Token::WAKER,
};

/// 64-bit FNV-1a, fed incrementally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv(u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn update(&mut self, data: &[u8]) {
        for byte in data {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn finish(self) -> u64 {
        self.0
    }

    pub fn of(data: &[u8]) -> u64 {
        let mut fnv = Fnv::new();
        fnv.update(data);
        fnv.finish()
    }
}

/// Deterministic pseudo-random bytes (splitmix64), so a misplaced byte shows.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Polls `done` every millisecond until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `sock` reports something for `interest`, at most
/// [`WAIT_LIMIT`].
pub fn wait_ready(sock: &HostSocket, interest: Interest) -> Option<Readiness> {
    let mut poller = Poller::new().unwrap();
    poller
        .register(sock.fd().unwrap(), SOCKET_TOKEN, interest)
        .unwrap();
    let mut events = Events::with_capacity(4);
    poller
        .wait(&mut events, Some(Instant::now() + WAIT_LIMIT))
        .unwrap();
    events.iter().next().map(|(_, readiness)| readiness)
}

/// A loopback port with no listener: bound, then closed again.
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
    listener.local_addr().unwrap()
}

/// A listener on 127.0.0.1 whose accepted sockets have `SO_RCVBUF` set to
/// `rcvbuf` from the start (set before `listen`, so the window scale of the
/// handshake already follows it).
pub fn listener_with_rcvbuf(rcvbuf: usize) -> TcpListener {
    let fd: OwnedFd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    sockopt::set_socket_recv_buffer_size(&fd, rcvbuf).unwrap();
    rustix::net::bind(&fd, &SocketAddr::from((LOOPBACK, 0))).unwrap();
    rustix::net::listen(&fd, 16).unwrap();
    TcpListener::from(fd)
}

/// Accepts one connection, waiting at most [`WAIT_LIMIT`].
pub fn accept_within(listener: &TcpListener) -> io::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let end = Instant::now() + WAIT_LIMIT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A `HostSocket` connected (through its own non-blocking connect) to a
/// plain `TcpStream` peer, both on 127.0.0.1. The peer has `TCP_NODELAY`,
/// so each of its writes is its own segment.
pub fn connected_pair() -> (HostSocket, TcpStream) {
    let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let mut sock = HostSocket::connect(listener.local_addr().unwrap()).unwrap();
    let peer = accept_within(&listener).unwrap();
    peer.set_nodelay(true).unwrap();
    peer.set_read_timeout(Some(WAIT_LIMIT)).unwrap();
    peer.set_write_timeout(Some(WAIT_LIMIT)).unwrap();
    let readiness = wait_ready(&sock, Interest::WRITABLE).expect("connect completes");
    assert!(readiness.is_writable());
    sock.take_connect_result().unwrap();
    (sock, peer)
}

/// Waits until `sock` has `n` bytes queued.
pub fn wait_queued(sock: &HostSocket, n: usize) {
    let reached = wait_until(WAIT_LIMIT, || sock.queued().unwrap() >= n);
    assert!(
        reached,
        "{} of {n} bytes queued",
        sock.queued().unwrap_or_default()
    );
}
