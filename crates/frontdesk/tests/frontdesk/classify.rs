//! Classification: what passes through to the relays, what is dropped and
//! counted, and fragments handed to reassembly.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Instant;

use frontdesk::Counters;
use frontdesk::{
    Classified, DropReason, Outcome, TcpFlags, TcpOptions, TcpSegment, Transport, classify,
};
use nat_core::Plan;
use smoltcp::wire::{
    ETHERNET_HEADER_LEN, EthernetAddress, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet,
    Ipv6Repr, UdpPacket,
};

use crate::guest::{
    arp_request, ethernet, guest_ping, guest_router_solicitation, guest_tcp_syn, guest_udp, ipv4,
    udp_frame,
};
use crate::{GATEWAY, GUEST, REMOTE, desk, gateway_mac, guest_mac, plan};

pub(crate) fn classify_once(frame: &[u8]) -> (Classified<'_>, Counters) {
    let mut counters = Counters::new();
    let classified = classify(frame, &plan(), &mut counters);
    assert_eq!(counters.frames(), 1);
    assert_eq!(counters.bytes(), frame.len() as u64);
    (classified, counters)
}

fn assert_dropped(frame: &[u8], reason: DropReason) {
    let (classified, counters) = classify_once(frame);
    assert_eq!(classified, Classified::Drop(reason));
    assert_eq!(counters.drops(reason), 1);
    assert_eq!(counters.total_drops(), 1);
}

#[test]
fn valid_datagrams_pass_through() {
    let frame = guest_udp(b"hello");
    let (classified, _) = classify_once(&frame);
    let Classified::Ipv4(datagram) = classified else {
        panic!("{classified:?}")
    };
    assert_eq!(datagram.header.src_addr, GUEST);
    assert_eq!(
        datagram.transport,
        Transport::Udp {
            src_port: 40000,
            dst_port: 7,
            payload: b"hello"
        }
    );
    assert_eq!(datagram.packet.len(), 20 + 8 + 5);

    let frame = guest_tcp_syn();
    let (classified, _) = classify_once(&frame);
    let Classified::Ipv4(datagram) = classified else {
        panic!("{classified:?}")
    };
    // The header is read once, here, options as Linux reads them.
    assert_eq!(
        datagram.transport,
        Transport::Tcp(TcpSegment {
            src_port: 40001,
            dst_port: 80,
            seq: 1000,
            ack: None,
            flags: TcpFlags::SYN,
            window: 64240,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
            },
            payload: &[],
        })
    );
    let frame = guest_ping();
    let (classified, _) = classify_once(&frame);
    assert!(matches!(
        classified,
        Classified::Ipv4(d) if matches!(d.transport, Transport::Icmp { msg_type: 8, code: 0, .. })
    ));
    let frame = guest_router_solicitation();
    let (classified, counters) = classify_once(&frame);
    assert!(
        matches!(
            classified,
            Classified::Ipv6(d) if matches!(d.transport, Transport::Icmp { msg_type: 133, .. })
        ),
        "{classified:?}"
    );
    assert_eq!(counters.total_drops(), 0);
}

#[test]
fn ethernet_padding_is_ignored() {
    let mut frame = guest_udp(b"");
    frame.resize(60, 0xff);
    let (classified, _) = classify_once(&frame);
    let Classified::Ipv4(datagram) = classified else {
        panic!("{classified:?}")
    };
    assert_eq!(datagram.packet.len(), 28);
}

#[test]
fn frame_to_another_mac_is_dropped_and_counted() {
    let other = EthernetAddress([0x52, 0x54, 0, 0, 0, 9]);
    let frame = udp_frame(
        other,
        SocketAddrV4::new(GUEST, 1),
        SocketAddrV4::new(REMOTE, 2),
        b"x",
    );
    assert_dropped(&frame, DropReason::NotForUs);
    // IPv4 to an IPv6 multicast MAC, or to an IPv4 multicast MAC.
    let frame = udp_frame(
        EthernetAddress([0x33, 0x33, 0, 0, 0, 1]),
        SocketAddrV4::new(GUEST, 1),
        SocketAddrV4::new(REMOTE, 2),
        b"x",
    );
    assert_dropped(&frame, DropReason::NotForUs);
    let frame = udp_frame(
        EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 1]),
        SocketAddrV4::new(GUEST, 1),
        SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 1), 2),
        b"x",
    );
    assert_dropped(&frame, DropReason::NotForUs);
}

#[test]
fn group_source_mac_is_dropped() {
    let mut frame = guest_udp(b"x");
    frame[6] |= 1;
    assert_dropped(&frame, DropReason::BadSourceMac);
    let mut frame = guest_udp(b"x");
    frame[6..12].fill(0);
    assert_dropped(&frame, DropReason::BadSourceMac);
}

#[test]
fn other_ethertypes_are_dropped() {
    let mut frame = guest_udp(b"x");
    frame[12..14].copy_from_slice(&[0x81, 0x00]); // 802.1Q
    assert_dropped(&frame, DropReason::UnsupportedEtherType);
}

