//! Inbound port forwards: the host listeners of the forwarded ports, and
//! where a host peer's flow goes in the guest.
//!
//! A forward that names an address listens on it alone; one that names
//! none listens on the unspecified address of each family the plan
//! enables, one socket each (IPv6 sockets are IPv6 only), as passt binds
//! both. A flow keeps the family it arrived in: a peer of an IPv4 listener
//! reaches the guest's IPv4 address, a peer of an IPv6 listener the
//! guest's IPv6 address. No flow changes family, so with one family off
//! nothing listens on the other and its connections are refused by the
//! host's kernel, as with passt's `-4` and `-6`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use epoll_dispatch::{Interest, Token};
use nat_core::{Ipv6Cidr, Plan, PortForwards, Protocol, Rules};
use relay_tcp::Listener;
use relay_udp_icmp::UdpListener;

use super::{AcceptBackoff, Backend, BackendError, KIND_TCP_LISTENER, KIND_UDP_LISTENER};

/// The host addresses a forward bound to `bind` listens on: `bind`, or the
/// unspecified address of each family `plan` enables.
fn listen_addrs(plan: &Plan, bind: Option<IpAddr>) -> Vec<IpAddr> {
    match bind {
        Some(addr) => vec![addr],
        None => [
            plan.ipv4().map(|_| IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            plan.ipv6().map(|_| IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        ]
        .into_iter()
        .flatten()
        .collect(),
    }
}

/// Whether a listener on `addr` for a forward that named no address failed
/// only because the host has no IPv6 (a kernel without it, or booted with
/// `ipv6.disable=1`): the forward then listens on IPv4 alone.
fn host_lacks_ipv6(named: bool, addr: IpAddr, error: &io::Error) -> bool {
    let errno = error.raw_os_error();
    !named
        && addr.is_ipv6()
        && (errno == Some(libc::EAFNOSUPPORT) || errno == Some(libc::EADDRNOTAVAIL))
}

/// The address a guest forms by SLAAC from `network` (a /64) and its MAC
/// address `mac` with a modified EUI-64 interface identifier (RFC 4291,
/// appendix A), as the namespaces slipway sets up do.
fn slaac_eui64(network: Ipv6Cidr, mac: [u8; 6]) -> Option<Ipv6Addr> {
    if network.prefix_len() != 64 {
        return None;
    }
    let id = [
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ];
    let bits = network.network().to_bits() | u128::from(u64::from_be_bytes(id));
    Some(Ipv6Addr::from_bits(bits))
}

/// Binds a listener with `bind` on every address of every forward in
/// `forwards`. A forward that named no address listens on IPv4 alone,
/// with a warning, where the host has no IPv6.
fn bind_forwards<L, E>(
    plan: &Plan,
    forwards: &PortForwards,
    proto: &str,
    bind: impl Fn(SocketAddr) -> Result<L, E>,
    os_error: impl Fn(&E) -> &io::Error,
) -> Result<Vec<L>, E>
where
    E: std::fmt::Display,
{
    let mut listeners = Vec::new();
    for forward in forwards.iter() {
        for addr in listen_addrs(plan, forward.bind) {
            match bind(SocketAddr::new(addr, forward.host_port)) {
                Ok(listener) => listeners.push(listener),
                Err(error) if host_lacks_ipv6(forward.bind.is_some(), addr, os_error(&error)) => {
                    tracing::warn!(%error, "the host has no IPv6; {proto} forward on IPv4 only");
                }
                Err(error) => return Err(error),
            }
        }
    }
    Ok(listeners)
}

impl Backend {
    /// Listens on every forwarded TCP port.
    pub(super) fn listen_tcp_forwards(&mut self, rules: &Rules) -> Result<(), BackendError> {
        let plan = *self.frontdesk.plan();
        let bound = bind_forwards(&plan, &rules.tcp_forwards, "TCP", Listener::bind, |e| {
            &e.source
        })?;
        for listener in bound {
            let index = u32::try_from(self.listeners.len()).unwrap_or(u32::MAX);
            if let Some(token) = Token::new(KIND_TCP_LISTENER, index, 0) {
                self.poller
                    .register(listener.fd(), token, Interest::READABLE)?;
            }
            self.listeners.push(listener);
            self.accept_backoff.push(AcceptBackoff::default());
        }
        Ok(())
    }

    /// Listens on every forwarded UDP port.
    pub(super) fn listen_udp_forwards(&mut self, rules: &Rules) -> Result<(), BackendError> {
        let plan = *self.frontdesk.plan();
        let bound = bind_forwards(&plan, &rules.udp_forwards, "UDP", UdpListener::bind, |e| e)?;
        for listener in bound {
            let index = u32::try_from(self.udp_listeners.len()).unwrap_or(u32::MAX);
            if let Some(token) = Token::new(KIND_UDP_LISTENER, index, 0) {
                self.poller.register(&listener, token, Interest::READABLE)?;
            }
            self.udp_listeners.push(listener);
        }
        Ok(())
    }

    /// Notes `src`, the source of a guest's IPv6 datagram, as the address
    /// forwarded IPv6 flows go to when it is one of the plan's network
    /// (a link-local source is no address a host peer's flow can use).
    pub(super) fn learn_guest_v6(&mut self, src: Ipv6Addr) {
        let in_network = self
            .frontdesk
            .plan()
            .ipv6()
            .is_some_and(|v6| v6.network().contains(src) && src != v6.network().network());
        if in_network && self.guest_v6_seen != Some(src) {
            tracing::debug!(%src, "guest IPv6 address learnt");
            self.guest_v6_seen = Some(src);
        }
    }

    /// The guest's IPv6 address for forwarded flows, before the plan's
    /// configured one: the last it was seen to use, else (when the plan
    /// configures none) the one it forms by SLAAC with its MAC address.
    fn guest_v6_hint(&self) -> Option<Ipv6Addr> {
        let v6 = self.frontdesk.plan().ipv6()?;
        self.guest_v6_seen.or_else(|| match v6.guest() {
            Some(_) => None,
            None => slaac_eui64(v6.network(), self.frontdesk.guest_mac().0),
        })
    }

    /// The ends of the flow of host peer `peer` on forwarded port
    /// `host_port`: (the guest's address and port, the address the guest
    /// sees the peer at), both of the peer's family. `None` when the port
    /// is not forwarded or the guest has no address of that family.
    pub(crate) fn inbound_ends(
        &self,
        proto: Protocol,
        host_port: u16,
        peer: SocketAddr,
    ) -> Option<(SocketAddr, SocketAddr)> {
        let family = nat_core::IpFamily::of(peer.ip());
        let guest = self
            .nat
            .translate_inbound(proto, family, host_port, self.guest_v6_hint())?;
        let seen_from = self.guest_view_of_peer(peer)?;
        (guest.is_ipv4() == seen_from.is_ipv4()).then_some((guest, seen_from))
    }

    /// What the guest sees as the source of a host peer `peer`: the peer's
    /// own address where the guest can answer it through the gateway, else
    /// the gateway's address of its family. That is the gateway for host
    /// loopback (and the unspecified address), for an IPv6 link-local peer
    /// (whose interface the guest cannot name) and for a peer inside the
    /// guest's network (where the guest would look for it on its link).
    /// An IPv4-mapped peer is an IPv4 one.
    pub(crate) fn guest_view_of_peer(&self, peer: SocketAddr) -> Option<SocketAddr> {
        let plan = self.frontdesk.plan();
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        let (gateway, own) = match ip {
            IpAddr::V4(a) => {
                let v4 = plan.ipv4()?;
                let own = !(a.is_loopback() || a.is_unspecified() || v4.network().contains(a));
                (IpAddr::V4(v4.gateway()), own)
            }
            IpAddr::V6(a) => {
                let v6 = plan.ipv6()?;
                let own = !(a.is_loopback()
                    || a.is_unspecified()
                    || a.is_unicast_link_local()
                    || v6.network().contains(a));
                (IpAddr::V6(v6.gateway()), own)
            }
        };
        Some(SocketAddr::new(if own { ip } else { gateway }, peer.port()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slaac_address_follows_the_mac_as_linux_forms_it() {
        let network: Ipv6Cidr = "fd00:0:0:2::/64".parse().unwrap();
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let expected: Ipv6Addr = "fd00:0:0:2:5054:ff:fe12:3456".parse().unwrap();
        assert_eq!(slaac_eui64(network, mac), Some(expected));
        let not_64: Ipv6Cidr = "fd00:0:0:2::/80".parse().unwrap();
        assert_eq!(slaac_eui64(not_64, mac), None, "SLAAC needs a /64");
    }

    #[test]
    fn a_forward_without_address_listens_on_each_enabled_family() {
        let both = Plan::default();
        assert_eq!(
            listen_addrs(&both, None),
            [
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            ]
        );
        let v4_only = Plan::builder().disable_ipv6().build().unwrap();
        assert_eq!(
            listen_addrs(&v4_only, None),
            [IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
        );
        let v6_only = Plan::builder().disable_ipv4().build().unwrap();
        assert_eq!(
            listen_addrs(&v6_only, None),
            [IpAddr::V6(Ipv6Addr::UNSPECIFIED)]
        );
        let named = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(listen_addrs(&both, Some(named)), [named]);
    }
}
