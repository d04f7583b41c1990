//! Frame-level tests of the backend's UDP, DNS and ICMP paths: synthetic
//! guest frames against real sockets on 127.0.0.1, no root needed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use slipway::Served;
use test_support::harness;
use test_support::harness::datagram::{self, dns_query, dns_responder};

use slipway::FrameBackend;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use nat_core::{Cidr, DenyList, Plan, Rules};
use slipway::{Backend, BackendConfig};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet,
    UdpPacket,
};

use harness::frames::{
    self, DNS_IP as DNS, GATEWAY_IP as GATEWAY, GUEST_IP as GUEST, GUEST_MAC, gateway_mac,
    udp_frame,
};

fn backend_with(configure: impl FnOnce(&mut BackendConfig)) -> Backend {
    let mut config = BackendConfig::new(Plan::default(), Rules::default());
    configure(&mut config);
    Backend::new(config, Instant::now()).unwrap()
}

/// An Ethernet/IPv4 frame from the guest around an IP payload `emit` writes.
fn ipv4_frame(
    dst: Ipv4Addr,
    protocol: IpProtocol,
    payload_len: usize,
    emit: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + 20 + payload_len];
    frames::write_ipv4(
        &mut frame,
        gateway_mac(),
        GUEST,
        dst,
        protocol,
        payload_len,
        emit,
    );
    frame
}

fn echo_request(dst: Ipv4Addr, ident: u16, seq_no: u16, data: &[u8]) -> Vec<u8> {
    let repr = Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data,
    };
    ipv4_frame(dst, IpProtocol::Icmp, repr.buffer_len(), |area| {
        repr.emit(
            &mut Icmpv4Packet::new_unchecked(area),
            &ChecksumCapabilities::default(),
        );
    })
}

/// What the guest received, parsed.
#[derive(Debug)]
enum Received {
    Udp {
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: Vec<u8>,
    },
    Icmp {
        src: Ipv4Addr,
        msg_type: u8,
        code: u8,
        ident_seq: (u16, u16),
        data: Vec<u8>,
    },
    Other,
}

fn parse(frame: &[u8]) -> Received {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.dst_addr(), GUEST_MAC, "frames go to the guest's MAC");
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return Received::Other;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    assert_eq!(ip.dst_addr(), GUEST);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    match ip.next_header() {
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(udp.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst)));
            Received::Udp {
                src: SocketAddrV4::new(src, udp.src_port()),
                dst: SocketAddrV4::new(dst, udp.dst_port()),
                payload: udp.payload().to_vec(),
            }
        }
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum());
            let msg_type = u8::from(icmp.msg_type());
            let ident_seq = if msg_type == 0 {
                (icmp.echo_ident(), icmp.echo_seq_no())
            } else {
                (0, 0)
            };
            Received::Icmp {
                src,
                msg_type,
                code: icmp.msg_code(),
                ident_seq,
                data: icmp.data().to_vec(),
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
    datagram::pump_until(backend, limit, |frame| want(parse(frame)))
}

/// A UDP server on 127.0.0.1 that echoes one datagram.
fn udp_echo_server() -> (SocketAddr, std::thread::JoinHandle<()>) {
    datagram::udp_echo_server("127.0.0.1:0")
}

