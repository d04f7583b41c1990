//! ARP: which addresses the front desk answers for, and what it drops.

use std::net::Ipv4Addr;
use std::time::Instant;

use frontdesk::Counters;
use frontdesk::{Classified, DropReason, FrontDesk, Handled, Outcome, classify, handle_arp};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, ETHERNET_HEADER_LEN, EthernetFrame, EthernetProtocol,
};

use crate::guest::{arp, arp_request};
use crate::{DNS, GATEWAY, GUEST, REMOTE, desk, gateway_mac, guest_mac, plan};

fn arp_reply_for(desk: &mut FrontDesk, frame: &[u8]) -> Option<ArpRepr> {
    let mut out = [0u8; 128];
    match desk.handle_frame(frame, Instant::now(), &mut out) {
        Outcome::Reply(len) => {
            let eth = EthernetFrame::new_checked(&out[..len]).unwrap();
            assert_eq!(eth.src_addr(), gateway_mac());
            assert_eq!(eth.dst_addr(), guest_mac());
            assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
            Some(ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap())
        }
        Outcome::Dropped(_) => None,
        other => panic!("unexpected outcome for ARP: {other:?}"),
    }
}

#[test]
fn arp_for_gateway_and_dns_answered_with_gateway_mac() {
    let mut desk = desk();
    for addr in [GATEWAY, DNS] {
        let reply = arp_reply_for(&mut desk, &arp_request(addr)).expect("answered");
        assert_eq!(
            reply,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: gateway_mac(),
                source_protocol_addr: addr,
                target_hardware_addr: guest_mac(),
                target_protocol_addr: GUEST,
            }
        );
    }
    assert_eq!(desk.counters().total_drops(), 0);
}

#[test]
fn arp_for_guest_own_address_is_not_answered() {
    let mut desk = desk();
    // A duplicate-address probe (RFC 5227) and a gratuitous request.
    let probe = arp(ArpOperation::Request, Ipv4Addr::UNSPECIFIED, GUEST);
    let announcement = arp(ArpOperation::Request, GUEST, GUEST);
    assert_eq!(arp_reply_for(&mut desk, &probe), None);
    assert_eq!(arp_reply_for(&mut desk, &announcement), None);
    assert_eq!(desk.counters().drops(DropReason::ArpNotServed), 2);
}

#[test]
fn arp_outside_the_plan_is_not_answered() {
    let mut desk = desk();
    for addr in [
        REMOTE,
        Ipv4Addr::new(10, 0, 2, 99),
        Ipv4Addr::new(10, 0, 3, 2),
        Ipv4Addr::new(10, 0, 2, 255),
    ] {
        assert_eq!(arp_reply_for(&mut desk, &arp_request(addr)), None, "{addr}");
    }
    assert_eq!(desk.counters().drops(DropReason::ArpNotServed), 4);
}

#[test]
fn arp_for_served_addresses_inside_the_network_only() {
    let mut desk = desk();
    let inside = Ipv4Addr::new(10, 0, 2, 4);
    desk.serve_v4(inside);
    desk.serve_v4(REMOTE);
    desk.serve_v4(GUEST);
    assert!(arp_reply_for(&mut desk, &arp_request(inside)).is_some());
    assert_eq!(arp_reply_for(&mut desk, &arp_request(REMOTE)), None);
    assert_eq!(arp_reply_for(&mut desk, &arp_request(GUEST)), None);
}

#[test]
fn arp_replies_and_gratuitous_replies_from_the_guest_are_counted() {
    let mut desk = desk();
    let gratuitous = arp(ArpOperation::Reply, GUEST, GUEST);
    let spoof = arp(ArpOperation::Reply, GATEWAY, GUEST);
    assert_eq!(arp_reply_for(&mut desk, &gratuitous), None);
    assert_eq!(arp_reply_for(&mut desk, &spoof), None);
    assert_eq!(desk.counters().drops(DropReason::ArpNotRequest), 2);
    // The gateway is still answered with the gateway's MAC address.
    let reply = arp_reply_for(&mut desk, &arp_request(GATEWAY)).unwrap();
    let ArpRepr::EthernetIpv4 {
        source_hardware_addr,
        ..
    } = reply
    else {
        panic!()
    };
    assert_eq!(source_hardware_addr, gateway_mac());
}

#[test]
fn malformed_arp_is_dropped_and_counted() {
    let mut frame = arp_request(GATEWAY);
    frame[ETHERNET_HEADER_LEN + 4] = 8; // hardware address length
    let mut counters = Counters::new();
    assert_eq!(
        classify(&frame, &plan(), &mut counters),
        Classified::Drop(DropReason::Malformed)
    );
    let truncated = &arp_request(GATEWAY)[..ETHERNET_HEADER_LEN + 10];
    assert_eq!(
        classify(truncated, &plan(), &mut counters),
        Classified::Drop(DropReason::Malformed)
    );
    assert_eq!(counters.drops(DropReason::Malformed), 2);
}

#[test]
fn arp_handler_alone_needs_room_for_its_reply() {
    let mut counters = Counters::new();
    let Classified::Arp(repr) = classify(&arp_request(GATEWAY), &plan(), &mut counters) else {
        panic!("not ARP")
    };
    let mut small = [0u8; 41];
    assert_eq!(
        handle_arp(&repr, &plan(), &[], &mut small, &mut counters),
        Handled::Dropped(DropReason::NoBufferSpace)
    );
    let mut enough = [0u8; 42];
    assert_eq!(
        handle_arp(&repr, &plan(), &[], &mut enough, &mut counters),
        Handled::Reply(42)
    );
}
