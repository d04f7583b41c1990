//! Frame-level tests of the backend over IPv6: synthetic guest frames
//! against real sockets on [::1], no root needed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

use nat_core::{Cidr, DenyList, Plan, Rules};
use slipway::{Backend, BackendConfig, FrameBackend};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv6Packet, IpAddress, IpProtocol, Ipv6Packet, UdpPacket,
};
use test_support::harness;

use harness::frames::{DNS_IP6, GATEWAY_IP6, GUEST_IP6, GUEST_MAC, echo6_frame, udp6_frame};

fn backend_with(configure: impl FnOnce(&mut BackendConfig)) -> Backend {
    let mut config = BackendConfig::new(Plan::default(), Rules::default());
    configure(&mut config);
    Backend::new(config, Instant::now()).unwrap()
}

/// What the guest received over IPv6, parsed, checksums verified.
#[derive(Debug)]
enum Received {
    Udp {
        src: SocketAddrV6,
        dst: SocketAddrV6,
        payload: Vec<u8>,
    },
    Icmp {
        src: Ipv6Addr,
        msg_type: u8,
        code: u8,
        /// The message after type, code and checksum.
        body: Vec<u8>,
    },
    Other,
}

fn parse(frame: &[u8]) -> Received {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    if eth.ethertype() != EthernetProtocol::Ipv6 {
        return Received::Other;
    }
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if dst != GUEST_IP6 {
        // Router advertisements to all nodes.
        return Received::Other;
    }
    assert_eq!(eth.dst_addr(), GUEST_MAC, "frames go to the guest's MAC");
    match ip.next_header() {
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(udp.verify_checksum(&IpAddress::Ipv6(src), &IpAddress::Ipv6(dst)));
            Received::Udp {
                src: SocketAddrV6::new(src, udp.src_port(), 0, 0),
                dst: SocketAddrV6::new(dst, udp.dst_port(), 0, 0),
                payload: udp.payload().to_vec(),
            }
        }
        IpProtocol::Icmpv6 => {
            let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum(&src, &dst));
            Received::Icmp {
                src,
                msg_type: u8::from(icmp.msg_type()),
                code: icmp.msg_code(),
                body: ip.payload()[4..].to_vec(),
            }
        }
        _ => Received::Other,
    }
}

/// Runs the backend until `want` picks a frame, for at most `limit`.
fn pump_until<T>(
    backend: &mut Backend,
    limit: Duration,
    mut want: impl FnMut(Received) -> Option<T>,
) -> Option<T> {
    let end = Instant::now() + limit;
    let mut buf = vec![0u8; 70_000];
    while Instant::now() < end {
        while let Some(len) = backend.poll_guest_frame(&mut buf, Instant::now()) {
            if let Some(found) = want(parse(&buf[..len])) {
                return Some(found);
            }
        }
        backend
            .wait(Some(Instant::now() + Duration::from_millis(20)))
            .unwrap();
    }
    None
}

/// A UDP server on [::1] that echoes one datagram.
fn udp_echo_server() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let addr = sock.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        if let Ok((n, peer)) = sock.recv_from(&mut buf) {
            sock.send_to(&buf[..n], peer).unwrap();
        }
    });
    (addr, handle)
}

#[test]
fn udp_over_ipv6_to_the_gateway_reaches_host_loopback_and_back() {
    let mut backend = backend_with(|_| {});
    let (server, handle) = udp_echo_server();
    let payload: Vec<u8> = (0..1200u32).map(|i| (i * 7 + 3) as u8).collect();
    let to = SocketAddrV6::new(GATEWAY_IP6, server.port(), 0, 0);
    backend.handle_guest_frame(&udp6_frame(40_000, to, &payload), Instant::now());
    let got = pump_until(&mut backend, Duration::from_secs(5), |r| match r {
        Received::Udp { src, dst, payload } => Some((src, dst, payload)),
        _ => None,
    })
    .expect("the echo came back");
    handle.join().unwrap();
    assert_eq!(got.0, to, "the reply comes from where the guest sent it");
    assert_eq!(got.1, SocketAddrV6::new(GUEST_IP6, 40_000, 0, 0));
    assert!(got.2 == payload, "payload intact");
    assert_eq!(backend.counters().udp_bytes_to_host, 1200);
    assert_eq!(backend.counters().udp_bytes_to_guest, 1200);
    assert_eq!(backend.open_flows(flow_table::Protocol::Udp), 1);
    harness::assert_backend_quiet(
        &mut backend,
        "udp over ipv6 to the gateway reaches host loopback and back",
    );
}

