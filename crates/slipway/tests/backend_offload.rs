//! The checksum offload contract of `NetworkBackend`, on real sockets on
//! loopback: a guest frame whose TCP or UDP checksum is partial (or wrong)
//! is taken only when the frontend hands it in as offloaded, and dropped
//! and counted otherwise; offloaded frames still get every other check;
//! frames to the guest carry a partial checksum only when the frontend asks
//! for them with `poll_guest_frame_offloaded`, and completing it as a NIC
//! would gives the right checksum.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use slipway::Served;
use test_support::harness;

use slipway::FrameBackend;
use std::io::Write;
use std::net::{SocketAddrV4, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

use flow_table::Protocol;
use frontdesk::DropReason;
use harness::frames::{GATEWAY_IP6, GUEST_IP6, udp_frame, udp6_frame};
use harness::{GATEWAY_IP, GUEST_IP, GuestSeg, Harness, listen, serve, via_gateway};
use slipway::{Checksum, GuestFrame};
use smoltcp::wire::{IpAddress, IpProtocol, TcpControl, TcpPacket, UdpPacket, checksum};

/// Where a TCP or UDP checksum region starts in the frames here.
const L4_START: u16 = 34;

/// `frame` (Ethernet, IPv4 without options, then TCP or UDP) with its
/// transport checksum replaced by the pseudo-header sum, as a kernel leaves
/// it for checksum offload.
fn partial(mut frame: Vec<u8>, protocol: IpProtocol, offset: usize) -> Vec<u8> {
    let l4_len = u32::try_from(frame.len() - 34).unwrap();
    let dst = std::net::Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
    let sum = checksum::pseudo_header_v4(&GUEST_IP, &dst, protocol, l4_len);
    frame[34 + offset..36 + offset].copy_from_slice(&sum.to_be_bytes());
    frame
}

fn partial_syn(port: u16, dst: SocketAddrV4) -> Vec<u8> {
    let frame = GuestSeg::syn(port, dst, 1000, Some(7)).frame(&[]);
    partial(frame, IpProtocol::Tcp, 16)
}

const TCP_PARTIAL: Checksum = Checksum::Partial {
    start: L4_START,
    offset: 16,
};

#[test]
fn partial_tcp_checksum_is_dropped_and_counted_without_offload() {
    let server = serve(listen(), |_| ());
    let mut h = Harness::new();
    h.send(&partial_syn(40010, server.guest_addr()));
    let frames = h.backend.frame_counters();
    assert_eq!(frames.drops(DropReason::BadChecksum), 1);
    assert_eq!(frames.offloaded_checksums(), 0);
    assert_eq!(h.backend.open_flows(Protocol::Tcp), 0);
    assert!(
        server.accepted_within(Duration::from_millis(300)).is_none(),
        "no connection for a dropped SYN"
    );
    h.assert_quiet("partial tcp checksum is dropped and counted without offload");
}

#[test]
fn partial_tcp_checksum_is_taken_when_the_frontend_offloads_it() {
    let server = serve(listen(), |_| ());
    let mut h = Harness::new();
    let syn = partial_syn(40011, server.guest_addr());
    h.backend
        .handle_guest_frame_offloaded(&syn, TCP_PARTIAL, Instant::now());
    let frames = h.backend.frame_counters();
    assert_eq!(frames.total_drops(), 0);
    assert_eq!(frames.offloaded_checksums(), 1);
    assert_eq!(h.backend.open_flows(Protocol::Tcp), 1);
    let got = h.collect_until(Duration::from_secs(2), |f| f.tcp().is_some());
    let syn_ack = got.last().and_then(harness::Frame::tcp).expect("a SYN-ACK");
    assert!(syn_ack.syn && syn_ack.ack == Some(1001), "{syn_ack:?}");
    assert!(server.accepted_within(Duration::from_secs(2)).is_some());
    h.assert_quiet("partial tcp checksum is taken when the frontend offloads it");
}

#[test]
fn a_vouched_for_checksum_is_not_verified_but_a_complete_one_is() {
    let server = serve(listen(), |_| ());
    let mut h = Harness::new();
    let mut syn = GuestSeg::syn(40012, server.guest_addr(), 1000, None).frame(&[]);
    syn[50] ^= 0xff; // a wrong checksum
    h.backend
        .handle_guest_frame_offloaded(&syn, Checksum::Complete, Instant::now());
    assert_eq!(
        h.backend.frame_counters().drops(DropReason::BadChecksum),
        1,
        "Checksum::Complete means: verify"
    );
    h.backend
        .handle_guest_frame_offloaded(&syn, Checksum::Valid, Instant::now());
    assert_eq!(h.backend.open_flows(Protocol::Tcp), 1);
    assert!(server.accepted_within(Duration::from_secs(2)).is_some());
    h.assert_quiet("a vouched for checksum is not verified but a complete one is");
}

#[test]
fn offloaded_frames_still_get_every_other_check() {
    let mut h = Harness::new();
    let dst = via_gateway(9);
    let now = Instant::now();
    let good = partial_syn(40013, dst);
    // A bad IPv4 header checksum.
    let mut bad_ip = good.clone();
    bad_ip[24] ^= 0x55;
    h.backend
        .handle_guest_frame_offloaded(&bad_ip, TCP_PARTIAL, now);
    // A TCP header cut short.
    h.backend
        .handle_guest_frame_offloaded(&good[..34 + 12], TCP_PARTIAL, now);
    // An IPv4 total length past the frame.
    let mut long = good.clone();
    long[16..18].copy_from_slice(&60000u16.to_be_bytes());
    h.backend
        .handle_guest_frame_offloaded(&long, TCP_PARTIAL, now);
    // Offsets that point nowhere are the frontend's business, not a reason
    // to read out of bounds.
    let wild = Checksum::Partial {
        start: u16::MAX,
        offset: u16::MAX,
    };
    h.backend.handle_guest_frame_offloaded(&bad_ip, wild, now);
    let frames = h.backend.frame_counters();
    assert_eq!(frames.drops(DropReason::BadChecksum), 2);
    assert_eq!(frames.drops(DropReason::Malformed), 2);
    assert_eq!(h.backend.open_flows(Protocol::Tcp), 0);
    h.assert_quiet("offloaded frames still get every other check");
}

/// Waits for the backend's next frame for the guest, taken as `offloaded`
/// says.
fn next_frame(h: &mut Harness, offloaded: bool) -> (Vec<u8>, GuestFrame) {
    let mut buf = vec![0u8; 70_000];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let now = Instant::now();
        h.backend.handle_host_events(now).unwrap();
        let polled = if offloaded {
            h.backend.poll_guest_frame_offloaded(&mut buf, now)
        } else {
            h.backend
                .poll_guest_frame(&mut buf, now)
                .map(|len| GuestFrame {
                    len,
                    checksum: Checksum::Complete,
                    gso_mss: None,
                })
        };
        if let Some(frame) = polled {
            return (buf[..frame.len].to_vec(), frame);
        }
        h.backend
            .wait(Some(now + Duration::from_millis(20)))
            .unwrap();
    }
    panic!("no frame for the guest");
}