#[test]
fn bad_ipv4_header_checksum_is_dropped_and_counted() {
    let mut frame = guest_udp(b"payload");
    frame[ETHERNET_HEADER_LEN + 10] ^= 0x55;
    assert_dropped(&frame, DropReason::BadChecksum);
}

#[test]
fn bad_transport_checksums_are_dropped() {
    let mut frame = guest_udp(b"payload");
    let last = frame.len() - 1;
    frame[last] ^= 1;
    assert_dropped(&frame, DropReason::BadChecksum);
    let mut frame = guest_tcp_syn();
    frame[ETHERNET_HEADER_LEN + 20 + 4] ^= 1; // sequence number
    assert_dropped(&frame, DropReason::BadChecksum);
    let mut frame = guest_ping();
    let last = frame.len() - 1;
    frame[last] ^= 1;
    assert_dropped(&frame, DropReason::BadChecksum);
}

#[test]
fn zero_udp_checksum_is_accepted_over_ipv4() {
    let mut frame = guest_udp(b"payload");
    let at = ETHERNET_HEADER_LEN + 20 + 6;
    frame[at..at + 2].fill(0);
    let last = frame.len() - 1;
    frame[last] ^= 1; // would fail a checksum, but there is none
    let (classified, _) = classify_once(&frame);
    assert!(matches!(classified, Classified::Ipv4(_)), "{classified:?}");
}

fn set_ipv4_flags(frame: &mut [u8], more_frags: bool, offset: u16) {
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]);
    ip.set_more_frags(more_frags);
    ip.set_frag_offset(offset);
    ip.fill_checksum();
}

#[test]
fn ipv4_fragments_are_classified_for_reassembly_not_dropped() {
    let mut first = guest_udp(b"fragment");
    set_ipv4_flags(&mut first, true, 0);
    let (classified, counters) = classify_once(&first);
    let Classified::Ipv4Fragment(fragment) = classified else {
        panic!("{classified:?}");
    };
    assert_eq!((fragment.offset, fragment.more_frags), (0, true));
    assert_eq!(fragment.data.len(), 16, "UDP header and payload");
    assert_eq!(counters.total_drops(), 0);
    let mut last = guest_udp(b"fragment");
    set_ipv4_flags(&mut last, false, 64);
    let (classified, _) = classify_once(&last);
    assert!(
        matches!(classified, Classified::Ipv4Fragment(f) if f.offset == 64 && !f.more_frags),
        "{classified:?}"
    );
}

/// `frame` (one whole guest IPv4 frame) cut into fragments whose data is
/// `first` bytes, then the rest.
fn cut_in_two(frame: &[u8], first: usize) -> [Vec<u8>; 2] {
    let ip = Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).unwrap();
    let payload = ip.payload().to_vec();
    let header = &frame[..ETHERNET_HEADER_LEN + 20];
    let piece = |data: &[u8], offset: usize, more: bool| {
        let mut f = header.to_vec();
        f.extend_from_slice(data);
        let mut ip = Ipv4Packet::new_unchecked(&mut f[ETHERNET_HEADER_LEN..]);
        ip.set_total_len(u16::try_from(20 + data.len()).unwrap());
        ip.set_ident(42);
        ip.clear_flags();
        ip.set_more_frags(more);
        ip.set_frag_offset(u16::try_from(offset).unwrap());
        ip.fill_checksum();
        f
    };
    [
        piece(&payload[..first], 0, true),
        piece(&payload[first..], first, false),
    ]
}

#[test]
fn fragments_reassemble_into_the_datagram_the_front_desk_passes_on() {
    let mut desk = desk();
    let mut out = vec![0u8; 1514];
    let now = Instant::now();
    let whole = guest_udp(&[7u8; 100]);
    // The last fragment first.
    let [head, tail] = cut_in_two(&whole, 24);
    assert_eq!(desk.handle_frame(&tail, now, &mut out), Outcome::Consumed);
    assert_eq!(desk.reassembly().datagrams(), 1);
    assert!(desk.poll_timeout().is_some());
    assert_eq!(
        desk.handle_frame(&head, now, &mut out),
        Outcome::Reassembled
    );
    assert_eq!(desk.poll_timeout(), None);
    let frame = desk.take_reassembled().expect("the whole datagram");
    assert_eq!(desk.take_reassembled(), None, "taken once");
    let Outcome::Ipv4(datagram) = desk.handle_reassembled(&frame, &mut out) else {
        panic!("not passed on");
    };
    assert!(matches!(
        datagram.transport,
        Transport::Udp { src_port: 40000, payload, .. } if payload == [7u8; 100]
    ));
    // The first fragment's header (its id, no fragment fields), the whole payload.
    let ip = Ipv4Packet::new_checked(datagram.packet).unwrap();
    assert_eq!(
        (ip.ident(), ip.more_frags(), ip.frag_offset()),
        (42, false, 0)
    );
    assert_eq!(ip.payload(), &whole[ETHERNET_HEADER_LEN + 20..]);
    let counters = desk.counters();
    assert_eq!((counters.frames(), counters.reassembled()), (2, 1));
    assert_eq!(counters.total_drops(), 0);
}

