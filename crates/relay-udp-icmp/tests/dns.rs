//! DNS forwarding against a test responder on 127.0.0.1.
//!
//! The guest addresses below are only the keys the forwarder hands back
//! with each reply; nothing is ever sent to them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use relay_udp_icmp::dns::{POOL_SIZE, QUERIES_PER_SOCKET};
use relay_udp_icmp::{DnsForwarder, DnsForwarderConfig, DnsReply, DropReason, SendOutcome};

use common::{WAIT, wait_for, wait_readable};

/// The address every answer of the test responder carries.
const ANSWER: [u8; 4] = [127, 0, 0, 42];

fn guest(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 15), port))
}

/// A query for the A record of `name`, recursion desired.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The answer to `query`: its id and question, one A record of [`ANSWER`].
fn answer(query: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&query[..2]);
    r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    r.extend_from_slice(&query[12..]);
    r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    r.extend_from_slice(&ANSWER);
    r
}

/// The question name of a query or reply, as dotted text.
fn qname(msg: &[u8]) -> String {
    let mut labels = Vec::new();
    let mut i = 12;
    while msg[i] != 0 {
        let len = usize::from(msg[i]);
        labels.push(String::from_utf8_lossy(&msg[i + 1..=i + len]).into_owned());
        i += len + 1;
    }
    labels.join(".")
}

/// A responder on 127.0.0.1 that collects `count` queries (for at most
/// [`WAIT`]), reports their ids, then answers each with `reply(query)`,
/// last query first.
fn responder(
    count: usize,
    reply: fn(&[u8]) -> Vec<Vec<u8>>,
) -> (SocketAddr, mpsc::Receiver<Vec<u16>>, thread::JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let addr = sock.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 1500];
        for _ in 0..count {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                break;
            };
            got.push((buf[..n].to_vec(), from));
        }
        tx.send(
            got.iter()
                .map(|(q, _)| u16::from_be_bytes([q[0], q[1]]))
                .collect(),
        )
        .unwrap();
        for (q, from) in got.iter().rev() {
            for datagram in reply(q) {
                sock.send_to(&datagram, from).unwrap();
            }
        }
    });
    (addr, rx, handle)
}

/// Reads replies until `count` have come or [`WAIT`] has passed.
fn collect_replies(fwd: &mut DnsForwarder, count: usize) -> Vec<(DnsReply, Vec<u8>)> {
    let deadline = Instant::now() + WAIT;
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 65_535];
    while replies.len() < count && Instant::now() < deadline {
        wait_for(
            &*fwd,
            rustix::event::PollFlags::IN,
            Duration::from_millis(200),
        );
        while let Some(r) = fwd.recv_reply(&mut buf, Instant::now()).unwrap() {
            replies.push((r, buf[..r.len].to_vec()));
        }
    }
    replies
}

#[test]
fn same_id_from_two_guest_ports_gets_two_right_answers() {
    let (upstream, ids, handle) = responder(2, |q| vec![answer(q)]);
    let mut fwd = DnsForwarder::new(upstream, DnsForwarderConfig::default()).unwrap();
    assert_eq!(fwd.upstream(), upstream);
    let now = Instant::now();
    let qa = query(0x1234, "a.example.test");
    let qb = query(0x1234, "b.example.test");
    assert_eq!(
        fwd.forward_query(guest(40_000), &qa, now).unwrap(),
        SendOutcome::Sent(qa.len())
    );
    assert_eq!(
        fwd.forward_query(guest(40_001), &qb, now).unwrap(),
        SendOutcome::Sent(qb.len())
    );
    assert_eq!(fwd.pending(), 2);
    assert!(fwd.next_deadline().is_some_and(|d| d > now));

    let upstream_ids = ids.recv_timeout(WAIT).unwrap();
    assert_eq!(upstream_ids.len(), 2);
    assert_ne!(upstream_ids[0], upstream_ids[1], "upstream ids collide");

    let replies = collect_replies(&mut fwd, 2);
    handle.join().unwrap();
    assert_eq!(replies.len(), 2);
    for (reply, bytes) in &replies {
        assert_eq!(u16::from_be_bytes([bytes[0], bytes[1]]), 0x1234);
        let expected = if reply.guest == guest(40_000) {
            "a.example.test"
        } else {
            assert_eq!(reply.guest, guest(40_001));
            "b.example.test"
        };
        assert_eq!(qname(bytes), expected);
        assert_eq!(bytes[bytes.len() - 4..], ANSWER);
    }
    assert_ne!(replies[0].0.guest, replies[1].0.guest);
    assert_eq!(fwd.pending(), 0);
    assert_eq!(fwd.next_deadline(), None);
    assert_eq!(fwd.counters().to_host.datagrams, 2);
    assert_eq!(fwd.counters().to_guest.datagrams, 2);
    assert_eq!(fwd.counters().total_drops(), 0);
}

