//! The checksum offload contract of `NetworkBackend`, on real sockets on
//! loopback, over IPv4 and IPv6 alike: a guest frame whose TCP or UDP
//! checksum is partial (or wrong) is taken only when the frontend hands it
//! in as offloaded, and dropped and counted otherwise; offloaded frames
//! still get every other check; a TCP segment larger than the guest's MTU
//! (TSO) is relayed whole; frames to the guest carry a partial checksum,
//! starting past the IP header of their version, only when the frontend
//! asks for them with `poll_guest_frame_offloaded`, and completing it as a
//! NIC would gives the right checksum; with GSO on, segments to the guest
//! grow past its MSS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use slipway::Served;
use test_support::harness;

use slipway::FrameBackend;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use flow_table::Protocol;
use frontdesk::DropReason;
use harness::frames::{GATEWAY_IP6, GUEST_IP6, tcp_frame, udp_frame_to};
use harness::{GATEWAY_IP, GUEST_IP, Harness, serve, via_gateway};
use nat_core::{Plan, Rules};
use slipway::BackendConfig;
use slipway::{Checksum, GuestFrame};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet, TcpControl,
    TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, checksum,
};

/// The IP version a scenario runs over; every scenario here runs over both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

/// Where the checksum field is in a TCP header.
const TCP_OFFSET: u16 = 16;
/// Where the checksum field is in a UDP header.
const UDP_OFFSET: u16 = 6;

impl Family {
    /// Where the TCP or UDP header, the region of a partial checksum,
    /// starts in the frames here (no IPv4 options, no IPv6 extension
    /// headers).
    fn l4_start(self) -> u16 {
        match self {
            Self::V4 => 34,
            Self::V6 => 54,
        }
    }

    fn partial(self, offset: u16) -> Checksum {
        Checksum::Partial {
            start: self.l4_start(),
            offset,
        }
    }

    fn loopback(self) -> IpAddr {
        match self {
            Self::V4 => Ipv4Addr::LOCALHOST.into(),
            Self::V6 => Ipv6Addr::LOCALHOST.into(),
        }
    }

    /// The guest's name for host loopback's `port`: the gateway.
    fn via_gateway(self, port: u16) -> SocketAddr {
        match self {
            Self::V4 => via_gateway(port).into(),
            Self::V6 => SocketAddrV6::new(GATEWAY_IP6, port, 0, 0).into(),
        }
    }

    /// The gateway's address and the guest's.
    fn gateway_and_guest(self) -> (IpAddress, IpAddress) {
        match self {
            Self::V4 => (IpAddress::Ipv4(GATEWAY_IP), IpAddress::Ipv4(GUEST_IP)),
            Self::V6 => (IpAddress::Ipv6(GATEWAY_IP6), IpAddress::Ipv6(GUEST_IP6)),
        }
    }

    fn listen(self) -> TcpListener {
        TcpListener::bind((self.loopback(), 0)).unwrap()
    }

    /// The MSS of a guest whose MTU is 1500: the MTU less the IP and TCP
    /// headers.
    fn mss_at_mtu_1500(self) -> u16 {
        1500 - (self.l4_start() - 14) - 20
    }

    /// The transport header and payload of `frame`.
    fn l4(self, frame: &[u8]) -> &[u8] {
        &frame[usize::from(self.l4_start())..]
    }
}

/// `frame` (from the guest to the gateway, over `family`, then TCP or UDP)
/// with its transport checksum replaced by the pseudo-header sum, as a
/// kernel leaves it for checksum offload.
fn partial(mut frame: Vec<u8>, family: Family, protocol: IpProtocol, offset: u16) -> Vec<u8> {
    let start = usize::from(family.l4_start());
    let l4_len = u32::try_from(frame.len() - start).unwrap();
    let (gateway, guest) = family.gateway_and_guest();
    let sum = checksum::pseudo_header(&guest, &gateway, protocol, l4_len);
    let field = start + usize::from(offset);
    frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    frame
}

