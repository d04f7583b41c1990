//! The address plan: the guest's network, the addresses slipway answers on,
//! the MTU and the MAC addresses on the guest's link.
//!
//! | | IPv4 | IPv6 |
//! |---|---|---|
//! | network | 10.0.2.0/24 | fd00:0:0:2::/64 |
//! | guest | 10.0.2.15 (host 15) | by SLAAC, or configured |
//! | gateway | 10.0.2.2 (host 2) | fd00:0:0:2::2, and fe80::1 on the link |
//! | DNS | 10.0.2.3 (host 3) | fd00:0:0:2::3 |
//!
//! MTU 65520; gateway MAC 52:55:0a:00:02:02; guest MAC 52:54:00:12:34:56.
//!
//! Every value can be set with [`PlanBuilder`]. An address left unset keeps
//! its host number inside the configured network: with the IPv4 network set
//! to `192.168.7.0/24` alone, the gateway is `192.168.7.2`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cidr::{Cidr, Ipv4Cidr, Ipv6Cidr};
use crate::mac::MacAddr;

/// The smallest MTU accepted: the IPv4 minimum (RFC 791).
pub const MTU_MIN: u16 = 68;
/// The largest MTU accepted: the largest 802.3 frame less its header,
/// rounded down to a multiple of four.
pub const MTU_MAX: u16 = 65520;
/// The smallest MTU IPv6 allows (RFC 8200); a plan with IPv6 needs at least
/// this much.
pub const IPV6_MIN_MTU: u16 = 1280;
/// The default MTU.
pub const DEFAULT_MTU: u16 = MTU_MAX;
/// The default MAC address of the gateway (slipway's side of the link), in
/// libslirp's style: `52:55` followed by the default gateway address.
pub const DEFAULT_GATEWAY_MAC: MacAddr = MacAddr([0x52, 0x55, 0x0a, 0x00, 0x02, 0x02]);
/// The default MAC address of the guest (QEMU's default).
pub const DEFAULT_GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

const DEFAULT_IPV4_NETWORK: Ipv4Cidr = Ipv4Cidr::from_canonical(Ipv4Addr::new(10, 0, 2, 0), 24);
const DEFAULT_IPV6_NETWORK: Ipv6Cidr =
    Ipv6Cidr::from_canonical(Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0), 64);
const DEFAULT_GATEWAY_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const GUEST_HOST: u8 = 15;
const GATEWAY_HOST: u8 = 2;
const DNS_HOST: u8 = 3;

/// A configurable value of the plan, as named in [`PlanError`] messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlanField {
    /// The IPv4 network.
    Ipv4Network,
    /// The guest's IPv4 address.
    Ipv4Guest,
    /// The gateway's IPv4 address.
    Ipv4Gateway,
    /// The IPv4 DNS address.
    Ipv4Dns,
    /// The IPv6 network.
    Ipv6Network,
    /// The guest's configured IPv6 address.
    Ipv6Guest,
    /// The gateway's IPv6 address inside the network.
    Ipv6Gateway,
    /// The gateway's IPv6 link-local address.
    Ipv6GatewayLinkLocal,
    /// The IPv6 DNS address.
    Ipv6Dns,
    /// The MTU.
    Mtu,
    /// The gateway's MAC address.
    GatewayMac,
    /// The guest's MAC address.
    GuestMac,
}

impl fmt::Display for PlanField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlanField::Ipv4Network => "IPv4 network",
            PlanField::Ipv4Guest => "IPv4 guest address",
            PlanField::Ipv4Gateway => "IPv4 gateway address",
            PlanField::Ipv4Dns => "IPv4 DNS address",
            PlanField::Ipv6Network => "IPv6 network",
            PlanField::Ipv6Guest => "IPv6 guest address",
            PlanField::Ipv6Gateway => "IPv6 gateway address",
            PlanField::Ipv6GatewayLinkLocal => "IPv6 gateway link-local address",
            PlanField::Ipv6Dns => "IPv6 DNS address",
            PlanField::Mtu => "MTU",
            PlanField::GatewayMac => "gateway MAC address",
            PlanField::GuestMac => "guest MAC address",
        })
    }
}

