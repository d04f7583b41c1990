//! Verdicts: where a flow goes.
//!
//! An outbound flow (opened by the guest) is checked in this order, and the
//! first match decides:
//!
//! 1. The destination is in the deny list: denied.
//! 2. The flow is malformed for the plan: source and destination of
//!    different families, a family the plan disables, a source that is not
//!    one of the guest's (DHCPv4's `0.0.0.0` excepted).
//! 3. DHCP (UDP to port 67 of the gateway or of 255.255.255.255, UDP to
//!    port 547 of `ff02::1:2`): answered locally.
//! 4. Destinations nothing on the host may be asked to reach: unspecified,
//!    loopback (host loopback is reachable only through the gateway),
//!    IPv4-mapped IPv6, multicast, broadcast: denied.
//! 5. The plan's own addresses: the gateway maps to the host-loopback
//!    target; the DNS address forwards port 53 and answers pings; the
//!    guest's own address, the network's broadcast and every other address
//!    of the network (no host stands behind them) are denied.
//! 6. Link-local destinations are denied: the only link-local neighbour is
//!    the gateway.
//! 7. Anything else is connected to as addressed.
//!
//! Wherever the verdict names a host address other than the destination
//! (the loopback target, a configured DNS upstream), that address goes
//! through the deny list too: a deny rule always wins.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::cidr::Cidr;
use crate::plan::{Ipv4Plan, Ipv6Plan, Plan};
use crate::rules::{Rules, RulesError};

const DNS_PORT: u16 = 53;
const DHCPV4_SERVER_PORT: u16 = 67;
const DHCPV6_SERVER_PORT: u16 = 547;
/// All_DHCP_Relay_Agents_and_Servers (RFC 8415).
const ALL_DHCP_AGENTS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// The transport of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP or ICMPv6 echo. The "port" of an echo flow is its identifier.
    Icmp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Icmp => "ICMP",
        })
    }
}

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of `addr`, counting an IPv4-mapped IPv6 address (a peer
    /// seen on a dual-stack socket) as IPv4.
    #[must_use]
    pub fn of(addr: IpAddr) -> Self {
        match addr.to_canonical() {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// Where DNS traffic to the plan's DNS address goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DnsUpstream {
    /// The upstream configured in [`Rules::dns_upstream`].
    Configured(SocketAddr),
    /// The host's own resolver, which the caller knows.
    HostResolver,
}

/// A service slipway answers itself, without a host socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LocalService {
    /// ICMP echo reply from the gateway (when it is not mapped to host
    /// loopback) or from the DNS address.
    EchoReply,
    /// The DHCPv4 server.
    Dhcpv4,
    /// The DHCPv6 server.
    Dhcpv6,
}

/// Why an outbound flow is denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// A deny rule covers the destination, or the host address it maps to.
    DeniedCidr(Cidr),
    /// The destination is the gateway and the gateway is not mapped to host
    /// loopback.
    HostLoopbackDisabled,
    /// The destination is the guest's own address.
    GuestAddress,
    /// The destination is an address of the guest's network that nothing
    /// answers for (not the gateway, DNS or guest address).
    UnassignedAddress,
    /// The destination is the DNS address, on a port other than 53.
    DnsAddressOtherPort,
    /// The destination is unspecified (0.0.0.0/8 or ::).
    Unspecified,
    /// The destination is a loopback address (127.0.0.0/8 or ::1): host
    /// loopback is reachable only through the gateway address.
    Loopback,
    /// The destination is IPv4-mapped IPv6 (::ffff:0:0/96), which would
    /// reach IPv4 hosts around the IPv4 rules.
    Ipv4Mapped,
    /// The destination is a multicast address.
    Multicast,
    /// The destination is 255.255.255.255 or the network's broadcast
    /// address.
    Broadcast,
    /// The destination is link-local (169.254.0.0/16, fe80::/10) and not
    /// the gateway.
    LinkLocal,
    /// TCP or UDP to port 0.
    PortZero,
    /// The flow's family is disabled in the plan.
    FamilyDisabled,
    /// Source and destination are of different families.
    AddressFamilyMismatch,
    /// The source is not one of the guest's addresses (or is link-local,
    /// for a destination off the link).
    InvalidSource,
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::DeniedCidr(c) => write!(f, "denied by rule {c}"),
            DenyReason::HostLoopbackDisabled => f.write_str("host loopback mapping is off"),
            DenyReason::GuestAddress => f.write_str("destination is the guest itself"),
            DenyReason::UnassignedAddress => {
                f.write_str("no host at this address of the guest network")
            }
            DenyReason::DnsAddressOtherPort => f.write_str("the DNS address serves port 53 only"),
            DenyReason::Unspecified => f.write_str("unspecified destination"),
            DenyReason::Loopback => f.write_str("loopback destination"),
            DenyReason::Ipv4Mapped => f.write_str("IPv4-mapped IPv6 destination"),
            DenyReason::Multicast => f.write_str("multicast destination"),
            DenyReason::Broadcast => f.write_str("broadcast destination"),
            DenyReason::LinkLocal => f.write_str("link-local destination"),
            DenyReason::PortZero => f.write_str("destination port 0"),
            DenyReason::FamilyDisabled => f.write_str("address family disabled"),
            DenyReason::AddressFamilyMismatch => {
                f.write_str("source and destination families differ")
            }
            DenyReason::InvalidSource => f.write_str("source is not a guest address"),
        }
    }
}

