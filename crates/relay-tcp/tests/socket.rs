//! `HostSocket` and `Listener` against real sockets on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{self, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use epoll_dispatch::{Events, Interest, Poller};
use flow_table::tcp::HostWriter;
use relay_tcp::{HostSocket, Listener, PeekMethod, peek_offset_supported};
use rustix::net::sockopt;
use support::{LOOPBACK, SOCKET_TOKEN, WAIT_LIMIT, connected_pair, pattern, wait_queued};

/// The peek methods this kernel can run, saying on stderr which it skips.
fn peek_methods() -> Vec<PeekMethod> {
    if peek_offset_supported() {
        vec![PeekMethod::PeekOffset, PeekMethod::Prefix]
    } else {
        eprintln!("skipping PeekMethod::PeekOffset: this kernel has no SO_PEEK_OFF for TCP");
        vec![PeekMethod::Prefix]
    }
}

/// A pair whose peer sent `data` in segments of `chunk` bytes, all queued.
fn pair_with_queued(method: PeekMethod, data: &[u8], chunk: usize) -> (HostSocket, TcpStream) {
    let (sock, mut peer) = connected_pair();
    let sock = sock.with_peek_method(method).unwrap();
    assert_eq!(sock.peek_method(), method);
    for part in data.chunks(chunk) {
        peer.write_all(part).unwrap();
    }
    wait_queued(&sock, data.len());
    (sock, peer)
}

#[test]
fn peek_offset_probe_result_is_reported_and_chosen_by_default() {
    let supported = peek_offset_supported();
    eprintln!("SO_PEEK_OFF on TCP sockets, probed on this kernel: {supported}");
    let (sock, _peer) = connected_pair();
    let expected = if supported {
        PeekMethod::PeekOffset
    } else {
        PeekMethod::Prefix
    };
    assert_eq!(sock.peek_method(), expected);
    let forced = sock.with_peek_method(PeekMethod::PeekOffset);
    assert_eq!(forced.is_ok(), supported);
    if let Err(e) = forced {
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }
}

#[test]
fn peek_at_offsets_returns_the_queued_bytes_with_each_method() {
    let data = pattern(1, 60_000);
    for method in peek_methods() {
        let (mut sock, _peer) = pair_with_queued(method, &data, 7000);
        let ranges = [
            (0, 1),
            (0, 100),
            (1, 6999),
            (6999, 2),
            (7000, 7000),
            (14_000, 7000),
            (12_345, 20_000),
            (3, 10),
            (59_999, 1),
            (0, 60_000),
            (30_000, 30_000),
            (30_000, 30_000),
        ];
        let mut buf = vec![0; 60_000];
        for (offset, len) in ranges {
            let n = sock.peek(offset, &mut buf[..len]).unwrap();
            assert_eq!(n, len, "{method:?} peek of {len} at {offset}");
            assert!(
                buf[..len] == data[offset..offset + len],
                "{method:?} bytes at {offset}"
            );
        }
        let beyond = sock.peek(60_000, &mut buf[..10]).unwrap_err();
        assert_eq!(beyond.kind(), io::ErrorKind::WouldBlock, "{method:?}");
        assert_eq!(sock.queued().unwrap(), 60_000, "peeks remove nothing");
    }
}

#[test]
fn vectored_peek_fills_each_buffer_in_order() {
    let data = pattern(2, 30_000);
    for method in peek_methods() {
        let (mut sock, _peer) = pair_with_queued(method, &data, 4000);
        let (mut a, mut b, mut c) = (vec![0; 1000], vec![0; 3], vec![0; 5000]);
        let mut bufs = [
            IoSliceMut::new(&mut a),
            IoSliceMut::new(&mut b),
            IoSliceMut::new(&mut c),
        ];
        let n = sock.peek_vectored(5555, &mut bufs).unwrap();
        assert_eq!(n, 6003, "{method:?}");
        assert!(a[..] == data[5555..6555], "{method:?}");
        assert!(b[..] == data[6555..6558], "{method:?}");
        assert!(c[..] == data[6558..11_558], "{method:?}");
        // A short queue fills what it can.
        let mut tail = vec![0; 100];
        let mut bufs = [IoSliceMut::new(&mut tail)];
        assert_eq!(sock.peek_vectored(29_950, &mut bufs).unwrap(), 50);
        assert!(tail[..50] == data[29_950..]);
    }
}