fn seq(value: u32) -> TcpSeqNumber {
    TcpSeqNumber(i32::from_ne_bytes(value.to_ne_bytes()))
}

fn u32_of(seq: TcpSeqNumber) -> u32 {
    u32::from_ne_bytes(seq.0.to_ne_bytes())
}

/// A guest segment with `control`, sequence number `at`, acknowledging
/// `ack`; a SYN offers window scaling and `mss`.
fn segment<'a>(
    control: TcpControl,
    at: u32,
    ack: Option<u32>,
    mss: u16,
    payload: &'a [u8],
) -> TcpRepr<'a> {
    let syn = control == TcpControl::Syn;
    TcpRepr {
        src_port: 0,
        dst_port: 0,
        control,
        seq_number: seq(at),
        ack_number: ack.map(seq),
        window_len: 65535,
        window_scale: syn.then_some(7),
        max_seg_size: syn.then_some(mss),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    }
}

/// A SYN from the guest's `port` to `dst` (sequence number 1000), its
/// checksum left partial.
fn partial_syn(family: Family, port: u16, dst: SocketAddr) -> Vec<u8> {
    let frame = tcp_frame(port, dst, &segment(TcpControl::Syn, 1000, None, 65000, &[]));
    partial(frame, family, IpProtocol::Tcp, TCP_OFFSET)
}

#[test]
fn partial_tcp_checksum_is_dropped_and_counted_without_offload() {
    for family in FAMILIES {
        let server = serve(family.listen(), |_| ());
        let mut h = Harness::new();
        h.send(&partial_syn(family, 40010, family.via_gateway(server.port)));
        let frames = h.backend.frame_counters();
        assert_eq!(frames.drops(DropReason::BadChecksum), 1, "{family:?}");
        assert_eq!(frames.offloaded_checksums(), 0);
        assert_eq!(h.backend.open_flows(Protocol::Tcp), 0);
        assert!(
            server.accepted_within(Duration::from_millis(300)).is_none(),
            "no connection for a dropped SYN"
        );
        h.assert_quiet(&format!(
            "partial tcp checksum is dropped and counted without offload, {family:?}"
        ));
    }
}

#[test]
fn partial_tcp_checksum_is_taken_when_the_frontend_offloads_it() {
    for family in FAMILIES {
        let server = serve(family.listen(), |_| ());
        let mut h = Harness::new();
        let syn = partial_syn(family, 40011, family.via_gateway(server.port));
        let tcp_partial = family.partial(TCP_OFFSET);
        h.backend
            .handle_guest_frame_offloaded(&syn, tcp_partial, Instant::now());
        let frames = h.backend.frame_counters();
        assert_eq!(frames.total_drops(), 0, "{family:?}");
        assert_eq!(frames.offloaded_checksums(), 1);
        assert_eq!(h.backend.open_flows(Protocol::Tcp), 1);
        let (syn_ack, _) = next_frame(&mut h, false);
        let tcp = TcpPacket::new_checked(family.l4(&syn_ack)).unwrap();
        assert!(tcp.syn() && tcp.ack() && u32_of(tcp.ack_number()) == 1001);
        assert!(server.accepted_within(Duration::from_secs(2)).is_some());
        h.assert_quiet(&format!(
            "partial tcp checksum is taken when the frontend offloads it, {family:?}"
        ));
    }
}

