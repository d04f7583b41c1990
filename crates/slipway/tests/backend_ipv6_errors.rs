//! Frame-level tests of the ICMPv6 errors the guest gets about its
//! datagrams, and of IPv6 replies cut into fragments for its MTU: synthetic
//! guest frames against real sockets on [::1], and against a real router
//! (Linux with forwarding on, in namespaces the tests build) for the errors
//! only a path can give, and once over IPv4, whose errors take the same
//! translation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

use nat_core::{Plan, Rules};
use slipway::{Backend, BackendConfig, FrameBackend};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv6Packet, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet,
    TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket,
};
use test_support::common;
use test_support::e2e;
use test_support::e2e::data::Sha256;
use test_support::e2e::routed::{ABSENT, BEYOND, BEYOND_V4, NARROW_MTU, NO_ROUTE, Routed};
use test_support::harness::datagram::pump_until;
use test_support::harness::frames::{
    GATEWAY_IP6, GUEST_IP, GUEST_IP6, echo6_frame, tcp6_frame, udp_frame, udp6_frame,
};
use test_support::harness::{self, pattern};

/// ICMPv6 types (RFC 4443).
const DST_UNREACHABLE: u8 = 1;
const PACKET_TOO_BIG: u8 = 2;
const TIME_EXCEEDED: u8 = 3;

fn backend_with_mtu(mtu: u16) -> Backend {
    let plan = Plan::builder().mtu(mtu).build().unwrap();
    Backend::new(BackendConfig::new(plan, Rules::default()), Instant::now()).unwrap()
}

/// An ICMPv6 error to the guest, checksum verified.
#[derive(Debug)]
struct Error6 {
    src: Ipv6Addr,
    msg_type: u8,
    code: u8,
    /// The four bytes after the checksum (the MTU of a packet too big).
    word: u32,
    /// The quoted datagram.
    quote: Vec<u8>,
}

fn icmpv6_error(frame: &[u8]) -> Option<Error6> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv6 {
        return None;
    }
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Icmpv6 || ip.dst_addr() != GUEST_IP6 {
        return None;
    }
    let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
    assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
    let msg_type = u8::from(icmp.msg_type());
    let body = ip.payload();
    assert!(ip.payload().len() + 40 <= 1280, "within the minimum MTU");
    (msg_type < 128).then(|| Error6 {
        src: ip.src_addr(),
        msg_type,
        code: icmp.msg_code(),
        word: u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
        quote: body[8..].to_vec(),
    })
}

/// Checks that `quote` stands for the guest's UDP datagram from
/// `src_port` to `dst`: the guest's stack finds its socket by these.
fn assert_quotes_udp(quote: &[u8], src_port: u16, dst: SocketAddrV6) {
    let ip = Ipv6Packet::new_checked(quote).expect("an IPv6 header is quoted");
    assert_eq!(ip.src_addr(), GUEST_IP6, "the guest's own address");
    assert_eq!(ip.dst_addr(), *dst.ip());
    assert_eq!(ip.next_header(), IpProtocol::Udp);
    let udp = &quote[40..48];
    assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), src_port);
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), dst.port());
}

/// The guest's frame with its hop limit set to `hop_limit` (not covered
/// by any checksum).
fn with_hop_limit(mut frame: Vec<u8>, hop_limit: u8) -> Vec<u8> {
    frame[14 + 7] = hop_limit;
    frame
}

