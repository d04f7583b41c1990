//! Scenario tests of the Ethernet front desk: guest frames built with
//! `smoltcp::wire`, replies parsed back with it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arp;
mod builders;
mod builders_v6;
mod classify;
mod dhcp;
mod dhcpv6;
mod extension_headers;
mod guest;
mod mutation;
mod ndp;
mod ra;
mod v6frames;

use std::net::Ipv4Addr;

use frontdesk::{DhcpConfig, FrontDesk, ethernet_address};
use nat_core::Plan;
use smoltcp::wire::EthernetAddress;

pub(crate) const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
pub(crate) const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
pub(crate) const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
pub(crate) const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

pub(crate) fn plan() -> Plan {
    Plan::default()
}

pub(crate) fn gateway_mac() -> EthernetAddress {
    ethernet_address(plan().gateway_mac())
}

pub(crate) fn guest_mac() -> EthernetAddress {
    ethernet_address(plan().guest_mac())
}

pub(crate) fn desk() -> FrontDesk {
    FrontDesk::new(plan(), DhcpConfig::default())
}
