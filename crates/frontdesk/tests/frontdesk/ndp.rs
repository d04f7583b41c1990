//! Neighbour discovery: which addresses the front desk answers for, what
//! the advertisements say, and what it drops.

use std::net::Ipv6Addr;
use std::time::Instant;

use frontdesk::{
    DropReason, FrontDesk, NDP_HOP_LIMIT, Outcome, TransportChecksums, solicited_node,
};
use nat_core::Plan;
use proptest::prelude::*;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv6Packet, Icmpv6Repr,
    IpProtocol, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr,
};

use crate::guest::ethernet;
use crate::{desk, gateway_mac, guest_mac};

/// The guest's link-local address, from its MAC address.
pub(crate) const GUEST_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);
/// The guest's SLAAC address in the plan's network.
pub(crate) const GUEST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0x5054, 0xff, 0xfe12, 0x3456);
pub(crate) const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 2);
pub(crate) const DNS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 3);
pub(crate) const ROUTER_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
pub(crate) const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The Ethernet address of an IPv6 multicast group (RFC 2464).
pub(crate) fn multicast_mac(group: Ipv6Addr) -> EthernetAddress {
    let o = group.octets();
    EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The bytes of an ND message, its checksum not yet filled in.
pub(crate) fn nd_message(repr: &NdiscRepr<'_>) -> Vec<u8> {
    let mut message = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv6Packet::new_unchecked(&mut message[..]));
    message
}

/// How a test frame's IPv6 header and checksum are written.
#[derive(Clone, Copy)]
pub(crate) struct Ip {
    pub(crate) src: Ipv6Addr,
    pub(crate) dst: Ipv6Addr,
    pub(crate) hop_limit: u8,
    pub(crate) fill_checksum: bool,
}

impl Ip {
    pub(crate) fn new(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        Self {
            src,
            dst,
            hop_limit: NDP_HOP_LIMIT,
            fill_checksum: true,
        }
    }

    /// A frame from the guest carrying `message` as ICMPv6, to the
    /// multicast MAC address for a multicast destination and to the
    /// gateway's otherwise.
    pub(crate) fn frame(self, message: &[u8]) -> Vec<u8> {
        let ip = Ipv6Repr {
            src_addr: self.src,
            dst_addr: self.dst,
            next_header: IpProtocol::Icmpv6,
            payload_len: message.len(),
            hop_limit: self.hop_limit,
        };
        let dst_mac = if self.dst.is_multicast() {
            multicast_mac(self.dst)
        } else {
            gateway_mac()
        };
        ethernet(
            guest_mac(),
            dst_mac,
            EthernetProtocol::Ipv6,
            ip.buffer_len() + message.len(),
            |p| {
                let mut packet = Ipv6Packet::new_unchecked(p);
                ip.emit(&mut packet);
                let icmp = packet.payload_mut();
                icmp.copy_from_slice(message);
                if self.fill_checksum {
                    Icmpv6Packet::new_unchecked(icmp).fill_checksum(&self.src, &self.dst);
                }
            },
        )
    }
}

/// A neighbour solicitation for `target` from the guest's link-local
/// address to the target's solicited-node group, with the guest's MAC
/// address as its source link-layer address.
pub(crate) fn neighbor_solicitation(target: Ipv6Addr) -> Vec<u8> {
    let message = nd_message(&NdiscRepr::NeighborSolicit {
        target_addr: target,
        lladdr: Some(guest_mac().into()),
    });
    Ip::new(GUEST_LL, solicited_node(target)).frame(&message)
}

/// A duplicate address detection probe for `target`.
fn dad_probe(target: Ipv6Addr) -> Vec<u8> {
    let message = nd_message(&NdiscRepr::NeighborSolicit {
        target_addr: target,
        lladdr: None,
    });
    Ip::new(Ipv6Addr::UNSPECIFIED, solicited_node(target)).frame(&message)
}

/// A reply frame parsed back: its Ethernet and IPv6 headers, and the ICMPv6
/// message, whose checksum is verified.
pub(crate) struct Reply {
    pub(crate) eth: EthernetRepr,
    pub(crate) ip: Ipv6Repr,
    pub(crate) icmp: Vec<u8>,
}

