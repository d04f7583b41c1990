//! Frame-level tests of what the backend hands the guest when the guest is
//! slow or its buffers are small: the queue of ready-made frames is bounded
//! in bytes, and no frame is ever cut to fit the caller's buffer.
//! Synthetic guest frames against real sockets on 127.0.0.1, no root needed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use slipway::Served;
use test_support::harness;

use slipway::FrameBackend;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use slipway::Backend;
use slipway::backend::MAX_QUEUED_BYTES;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpProtocol, TcpControl};

use harness::frames::{self, GATEWAY_IP, GuestSeg, Parsed, gateway_mac, parse, udp_frame};
use harness::{Harness, default_config, listen, pattern};

/// The longest frame of the default plan's link (MTU 65520).
const FULL_BUF: usize = 65520 + 14;

/// An ICMP echo request from the guest to `dst` carrying `data`.
fn echo_request(dst: Ipv4Addr, seq_no: u16, data: &[u8]) -> Vec<u8> {
    let repr = Icmpv4Repr::EchoRequest {
        ident: 0x4242,
        seq_no,
        data,
    };
    let mut frame = vec![0u8; 14 + 20 + repr.buffer_len()];
    frames::write_ipv4(
        &mut frame,
        gateway_mac(),
        frames::GUEST_IP,
        dst,
        IpProtocol::Icmp,
        repr.buffer_len(),
        |area| {
            repr.emit(
                &mut Icmpv4Packet::new_unchecked(area),
                &ChecksumCapabilities::default(),
            );
        },
    );
    frame
}

/// Every frame the backend has now, polled with a buffer of `len` bytes.
fn poll_all(backend: &mut Backend, len: usize) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let Some(n) = backend.poll_guest_frame(&mut buf, Instant::now()) else {
            break;
        };
        out.push(buf[..n].to_vec());
    }
    out
}

/// Echo replies among `frames`, asserting each is whole (its IP length
/// and checksums agree with its bytes).
fn echo_replies(frames: &[Vec<u8>]) -> usize {
    frames
        .iter()
        .filter(|frame| {
            matches!(
                parse(frame),
                Parsed::Icmp {
                    src: GATEWAY_IP,
                    msg_type: 0,
                    ..
                }
            )
        })
        .count()
}

#[test]
fn echoes_of_64_kib_to_the_gateway_without_polling_stay_within_the_queue_budget() {
    let mut backend = Backend::new(default_config(), Instant::now()).unwrap();
    let data = pattern(65_000, 1);
    const ECHOES: u16 = 256;
    for seq in 0..ECHOES {
        backend.handle_guest_frame(&echo_request(GATEWAY_IP, seq, &data), Instant::now());
        assert!(
            backend.queued_bytes() <= MAX_QUEUED_BYTES,
            "{} bytes queued after {seq} echoes",
            backend.queued_bytes()
        );
    }
    let queued_frames = MAX_QUEUED_BYTES / (14 + 20 + 8 + data.len());
    let drops = backend.counters().output_drops;
    assert_eq!(
        drops,
        u64::from(ECHOES) - queued_frames as u64,
        "overflow counted"
    );
    // The guest polls again: the queued replies come, whole, then nothing.
    let frames = poll_all(&mut backend, FULL_BUF);
    assert_eq!(echo_replies(&frames), queued_frames);
    assert_eq!(backend.queued_bytes(), 0);
    // And new echoes are answered again.
    backend.handle_guest_frame(&echo_request(GATEWAY_IP, 9999, b"again"), Instant::now());
    assert_eq!(echo_replies(&poll_all(&mut backend, FULL_BUF)), 1);
    assert_eq!(backend.counters().output_drops, drops);
}

#[test]
fn a_queued_echo_reply_larger_than_the_buffer_is_dropped_not_cut() {
    let mut backend = Backend::new(default_config(), Instant::now()).unwrap();
    backend.handle_guest_frame(&echo_request(GATEWAY_IP, 1, &[0x5a; 4000]), Instant::now());
    backend.handle_guest_frame(&echo_request(GATEWAY_IP, 2, &[0x5a; 100]), Instant::now());
    let frames = poll_all(&mut backend, 1514);
    // Only the reply that fits comes, whole; the other is counted.
    assert_eq!(frames.len(), 1, "no frame cut to fit");
    assert_eq!(echo_replies(&frames), 1);
    assert_eq!(frames[0].len(), 14 + 20 + 8 + 100);
    assert_eq!(backend.counters().buffer_too_small_drops, 1);
    assert_eq!(backend.counters().frames_to_guest, 1);
    assert_eq!(backend.queued_bytes(), 0);
}

