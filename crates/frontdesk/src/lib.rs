//! `frontdesk` opens no socket, reads no clock (time comes in as `now`) and
//! knows nothing of flows: it reads borrowed frames and writes replies into
//! buffers its caller supplies (only the reassembler and the DHCPv6
//! binding hold bytes, within their caps). Guest input never panics it: every frame it does not accept is
//! dropped and counted in [`Counters`] under a [`DropReason`].
//!
//! The Ethernet front desk: the first code every guest frame meets.
//!
//! It checks each frame ([`classify`], which also reads a TCP segment's
//! header once for the relays: [`TcpSegment`]), reassembles IPv4 fragments
//! ([`Reassembler`], within fixed caps on datagrams, bytes and time),
//! answers what slipway answers itself on the link (ARP for its addresses,
//! [`handle_arp`]; DHCPv4, [`DhcpServer`]; DHCPv6, [`Dhcpv6Server`]; IPv6
//! neighbour discovery and router advertisements, [`handle_ndp`] and
//! [`RouterConfig`]) and hands every other datagram to the relays
//! ([`FrontDesk::handle_frame`] and its [`Outcome`]). It also builds the
//! frames the relays send back ([`build_udp_v4`], [`build_icmp_v4_echo_reply`],
//! [`build_icmp_v4_error`], and TCP headers in place with
//! [`write_tcp_v4_headers`]) and writes pcap captures ([`PcapWriter`]).

#![forbid(unsafe_code)]

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

mod arp;
mod builder;
mod counters;
mod dhcp;
mod dhcpv6;
mod frame;
mod ndp;
mod pcap;
mod ra;
mod reassembly;
mod tcp;

use std::net::Ipv4Addr;
use std::time::Instant;

use nat_core::Plan;
use smoltcp::wire::EthernetAddress;

pub use arp::handle_arp;
pub use builder::{
    ChecksumFill, Icmpv4Error, Icmpv6Error, L4_START_V4, L4_START_V6, LinkAddrs,
    OutboundTcpSegment, TCP_CHECKSUM_OFFSET, TTL, TcpFlags, TcpOptions, TcpSegmentV4, TcpSegmentV6,
    UDP_CHECKSUM_OFFSET, UDP_V4_HEADERS_LEN, UDP_V6_HEADERS_LEN, build_echo_reply,
    build_icmp_v4_echo_reply, build_icmp_v4_error, build_icmpv6_echo_reply, build_icmpv6_error,
    build_udp, build_udp_v4, tcp_headers_len, tcp_v4_headers_len, tcp_v6_headers_len,
    udp_headers_len, write_tcp_headers, write_tcp_headers_with, write_tcp_v4_headers,
    write_tcp_v4_headers_with, write_udp_headers_with, write_udp_v4_headers,
    write_udp_v4_headers_with,
};
pub use counters::{Counters, DropReason};
pub use dhcp::{DEFAULT_LEASE_TIME, DhcpConfig, DhcpServer, DhcpStats, Lease};
pub use dhcpv6::{
    ALL_DHCP_RELAY_AGENTS_AND_SERVERS, DEFAULT_PREFERRED_LIFETIME, DEFAULT_VALID_LIFETIME,
    DHCPV6_CLIENT_PORT, DHCPV6_SERVER_PORT, Dhcpv6Binding, Dhcpv6Config, Dhcpv6Message, Dhcpv6Mode,
    Dhcpv6Server, Dhcpv6Stats, MAX_DUID_LEN, MAX_IA_ADDRS, MAX_IA_NA, MAX_OPTIONS,
};
use frame::classify_frame;
pub use frame::{
    Classified, Dhcpv4Message, Ipv4Datagram, Ipv6Datagram, MAX_EXTENSION_HEADERS, Transport,
    TransportChecksums, classify, classify_with, ethernet_address,
};
pub use ndp::{NDP_HOP_LIMIT, handle_ndp, is_ndp, solicited_node};
pub use pcap::{DEFAULT_SNAPLEN, LINKTYPE_ETHERNET, PCAP_MAGIC, PcapWriter};
pub use ra::{
    ADVERTISED_HOP_LIMIT, ADVERTISEMENT_INTERVAL, ALL_NODES, ALL_NODES_MAC, DNS_LIFETIME,
    INITIAL_GAPS, MAX_INITIAL_ADVERTISEMENTS, PREFIX_PREFERRED_LIFETIME, PREFIX_VALID_LIFETIME,
    ROUTER_LIFETIME, RaSchedule, RouterConfig, SearchDomain, SearchDomainError,
};
pub use reassembly::{
    FRAGMENT_OVERHEAD, Ipv4Fragment, MAX_BYTES, MAX_DATAGRAMS, REASSEMBLY_TIMEOUT, Reassembler,
    Reassembly,
};
pub use tcp::TcpSegment;