#[test]
fn peeks_follow_the_queue_head_as_bytes_are_consumed() {
    let data = pattern(3, 50_000);
    for method in peek_methods() {
        let (mut sock, _peer) = pair_with_queued(method, &data, 5000);
        let mut buf = [0; 10];
        let mut head = 0;
        // Sequential peeks, then a consume, then a peek at the offset the
        // kernel's own peek offset has moved to: the cached offset path.
        for (peek_at, consume) in [(5000, 3000), (2010, 2010), (0, 7), (40_000, 1)] {
            sock.peek(peek_at, &mut buf).unwrap();
            assert!(buf[..] == data[head + peek_at..head + peek_at + 10]);
            assert_eq!(sock.consume(consume).unwrap(), consume);
            head += consume;
            let at = peek_at + 10 - consume.min(peek_at + 10);
            sock.peek(at, &mut buf).unwrap();
            assert!(
                buf[..] == data[head + at..head + at + 10],
                "{method:?} after consuming to {head}"
            );
        }
    }
}

#[test]
fn consume_removes_exactly_n_bytes() {
    let data = pattern(4, 10_000);
    let (mut sock, mut peer) = pair_with_queued(PeekMethod::Prefix, &data, 3000);
    assert_eq!(sock.consume(4000).unwrap(), 4000);
    assert_eq!(sock.queued().unwrap(), 6000);
    let mut buf = [0; 16];
    sock.peek(0, &mut buf).unwrap();
    assert!(buf[..] == data[4000..4016]);
    assert_eq!(sock.consume(1).unwrap(), 1);
    assert_eq!(sock.queued().unwrap(), 5999);
    // Only what is queued can go.
    assert_eq!(sock.consume(10_000).unwrap(), 5999);
    assert_eq!(sock.queued().unwrap(), 0);
    assert_eq!(sock.consume(5).unwrap(), 0);
    peer.write_all(b"more").unwrap();
    wait_queued(&sock, 4);
    assert_eq!(sock.consume(3).unwrap(), 3);
    sock.peek(0, &mut buf[..1]).unwrap();
    assert_eq!(&buf[..1], b"e");
}

#[test]
fn send_space_shrinks_while_the_peer_does_not_read_and_grows_when_it_does() {
    let (mut sock, mut peer) = connected_pair();
    // A fixed send buffer: autotuning would move the baseline.
    sockopt::set_socket_send_buffer_size(sock.fd().unwrap(), 64 * 1024).unwrap();
    let initial = sock.send_space().unwrap();
    assert!(initial > 0);
    let chunk = vec![0x5a; 16 * 1024];
    let mut written = 0;
    for _ in 0..10_000 {
        match sock.write(&chunk).unwrap() {
            0 => break,
            n => written += n,
        }
    }
    let full = sock.send_space().unwrap();
    eprintln!("send space {initial} -> {full} after {written} unread bytes");
    assert!(full < initial, "{full} < {initial}");
    let mut sink = vec![0; 64 * 1024];
    let mut read = 0;
    while read < written {
        let n = peer.read(&mut sink).unwrap();
        assert!(n > 0, "peer sees end of stream after {read} bytes");
        read += n;
    }
    let grew = support::wait_until(WAIT_LIMIT, || sock.send_space().unwrap() == initial);
    assert!(grew, "send space back to {initial}");
}

