//! Router advertisements: in answer to a solicitation, and unsolicited on
//! the schedule, on a virtual clock.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use frontdesk::{
    ADVERTISEMENT_INTERVAL, DNS_LIFETIME, DhcpConfig, Dhcpv6Config, Dhcpv6Mode, DropReason,
    FrontDesk, INITIAL_GAPS, MAX_INITIAL_ADVERTISEMENTS, Outcome, PREFIX_PREFERRED_LIFETIME,
    PREFIX_VALID_LIFETIME, ROUTER_LIFETIME, RouterConfig, SearchDomain,
};
use nat_core::Plan;
use smoltcp::wire::{
    EthernetAddress, EthernetProtocol, IpProtocol, NdiscPrefixInfoFlags, NdiscPrefixInformation,
    NdiscRepr, NdiscRouterFlags,
};

use crate::guest::guest_router_solicitation;
use crate::ndp::{
    ALL_NODES, DNS_V6, GATEWAY_V6, GUEST_LL, Ip, ROUTER_LL, Reply, answer, nd_message,
    neighbor_solicitation,
};
use crate::{desk, gateway_mac, guest_mac, plan};

const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

fn secs(d: Duration) -> smoltcp::time::Duration {
    smoltcp::time::Duration::from_secs(d.as_secs())
}

/// The options after the RA's fixed part and the three smoltcp parses
/// (source link-layer address, MTU, prefix information), as
/// (type, bytes) pairs.
fn options(reply: &Reply) -> Vec<(u8, Vec<u8>)> {
    let mut rest = &reply.icmp[16..];
    let mut all = Vec::new();
    while !rest.is_empty() {
        let len = usize::from(rest[1]) * 8;
        assert!(len > 0 && len <= rest.len(), "option length {len}");
        all.push((rest[0], rest[..len].to_vec()));
        rest = &rest[len..];
    }
    all
}

/// Checks every field of a router advertisement from slipway to
/// `(dst_mac, dst)`, with `flags`; gives its options.
fn check_router_advertisement(
    frame: &[u8],
    (dst_mac, dst): (EthernetAddress, Ipv6Addr),
    flags: NdiscRouterFlags,
) -> Vec<(u8, Vec<u8>)> {
    let reply = Reply::parse(frame);
    assert_eq!(reply.eth.src_addr, gateway_mac());
    assert_eq!(reply.eth.dst_addr, dst_mac);
    assert_eq!(reply.eth.ethertype, EthernetProtocol::Ipv6);
    assert_eq!(reply.ip.src_addr, ROUTER_LL);
    assert_eq!(reply.ip.dst_addr, dst);
    assert_eq!(reply.ip.next_header, IpProtocol::Icmpv6);
    assert_eq!(reply.ip.hop_limit, 255);
    assert_eq!(
        reply.ndisc(),
        NdiscRepr::RouterAdvert {
            hop_limit: 64,
            flags,
            router_lifetime: secs(ROUTER_LIFETIME),
            reachable_time: smoltcp::time::Duration::ZERO,
            retrans_time: smoltcp::time::Duration::ZERO,
            lladdr: Some(gateway_mac().into()),
            mtu: Some(u32::from(plan().mtu())),
            prefix_info: Some(NdiscPrefixInformation {
                prefix_len: 64,
                flags: NdiscPrefixInfoFlags::ON_LINK | NdiscPrefixInfoFlags::ADDRCONF,
                valid_lifetime: secs(PREFIX_VALID_LIFETIME),
                preferred_lifetime: secs(PREFIX_PREFERRED_LIFETIME),
                prefix: Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0),
            }),
        }
    );
    let options = options(&reply);
    let types: Vec<u8> = options.iter().map(|(t, _)| *t).collect();
    assert_eq!(&types[..4], &[1, 5, 3, 25], "SLLA, MTU, prefix, RDNSS");
    // RDNSS (RFC 8106): length 3, reserved, lifetime, the DNS address.
    let mut rdnss = vec![25, 3, 0, 0];
    rdnss.extend_from_slice(&u32::try_from(DNS_LIFETIME.as_secs()).unwrap().to_be_bytes());
    rdnss.extend_from_slice(&DNS_V6.octets());
    assert_eq!(options[3].1, rdnss);
    options
}

#[test]
fn router_solicitation_gets_an_advertisement_with_every_option() {
    let mut desk = desk();
    let frame = answer(&mut desk, &guest_router_solicitation()).expect("answered");
    let options = check_router_advertisement(
        &frame,
        (guest_mac(), GUEST_LL),
        NdiscRouterFlags::MANAGED | NdiscRouterFlags::OTHER,
    );
    assert_eq!(options.len(), 4, "no DNSSL without a search domain");
    assert_eq!(desk.counters().total_drops(), 0);
}