#[test]
fn frames_to_the_guest_carry_partial_checksums_only_when_asked() {
    let host = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let mut h = Harness::new();
    let (gw, guest) = (IpAddress::Ipv4(GATEWAY_IP), IpAddress::Ipv4(GUEST_IP));
    for (round, offloaded) in [(0u16, false), (1, true)] {
        let request = partial(
            udp_frame(5000 + round, via_gateway(port), b"ping"),
            IpProtocol::Udp,
            6,
        );
        let udp_partial = Checksum::Partial {
            start: L4_START,
            offset: 6,
        };
        h.backend
            .handle_guest_frame_offloaded(&request, udp_partial, Instant::now());
        let mut got = [0u8; 16];
        host.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let (n, peer) = host.recv_from(&mut got).unwrap();
        assert_eq!(&got[..n], b"ping");
        let reply: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        host.send_to(&reply, peer).unwrap();
        let (mut frame, GuestFrame { checksum, .. }) = next_frame(&mut h, offloaded);
        let udp = UdpPacket::new_checked(&frame[34..]).unwrap();
        assert_eq!(udp.payload(), &reply[..]);
        if offloaded {
            assert_eq!(checksum, udp_partial);
            assert!(!udp.verify_checksum(&gw, &guest), "left partial");
            slipway::guest_frame::complete_checksum(&mut frame, L4_START, 6).unwrap();
        } else {
            assert_eq!(checksum, Checksum::Complete);
        }
        let udp = UdpPacket::new_checked(&frame[34..]).unwrap();
        assert!(udp.verify_checksum(&gw, &guest), "round {round}");
    }
    assert_eq!(h.backend.counters().partial_checksums_to_guest, 1);
    h.assert_quiet("frames to the guest carry partial checksums only when asked");
}