/// What a responder (ARP, DHCP) did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// A reply frame of this many bytes is at the start of the output
    /// buffer.
    Reply(usize),
    /// The message was taken in and needs no reply (a DHCP RELEASE or
    /// DECLINE).
    Consumed,
    /// The message was dropped; the drop is already counted.
    Dropped(DropReason),
}

impl Handled {
    /// What a responder's answer means: a reply of this length, nothing to
    /// send, or a drop, which it counts in `counters`.
    pub(crate) fn counted(
        answer: Result<Option<usize>, DropReason>,
        counters: &mut Counters,
    ) -> Self {
        match answer {
            Ok(Some(len)) => Handled::Reply(len),
            Ok(None) => Handled::Consumed,
            Err(reason) => {
                counters.record_drop(reason);
                Handled::Dropped(reason)
            }
        }
    }
}

/// What the front desk did with a frame from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// A reply frame of this many bytes is at the start of the output
    /// buffer, to be sent to the guest.
    Reply(usize),
    /// The frame was taken in and needs no reply.
    Consumed,
    /// An IPv4 datagram for the relays.
    Ipv4(Ipv4Datagram<'a>),
    /// An IPv6 datagram for the relays.
    Ipv6(Ipv6Datagram<'a>),
    /// The frame was an IPv4 fragment that completed its datagram: take the
    /// whole one with [`FrontDesk::take_reassembled`] and hand it to
    /// [`FrontDesk::handle_reassembled`].
    Reassembled,
    /// The frame was dropped; the drop is already counted.
    Dropped(DropReason),
}

impl From<Handled> for Outcome<'_> {
    fn from(handled: Handled) -> Self {
        match handled {
            Handled::Reply(len) => Outcome::Reply(len),
            Handled::Consumed => Outcome::Consumed,
            Handled::Dropped(reason) => Outcome::Dropped(reason),
        }
    }
}

/// The front desk of one guest link: the plan, the counters, the DHCP
/// server and the guest's MAC address as learnt from its frames.
#[derive(Clone, Debug)]
pub struct FrontDesk {
    plan: Plan,
    counters: Counters,
    dhcp: DhcpServer,
    dhcpv6: Dhcpv6Server,
    served_v4: Vec<Ipv4Addr>,
    guest_mac: EthernetAddress,
    reassembly: Reassembler,
    /// A datagram reassembled and not yet taken.
    reassembled: Option<Vec<u8>>,
    router: RouterConfig,
    /// When unsolicited router advertisements are due; the one due waits
    /// for [`FrontDesk::poll_transmit`].
    advertisements: RaSchedule,
}

impl FrontDesk {
    /// A front desk for `plan`. Until the guest sends a frame, its MAC
    /// address is taken to be the plan's.
    #[must_use]
    pub fn new(plan: Plan, dhcp: DhcpConfig) -> Self {
        Self {
            guest_mac: ethernet_address(plan.guest_mac()),
            plan,
            counters: Counters::new(),
            dhcp: DhcpServer::new(dhcp),
            dhcpv6: Dhcpv6Server::new(
                Dhcpv6Config::default(),
                ethernet_address(plan.gateway_mac()),
            ),
            served_v4: Vec::new(),
            reassembly: Reassembler::new(),
            reassembled: None,
            router: RouterConfig::default(),
            advertisements: RaSchedule::default(),
        }
    }

    /// Sets what router advertisements say beyond the plan and the DHCPv6
    /// service: the search domain. Their M and O flags follow the DHCPv6
    /// server's mode ([`with_dhcpv6`](Self::with_dhcpv6)), whatever
    /// `config.dhcpv6` says.
    pub fn set_router_config(&mut self, config: RouterConfig) {
        self.router = RouterConfig {
            dhcpv6: self.dhcpv6.config().mode,
            ..config
        };
    }

    /// What router advertisements say beyond the plan.
    #[must_use]
    pub fn router_config(&self) -> &RouterConfig {
        &self.router
    }

    /// When unsolicited router advertisements are due.
    #[must_use]
    pub fn advertisements(&self) -> &RaSchedule {
        &self.advertisements
    }