#[test]
fn search_domain_is_advertised_in_a_dnssl_option() {
    let mut desk = desk();
    desk.set_router_config(RouterConfig {
        search_domain: Some(SearchDomain::new("corp.example").unwrap()),
        ..RouterConfig::default()
    });
    let frame = answer(&mut desk, &guest_router_solicitation()).unwrap();
    let options = check_router_advertisement(
        &frame,
        (guest_mac(), GUEST_LL),
        NdiscRouterFlags::MANAGED | NdiscRouterFlags::OTHER,
    );
    assert_eq!(options.len(), 5);
    let mut dnssl = vec![31, 3, 0, 0];
    dnssl.extend_from_slice(&u32::try_from(DNS_LIFETIME.as_secs()).unwrap().to_be_bytes());
    dnssl.extend_from_slice(b"\x04corp\x07example\x00");
    dnssl.resize(24, 0);
    assert_eq!(options[4].1, dnssl);
}

#[test]
fn dhcpv6_mode_sets_the_managed_and_other_flags() {
    for (mode, flags) in [
        (Dhcpv6Mode::Off, NdiscRouterFlags::empty()),
        (Dhcpv6Mode::Stateless, NdiscRouterFlags::OTHER),
        (
            Dhcpv6Mode::Stateful,
            NdiscRouterFlags::MANAGED | NdiscRouterFlags::OTHER,
        ),
    ] {
        let mut desk = desk().with_dhcpv6(Dhcpv6Config {
            mode,
            ..Dhcpv6Config::default()
        });
        let frame = answer(&mut desk, &guest_router_solicitation()).unwrap();
        check_router_advertisement(&frame, (guest_mac(), GUEST_LL), flags);
    }
    // DHCPv6 hands out the address by default, and the RA says so.
    assert_eq!(RouterConfig::default().dhcpv6, Dhcpv6Mode::Stateful);
    assert_eq!(Dhcpv6Config::default().mode, Dhcpv6Mode::Stateful);
}

#[test]
fn solicitation_from_the_unspecified_address_is_answered_to_all_nodes() {
    let mut desk = desk();
    let message = nd_message(&NdiscRepr::RouterSolicit { lladdr: None });
    let frame = Ip::new(Ipv6Addr::UNSPECIFIED, ALL_ROUTERS).frame(&message);
    let reply = answer(&mut desk, &frame).unwrap();
    check_router_advertisement(
        &reply,
        (EthernetAddress([0x33, 0x33, 0, 0, 0, 1]), ALL_NODES),
        NdiscRouterFlags::MANAGED | NdiscRouterFlags::OTHER,
    );
    // With a source link-layer address option it is invalid.
    let message = nd_message(&NdiscRepr::RouterSolicit {
        lladdr: Some(guest_mac().into()),
    });
    let frame = Ip::new(Ipv6Addr::UNSPECIFIED, ALL_ROUTERS).frame(&message);
    assert_eq!(answer(&mut desk, &frame), Err(DropReason::NdpInvalid));
}

#[test]
fn router_solicitation_with_a_low_hop_limit_is_dropped() {
    let mut desk = desk();
    let message = nd_message(&NdiscRepr::RouterSolicit { lladdr: None });
    let frame = Ip {
        hop_limit: 254,
        ..Ip::new(GUEST_LL, ALL_ROUTERS)
    }
    .frame(&message);
    assert_eq!(answer(&mut desk, &frame), Err(DropReason::NdpInvalid));
}

/// Drives `desk` from `start` to each deadline until `end` (bounded in
/// turns), and gives the instants at which it sent an unsolicited
/// advertisement, each checked.
fn unsolicited_times(desk: &mut FrontDesk, start: Instant, end: Instant) -> Vec<Instant> {
    let mut out = vec![0u8; 1514];
    let mut sent = Vec::new();
    let mut now = start;
    for _ in 0..1_000 {
        let Some(deadline) = desk.poll_timeout() else {
            break;
        };
        assert!(deadline >= now, "deadlines never go back");
        if deadline > end {
            break;
        }
        now = deadline;
        desk.handle_timeout(now);
        if let Some(len) = desk.poll_transmit(&mut out) {
            check_router_advertisement(
                &out[..len],
                (EthernetAddress([0x33, 0x33, 0, 0, 0, 1]), ALL_NODES),
                NdiscRouterFlags::MANAGED | NdiscRouterFlags::OTHER,
            );
            sent.push(now);
        }
        assert_eq!(desk.poll_transmit(&mut out), None, "one per deadline");
    }
    sent
}