#[test]
fn a_vouched_for_checksum_is_not_verified_but_a_complete_one_is() {
    for family in FAMILIES {
        let server = serve(family.listen(), |_| ());
        let mut h = Harness::new();
        let dst = family.via_gateway(server.port);
        let mut syn = tcp_frame(40012, dst, &segment(TcpControl::Syn, 1000, None, 1400, &[]));
        // A wrong checksum.
        syn[usize::from(family.l4_start() + TCP_OFFSET)] ^= 0xff;
        h.backend
            .handle_guest_frame_offloaded(&syn, Checksum::Complete, Instant::now());
        assert_eq!(
            h.backend.frame_counters().drops(DropReason::BadChecksum),
            1,
            "Checksum::Complete means: verify ({family:?})"
        );
        h.backend
            .handle_guest_frame_offloaded(&syn, Checksum::Valid, Instant::now());
        assert_eq!(h.backend.open_flows(Protocol::Tcp), 1);
        assert!(server.accepted_within(Duration::from_secs(2)).is_some());
        h.assert_quiet(&format!(
            "a vouched for checksum is not verified but a complete one is, {family:?}"
        ));
    }
}

#[test]
fn offloaded_frames_still_get_every_other_check() {
    for family in FAMILIES {
        let mut h = Harness::new();
        let now = Instant::now();
        let good = partial_syn(family, 40013, family.via_gateway(9));
        let tcp_partial = family.partial(TCP_OFFSET);
        // A TCP header cut short.
        let short = &good[..usize::from(family.l4_start()) + 12];
        h.backend
            .handle_guest_frame_offloaded(short, tcp_partial, now);
        // An IP length past the frame.
        let mut long = good.clone();
        let length_field = match family {
            Family::V4 => 16,
            Family::V6 => 18,
        };
        long[length_field..length_field + 2].copy_from_slice(&60000u16.to_be_bytes());
        h.backend
            .handle_guest_frame_offloaded(&long, tcp_partial, now);
        if family == Family::V4 {
            // A bad IPv4 header checksum, also with offsets that point
            // nowhere: those are the frontend's business, not a reason to
            // read out of bounds.
            let mut bad_ip = good.clone();
            bad_ip[24] ^= 0x55;
            h.backend
                .handle_guest_frame_offloaded(&bad_ip, tcp_partial, now);
            let wild = Checksum::Partial {
                start: u16::MAX,
                offset: u16::MAX,
            };
            h.backend.handle_guest_frame_offloaded(&bad_ip, wild, now);
        }
        let frames = h.backend.frame_counters();
        let bad_ip = if family == Family::V4 { 2 } else { 0 };
        assert_eq!(frames.drops(DropReason::BadChecksum), bad_ip, "{family:?}");
        assert_eq!(frames.drops(DropReason::Malformed), 2, "{family:?}");
        assert_eq!(h.backend.open_flows(Protocol::Tcp), 0);
        h.assert_quiet(&format!(
            "offloaded frames still get every other check, {family:?}"
        ));
    }
}

/// Whether `frame` is a TCP segment or UDP datagram (router advertisements
/// and other messages of the link are not).
fn is_transport(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    let protocol = match eth.ethertype() {
        EthernetProtocol::Ipv4 => Ipv4Packet::new_checked(eth.payload()).map(|ip| ip.next_header()),
        EthernetProtocol::Ipv6 => Ipv6Packet::new_checked(eth.payload()).map(|ip| ip.next_header()),
        _ => return false,
    };
    matches!(protocol, Ok(IpProtocol::Tcp | IpProtocol::Udp))
}

/// Waits for the backend's next TCP or UDP frame for the guest, taken as
/// `offloaded` says.
fn next_frame(h: &mut Harness, offloaded: bool) -> (Vec<u8>, GuestFrame) {
    let mut buf = vec![0u8; 70_000];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let now = Instant::now();
        h.backend.handle_host_events(now).unwrap();
        h.backend.handle_timeout(now);
        let polled = if offloaded {
            h.backend.poll_guest_frame_offloaded(&mut buf, now)
        } else {
            h.backend
                .poll_guest_frame(&mut buf, now)
                .map(GuestFrame::complete)
        };
        match polled {
            Some(frame) if is_transport(&buf[..frame.len]) => {
                return (buf[..frame.len].to_vec(), frame);
            }
            Some(_) => {}
            None => {
                h.backend
                    .wait(Some(now + Duration::from_millis(20)))
                    .unwrap();
            }
        }
    }
    panic!("no frame for the guest");
}

