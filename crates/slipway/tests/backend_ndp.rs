//! Frame-level tests of IPv6 neighbour discovery through the backend: the
//! front desk's answers reach the guest as ARP replies do, and its
//! unsolicited router advertisements go out on the backend's timer.
//! Synthetic guest frames only; no socket is opened for them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use slipway::frontdesk::{ALL_NODES, ALL_NODES_MAC, RouterConfig, SearchDomain, ethernet_address};
use slipway::{Backend, FrameBackend, Served};
use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv6Packet, Ipv6Packet};
use test_support::harness::default_config;
use test_support::harness::frames::{GUEST_LL6 as GUEST_LL, router_solicitation};

const ROUTER_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

fn guest_mac() -> EthernetAddress {
    ethernet_address(default_config().plan.guest_mac())
}

fn gateway_mac() -> EthernetAddress {
    ethernet_address(default_config().plan.gateway_mac())
}

/// The Ethernet destination, IPv6 addresses and ICMPv6 type of a frame
/// from the backend, its checksum verified.
fn icmpv6_of(frame: &[u8]) -> (EthernetAddress, Ipv6Addr, Ipv6Addr, u8) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.src_addr(), gateway_mac());
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
    (
        eth.dst_addr(),
        ip.src_addr(),
        ip.dst_addr(),
        icmp.msg_type().into(),
    )
}

fn poll_one(backend: &mut Backend, now: Instant) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1514];
    let len = backend.poll_guest_frame(&mut buf, now)?;
    Some(buf[..len].to_vec())
}

#[test]
fn router_solicitation_is_answered_through_the_backend() {
    let now = Instant::now();
    let mut backend = Backend::new(default_config(), now).unwrap();
    backend.handle_guest_frame(&router_solicitation(), now);
    let reply = poll_one(&mut backend, now).expect("a router advertisement");
    assert_eq!(icmpv6_of(&reply), (guest_mac(), ROUTER_LL, GUEST_LL, 134));
    assert_eq!(poll_one(&mut backend, now), None);
}

#[test]
fn unsolicited_advertisements_go_out_on_the_backend_timer() {
    let t0 = Instant::now();
    let mut config = default_config();
    config.router = RouterConfig {
        search_domain: Some(SearchDomain::new("example.internal").unwrap()),
        ..RouterConfig::default()
    };
    let mut backend = Backend::new(config, t0).unwrap();
    assert_eq!(backend.poll_timeout(), None, "no IPv6 from the guest yet");
    backend.handle_guest_frame(&router_solicitation(), t0);
    poll_one(&mut backend, t0).expect("the answer");
    // The answer was the first advertisement; the next is due within 16 s.
    let deadline = backend.poll_timeout().expect("the next advertisement");
    assert!(deadline > t0 && deadline <= t0 + Duration::from_secs(16));
    backend.handle_timeout(deadline);
    let advert = poll_one(&mut backend, deadline).expect("an unsolicited advertisement");
    assert_eq!(
        icmpv6_of(&advert),
        (ALL_NODES_MAC, ROUTER_LL, ALL_NODES, 134)
    );
    // The search domain is in it, in DNS wire form.
    assert!(
        advert
            .windows(18)
            .any(|w| w == b"\x07example\x08internal\x00")
    );
    assert_eq!(poll_one(&mut backend, deadline), None);
}