#[test]
fn malformed_queries_are_dropped_and_counted() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut fwd =
        DnsForwarder::new(silent.local_addr().unwrap(), DnsForwarderConfig::default()).unwrap();
    let now = Instant::now();
    let mut response = query(7, "x.test");
    response[2] |= 0x80;
    for bad in [&[][..], &[1, 2, 3, 4, 5][..], &[0u8; 11][..], &response[..]] {
        assert_eq!(
            fwd.forward_query(guest(5353), bad, now).unwrap(),
            SendOutcome::Dropped(DropReason::MalformedQuery)
        );
    }
    assert_eq!(fwd.counters().drops(DropReason::MalformedQuery), 4);
    let mut huge = query(8, "big.test");
    huge.resize(65_520, 0);
    assert_eq!(
        fwd.forward_query(guest(5353), &huge, now).unwrap(),
        SendOutcome::Dropped(DropReason::Oversize)
    );
    assert_eq!(fwd.counters().to_host.datagrams, 0);
    assert_eq!(fwd.pending(), 0);
    // Nothing reached the upstream.
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(silent.recv_from(&mut buf).is_err());
}

#[test]
fn bad_replies_are_dropped_and_the_good_one_relayed() {
    let (upstream, _ids, handle) = responder(1, |q| {
        let good = answer(q);
        let mut unmatched = good.clone();
        unmatched[0] ^= 0x55;
        let mut not_a_response = good.clone();
        not_a_response[2] &= 0x7f;
        vec![vec![1, 2, 3], unmatched, not_a_response, good]
    });
    let mut fwd = DnsForwarder::new(upstream, DnsForwarderConfig::default()).unwrap();
    let q = query(0xbeef, "good.test");
    fwd.forward_query(guest(1111), &q, Instant::now()).unwrap();
    let replies = collect_replies(&mut fwd, 1);
    handle.join().unwrap();
    assert_eq!(replies.len(), 1);
    let (reply, bytes) = &replies[0];
    assert_eq!(reply.guest, guest(1111));
    assert_eq!(bytes[..2], [0xbe, 0xef]);
    assert_eq!(qname(bytes), "good.test");
    let c = fwd.counters();
    assert_eq!(c.drops(DropReason::MalformedReply), 2);
    assert_eq!(c.drops(DropReason::UnmatchedReply), 1);
    assert_eq!(c.to_guest.datagrams, 1);
}

#[test]
fn unanswered_query_times_out_and_a_late_reply_is_unmatched() {
    let (upstream, _ids, handle) = responder(1, |q| vec![answer(q)]);
    let config = DnsForwarderConfig {
        query_timeout: Duration::from_secs(5),
        ..DnsForwarderConfig::default()
    };
    let mut fwd = DnsForwarder::new(upstream, config).unwrap();
    let t0 = Instant::now();
    fwd.forward_query(guest(2222), &query(1, "late.test"), t0)
        .unwrap();
    assert_eq!(fwd.next_deadline(), Some(t0 + Duration::from_secs(5)));
    assert_eq!(fwd.handle_timeouts(t0 + Duration::from_secs(4)), 0);
    handle.join().unwrap();
    wait_readable(&fwd);
    // On the virtual clock the reply comes after the timeout.
    let mut buf = [0u8; 512];
    let late = t0 + Duration::from_secs(5);
    assert_eq!(fwd.recv_reply(&mut buf, late).unwrap(), None);
    let c = fwd.counters();
    assert_eq!(c.drops(DropReason::TimedOut), 1);
    assert_eq!(c.drops(DropReason::UnmatchedReply), 1);
    assert_eq!(fwd.pending(), 0);
}