impl Reply {
    pub(crate) fn parse(frame: &[u8]) -> Self {
        let eth_frame = EthernetFrame::new_checked(frame).unwrap();
        let eth = EthernetRepr::parse(&eth_frame).unwrap();
        let packet = Ipv6Packet::new_checked(eth_frame.payload()).unwrap();
        let ip = Ipv6Repr::parse(&packet).unwrap();
        assert_eq!(packet.total_len(), eth_frame.payload().len(), "no padding");
        let icmp = packet.payload().to_vec();
        let checked = Icmpv6Packet::new_checked(&icmp[..]).unwrap();
        assert!(checked.verify_checksum(&ip.src_addr, &ip.dst_addr));
        assert_eq!(checked.msg_code(), 0);
        Self { eth, ip, icmp }
    }

    pub(crate) fn ndisc(&self) -> NdiscRepr<'_> {
        let packet = Icmpv6Packet::new_checked(&self.icmp[..]).unwrap();
        let repr = Icmpv6Repr::parse(
            &self.ip.src_addr,
            &self.ip.dst_addr,
            &packet,
            &ChecksumCapabilities::default(),
        )
        .unwrap();
        match repr {
            Icmpv6Repr::Ndisc(ndisc) => ndisc,
            other => panic!("not an ND message: {other:?}"),
        }
    }
}

/// The reply frame the front desk writes for `frame`, or the drop reason.
pub(crate) fn answer(desk: &mut FrontDesk, frame: &[u8]) -> Result<Vec<u8>, DropReason> {
    answer_with(desk, frame, TransportChecksums::Verify)
}

fn answer_with(
    desk: &mut FrontDesk,
    frame: &[u8],
    checksums: TransportChecksums,
) -> Result<Vec<u8>, DropReason> {
    let mut out = vec![0u8; 1514];
    match desk.handle_frame_with(frame, checksums, Instant::now(), &mut out) {
        Outcome::Reply(len) => Ok(out[..len].to_vec()),
        Outcome::Dropped(reason) => Err(reason),
        other => panic!("unexpected outcome for an ND message: {other:?}"),
    }
}

fn check_neighbor_advertisement(reply: &Reply, target: Ipv6Addr, dst: Ipv6Addr) {
    assert_eq!(
        reply.eth,
        EthernetRepr {
            src_addr: gateway_mac(),
            dst_addr: guest_mac(),
            ethertype: EthernetProtocol::Ipv6,
        }
    );
    assert_eq!(
        reply.ip,
        Ipv6Repr {
            src_addr: target,
            dst_addr: dst,
            next_header: IpProtocol::Icmpv6,
            payload_len: 32,
            hop_limit: 255,
        }
    );
    assert_eq!(
        reply.ndisc(),
        NdiscRepr::NeighborAdvert {
            flags: NdiscNeighborFlags::ROUTER
                | NdiscNeighborFlags::SOLICITED
                | NdiscNeighborFlags::OVERRIDE,
            target_addr: target,
            lladdr: Some(gateway_mac().into()),
        }
    );
    // The target link-layer address option, byte by byte.
    let mut option = vec![2, 1];
    option.extend_from_slice(gateway_mac().as_bytes());
    assert_eq!(&reply.icmp[24..], &option[..]);
}

#[test]
fn solicitations_for_gateway_dns_and_router_link_local_get_a_solicited_advertisement() {
    let mut desk = desk();
    for target in [GATEWAY_V6, DNS_V6, ROUTER_LL] {
        let frame = answer(&mut desk, &neighbor_solicitation(target)).expect("answered");
        check_neighbor_advertisement(&Reply::parse(&frame), target, GUEST_LL);
    }
    assert_eq!(desk.counters().total_drops(), 0);
}

#[test]
fn unicast_solicitation_from_a_global_address_is_answered_to_it() {
    // Neighbour unreachability detection: straight to the gateway.
    let mut desk = desk();
    let message = nd_message(&NdiscRepr::NeighborSolicit {
        target_addr: GATEWAY_V6,
        lladdr: None,
    });
    let frame = answer(&mut desk, &Ip::new(GUEST_V6, GATEWAY_V6).frame(&message)).unwrap();
    check_neighbor_advertisement(&Reply::parse(&frame), GATEWAY_V6, GUEST_V6);
}

#[test]
fn configured_router_link_local_is_answered_and_the_default_is_not() {
    let configured = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x99);
    let plan = Plan::builder()
        .ipv6_gateway_link_local(configured)
        .build()
        .unwrap();
    let mut desk = FrontDesk::new(plan, frontdesk::DhcpConfig::default());
    let frame = answer(&mut desk, &neighbor_solicitation(configured)).unwrap();
    check_neighbor_advertisement(&Reply::parse(&frame), configured, GUEST_LL);
    assert_eq!(
        answer(&mut desk, &neighbor_solicitation(ROUTER_LL)),
        Err(DropReason::NdpNotServed)
    );
}

