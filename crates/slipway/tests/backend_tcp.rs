//! Frame-level tests of the backend's front desk (ARP, DHCP) and TCP relay
//! against real host sockets on 127.0.0.1, no root needed.
//!
//! A synthetic guest (`support`) sends Ethernet frames built with
//! `smoltcp::wire` and drives the backend on real time; servers are threads
//! on 127.0.0.1 with ephemeral ports, which the guest reaches through the
//! gateway address (host-loopback mapping is on by default). Each test is
//! named for the contract it checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::harness;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use flow_table::{Limits, Protocol};
use frontdesk::DropReason;
use smoltcp::wire::{ArpOperation, ArpRepr, DhcpMessageType, TcpControl};

use harness::frames::{arp_request, check_dhcp_reply, dhcp_message};
use harness::{
    DNS_IP, Fnv, Frame, GATEWAY_IP, GUEST_IP, GUEST_MAC, GuestSeg, GuestStats, GuestTcp, Harness,
    Impairments, State, TcpOpts, default_config, fnv, free_port, gateway_mac, listen, listen_with,
    pattern, reset, serve, via_gateway,
};

/// The size of the bulk transfers.
const BULK: usize = 64 << 20;

/// Reads everything until end of stream, then sends it back and closes.
fn echo_once(mut stream: TcpStream) -> usize {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    stream.write_all(&got).unwrap();
    got.len()
}

fn assert_no_rst(frames: &[Frame]) {
    let rsts: Vec<_> = frames
        .iter()
        .filter_map(Frame::tcp)
        .filter(|t| t.rst)
        .collect();
    assert!(rsts.is_empty(), "unexpected RSTs: {rsts:?}");
}

fn report(name: &str, bytes: usize, elapsed: Duration) {
    let mib = bytes as f64 / f64::from(1u32 << 20);
    eprintln!(
        "{name}: {mib:.0} MiB in {elapsed:.2?} ({:.0} MiB/s)",
        mib / elapsed.as_secs_f64()
    );
}