/// Why a [`PlanBuilder`] did not build; every variant names the bad field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// An address lies outside the network it belongs to.
    #[error("{field} {addr} is outside the network {network}")]
    OutsideNetwork {
        /// The bad field.
        field: PlanField,
        /// Its value.
        addr: IpAddr,
        /// The network it must lie in.
        network: Cidr,
    },
    /// An address left unset has no default: its default host number does
    /// not fit in the network.
    #[error("{field} has no default in {network} (host {host} is outside it): set it explicitly")]
    NoDefault {
        /// The field left unset.
        field: PlanField,
        /// The configured network.
        network: Cidr,
        /// The default host number.
        host: u8,
    },
    /// An address is the network address (for IPv6, the subnet-router
    /// anycast address) of its network.
    #[error("{field} {addr} is the network address of {network}")]
    NetworkAddress {
        /// The bad field.
        field: PlanField,
        /// Its value.
        addr: IpAddr,
        /// Its network.
        network: Cidr,
    },
    /// An IPv4 address is the broadcast address of its network.
    #[error("{field} {addr} is the broadcast address of {network}")]
    BroadcastAddress {
        /// The bad field.
        field: PlanField,
        /// Its value.
        addr: IpAddr,
        /// Its network.
        network: Cidr,
    },
    /// Two addresses that must differ are equal.
    #[error("{field} {addr} is also the {other}")]
    SameAddress {
        /// The bad field.
        field: PlanField,
        /// The field it collides with.
        other: PlanField,
        /// The shared value.
        addr: IpAddr,
    },
    /// A network overlaps addresses that cannot belong to a guest link.
    #[error("{field} {network} overlaps {reserved}, {why}")]
    UnusableNetwork {
        /// The bad field.
        field: PlanField,
        /// Its value.
        network: Cidr,
        /// The reserved range it overlaps.
        reserved: Cidr,
        /// What the reserved range is.
        why: &'static str,
    },
    /// The IPv6 network is not a /64 and no guest address is configured, so
    /// the guest has no way to get an address.
    #[error(
        "{field} {network} is not a /64, so SLAAC cannot give the guest an address: set the IPv6 guest address"
    )]
    SlaacNeedsSlash64 {
        /// The bad field.
        field: PlanField,
        /// Its value.
        network: Cidr,
    },
    /// The gateway's link-local address is not in fe80::/10.
    #[error("{field} {addr} is not a link-local unicast address (fe80::/10)")]
    NotLinkLocal {
        /// The bad field.
        field: PlanField,
        /// Its value.
        addr: Ipv6Addr,
    },
    /// The MTU is outside [`MTU_MIN`]`..=`[`MTU_MAX`].
    #[error("MTU {mtu} is outside {MTU_MIN} to {MTU_MAX}")]
    MtuOutOfRange {
        /// The bad MTU.
        mtu: u16,
    },
    /// IPv6 is enabled and the MTU is below [`IPV6_MIN_MTU`].
    #[error("MTU {mtu} is below {IPV6_MIN_MTU}, the IPv6 minimum: raise it or disable IPv6")]
    MtuTooSmallForIpv6 {
        /// The bad MTU.
        mtu: u16,
    },
    /// A MAC address is a group address or all zeros.
    #[error("{field} {mac} is not a unicast address")]
    MacNotUnicast {
        /// The bad field.
        field: PlanField,
        /// Its value.
        mac: MacAddr,
    },
    /// The guest and the gateway have the same MAC address.
    #[error("guest MAC address {mac} is also the gateway MAC address")]
    SameMac {
        /// The shared value.
        mac: MacAddr,
    },
    /// Both address families are disabled.
    #[error("both IPv4 and IPv6 are disabled: a plan needs at least one")]
    NoFamily,
}