    /// Writes into `out` the next frame the front desk sends of its own
    /// accord (an unsolicited router advertisement that
    /// [`handle_timeout`](Self::handle_timeout) found due): its length, or
    /// `None` when none waits. At most one waits at a time; one that does
    /// not fit in `out` is dropped and counted as
    /// [`DropReason::NoBufferSpace`].
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Option<usize> {
        if !self.advertisements.take_due() {
            return None;
        }
        let v6 = self.plan.ipv6()?;
        let to = (ALL_NODES_MAC, ALL_NODES);
        match ra::write_router_advertisement(&self.plan, v6, &self.router, to, out) {
            Ok(len) => Some(len),
            Err(reason) => {
                self.counters.record_drop(reason);
                None
            }
        }
    }

    /// The address plan.
    #[must_use]
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Frames seen and dropped.
    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The DHCP server and its lease.
    #[must_use]
    pub fn dhcp(&self) -> &DhcpServer {
        &self.dhcp
    }

    /// This front desk with its DHCPv6 server set up as `config` says (by
    /// default it is stateful, with [`Dhcpv6Config::default`]).
    #[must_use]
    pub fn with_dhcpv6(mut self, config: Dhcpv6Config) -> Self {
        self.router.dhcpv6 = config.mode;
        self.dhcpv6 = Dhcpv6Server::new(config, ethernet_address(self.plan.gateway_mac()));
        self
    }

    /// The DHCPv6 server and its binding.
    #[must_use]
    pub fn dhcpv6(&self) -> &Dhcpv6Server {
        &self.dhcpv6
    }

    /// Also answers ARP requests for `addr`, if it is a host address of the
    /// plan's IPv4 network other than the guest's.
    pub fn serve_v4(&mut self, addr: Ipv4Addr) {
        if !self.served_v4.contains(&addr) {
            self.served_v4.push(addr);
        }
    }

    /// The guest's MAC address: the source of the last frame it sent that
    /// was accepted, or the plan's before any.
    #[must_use]
    pub fn guest_mac(&self) -> EthernetAddress {
        self.guest_mac
    }

    /// The Ethernet addresses of frames to the guest.
    #[must_use]
    pub fn link_to_guest(&self) -> LinkAddrs {
        LinkAddrs::gateway_to(&self.plan, self.guest_mac)
    }

    /// The IPv4 datagrams in reassembly.
    #[must_use]
    pub fn reassembly(&self) -> &Reassembler {
        &self.reassembly
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next: the
    /// oldest datagram in reassembly times out, or an unsolicited router
    /// advertisement is due. `None` when neither is pending.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.reassembly.poll_timeout(),
            self.advertisements.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Gives up the datagrams in reassembly whose time ran out by `now`,
    /// and readies an unsolicited router advertisement if one is due (take
    /// it with [`poll_transmit`](Self::poll_transmit)).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.reassembly.handle_timeout(now, &mut self.counters);
        self.advertisements.handle_timeout(now);
    }