#[test]
fn solicitations_for_the_guests_own_or_other_addresses_get_nothing_and_are_counted() {
    let configured_guest = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0x15);
    let plan = Plan::builder()
        .ipv6_guest(configured_guest)
        .build()
        .unwrap();
    let mut desk = FrontDesk::new(plan, frontdesk::DhcpConfig::default());
    let others = [
        configured_guest,
        GUEST_V6,
        GUEST_LL,
        Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0x99),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    ];
    for target in others {
        assert_eq!(
            answer(&mut desk, &neighbor_solicitation(target)),
            Err(DropReason::NdpNotServed),
            "{target}"
        );
    }
    assert_eq!(desk.counters().drops(DropReason::NdpNotServed), 5);
    assert_eq!(desk.counters().total_drops(), 5);
}

#[test]
fn duplicate_address_probes_get_nothing_and_are_counted() {
    let mut desk = desk();
    // The guest's own address, and one of slipway's: a probe never hears
    // a defence.
    for target in [GUEST_LL, GUEST_V6, GATEWAY_V6, ROUTER_LL] {
        assert_eq!(
            answer(&mut desk, &dad_probe(target)),
            Err(DropReason::NdpDadProbe)
        );
    }
    assert_eq!(desk.counters().drops(DropReason::NdpDadProbe), 4);
}

#[test]
fn guest_advertisements_and_redirects_are_ignored_and_counted() {
    let mut desk = desk();
    let unsolicited = nd_message(&NdiscRepr::NeighborAdvert {
        flags: NdiscNeighborFlags::OVERRIDE,
        target_addr: GUEST_LL,
        lladdr: Some(guest_mac().into()),
    });
    let redirect = nd_message(&NdiscRepr::Redirect {
        target_addr: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 7),
        dest_addr: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        lladdr: None,
        redirected_hdr: None,
    });
    let router_advert = nd_message(&NdiscRepr::RouterAdvert {
        hop_limit: 64,
        flags: smoltcp::wire::NdiscRouterFlags::empty(),
        router_lifetime: smoltcp::time::Duration::from_secs(1800),
        reachable_time: smoltcp::time::Duration::ZERO,
        retrans_time: smoltcp::time::Duration::ZERO,
        lladdr: Some(guest_mac().into()),
        mtu: None,
        prefix_info: None,
    });
    let frames = [
        Ip::new(GUEST_LL, ALL_NODES).frame(&unsolicited),
        Ip::new(GUEST_LL, GUEST_V6).frame(&redirect),
        Ip::new(GUEST_LL, ALL_NODES).frame(&router_advert),
    ];
    for frame in &frames {
        assert_eq!(answer(&mut desk, frame), Err(DropReason::NdpIgnored));
    }
    assert_eq!(desk.counters().drops(DropReason::NdpIgnored), 3);
    assert_eq!(desk.counters().total_drops(), 3);
}

/// A neighbour solicitation for the gateway, spoilt by `spoil`.
fn spoilt_solicitation(spoil: impl FnOnce(&mut Ip, &mut Vec<u8>)) -> Vec<u8> {
    let mut message = nd_message(&NdiscRepr::NeighborSolicit {
        target_addr: GATEWAY_V6,
        lladdr: Some(guest_mac().into()),
    });
    let mut ip = Ip::new(GUEST_LL, solicited_node(GATEWAY_V6));
    spoil(&mut ip, &mut message);
    ip.frame(&message)
}

#[test]
fn malformed_nd_messages_are_dropped_and_counted() {
    let cases: [(&str, Vec<u8>); 7] = [
        (
            "hop limit 64",
            spoilt_solicitation(|ip, _| ip.hop_limit = 64),
        ),
        ("code 1", spoilt_solicitation(|_, m| m[1] = 1)),
        ("option length 0", spoilt_solicitation(|_, m| m[25] = 0)),
        ("option past the end", spoilt_solicitation(|_, m| m[25] = 2)),
        ("stray byte", spoilt_solicitation(|_, m| m.push(0))),
        (
            "multicast target",
            spoilt_solicitation(|_, m| m[8..24].copy_from_slice(&ALL_NODES.octets())),
        ),
        (
            "probe with a source address option",
            spoilt_solicitation(|ip, _| ip.src = Ipv6Addr::UNSPECIFIED),
        ),
    ];
    let mut desk = desk();
    for (what, frame) in &cases {
        assert_eq!(
            answer(&mut desk, frame),
            Err(DropReason::NdpInvalid),
            "{what}"
        );
    }
    assert_eq!(desk.counters().drops(DropReason::NdpInvalid), 7);
    // Shorter than a solicitation's fixed part: the classifier's ICMPv6
    // length check drops it first.
    let short = spoilt_solicitation(|_, m| m.truncate(20));
    assert_eq!(answer(&mut desk, &short), Err(DropReason::Malformed));
    assert_eq!(desk.counters().total_drops(), 8);
}