#[test]
fn arp_answers_gateway_and_dns_but_not_guest_or_outside() {
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
fn dhcp_full_exchange_gives_address_router_dns_mtu() {
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

#[test]
fn tcp_syn_ack_only_after_host_connect() {
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
fn tcp_refused_connect_gets_rst_within_100ms() {
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
fn tcp_slow_connect_does_not_delay_another_flow() {
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
fn tcp_duplicate_syn_while_connecting_does_not_reset_flow() {
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
fn tcp_no_window_scale_option_when_guest_offered_none() {
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
fn tcp_fin_carrying_data_reaches_host_then_eof() {
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
fn tcp_half_close_guest_to_host() {
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
fn tcp_half_close_host_to_guest() {
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
fn tcp_host_rst_becomes_guest_rst() {
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
fn tcp_segment_for_unknown_flow_gets_rst() {
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

/// Sends `data` from the guest to a server whose receive buffer is 4 KiB
/// and checks that every byte arrived in order.
fn guest_to_host_small_rcvbuf(name: &str, impair: Impairments) -> GuestStats {
    let data = pattern(BULK, 0xb01c);
    let expected = fnv(&data);
    let server = serve(listen_with(Some(4096), 16), |mut stream| {
        let mut hash = Fnv::new();
        let mut total = 0usize;
        let mut buf = vec![0u8; 4096];
        let mut pause_at = 1 << 20;
        for _ in 0..BULK {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            total += n;
            if total >= pause_at {
                // Slow enough now and then for the window to shut.
                thread::sleep(Duration::from_millis(1));
                pause_at += 1 << 20;
            }
        }
        (total, hash.finish())
    });
    let mut h = Harness::new();
    let opts = TcpOpts {
        impair,
        ..TcpOpts::default()
    };
    // Sequence numbers wrap after the first mebibyte.
    let mut ep = GuestTcp::new(opts, 40100, server.guest_addr(), u32::MAX - 1_000_000);
    let start = Instant::now();
    ep.connect(start, &mut h.backend);
    ep.send_vec(data);
    ep.close();
    let done = h.drive(&mut ep, Duration::from_secs(40), |ep, _| ep.fin_acked());
    let elapsed = start.elapsed();
    assert!(
        done,
        "transfer stalled: {:?} {:?}",
        ep.stats(),
        h.backend.counters()
    );
    let (total, hash) = server.join().expect("a connection");
    assert_eq!(total, BULK);
    assert_eq!(hash, expected, "the host read the guest's bytes in order");
    assert_eq!(h.backend.counters().tcp_bytes_to_host, BULK as u64);
    report(name, BULK, elapsed);
    h.assert_quiet(name);
    *ep.stats()
}

/// Sends `BULK` bytes from a host server to a guest with a 4 KiB window
/// and checks that every byte arrived in order.
fn host_to_guest_4k_window(name: &str, impair: Impairments) -> GuestStats {
    let data = pattern(BULK, 0x4057);
    let expected = fnv(&data);
    let server = serve(listen(), move |mut stream| stream.write_all(&data).unwrap());
    let mut h = Harness::new();
    let opts = TcpOpts {
        window: 4096,
        wscale: None,
        impair,
        ..TcpOpts::default()
    };
    let mut ep = GuestTcp::new(opts, 40200, server.guest_addr(), 31337);
    let start = Instant::now();
    ep.connect(start, &mut h.backend);
    let done = h.drive(&mut ep, Duration::from_secs(40), |ep, _| ep.peer_fin());
    let elapsed = start.elapsed();
    assert!(
        done,
        "transfer stalled: {:?} {:?}",
        ep.stats(),
        h.backend.counters()
    );
    assert_eq!(ep.received_len(), BULK as u64);
    assert_eq!(
        ep.received_hash(),
        expected,
        "the guest got the bytes in order"
    );
    assert_eq!(ep.stats().window_violations, 0, "never past the window");
    server.join().expect("a connection");
    report(name, BULK, elapsed);
    // slipway closed first, so its flow lingers in TIME-WAIT afterwards.
    ep.close();
    let closed = h.drive(&mut ep, Duration::from_secs(2), |ep, _| ep.fin_acked());
    assert!(closed, "the guest's FIN is acknowledged");
    h.assert_quiet(name);
    *ep.stats()
}

#[test]
fn tcp_64mib_guest_to_host_small_rcvbuf_hash_verified() {
    let stats = guest_to_host_small_rcvbuf("guest to host", Impairments::default());
    assert_eq!(stats.rsts, 0);
}

#[test]
fn tcp_64mib_guest_to_host_small_rcvbuf_lossy_guest_hash_verified() {
    let impair = Impairments {
        loss: 20,
        duplicate: 20,
        reorder: 20,
        ..Impairments::default()
    };
    let stats = guest_to_host_small_rcvbuf("guest to host, lossy guest", impair);
    assert!(stats.lost > 0 && stats.duplicated > 0 && stats.reordered > 0);
    assert_eq!(stats.rsts, 0);
}

#[test]
fn tcp_64mib_host_to_guest_4k_window_hash_verified() {
    let stats = host_to_guest_4k_window("host to guest", Impairments::default());
    assert_eq!(stats.rsts, 0);
}

#[test]
fn tcp_64mib_host_to_guest_4k_window_dropped_acks_retransmitted() {
    let impair = Impairments {
        drop_every_nth_ack: 2000,
        max_ack_drops: 6,
        ..Impairments::default()
    };
    let stats = host_to_guest_4k_window("host to guest, dropped ACKs", impair);
    assert_eq!(stats.acks_dropped, 6);
    assert!(
        stats.dup_segments >= stats.acks_dropped,
        "slipway retransmitted every segment whose ACK was lost: {stats:?}"
    );
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

// ----- host peers as on a real network -----

/// A listener on 127.0.0.1 whose connections announce MSS 1460, as a peer
/// on a real network does: the host socket slipway connects to it then has
/// a send buffer (about 69 KB) that never frees a 65480-byte segment.
fn listen_mss_1460() -> std::net::TcpListener {
    use rustix::net::{AddressFamily, SocketType, bind, listen, socket};
    use std::os::fd::AsRawFd;
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    let mss: libc::c_int = 1460;
    // SAFETY: `fd` is a live socket for the call; the value points at a
    // `c_int` that outlives it, and the length is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&raw const mss).cast::<libc::c_void>(),
            libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap(),
        )
    };
    assert_eq!(rc, 0, "TCP_MAXSEG: {}", std::io::Error::last_os_error());
    bind(&fd, &SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    listen(&fd, 16).unwrap();
    std::net::TcpListener::from(fd)
}

/// Opens a connection from the guest (MSS 65480, slipway's default MTU) to
/// `server` and drives it until established.
fn open_flow_to<T>(h: &mut Harness, server: &harness::Server<T>, port: u16) -> GuestTcp {
    let mut ep = GuestTcp::new(TcpOpts::default(), port, server.guest_addr(), 0x1234_0000);
    ep.connect(Instant::now(), &mut h.backend);
    let up = h.drive(&mut ep, Duration::from_secs(5), |ep, _| {
        ep.state() == State::Established
    });
    assert!(up, "handshake: {:?}", ep.stats());
    assert!(
        server.accepted_within(Duration::from_secs(5)).is_some(),
        "the server saw the connection"
    );
    ep
}

/// An idle connection from a guest with a 65520-byte MTU to a peer with
/// MSS 1460: the host send buffer never frees a whole guest segment, and
/// the flow must not wait for writable readiness the socket reports all the
/// time (a level-triggered `EPOLLOUT` on every wait).
#[test]
fn idle_flow_to_mss_1460_peer_leaves_loop_quiet() {
    let server = serve(listen_mss_1460(), |mut stream| {
        let mut got = [0u8; 10];
        stream.read_exact(&mut got).unwrap();
        got
    });
    let mut h = Harness::new();
    let mut ep = open_flow_to(&mut h, &server, 40100);
    h.assert_quiet("an idle flow to an MSS-1460 peer");

    // The flow still carries data, both ways.
    ep.send(b"still here");
    let acked = h.drive(&mut ep, Duration::from_secs(3), |ep, _| ep.all_acked());
    assert!(acked, "guest data after the idle time: {:?}", ep.stats());
    let closed = h.drive(&mut ep, Duration::from_secs(3), |ep, _| ep.peer_fin());
    assert!(closed, "the server's FIN: {:?}", ep.stats());
    assert_eq!(&server.join().expect("the server ran"), b"still here");
}

/// A host peer's urgent byte (`send(MSG_OOB)`) is one more byte of the
/// stream for the guest, whose socket gets no urgent pointer: every byte,
/// the urgent one included, arrives in order, and the flow goes on.
#[test]
fn urgent_byte_from_host_peer_reaches_guest_in_order() {
    let head = pattern(200_000, 41);
    let tail = pattern(300_000, 42);
    let mut expected = head.clone();
    expected.push(b'!');
    expected.extend_from_slice(&tail);
    let server = serve(listen(), move |mut stream| {
        stream.write_all(&head).unwrap();
        thread::sleep(Duration::from_millis(20));
        let sent = rustix::net::send(&stream, b"!", rustix::net::SendFlags::OOB).unwrap();
        assert_eq!(sent, 1);
        thread::sleep(Duration::from_millis(20));
        stream.write_all(&tail).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        rest
    });
    let mut h = Harness::new();
    let mut ep = open_flow_to(&mut h, &server, 40101);
    let total = expected.len() as u64;
    let done = h.drive(&mut ep, Duration::from_secs(10), |ep, _| ep.peer_fin());
    assert!(
        done,
        "{} of {total} bytes and no FIN: {:?}",
        ep.received_len(),
        ep.stats()
    );
    assert_eq!(ep.received_len(), total);
    assert_eq!(ep.received_hash(), fnv(&expected), "bytes in order");
    assert_eq!(ep.stats().rsts, 0);
    h.assert_quiet("after a stream with an urgent byte");

    // The flow goes on after the mark: the guest's reply reaches the peer.
    ep.send(b"after the mark");
    ep.close();
    let closed = h.drive(&mut ep, Duration::from_secs(5), |ep, _| ep.fin_acked());
    assert!(closed, "close: {:?}", ep.stats());
    assert_eq!(server.join().expect("the server ran"), b"after the mark");
}

// ----- TCP options as Linux reads them -----

/// The frame of `seg` with `options` (a multiple of 4 bytes, written as
/// they are, however malformed) in place of its own, carrying `payload`.
fn frame_with_raw_options(seg: &GuestSeg, options: &[u8], payload: &[u8]) -> Vec<u8> {
    use smoltcp::wire::{IpAddress, IpProtocol, TcpPacket};
    assert_eq!(options.len() % 4, 0, "options fill whole words");
    let tcp_len = 20 + options.len() + payload.len();
    let mut buf = vec![0u8; 14 + 20 + tcp_len];
    let (src, dst) = (GUEST_IP, *seg.dst.ip());
    let len = harness::frames::write_ipv4(
        &mut buf,
        gateway_mac(),
        src,
        dst,
        IpProtocol::Tcp,
        tcp_len,
        |area| {
            let mut tcp = TcpPacket::new_unchecked(area);
            tcp.set_src_port(seg.src_port);
            tcp.set_dst_port(seg.dst.port());
            tcp.set_seq_number(smoltcp::wire::TcpSeqNumber(i32::from_ne_bytes(
                seg.seq.to_ne_bytes(),
            )));
            tcp.set_ack_number(smoltcp::wire::TcpSeqNumber(i32::from_ne_bytes(
                seg.ack.unwrap_or(0).to_ne_bytes(),
            )));
            tcp.set_header_len(u8::try_from(20 + options.len()).unwrap());
            tcp.clear_flags();
            tcp.set_syn(seg.control == TcpControl::Syn);
            tcp.set_fin(seg.control == TcpControl::Fin);
            tcp.set_psh(seg.control == TcpControl::Psh);
            tcp.set_ack(seg.ack.is_some());
            tcp.set_window_len(seg.window);
            tcp.set_urgent_at(0);
            tcp.options_mut().copy_from_slice(options);
            tcp.payload_mut().copy_from_slice(payload);
            tcp.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
        },
    );
    buf.truncate(len);
    buf
}

/// Sends `syn` (a frame) from guest port `port`, takes slipway's SYN-ACK and
/// acknowledges it with a bare ACK from guest sequence number `iss + 1`;
/// returns the SYN-ACK's sequence number and MSS option.
fn raw_handshake(
    h: &mut Harness,
    syn: &[u8],
    port: u16,
    to: SocketAddrV4,
    iss: u32,
) -> (u32, Option<u16>) {
    h.send(syn);
    let frames = h.collect_until(Duration::from_secs(3), |f| {
        f.tcp().is_some_and(|t| t.dst.port() == port)
    });
    let syn_ack = frames
        .last()
        .and_then(Frame::tcp)
        .expect("an answer to the SYN");
    assert!(syn_ack.syn && !syn_ack.rst, "a SYN-ACK: {syn_ack:?}");
    assert_eq!(syn_ack.ack, Some(iss.wrapping_add(1)));
    let ack = GuestSeg::bare(
        port,
        to,
        iss.wrapping_add(1),
        Some(syn_ack.seq.wrapping_add(1)),
        TcpControl::None,
    );
    h.send(&ack.frame(&[]));
    (syn_ack.seq, syn_ack.mss)
}

/// Linux stops reading options at one whose length is 0 (or 1, or runs past
/// the header) and keeps the segment with the options before it: such a
/// SYN is answered, and the MSS it carried bounds every segment to the
/// guest.
#[test]
fn syn_with_mss_then_zero_length_option_is_answered_and_the_mss_kept() {
    let data = pattern(20_000, 51);
    let sent = data.clone();
    let server = serve(listen(), move |mut stream| {
        stream.write_all(&sent).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    let mut h = Harness::new();
    let port = 40110;
    let iss = 0x0100_0000;
    let syn = GuestSeg {
        mss: None,
        ..GuestSeg::syn(port, server.guest_addr(), iss, None)
    };
    // MSS 1460, then an option of kind 8 with length 0, then padding.
    let options = [2, 4, 0x05, 0xb4, 8, 0, 0, 0];
    let frame = frame_with_raw_options(&syn, &options, &[]);
    let (_, mss) = raw_handshake(&mut h, &frame, port, server.guest_addr(), iss);
    assert_eq!(mss, Some(65480), "slipway's own MSS");

    let mut got = Vec::new();
    let frames = h.collect_until(Duration::from_secs(5), |f| {
        if let Some(t) = f.tcp_to(port) {
            got.extend_from_slice(t.payload);
        }
        got.len() >= data.len()
    });
    let lens: Vec<usize> = frames
        .iter()
        .filter_map(|f| f.tcp_to(port))
        .map(|t| t.payload.len())
        .filter(|&len| len > 0)
        .collect();
    assert_eq!(got, data, "the host's bytes: {lens:?}");
    assert!(
        lens.iter().all(|&len| len <= 1460) && lens.contains(&1460),
        "segments cut to the guest's MSS of 1460: {lens:?}"
    );
}

/// A data segment whose options end in one running past the header is kept,
/// as Linux keeps it: its payload reaches the host and is acknowledged.
#[test]
fn data_segment_with_overlong_option_is_delivered() {
    let server = serve(listen(), |mut stream| {
        let mut got = [0u8; 5];
        stream.read_exact(&mut got).unwrap();
        got
    });
    let mut h = Harness::new();
    let port = 40111;
    let iss = 0x0200_0000;
    let syn = GuestSeg::syn(port, server.guest_addr(), iss, None).frame(&[]);
    let (their_iss, _) = raw_handshake(&mut h, &syn, port, server.guest_addr(), iss);
    let data = GuestSeg::bare(
        port,
        server.guest_addr(),
        iss.wrapping_add(1),
        Some(their_iss.wrapping_add(1)),
        TcpControl::Psh,
    );
    // A NOP, then a timestamps option claiming 10 bytes where 3 are left.
    let options = [1, 8, 10, 0];
    h.send(&frame_with_raw_options(&data, &options, b"hello"));
    let frames = h.collect_until(Duration::from_secs(3), |f| {
        f.tcp_to(port)
            .is_some_and(|t| t.ack == Some(iss.wrapping_add(6)))
    });
    assert!(
        frames
            .iter()
            .filter_map(|f| f.tcp_to(port))
            .any(|t| t.ack == Some(iss.wrapping_add(6))),
        "the 5 bytes are acknowledged: {frames:?}"
    );
    assert_eq!(&server.join().expect("the server ran"), b"hello");
}

// ----- half-open flows -----

/// Half-open flows (the guest's SYN taken, its handshake not complete).
fn half_open_flows(h: &Harness) -> u32 {
    use flow_table::tcp::Phase;
    h.backend
        .tcp_flows_by_phase()
        .into_iter()
        .filter(|(phase, _)| matches!(phase, Phase::Connecting | Phase::SynReceived))
        .map(|(_, n)| n)
        .sum()
}

/// A guest that sends SYNs and never acknowledges the SYN-ACKs holds a host
/// socket per SYN: such half-open flows are capped like a SYN backlog (the
/// SYNs beyond dropped and counted), a proper connection still gets in
/// (its retransmitted SYN once there is room), and at the handshake timeout
/// the half-open flows are reset and their sockets closed.
#[test]
fn half_open_flows_are_capped_and_reclaimed_at_the_handshake_timeout() {
    const CAP: u32 = 8;
    const SYNS: u16 = 40;
    let listener = listen_with(None, 128);
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    // Accepts every connection until told to stop, then reports how many
    // it took and how many of them saw slipway's socket close.
    let acceptor = thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut streams = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => streams.push(stream),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if stopped.try_recv().is_ok() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        let closed = streams
            .iter_mut()
            .filter(|stream| {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut byte = [0u8; 1];
                let mut reader: &TcpStream = stream;
                match reader.read(&mut byte) {
                    Ok(0) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                    Ok(_) => false,
                }
            })
            .count();
        (streams.len(), closed)
    });

    let mut config = default_config();
    config.max_half_open_tcp = CAP;
    config.tcp_handshake_timeout = Duration::from_millis(1500);
    let mut h = Harness::with_config(config);
    for i in 0..SYNS {
        let syn = GuestSeg::syn(41_000 + i, via_gateway(port), 1000 * u32::from(i), None);
        h.send(&syn.frame(&[]));
    }
    let mut seen = 0;
    let mut frames = h.collect_until(Duration::from_secs(5), |f| {
        seen += usize::from(f.tcp().is_some_and(|t| t.syn && t.ack.is_some()));
        seen == CAP as usize
    });
    frames.extend(h.collect_for(Duration::from_millis(200)));
    let syn_acks = frames
        .iter()
        .filter_map(Frame::tcp)
        .filter(|t| t.syn && t.ack.is_some())
        .count();
    assert_eq!(syn_acks, CAP as usize, "one SYN-ACK per admitted SYN");
    assert_eq!(half_open_flows(&h), CAP);
    assert_eq!(h.backend.open_flows(Protocol::Tcp), CAP);
    assert_eq!(
        h.backend.counters().syn_backlog_drops,
        u64::from(SYNS) - u64::from(CAP)
    );
    assert!(
        frames.iter().filter_map(Frame::tcp).all(|t| !t.rst),
        "dropped SYNs get no answer"
    );

    let opts = TcpOpts {
        rto: Duration::from_millis(100),
        max_rto: Duration::from_millis(400),
        ..TcpOpts::default()
    };
    let mut ep = GuestTcp::new(opts, 42_000, via_gateway(port), 0x7000_0000);
    let start = Instant::now();
    ep.connect(start, &mut h.backend);
    let up = h.drive(&mut ep, Duration::from_secs(10), |ep, _| {
        ep.state() == State::Established
    });
    assert!(up, "a proper connection gets in: {:?}", ep.stats());
    eprintln!("proper connection established after {:?}", start.elapsed());

    let gone = h.drive(&mut ep, Duration::from_secs(5), |_, backend| {
        backend.open_flows(Protocol::Tcp) == 1
    });
    assert!(gone, "half-open flows left: {}", half_open_flows(&h));
    assert_eq!(half_open_flows(&h), 0);
    let resets = h
        .stray
        .iter()
        .filter_map(Frame::tcp)
        .filter(|t| t.rst)
        .count();
    assert_eq!(resets, CAP as usize, "each timed-out flow resets the guest");

    ep.close();
    let closed = h.drive(&mut ep, Duration::from_secs(3), |ep, _| ep.fin_acked());
    assert!(closed, "close: {:?}", ep.stats());
    h.assert_quiet("after half-open flows were reclaimed");
    stop.send(()).unwrap();
    let (accepted, seen_closed) = acceptor.join().unwrap();
    assert_eq!(
        accepted,
        CAP as usize + 1,
        "host connections: the admitted SYNs and the proper one"
    );
    assert_eq!(
        seen_closed, accepted,
        "every host connection saw slipway's socket close"
    );
}

#[test]
fn syn_to_a_broadcast_or_multicast_address_is_dropped_without_an_rst() {
    let mut h = Harness::new();
    let groups = [
        Ipv4Addr::new(10, 0, 2, 255),
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 251),
    ];
    for (i, group) in (0u16..).zip(groups) {
        let dst = SocketAddrV4::new(group, 80);
        h.send(&GuestSeg::syn(40100 + i, dst, 1000, Some(7)).frame(&[]));
        h.send(&GuestSeg::bare(40110 + i, dst, 1000, Some(5000), TcpControl::Psh).frame(b"x"));
    }
    let frames = h.collect_for(Duration::from_millis(200));
    assert!(
        frames.iter().all(|f| f.tcp().is_none()),
        "no segment answers a group address: {frames:?}"
    );
    assert_eq!(h.backend.counters().tcp_group_drops, 6);
    assert_eq!(h.backend.counters().rst_unknown, 0);
    assert_eq!(h.backend.open_flows(Protocol::Tcp), 0);
    // A unicast destination that opens no flow still gets its RST.
    let dst = via_gateway(9);
    h.send(&GuestSeg::bare(40120, dst, 1000, Some(5000), TcpControl::Psh).frame(b"x"));
    let rst = h.poll_queued().expect("an RST for a unicast destination");
    assert!(rst.tcp().is_some_and(|t| t.rst), "{rst:?}");
    h.assert_quiet("syn to a group address");
}
