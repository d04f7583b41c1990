//! Frame-level tests of the backend's front desk (ARP, DHCP) and TCP relay
//! against real host sockets on 127.0.0.1, no root needed.
//!
//! A synthetic guest (`test_support::harness`) sends Ethernet frames built with
//! `smoltcp::wire` and drives the backend on real time; servers are threads
//! on 127.0.0.1 with ephemeral ports, which the guest reaches through the
//! gateway address (host-loopback mapping is on by default). Each test is
//! named for the contract it checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bulk;
mod half_open;
mod real_peers;

use test_support::harness;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use flow_table::{Limits, Protocol};
use frontdesk::DropReason;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpRepr, DhcpMessageType, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpProtocol, Ipv6Packet, Ipv6Repr, TcpControl, UdpPacket, UdpRepr,
};

use harness::frames::{arp_request, check_dhcp_reply, dhcp_message};
use harness::{
    DNS_IP, Frame, GATEWAY_IP, GUEST_IP, GUEST_MAC, GuestSeg, GuestTcp, Harness, State, TcpOpts,
    default_config, fnv, free_port, gateway_mac, listen, listen_with, pattern, reset, serve,
    via_gateway,
};

/// The size of the bulk transfers.
pub(crate) const BULK: usize = 64 << 20;

/// Reads everything until end of stream, then sends it back and closes.
pub(crate) fn echo_once(mut stream: TcpStream) -> usize {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    stream.write_all(&got).unwrap();
    got.len()
}

pub(crate) fn assert_no_rst(frames: &[Frame]) {
    let rsts: Vec<_> = frames
        .iter()
        .filter_map(Frame::tcp)
        .filter(|t| t.rst)
        .collect();
    assert!(rsts.is_empty(), "unexpected RSTs: {rsts:?}");
}

pub(crate) fn report(name: &str, bytes: usize, elapsed: Duration) {
    let mib = bytes as f64 / f64::from(1u32 << 20);
    eprintln!(
        "{name}: {mib:.0} MiB in {elapsed:.2?} ({:.0} MiB/s)",
        mib / elapsed.as_secs_f64()
    );
}

#[test]
pub(crate) fn arp_answers_gateway_and_dns_but_not_guest_or_outside() {
    let mut h = Harness::new();
    for target in [GATEWAY_IP, DNS_IP] {
        h.send(&arp_request(target));
        let reply = h.poll_queued().expect("an ARP reply").arp().expect("ARP");
        match reply {
            ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_hardware_addr,
                target_protocol_addr,
            } => {
                assert_eq!(operation, ArpOperation::Reply);
                assert_eq!(source_hardware_addr, gateway_mac());
                assert_eq!(source_protocol_addr, target);
                assert_eq!(target_hardware_addr, GUEST_MAC);
                assert_eq!(target_protocol_addr, GUEST_IP);
            }
            other => panic!("not an Ethernet/IPv4 ARP reply: {other:?}"),
        }
    }
    let unanswered = [
        GUEST_IP,
        Ipv4Addr::new(10, 0, 2, 77),
        Ipv4Addr::new(192, 168, 1, 1),
    ];
    for target in unanswered {
        h.send(&arp_request(target));
    }
    let frames = h.collect_for(Duration::from_millis(50));
    assert!(frames.is_empty(), "no answer for others: {frames:?}");
    assert_eq!(
        h.backend.frame_counters().drops(DropReason::ArpNotServed),
        unanswered.len() as u64
    );
    h.assert_quiet("arp answers gateway and dns but not guest or outside");
}

#[test]
pub(crate) fn dhcp_full_exchange_gives_address_router_dns_mtu() {
    let mut h = Harness::new();
    let xid = 0x1234_5678;
    h.send(&dhcp_message(DhcpMessageType::Discover, xid, None, None));
    let offer = h.poll_queued().expect("an OFFER");
    let (server, offered) = check_dhcp_reply(&offer, DhcpMessageType::Offer, xid);
    h.send(&dhcp_message(
        DhcpMessageType::Request,
        xid,
        Some(offered),
        Some(server),
    ));
    let ack = h.poll_queued().expect("an ACK");
    check_dhcp_reply(&ack, DhcpMessageType::Ack, xid);
    h.assert_quiet("dhcp full exchange gives address router dns mtu");
}

