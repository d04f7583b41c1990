//! Router advertisements: what slipway's router tells the guest about the
//! IPv6 link (RFC 4861, section 6.2), and when.
//!
//! An advertisement names the router's link-local address as its source and
//! carries the plan's prefix (on-link, for SLAAC), the link MTU, the DNS
//! address (RDNSS, RFC 8106), the search domain when one is set (DNSSL) and
//! the router's MAC address. Its M and O flags say what DHCPv6 offers
//! ([`Dhcpv6Mode`]).
//!
//! Unsolicited advertisements follow [`RaSchedule`]: none until the guest
//! sends its first IPv6 frame (a guest without IPv6 hears none), then
//! [`MAX_INITIAL_ADVERTISEMENTS`] close together while the guest configures
//! itself, then one every [`ADVERTISEMENT_INTERVAL`]. The period is fixed
//! rather than randomised as RFC 4861 suggests: the guest's link has one
//! router, so there is no other router to fall in step with.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use nat_core::{Ipv6Plan, Plan};
use smoltcp::wire::{
    EthernetAddress, Icmpv6Packet, NdiscPrefixInfoFlags, NdiscPrefixInformation, NdiscRepr,
    NdiscRouterFlags,
};

use super::counters::DropReason;
use super::dhcpv6::Dhcpv6Mode;
use super::frame::ethernet_address;
use super::ndp::write_icmpv6;

/// Unsolicited advertisements sent close together after the guest's first
/// IPv6 frame (RFC 4861's `MAX_INITIAL_RTR_ADVERTISEMENTS`).
pub const MAX_INITIAL_ADVERTISEMENTS: usize = INITIAL_GAPS.len() + 1;

/// The gaps after the first and the second initial advertisement: each at
/// most RFC 4861's `MAX_INITIAL_RTR_ADVERT_INTERVAL` (16 s).
pub const INITIAL_GAPS: [Duration; 2] = [Duration::from_secs(4), Duration::from_secs(8)];

/// The gap between unsolicited advertisements after the initial ones (RFC
/// 4861's default `MaxRtrAdvInterval`).
pub const ADVERTISEMENT_INTERVAL: Duration = Duration::from_secs(600);

/// How long the guest may use slipway as its default router after an
/// advertisement: three periods (RFC 4861's default `AdvDefaultLifetime`),
/// so that two lost advertisements cost the guest nothing.
pub const ROUTER_LIFETIME: Duration = Duration::from_secs(1800);

/// How long the advertised prefix stays valid (RFC 4861's default
/// `AdvValidLifetime`, 30 days).
pub const PREFIX_VALID_LIFETIME: Duration = Duration::from_secs(2_592_000);

/// How long addresses made from the prefix stay preferred (RFC 4861's
/// default `AdvPreferredLifetime`, 7 days).
pub const PREFIX_PREFERRED_LIFETIME: Duration = Duration::from_secs(604_800);

/// How long the guest may use the advertised DNS address and search
/// domain: three periods, as RFC 8106 section 5.1 recommends.
pub const DNS_LIFETIME: Duration = ROUTER_LIFETIME;

/// The hop limit the guest is told to use.
pub const ADVERTISED_HOP_LIMIT: u8 = 64;

/// The all-nodes multicast address unsolicited advertisements go to.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The Ethernet address of [`ALL_NODES`] (RFC 2464, section 7).
pub const ALL_NODES_MAC: EthernetAddress = EthernetAddress([0x33, 0x33, 0, 0, 0, 1]);

/// NDP option types slipway writes by hand (smoltcp has no representation).
const OPTION_RDNSS: u8 = 25;
const OPTION_DNSSL: u8 = 31;

/// The M ("managed") and O ("other configuration") flags of router
/// advertisements for what DHCPv6 offers the guest.
fn router_flags(mode: Dhcpv6Mode) -> NdiscRouterFlags {
    match mode {
        Dhcpv6Mode::Off => NdiscRouterFlags::empty(),
        Dhcpv6Mode::Stateless => NdiscRouterFlags::OTHER,
        Dhcpv6Mode::Stateful => NdiscRouterFlags::MANAGED | NdiscRouterFlags::OTHER,
    }
}

/// The settings of slipway's IPv6 router beyond the address plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouterConfig {
    /// What DHCPv6 offers, which the M and O flags tell; default
    /// [`Dhcpv6Mode::Stateful`]. A [`FrontDesk`](crate::FrontDesk) keeps it
    /// equal to its DHCPv6 server's mode, so the flags match the service.
    pub dhcpv6: Dhcpv6Mode,
    /// The DNS search domain advertised (DNSSL); default none, and then no
    /// DNSSL option.
    pub search_domain: Option<SearchDomain>,
}

/// A DNS search domain, checked: dot-separated labels of 1 to 63 letters,
/// digits and hyphens, at most 253 characters (a trailing dot is allowed
/// and dropped).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SearchDomain {
    name: String,
}