#[test]
fn a_udp_datagram_larger_than_the_buffer_is_dropped_and_the_next_one_comes() {
    let mut h = Harness::new();
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = SocketAddrV4::new(GATEWAY_IP, server.local_addr().unwrap().port());
    h.send(&udp_frame(40_001, to, b"hello"));
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let (_, guest) = server.recv_from(&mut buf).expect("the guest's datagram");
    server.send_to(&[0xa5; 1400], guest).unwrap();
    server.send_to(b"small", guest).unwrap();
    let drops = h.backend.counters().udp_drops;
    // Polled with 600 bytes: the 1400-byte datagram cannot fit and is not
    // cut; the small one that follows comes whole.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.is_empty() && Instant::now() < deadline {
        h.backend
            .wait(Some(Instant::now() + Duration::from_millis(20)))
            .unwrap();
        got = poll_all(&mut h.backend, 600);
    }
    assert_eq!(got.len(), 1, "one frame, the one that fits");
    match parse(&got[0]) {
        Parsed::Udp { payload, .. } => assert_eq!(payload, b"small"),
        other => panic!("not the datagram: {other:?}"),
    }
    assert_eq!(
        h.backend.counters().udp_drops,
        drops + 1,
        "the drop is counted"
    );
    assert_eq!(h.backend.counters().buffer_too_small_drops, 0);
}

#[test]
fn tcp_segments_are_sized_to_a_small_buffer_and_all_data_arrives() {
    const SMALL: usize = 600;
    const TOTAL: usize = 20_000;
    let mut h = Harness::new();
    let listener = listen();
    let port = listener.local_addr().unwrap().port();
    let to = SocketAddrV4::new(GATEWAY_IP, port);
    let data = pattern(TOTAL, 7);
    let sent = data.clone();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(&sent).unwrap();
        let mut rest = Vec::new();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let _ = stream.read_to_end(&mut rest);
    });
    let iss = 1000u32;
    let mut syn = GuestSeg::syn(40_002, to, iss, None);
    syn.mss = Some(1460);
    h.send(&syn.frame(&[]));
    let mut buf = vec![0u8; SMALL];
    let mut received = Vec::new();
    let mut rcv_nxt = None::<u32>;
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.len() < TOTAL && Instant::now() < deadline {
        let now = Instant::now();
        h.backend.handle_host_events(now).unwrap();
        h.backend.handle_timeout(now);
        let mut polled = 0;
        while let Some(n) = h.backend.poll_guest_frame(&mut buf, Instant::now()) {
            polled += 1;
            assert!(polled < 10_000, "bounded");
            let Parsed::Tcp(view) = parse(&buf[..n]) else {
                continue;
            };
            assert!(!view.rst, "the flow is not reset");
            if view.syn {
                rcv_nxt = Some(view.seq.wrapping_add(1));
            } else if Some(view.seq) == rcv_nxt {
                assert!(view.payload.len() <= SMALL - 54, "within the buffer");
                received.extend_from_slice(view.payload);
                rcv_nxt = Some(view.seq.wrapping_add(view.payload.len() as u32));
            }
            let ack = GuestSeg::bare(40_002, to, iss + 1, rcv_nxt, TcpControl::None);
            h.send(&ack.frame(&[]));
        }
        if polled == 0 {
            h.backend
                .wait(Some(Instant::now() + Duration::from_millis(20)))
                .unwrap();
        }
    }
    assert_eq!(received.len(), TOTAL, "every byte arrived");
    assert!(received == data, "intact");
    assert_eq!(h.backend.counters().buffer_too_small_drops, 0);
    let fin = GuestSeg::bare(40_002, to, iss + 1, rcv_nxt, TcpControl::Fin);
    h.send(&fin.frame(&[]));
    let _ = poll_all(&mut h.backend, FULL_BUF);
    server.join().unwrap();
}
