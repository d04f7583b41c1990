//! Frame-level tests of IPv4 fragments both ways: a guest at MTU 1500
//! sends datagrams larger than its MTU in fragments (in order, out of
//! order, with duplicates) to servers on 127.0.0.1, and gets datagrams
//! larger than its MTU back in fragments; bad fragments are counted drops
//! within fixed bounds, and nothing is left to wake the loop afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use slipway::Served;
use test_support::harness;

use slipway::FrameBackend;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use frontdesk::{DropReason, MAX_BYTES, MAX_DATAGRAMS, REASSEMBLY_TIMEOUT};
use nat_core::{Plan, Rules};
use slipway::{BackendConfig, Checksum};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

use harness::{GATEWAY_IP, GUEST_IP, GUEST_MAC, Harness, fnv, gateway_mac, pattern, via_gateway};

/// How long a scenario waits for an answer; generous, for a loaded machine.
const WAIT: Duration = Duration::from_secs(20);

/// The frame buffer of the tap frontend: room for any IPv4 datagram.
const BIG_BUFFER: usize = 65536 + 14;

fn config_with_mtu(mtu: u16) -> BackendConfig {
    let plan = Plan::builder().mtu(mtu).build().unwrap();
    BackendConfig::new(plan, Rules::default())
}

/// The IP payload (transport header and data) of a UDP datagram from the
/// guest's `src_port` to `dst`, with its checksum.
fn udp_datagram(src_port: u16, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut udp = vec![0u8; 8 + payload.len()];
    UdpRepr {
        src_port,
        dst_port: dst.port(),
    }
    .emit(
        &mut UdpPacket::new_unchecked(&mut udp[..]),
        &IpAddress::Ipv4(GUEST_IP),
        &IpAddress::Ipv4(*dst.ip()),
        payload.len(),
        |p| p.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    udp
}

/// The IP payload of an ICMP echo request.
fn echo_request(ident: u16, seq_no: u16, data: &[u8]) -> Vec<u8> {
    let repr = Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data,
    };
    let mut icmp = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut icmp[..]),
        &ChecksumCapabilities::default(),
    );
    icmp
}

/// One fragment from the guest: `data` at byte `offset` of datagram
/// `ident`'s IP payload.
fn fragment_frame(
    dst: Ipv4Addr,
    protocol: IpProtocol,
    ident: u16,
    offset: usize,
    more: bool,
    data: &[u8],
) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + 20 + data.len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: GUEST_MAC,
        dst_addr: gateway_mac(),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    Ipv4Repr {
        src_addr: GUEST_IP,
        dst_addr: dst,
        next_header: protocol,
        payload_len: data.len(),
        hop_limit: 64,
    }
    .emit(&mut ip, &ChecksumCapabilities::default());
    ip.payload_mut().copy_from_slice(data);
    ip.set_ident(ident);
    ip.clear_flags();
    ip.set_more_frags(more);
    ip.set_frag_offset(u16::try_from(offset).unwrap());
    ip.fill_checksum();
    frame
}

/// `payload` (an IP payload) cut as a guest at MTU 1500 cuts it: 1480
/// bytes a fragment.
fn fragments(dst: Ipv4Addr, protocol: IpProtocol, ident: u16, payload: &[u8]) -> Vec<Vec<u8>> {
    let pieces: Vec<_> = payload.chunks(1480).collect();
    let n = pieces.len();
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| fragment_frame(dst, protocol, ident, i * 1480, i + 1 < n, piece))
        .collect()
}

/// A UDP echo server on 127.0.0.1 for `count` datagrams; returns the
/// length and hash of each it got.
fn echo_server(count: usize) -> (u16, thread::JoinHandle<Vec<(usize, u64)>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let port = sock.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        for _ in 0..count {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                break;
            };
            got.push((n, fnv(&buf[..n])));
            sock.send_to(&buf[..n], peer).unwrap();
        }
        got
    });
    (port, handle)
}

/// A datagram the guest put together from the fragments it received.
#[derive(Debug)]
struct Whole {
    src: Ipv4Addr,
    protocol: IpProtocol,
    payload: Vec<u8>,
    fragments: usize,
}

/// The fragments of one datagram by offset, and its end once known.
type Parts = (BTreeMap<usize, Vec<u8>>, Option<usize>);

/// The guest's side of reassembly, for checking: fragments by id until
/// each datagram is whole. Every frame must fit `mtu`.
struct GuestReassembly {
    mtu: usize,
    parts: BTreeMap<u16, Parts>,
    unfragmented: usize,
}