#[test]
fn udp_round_trip_of_a_60000_byte_datagram_at_mtu_65520() {
    let mut backend = backend_with(|_| {});
    let (server, handle) = udp_echo_server();
    let payload: Vec<u8> = (0..60_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let to = SocketAddrV4::new(GATEWAY, server.port());
    backend.handle_guest_frame(&udp_frame(40_000, to, &payload), Instant::now());
    let got = pump_until(&mut backend, Duration::from_secs(5), |r| match r {
        Received::Udp { src, dst, payload } => Some((src, dst, payload)),
        _ => None,
    })
    .expect("the echo came back");
    handle.join().unwrap();
    assert_eq!(got.0, to, "the reply comes from where the guest sent it");
    assert_eq!(got.1, SocketAddrV4::new(GUEST, 40_000));
    assert!(got.2 == payload, "payload intact");
    assert_eq!(backend.counters().udp_bytes_to_host, 60_000);
    assert_eq!(backend.counters().udp_bytes_to_guest, 60_000);
    harness::assert_backend_quiet(
        &mut backend,
        "udp round trip of a 60000 byte datagram at mtu 65520",
    );
}

#[test]
fn udp_to_a_closed_port_gets_icmp_port_unreachable() {
    let mut backend = backend_with(|_| {});
    // A port that was free a moment ago: nothing listens there.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let to = SocketAddrV4::new(GATEWAY, closed);
    backend.handle_guest_frame(&udp_frame(40_001, to, b"anyone?"), Instant::now());
    let (src, code, data) = pump_until(&mut backend, Duration::from_secs(3), |r| match r {
        Received::Icmp {
            src,
            msg_type: 3,
            code,
            data,
            ..
        } => Some((src, code, data)),
        _ => None,
    })
    .expect("an ICMP error reached the guest");
    assert_eq!(src, GATEWAY);
    assert_eq!(code, 3, "port unreachable");
    // The quote names the guest's datagram: its ports follow the IP header.
    assert_eq!(u16::from_be_bytes([data[20], data[21]]), 40_001);
    assert_eq!(u16::from_be_bytes([data[22], data[23]]), closed);
    assert_eq!(backend.counters().icmp_errors_to_guest, 1);
    harness::assert_backend_quiet(
        &mut backend,
        "udp to a closed port gets icmp port unreachable",
    );
}

#[test]
fn idle_udp_flow_expires_after_its_timeout() {
    let mut backend = backend_with(|_| {});
    let (server, handle) = udp_echo_server();
    let start = Instant::now();
    let to = SocketAddrV4::new(GATEWAY, server.port());
    backend.handle_guest_frame(&udp_frame(40_002, to, b"ping"), start);
    pump_until(&mut backend, Duration::from_secs(5), |r| {
        matches!(r, Received::Udp { .. }).then_some(())
    })
    .unwrap();
    handle.join().unwrap();
    assert_eq!(backend.open_flows(flow_table::Protocol::Udp), 1);
    let deadline = backend
        .poll_timeout()
        .expect("the flow has an idle deadline");
    assert!(deadline > start + Duration::from_secs(170));
    backend.handle_timeout(start + Duration::from_secs(60));
    assert_eq!(backend.open_flows(flow_table::Protocol::Udp), 1);
    backend.handle_timeout(deadline + Duration::from_secs(1));
    assert_eq!(backend.open_flows(flow_table::Protocol::Udp), 0);
    assert_eq!(backend.counters().datagram_flows_expired, 1);
    harness::assert_backend_quiet(&mut backend, "idle udp flow expires after its timeout");
}

#[test]
fn icmp_echo_to_the_gateway_is_answered() {
    let mut backend = backend_with(|_| {});
    backend.handle_guest_frame(&echo_request(GATEWAY, 0x1234, 7, b"hello"), Instant::now());
    let (src, ident_seq, data) = pump_until(&mut backend, Duration::from_secs(3), |r| match r {
        Received::Icmp {
            src,
            msg_type: 0,
            ident_seq,
            data,
            ..
        } => Some((src, ident_seq, data)),
        _ => None,
    })
    .expect("an echo reply");
    assert_eq!(src, GATEWAY);
    assert_eq!(ident_seq, (0x1234, 7));
    assert_eq!(data, b"hello");
    harness::assert_backend_quiet(&mut backend, "icmp echo to the gateway is answered");
}

#[test]
fn dns_to_the_dns_address_reaches_the_test_responder() {
    let (resolver, handle) = dns_responder();
    let mut backend = backend_with(|c| c.host_resolver = Some(resolver));
    let query = dns_query(0xbeef, "slipway.test");
    let to = SocketAddrV4::new(DNS, 53);
    backend.handle_guest_frame(&udp_frame(5353, to, &query), Instant::now());
    let (src, payload) = pump_until(&mut backend, Duration::from_secs(5), |r| match r {
        Received::Udp { src, payload, .. } => Some((src, payload)),
        _ => None,
    })
    .expect("a DNS reply");
    let seen = handle.join().unwrap();
    assert_eq!(
        &seen[12..],
        &query[12..],
        "the question reached the upstream"
    );
    assert_eq!(src, to, "the reply comes from the DNS address");
    assert_eq!(&payload[..2], &[0xbe, 0xef], "the guest's id is restored");
    assert_eq!(&payload[payload.len() - 4..], &[192, 0, 2, 7]);
    assert_eq!(backend.counters().dns_queries, 1);
    harness::assert_backend_quiet(
        &mut backend,
        "dns to the dns address reaches the test responder",
    );
}

#[test]
fn denied_udp_destination_gets_icmp_unreachable_and_no_socket() {
    let (server, _handle) = udp_echo_server();
    let mut backend = backend_with(|c| {
        c.rules.deny = DenyList::new(["10.0.2.2/32".parse::<Cidr>().unwrap()]);
    });
    let to = SocketAddrV4::new(GATEWAY, server.port());
    backend.handle_guest_frame(&udp_frame(40_003, to, b"x"), Instant::now());
    let code = pump_until(&mut backend, Duration::from_secs(2), |r| match r {
        Received::Icmp {
            msg_type: 3, code, ..
        } => Some(code),
        _ => None,
    })
    .expect("an ICMP error");
    assert_eq!(code, 13, "communication administratively prohibited");
    assert_eq!(backend.counters().denied, 1);
    assert_eq!(
        backend.open_flows(flow_table::Protocol::Udp),
        0,
        "no flow, no socket"
    );
    harness::assert_backend_quiet(
        &mut backend,
        "denied udp destination gets icmp unreachable and no socket",
    );
}

#[test]
fn inbound_udp_forward_reaches_the_guest_and_back() {
    let free = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = format!("127.0.0.1/{free}:5000");
    let mut backend = backend_with(|c| c.rules.udp_forwards = spec.parse().unwrap());
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.send_to(b"knock", ("127.0.0.1", free)).unwrap();
    let (src, dst, payload) = pump_until(&mut backend, Duration::from_secs(5), |r| match r {
        Received::Udp { src, dst, payload } => Some((src, dst, payload)),
        _ => None,
    })
    .expect("the datagram reached the guest");
    assert_eq!(dst, SocketAddrV4::new(GUEST, 5000));
    assert_eq!(*src.ip(), GATEWAY, "host loopback appears as the gateway");
    assert_eq!(payload, b"knock");
    // The guest answers the address it saw.
    backend.handle_guest_frame(&udp_frame(5000, src, b"who's there"), Instant::now());
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"who's there");
    assert_eq!(from.port(), free);
    harness::assert_backend_quiet(
        &mut backend,
        "inbound udp forward reaches the guest and back",
    );
}