#[test]
fn a_tiny_first_fragment_reassembles_and_the_checksum_is_checked_on_the_whole() {
    let mut desk = desk();
    let mut out = vec![0u8; 1514];
    let now = Instant::now();
    // 8 bytes: less than a TCP header.
    let whole = guest_tcp_syn();
    let [head, tail] = cut_in_two(&whole, 8);
    assert_eq!(desk.handle_frame(&head, now, &mut out), Outcome::Consumed);
    assert_eq!(
        desk.handle_frame(&tail, now, &mut out),
        Outcome::Reassembled
    );
    let frame = desk.take_reassembled().unwrap();
    assert!(matches!(
        desk.handle_reassembled(&frame, &mut out),
        Outcome::Ipv4(d) if matches!(d.transport, Transport::Tcp(_))
    ));
    // A bad UDP checksum shows only on the whole datagram.
    let mut bad = guest_udp(&[1u8; 40]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let [head, tail] = cut_in_two(&bad, 16);
    assert_eq!(desk.handle_frame(&head, now, &mut out), Outcome::Consumed);
    assert_eq!(
        desk.handle_frame(&tail, now, &mut out),
        Outcome::Reassembled
    );
    let frame = desk.take_reassembled().unwrap();
    assert_eq!(
        desk.handle_reassembled(&frame, &mut out),
        Outcome::Dropped(DropReason::BadChecksum)
    );
    assert_eq!(desk.counters().drops(DropReason::BadChecksum), 1);
}

#[test]
fn zero_ttl_is_dropped() {
    let mut frame = guest_udp(b"x");
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]);
    ip.set_hop_limit(0);
    ip.fill_checksum();
    assert_dropped(&frame, DropReason::TtlExpired);
}

#[test]
fn truncated_and_inconsistent_ipv4_is_malformed() {
    let frame = guest_udp(b"some payload");
    assert_dropped(&frame[..ETHERNET_HEADER_LEN + 19], DropReason::Malformed);
    assert_dropped(&frame[..frame.len() - 1], DropReason::Malformed);
    assert_dropped(&frame[..10], DropReason::Malformed);
    let mut bad_ihl = frame.clone();
    bad_ihl[ETHERNET_HEADER_LEN] = 0x44;
    assert_dropped(&bad_ihl, DropReason::Malformed);
    let mut short_udp_len = frame.clone();
    let at = ETHERNET_HEADER_LEN + 20 + 4;
    short_udp_len[at..at + 2].copy_from_slice(&4u16.to_be_bytes());
    assert_dropped(&short_udp_len, DropReason::Malformed);
}

#[test]
fn other_ipv4_protocols_are_dropped() {
    let frame = ipv4(gateway_mac(), GUEST, REMOTE, IpProtocol::Igmp, 8, |_| {});
    assert_dropped(&frame, DropReason::UnsupportedProtocol);
}

#[test]
fn ipv6_udp_without_checksum_is_dropped() {
    let src = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 15);
    let dst = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 3);
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: 9,
        hop_limit: 64,
    };
    let frame = ethernet(
        guest_mac(),
        gateway_mac(),
        EthernetProtocol::Ipv6,
        49,
        |p| {
            let mut packet = Ipv6Packet::new_unchecked(p);
            ip.emit(&mut packet);
            let mut udp = UdpPacket::new_unchecked(packet.payload_mut());
            udp.set_src_port(1);
            udp.set_dst_port(53);
            udp.set_len(9);
            udp.set_checksum(0);
        },
    );
    assert_dropped(&frame, DropReason::BadChecksum);
}

#[test]
fn disabled_family_is_dropped() {
    let v6_only = Plan::builder().disable_ipv4().build().unwrap();
    let mut counters = Counters::new();
    assert_eq!(
        classify(&guest_udp(b"x"), &v6_only, &mut counters),
        Classified::Drop(DropReason::FamilyDisabled)
    );
    assert_eq!(
        classify(&arp_request(GATEWAY), &v6_only, &mut counters),
        Classified::Drop(DropReason::FamilyDisabled)
    );
    assert_eq!(counters.drops(DropReason::FamilyDisabled), 2);
}

#[test]
fn guest_mac_is_learnt_from_accepted_frames() {
    let mut desk = desk();
    let other = EthernetAddress([0x02, 0, 0, 0, 0, 7]);
    let mut frame = guest_udp(b"x");
    frame[6..12].copy_from_slice(&other.0);
    let mut out = [0u8; 64];
    assert!(matches!(
        desk.handle_frame(&frame, Instant::now(), &mut out),
        Outcome::Ipv4(_)
    ));
    assert_eq!(desk.guest_mac(), other);
    assert_eq!(desk.link_to_guest().dst, other);
    // A dropped frame teaches nothing.
    let mut bad = guest_udp(b"x");
    bad[ETHERNET_HEADER_LEN + 10] ^= 1;
    desk.handle_frame(&bad, Instant::now(), &mut out);
    assert_eq!(desk.guest_mac(), other);
}