/// A DHCPv6 Solicit from the guest's link-local address to ff02::1:2.
fn dhcpv6_solicit(src: Ipv6Addr) -> Vec<u8> {
    let mut duid = vec![0, 3, 0, 1];
    duid.extend_from_slice(&GUEST_MAC.0);
    let mut message = vec![1, 0xab, 0xcd, 0xef, 0, 1, 0, 10];
    message.extend_from_slice(&duid);
    // IA_NA: IAID 1, T1 and T2 zero.
    message.extend_from_slice(&[0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: 8 + message.len(),
        hop_limit: 1,
    };
    let mut frame = vec![0; 14 + 40 + 8 + message.len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: GUEST_MAC,
        dst_addr: EthernetAddress([0x33, 0x33, 0, 1, 0, 2]),
        ethertype: EthernetProtocol::Ipv6,
    }
    .emit(&mut eth);
    let mut packet = Ipv6Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut packet);
    UdpRepr {
        src_port: 546,
        dst_port: 547,
    }
    .emit(
        &mut UdpPacket::new_unchecked(packet.payload_mut()),
        &IpAddress::Ipv6(src),
        &IpAddress::Ipv6(dst),
        message.len(),
        |buf| buf.copy_from_slice(&message),
        &ChecksumCapabilities::default(),
    );
    frame
}

#[test]
pub(crate) fn dhcpv6_solicit_gets_an_advertise_to_the_guest() {
    let mut h = Harness::new();
    let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);
    h.send(&dhcpv6_solicit(src));
    let advertise = h.poll_queued().expect("an Advertise");
    let eth = EthernetFrame::new_checked(&advertise.0[..]).unwrap();
    assert_eq!((eth.src_addr(), eth.dst_addr()), (gateway_mac(), GUEST_MAC));
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.dst_addr(), src);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(udp.verify_checksum(&IpAddress::Ipv6(ip.src_addr()), &IpAddress::Ipv6(src)));
    assert_eq!((udp.src_port(), udp.dst_port()), (547, 546));
    assert_eq!(&udp.payload()[..4], &[2, 0xab, 0xcd, 0xef], "an Advertise");
    h.assert_quiet("dhcpv6 solicit gets an advertise to the guest");
}