// ---- ICMP errors, listeners' error queues, the DNS pool, group addresses ----

/// The ICMP errors among `frames`: (type, code, the quoted destination).
fn icmp_errors_in(frames: &[harness::Frame]) -> Vec<(u8, u8, Ipv4Addr)> {
    frames
        .iter()
        .filter_map(|f| match parse(&f.0) {
            Received::Icmp {
                msg_type: msg_type @ (3 | 11),
                code,
                data,
                ..
            } if data.len() >= 20 => Some((
                msg_type,
                code,
                Ipv4Addr::new(data[16], data[17], data[18], data[19]),
            )),
            _ => None,
        })
        .collect()
}

/// A UDP datagram from `src`:`src_port` (not the guest's address) to `dst`.
fn udp_frame_from(src: Ipv4Addr, src_port: u16, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + 20 + 8 + payload.len()];
    frames::write_ipv4(
        &mut frame,
        gateway_mac(),
        src,
        *dst.ip(),
        IpProtocol::Udp,
        8 + payload.len(),
        |area| {
            smoltcp::wire::UdpRepr {
                src_port,
                dst_port: dst.port(),
            }
            .emit(
                &mut UdpPacket::new_unchecked(area),
                &IpAddress::Ipv4(src),
                &IpAddress::Ipv4(*dst.ip()),
                payload.len(),
                |p| p.copy_from_slice(payload),
                &ChecksumCapabilities::default(),
            );
        },
    );
    frame
}

/// The address on the test namespace's link that nothing answers.
const ABSENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

/// Runs `body` on a thread in a new network namespace whose only link is a
/// tap with 192.0.2.1/24 that nobody reads, so ARP for [`ABSENT`] fails;
/// ping sockets allowed there when `ping_sockets`, else refused (the
/// namespace's default) so the root raw-socket fallback is used. Returns
/// why it could not.
fn with_absent_neighbour(ping_sockets: bool, body: impl FnOnce() + Send) -> Result<(), String> {
    use slipway::netns::{Namespace, TapConfig, TapIpv6, TapOffload, open_tap};
    let ns = Namespace::create().map_err(|e| format!("namespace: {e}"))?;
    let cfg = TapConfig {
        name: "absent0".into(),
        mac: [0x02, 0, 0x5e, 0, 0x53, 1],
        mtu: 1500,
        addr_v4: Some((Ipv4Addr::new(192, 0, 2, 1), 24)),
        gateway_v4: None,
        addr_v6: None,
        gateway_v6: None,
        ipv6: TapIpv6::Disabled,
        offload: TapOffload::None,
    };
    // Held open for the test: the link is up while its descriptor is.
    let _tap = open_tap(&ns, &cfg).map_err(|e| format!("tap: {e}"))?;
    ns.run_in(|| {
        // /proc/sys/net belongs to the namespace of the thread that opens it.
        let range = if ping_sockets { "0 2147483647" } else { "1 0" };
        std::fs::write("/proc/sys/net/ipv4/ping_group_range", range)?;
        body();
        Ok(())
    })
    .map_err(|e| e.to_string())
}