#[test]
fn udp_to_a_closed_port_on_loopback_gets_port_unreachable_quoting_the_datagram() {
    let test = "udp_to_a_closed_port_on_loopback_gets_port_unreachable_quoting_the_datagram";
    let mut backend = backend_with_mtu(nat_core::MTU_MAX);
    // A port of [::1] that nothing listens on once this socket is gone.
    let port = UdpSocket::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let to = SocketAddrV6::new(GATEWAY_IP6, port, 0, 0);
    backend.handle_guest_frame(&udp6_frame(40_100, to, b"anyone?"), Instant::now());
    let error = pump_until(&mut backend, Duration::from_secs(5), icmpv6_error)
        .expect("an ICMPv6 error reaches the guest");
    assert_eq!(
        (error.msg_type, error.code),
        (DST_UNREACHABLE, 4),
        "port unreachable"
    );
    assert_eq!(error.src, GATEWAY_IP6, "from the address the guest sent to");
    assert_quotes_udp(&error.quote, 40_100, to);
    assert_eq!(backend.counters().icmp_errors_to_guest, 1);
    harness::assert_backend_quiet(&mut backend, test);
}

#[test]
fn hop_limit_1_past_the_gateway_gets_time_exceeded_and_opens_no_flow() {
    let test = "hop_limit_1_past_the_gateway_gets_time_exceeded_and_opens_no_flow";
    let mut backend = backend_with_mtu(nat_core::MTU_MAX);
    let to = SocketAddrV6::new(BEYOND, 33_434, 0, 0);
    let probe = with_hop_limit(udp6_frame(40_200, to, b"traceroute"), 1);
    backend.handle_guest_frame(&probe, Instant::now());
    let echo = with_hop_limit(echo6_frame(BEYOND, 0x77, 1, b"ping"), 1);
    backend.handle_guest_frame(&echo, Instant::now());
    let mut errors = Vec::new();
    let _ = pump_until(&mut backend, Duration::from_secs(2), |frame| {
        errors.extend(icmpv6_error(frame));
        (errors.len() == 2).then_some(())
    });
    assert_eq!(errors.len(), 2, "one time exceeded each: {errors:?}");
    for error in &errors {
        assert_eq!(
            (error.msg_type, error.code),
            (TIME_EXCEEDED, 0),
            "hop limit"
        );
        assert_eq!(error.src, GATEWAY_IP6, "from the guest's first router");
    }
    assert_quotes_udp(&errors[0].quote, 40_200, to);
    assert_eq!(errors[1].quote[6], 58, "the echo request is quoted");
    assert_eq!(backend.open_flows(flow_table::Protocol::Udp), 0);
    assert_eq!(backend.open_flows(flow_table::Protocol::Icmp), 0);
    assert_eq!(backend.counters().hop_limit_drops, 2);
    // Hop limit 1 to the gateway itself is delivered, and to a link-scope
    // group (an LLMNR query) never forwarded: neither is refused.
    let to_gateway = with_hop_limit(echo6_frame(GATEWAY_IP6, 0x78, 1, b"here"), 1);
    backend.handle_guest_frame(&to_gateway, Instant::now());
    let llmnr = SocketAddrV6::new("ff02::1:3".parse().unwrap(), 5355, 0, 0);
    let query = with_hop_limit(udp6_frame(40_201, llmnr, b"who is corp.internal"), 1);
    backend.handle_guest_frame(&query, Instant::now());
    assert!(
        pump_until(&mut backend, Duration::from_secs(2), icmpv6_error).is_none(),
        "no error about a datagram to the gateway or the group"
    );
    assert_eq!(backend.counters().hop_limit_drops, 2);
    harness::assert_backend_quiet(&mut backend, test);
}

/// The datagrams of the guest's UDP flow as they reach the guest: whole
/// frames' payloads, and fragments put back together by offset.
fn collect_reply(backend: &mut Backend, expect: usize, limit: Duration) -> (Vec<u8>, usize) {
    let mut data = vec![0u8; 8 + expect];
    let (mut got, mut fragments, mut whole) = (0, 0, None);
    let _ = pump_until(backend, limit, |frame| {
        assert!(frame.len() <= 14 + 65575);
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
        match ip.next_header() {
            IpProtocol::Udp => whole = Some(ip.payload().to_vec()),
            IpProtocol::Ipv6Frag => {
                let fh = ip.payload();
                assert_eq!(fh[0], 17, "fragments of a UDP datagram");
                let offset = usize::from(u16::from_be_bytes([fh[2], fh[3]]) & !7);
                let chunk = &fh[8..];
                let more = fh[3] & 1 == 1;
                assert!(!more || chunk.len() % 8 == 0, "8-byte aligned fragments");
                data[offset..offset + chunk.len()].copy_from_slice(chunk);
                got += chunk.len();
                fragments += 1;
            }
            _ => return None,
        }
        (whole.is_some() || got == data.len()).then_some(())
    });
    (whole.unwrap_or(data), fragments)
}