#[test]
fn full_table_evicts_the_oldest_query() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = DnsForwarderConfig {
        max_pending: 2,
        ..DnsForwarderConfig::default()
    };
    let mut fwd = DnsForwarder::new(silent.local_addr().unwrap(), config).unwrap();
    let now = Instant::now();
    for port in 1..=3 {
        let outcome = fwd
            .forward_query(guest(port), &query(9, "e.test"), now)
            .unwrap();
        assert!(matches!(outcome, SendOutcome::Sent(_)));
    }
    assert_eq!(fwd.pending(), 2);
    assert_eq!(fwd.counters().drops(DropReason::Evicted), 1);
    assert_eq!(fwd.counters().to_host.datagrams, 3);
}

#[test]
fn upstream_from_a_resolv_conf_line() {
    let (upstream, _ids, handle) = responder(1, |q| vec![answer(q)]);
    let text = "# test\nnameserver 127.0.0.1\n";
    let from_file = relay_udp_icmp::resolv_conf::first_nameserver_addr(text).unwrap();
    assert_eq!(from_file, "127.0.0.1:53".parse().unwrap());
    // The test responder cannot own port 53; keep the address, use its port.
    let addr = SocketAddr::new(from_file.ip(), upstream.port());
    let mut fwd = DnsForwarder::new(addr, DnsForwarderConfig::default()).unwrap();
    fwd.forward_query(guest(3333), &query(77, "rc.test"), Instant::now())
        .unwrap();
    let replies = collect_replies(&mut fwd, 1);
    handle.join().unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].1[..2], 77u16.to_be_bytes());
}

#[test]
fn refused_upstream_is_counted_not_fatal() {
    let closed = common::closed_port(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut fwd = DnsForwarder::new(closed, DnsForwarderConfig::default()).unwrap();
    let now = Instant::now();
    fwd.forward_query(guest(4444), &query(5, "refused.test"), now)
        .unwrap();
    // The pool's epoll set turns readable when a socket has an error.
    wait_readable(&fwd);
    let mut buf = [0u8; 512];
    assert_eq!(fwd.recv_reply(&mut buf, now).unwrap(), None);
    assert_eq!(fwd.counters().icmp_errors, 1);
    // The forwarder goes on: the next query is sent.
    let outcome = fwd.forward_query(guest(4444), &query(6, "again.test"), now);
    assert!(matches!(outcome.unwrap(), SendOutcome::Sent(_)));
    assert_eq!(fwd.pending(), 2);
}

/// The queries a silent upstream got, with the port each came from: up to
/// `count` of them, for at most [`WAIT`].
fn received(upstream: &UdpSocket, count: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    upstream.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1500];
    for _ in 0..count {
        let Ok((n, from)) = upstream.recv_from(&mut buf) else {
            break;
        };
        got.push((buf[..n].to_vec(), from));
    }
    got
}

#[test]
fn queries_leave_from_several_random_ports_and_replies_come_back() {
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut fwd = DnsForwarder::new(
        upstream.local_addr().unwrap(),
        DnsForwarderConfig::default(),
    )
    .unwrap();
    assert_eq!(fwd.open_sockets(), POOL_SIZE);
    let now = Instant::now();
    for i in 0..24u16 {
        let q = query(i, &format!("q{i}.pool.test"));
        assert!(matches!(
            fwd.forward_query(guest(6000 + i), &q, now).unwrap(),
            SendOutcome::Sent(_)
        ));
    }
    let got = received(&upstream, 24);
    assert_eq!(got.len(), 24);
    let ports: std::collections::HashSet<u16> = got.iter().map(|(_, from)| from.port()).collect();
    // 24 picks among 8 sockets: fewer than 3 ports is a fixed source port.
    assert!(ports.len() >= 3, "queries came from only {ports:?}");
    for port in &ports {
        assert!(fwd.local_ports().contains(port));
    }
    for (q, from) in &got {
        upstream.send_to(&answer(q), from).unwrap();
    }
    let replies = collect_replies(&mut fwd, 24);
    assert_eq!(replies.len(), 24);
    assert_eq!(fwd.pending(), 0);
    assert_eq!(
        fwd.next_deadline(),
        None,
        "an idle forwarder has no deadline"
    );
    assert_eq!(fwd.counters().total_drops(), 0);
}