impl GuestReassembly {
    fn new(mtu: usize) -> Self {
        Self {
            mtu,
            parts: BTreeMap::new(),
            unfragmented: 0,
        }
    }

    /// Takes one frame; returns the datagram it completes.
    fn take(&mut self, frame: &[u8]) -> Option<Whole> {
        assert!(
            frame.len() <= self.mtu + 14,
            "a {}-byte frame to a guest at MTU {}",
            frame.len(),
            self.mtu
        );
        let eth = EthernetFrame::new_checked(frame).unwrap();
        assert_eq!(eth.dst_addr(), GUEST_MAC);
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum(), "IPv4 header checksum");
        let (src, protocol) = (ip.src_addr(), ip.next_header());
        if !ip.more_frags() && ip.frag_offset() == 0 {
            self.unfragmented += 1;
            return Some(Whole {
                src,
                protocol,
                payload: ip.payload().to_vec(),
                fragments: 0,
            });
        }
        let offset = usize::from(ip.frag_offset());
        if ip.more_frags() {
            assert_eq!(
                ip.payload().len() % 8,
                0,
                "non-last fragments in 8-byte units"
            );
        }
        let entry = self.parts.entry(ip.ident()).or_default();
        if !ip.more_frags() {
            entry.1 = Some(offset + ip.payload().len());
        }
        entry.0.insert(offset, ip.payload().to_vec());
        let end = entry.1?;
        let mut payload = Vec::new();
        for (&at, data) in &entry.0 {
            if at != payload.len() {
                return None;
            }
            payload.extend_from_slice(data);
        }
        if payload.len() != end {
            return None;
        }
        let fragments = entry.0.len();
        self.parts.remove(&ip.ident());
        Some(Whole {
            src,
            protocol,
            payload,
            fragments,
        })
    }
}

/// The UDP payload of a datagram from `src` to the guest, its checksum
/// verified.
fn udp_payload(whole: &Whole) -> Vec<u8> {
    assert_eq!(whole.protocol, IpProtocol::Udp);
    let udp = UdpPacket::new_checked(&whole.payload[..]).unwrap();
    assert!(
        udp.verify_checksum(&IpAddress::Ipv4(whole.src), &IpAddress::Ipv4(GUEST_IP)),
        "UDP checksum of the whole datagram"
    );
    assert_ne!(udp.checksum(), 0, "a UDP checksum is there");
    udp.payload().to_vec()
}

/// Runs the harness until the guest has put together a datagram.
fn next_whole(h: &mut Harness, guest: &mut GuestReassembly) -> Option<Whole> {
    let deadline = Instant::now() + WAIT;
    let mut found = None;
    while found.is_none() && Instant::now() < deadline {
        for frame in h.collect_for(Duration::from_millis(50)) {
            if let Some(whole) = guest.take(&frame.0) {
                assert!(found.is_none(), "one datagram at a time here");
                found = Some(whole);
            }
        }
    }
    found
}

#[test]
fn guest_at_mtu_1500_sends_3000_and_65507_byte_datagrams_in_fragments_and_gets_the_echo_in_fragments()
 {
    let mut h = Harness::with_config(config_with_mtu(1500));
    let (port, server) = echo_server(2);
    let to = via_gateway(port);
    let mut guest = GuestReassembly::new(1500);

    // 3000 bytes, in order.
    let small = pattern(3000, 1);
    for frame in fragments(
        GATEWAY_IP,
        IpProtocol::Udp,
        100,
        &udp_datagram(40_000, to, &small),
    ) {
        h.send(&frame);
    }
    let echo = next_whole(&mut h, &mut guest).expect("the 3000-byte echo came back");
    assert_eq!(echo.src, GATEWAY_IP);
    assert_eq!(echo.fragments, 3, "3008 bytes at MTU 1500: three fragments");
    assert!(udp_payload(&echo) == small, "3000-byte echo intact");

    // 65507 bytes, the last fragment first, the rest reversed, two sent twice.
    let large = pattern(65507, 2);
    let mut frames = fragments(
        GATEWAY_IP,
        IpProtocol::Udp,
        101,
        &udp_datagram(40_000, to, &large),
    );
    assert_eq!(frames.len(), 45);
    frames.reverse();
    let again = [frames[3].clone(), frames[20].clone()];
    frames.insert(10, again[0].clone());
    frames.insert(30, again[1].clone());
    for frame in &frames {
        h.send(frame);
    }
    let echo = next_whole(&mut h, &mut guest).expect("the 65507-byte echo came back");
    assert_eq!(echo.fragments, 45);
    assert!(udp_payload(&echo) == large, "65507-byte echo intact");

    let got = server.join().unwrap();
    assert_eq!(got, vec![(3000, fnv(&small)), (65507, fnv(&large))]);
    let counters = h.backend.frame_counters();
    assert_eq!(counters.reassembled(), 2);
    assert_eq!(counters.drops(DropReason::FragmentDuplicate), 2);
    assert_eq!(
        counters.total_drops(),
        2,
        "{:?}",
        counters.iter().collect::<Vec<_>>()
    );
    assert_eq!(h.backend.counters().fragments_to_guest, 48);
    assert_eq!(guest.unfragmented, 0);
    assert_eq!(h.backend.reassembly().datagrams(), 0);
    h.assert_quiet("after fragmented echoes");
}

