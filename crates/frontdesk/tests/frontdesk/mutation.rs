//! Property tests: every valid frame is accepted as it is, and mutated frames
//! keep the bookkeeping consistent.

use std::net::Ipv4Addr;
use std::time::Instant;

use frontdesk::{DropReason, FrontDesk, Outcome};
use proptest::prelude::*;
use smoltcp::wire::{
    DhcpMessageType, ETHERNET_HEADER_LEN, EthernetFrame, Icmpv4Packet, IpAddress, IpProtocol,
    Ipv4Packet, TcpPacket, UdpPacket,
};

use crate::dhcpv6::guest_dhcpv6_solicit;
use crate::guest::{
    ClientMessage, arp_request, guest_ping, guest_router_solicitation, guest_tcp_syn, guest_udp,
};
use crate::v6frames::{DNS6, Ext, GUEST_LL, ipv6_udp};
use crate::{GATEWAY, GUEST, desk, gateway_mac, guest_mac};

fn valid_frames() -> Vec<Vec<u8>> {
    let mut request = ClientMessage::new(DhcpMessageType::Request);
    request.requested = Some(GUEST);
    request.server = Some(GATEWAY);
    let mut inform = ClientMessage::new(DhcpMessageType::Inform);
    inform.ciaddr = GUEST;
    let mut release = ClientMessage::new(DhcpMessageType::Release);
    release.ciaddr = GUEST;
    vec![
        arp_request(GATEWAY),
        arp_request(GUEST),
        ClientMessage::new(DhcpMessageType::Discover).frame(),
        request.frame(),
        inform.frame(),
        release.frame(),
        guest_udp(b"hello"),
        guest_tcp_syn(),
        guest_ping(),
        guest_router_solicitation(),
        guest_dhcpv6_solicit(),
        ipv6_udp(
            (GUEST_LL, DNS6),
            &[Ext::hop_by_hop(), Ext::routing(), Ext::dest_opts()],
            (40_000, 53),
            b"query",
        ),
    ]
}

/// Feeds `frame` to a front desk and checks the bookkeeping: one more frame
/// seen, one more drop exactly when the outcome is a drop, replies inside
/// the buffer and well-formed.
fn check_frame(desk: &mut FrontDesk, frame: &[u8], out: &mut [u8]) -> Result<(), TestCaseError> {
    let before = desk.counters().clone();
    let outcome = desk.handle_frame(frame, Instant::now(), out);
    let after = desk.counters();
    prop_assert_eq!(after.frames(), before.frames() + 1);
    let dropped = after.total_drops() - before.total_drops();
    // A fragment may end its whole datagram, or make room by giving up
    // others: then every frame they held is counted with it.
    let given_up = after.drops(DropReason::FragmentLimit) - before.drops(DropReason::FragmentLimit);
    match outcome {
        Outcome::Dropped(reason) if reason.name().starts_with("fragment_") => {
            prop_assert!(after.drops(reason) > before.drops(reason));
        }
        Outcome::Dropped(reason) => {
            prop_assert_eq!(dropped, 1);
            prop_assert_eq!(after.drops(reason), before.drops(reason) + 1);
        }
        Outcome::Consumed | Outcome::Reassembled => prop_assert_eq!(dropped, given_up),
        Outcome::Reply(len) => {
            prop_assert_eq!(dropped, 0);
            prop_assert!(len <= out.len());
            let eth = EthernetFrame::new_checked(&out[..len]);
            prop_assert!(eth.is_ok());
            prop_assert_eq!(eth.unwrap().src_addr(), gateway_mac());
        }
        Outcome::Ipv4(_) | Outcome::Ipv6(_) => prop_assert_eq!(dropped, 0),
    }
    Ok(())
}