#[test]
fn icmpv6_echo_to_the_gateway_is_answered() {
    let mut backend = backend_with(|_| {});
    let request = echo6_frame(GATEWAY_IP6, 0x1234, 7, b"hello");
    backend.handle_guest_frame(&request, Instant::now());
    let (src, body) = pump_until(&mut backend, Duration::from_secs(3), |r| match r {
        Received::Icmp {
            src,
            msg_type: 129,
            code: 0,
            body,
        } => Some((src, body)),
        _ => None,
    })
    .expect("an echo reply");
    assert_eq!(src, GATEWAY_IP6);
    assert_eq!(&body[..4], &[0x12, 0x34, 0, 7], "identifier and sequence");
    assert_eq!(&body[4..], b"hello");
    harness::assert_backend_quiet(&mut backend, "icmpv6 echo to the gateway is answered");
}

#[test]
fn denied_ipv6_destination_gets_admin_prohibited_and_no_socket() {
    let (server, _handle) = udp_echo_server();
    let mut backend = backend_with(|c| {
        c.rules.deny = DenyList::new(["fd00:0:0:2::2/128".parse::<Cidr>().unwrap()]);
    });
    let to = SocketAddrV6::new(GATEWAY_IP6, server.port(), 0, 0);
    let frame = udp6_frame(40_003, to, b"x");
    backend.handle_guest_frame(&frame, Instant::now());
    let (src, code, body) = pump_until(&mut backend, Duration::from_secs(2), |r| match r {
        Received::Icmp {
            src,
            msg_type: 1,
            code,
            body,
        } => Some((src, code, body)),
        _ => None,
    })
    .expect("an ICMPv6 destination unreachable");
    assert_eq!(src, GATEWAY_IP6);
    assert_eq!(code, 1, "communication administratively prohibited");
    assert_eq!(&body[4..], &frame[14..], "the whole datagram is quoted");
    assert_eq!(backend.counters().denied, 1);
    assert_eq!(
        backend.open_flows(flow_table::Protocol::Udp),
        0,
        "no flow, no socket"
    );

    // An echo request to the denied address is refused the same way.
    backend.handle_guest_frame(&echo6_frame(GATEWAY_IP6, 1, 1, b"?"), Instant::now());
    let code = pump_until(&mut backend, Duration::from_secs(2), |r| match r {
        Received::Icmp {
            msg_type: 1, code, ..
        } => Some(code),
        _ => None,
    })
    .expect("an ICMPv6 error about the echo request");
    assert_eq!(code, 1);
    assert_eq!(backend.counters().denied, 2);
    harness::assert_backend_quiet(
        &mut backend,
        "denied ipv6 destination gets admin prohibited and no socket",
    );
}

/// A DNS responder on 127.0.0.1 that answers one A query with 192.0.2.7.
fn dns_responder() -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let addr = sock.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let (n, peer) = sock.recv_from(&mut buf).unwrap();
        let query = buf[..n].to_vec();
        let mut reply = query.clone();
        reply[2] = 0x81;
        reply[3] = 0x80;
        reply[7] = 1;
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
        sock.send_to(&reply, peer).unwrap();
        query
    });
    (addr, handle)
}

fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
fn dns_over_ipv6_to_the_dns_address_reaches_the_test_responder() {
    let (resolver, handle) = dns_responder();
    let mut backend = backend_with(|c| c.host_resolver = Some(resolver));
    let query = dns_query(0xbeef, "slipway.test");
    let to = SocketAddrV6::new(DNS_IP6, 53, 0, 0);
    backend.handle_guest_frame(&udp6_frame(5353, to, &query), Instant::now());
    let (src, dst, payload) = pump_until(&mut backend, Duration::from_secs(5), |r| match r {
        Received::Udp { src, dst, payload } => Some((src, dst, payload)),
        _ => None,
    })
    .expect("a DNS reply");
    let seen = handle.join().unwrap();
    assert_eq!(
        &seen[12..],
        &query[12..],
        "the question reached the upstream"
    );
    assert_eq!(src, to, "the reply comes from the IPv6 DNS address");
    assert_eq!(dst, SocketAddrV6::new(GUEST_IP6, 5353, 0, 0));
    assert_eq!(&payload[..2], &[0xbe, 0xef], "the guest's id is restored");
    assert_eq!(&payload[payload.len() - 4..], &[192, 0, 2, 7]);
    assert_eq!(backend.counters().dns_queries, 1);
    harness::assert_backend_quiet(
        &mut backend,
        "dns over ipv6 to the dns address reaches the test responder",
    );
}