impl PlanError {
    /// The field the error is about.
    #[must_use]
    pub fn field(&self) -> Option<PlanField> {
        match self {
            PlanError::OutsideNetwork { field, .. }
            | PlanError::NoDefault { field, .. }
            | PlanError::NetworkAddress { field, .. }
            | PlanError::BroadcastAddress { field, .. }
            | PlanError::SameAddress { field, .. }
            | PlanError::UnusableNetwork { field, .. }
            | PlanError::SlaacNeedsSlash64 { field, .. }
            | PlanError::NotLinkLocal { field, .. }
            | PlanError::MacNotUnicast { field, .. } => Some(*field),
            PlanError::MtuOutOfRange { .. } | PlanError::MtuTooSmallForIpv6 { .. } => {
                Some(PlanField::Mtu)
            }
            PlanError::SameMac { .. } => Some(PlanField::GuestMac),
            PlanError::NoFamily => None,
        }
    }
}

/// The IPv4 half of a [`Plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Plan {
    network: Ipv4Cidr,
    guest: Ipv4Addr,
    gateway: Ipv4Addr,
    dns: Ipv4Addr,
}

impl Ipv4Plan {
    /// The guest's network.
    #[must_use]
    pub fn network(&self) -> Ipv4Cidr {
        self.network
    }

    /// The guest's address (handed out by DHCP).
    #[must_use]
    pub fn guest(&self) -> Ipv4Addr {
        self.guest
    }

    /// The gateway's address: slipway itself, and the host's loopback when
    /// the rules map it.
    #[must_use]
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The DNS address the guest sends its queries to.
    #[must_use]
    pub fn dns(&self) -> Ipv4Addr {
        self.dns
    }

    /// The network's directed broadcast address.
    #[must_use]
    pub fn broadcast(&self) -> Ipv4Addr {
        self.network.last()
    }

    /// Whether the guest may send from `src`: a host address of the network
    /// that is not one of slipway's.
    pub(crate) fn is_guest_source(&self, src: Ipv4Addr) -> bool {
        self.network.contains(src)
            && src != self.network.network()
            && src != self.broadcast()
            && src != self.gateway
            && src != self.dns
    }
}

impl Default for Ipv4Plan {
    fn default() -> Self {
        let host =
            |h: u8| Ipv4Addr::from_bits(DEFAULT_IPV4_NETWORK.network().to_bits() | u32::from(h));
        Self {
            network: DEFAULT_IPV4_NETWORK,
            guest: host(GUEST_HOST),
            gateway: host(GATEWAY_HOST),
            dns: host(DNS_HOST),
        }
    }
}

/// The IPv6 half of a [`Plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Plan {
    network: Ipv6Cidr,
    guest: Option<Ipv6Addr>,
    gateway: Ipv6Addr,
    gateway_link_local: Ipv6Addr,
    dns: Ipv6Addr,
}

impl Ipv6Plan {
    /// The guest's network, advertised as the SLAAC prefix.
    #[must_use]
    pub fn network(&self) -> Ipv6Cidr {
        self.network
    }

    /// The guest's configured address (handed out by DHCPv6), if any.
    /// Without one the guest picks its own addresses by SLAAC.
    #[must_use]
    pub fn guest(&self) -> Option<Ipv6Addr> {
        self.guest
    }

    /// The gateway's address inside the network.
    #[must_use]
    pub fn gateway(&self) -> Ipv6Addr {
        self.gateway
    }

    /// The gateway's link-local address: the source of router
    /// advertisements, and the router the guest's default route points to.
    /// Flows to it are treated as flows to [`gateway`](Self::gateway).
    #[must_use]
    pub fn gateway_link_local(&self) -> Ipv6Addr {
        self.gateway_link_local
    }

    /// The DNS address the guest sends its queries to.
    #[must_use]
    pub fn dns(&self) -> Ipv6Addr {
        self.dns
    }