#[test]
fn a_tcp_segment_to_the_guest_completes_to_the_right_checksum() {
    let server = serve(listen(), |mut stream| {
        stream.write_all(&[7u8; 5000]).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    });
    let mut h = Harness::new();
    h.backend.handle_guest_frame_offloaded(
        &partial_syn(40014, server.guest_addr()),
        TCP_PARTIAL,
        Instant::now(),
    );
    let (mut syn_ack, polled) = next_frame(&mut h, true);
    assert_eq!(polled.checksum, TCP_PARTIAL);
    slipway::guest_frame::complete_checksum(&mut syn_ack, L4_START, 16).unwrap();
    let tcp = TcpPacket::new_checked(&syn_ack[34..]).unwrap();
    let (gw, guest) = (IpAddress::Ipv4(GATEWAY_IP), IpAddress::Ipv4(GUEST_IP));
    assert!(tcp.syn() && tcp.ack());
    assert!(tcp.verify_checksum(&gw, &guest));
    h.assert_quiet("a tcp segment to the guest completes to the right checksum");
}

#[test]
fn with_gso_to_the_guest_segments_grow_past_its_mss_only_when_offloaded() {
    const MSS: u16 = 1460;
    let server = serve(listen(), |mut stream| {
        stream.write_all(&[9u8; 200_000]).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    });
    let mut h = Harness::new();
    h.backend.set_gso_to_guest(true);
    let mut syn = GuestSeg::syn(40015, server.guest_addr(), 1000, Some(7));
    syn.mss = Some(MSS);
    h.send(&syn.frame(&[]));
    let (syn_ack, _) = next_frame(&mut h, true);
    let syn_ack = TcpPacket::new_checked(&syn_ack[34..]).unwrap();
    let ack = u32::from_ne_bytes(syn_ack.seq_number().0.to_ne_bytes()).wrapping_add(1);
    let dst = server.guest_addr();
    h.send(&GuestSeg::bare(40015, dst, 1001, Some(ack), TcpControl::None).frame(&[]));
    // Polled plainly, a segment stays within the MSS even with GSO on.
    let (plain, polled) = next_frame(&mut h, false);
    assert_eq!(polled.gso_mss, None);
    let payload = plain.len() - 54;
    assert!(payload > 0 && payload <= usize::from(MSS), "{payload}");
    let (mut big, polled) = next_frame(&mut h, true);
    assert_eq!(polled.gso_mss, Some(MSS));
    assert_eq!(polled.checksum, TCP_PARTIAL);
    assert!(big.len() > 14 + 40 + usize::from(MSS), "{}", big.len());
    slipway::guest_frame::complete_checksum(&mut big, L4_START, 16).unwrap();
    let tcp = TcpPacket::new_checked(&big[34..]).unwrap();
    let (gw, guest) = (IpAddress::Ipv4(GATEWAY_IP), IpAddress::Ipv4(GUEST_IP));
    assert!(tcp.verify_checksum(&gw, &guest));
    assert!(tcp.payload().iter().all(|&b| b == 9));
    assert!(h.backend.counters().gso_frames_to_guest >= 1);
    h.assert_quiet("with gso to the guest segments grow past its mss only when offloaded");
}

#[test]
fn an_ipv6_udp_datagram_to_the_guest_is_left_partial_past_the_ipv6_header() {
    let host = UdpSocket::bind("[::1]:0").unwrap();
    let to = SocketAddrV6::new(GATEWAY_IP6, host.local_addr().unwrap().port(), 0, 0);
    let mut h = Harness::new();
    h.backend
        .handle_guest_frame(&udp6_frame(5100, to, b"ping"), Instant::now());
    host.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut got = [0u8; 16];
    let (n, peer) = host.recv_from(&mut got).unwrap();
    assert_eq!(&got[..n], b"ping");
    let reply: Vec<u8> = (0..3000u32).map(|i| (i % 241) as u8).collect();
    host.send_to(&reply, peer).unwrap();
    let (mut frame, GuestFrame { checksum, .. }) = next_frame(&mut h, true);
    // Ethernet and the IPv6 fixed header: the UDP header starts at 54.
    let start = 54;
    assert_eq!(checksum, Checksum::Partial { start, offset: 6 });
    slipway::guest_frame::complete_checksum(&mut frame, start, 6).unwrap();
    let udp = UdpPacket::new_checked(&frame[54..]).unwrap();
    let (gw, guest) = (IpAddress::Ipv6(GATEWAY_IP6), IpAddress::Ipv6(GUEST_IP6));
    assert!(
        udp.verify_checksum(&gw, &guest),
        "completes to the right checksum"
    );
    assert_eq!(udp.payload(), &reply[..]);
    h.assert_quiet("an ipv6 udp datagram to the guest is left partial past the ipv6 header");
}
