//! UDP flows and port forwards against real sockets on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::thread;

use relay_udp_icmp::{
    DropReason, ErrorOrigin, MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6, SendOutcome, Traffic,
    UdpFlowSocket, UdpListener,
};

use common::{WAIT, closed_port, ipv6_loopback_available, wait_error, wait_readable};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A server on `ip` that echoes `count` datagrams back to their senders,
/// then exits; it gives up after [`WAIT`] without traffic.
fn echo_server(ip: IpAddr, count: usize) -> (SocketAddr, thread::JoinHandle<usize>) {
    let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let addr = sock.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut echoed = 0;
        for _ in 0..count {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                break;
            };
            sock.send_to(&buf[..n], peer).unwrap();
            echoed += 1;
        }
        echoed
    });
    (addr, handle)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn round_trip(ip: IpAddr, len: usize) {
    let (server, handle) = echo_server(ip, 1);
    let mut flow = UdpFlowSocket::connect(server).unwrap();
    assert_eq!(flow.peer_addr(), server);
    assert_eq!(flow.local_addr().unwrap().ip(), ip);
    let payload = pattern(len);
    assert_eq!(flow.send(&payload).unwrap(), SendOutcome::Sent(len));
    wait_readable(&flow);
    let mut buf = vec![0u8; MAX_UDP_PAYLOAD_V6];
    let got = flow.recv(&mut buf).unwrap();
    assert_eq!(got, Some(len));
    assert!(buf[..len] == payload[..], "echoed payload differs");
    assert_eq!(flow.recv(&mut buf).unwrap(), None);
    assert_eq!(handle.join().unwrap(), 1);
    let expected = Traffic {
        datagrams: 1,
        bytes: len as u64,
    };
    assert_eq!(flow.counters().to_host, expected);
    assert_eq!(flow.counters().to_guest, expected);
    assert_eq!(flow.counters().total_drops(), 0);
}

#[test]
fn datagram_of_60000_bytes_round_trips_over_ipv4() {
    round_trip(V4, 60_000);
}

#[test]
fn datagram_of_60000_bytes_round_trips_over_ipv6() {
    if ipv6_loopback_available("datagram_of_60000_bytes_round_trips_over_ipv6") {
        round_trip(V6, 60_000);
    }
}

#[test]
fn empty_datagram_round_trips() {
    round_trip(V4, 0);
}