/// Runs the backend with a frame buffer of `BIG_BUFFER` bytes, polling
/// with checksum offload, until the guest has put together a datagram.
/// Every fragment must come with a complete checksum.
fn next_whole_offloaded(h: &mut Harness, guest: &mut GuestReassembly) -> Option<Whole> {
    let mut buf = vec![0u8; BIG_BUFFER];
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let now = Instant::now();
        h.backend.handle_host_events(now).unwrap();
        h.backend.handle_timeout(now);
        for _ in 0..10_000 {
            let Some(frame) = h
                .backend
                .poll_guest_frame_offloaded(&mut buf, Instant::now())
            else {
                break;
            };
            let bytes = &buf[..frame.len];
            let ip = Ipv4Packet::new_checked(&bytes[14..]).unwrap();
            if ip.more_frags() || ip.frag_offset() != 0 {
                assert_eq!(
                    frame.checksum,
                    Checksum::Complete,
                    "fragments carry whole checksums"
                );
            }
            let mut bytes = bytes.to_vec();
            if let Checksum::Partial { .. } = frame.checksum {
                // What the guest's "hardware" does with a partial checksum.
                let (src, dst) = (
                    IpAddress::Ipv4(ip.src_addr()),
                    IpAddress::Ipv4(ip.dst_addr()),
                );
                UdpPacket::new_unchecked(&mut bytes[34..]).fill_checksum(&src, &dst);
            }
            if let Some(whole) = guest.take(&bytes) {
                return Some(whole);
            }
        }
        h.backend
            .wait(Some(Instant::now() + Duration::from_millis(20)))
            .unwrap();
    }
    None
}

#[test]
fn fragments_to_a_guest_with_a_large_frame_buffer_and_offload_carry_whole_checksums() {
    let mut h = Harness::with_config(config_with_mtu(1500));
    let (port, server) = echo_server(2);
    let to = via_gateway(port);
    let mut guest = GuestReassembly::new(1500);
    for (ident, len) in [(7u16, 20_000usize), (8, 1000)] {
        let payload = pattern(len, u64::from(ident));
        for frame in fragments(
            GATEWAY_IP,
            IpProtocol::Udp,
            ident,
            &udp_datagram(40_001, to, &payload),
        ) {
            h.send(&frame);
        }
        let echo = next_whole_offloaded(&mut h, &mut guest).expect("the echo came back");
        assert!(udp_payload(&echo) == payload, "{len}-byte echo intact");
    }
    assert_eq!(guest.unfragmented, 1, "the 1000-byte echo fits");
    server.join().unwrap();
}

#[test]
fn a_20000_byte_datagram_to_a_forwarded_udp_port_reaches_a_1500_mtu_guest_in_fragments() {
    let free = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = config_with_mtu(1500);
    config.rules.udp_forwards = format!("127.0.0.1/{free}:5000").parse().unwrap();
    let mut h = Harness::with_config(config);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let payload = pattern(20_000, 3);
    client.send_to(&payload, ("127.0.0.1", free)).unwrap();
    let mut guest = GuestReassembly::new(1500);
    let whole = next_whole(&mut h, &mut guest).expect("the datagram reached the guest");
    assert_eq!(whole.fragments, 14, "20008 bytes at MTU 1500: 14 fragments");
    assert!(udp_payload(&whole) == payload, "intact");
    assert_eq!(guest.unfragmented, 0);
    h.assert_quiet("after a forwarded datagram in fragments");
}

#[test]
fn at_mtu_65520_a_65507_byte_datagram_goes_whole_both_ways() {
    let mut h = Harness::with_config(config_with_mtu(nat_core::MTU_MAX));
    let (port, server) = echo_server(1);
    let payload = pattern(65507, 4);
    h.send(&harness::frames::udp_frame(
        40_002,
        via_gateway(port),
        &payload,
    ));
    let mut guest = GuestReassembly::new(65535);
    let whole = next_whole_offloaded(&mut h, &mut guest).expect("the echo came back");
    assert_eq!(whole.fragments, 0, "not fragmented");
    assert_eq!(whole.payload.len(), 65515);
    assert_eq!(h.backend.counters().fragments_to_guest, 0);
    server.join().unwrap();
}