/// The guest pings [`ABSENT`]: when ARP gives up, it gets a host
/// unreachable from the gateway quoting its echo request, and the loop
/// goes quiet (the echo socket's error queue is drained).
fn echo_to_an_absent_neighbour(kind: relay_udp_icmp::EchoKind) {
    let available = relay_udp_icmp::probe_echo(nat_core::IpFamily::V4).kind();
    assert_eq!(available, Some(kind), "the echo socket the backend opens");
    let mut h = harness::Harness::new();
    h.send(&echo_request(ABSENT, 0x7777, 3, b"is anyone there?"));
    let frames = h.collect_until(Duration::from_secs(20), |f| {
        matches!(parse(&f.0), Received::Icmp { msg_type: 3, .. })
    });
    let error = frames.last().map(|f| parse(&f.0));
    let Some(Received::Icmp {
        src,
        msg_type: 3,
        code,
        data,
        ..
    }) = error
    else {
        panic!("no ICMP error reached the guest: {error:?}");
    };
    assert_eq!(code, 1, "host unreachable");
    assert_eq!(src, GATEWAY, "a router's error comes from the gateway");
    // The quote: the guest's IPv4 header, then its echo request's header.
    assert_eq!(&data[12..16], &GUEST.octets());
    assert_eq!(&data[16..20], &ABSENT.octets());
    assert_eq!(data[9], 1, "ICMP");
    assert_eq!(data[20], 8, "an echo request");
    assert_eq!(u16::from_be_bytes([data[24], data[25]]), 0x7777);
    assert_eq!(u16::from_be_bytes([data[26], data[27]]), 3);
    let c = h.backend.counters();
    assert_eq!((c.host_icmp_errors, c.icmp_errors_to_guest), (1, 1));
    h.assert_quiet("echo flow after a host unreachable");
}

#[test]
fn echo_to_an_absent_neighbour_over_a_ping_socket_gets_host_unreachable_and_goes_quiet() {
    let test =
        "echo_to_an_absent_neighbour_over_a_ping_socket_gets_host_unreachable_and_goes_quiet";
    if let Err(why) = with_absent_neighbour(true, || {
        echo_to_an_absent_neighbour(relay_udp_icmp::EchoKind::PingSocket);
    }) {
        eprintln!("{test}: skipped: {why}");
    }
}

#[test]
fn echo_to_an_absent_neighbour_over_a_raw_socket_gets_host_unreachable_and_goes_quiet() {
    let test = "echo_to_an_absent_neighbour_over_a_raw_socket_gets_host_unreachable_and_goes_quiet";
    if let Err(why) = with_absent_neighbour(false, || {
        let kind = relay_udp_icmp::probe_echo(nat_core::IpFamily::V4).kind();
        if kind != Some(relay_udp_icmp::EchoKind::Raw) {
            eprintln!("{test}: skipped: no raw sockets here ({kind:?})");
            return;
        }
        echo_to_an_absent_neighbour(relay_udp_icmp::EchoKind::Raw);
    }) {
        eprintln!("{test}: skipped: {why}");
    }
}

#[test]
fn reply_through_a_udp_forward_to_a_departed_peer_is_reported_and_the_loop_goes_quiet() {
    let free = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = harness::default_config();
    config.rules.udp_forwards = format!("127.0.0.1/{free}:5000").parse().unwrap();
    let mut h = harness::Harness::with_config(config);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"knock", ("127.0.0.1", free)).unwrap();
    let frames = h.collect_until(Duration::from_secs(5), |f| {
        matches!(parse(&f.0), Received::Udp { .. })
    });
    let Some(Received::Udp { src, .. }) = frames.last().map(|f| parse(&f.0)) else {
        panic!("the datagram did not reach the guest");
    };
    // The peer goes; the guest's answer meets a closed port.
    drop(client);
    h.send(&udp_frame(5000, src, b"anyone still there?"));
    let frames = h.collect_until(Duration::from_secs(5), |f| {
        matches!(parse(&f.0), Received::Icmp { msg_type: 3, .. })
    });
    assert_eq!(
        icmp_errors_in(&frames),
        vec![(3, 3, *src.ip())],
        "port unreachable about the guest's answer"
    );
    assert_eq!(h.backend.counters().host_icmp_errors, 1);
    h.assert_quiet("forwarded UDP port after its peer left");
}