    /// Whether `addr` is one of the gateway's two addresses.
    pub(crate) fn is_gateway(&self, addr: Ipv6Addr) -> bool {
        addr == self.gateway || addr == self.gateway_link_local
    }

    /// Whether the guest may send from `src`: an address of the network, or
    /// a link-local unicast address, that is not one of slipway's.
    pub(crate) fn is_guest_source(&self, src: Ipv6Addr) -> bool {
        let in_network = self.network.contains(src) && src != self.network.network();
        (in_network || src.is_unicast_link_local()) && !self.is_gateway(src) && src != self.dns
    }
}

impl Default for Ipv6Plan {
    fn default() -> Self {
        let host =
            |h: u8| Ipv6Addr::from_bits(DEFAULT_IPV6_NETWORK.network().to_bits() | u128::from(h));
        Self {
            network: DEFAULT_IPV6_NETWORK,
            guest: None,
            gateway: host(GATEWAY_HOST),
            gateway_link_local: DEFAULT_GATEWAY_LINK_LOCAL,
            dns: host(DNS_HOST),
        }
    }
}

/// The validated address plan. Build one with [`Plan::builder`], or take
/// [`Plan::default`].
///
/// Invariants: at least one family is enabled; in each, the gateway, DNS and
/// guest addresses are distinct host addresses of the network (neither its
/// network nor its broadcast address); the MTU is in
/// [`MTU_MIN`]`..=`[`MTU_MAX`] and, with IPv6, at least [`IPV6_MIN_MTU`];
/// the two MAC addresses are distinct unicast addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    v4: Option<Ipv4Plan>,
    v6: Option<Ipv6Plan>,
    mtu: u16,
    gateway_mac: MacAddr,
    guest_mac: MacAddr,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            v4: Some(Ipv4Plan::default()),
            v6: Some(Ipv6Plan::default()),
            mtu: DEFAULT_MTU,
            gateway_mac: DEFAULT_GATEWAY_MAC,
            guest_mac: DEFAULT_GUEST_MAC,
        }
    }
}

impl Plan {
    /// A builder that starts from the defaults.
    #[must_use]
    pub fn builder() -> PlanBuilder {
        PlanBuilder::default()
    }

    /// The IPv4 plan, or `None` if IPv4 is disabled.
    #[must_use]
    pub fn ipv4(&self) -> Option<&Ipv4Plan> {
        self.v4.as_ref()
    }

    /// The IPv6 plan, or `None` if IPv6 is disabled.
    #[must_use]
    pub fn ipv6(&self) -> Option<&Ipv6Plan> {
        self.v6.as_ref()
    }

    /// The MTU of the guest's link.
    #[must_use]
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// The gateway's MAC address.
    #[must_use]
    pub fn gateway_mac(&self) -> MacAddr {
        self.gateway_mac
    }

    /// The guest's MAC address.
    #[must_use]
    pub fn guest_mac(&self) -> MacAddr {
        self.guest_mac
    }
}

/// Collects the values of a [`Plan`] and checks them together.
///
/// Every value starts unset and takes its default in [`build`](Self::build):
/// the default networks, MTU and MAC addresses, and for addresses the
/// default host number inside the configured network.
#[derive(Clone, Debug, Default)]
pub struct PlanBuilder {
    v4_disabled: bool,
    v4_network: Option<Ipv4Cidr>,
    v4_guest: Option<Ipv4Addr>,
    v4_gateway: Option<Ipv4Addr>,
    v4_dns: Option<Ipv4Addr>,
    v6_disabled: bool,
    v6_network: Option<Ipv6Cidr>,
    v6_guest: Option<Ipv6Addr>,
    v6_gateway: Option<Ipv6Addr>,
    v6_gateway_link_local: Option<Ipv6Addr>,
    v6_dns: Option<Ipv6Addr>,
    mtu: Option<u16>,
    gateway_mac: Option<MacAddr>,
    guest_mac: Option<MacAddr>,
}