/// A UDP server on [::1] that answers one datagram with `reply`.
fn udp_replier(reply: Vec<u8>) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let addr = sock.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        if let Ok((_, peer)) = sock.recv_from(&mut buf) {
            sock.send_to(&reply, peer).unwrap();
        }
    });
    (addr, handle)
}

/// Sends a request from the guest to a [::1] server that answers with
/// 60000 bytes; returns what reached the guest and in how many fragments.
fn a_60000_byte_reply(backend: &mut Backend) -> (Vec<u8>, Vec<u8>, usize) {
    let reply = pattern(60_000, 6);
    let (server, handle) = udp_replier(reply.clone());
    let to = SocketAddrV6::new(GATEWAY_IP6, server.port(), 0, 0);
    backend.handle_guest_frame(&udp6_frame(40_300, to, b"send"), Instant::now());
    let (datagram, fragments) = collect_reply(backend, reply.len(), Duration::from_secs(5));
    handle.join().unwrap();
    let udp = UdpPacket::new_checked(&datagram[..]).expect("a UDP datagram");
    let (src, dst) = (IpAddress::Ipv6(GATEWAY_IP6), IpAddress::Ipv6(GUEST_IP6));
    assert!(
        udp.verify_checksum(&src, &dst),
        "the checksum covers it all"
    );
    assert_eq!(udp.dst_port(), 40_300);
    (reply, udp.payload().to_vec(), fragments)
}

#[test]
fn a_60000_byte_udp_reply_reaches_a_1500_mtu_guest_in_fragments_that_reassemble_exactly() {
    let test =
        "a_60000_byte_udp_reply_reaches_a_1500_mtu_guest_in_fragments_that_reassemble_exactly";
    let mut backend = backend_with_mtu(1500);
    let (sent, got, fragments) = a_60000_byte_reply(&mut backend);
    assert_eq!(Sha256::digest(&got), Sha256::digest(&sent));
    // 1448 bytes of the datagram per fragment: 1500 less 40 and 8.
    assert_eq!(fragments, 60_008usize.div_ceil(1448));
    assert_eq!(backend.counters().fragments_to_guest, fragments as u64);
    assert_eq!(backend.counters().udp_drops, 0);
    harness::assert_backend_quiet(&mut backend, test);
}

#[test]
fn a_60000_byte_udp_reply_reaches_a_65520_mtu_guest_whole() {
    let test = "a_60000_byte_udp_reply_reaches_a_65520_mtu_guest_whole";
    let mut backend = backend_with_mtu(nat_core::MTU_MAX);
    let (sent, got, fragments) = a_60000_byte_reply(&mut backend);
    assert_eq!(Sha256::digest(&got), Sha256::digest(&sent));
    assert_eq!(fragments, 0);
    assert_eq!(backend.counters().fragments_to_guest, 0);
    harness::assert_backend_quiet(&mut backend, test);
}

/// Runs `scenario` against a backend on the host side of a routed path
/// (namespaces tagged `tag`), then checks that the backend goes quiet; says
/// out loud why not where namespaces cannot be made.
fn on_the_host_side(tag: &str, test: &str, scenario: impl FnOnce(&mut Backend, &Routed) + Send) {
    let why = e2e::namespaces_unavailable().or_else(|| e2e::missing_tool(&["ip"]));
    if let Some(why) = why {
        common::skip(&why);
        return;
    }
    let net = Routed::new(tag);
    net.host.within(|| {
        let mut backend = backend_with_mtu(nat_core::MTU_MAX);
        scenario(&mut backend, &net);
        harness::assert_backend_quiet(&mut backend, test);
    });
}

