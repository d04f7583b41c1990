//! Frame-level tests of the ICMPv6 errors the guest gets about its
//! datagrams, and of IPv6 replies cut into fragments for its MTU: synthetic
//! guest frames against real sockets on [::1], and against a real router
//! (Linux with forwarding on, in namespaces the tests build) for the errors
//! only a path can give.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

use nat_core::{Plan, Rules};
use slipway::{Backend, BackendConfig, FrameBackend};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv6Packet, IpAddress, IpProtocol, Ipv6Packet, UdpPacket,
};
use test_support::common;
use test_support::e2e::data::Sha256;
use test_support::e2e::{self, NamedNetns, ip};
use test_support::harness::datagram::pump_until;
use test_support::harness::frames::{GATEWAY_IP6, GUEST_IP6, echo6_frame, udp6_frame};
use test_support::harness::{self, pattern};

/// The host side's address on the link to the router.
const HOST_SIDE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The router's address on that link.
const ROUTER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// An address on that link that no neighbour answers for.
const ABSENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x99);
/// The destination behind the router's 1280-byte link.
const BEYOND: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);

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
    // Hop limit 1 to the gateway itself is delivered, not refused.
    let to_gateway = with_hop_limit(echo6_frame(GATEWAY_IP6, 0x78, 1, b"here"), 1);
    backend.handle_guest_frame(&to_gateway, Instant::now());
    assert!(
        pump_until(&mut backend, Duration::from_secs(2), icmpv6_error).is_none(),
        "no error about a datagram to the gateway"
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

/// The host side (where the backend runs), a router with forwarding on,
/// and a destination behind the router's 1280-byte link:
///
/// ```text
/// host side 2001:db8:1::1 -- 2001:db8:1::2 router 2001:db8:2::1 -- 2001:db8:2::2
///          (MTU 1500)                           (MTU 1280)
/// ```
///
/// Every namespace goes when this is dropped, the links with them.
struct Routed {
    host: NamedNetns,
    _router: NamedNetns,
    beyond: NamedNetns,
}

fn routed(tag: &str) -> Option<Routed> {
    let why = e2e::namespaces_unavailable().or_else(|| e2e::missing_tool(&["ip"]));
    if let Some(why) = why {
        common::skip(&why);
        return None;
    }
    let host = NamedNetns::new(&format!("{tag}h"));
    let router = NamedNetns::new(&format!("{tag}r"));
    let beyond = NamedNetns::new(&format!("{tag}b"));
    let (h, r, b) = (host.name(), router.name(), beyond.name());
    let peer = |a: &str, x: &str, y: &str, ns: &str| {
        ip(&[
            "-n", a, "link", "add", x, "type", "veth", "peer", "name", y, "netns", ns,
        ]);
    };
    let addr = |ns: &str, dev: &str, cidr: &str, mtu: &str| {
        ip(&["-n", ns, "link", "set", dev, "mtu", mtu, "up"]);
        ip(&["-n", ns, "addr", "add", cidr, "dev", dev, "nodad"]);
    };
    peer(h, "v0", "v1", r);
    peer(r, "v2", "v3", b);
    addr(h, "v0", &format!("{HOST_SIDE}/64"), "1500");
    addr(r, "v1", &format!("{ROUTER}/64"), "1500");
    addr(r, "v2", "2001:db8:2::1/64", "1280");
    addr(b, "v3", &format!("{BEYOND}/64"), "1280");
    let via = ROUTER.to_string();
    ip(&[
        "-n",
        h,
        "-6",
        "route",
        "add",
        "2001:db8:2::/64",
        "via",
        &via,
    ]);
    ip(&[
        "-n",
        b,
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8:2::1",
    ]);
    router.within(|| std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1").unwrap());
    // Ping sockets of both families follow this one setting.
    host.within(|| std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647").unwrap());
    Some(Routed {
        host,
        _router: router,
        beyond,
    })
}

#[test]
fn a_1400_byte_udp_datagram_past_a_1280_mtu_link_gets_packet_too_big_1280_then_goes_through() {
    let test =
        "a_1400_byte_udp_datagram_past_a_1280_mtu_link_gets_packet_too_big_1280_then_goes_through";
    let Some(net) = routed("ptbu") else { return };
    let server = net
        .beyond
        .within(|| UdpSocket::bind("[2001:db8:2::2]:0").unwrap());
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let to = SocketAddrV6::new(BEYOND, server.local_addr().unwrap().port(), 0, 0);
    let payload = pattern(1400, 14);
    net.host.within(|| {
        let mut backend = backend_with_mtu(nat_core::MTU_MAX);
        let datagram = udp6_frame(40_400, to, &payload);
        backend.handle_guest_frame(&datagram, Instant::now());
        let error = pump_until(&mut backend, Duration::from_secs(5), icmpv6_error)
            .expect("the router's packet too big reaches the guest");
        assert_eq!((error.msg_type, error.code), (PACKET_TOO_BIG, 0));
        assert_eq!(error.word, 1280, "the MTU of the router's next link");
        assert_eq!(
            error.src, GATEWAY_IP6,
            "a router on the way: from the gateway"
        );
        assert_quotes_udp(&error.quote, 40_400, to);
        // The host now knows the path's MTU and fragments for it: the same
        // datagram sent again arrives whole at the destination.
        backend.handle_guest_frame(&datagram, Instant::now());
        let mut buf = [0u8; 2000];
        let _ = pump_until(&mut backend, Duration::from_millis(300), |_| None::<()>);
        let (n, _) = server.recv_from(&mut buf).expect("the datagram arrives");
        assert_eq!(&buf[..n], &payload[..]);
        harness::assert_backend_quiet(&mut backend, test);
    });
}

#[test]
fn a_1400_byte_echo_past_a_1280_mtu_link_gets_packet_too_big_1280() {
    let test = "a_1400_byte_echo_past_a_1280_mtu_link_gets_packet_too_big_1280";
    let Some(net) = routed("ptbe") else { return };
    net.host.within(|| {
        let mut backend = backend_with_mtu(nat_core::MTU_MAX);
        let request = echo6_frame(BEYOND, 0x1280, 1, &pattern(1400, 7));
        backend.handle_guest_frame(&request, Instant::now());
        let error = pump_until(&mut backend, Duration::from_secs(5), icmpv6_error);
        let error = error.unwrap_or_else(|| {
            panic!(
                "the router's packet too big reaches the guest: {:?}",
                backend.counters()
            )
        });
        assert_eq!((error.msg_type, error.word), (PACKET_TOO_BIG, 1280));
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
        harness::assert_backend_quiet(&mut backend, test);
    });
}

#[test]
fn echo_to_an_absent_address_in_the_prefix_gets_address_unreachable_within_seconds() {
    let test = "echo_to_an_absent_address_in_the_prefix_gets_address_unreachable_within_seconds";
    let Some(net) = routed("absent") else { return };
    net.host.within(|| {
        let mut backend = backend_with_mtu(nat_core::MTU_MAX);
        let started = Instant::now();
        backend.handle_guest_frame(&echo6_frame(ABSENT, 0x99, 1, b"anyone"), started);
        let error = pump_until(&mut backend, Duration::from_secs(10), icmpv6_error)
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
        harness::assert_backend_quiet(&mut backend, test);
    });
}