#[test]
fn fragmented_ping_of_3000_bytes_to_the_gateway_is_answered_in_fragments() {
    let mut h = Harness::with_config(config_with_mtu(1500));
    let data = pattern(3000, 5);
    for frame in fragments(
        GATEWAY_IP,
        IpProtocol::Icmp,
        200,
        &echo_request(0x1234, 1, &data),
    ) {
        h.send(&frame);
    }
    let mut guest = GuestReassembly::new(1500);
    let whole = next_whole(&mut h, &mut guest).expect("the echo reply came");
    assert_eq!(whole.protocol, IpProtocol::Icmp);
    assert_eq!(whole.fragments, 3);
    let icmp = Icmpv4Packet::new_checked(&whole.payload[..]).unwrap();
    assert!(icmp.verify_checksum());
    let repr = Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).unwrap();
    assert_eq!(
        repr,
        Icmpv4Repr::EchoReply {
            ident: 0x1234,
            seq_no: 1,
            data: &data
        }
    );
}

#[test]
fn overlapping_fragments_drop_the_datagram_and_leave_nothing_held() {
    let mut h = Harness::with_config(config_with_mtu(1500));
    let (port, server) = echo_server(1);
    let udp = udp_datagram(40_003, via_gateway(port), &pattern(3000, 6));
    let frames = fragments(GATEWAY_IP, IpProtocol::Udp, 300, &udp);
    h.send(&frames[0]);
    // 16 bytes into the first fragment's data, with other bytes.
    h.send(&fragment_frame(
        GATEWAY_IP,
        IpProtocol::Udp,
        300,
        16,
        true,
        &[0xee; 1480],
    ));
    assert_eq!(
        h.backend
            .frame_counters()
            .drops(DropReason::FragmentOverlap),
        2
    );
    assert_eq!(
        (
            h.backend.reassembly().datagrams(),
            h.backend.reassembly().bytes()
        ),
        (0, 0)
    );
    // The rest starts a datagram that never completes: nothing reaches the server.
    h.send(&frames[1]);
    h.send(&frames[2]);
    assert_eq!(h.backend.reassembly().datagrams(), 1);
    assert!(h.collect_for(Duration::from_millis(300)).is_empty());
    h.backend
        .handle_timeout(Instant::now() + REASSEMBLY_TIMEOUT + Duration::from_secs(1));
    assert_eq!(
        h.backend
            .frame_counters()
            .drops(DropReason::FragmentTimeout),
        2
    );
    assert_eq!(h.backend.poll_timeout(), None, "nothing left to wake for");
    // Unblock the server thread: it gets nothing from the guest.
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"end", ("127.0.0.1", port))
        .unwrap();
    assert_eq!(server.join().unwrap(), vec![(3, fnv(b"end"))]);
    h.assert_quiet("after an overlap");
}

#[test]
fn too_many_datagrams_in_reassembly_are_counted_and_memory_stays_bounded() {
    let mut h = Harness::with_config(config_with_mtu(1500));
    let first = vec![0u8; 1480];
    // Twice the cap on datagrams, each one first fragment of 1480 bytes.
    for ident in 0..u16::try_from(2 * MAX_DATAGRAMS).unwrap() {
        h.send(&fragment_frame(
            GATEWAY_IP,
            IpProtocol::Udp,
            ident,
            0,
            true,
            &first,
        ));
        assert!(h.backend.reassembly().datagrams() <= MAX_DATAGRAMS);
    }
    let counters = h.backend.frame_counters();
    assert_eq!(
        counters.drops(DropReason::FragmentLimit),
        MAX_DATAGRAMS as u64
    );
    // Fragments near the end of the largest datagram pass the byte cap.
    let piece = vec![0u8; 1480];
    for ident in 1000..1100u16 {
        h.send(&fragment_frame(
            GATEWAY_IP,
            IpProtocol::Udp,
            ident,
            62_160,
            true,
            &piece,
        ));
        for k in 1..8 {
            h.send(&fragment_frame(
                GATEWAY_IP,
                IpProtocol::Udp,
                ident,
                62_160 - k * 1480,
                true,
                &piece,
            ));
        }
        assert!(h.backend.reassembly().bytes() <= MAX_BYTES);
    }
    assert!(
        h.backend.reassembly().bytes() > MAX_BYTES / 2,
        "the cap was reached"
    );
    assert!(
        h.backend.poll_timeout().is_some(),
        "datagrams held time out"
    );
    h.backend
        .handle_timeout(Instant::now() + REASSEMBLY_TIMEOUT + Duration::from_secs(1));
    assert_eq!(
        (
            h.backend.reassembly().datagrams(),
            h.backend.reassembly().bytes()
        ),
        (0, 0)
    );
    assert_eq!(h.backend.poll_timeout(), None, "nothing left to wake for");
    let counters = h.backend.frame_counters();
    let total = 2 * MAX_DATAGRAMS as u64 + 100 * 8;
    let dropped =
        counters.drops(DropReason::FragmentLimit) + counters.drops(DropReason::FragmentTimeout);
    assert_eq!(dropped, total, "every fragment counted once");
    h.assert_quiet("after a flood of fragments");
}