#[test]
fn reply_on_the_wrong_socket_or_from_the_wrong_address_is_not_taken() {
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut fwd = DnsForwarder::new(
        upstream.local_addr().unwrap(),
        DnsForwarderConfig::default(),
    )
    .unwrap();
    let now = Instant::now();
    for i in 0..16u16 {
        fwd.forward_query(guest(7000 + i), &query(0x7000 + i, "spoof.test"), now)
            .unwrap();
    }
    let got = received(&upstream, 16);
    let (target, target_from) = &got[0];
    let other_port = got
        .iter()
        .map(|(_, from)| *from)
        .find(|from| from.port() != target_from.port())
        .expect("16 queries from one port");
    let genuine = answer(target);
    // The right id to another socket of the pool: dropped and counted, and
    // the query still waits for its real answer.
    upstream.send_to(&genuine, other_port).unwrap();
    // The right id to the right port from another address: a connected
    // socket never receives it.
    let spoofer = UdpSocket::bind("127.0.0.2:0").unwrap();
    spoofer.send_to(&genuine, target_from).unwrap();
    wait_readable(&fwd);
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + WAIT;
    while fwd.counters().drops(DropReason::WrongSocket) == 0 && Instant::now() < deadline {
        wait_for(
            &fwd,
            rustix::event::PollFlags::IN,
            Duration::from_millis(100),
        );
        assert_eq!(fwd.recv_reply(&mut buf, Instant::now()).unwrap(), None);
    }
    assert_eq!(fwd.counters().drops(DropReason::WrongSocket), 1);
    assert_eq!(fwd.pending(), 16);
    upstream.send_to(&genuine, target_from).unwrap();
    let replies = collect_replies(&mut fwd, 1);
    assert_eq!(replies.len(), 1, "only the genuine reply is relayed");
    assert_eq!(replies[0].0.guest, guest(7000));
    assert_eq!(fwd.counters().to_guest.datagrams, 1);
    assert_eq!(fwd.pending(), 15);
}

#[test]
fn sockets_are_replaced_and_the_pool_stays_bounded() {
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = DnsForwarderConfig {
        query_timeout: Duration::from_secs(5),
        ..DnsForwarderConfig::default()
    };
    let mut fwd = DnsForwarder::new(upstream.local_addr().unwrap(), config).unwrap();
    let t0 = Instant::now();
    let total = usize::try_from(QUERIES_PER_SOCKET).unwrap() * POOL_SIZE * 3;
    let mut ports = std::collections::HashSet::new();
    for i in 0..total {
        let id = u16::try_from(i).unwrap();
        fwd.forward_query(guest(8000), &query(id, "rotate.test"), t0)
            .unwrap();
        ports.extend(fwd.local_ports());
        assert!(
            fwd.open_sockets() <= 2 * POOL_SIZE,
            "{} sockets open after {i} queries",
            fwd.open_sockets()
        );
    }
    // Nothing answered: replaced sockets wait for their queries to time
    // out, and are closed when they do.
    assert!(ports.len() > POOL_SIZE, "no socket was replaced: {ports:?}");
    assert_eq!(fwd.pending(), total);
    fwd.handle_timeouts(t0 + Duration::from_secs(6));
    assert_eq!(fwd.pending(), 0);
    assert_eq!(fwd.open_sockets(), POOL_SIZE);
    // Sockets past their lifetime are replaced by the next query, answered
    // or not.
    let before: std::collections::HashSet<u16> = fwd.local_ports().into_iter().collect();
    let later = t0 + Duration::from_secs(60);
    for i in 0..64u16 {
        fwd.forward_query(guest(8001), &query(i, "later.test"), later)
            .unwrap();
    }
    let after: std::collections::HashSet<u16> = fwd.local_ports().into_iter().collect();
    assert!(
        after.difference(&before).count() > 0,
        "no socket replaced after its lifetime"
    );
    assert!(fwd.open_sockets() <= 2 * POOL_SIZE);
}