#[test]
fn frames_to_the_guest_carry_partial_checksums_only_when_asked() {
    for family in FAMILIES {
        let host = UdpSocket::bind((family.loopback(), 0)).unwrap();
        let port = host.local_addr().unwrap().port();
        let mut h = Harness::new();
        let (gw, guest) = family.gateway_and_guest();
        let udp_partial = family.partial(UDP_OFFSET);
        for (round, offloaded) in [(0u16, false), (1, true)] {
            let request = udp_frame_to(5000 + round, family.via_gateway(port), b"ping");
            let request = partial(request, family, IpProtocol::Udp, UDP_OFFSET);
            h.backend
                .handle_guest_frame_offloaded(&request, udp_partial, Instant::now());
            let mut got = [0u8; 16];
            host.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let (n, peer) = host.recv_from(&mut got).unwrap();
            assert_eq!(&got[..n], b"ping");
            let reply: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
            host.send_to(&reply, peer).unwrap();
            let (mut frame, GuestFrame { checksum, .. }) = next_frame(&mut h, offloaded);
            let udp = UdpPacket::new_checked(family.l4(&frame)).unwrap();
            assert_eq!(udp.payload(), &reply[..]);
            if offloaded {
                assert_eq!(checksum, udp_partial, "{family:?}");
                assert!(!udp.verify_checksum(&gw, &guest), "left partial");
                slipway::guest_frame::complete_checksum(&mut frame, family.l4_start(), UDP_OFFSET)
                    .unwrap();
            } else {
                assert_eq!(checksum, Checksum::Complete);
            }
            let udp = UdpPacket::new_checked(family.l4(&frame)).unwrap();
            assert!(udp.verify_checksum(&gw, &guest), "{family:?} round {round}");
        }
        assert_eq!(h.backend.counters().partial_checksums_to_guest, 1);
        h.assert_quiet(&format!(
            "frames to the guest carry partial checksums only when asked, {family:?}"
        ));
    }
}

