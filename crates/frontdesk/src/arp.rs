//! Answering the guest's ARP requests for slipway's own IPv4 addresses.
//!
//! The front desk answers for the gateway, the DNS address and any other
//! address of the guest's network the caller serves, always with the
//! gateway's MAC address. It never answers for the guest's own address: a
//! guest probing for a duplicate (RFC 5227) must hear nothing. It learns
//! nothing from the guest's replies and gratuitous announcements.

use std::net::Ipv4Addr;

use nat_core::{Ipv4Plan, Plan};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, ETHERNET_HEADER_LEN, EthernetFrame, EthernetProtocol,
    EthernetRepr,
};

use super::Handled;
use super::counters::{Counters, DropReason};
use super::frame::ethernet_address;

/// Answers an ARP request from the guest, writing the reply frame into
/// `out`.
///
/// `served` lists further addresses to answer for besides the gateway and
/// the DNS address; those outside the plan's network, its network and
/// broadcast addresses, and the guest's address are never answered.
/// Everything that gets no reply is counted as a drop.
pub fn handle_arp(
    repr: &ArpRepr,
    plan: &Plan,
    served: &[Ipv4Addr],
    out: &mut [u8],
    counters: &mut Counters,
) -> Handled {
    match reply(repr, plan, served, out) {
        Ok(len) => Handled::Reply(len),
        Err(reason) => {
            counters.record_drop(reason);
            Handled::Dropped(reason)
        }
    }
}

fn reply(
    repr: &ArpRepr,
    plan: &Plan,
    served: &[Ipv4Addr],
    out: &mut [u8],
) -> Result<usize, DropReason> {
    let ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr,
        source_protocol_addr,
        target_protocol_addr,
        ..
    } = *repr
    else {
        return Err(DropReason::Malformed);
    };
    let v4 = plan.ipv4().ok_or(DropReason::FamilyDisabled)?;
    if operation != ArpOperation::Request {
        return Err(DropReason::ArpNotRequest);
    }
    if !answers_for(v4, served, target_protocol_addr) {
        return Err(DropReason::ArpNotServed);
    }
    if !source_hardware_addr.is_unicast() || source_hardware_addr.0 == [0; 6] {
        return Err(DropReason::Malformed);
    }
    let gateway_mac = ethernet_address(plan.gateway_mac());
    let answer = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: gateway_mac,
        source_protocol_addr: target_protocol_addr,
        target_hardware_addr: source_hardware_addr,
        target_protocol_addr: source_protocol_addr,
    };
    let frame = out
        .get_mut(..ETHERNET_HEADER_LEN + answer.buffer_len())
        .ok_or(DropReason::NoBufferSpace)?;
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    EthernetRepr {
        src_addr: gateway_mac,
        dst_addr: source_hardware_addr,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut eth);
    answer.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    Ok(frame.len())
}

/// Whether the front desk answers ARP requests for `addr`.
fn answers_for(v4: &Ipv4Plan, served: &[Ipv4Addr], addr: Ipv4Addr) -> bool {
    if addr == v4.guest() {
        return false;
    }
    if addr == v4.gateway() || addr == v4.dns() {
        return true;
    }
    let network = v4.network();
    served.contains(&addr)
        && network.contains(addr)
        && addr != network.network()
        && addr != v4.broadcast()
}