fn port_unreachable(ip: IpAddr, origin: ErrorOrigin, icmp_type: u8, icmp_code: u8) {
    let dst = closed_port(ip);
    let mut flow = UdpFlowSocket::connect(dst).unwrap();
    assert_eq!(flow.send(b"anyone?").unwrap(), SendOutcome::Sent(7));
    wait_error(&flow);
    let report = flow.recv_error().unwrap().expect("an error report");
    assert_eq!(report.origin, origin);
    assert_eq!((report.icmp_type, report.icmp_code), (icmp_type, icmp_code));
    assert!(report.is_port_unreachable());
    assert_eq!(report.errno, libc::ECONNREFUSED);
    assert_eq!(report.error().kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(report.offender, Some(ip));
    assert_eq!(report.mtu(), None);
    assert_eq!(flow.recv_error().unwrap(), None);
    // Reading the report cleared the socket: nothing to receive, and the
    // flow still sends.
    let mut buf = [0u8; 64];
    assert_eq!(flow.recv(&mut buf).unwrap(), None);
    assert_eq!(flow.send(b"again").unwrap(), SendOutcome::Sent(5));
    wait_error(&flow);
    assert!(
        flow.recv_error()
            .unwrap()
            .is_some_and(|r| r.is_port_unreachable())
    );
    assert_eq!(flow.counters().icmp_errors, 2);
    assert_eq!(flow.counters().to_host.datagrams, 2);
}

#[test]
fn closed_port_on_ipv4_reports_icmp_port_unreachable() {
    port_unreachable(V4, ErrorOrigin::Icmp, 3, 3);
}

#[test]
fn closed_port_on_ipv6_reports_icmpv6_port_unreachable() {
    if ipv6_loopback_available("closed_port_on_ipv6_reports_icmpv6_port_unreachable") {
        port_unreachable(V6, ErrorOrigin::Icmp6, 1, 4);
    }
}

#[test]
fn pending_icmp_error_neither_fails_send_nor_recv() {
    let dst = closed_port(V4);
    let mut flow = UdpFlowSocket::connect(dst).unwrap();
    assert_eq!(flow.send(b"one").unwrap(), SendOutcome::Sent(3));
    wait_error(&flow);
    // The asynchronous ECONNREFUSED is pending: it is consumed, not returned.
    assert_eq!(flow.send(b"two").unwrap(), SendOutcome::Sent(3));
    let mut buf = [0u8; 16];
    assert_eq!(flow.recv(&mut buf).unwrap(), None);
    // Both reports wait in the error queue, bounded by the datagrams sent.
    wait_error(&flow);
    let mut reports = 0;
    while let Some(r) = flow.recv_error().unwrap() {
        assert!(r.is_port_unreachable());
        reports += 1;
        assert!(reports <= 2);
    }
    assert!(reports >= 1);
}

#[test]
fn oversized_payload_is_a_counted_drop() {
    let (server, handle) = echo_server(V4, 1);
    let mut flow = UdpFlowSocket::connect(server).unwrap();
    let big = vec![0u8; MAX_UDP_PAYLOAD_V4 + 1];
    assert_eq!(
        flow.send(&big).unwrap(),
        SendOutcome::Dropped(DropReason::Oversize)
    );
    assert_eq!(flow.counters().drops(DropReason::Oversize), 1);
    assert_eq!(flow.counters().to_host.datagrams, 0);
    // The largest datagram still goes through.
    let max = vec![7u8; MAX_UDP_PAYLOAD_V4];
    assert_eq!(
        flow.send(&max).unwrap(),
        SendOutcome::Sent(MAX_UDP_PAYLOAD_V4)
    );
    wait_readable(&flow);
    let mut buf = vec![0u8; MAX_UDP_PAYLOAD_V4];
    assert_eq!(flow.recv(&mut buf).unwrap(), Some(MAX_UDP_PAYLOAD_V4));
    handle.join().unwrap();
}

#[test]
fn datagram_larger_than_the_buffer_is_dropped_not_truncated() {
    let (server, handle) = echo_server(V4, 2);
    let mut flow = UdpFlowSocket::connect(server).unwrap();
    flow.send(&[1u8; 2000]).unwrap();
    wait_readable(&flow);
    let mut small = [0u8; 100];
    assert_eq!(flow.recv(&mut small).unwrap(), None);
    assert_eq!(flow.counters().drops(DropReason::Truncated), 1);
    flow.send(&[2u8; 50]).unwrap();
    wait_readable(&flow);
    assert_eq!(flow.recv(&mut small).unwrap(), Some(50));
    assert_eq!(small[..50], [2u8; 50]);
    handle.join().unwrap();
}

fn forward(ip: IpAddr) {
    let mut listener = UdpListener::bind(SocketAddr::new(ip, 0)).unwrap();
    let local = listener.local_addr();
    assert_eq!(local.ip(), ip);
    assert_ne!(local.port(), 0);
    let client = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.send_to(b"hello guest", local).unwrap();
    wait_readable(&listener);
    let mut buf = [0u8; 1500];
    let (n, peer) = listener.recv_from(&mut buf).unwrap().expect("a datagram");
    assert_eq!(&buf[..n], b"hello guest");
    assert_eq!(peer, client.local_addr().unwrap());
    assert_eq!(
        listener.send_to(b"hello host", peer).unwrap(),
        SendOutcome::Sent(10)
    );
    let mut reply = [0u8; 64];
    let (m, from) = client.recv_from(&mut reply).unwrap();
    assert_eq!(&reply[..m], b"hello host");
    assert_eq!(from, local);
    assert_eq!(listener.recv_from(&mut buf).unwrap(), None);
    assert_eq!(listener.counters().to_guest.datagrams, 1);
    assert_eq!(listener.counters().to_host.bytes, 10);
}

#[test]
fn port_forward_relays_both_ways_over_ipv4() {
    forward(V4);
}

#[test]
fn port_forward_relays_both_ways_over_ipv6() {
    if ipv6_loopback_available("port_forward_relays_both_ways_over_ipv6") {
        forward(V6);
    }
}

#[test]
fn listeners_of_both_families_share_a_port() {
    if !ipv6_loopback_available("listeners_of_both_families_share_a_port") {
        return;
    }
    let v6 = UdpListener::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)).unwrap();
    let port = v6.local_addr().port();
    let v4 = UdpListener::bind(SocketAddr::new(V4, port));
    assert!(v4.is_ok(), "IPv4 bind beside an IPV6_V6ONLY socket: {v4:?}");
}

#[test]
fn reply_to_a_closed_peer_reports_its_address() {
    let mut listener = UdpListener::bind(SocketAddr::new(V4, 0)).unwrap();
    let gone = closed_port(V4);
    assert_eq!(listener.send_to(b"x", gone).unwrap(), SendOutcome::Sent(1));
    wait_error(&listener);
    let report = listener.recv_error().unwrap().expect("an error report");
    assert!(report.is_port_unreachable());
    assert_eq!(report.destination, Some(gone));
    let mut buf = [0u8; 8];
    assert_eq!(listener.recv_from(&mut buf).unwrap(), None);
}