impl PlanBuilder {
    /// Sets the IPv4 network (default 10.0.2.0/24).
    #[must_use]
    pub fn ipv4_network(mut self, network: Ipv4Cidr) -> Self {
        self.v4_network = Some(network);
        self
    }

    /// Sets the guest's IPv4 address (default host 15 of the network).
    #[must_use]
    pub fn ipv4_guest(mut self, addr: Ipv4Addr) -> Self {
        self.v4_guest = Some(addr);
        self
    }

    /// Sets the gateway's IPv4 address (default host 2 of the network).
    #[must_use]
    pub fn ipv4_gateway(mut self, addr: Ipv4Addr) -> Self {
        self.v4_gateway = Some(addr);
        self
    }

    /// Sets the IPv4 DNS address (default host 3 of the network).
    #[must_use]
    pub fn ipv4_dns(mut self, addr: Ipv4Addr) -> Self {
        self.v4_dns = Some(addr);
        self
    }

    /// Disables IPv4: the plan has no IPv4 half and the IPv4 values set
    /// are ignored.
    #[must_use]
    pub fn disable_ipv4(mut self) -> Self {
        self.v4_disabled = true;
        self
    }

    /// Sets the IPv6 network (default fd00:0:0:2::/64).
    #[must_use]
    pub fn ipv6_network(mut self, network: Ipv6Cidr) -> Self {
        self.v6_network = Some(network);
        self
    }

    /// Sets the guest's IPv6 address (default none: SLAAC).
    #[must_use]
    pub fn ipv6_guest(mut self, addr: Ipv6Addr) -> Self {
        self.v6_guest = Some(addr);
        self
    }

    /// Sets the gateway's IPv6 address (default host 2 of the network).
    #[must_use]
    pub fn ipv6_gateway(mut self, addr: Ipv6Addr) -> Self {
        self.v6_gateway = Some(addr);
        self
    }

    /// Sets the gateway's IPv6 link-local address (default fe80::1).
    #[must_use]
    pub fn ipv6_gateway_link_local(mut self, addr: Ipv6Addr) -> Self {
        self.v6_gateway_link_local = Some(addr);
        self
    }

    /// Sets the IPv6 DNS address (default host 3 of the network).
    #[must_use]
    pub fn ipv6_dns(mut self, addr: Ipv6Addr) -> Self {
        self.v6_dns = Some(addr);
        self
    }

    /// Disables IPv6: the plan has no IPv6 half and the IPv6 values set
    /// are ignored.
    #[must_use]
    pub fn disable_ipv6(mut self) -> Self {
        self.v6_disabled = true;
        self
    }

    /// Sets the MTU (default 65520).
    #[must_use]
    pub fn mtu(mut self, mtu: u16) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Sets the gateway's MAC address (default 52:55:0a:00:02:02).
    #[must_use]
    pub fn gateway_mac(mut self, mac: MacAddr) -> Self {
        self.gateway_mac = Some(mac);
        self
    }

    /// Sets the guest's MAC address (default 52:54:00:12:34:56).
    #[must_use]
    pub fn guest_mac(mut self, mac: MacAddr) -> Self {
        self.guest_mac = Some(mac);
        self
    }