#[test]
fn a_tcp_segment_to_the_guest_completes_to_the_right_checksum() {
    for family in FAMILIES {
        let server = serve(family.listen(), |mut stream| {
            stream.write_all(&[7u8; 5000]).unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
        let mut h = Harness::new();
        let tcp_partial = family.partial(TCP_OFFSET);
        let syn = partial_syn(family, 40014, family.via_gateway(server.port));
        h.backend
            .handle_guest_frame_offloaded(&syn, tcp_partial, Instant::now());
        let (mut syn_ack, polled) = next_frame(&mut h, true);
        assert_eq!(polled.checksum, tcp_partial, "{family:?}");
        slipway::guest_frame::complete_checksum(&mut syn_ack, family.l4_start(), TCP_OFFSET)
            .unwrap();
        let tcp = TcpPacket::new_checked(family.l4(&syn_ack)).unwrap();
        let (gw, guest) = family.gateway_and_guest();
        assert!(tcp.syn() && tcp.ack());
        assert!(tcp.verify_checksum(&gw, &guest), "{family:?}");
        h.assert_quiet(&format!(
            "a tcp segment to the guest completes to the right checksum, {family:?}"
        ));
    }
}

/// Sends a SYN offering `mss` from the guest's `port` to `dst` (sequence
/// number 1000) and returns the sequence number that acknowledges the
/// SYN-ACK.
fn open(h: &mut Harness, family: Family, (port, dst): (u16, SocketAddr), mss: u16) -> u32 {
    h.send(&tcp_frame(
        port,
        dst,
        &segment(TcpControl::Syn, 1000, None, mss, &[]),
    ));
    let (syn_ack, _) = next_frame(h, false);
    let syn_ack = TcpPacket::new_checked(family.l4(&syn_ack)).unwrap();
    assert!(syn_ack.syn() && syn_ack.ack(), "{family:?}");
    u32_of(syn_ack.seq_number()).wrapping_add(1)
}

#[test]
fn with_gso_to_the_guest_segments_grow_past_its_mss_only_when_offloaded() {
    for family in FAMILIES {
        let mss = family.mss_at_mtu_1500();
        let server = serve(family.listen(), |mut stream| {
            stream.write_all(&[9u8; 200_000]).unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
        let mut h = Harness::new();
        h.backend.set_gso_to_guest(true);
        let dst = family.via_gateway(server.port);
        let ack = open(&mut h, family, (40015, dst), mss);
        h.send(&tcp_frame(
            40015,
            dst,
            &segment(TcpControl::None, 1001, Some(ack), mss, &[]),
        ));
        // Polled plainly, a segment stays within the MSS even with GSO on.
        let (plain, polled) = next_frame(&mut h, false);
        assert_eq!(polled.gso_mss, None);
        let payload = TcpPacket::new_checked(family.l4(&plain))
            .unwrap()
            .payload()
            .len();
        assert!(payload > 0 && payload <= usize::from(mss), "{payload}");
        let (mut big, polled) = next_frame(&mut h, true);
        assert_eq!(polled.gso_mss, Some(mss), "{family:?}");
        assert_eq!(polled.checksum, family.partial(TCP_OFFSET));
        let headers = usize::from(family.l4_start()) + 20;
        assert!(big.len() > headers + usize::from(mss), "{}", big.len());
        slipway::guest_frame::complete_checksum(&mut big, family.l4_start(), TCP_OFFSET).unwrap();
        let tcp = TcpPacket::new_checked(family.l4(&big)).unwrap();
        let (gw, guest) = family.gateway_and_guest();
        assert!(tcp.verify_checksum(&gw, &guest), "{family:?}");
        assert!(tcp.payload().iter().all(|&b| b == 9));
        assert!(h.backend.counters().gso_frames_to_guest >= 1);
        h.assert_quiet(&format!(
            "with gso to the guest segments grow past its mss only when offloaded, {family:?}"
        ));
    }
}

#[test]
fn a_segment_from_the_guest_larger_than_its_mtu_is_written_whole_and_acked_at_once() {
    const LEN: usize = 40_000;
    for family in FAMILIES {
        let mss = family.mss_at_mtu_1500();
        let server = serve(family.listen(), |mut stream| {
            let mut got = vec![0u8; LEN];
            stream.read_exact(&mut got).unwrap();
            got
        });
        let plan = Plan::builder().mtu(1500).build().unwrap();
        let mut h = Harness::with_config(BackendConfig::new(plan, Rules::default()));
        let dst = family.via_gateway(server.port);
        let ack = open(&mut h, family, (40016, dst), mss);
        // What a kernel hands a tap with TSO: one segment of many MSS, its
        // checksum left partial.
        let data = harness::pattern(LEN, 16);
        let repr = segment(TcpControl::Psh, 1001, Some(ack), mss, &data);
        let tso = partial(
            tcp_frame(40016, dst, &repr),
            family,
            IpProtocol::Tcp,
            TCP_OFFSET,
        );
        h.backend
            .handle_guest_frame_offloaded(&tso, family.partial(TCP_OFFSET), Instant::now());
        assert_eq!(h.backend.frame_counters().total_drops(), 0, "{family:?}");
        let want = 1001 + u32::try_from(LEN).unwrap();
        let (ack_frame, _) = next_frame(&mut h, false);
        let acked = TcpPacket::new_checked(family.l4(&ack_frame)).unwrap();
        assert_eq!(
            u32_of(acked.ack_number()),
            want,
            "one ACK for all ({family:?})"
        );
        assert_eq!(server.join().unwrap(), data, "{family:?}");
        h.assert_quiet(&format!(
            "a segment from the guest larger than its mtu is written whole, {family:?}"
        ));
    }
}