#[test]
fn no_unsolicited_advertisement_before_the_guest_speaks_ipv6() {
    let mut desk = desk();
    assert_eq!(desk.poll_timeout(), None);
    let t0 = Instant::now();
    desk.handle_timeout(t0 + Duration::from_secs(3600));
    let mut out = vec![0u8; 1514];
    assert_eq!(desk.poll_transmit(&mut out), None);
    // IPv4 does not start them either.
    let mut out = vec![0u8; 128];
    let arp = crate::guest::arp_request(crate::GATEWAY);
    assert!(matches!(
        desk.handle_frame(&arp, t0, &mut out),
        Outcome::Reply(_)
    ));
    assert_eq!(desk.poll_timeout(), None);
}

#[test]
fn unsolicited_advertisements_come_three_early_then_every_ten_minutes() {
    let mut desk = desk();
    let t0 = Instant::now();
    // The guest's first IPv6 frame (here a solicitation for the gateway)
    // starts the schedule.
    let mut out = vec![0u8; 1514];
    let ns = neighbor_solicitation(GATEWAY_V6);
    assert!(matches!(
        desk.handle_frame(&ns, t0, &mut out),
        Outcome::Reply(_)
    ));
    assert_eq!(desk.poll_timeout(), Some(t0));
    let end = t0 + Duration::from_secs(4 * 3600);
    let sent = unsolicited_times(&mut desk, t0, end);
    assert_eq!(sent[0], t0, "the first at once");
    let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1] - w[0]).collect();
    let initial = MAX_INITIAL_ADVERTISEMENTS - 1;
    assert_eq!(&gaps[..initial], &INITIAL_GAPS[..]);
    const { assert!(MAX_INITIAL_ADVERTISEMENTS <= 3) };
    assert!(
        gaps[..initial]
            .iter()
            .all(|g| *g <= Duration::from_secs(16))
    );
    // Then only the long period: never a short one while the guest is
    // idle.
    assert!(gaps[initial..].iter().all(|g| *g == ADVERTISEMENT_INTERVAL));
    assert_eq!(ADVERTISEMENT_INTERVAL, Duration::from_secs(600));
    let initial_span: Duration = INITIAL_GAPS.iter().sum();
    let expected = MAX_INITIAL_ADVERTISEMENTS
        + usize::try_from(((end - t0) - initial_span).as_secs() / ADVERTISEMENT_INTERVAL.as_secs())
            .unwrap();
    assert_eq!(sent.len(), expected);
}

#[test]
fn answered_solicitation_takes_the_place_of_an_initial_advertisement() {
    let mut desk = desk();
    let t0 = Instant::now();
    let mut out = vec![0u8; 1514];
    let rs = guest_router_solicitation();
    assert!(matches!(
        desk.handle_frame(&rs, t0, &mut out),
        Outcome::Reply(_)
    ));
    // The answer was the first: the next unsolicited one waits.
    assert_eq!(desk.poll_timeout(), Some(t0 + INITIAL_GAPS[0]));
    let sent = unsolicited_times(&mut desk, t0, t0 + Duration::from_secs(700));
    assert_eq!(
        sent,
        [
            t0 + INITIAL_GAPS[0],
            t0 + INITIAL_GAPS[0] + INITIAL_GAPS[1],
            t0 + INITIAL_GAPS[0] + INITIAL_GAPS[1] + ADVERTISEMENT_INTERVAL,
        ]
    );
}

#[test]
fn unsolicited_advertisement_too_long_for_the_buffer_is_counted() {
    let mut desk = desk();
    let t0 = Instant::now();
    let mut out = vec![0u8; 1514];
    desk.handle_frame(&neighbor_solicitation(DNS_V6), t0, &mut out);
    desk.handle_timeout(t0);
    let mut small = [0u8; 64];
    assert_eq!(desk.poll_transmit(&mut small), None);
    assert_eq!(desk.counters().drops(DropReason::NoBufferSpace), 1);
    assert_eq!(desk.poll_transmit(&mut out), None, "dropped, not kept");
}

#[test]
fn ipv6_disabled_plan_sends_no_advertisements() {
    let plan = Plan::builder().disable_ipv6().build().unwrap();
    let mut desk = FrontDesk::new(plan, DhcpConfig::default());
    let mut out = vec![0u8; 1514];
    let t0 = Instant::now();
    assert_eq!(
        desk.handle_frame(&guest_router_solicitation(), t0, &mut out),
        Outcome::Dropped(DropReason::FamilyDisabled)
    );
    assert_eq!(desk.poll_timeout(), None);
}