/// What to do with an outbound flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Open a host socket to this address. For ICMP the port is the echo
    /// identifier, carried over unchanged.
    Connect(SocketAddr),
    /// Forward the DNS query (UDP or TCP) to this upstream.
    ForwardDns(DnsUpstream),
    /// Answer from slipway itself.
    AnswerLocally(LocalService),
    /// Refuse the flow (TCP RST, ICMP unreachable, or drop).
    Deny(DenyReason),
}

/// A plan and its rules, checked against each other: the translator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nat {
    plan: Plan,
    rules: Rules,
}

impl Nat {
    /// Checks `rules` against `plan`.
    pub fn new(plan: Plan, rules: Rules) -> Result<Self, RulesError> {
        rules.validate(&plan)?;
        Ok(Self { plan, rules })
    }

    /// The address plan.
    #[must_use]
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The rules.
    #[must_use]
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The verdict on a flow the guest opens from `src` to `dst` (see the
    /// module documentation for the order of the checks).
    ///
    /// ICMP echo to the gateway with the mapping on connects to the
    /// host-loopback target, so the guest's ping reports what a ping of the
    /// host's loopback would; with the mapping off, slipway answers it.
    #[must_use]
    pub fn translate_outbound(&self, proto: Protocol, src: IpAddr, dst: SocketAddr) -> Verdict {
        if let Some(cidr) = self.rules.deny.denied_by(dst.ip()) {
            return Verdict::Deny(DenyReason::DeniedCidr(cidr));
        }
        let port = dst.port();
        match (src, dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => match self.plan.ipv4() {
                Some(plan) => self.outbound_v4(plan, proto, s, d, port),
                None => Verdict::Deny(DenyReason::FamilyDisabled),
            },
            (IpAddr::V6(s), IpAddr::V6(d)) => match self.plan.ipv6() {
                Some(plan) => self.outbound_v6(plan, proto, s, d, port),
                None => Verdict::Deny(DenyReason::FamilyDisabled),
            },
            (IpAddr::V4(_), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(_)) => {
                Verdict::Deny(DenyReason::AddressFamilyMismatch)
            }
        }
    }

    fn outbound_v4(
        &self,
        plan: &Ipv4Plan,
        proto: Protocol,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        port: u16,
    ) -> Verdict {
        let dhcp = proto == Protocol::Udp
            && port == DHCPV4_SERVER_PORT
            && (dst.is_broadcast() || dst == plan.gateway())
            && (src.is_unspecified() || plan.is_guest_source(src));
        if dhcp {
            return Verdict::AnswerLocally(LocalService::Dhcpv4);
        }
        if !plan.is_guest_source(src) {
            return Verdict::Deny(DenyReason::InvalidSource);
        }
        let special = if dst.octets()[0] == 0 {
            Some(DenyReason::Unspecified)
        } else if dst.is_loopback() {
            Some(DenyReason::Loopback)
        } else if dst.is_multicast() {
            Some(DenyReason::Multicast)
        } else if dst.is_broadcast() {
            Some(DenyReason::Broadcast)
        } else {
            None
        };
        if let Some(reason) = special {
            return Verdict::Deny(reason);
        }
        if plan.network().contains(dst) {
            return self.to_plan_v4(plan, proto, src, dst, port);
        }
        if dst.is_link_local() {
            return Verdict::Deny(DenyReason::LinkLocal);
        }
        self.connect(proto, SocketAddr::new(IpAddr::V4(dst), port))
    }

    fn to_plan_v4(
        &self,
        plan: &Ipv4Plan,
        proto: Protocol,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        port: u16,
    ) -> Verdict {
        if dst == plan.gateway() {
            self.to_gateway(proto, self.rules.host_loopback.v4.map(IpAddr::V4), port)
        } else if dst == plan.dns() {
            self.to_dns(proto, port)
        } else if dst == plan.guest() || dst == src {
            Verdict::Deny(DenyReason::GuestAddress)
        } else if dst == plan.broadcast() {
            Verdict::Deny(DenyReason::Broadcast)
        } else {
            Verdict::Deny(DenyReason::UnassignedAddress)
        }
    }

    fn outbound_v6(
        &self,
        plan: &Ipv6Plan,
        proto: Protocol,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        port: u16,
    ) -> Verdict {
        if !plan.is_guest_source(src) {
            return Verdict::Deny(DenyReason::InvalidSource);
        }
        if proto == Protocol::Udp && port == DHCPV6_SERVER_PORT && dst == ALL_DHCP_AGENTS {
            return Verdict::AnswerLocally(LocalService::Dhcpv6);
        }
        let special = if dst.is_unspecified() {
            Some(DenyReason::Unspecified)
        } else if dst.is_loopback() {
            Some(DenyReason::Loopback)
        } else if dst.to_ipv4_mapped().is_some() {
            Some(DenyReason::Ipv4Mapped)
        } else if dst.is_multicast() {
            Some(DenyReason::Multicast)
        } else {
            None
        };
        if let Some(reason) = special {
            return Verdict::Deny(reason);
        }
        if plan.is_gateway(dst) {
            return self.to_gateway(proto, self.rules.host_loopback.v6.map(IpAddr::V6), port);
        }
        if dst == plan.dns() {
            return self.to_dns(proto, port);
        }
        if dst == src || plan.guest() == Some(dst) {
            return Verdict::Deny(DenyReason::GuestAddress);
        }
        if dst.is_unicast_link_local() {
            return Verdict::Deny(DenyReason::LinkLocal);
        }
        if src.is_unicast_link_local() {
            return Verdict::Deny(DenyReason::InvalidSource);
        }
        if plan.network().contains(dst) {
            return Verdict::Deny(DenyReason::UnassignedAddress);
        }
        self.connect(proto, SocketAddr::new(IpAddr::V6(dst), port))
    }

    /// A flow to the gateway, mapped to `target` if the mapping is on.
    fn to_gateway(&self, proto: Protocol, target: Option<IpAddr>, port: u16) -> Verdict {
        match (target, proto) {
            (Some(target), _) => self.connect(proto, SocketAddr::new(target, port)),
            (None, Protocol::Icmp) => Verdict::AnswerLocally(LocalService::EchoReply),
            (None, Protocol::Tcp | Protocol::Udp) => {
                Verdict::Deny(DenyReason::HostLoopbackDisabled)
            }
        }
    }

    fn to_dns(&self, proto: Protocol, port: u16) -> Verdict {
        match proto {
            Protocol::Icmp => Verdict::AnswerLocally(LocalService::EchoReply),
            Protocol::Tcp | Protocol::Udp if port != DNS_PORT => {
                Verdict::Deny(DenyReason::DnsAddressOtherPort)
            }
            Protocol::Tcp | Protocol::Udp => match self.rules.dns_upstream {
                Some(upstream) => match self.rules.deny.denied_by(upstream.ip()) {
                    Some(cidr) => Verdict::Deny(DenyReason::DeniedCidr(cidr)),
                    None => Verdict::ForwardDns(DnsUpstream::Configured(upstream)),
                },
                None => Verdict::ForwardDns(DnsUpstream::HostResolver),
            },
        }
    }

    /// Connect to `target` on the host, unless a deny rule covers it.
    fn connect(&self, proto: Protocol, target: SocketAddr) -> Verdict {
        if let Some(cidr) = self.rules.deny.denied_by(target.ip()) {
            return Verdict::Deny(DenyReason::DeniedCidr(cidr));
        }
        if proto != Protocol::Icmp && target.port() == 0 {
            return Verdict::Deny(DenyReason::PortZero);
        }
        Verdict::Connect(target)
    }

    /// The guest address and port for a flow arriving on the forwarded host
    /// port `host_port`, or `None` if the port is not forwarded for `proto`
    /// (ICMP never is) or the guest has no address of `family`.
    ///
    /// `family` is the family of the host-side peer ([`IpFamily::of`] counts
    /// an IPv4-mapped peer as IPv4); the flow reaches the guest in the same
    /// family. For IPv6, `learned_guest_v6` is the address the caller has
    /// seen the guest use (SLAAC): it is taken if it is a valid guest
    /// address, otherwise the plan's configured guest address is.
    #[must_use]
    pub fn translate_inbound(
        &self,
        proto: Protocol,
        family: IpFamily,
        host_port: u16,
        learned_guest_v6: Option<Ipv6Addr>,
    ) -> Option<SocketAddr> {
        let forwards = match proto {
            Protocol::Tcp => &self.rules.tcp_forwards,
            Protocol::Udp => &self.rules.udp_forwards,
            Protocol::Icmp => return None,
        };
        let guest_port = forwards.guest_port_for(host_port)?;
        let guest = match family {
            IpFamily::V4 => IpAddr::V4(self.plan.ipv4()?.guest()),
            IpFamily::V6 => {
                let plan = self.plan.ipv6()?;
                let learned = learned_guest_v6.filter(|a| plan.is_guest_source(*a));
                IpAddr::V6(learned.or(plan.guest())?)
            }
        };
        Some(SocketAddr::new(guest, guest_port))
    }
}

#[cfg(test)]
mod tests;
