//! The translation rules: host-loopback mapping, deny lists, inbound port
//! forwards and the DNS upstream.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::cidr::Cidr;
use crate::deny::DenyList;
use crate::forward::PortForwards;
use crate::plan::Plan;
use crate::translate::{IpFamily, Protocol};

/// Where flows to the gateway address go on the host, per family: passt's
/// `--map-host-loopback`, with the gateway as the guest-side address.
///
/// `Some(addr)` maps the gateway (for IPv6, its address in the network and
/// its link-local address) to `addr` on the host, by default the loopback
/// address; `None` leaves the gateway unmapped, and flows to it are denied
/// with [`DenyReason::HostLoopbackDisabled`](crate::DenyReason::HostLoopbackDisabled)
/// (pings are still answered by slipway).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostLoopback {
    /// The host address the IPv4 gateway maps to (default 127.0.0.1).
    pub v4: Option<Ipv4Addr>,
    /// The host address the IPv6 gateway maps to (default ::1).
    pub v6: Option<Ipv6Addr>,
}

impl HostLoopback {
    /// No mapping in either family (passt's `--map-host-loopback none`).
    pub const OFF: HostLoopback = HostLoopback { v4: None, v6: None };
    /// The gateway maps to 127.0.0.1 and ::1.
    pub const LOOPBACK: HostLoopback = HostLoopback {
        v4: Some(Ipv4Addr::LOCALHOST),
        v6: Some(Ipv6Addr::LOCALHOST),
    };
}

impl Default for HostLoopback {
    /// [`HostLoopback::LOOPBACK`], as in passt and libslirp.
    fn default() -> Self {
        Self::LOOPBACK
    }
}

/// The rules a [`Nat`](crate::Nat) applies on top of its [`Plan`].
///
/// The default maps the gateway to host loopback, denies nothing beyond the
/// built-in checks, forwards no ports and sends DNS to the host's resolver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// Where flows to the gateway go.
    pub host_loopback: HostLoopback,
    /// Destinations the guest must not reach. A deny list wins over every
    /// other rule: it applies to the destination the guest named and to the
    /// host address slipway would use instead (the host-loopback target, a
    /// configured DNS upstream).
    pub deny: DenyList,
    /// Inbound TCP forwards.
    pub tcp_forwards: PortForwards,
    /// Inbound UDP forwards.
    pub udp_forwards: PortForwards,
    /// Where DNS queries to the plan's DNS address go; `None` means the
    /// host's own resolver, which the caller finds (e.g. in
    /// `/etc/resolv.conf`) and should check with [`DenyList::denied_by`].
    pub dns_upstream: Option<SocketAddr>,
}

/// A rule that does not fit the plan; each variant names the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// A host address cannot be a destination.
    #[error("{rule} {addr} {why}")]
    UnusableAddress {
        /// The rule, e.g. "host loopback target".
        rule: &'static str,
        /// The bad address.
        addr: IpAddr,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A host address lies inside the guest's network, where it would name
    /// an address on the guest's link instead of one on the host.
    #[error("{rule} {addr} is inside the guest network {network}")]
    InsideGuestNetwork {
        /// The rule.
        rule: &'static str,
        /// The bad address.
        addr: IpAddr,
        /// The plan's network containing it.
        network: Cidr,
    },
    /// The DNS upstream has port 0.
    #[error("DNS upstream {addr} has port 0")]
    DnsUpstreamPortZero {
        /// The bad upstream.
        addr: SocketAddr,
    },
    /// A forward binds an address of a family the plan disables.
    #[error(
        "{proto} forward {spec:?} binds an {family} address, but {family} is disabled in the plan"
    )]
    ForwardFamilyDisabled {
        /// The forward's protocol.
        proto: Protocol,
        /// The spec.
        spec: String,
        /// The disabled family.
        family: IpFamily,
    },
}

const HOST_LOOPBACK_RULE: &str = "host loopback target";
const DNS_UPSTREAM_RULE: &str = "DNS upstream";

impl Rules {
    /// Checks the rules against `plan`.
    pub(crate) fn validate(&self, plan: &Plan) -> Result<(), RulesError> {
        if let Some(a) = self.host_loopback.v4 {
            check_host_address(HOST_LOOPBACK_RULE, IpAddr::V4(a), false, plan)?;
        }
        if let Some(a) = self.host_loopback.v6 {
            check_host_address(HOST_LOOPBACK_RULE, IpAddr::V6(a), false, plan)?;
        }
        if let Some(addr) = self.dns_upstream {
            if addr.port() == 0 {
                return Err(RulesError::DnsUpstreamPortZero { addr });
            }
            let scoped = matches!(addr, SocketAddr::V6(a) if a.scope_id() != 0);
            check_host_address(DNS_UPSTREAM_RULE, addr.ip(), scoped, plan)?;
        }
        for (proto, forwards) in [
            (Protocol::Tcp, &self.tcp_forwards),
            (Protocol::Udp, &self.udp_forwards),
        ] {
            for spec in forwards.specs() {
                let Some(bind) = spec.bind() else { continue };
                let family = IpFamily::of(bind);
                let enabled = match family {
                    IpFamily::V4 => plan.ipv4().is_some(),
                    IpFamily::V6 => plan.ipv6().is_some(),
                };
                if !enabled {
                    return Err(RulesError::ForwardFamilyDisabled {
                        proto,
                        spec: spec.to_string(),
                        family,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Checks that `addr` can be a host-side destination; `scoped` says whether
/// a link-local IPv6 address comes with its interface.
fn check_host_address(
    rule: &'static str,
    addr: IpAddr,
    scoped: bool,
    plan: &Plan,
) -> Result<(), RulesError> {
    let why = match addr {
        IpAddr::V4(a) if a.is_unspecified() => Some("is the unspecified address"),
        IpAddr::V4(a) if a.is_multicast() => Some("is a multicast address"),
        IpAddr::V4(a) if a.is_broadcast() => Some("is the broadcast address"),
        IpAddr::V6(a) if a.is_unspecified() => Some("is the unspecified address"),
        IpAddr::V6(a) if a.is_multicast() => Some("is a multicast address"),
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
            Some("is an IPv4-mapped address: give the IPv4 address")
        }
        IpAddr::V6(a) if a.is_unicast_link_local() && !scoped => {
            Some("is link-local and names no interface")
        }
        IpAddr::V4(_) | IpAddr::V6(_) => None,
    };
    if let Some(why) = why {
        return Err(RulesError::UnusableAddress { rule, addr, why });
    }
    let network: Option<Cidr> = match addr {
        IpAddr::V4(a) => plan
            .ipv4()
            .map(|p| p.network())
            .filter(|n| n.contains(a))
            .map(Cidr::V4),
        IpAddr::V6(a) => plan
            .ipv6()
            .map(|p| p.network())
            .filter(|n| n.contains(a))
            .map(Cidr::V6),
    };
    match network {
        Some(network) => Err(RulesError::InsideGuestNetwork {
            rule,
            addr,
            network,
        }),
        None => Ok(()),
    }
}