/// A search domain that is not a DNS name of the accepted form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchDomainError {
    name: String,
}

impl fmt::Display for SearchDomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid search domain {:?}: expected dot-separated labels of 1 to 63 letters, \
             digits or hyphens, at most 253 characters (e.g. example.internal)",
            self.name
        )
    }
}

impl std::error::Error for SearchDomainError {}

impl SearchDomain {
    /// The longest name, without a trailing dot (RFC 1035's 255 octets in
    /// wire form).
    pub const MAX_LEN: usize = 253;

    /// Checks `name`.
    ///
    /// # Errors
    /// A name that is empty, too long, or has an empty, too long or
    /// otherwise invalid label.
    pub fn new(name: &str) -> Result<Self, SearchDomainError> {
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        let label_ok = |label: &str| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if trimmed.is_empty() || trimmed.len() > Self::MAX_LEN || !trimmed.split('.').all(label_ok)
        {
            return Err(SearchDomainError {
                name: name.to_owned(),
            });
        }
        Ok(Self {
            name: trimmed.to_ascii_lowercase(),
        })
    }

    /// The name, lower case, without a trailing dot.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The name in DNS wire form (length-prefixed labels, then a zero):
    /// at most 255 bytes.
    #[must_use]
    pub fn to_wire(&self) -> Vec<u8> {
        let mut wire = Vec::with_capacity(self.name.len() + 2);
        for label in self.name.split('.') {
            // Labels are checked to be at most 63 bytes.
            wire.push(u8::try_from(label.len()).unwrap_or(63));
            wire.extend_from_slice(label.as_bytes());
        }
        wire.push(0);
        wire
    }
}

impl FromStr for SearchDomain {
    type Err = SearchDomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for SearchDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// When unsolicited router advertisements are due.
///
/// Not started, it has no deadline. Started, the first is due at once,
/// the others [`INITIAL_GAPS`] apart, then every
/// [`ADVERTISEMENT_INTERVAL`]. Each gap counts from the moment the previous
/// advertisement is sent, so a late wake-up never makes a burst. An
/// advertisement sent in answer to a solicitation takes the place of the
/// next initial one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaSchedule {
    next: Option<Instant>,
    sent: usize,
    due: bool,
}

impl RaSchedule {
    /// Starts the schedule at `now`, unless it has started already.
    pub fn start(&mut self, now: Instant) {
        if self.next.is_none() && self.sent == 0 {
            self.next = Some(now);
        }
    }

    /// When the next unsolicited advertisement is due; `None` before the
    /// start.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// Marks an advertisement due if its time has come by `now`, and sets
    /// the next deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next.is_some_and(|next| next <= now) {
            self.due = true;
            self.advance(now);
        }
    }

    /// Takes note of an advertisement sent at `now` in answer to a
    /// solicitation: during the initial ones, it counts as one of them.
    pub fn handle_solicited(&mut self, now: Instant) {
        if self.next.is_some() && self.sent < MAX_INITIAL_ADVERTISEMENTS {
            self.advance(now);
        }
    }

    /// Whether an unsolicited advertisement is due; true once per deadline
    /// passed.
    pub fn take_due(&mut self) -> bool {
        std::mem::take(&mut self.due)
    }

    /// Unsolicited and solicited advertisements counted so far during the
    /// initial ones (it stops counting at [`MAX_INITIAL_ADVERTISEMENTS`]).
    #[must_use]
    pub fn initial_sent(&self) -> usize {
        self.sent
    }

    fn advance(&mut self, now: Instant) {
        let gap = INITIAL_GAPS
            .get(self.sent)
            .copied()
            .unwrap_or(ADVERTISEMENT_INTERVAL);
        self.sent = self.sent.saturating_add(1).min(MAX_INITIAL_ADVERTISEMENTS);
        // An instant too far to represent is never reached.
        self.next = now.checked_add(gap);
    }
}