/// Recomputes the IPv4 header checksum and the TCP, UDP or ICMP checksum
/// of an IPv4 frame, where its lengths allow.
fn refill_checksums(frame: &mut [u8]) {
    if frame.len() < ETHERNET_HEADER_LEN || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let ip_bytes = &mut frame[ETHERNET_HEADER_LEN..];
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut *ip_bytes) else {
        return;
    };
    ip.fill_checksum();
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    let protocol = ip.next_header();
    let range = usize::from(ip.header_len())..usize::from(ip.total_len());
    let l4 = &mut ip_bytes[range];
    match protocol {
        IpProtocol::Udp => {
            if let Ok(mut udp) = UdpPacket::new_checked(l4) {
                udp.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Tcp => {
            if let Ok(mut tcp) = TcpPacket::new_checked(l4) {
                tcp.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Icmp => {
            if let Ok(mut icmp) = Icmpv4Packet::new_checked(l4) {
                icmp.fill_checksum();
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_drops_are_counted(
        frame in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut desk = desk();
        let mut out = vec![0u8; 1024];
        check_frame(&mut desk, &frame, &mut out)?;
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_ethernet_header_never_panic(
        ethertype in prop_oneof![Just(0x0806u16), Just(0x0800), Just(0x86dd)],
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut frame = Vec::with_capacity(14 + body.len());
        frame.extend_from_slice(&gateway_mac().0);
        frame.extend_from_slice(&guest_mac().0);
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(&body);
        let mut desk = desk();
        let mut out = vec![0u8; 1024];
        check_frame(&mut desk, &frame, &mut out)?;
    }

    #[test]
    fn mutated_valid_frames_never_panic_and_drops_are_counted(
        which in 0usize..12,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        extra in proptest::collection::vec(any::<u8>(), 0..8),
        out_len in prop_oneof![Just(2048usize), 0usize..400],
        fix_checksums in any::<bool>(),
    ) {
        let mut frame = valid_frames().swap_remove(which);
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] ^= byte;
        }
        if let Some(cut) = cut {
            frame.truncate(cut.index(frame.len() + 1));
        }
        frame.extend_from_slice(&extra);
        if fix_checksums {
            // Let the mutation reach the parsers behind the checksums.
            refill_checksums(&mut frame);
        }
        let mut desk = desk();
        let mut out = vec![0u8; out_len];
        check_frame(&mut desk, &frame, &mut out)?;
        // Whatever state the first frame left, a second pass is as safe.
        check_frame(&mut desk, &frame, &mut out)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn mutated_dhcp_messages_with_good_checksums_never_panic(
        kind in prop_oneof![
            Just(DhcpMessageType::Discover),
            Just(DhcpMessageType::Request),
            Just(DhcpMessageType::Release),
            Just(DhcpMessageType::Decline),
            Just(DhcpMessageType::Inform),
        ],
        ciaddr in prop_oneof![Just(Ipv4Addr::UNSPECIFIED), Just(GUEST)],
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        options in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut message = ClientMessage::new(kind);
        message.ciaddr = ciaddr;
        message.requested = Some(GUEST);
        let mut frame = message.frame();
        // Mutate the DHCP message only, options area included, and grow it
        // with arbitrary option bytes; then make the lengths and checksums
        // consistent again so the DHCP parser sees it.
        let dhcp_start = ETHERNET_HEADER_LEN + 20 + 8;
        let dhcp_len = frame.len() - dhcp_start;
        for (at, byte) in flips {
            let i = dhcp_start + at.index(dhcp_len);
            frame[i] ^= byte;
        }
        frame.extend_from_slice(&options);
        let ip_len = u16::try_from(frame.len() - ETHERNET_HEADER_LEN).unwrap();
        Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]).set_total_len(ip_len);
        UdpPacket::new_unchecked(&mut frame[ETHERNET_HEADER_LEN + 20..]).set_len(ip_len - 20);
        refill_checksums(&mut frame);
        let mut desk = desk();
        let mut out = vec![0u8; 2048];
        check_frame(&mut desk, &frame, &mut out)?;
        check_frame(&mut desk, &frame, &mut out)?;
    }
}

#[test]
fn every_valid_frame_is_accepted_unmutated() {
    let mut desk = desk();
    let mut out = vec![0u8; 2048];
    for frame in valid_frames() {
        let outcome = desk.handle_frame(&frame, Instant::now(), &mut out);
        match outcome {
            Outcome::Dropped(DropReason::ArpNotServed) => {} // the guest's own address
            Outcome::Dropped(reason) => panic!("dropped a valid frame: {reason}"),
            _ => {}
        }
    }
    assert_eq!(desk.counters().total_drops(), 1);
}