#[test]
fn a_1400_byte_udp_datagram_past_a_1280_mtu_link_gets_packet_too_big_1280_then_goes_through() {
    let test =
        "a_1400_byte_udp_datagram_past_a_1280_mtu_link_gets_packet_too_big_1280_then_goes_through";
    on_the_host_side("ptbu", test, |backend, net| {
        let server = net.beyond.within(|| UdpSocket::bind((BEYOND, 0)).unwrap());
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let to = SocketAddrV6::new(BEYOND, server.local_addr().unwrap().port(), 0, 0);
        let payload = pattern(1400, 14);
        let datagram = udp6_frame(40_400, to, &payload);
        backend.handle_guest_frame(&datagram, Instant::now());
        let error = pump_until(backend, Duration::from_secs(5), icmpv6_error)
            .expect("the router's packet too big reaches the guest");
        assert_eq!((error.msg_type, error.code), (PACKET_TOO_BIG, 0));
        let mtu = u32::from(NARROW_MTU);
        assert_eq!(error.word, mtu, "the MTU of the router's next link");
        assert_eq!(
            error.src, GATEWAY_IP6,
            "a router on the way: from the gateway"
        );
        assert_quotes_udp(&error.quote, 40_400, to);
        // The host now knows the path's MTU and fragments for it: the same
        // datagram sent again arrives whole at the destination.
        backend.handle_guest_frame(&datagram, Instant::now());
        let mut buf = [0u8; 2000];
        let (n, _) = server.recv_from(&mut buf).expect("the datagram arrives");
        assert_eq!(&buf[..n], &payload[..]);
    });
}

#[test]
fn a_1400_byte_echo_past_a_1280_mtu_link_gets_packet_too_big_1280() {
    let test = "a_1400_byte_echo_past_a_1280_mtu_link_gets_packet_too_big_1280";
    on_the_host_side("ptbe", test, |backend, _| {
        let request = echo6_frame(BEYOND, 0x1280, 1, &pattern(1400, 7));
        backend.handle_guest_frame(&request, Instant::now());
        let error = pump_until(backend, Duration::from_secs(5), icmpv6_error);
        let error = error.unwrap_or_else(|| {
            panic!(
                "the router's packet too big reaches the guest: {:?}",
                backend.counters()
            )
        });
        assert_eq!(
            (error.msg_type, error.word),
            (PACKET_TOO_BIG, u32::from(NARROW_MTU))
        );
        let quoted = Ipv6Packet::new_checked(&error.quote[..]).unwrap();
        assert_eq!((quoted.src_addr(), quoted.dst_addr()), (GUEST_IP6, BEYOND));
        assert_eq!(quoted.next_header(), IpProtocol::Icmpv6);
        let echo = &error.quote[40..48];
        assert_eq!(echo[0], 128, "the guest's echo request");
        assert_eq!(
            u16::from_be_bytes([echo[4], echo[5]]),
            0x1280,
            "its identifier"
        );
        assert_eq!(
            u16::from_be_bytes([echo[6], echo[7]]),
            1,
            "its sequence number"
        );
    });
}

#[test]
fn echo_to_an_absent_address_in_the_prefix_gets_address_unreachable_within_seconds() {
    let test = "echo_to_an_absent_address_in_the_prefix_gets_address_unreachable_within_seconds";
    on_the_host_side("absent", test, |backend, _| {
        let started = Instant::now();
        backend.handle_guest_frame(&echo6_frame(ABSENT, 0x99, 1, b"anyone"), started);
        let error = pump_until(backend, Duration::from_secs(10), icmpv6_error)
            .expect("an error reaches the guest");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            (error.msg_type, error.code),
            (DST_UNREACHABLE, 3),
            "address unreachable"
        );
        assert_eq!(error.src, GATEWAY_IP6, "the host's stack: from the gateway");
        let quoted = Ipv6Packet::new_checked(&error.quote[..]).unwrap();
        assert_eq!((quoted.src_addr(), quoted.dst_addr()), (GUEST_IP6, ABSENT));
        assert_eq!(backend.counters().icmp_errors_to_guest, 1);
    });
}