/// Writes into `out` a router advertisement to `(dst_mac, dst)`: its
/// length, or [`DropReason::NoBufferSpace`].
pub(crate) fn write_router_advertisement(
    plan: &Plan,
    v6: &Ipv6Plan,
    config: &RouterConfig,
    (dst_mac, dst): (EthernetAddress, Ipv6Addr),
    out: &mut [u8],
) -> Result<usize, DropReason> {
    let gateway_mac = ethernet_address(plan.gateway_mac());
    let network = v6.network();
    let repr = NdiscRepr::RouterAdvert {
        hop_limit: ADVERTISED_HOP_LIMIT,
        flags: router_flags(config.dhcpv6),
        router_lifetime: smoltcp_duration(ROUTER_LIFETIME),
        reachable_time: smoltcp::time::Duration::ZERO,
        retrans_time: smoltcp::time::Duration::ZERO,
        lladdr: Some(gateway_mac.into()),
        mtu: Some(u32::from(plan.mtu())),
        prefix_info: Some(NdiscPrefixInformation {
            prefix_len: network.prefix_len(),
            flags: NdiscPrefixInfoFlags::ON_LINK | NdiscPrefixInfoFlags::ADDRCONF,
            valid_lifetime: smoltcp_duration(PREFIX_VALID_LIFETIME),
            preferred_lifetime: smoltcp_duration(PREFIX_PREFERRED_LIFETIME),
            prefix: network.network(),
        }),
    };
    let rdnss = rdnss_option(v6.dns());
    let dnssl = config
        .search_domain
        .as_ref()
        .map(dnssl_option)
        .unwrap_or_default();
    let fixed = repr.buffer_len();
    let icmp_len = fixed + rdnss.len() + dnssl.len();
    let src = v6.gateway_link_local();
    write_icmpv6(out, (gateway_mac, dst_mac), (src, dst), icmp_len, |icmp| {
        repr.emit(&mut Icmpv6Packet::new_unchecked(&mut *icmp));
        let (_, options) = icmp.split_at_mut(fixed.min(icmp.len()));
        // `icmp` is exactly as long as the three parts together.
        for (byte, option) in options.iter_mut().zip(rdnss.iter().chain(&dnssl)) {
            *byte = *option;
        }
    })
}

fn smoltcp_duration(d: Duration) -> smoltcp::time::Duration {
    smoltcp::time::Duration::from_secs(d.as_secs())
}

fn lifetime_secs(d: Duration) -> [u8; 4] {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX).to_be_bytes()
}

/// The RDNSS option (RFC 8106, section 5.1) naming `dns`.
fn rdnss_option(dns: Ipv6Addr) -> [u8; 24] {
    let mut option = [0u8; 24];
    // Length in units of 8 bytes: the 8-byte head and one address.
    option[..2].copy_from_slice(&[OPTION_RDNSS, 3]);
    option[4..8].copy_from_slice(&lifetime_secs(DNS_LIFETIME));
    option[8..].copy_from_slice(&dns.octets());
    option
}

/// The DNSSL option (RFC 8106, section 5.2) naming `domain`, padded with
/// zeros to a multiple of 8 bytes.
fn dnssl_option(domain: &SearchDomain) -> Vec<u8> {
    let wire = domain.to_wire();
    let len = (8 + wire.len()).div_ceil(8) * 8;
    let mut option = vec![0u8; len];
    // At most (8 + 255) / 8 rounded up: 33 units.
    option[0] = OPTION_DNSSL;
    option[1] = u8::try_from(len / 8).unwrap_or(u8::MAX);
    option[4..8].copy_from_slice(&lifetime_secs(DNS_LIFETIME));
    option[8..8 + wire.len()].copy_from_slice(&wire);
    option
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn search_domain_takes_dns_names_and_refuses_others() {
        let domain = SearchDomain::new("Example.Internal.").unwrap();
        assert_eq!(domain.as_str(), "example.internal");
        assert_eq!(domain.to_wire(), b"\x07example\x08internal\x00");
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a_b",
            &"a".repeat(64),
            &"a.".repeat(128),
        ] {
            assert!(SearchDomain::new(bad).is_err(), "{bad:?}");
        }
        let label = "a".repeat(63);
        let longest = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(longest.len(), SearchDomain::MAX_LEN);
        assert!(SearchDomain::new(&longest).is_ok());
    }

    #[test]
    fn dnssl_option_is_padded_to_whole_units() {
        let option = dnssl_option(&SearchDomain::new("a.bc").unwrap());
        // 8 head + 6 name = 14, padded to 16.
        assert_eq!(option.len(), 16);
        assert_eq!(option[1], 2);
        assert_eq!(&option[8..14], b"\x01a\x02bc\x00");
        assert_eq!(&option[14..], &[0, 0]);
    }

    #[test]
    fn schedule_has_no_deadline_until_started() {
        let mut schedule = RaSchedule::default();
        assert_eq!(schedule.poll_timeout(), None);
        schedule.handle_timeout(Instant::now());
        assert!(!schedule.take_due());
    }

    #[test]
    fn schedule_counts_a_solicited_advertisement_as_an_initial_one() {
        let t0 = Instant::now();
        let mut schedule = RaSchedule::default();
        schedule.start(t0);
        schedule.handle_solicited(t0);
        assert_eq!(schedule.poll_timeout(), Some(t0 + INITIAL_GAPS[0]));
        schedule.start(t0 + Duration::from_secs(1));
        assert_eq!(schedule.poll_timeout(), Some(t0 + INITIAL_GAPS[0]), "once");
    }

    #[test]
    fn schedule_never_bursts_after_a_late_wake_up() {
        let t0 = Instant::now();
        let mut schedule = RaSchedule::default();
        schedule.start(t0);
        let late = t0 + Duration::from_secs(3600);
        schedule.handle_timeout(late);
        assert!(schedule.take_due());
        assert!(!schedule.take_due(), "one advertisement per deadline");
        assert_eq!(schedule.poll_timeout(), Some(late + INITIAL_GAPS[0]));
    }
}