    /// Checks every value and builds the plan. The first problem found is
    /// returned, naming its field.
    pub fn build(self) -> Result<Plan, PlanError> {
        let v4 = (!self.v4_disabled).then(|| self.build_v4()).transpose()?;
        let v6 = (!self.v6_disabled).then(|| self.build_v6()).transpose()?;
        if v4.is_none() && v6.is_none() {
            return Err(PlanError::NoFamily);
        }
        let mtu = self.mtu.unwrap_or(DEFAULT_MTU);
        if !(MTU_MIN..=MTU_MAX).contains(&mtu) {
            return Err(PlanError::MtuOutOfRange { mtu });
        }
        if v6.is_some() && mtu < IPV6_MIN_MTU {
            return Err(PlanError::MtuTooSmallForIpv6 { mtu });
        }
        let gateway_mac = self.gateway_mac.unwrap_or(DEFAULT_GATEWAY_MAC);
        let guest_mac = self.guest_mac.unwrap_or(DEFAULT_GUEST_MAC);
        for (field, mac) in [
            (PlanField::GatewayMac, gateway_mac),
            (PlanField::GuestMac, guest_mac),
        ] {
            if !mac.is_unicast() {
                return Err(PlanError::MacNotUnicast { field, mac });
            }
        }
        if gateway_mac == guest_mac {
            return Err(PlanError::SameMac { mac: guest_mac });
        }
        Ok(Plan {
            v4,
            v6,
            mtu,
            gateway_mac,
            guest_mac,
        })
    }

    fn build_v4(&self) -> Result<Ipv4Plan, PlanError> {
        let network = self.v4_network.unwrap_or(DEFAULT_IPV4_NETWORK);
        check_v4_network(network)?;
        let pick = |field, set: Option<Ipv4Addr>, host: u8| -> Result<Ipv4Addr, PlanError> {
            let addr = match set {
                Some(a) => a,
                None => network.host(u32::from(host)).ok_or(PlanError::NoDefault {
                    field,
                    network: network.into(),
                    host,
                })?,
            };
            check_v4_host(field, addr, network)?;
            Ok(addr)
        };
        let gateway = pick(PlanField::Ipv4Gateway, self.v4_gateway, GATEWAY_HOST)?;
        let dns = pick(PlanField::Ipv4Dns, self.v4_dns, DNS_HOST)?;
        let guest = pick(PlanField::Ipv4Guest, self.v4_guest, GUEST_HOST)?;
        check_distinct(&[
            (PlanField::Ipv4Gateway, gateway.into()),
            (PlanField::Ipv4Dns, dns.into()),
            (PlanField::Ipv4Guest, guest.into()),
        ])?;
        Ok(Ipv4Plan {
            network,
            guest,
            gateway,
            dns,
        })
    }

    fn build_v6(&self) -> Result<Ipv6Plan, PlanError> {
        let network = self.v6_network.unwrap_or(DEFAULT_IPV6_NETWORK);
        check_v6_network(network, self.v6_guest.is_some())?;
        let pick = |field, set: Option<Ipv6Addr>, host: u8| -> Result<Ipv6Addr, PlanError> {
            let addr = match set {
                Some(a) => a,
                None => network.host(u128::from(host)).ok_or(PlanError::NoDefault {
                    field,
                    network: network.into(),
                    host,
                })?,
            };
            check_v6_host(field, addr, network)?;
            Ok(addr)
        };
        let gateway = pick(PlanField::Ipv6Gateway, self.v6_gateway, GATEWAY_HOST)?;
        let dns = pick(PlanField::Ipv6Dns, self.v6_dns, DNS_HOST)?;
        let guest = match self.v6_guest {
            Some(a) => Some(pick(PlanField::Ipv6Guest, Some(a), 0)?),
            None => None,
        };
        let gateway_link_local = self
            .v6_gateway_link_local
            .unwrap_or(DEFAULT_GATEWAY_LINK_LOCAL);
        if !gateway_link_local.is_unicast_link_local() {
            return Err(PlanError::NotLinkLocal {
                field: PlanField::Ipv6GatewayLinkLocal,
                addr: gateway_link_local,
            });
        }
        let mut addrs = vec![
            (PlanField::Ipv6Gateway, gateway.into()),
            (PlanField::Ipv6Dns, dns.into()),
        ];
        addrs.extend(guest.map(|g| (PlanField::Ipv6Guest, g.into())));
        check_distinct(&addrs)?;
        Ok(Ipv6Plan {
            network,
            guest,
            gateway,
            gateway_link_local,
            dns,
        })
    }
}