#[test]
fn reset_makes_the_peer_see_econnreset() {
    let (mut sock, mut peer) = connected_pair();
    sock.reset().unwrap();
    assert!(!sock.is_open() && sock.fd().is_none());
    assert_eq!(
        sock.queued().unwrap_err().kind(),
        io::ErrorKind::NotConnected
    );
    let error = peer.read(&mut [0; 16]).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
}

#[test]
fn shutdown_write_makes_the_peer_read_eof_and_keeps_the_other_direction() {
    let (mut sock, mut peer) = connected_pair();
    assert_eq!(sock.write(b"hello").unwrap(), 5);
    sock.shutdown_write().unwrap();
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hello");
    peer.write_all(b"back").unwrap();
    wait_queued(&sock, 4);
    let mut buf = [0; 4];
    assert_eq!(sock.peek(0, &mut buf).unwrap(), 4);
    assert_eq!(&buf, b"back");
}

#[test]
fn close_makes_the_peer_read_eof() {
    let (mut sock, mut peer) = connected_pair();
    assert_eq!(sock.write(b"bye").unwrap(), 3);
    sock.close();
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye");
}

#[test]
fn write_after_the_peer_reset_is_a_host_reset() {
    let (mut sock, peer) = connected_pair();
    sockopt::set_socket_linger(&peer, Some(Duration::ZERO)).unwrap();
    drop(peer);
    let readiness = support::wait_ready(&sock, Interest::READABLE).unwrap();
    assert!(readiness.is_error() || readiness.is_hangup());
    let error = sock.write(b"late").unwrap_err();
    assert_eq!(error, flow_table::tcp::HostError::Reset);
}