#[test]
pub(crate) fn tcp_syn_ack_only_after_host_connect() {
    let server = serve(listen(), |mut stream| {
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    let mut h = Harness::new();
    let iss = 1000;
    h.send(&GuestSeg::syn(40001, server.guest_addr(), iss, Some(7)).frame(&[]));
    assert!(
        h.poll_queued().is_none(),
        "no SYN-ACK before the backend has seen the host connect complete"
    );
    assert_eq!(h.backend.open_flows(Protocol::Tcp), 1);
    let frames = h.collect_until(Duration::from_secs(2), |f| f.tcp().is_some());
    let syn_ack = frames.last().and_then(Frame::tcp).expect("a segment");
    assert!(syn_ack.syn && !syn_ack.rst, "a SYN-ACK: {syn_ack:?}");
    assert_eq!(syn_ack.ack, Some(iss + 1));
    assert_eq!(syn_ack.src, server.guest_addr());
    assert_eq!(syn_ack.dst, SocketAddrV4::new(GUEST_IP, 40001));
    assert_eq!(syn_ack.mss, Some(65480));
    assert_eq!(syn_ack.wscale, Some(7), "the guest offered scaling");
    assert!(
        server.accepted_within(Duration::from_secs(2)).is_some(),
        "the host server saw the connection"
    );
    h.assert_quiet("tcp syn ack only after host connect");
}

#[test]
pub(crate) fn tcp_refused_connect_gets_rst_within_100ms() {
    let port = free_port();
    let mut h = Harness::new();
    let iss = 77_000;
    let start = Instant::now();
    h.send(&GuestSeg::syn(40002, via_gateway(port), iss, Some(7)).frame(&[]));
    let frames = h.collect_until(Duration::from_secs(1), |f| f.tcp().is_some_and(|t| t.rst));
    let elapsed = start.elapsed();
    let rst = frames
        .last()
        .and_then(Frame::tcp)
        .filter(|t| t.rst)
        .expect("an RST");
    assert!(
        elapsed < Duration::from_millis(100),
        "RST after {elapsed:?}"
    );
    assert_eq!(rst.ack, Some(iss + 1), "the RST acknowledges the SYN");
    assert_eq!(rst.src, via_gateway(port));
    assert!(frames.iter().filter_map(Frame::tcp).all(|t| !t.syn));
    h.collect_for(Duration::from_millis(10));
    assert_eq!(h.backend.open_flows(Protocol::Tcp), 0);
    h.assert_quiet("tcp refused connect gets rst within 100ms");
}

#[test]
pub(crate) fn tcp_slow_connect_does_not_delay_another_flow() {
    // A listener whose accept queue is full drops SYNs: a connect to it
    // stays pending.
    let slow = listen_with(None, 0);
    let slow_addr = slow.local_addr().unwrap();
    let mut fillers = Vec::new();
    let mut full = false;
    for _ in 0..8 {
        match TcpStream::connect_timeout(&slow_addr, Duration::from_millis(200)) {
            Ok(stream) => fillers.push(stream),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    if !full {
        eprintln!(
            "skipped: the accept queue of a listener with backlog 0 took 8 connections, \
             so no connect stays pending on this kernel"
        );
        return;
    }
    let echo = serve(listen(), echo_once);
    let mut h = Harness::new();
    let slow_port = 40010;
    h.send(&GuestSeg::syn(slow_port, via_gateway(slow_addr.port()), 5000, Some(7)).frame(&[]));
    let start = Instant::now();
    let mut ep = GuestTcp::new(TcpOpts::default(), 40011, echo.guest_addr(), 9000);
    ep.connect(start, &mut h.backend);
    ep.send(b"not held up");
    ep.close();
    let done = h.drive(&mut ep, Duration::from_secs(3), |ep, _| {
        ep.peer_fin() && ep.fin_acked()
    });
    let elapsed = start.elapsed();
    assert!(done, "the second flow completes: {:?}", ep.stats());
    assert_eq!(ep.received(), b"not held up");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    let slow_frames: Vec<_> = h.stray.iter().filter_map(|f| f.tcp_to(slow_port)).collect();
    assert!(
        slow_frames.is_empty(),
        "the slow flow is still connecting: {slow_frames:?}"
    );
    assert_eq!(h.backend.counters().tcp_flows_opened, 2);
    assert_eq!(
        h.backend.open_flows(Protocol::Tcp),
        1,
        "the slow flow waits"
    );
    drop(fillers);
    h.assert_quiet("tcp slow connect does not delay another flow");
}

#[test]
pub(crate) fn tcp_duplicate_syn_while_connecting_does_not_reset_flow() {
    let echo = serve(listen(), echo_once);
    let mut h = Harness::new();
    // Sequence numbers wrap during the exchange.
    let mut ep = GuestTcp::new(TcpOpts::default(), 40020, echo.guest_addr(), 0xffff_fffa);
    ep.connect(Instant::now(), &mut h.backend);
    h.send(&ep.syn_frame());
    h.send(&ep.syn_frame());
    assert_eq!(h.backend.counters().tcp_flows_opened, 1);
    assert_eq!(h.backend.open_flows(Protocol::Tcp), 1);
    assert!(
        h.poll_queued().is_none(),
        "repeated SYNs draw nothing while the host connect is pending"
    );
    let established = h.drive(&mut ep, Duration::from_secs(2), |ep, _| {
        ep.state() == State::Established
    });
    assert!(established, "handshake: {:?}", ep.stats());
    // Synchronized now: a repeated SYN draws an ACK, not a reset.
    h.send(&ep.syn_frame());
    ep.send(b"still here");
    ep.close();
    let done = h.drive(&mut ep, Duration::from_secs(3), |ep, _| {
        ep.peer_fin() && ep.fin_acked()
    });
    assert!(done, "echo: {:?}", ep.stats());
    assert_eq!(ep.received(), b"still here");
    assert_eq!(ep.stats().rsts, 0);
    assert_no_rst(&h.stray);
    assert_eq!(echo.join(), Some(10));
    h.assert_quiet("tcp duplicate syn while connecting does not reset flow");
}

#[test]
pub(crate) fn tcp_no_window_scale_option_when_guest_offered_none() {
    let payload = pattern(300_000, 7);
    let expected = fnv(&payload);
    let server = serve(listen(), move |mut stream| {
        stream.write_all(&payload).unwrap()
    });
    let mut h = Harness::new();
    let opts = TcpOpts {
        wscale: None,
        window: 65535,
        ..TcpOpts::default()
    };
    let mut ep = GuestTcp::new(opts, 40030, server.guest_addr(), 1);
    h.send(&ep.syn_frame());
    let frames = h.collect_until(Duration::from_secs(2), |f| f.tcp_to(40030).is_some());
    let frame = frames.last().expect("a SYN-ACK");
    let syn_ack = frame.tcp_to(40030).expect("a segment");
    assert!(
        syn_ack.syn && syn_ack.ack.is_some(),
        "a SYN-ACK: {syn_ack:?}"
    );
    assert_eq!(syn_ack.wscale, None, "no window scale option");
    assert_eq!(syn_ack.mss, Some(65480));
    ep.on_segment(&syn_ack, Instant::now(), &mut h.backend);
    assert_eq!(ep.state(), State::Established);
    assert_eq!(ep.peer_scale(), 0);
    // Unscaled windows on both sides: a 64 KiB window bounds the flight.
    let done = h.drive(&mut ep, Duration::from_secs(5), |ep, _| ep.peer_fin());
    assert!(done, "transfer: {:?}", ep.stats());
    assert_eq!(ep.received_len(), 300_000);
    assert_eq!(ep.received_hash(), expected);
    assert_eq!(ep.stats().window_violations, 0);
    h.assert_quiet("tcp no window scale option when guest offered none");
}

#[test]
pub(crate) fn tcp_fin_carrying_data_reaches_host_then_eof() {
    let server = serve(listen(), |mut stream| {
        let mut got = Vec::new();
        stream.read_to_end(&mut got).map(|_| got)
    });
    let mut h = Harness::new();
    let mut ep = GuestTcp::new(TcpOpts::default(), 40040, server.guest_addr(), 4242);
    ep.connect(Instant::now(), &mut h.backend);
    let established = h.drive(&mut ep, Duration::from_secs(2), |ep, _| {
        ep.state() == State::Established
    });
    assert!(established);
    ep.send(b"last words");
    ep.close();
    let acked = h.drive(&mut ep, Duration::from_secs(2), |ep, _| ep.fin_acked());
    assert!(acked, "FIN acknowledged: {:?}", ep.stats());
    assert_eq!(ep.stats().fin_with_data, 1);
    assert_eq!(ep.stats().segments_sent, 1, "one segment had data and FIN");
    let got = server.join().expect("a connection").expect("read to EOF");
    assert_eq!(got, b"last words", "the data, then end of stream");
    // The server closed after EOF: the guest gets a FIN and the flow ends.
    let closed = h.drive(&mut ep, Duration::from_secs(2), |ep, backend| {
        ep.peer_fin() && backend.open_flows(Protocol::Tcp) == 0
    });
    assert!(closed, "flow closed");
    let counters = h.backend.counters();
    assert_eq!(counters.tcp_flows_closed, 1);
    assert_eq!(counters.tcp_bytes_to_host, 10);
    h.assert_quiet("tcp fin carrying data reaches host then eof");
}

#[test]
pub(crate) fn tcp_half_close_guest_to_host() {
    let request = pattern(200_000, 11);
    let expected = format!("got 200000 bytes, hash {:016x}", fnv(&request));
    let server = serve(listen(), |mut stream| {
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        let reply = format!("got {} bytes, hash {:016x}", got.len(), fnv(&got));
        stream.write_all(reply.as_bytes()).unwrap();
        reply
    });
    let mut h = Harness::new();
    let mut ep = GuestTcp::new(TcpOpts::default(), 40041, server.guest_addr(), 99);
    ep.connect(Instant::now(), &mut h.backend);
    ep.send_vec(request);
    ep.close();
    // The guest's FIN goes first; the reply still reaches it.
    let done = h.drive(&mut ep, Duration::from_secs(5), |ep, backend| {
        ep.peer_fin() && backend.open_flows(Protocol::Tcp) == 0
    });
    assert!(done, "reply and close: {:?}", ep.stats());
    assert!(ep.fin_acked());
    assert_eq!(server.join().as_deref(), Some(expected.as_str()));
    assert_eq!(ep.received(), expected.as_bytes());
    assert_eq!(h.backend.counters().tcp_flows_closed, 1);
    h.assert_quiet("tcp half close guest to host");
}

#[test]
pub(crate) fn tcp_half_close_host_to_guest() {
    let upload = pattern(200_000, 12);
    let server = serve(listen(), |mut stream| {
        stream.write_all(b"greetings; send me yours").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        got
    });
    let mut h = Harness::new();
    let mut ep = GuestTcp::new(TcpOpts::default(), 40042, server.guest_addr(), 7);
    ep.connect(Instant::now(), &mut h.backend);
    let fin = h.drive(&mut ep, Duration::from_secs(2), |ep, _| ep.peer_fin());
    assert!(fin, "host FIN: {:?}", ep.stats());
    assert_eq!(ep.received(), b"greetings; send me yours");
    // Half-closed toward the guest, which still sends.
    ep.send_vec(upload.clone());
    ep.close();
    let done = h.drive(&mut ep, Duration::from_secs(5), |ep, _| ep.fin_acked());
    assert!(done, "upload: {:?}", ep.stats());
    let got = server.join().expect("a connection");
    assert_eq!(got.len(), upload.len());
    assert!(got == upload, "the host read the guest's bytes");
    assert_no_rst(&h.stray);
    h.assert_quiet("tcp half close host to guest");
}

#[test]
pub(crate) fn tcp_host_rst_becomes_guest_rst() {
    let server = serve(listen(), |mut stream| {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).unwrap();
        reset(stream);
    });
    let mut h = Harness::new();
    let mut ep = GuestTcp::new(TcpOpts::default(), 40043, server.guest_addr(), 12_345);
    ep.connect(Instant::now(), &mut h.backend);
    ep.send(b"!");
    let reset_seen = h.drive(&mut ep, Duration::from_secs(2), |ep, _| {
        ep.state() == State::Reset
    });
    assert!(reset_seen, "the guest is reset: {:?}", ep.stats());
    assert_eq!(
        ep.stats().exact_rsts,
        1,
        "at the sequence number it expects"
    );
    assert_eq!(ep.stats().rsts, 1);
    server.join().expect("a connection");
    assert_eq!(h.backend.open_flows(Protocol::Tcp), 0);
    assert_eq!(h.backend.counters().tcp_flows_closed, 1);
    h.assert_quiet("tcp host rst becomes guest rst");
}

#[test]
pub(crate) fn tcp_segment_for_unknown_flow_gets_rst() {
    let mut h = Harness::new();
    let dst = via_gateway(9);
    // With ACK: <SEQ=SEG.ACK><CTL=RST>.
    h.send(&GuestSeg::bare(40050, dst, 1000, Some(5000), TcpControl::Psh).frame(b"data"));
    let frame = h.poll_queued().expect("an RST");
    let rst = frame.tcp().expect("TCP");
    assert!(rst.rst && rst.ack.is_none(), "{rst:?}");
    assert_eq!(rst.seq, 5000);
    assert_eq!(
        (rst.src, rst.dst),
        (dst, SocketAddrV4::new(GUEST_IP, 40050))
    );
    // Without ACK: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    h.send(&GuestSeg::bare(40051, dst, 7000, None, TcpControl::Fin).frame(b"abc"));
    let frame = h.poll_queued().expect("an RST");
    let rst = frame.tcp().expect("TCP");
    assert!(rst.rst, "{rst:?}");
    assert_eq!((rst.seq, rst.ack), (0, Some(7000 + 3 + 1)));
    // An RST is never answered.
    h.send(&GuestSeg::bare(40052, dst, 1, Some(2), TcpControl::Rst).frame(&[]));
    let frames = h.collect_for(Duration::from_millis(50));
    assert!(frames.is_empty(), "{frames:?}");
    let counters = h.backend.counters();
    assert_eq!(counters.rst_unknown, 2);
    assert_eq!(counters.tcp_flows_opened, 0);
    assert_eq!(h.backend.open_flows(Protocol::Tcp), 0);
    h.assert_quiet("tcp segment for unknown flow gets rst");
}

#[test]
fn tcp_deny_cidr_gets_rst_without_socket() {
    let listener = listen();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config = default_config();
    config.rules.deny = "10.0.2.2/32".parse().unwrap();
    let mut h = Harness::with_config(config);
    h.send(&GuestSeg::syn(40060, via_gateway(port), 300, Some(7)).frame(&[]));
    // The verdict comes before any socket: the RST is there at once.
    let frame = h.poll_queued().expect("an RST at once");
    let rst = frame.tcp().expect("TCP");
    assert!(rst.rst && !rst.syn, "{rst:?}");
    assert_eq!(rst.ack, Some(301));
    let counters = h.backend.counters();
    assert_eq!(counters.denied, 1);
    assert_eq!(counters.tcp_flows_opened, 0);
    assert_eq!(h.backend.open_flows(Protocol::Tcp), 0);
    let later = h.collect_for(Duration::from_millis(100));
    assert!(later.is_empty(), "{later:?}");
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no connection reached the server: {accepted:?}"
    );
    h.assert_quiet("tcp deny cidr gets rst without socket");
}

#[test]
fn tcp_flow_limit_and_syn_rate_limit_are_counted() {
    // The kernel completes handshakes on the listen queue; nobody accepts.
    let listener = listen();
    let dst = via_gateway(listener.local_addr().unwrap().port());
    let mut config = default_config();
    config.limits = Limits {
        tcp: 2,
        ..Limits::DEFAULT
    };
    config.new_tcp_per_second = 3;
    let mut h = Harness::with_config(config);
    for (i, port) in (40070u16..40074).enumerate() {
        let iss = 1000 * (u32::try_from(i).unwrap() + 1);
        h.send(&GuestSeg::syn(port, dst, iss, Some(7)).frame(&[]));
    }
    let counters = h.backend.counters().clone();
    assert_eq!(counters.tcp_flows_opened, 2);
    assert_eq!(counters.flow_limit_drops, 1, "the third SYN");
    assert_eq!(
        counters.syn_rate_drops, 1,
        "the fourth SYN, past 3 per second"
    );
    assert_eq!(h.backend.open_flows(Protocol::Tcp), 2);
    let mut syn_acks = 0;
    let frames = h.collect_until(Duration::from_secs(2), |f| {
        syn_acks += usize::from(f.tcp().is_some_and(|t| t.syn));
        syn_acks == 2
    });
    let to = |port| -> Vec<_> { frames.iter().filter_map(|f| f.tcp_to(port)).collect() };
    assert!(to(40070).iter().any(|t| t.syn && !t.rst));
    assert!(to(40071).iter().any(|t| t.syn && !t.rst));
    let refused = to(40072);
    assert!(
        refused.len() == 1 && refused[0].rst && refused[0].ack == Some(3001),
        "over the flow limit: an RST: {refused:?}"
    );
    assert!(to(40073).is_empty(), "over the rate: dropped silently");
    h.assert_quiet("tcp flow limit and syn rate limit are counted");
}

#[test]
fn tcp_inbound_port_forward_reaches_guest() {
    let port = free_port();
    let mut config = default_config();
    config.rules.tcp_forwards = format!("127.0.0.1/{port}:8080").parse().unwrap();
    let mut h = Harness::with_config(config);
    let host_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert_eq!(h.backend.tcp_listeners(), [host_addr]);
    let client = thread::spawn(move || {
        let mut stream = TcpStream::connect_timeout(&host_addr, Duration::from_secs(5)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(b"ping").unwrap();
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        (reply, rest)
    });
    let frames = h.collect_until(Duration::from_secs(5), |f| {
        f.tcp_to(8080).is_some_and(|t| t.syn)
    });
    let frame = frames.last().expect("a SYN");
    let syn = frame
        .tcp_to(8080)
        .filter(|t| t.syn)
        .expect("a SYN to port 8080");
    assert_eq!(syn.ack, None);
    assert_eq!(*syn.src.ip(), GATEWAY_IP, "host loopback is the gateway");
    assert_eq!(syn.dst, SocketAddrV4::new(GUEST_IP, 8080));
    assert_eq!(syn.mss, Some(65480));
    assert_eq!(syn.wscale, Some(7));
    let mut ep = GuestTcp::accept(
        TcpOpts::default(),
        &syn,
        0x8000_0000,
        Instant::now(),
        &mut h.backend,
    );
    let pinged = h.drive(&mut ep, Duration::from_secs(3), |ep, _| {
        ep.received() == b"ping"
    });
    assert!(pinged, "data from the host: {:?}", ep.stats());
    ep.send(b"pong");
    ep.close();
    let done = h.drive(&mut ep, Duration::from_secs(3), |ep, backend| {
        ep.fin_acked() && ep.peer_fin() && backend.open_flows(Protocol::Tcp) == 0
    });
    assert!(done, "reply and close: {:?}", ep.stats());
    let (reply, rest) = client.join().unwrap();
    assert_eq!(&reply, b"pong");
    assert!(rest.is_empty());
    assert_eq!(h.backend.counters().tcp_flows_accepted, 1);
    h.assert_quiet("tcp inbound port forward reaches guest");
}

/// A TCP client on 127.0.0.1 bound to local `port` (with `SO_REUSEADDR`,
/// so that it may take a port whose last connection is in TIME-WAIT).
fn connect_from_port(port: u16, to: SocketAddr) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket, sockopt};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    sockopt::set_socket_reuseaddr(&fd, true).unwrap();
    bind(&fd, &SocketAddr::from((Ipv4Addr::LOCALHOST, port))).unwrap();
    connect(&fd, &to).unwrap();
    let stream = TcpStream::from(fd);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// The host peer reuses its port as soon as its own TIME-WAIT lets it
/// (Linux: after a second on loopback, `tcp_tw_reuse` = 2). slipway, which
/// closed first toward the guest, still lingers in TIME-WAIT for that
/// 4-tuple: the new connection must take over, not be reset.
#[test]
fn tcp_inbound_forward_reuses_a_port_slipway_holds_in_time_wait() {
    let port = free_port();
    let client_port = free_port();
    let mut config = default_config();
    config.rules.tcp_forwards = format!("127.0.0.1/{port}:8080").parse().unwrap();
    let mut h = Harness::with_config(config);
    let host_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    for round in 0..2u32 {
        if round > 0 {
            thread::sleep(Duration::from_millis(1100));
        }
        let client = thread::spawn(move || {
            let mut stream = connect_from_port(client_port, host_addr);
            stream.write_all(b"ping").unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply).unwrap();
            reply
        });
        let frames = h.collect_until(Duration::from_secs(5), |f| {
            f.tcp_to(8080).is_some_and(|t| t.syn)
        });
        let syn = frames
            .iter()
            .find_map(|f| f.tcp_to(8080).filter(|t| t.syn))
            .unwrap_or_else(|| panic!("round {round}: no SYN toward the guest"));
        assert_eq!(syn.src.port(), client_port);
        let mut ep = GuestTcp::accept(
            TcpOpts::default(),
            &syn,
            0x8000_0000 + round * 0x1000_0000,
            Instant::now(),
            &mut h.backend,
        );
        let pinged = h.drive(&mut ep, Duration::from_secs(3), |ep, _| {
            ep.received() == b"ping" && ep.peer_fin()
        });
        assert!(pinged, "round {round}: data and FIN: {:?}", ep.stats());
        ep.send(b"pong");
        ep.close();
        let done = h.drive(&mut ep, Duration::from_secs(3), |ep, _| ep.fin_acked());
        assert!(done, "round {round}: close: {:?}", ep.stats());
        assert_eq!(client.join().unwrap(), b"pong", "round {round}");
    }
    let counters = h.backend.counters();
    assert_eq!(counters.tcp_flows_accepted, 2);
    assert_eq!(counters.time_wait_reclaimed, 1);
    assert_eq!(counters.flow_limit_drops, 0);
    h.assert_quiet("tcp inbound forward reuses a port slipway holds in time wait");
}

#[test]
fn tcp_to_port_53_of_the_dns_address_reaches_the_upstream() {
    let listener = listen();
    let upstream = listener.local_addr().unwrap();
    let server = serve(listener, |mut stream| {
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    let mut config = default_config();
    config.host_resolver = Some(upstream);
    let mut h = Harness::with_config(config);
    let dns = SocketAddrV4::new(DNS_IP, 53);
    h.send(&GuestSeg::syn(40053, dns, 5000, Some(7)).frame(&[]));
    let frames = h.collect_until(Duration::from_secs(2), |f| f.tcp().is_some());
    let syn_ack = frames.last().and_then(Frame::tcp).expect("a segment");
    assert!(syn_ack.syn && !syn_ack.rst, "a SYN-ACK: {syn_ack:?}");
    assert_eq!(syn_ack.src, dns, "answered as the DNS address");
    assert!(
        server.accepted_within(Duration::from_secs(2)).is_some(),
        "the upstream resolver saw the connection"
    );
    h.assert_quiet("tcp to port 53 of the dns address reaches the upstream");
}