#[test]
fn dns_queries_leave_from_several_source_ports_and_the_loop_goes_quiet() {
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    upstream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut config = harness::default_config();
    config.host_resolver = Some(upstream.local_addr().unwrap());
    let mut h = harness::Harness::with_config(config);
    let to = SocketAddrV4::new(DNS, 53);
    let count = 16u16;
    for i in 0..count {
        h.send(&udp_frame(
            20_000 + i,
            to,
            &dns_query(0x100 + i, "pool.slipway.test"),
        ));
    }
    let mut ports = std::collections::HashSet::new();
    let mut buf = [0u8; 512];
    for _ in 0..count {
        let (n, from) = upstream.recv_from(&mut buf).unwrap();
        ports.insert(from.port());
        let mut reply = buf[..n].to_vec();
        reply[2] |= 0x80;
        upstream.send_to(&reply, from).unwrap();
    }
    // 16 queries over a pool of 8 sockets: one port is a fixed source port.
    assert!(ports.len() >= 3, "queries came from only {ports:?}");
    let mut answered = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while answered.len() < usize::from(count) && Instant::now() < deadline {
        for f in h.collect_for(Duration::from_millis(50)) {
            if let Received::Udp { src, dst, payload } = parse(&f.0) {
                assert_eq!(src, to);
                let id = u16::from_be_bytes([payload[0], payload[1]]);
                assert_eq!(
                    id,
                    0x100 + (dst.port() - 20_000),
                    "the guest's id is restored"
                );
                answered.insert(dst.port());
            }
        }
    }
    assert_eq!(answered.len(), usize::from(count));
    h.assert_quiet("DNS forwarder after every query was answered");
}

#[test]
fn no_icmp_error_about_datagrams_to_broadcast_or_multicast_addresses() {
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = harness::default_config();
    // A deny rule that covers a group address, and a unicast control.
    config.rules.deny = DenyList::new([
        "224.0.0.0/4".parse::<Cidr>().unwrap(),
        "192.0.2.9/32".parse::<Cidr>().unwrap(),
    ]);
    let mut h = harness::Harness::with_config(config);
    let groups = [
        Ipv4Addr::new(10, 0, 2, 255),
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 251),
        Ipv4Addr::new(239, 1, 2, 3),
    ];
    for (i, group) in (0u16..).zip(groups) {
        h.send(&udp_frame(
            30_000 + i,
            SocketAddrV4::new(group, closed),
            b"all of you",
        ));
    }
    h.send(&echo_request(
        Ipv4Addr::new(10, 0, 2, 255),
        0x0b0b,
        1,
        b"ping -b",
    ));
    // Sources that name no single host: denied, and never answered.
    for src in [Ipv4Addr::new(10, 0, 2, 255), Ipv4Addr::new(224, 0, 0, 1)] {
        let to = SocketAddrV4::new(GATEWAY, closed);
        h.send(&udp_frame_from(src, 30_050, to, b"from a group"));
    }
    let frames = h.collect_for(Duration::from_millis(500));
    assert_eq!(
        icmp_errors_in(&frames),
        vec![],
        "no error about a group address"
    );
    let c = h.backend.counters().clone();
    assert_eq!(c.icmp_errors_suppressed, 7);
    assert_eq!(c.denied, 7, "each datagram is a counted drop");
    assert_eq!(h.backend.open_flows(flow_table::Protocol::Udp), 0);
    assert_eq!(h.backend.open_flows(flow_table::Protocol::Icmp), 0);
    // Unicast datagrams still get theirs: a closed port, a denied address.
    h.send(&udp_frame(
        30_100,
        SocketAddrV4::new(GATEWAY, closed),
        b"just you",
    ));
    h.send(&udp_frame(
        30_101,
        SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 9), 9),
        b"x",
    ));
    let mut errors = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while errors.len() < 2 && Instant::now() < deadline {
        errors.extend(icmp_errors_in(&h.collect_for(Duration::from_millis(50))));
    }
    errors.sort_unstable();
    assert_eq!(
        errors,
        vec![(3, 3, GATEWAY), (3, 13, Ipv4Addr::new(192, 0, 2, 9))],
        "port unreachable and administratively prohibited"
    );
    assert_eq!(h.backend.counters().icmp_errors_suppressed, 7);
    h.assert_quiet("after datagrams to group addresses");
}