#[test]
fn a_fragment_held_gives_the_backend_a_deadline_and_times_out() {
    let mut h = Harness::with_config(config_with_mtu(1500));
    assert_eq!(
        h.backend.poll_timeout(),
        None,
        "an idle backend has no deadline"
    );
    let sent = Instant::now();
    h.send(&fragment_frame(
        GATEWAY_IP,
        IpProtocol::Udp,
        9,
        0,
        true,
        &[1u8; 64],
    ));
    let deadline = h.backend.poll_timeout().expect("reassembly has a deadline");
    assert!(deadline >= sent + REASSEMBLY_TIMEOUT);
    assert!(deadline <= Instant::now() + REASSEMBLY_TIMEOUT);
    h.backend
        .handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(h.backend.reassembly().datagrams(), 1, "not before its time");
    h.backend.handle_timeout(deadline);
    assert_eq!(
        h.backend
            .frame_counters()
            .drops(DropReason::FragmentTimeout),
        1
    );
    assert_eq!(h.backend.poll_timeout(), None);
    h.assert_quiet("after a reassembly timeout");
}

/// A DNS responder on 127.0.0.1 that answers one A query with `answers`
/// records (16 bytes each), so that the reply can exceed the guest's MTU.
fn big_dns_responder(answers: u16) -> (SocketAddrV4, thread::JoinHandle<Vec<u8>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let std::net::SocketAddr::V4(addr) = sock.local_addr().unwrap() else {
        unreachable!("bound to 127.0.0.1");
    };
    let handle = thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let (n, peer) = sock.recv_from(&mut buf).unwrap();
        let query = buf[..n].to_vec();
        let mut reply = query.clone();
        reply[2] = 0x81;
        reply[3] = 0x80;
        reply[6..8].copy_from_slice(&answers.to_be_bytes());
        for i in 0..answers {
            let [hi, lo] = i.to_be_bytes();
            reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, hi, lo]);
        }
        sock.send_to(&reply, peer).unwrap();
        query
    });
    (addr, handle)
}

#[test]
fn a_fragmented_dns_query_is_forwarded_and_a_4000_byte_reply_reaches_the_guest_in_fragments() {
    let (resolver, upstream) = big_dns_responder(250);
    let mut config = config_with_mtu(1500);
    config.host_resolver = Some(resolver.into());
    let mut h = Harness::with_config(config);
    let mut query = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x07slipway\x04test\x00\x00\x01\x00\x01");
    let dns = SocketAddrV4::new(harness::DNS_IP, 53);
    let udp = udp_datagram(5353, dns, &query);
    // A first fragment of 16 bytes, the rest after it.
    h.send(&fragment_frame(
        *dns.ip(),
        IpProtocol::Udp,
        400,
        16,
        false,
        &udp[16..],
    ));
    h.send(&fragment_frame(
        *dns.ip(),
        IpProtocol::Udp,
        400,
        0,
        true,
        &udp[..16],
    ));
    let mut guest = GuestReassembly::new(1500);
    let whole = next_whole(&mut h, &mut guest).expect("the DNS reply came");
    assert_eq!(whole.src, harness::DNS_IP);
    assert_eq!(
        whole.fragments, 3,
        "4008 bytes at MTU 1500: three fragments"
    );
    let reply = udp_payload(&whole);
    assert_eq!(reply.len(), query.len() + 250 * 16);
    assert_eq!(&reply[..2], &[0xab, 0xcd], "the guest's id is restored");
    assert_eq!(&upstream.join().unwrap()[12..], &query[12..]);
    assert_eq!(h.backend.counters().dns_queries, 1);
    assert_eq!(h.backend.frame_counters().reassembled(), 1);
}