/// Whether `frame` is a TCP reset to the guest's `port`.
fn is_rst_to(frame: &[u8], port: u16) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else {
        return false;
    };
    if ip.next_header() != IpProtocol::Tcp {
        return false;
    }
    TcpPacket::new_checked(ip.payload()).is_ok_and(|tcp| tcp.rst() && tcp.dst_port() == port)
}

#[test]
fn tcp_connect_to_an_absent_address_is_reset_as_over_ipv4_not_told_by_icmpv6() {
    let test = "tcp_connect_to_an_absent_address_is_reset_as_over_ipv4_not_told_by_icmpv6";
    on_the_host_side("tcpabs", test, |backend, _| {
        let syn = TcpRepr {
            src_port: 0,
            dst_port: 0,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(1000),
            ack_number: None,
            window_len: 65535,
            window_scale: None,
            max_seg_size: Some(1440),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let to = SocketAddrV6::new(ABSENT, 80, 0, 0);
        let started = Instant::now();
        backend.handle_guest_frame(&tcp6_frame(40_500, to, &syn), started);
        let mut icmp = 0;
        let reset = pump_until(backend, Duration::from_secs(10), |frame| {
            icmp += usize::from(icmpv6_error(frame).is_some());
            is_rst_to(frame, 40_500).then_some(())
        });
        assert!(reset.is_some(), "the failed connect resets the guest's SYN");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(icmp, 0, "a TCP flow's failure is its reset alone");
    });
}

#[test]
fn udp_past_a_router_without_a_route_gets_no_route_from_the_gateway() {
    let test = "udp_past_a_router_without_a_route_gets_no_route_from_the_gateway";
    on_the_host_side("noroute", test, |backend, _| {
        let to = SocketAddrV6::new(NO_ROUTE, 9, 0, 0);
        backend.handle_guest_frame(&udp6_frame(40_600, to, b"where?"), Instant::now());
        let error = pump_until(backend, Duration::from_secs(5), icmpv6_error)
            .expect("the router's error reaches the guest");
        assert_eq!(
            (error.msg_type, error.code),
            (DST_UNREACHABLE, 0),
            "no route"
        );
        assert_eq!(error.src, GATEWAY_IP6);
        assert_quotes_udp(&error.quote, 40_600, to);
    });
}

#[test]
fn over_ipv4_the_shared_translation_turns_fragmentation_needed_into_one_with_its_mtu() {
    let test = "over_ipv4_the_shared_translation_turns_fragmentation_needed_into_one_with_its_mtu";
    on_the_host_side("ptb4", test, |backend, _| {
        let to = SocketAddrV4::new(BEYOND_V4, 9);
        backend.handle_guest_frame(&udp_frame(40_700, to, &pattern(1400, 4)), Instant::now());
        let error = pump_until(backend, Duration::from_secs(5), |frame| {
            let eth = EthernetFrame::new_checked(frame).ok()?;
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            (ip.next_header() == IpProtocol::Icmp).then(|| ip.payload().to_vec())
        })
        .expect("the router's fragmentation needed reaches the guest");
        assert_eq!((error[0], error[1]), (3, 4), "fragmentation needed");
        let mtu = u16::from_be_bytes([error[6], error[7]]);
        assert_eq!(mtu, NARROW_MTU, "the next hop's MTU");
        let quoted = Ipv4Packet::new_checked(&error[8..]).unwrap();
        assert_eq!(
            (quoted.src_addr(), quoted.dst_addr()),
            (GUEST_IP, BEYOND_V4)
        );
    });
}