#[test]
fn bad_checksum_is_dropped_whether_or_not_checksums_are_offloaded() {
    let frame = spoilt_solicitation(|ip, _| ip.fill_checksum = false);
    let mut desk = desk();
    assert_eq!(answer(&mut desk, &frame), Err(DropReason::BadChecksum));
    assert_eq!(
        answer_with(&mut desk, &frame, TransportChecksums::Offloaded),
        Err(DropReason::BadChecksum)
    );
    assert_eq!(desk.counters().drops(DropReason::BadChecksum), 2);
}

#[test]
fn offloaded_checksum_that_is_right_is_still_answered() {
    let mut desk = desk();
    let frame = answer_with(
        &mut desk,
        &neighbor_solicitation(GATEWAY_V6),
        TransportChecksums::Offloaded,
    )
    .expect("answered");
    check_neighbor_advertisement(&Reply::parse(&frame), GATEWAY_V6, GUEST_LL);
}

#[test]
fn solicited_advertisement_to_a_group_is_invalid() {
    let mut desk = desk();
    let message = nd_message(&NdiscRepr::NeighborAdvert {
        flags: NdiscNeighborFlags::SOLICITED,
        target_addr: GUEST_LL,
        lladdr: Some(guest_mac().into()),
    });
    let frame = Ip::new(GUEST_LL, ALL_NODES).frame(&message);
    assert_eq!(answer(&mut desk, &frame), Err(DropReason::NdpInvalid));
}

#[test]
fn other_icmpv6_messages_go_on_to_the_relays() {
    let mut desk = desk();
    let echo = [128u8, 0, 0, 0, 0, 1, 0, 1];
    let mut out = vec![0u8; 1514];
    let frame = Ip::new(GUEST_V6, GATEWAY_V6).frame(&echo);
    assert!(matches!(
        desk.handle_frame(&frame, Instant::now(), &mut out),
        Outcome::Ipv6(_)
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn random_bytes_after_ipv6_and_icmpv6_headers_never_panic(
        msg_type in prop_oneof![133u8..=137, any::<u8>()],
        code in prop_oneof![Just(0u8), any::<u8>()],
        body in proptest::collection::vec(any::<u8>(), 0..160),
        unspecified_source in any::<bool>(),
        multicast in any::<bool>(),
        fill_checksum in prop_oneof![9 => Just(true), 1 => Just(false)],
    ) {
        let mut message = vec![msg_type, code, 0, 0];
        message.extend_from_slice(&body);
        let src = if unspecified_source { Ipv6Addr::UNSPECIFIED } else { GUEST_LL };
        let dst = if multicast { solicited_node(GATEWAY_V6) } else { ROUTER_LL };
        let frame = Ip { fill_checksum, ..Ip::new(src, dst) }.frame(&message);
        let mut desk = desk();
        let mut out = vec![0u8; 1514];
        let outcome = desk.handle_frame(&frame, Instant::now(), &mut out);
        let drops = desk.counters().total_drops();
        match outcome {
            Outcome::Dropped(reason) => {
                prop_assert_eq!(drops, 1);
                prop_assert_eq!(desk.counters().drops(reason), 1);
            }
            Outcome::Reply(len) => {
                prop_assert_eq!(drops, 0);
                let reply = Reply::parse(&out[..len]);
                prop_assert_eq!(reply.eth.src_addr, gateway_mac());
                prop_assert_eq!(reply.ip.hop_limit, 255);
                // Only a solicitation is ever answered: with an NA or an RA.
                prop_assert!(matches!(msg_type, 133 | 135));
                prop_assert!(matches!(reply.icmp[0], 134 | 136));
            }
            Outcome::Ipv6(_) => prop_assert_eq!(drops, 0),
            other => prop_assert!(false, "unexpected outcome {:?}", other),
        }
    }
}