#[test]
fn connect_to_a_closed_port_is_refused_after_epollout() {
    let mut sock = HostSocket::connect(support::closed_port()).unwrap();
    let readiness = support::wait_ready(&sock, Interest::WRITABLE).expect("connect ends");
    assert!(readiness.is_writable() || readiness.is_error());
    let error = sock.take_connect_result().unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn connect_result_is_would_block_while_in_progress_and_ok_once_up() {
    let listener = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
    let mut sock = HostSocket::connect(listener.local_addr().unwrap()).unwrap();
    let readiness = support::wait_ready(&sock, Interest::WRITABLE).unwrap();
    assert!(readiness.is_writable() && !readiness.is_error());
    sock.take_connect_result().unwrap();
    assert_eq!(
        sock.peer_addr().unwrap(),
        listener.local_addr().unwrap(),
        "connected to the listener"
    );
    assert!(sock.local_addr().unwrap().ip().is_loopback());
}

#[test]
fn listener_accepts_with_the_peer_address() {
    let listener = Listener::bind(SocketAddr::from((LOOPBACK, 0))).unwrap();
    assert!(listener.accept().unwrap().is_none(), "nothing pending yet");
    let client = TcpStream::connect(listener.local_addr()).unwrap();
    let mut poller = Poller::new().unwrap();
    poller
        .register(listener.fd(), SOCKET_TOKEN, Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(1);
    poller
        .wait(&mut events, Some(Instant::now() + WAIT_LIMIT))
        .unwrap();
    let (mut sock, peer) = listener.accept().unwrap().expect("a connection");
    assert_eq!(peer, client.local_addr().unwrap());
    assert_eq!(sock.peer_addr().unwrap(), peer);
    let mut client = client;
    client.write_all(b"x").unwrap();
    wait_queued(&sock, 1);
    assert_eq!(sock.consume(1).unwrap(), 1);
}

#[test]
fn bind_error_names_the_address() {
    let first = Listener::bind(SocketAddr::from((LOOPBACK, 0))).unwrap();
    let addr = first.local_addr();
    let error = Listener::bind(addr).unwrap_err();
    assert_eq!(error.addr, addr);
    assert_eq!(error.source.kind(), io::ErrorKind::AddrInUse);
    let message = error.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
}

/// A peek of the whole payload named by a segment, as the backend does it.
fn fill(sock: &mut HostSocket, offset: usize, len: usize) -> io::Result<Vec<u8>> {
    use flow_table::tcp::{Flags, PeekRange, SeqNum, Transmit};
    let transmit = Transmit {
        seq: SeqNum::new(0),
        ack: None,
        flags: Flags::default(),
        window: 0,
        mss: None,
        window_scale: None,
        payload: Some(PeekRange { offset, len }),
    };
    let mut buf = vec![0u8; len];
    let n = relay_tcp::fill_transmit_payload(sock, &transmit, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// A host peer's urgent byte stays in the stream (`SO_OOBINLINE`), counted
/// by the queue length; a peek across the mark goes on past it where the
/// kernel lets it (with a peek offset), and on the fallback comes short,
/// never wrong, until the bytes before the mark are consumed.
#[test]
fn urgent_byte_is_queued_inline_and_a_peek_across_the_mark_goes_on() {
    let head = pattern(41, 1000);
    let tail = pattern(42, 1000);
    let mut all = head.clone();
    all.push(b'!');
    all.extend_from_slice(&tail);
    for method in peek_methods() {
        let (mut sock, mut peer) = connected_pair();
        sock = sock.with_peek_method(method).unwrap();
        peer.write_all(&head).unwrap();
        let sent = rustix::net::send(&peer, b"!", rustix::net::SendFlags::OOB).unwrap();
        assert_eq!(sent, 1);
        peer.write_all(&tail).unwrap();
        wait_queued(&sock, all.len());
        assert_eq!(sock.queued().unwrap(), all.len(), "{method:?}: inline");

        let got = fill(&mut sock, 0, all.len()).unwrap();
        match method {
            PeekMethod::PeekOffset => assert_eq!(got, all, "{method:?}: past the mark"),
            PeekMethod::Prefix => {
                assert!(!got.is_empty() && got.len() <= all.len(), "{method:?}");
                assert_eq!(got, all[..got.len()], "{method:?}: a true prefix");
            }
        }
        assert_eq!(sock.consume(head.len()).unwrap(), head.len());
        let rest = fill(&mut sock, 0, all.len() - head.len()).unwrap();
        assert_eq!(rest, all[head.len()..], "{method:?}: from the mark on");
        assert_eq!(sock.consume(rest.len()).unwrap(), rest.len());
        assert_eq!(sock.queued().unwrap(), 0);
    }
}

/// The room `send_room` names as the writable point is one the kernel
/// reaches: when the socket first reports writable again after its buffer
/// filled, at least that much is free, so a flow waiting for that much
/// space never waits on an event that is true all along.
#[test]
fn socket_reports_writable_once_the_room_it_names_is_free() {
    let (mut sock, mut peer) = connected_pair();
    let empty = sock.send_room().unwrap();
    eprintln!("send room of an idle socket: {empty:?}");
    assert!(empty.writable_at > 0 && empty.writable_at < empty.free);

    let chunk = vec![0x5a; 16 * 1024];
    for _ in 0..100_000 {
        if sock.write(&chunk).unwrap() == 0 {
            break;
        }
    }
    let mut poller = Poller::new().unwrap();
    let fd = sock.fd().unwrap();
    poller
        .register(fd, SOCKET_TOKEN, Interest::WRITABLE)
        .unwrap();
    let mut events = Events::with_capacity(4);
    let mut sink = vec![0; 4096];
    let end = Instant::now() + WAIT_LIMIT;
    let mut writable = false;
    while Instant::now() < end {
        poller.wait(&mut events, Some(Instant::now())).unwrap();
        if events.iter().any(|(_, readiness)| readiness.is_writable()) {
            writable = true;
            break;
        }
        let n = peer.read(&mut sink).unwrap();
        assert!(n > 0, "end of stream");
    }
    assert!(writable, "writable again once the peer read");
    let room = sock.send_room().unwrap();
    eprintln!("send room when writable again: {room:?}");
    assert!(
        room.free >= room.writable_at,
        "writable with {} free, below the {} named",
        room.free,
        room.writable_at
    );
}