/// Ranges a guest network must not overlap, and why.
fn reserved_v4() -> [(Ipv4Cidr, &'static str); 4] {
    [
        (
            Ipv4Cidr::from_canonical(Ipv4Addr::new(0, 0, 0, 0), 8),
            "\"this network\"",
        ),
        (
            Ipv4Cidr::from_canonical(Ipv4Addr::new(127, 0, 0, 0), 8),
            "the loopback range",
        ),
        (
            Ipv4Cidr::from_canonical(Ipv4Addr::new(224, 0, 0, 0), 4),
            "the multicast range",
        ),
        (
            Ipv4Cidr::from_canonical(Ipv4Addr::new(240, 0, 0, 0), 4),
            "the reserved range",
        ),
    ]
}

fn reserved_v6() -> [(Ipv6Cidr, &'static str); 5] {
    [
        (
            Ipv6Cidr::from_canonical(Ipv6Addr::UNSPECIFIED, 128),
            "the unspecified address",
        ),
        (
            Ipv6Cidr::from_canonical(Ipv6Addr::LOCALHOST, 128),
            "the loopback address",
        ),
        (
            Ipv6Cidr::from_canonical(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
            "the IPv4-mapped range",
        ),
        (
            Ipv6Cidr::from_canonical(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
            "the link-local range",
        ),
        (
            Ipv6Cidr::from_canonical(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
            "the multicast range",
        ),
    ]
}

fn check_v4_network(network: Ipv4Cidr) -> Result<(), PlanError> {
    for (reserved, why) in reserved_v4() {
        if reserved.contains(network.network()) || network.contains(reserved.network()) {
            return Err(PlanError::UnusableNetwork {
                field: PlanField::Ipv4Network,
                network: network.into(),
                reserved: reserved.into(),
                why,
            });
        }
    }
    Ok(())
}

fn check_v6_network(network: Ipv6Cidr, guest_configured: bool) -> Result<(), PlanError> {
    for (reserved, why) in reserved_v6() {
        if reserved.contains(network.network()) || network.contains(reserved.network()) {
            return Err(PlanError::UnusableNetwork {
                field: PlanField::Ipv6Network,
                network: network.into(),
                reserved: reserved.into(),
                why,
            });
        }
    }
    if network.prefix_len() != 64 && !guest_configured {
        return Err(PlanError::SlaacNeedsSlash64 {
            field: PlanField::Ipv6Network,
            network: network.into(),
        });
    }
    Ok(())
}

fn check_v4_host(field: PlanField, addr: Ipv4Addr, network: Ipv4Cidr) -> Result<(), PlanError> {
    let (ip, net) = (IpAddr::V4(addr), Cidr::V4(network));
    if !network.contains(addr) {
        return Err(PlanError::OutsideNetwork {
            field,
            addr: ip,
            network: net,
        });
    }
    if addr == network.network() {
        return Err(PlanError::NetworkAddress {
            field,
            addr: ip,
            network: net,
        });
    }
    if addr == network.last() {
        return Err(PlanError::BroadcastAddress {
            field,
            addr: ip,
            network: net,
        });
    }
    Ok(())
}

fn check_v6_host(field: PlanField, addr: Ipv6Addr, network: Ipv6Cidr) -> Result<(), PlanError> {
    let (ip, net) = (IpAddr::V6(addr), Cidr::V6(network));
    if !network.contains(addr) {
        return Err(PlanError::OutsideNetwork {
            field,
            addr: ip,
            network: net,
        });
    }
    if addr == network.network() {
        return Err(PlanError::NetworkAddress {
            field,
            addr: ip,
            network: net,
        });
    }
    Ok(())
}

/// Fails on the first address equal to one listed before it.
fn check_distinct(addrs: &[(PlanField, IpAddr)]) -> Result<(), PlanError> {
    for (i, &(field, addr)) in addrs.iter().enumerate() {
        if let Some(&(other, _)) = addrs[..i].iter().find(|(_, a)| *a == addr) {
            return Err(PlanError::SameAddress { field, other, addr });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