    /// Takes one frame from the guest at `now`: answers ARP, DHCP and
    /// neighbour discovery into `out`, passes IPv4 and IPv6 datagrams on,
    /// takes IPv4 fragments into reassembly, and drops (and counts) the
    /// rest. The guest's first IPv6 frame starts the unsolicited router
    /// advertisements.
    pub fn handle_frame<'a>(
        &mut self,
        frame: &'a [u8],
        now: Instant,
        out: &mut [u8],
    ) -> Outcome<'a> {
        self.handle_frame_with(frame, TransportChecksums::Verify, now, out)
    }

    /// [`handle_frame`](Self::handle_frame), verifying transport checksums
    /// or not as `checksums` says.
    pub fn handle_frame_with<'a>(
        &mut self,
        frame: &'a [u8],
        checksums: TransportChecksums,
        now: Instant,
        out: &mut [u8],
    ) -> Outcome<'a> {
        let classified = classify_with(frame, &self.plan, checksums, &mut self.counters);
        if let Classified::Ipv4Fragment(fragment) = classified {
            return match self
                .reassembly
                .handle_fragment(&fragment, now, &mut self.counters)
            {
                Reassembly::Held => {
                    self.guest_mac = fragment.src_mac;
                    Outcome::Consumed
                }
                Reassembly::Whole(whole) => {
                    self.guest_mac = fragment.src_mac;
                    self.reassembled = Some(whole);
                    Outcome::Reassembled
                }
                Reassembly::Dropped(reason) => Outcome::Dropped(reason),
            };
        }
        if let Classified::Ipv6(datagram) = &classified {
            if let Some(handled) = self.take_ndp(datagram, now, out) {
                return handled.into();
            }
        }
        self.take_classified(classified, out)
    }

    /// Starts the router advertisements and answers a neighbour discovery
    /// message; `None` for any other IPv6 datagram.
    fn take_ndp(
        &mut self,
        datagram: &Ipv6Datagram<'_>,
        now: Instant,
        out: &mut [u8],
    ) -> Option<Handled> {
        self.advertisements.start(now);
        let handled = handle_ndp(datagram, &self.plan, &self.router, out, &mut self.counters)?;
        if let Handled::Reply(_) = handled {
            self.guest_mac = datagram.src_mac;
            if matches!(datagram.transport, Transport::Icmp { msg_type, .. } if msg_type == ndp::ROUTER_SOLICIT)
            {
                self.advertisements.handle_solicited(now);
            }
        }
        Some(handled)
    }

    /// The datagram the last [`Outcome::Reassembled`] announced, once.
    pub fn take_reassembled(&mut self) -> Option<Vec<u8>> {
        self.reassembled.take()
    }

    /// Takes a datagram reassembled from the guest's fragments (as
    /// [`take_reassembled`](Self::take_reassembled) gave it) like one
    /// unfragmented frame: every check applies, the transport checksum is
    /// always verified (fragments never carry offloaded checksums), and
    /// it is not counted as one more frame.
    pub fn handle_reassembled<'a>(&mut self, frame: &'a [u8], out: &mut [u8]) -> Outcome<'a> {
        match classify_frame(frame, &self.plan, true) {
            Ok(Classified::Ipv4Fragment(_)) => {
                // A whole datagram is no fragment; its header says so.
                self.counters.record_drop(DropReason::Malformed);
                Outcome::Dropped(DropReason::Malformed)
            }
            Ok(classified) => self.take_classified(classified, out),
            Err(reason) => {
                self.counters.record_drop(reason);
                Outcome::Dropped(reason)
            }
        }
    }

    /// Answers or passes on a classified frame.
    fn take_classified<'a>(&mut self, classified: Classified<'a>, out: &mut [u8]) -> Outcome<'a> {
        match classified {
            Classified::Arp(repr) => {
                let handled =
                    handle_arp(&repr, &self.plan, &self.served_v4, out, &mut self.counters);
                if let (Handled::Reply(_), Some(mac)) = (handled, arp_sender(&repr)) {
                    self.guest_mac = mac;
                }
                handled.into()
            }
            Classified::Dhcpv4(message) => {
                let handled = self
                    .dhcp
                    .handle(&self.plan, &message, out, &mut self.counters);
                if !matches!(handled, Handled::Dropped(_)) {
                    self.guest_mac = message.src_mac;
                }
                handled.into()
            }
            Classified::Ipv4(datagram) => {
                self.guest_mac = datagram.src_mac;
                Outcome::Ipv4(datagram)
            }
            Classified::Ipv6(datagram) => {
                if let Some(handled) = self.take_dhcpv6(&datagram, out) {
                    return handled.into();
                }
                self.guest_mac = datagram.src_mac;
                Outcome::Ipv6(datagram)
            }
            Classified::Drop(reason) => Outcome::Dropped(reason),
            // Taken into reassembly before.
            Classified::Ipv4Fragment(_) => Outcome::Consumed,
        }
    }
}

impl FrontDesk {
    /// Answers a DHCPv6 message for the server; `None` when `datagram` is
    /// none (or DHCPv6 is off) and goes on to the relays.
    fn take_dhcpv6(&mut self, datagram: &Ipv6Datagram<'_>, out: &mut [u8]) -> Option<Handled> {
        if self.dhcpv6.config().mode == Dhcpv6Mode::Off {
            return None;
        }
        let message = Dhcpv6Message::from_datagram(datagram, self.plan.ipv6()?)?;
        let handled = self
            .dhcpv6
            .handle(&self.plan, &message, out, &mut self.counters);
        if !matches!(handled, Handled::Dropped(_)) {
            self.guest_mac = message.src_mac;
        }
        Some(handled)
    }
}

/// The sender's MAC address of an ARP message.
fn arp_sender(repr: &smoltcp::wire::ArpRepr) -> Option<EthernetAddress> {
    match *repr {
        smoltcp::wire::ArpRepr::EthernetIpv4 {
            source_hardware_addr,
            ..
        } => Some(source_hardware_addr),
        _ => None,
    }
}
