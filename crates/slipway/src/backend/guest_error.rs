//! ICMP and ICMPv6 errors to the guest about datagrams it sent, whatever
//! their family: the ones slipway decides itself (a denied destination, a
//! hop limit spent on the way to a host beyond) and the ones a host socket's
//! error queue reports (`IP_RECVERR`, `IPV6_RECVERR`) about a flow's
//! datagram, translated through one family-neutral [`GuestError`].
//!
//! A TCP flow needs none of this: a refused or unreachable connect fails the
//! host `connect()`, which becomes a reset to the guest, and a path MTU that
//! drops under an established connection is the host kernel's business (it
//! re-segments its own stream), so the guest never sees it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use frontdesk::{Icmpv4Error, Icmpv6Error, build_icmp_v4_error, build_icmpv6_error};
use relay_udp_icmp::{ErrorOrigin, IcmpErrorReport};
use smoltcp::wire::{
    Icmpv4DstUnreachable, Icmpv4TimeExceeded, Icmpv6DstUnreachable, Icmpv6TimeExceeded,
    checksum as ip_checksum,
};

use super::{Backend, ICMP_ERROR_FRAME_CAP};

/// Room for an ICMPv6 error frame: the error fits in the IPv6 minimum MTU.
const ICMPV6_ERROR_FRAME_CAP: usize = 14 + 1280;

/// The fixed header lengths of the two families.
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;

/// Why a guest's datagram gets a destination unreachable, whatever its
/// address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unreachable {
    /// A rule or a limit forbids it.
    Prohibited,
    /// The host has no route to the destination.
    NoRoute,
    /// The destination's network is reached but the host is not (no
    /// neighbour answers for it).
    Address,
    /// The destination host has no socket on the port.
    Port,
}

impl Unreachable {
    fn v4(self) -> Icmpv4DstUnreachable {
        match self {
            Unreachable::Prohibited => Icmpv4DstUnreachable::CommProhibited,
            Unreachable::NoRoute => Icmpv4DstUnreachable::NetUnreachable,
            Unreachable::Address => Icmpv4DstUnreachable::HostUnreachable,
            Unreachable::Port => Icmpv4DstUnreachable::PortUnreachable,
        }
    }

    fn v6(self) -> Icmpv6DstUnreachable {
        match self {
            Unreachable::Prohibited => Icmpv6DstUnreachable::AdminProhibit,
            Unreachable::NoRoute => Icmpv6DstUnreachable::NoRoute,
            Unreachable::Address => Icmpv6DstUnreachable::AddrUnreachable,
            Unreachable::Port => Icmpv6DstUnreachable::PortUnreachable,
        }
    }

    /// The reason an ICMP destination unreachable's `code` gives.
    fn of_icmpv4(code: u8) -> Self {
        match code {
            // Net, source route failed, net unknown, net for the TOS.
            0 | 5 | 6 | 11 => Unreachable::NoRoute,
            // Host, host unknown, host for the TOS.
            1 | 7 | 12 => Unreachable::Address,
            3 => Unreachable::Port,
            _ => Unreachable::Prohibited,
        }
    }

    /// The reason an ICMPv6 destination unreachable's `code` gives
    /// (RFC 4443, section 3.1).
    fn of_icmpv6(code: u8) -> Self {
        match code {
            0 | 2 => Unreachable::NoRoute,
            3 => Unreachable::Address,
            4 => Unreachable::Port,
            _ => Unreachable::Prohibited,
        }
    }
}

/// An error about a guest's datagram in terms both families share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuestError {
    /// Destination unreachable.
    Unreachable(Unreachable),
    /// The datagram is larger than the path takes: ICMP fragmentation
    /// needed, ICMPv6 packet too big.
    TooBig {
        /// The MTU of the path as the host learned it.
        mtu: u32,
    },
    /// The hop limit (TTL) ran out on the way.
    HopLimit,
    /// Reassembly at the destination timed out.
    Reassembly,
}

impl GuestError {
    /// What a host socket's error `report` means for the guest, or `None`
    /// for a report the guest has no use for (a parameter problem, a
    /// timestamp), which is only counted.
    pub(crate) fn of_report(report: &IcmpErrorReport) -> Option<Self> {
        match (report.origin, report.icmp_type) {
            (ErrorOrigin::Icmp, 3) if report.icmp_code == 4 => {
                Some(GuestError::TooBig { mtu: report.info })
            }
            (ErrorOrigin::Icmp, 3) => Some(GuestError::Unreachable(Unreachable::of_icmpv4(
                report.icmp_code,
            ))),
            (ErrorOrigin::Icmp, 11) | (ErrorOrigin::Icmp6, 3) => match report.icmp_code {
                0 => Some(GuestError::HopLimit),
                _ => Some(GuestError::Reassembly),
            },
            (ErrorOrigin::Icmp6, 1) => Some(GuestError::Unreachable(Unreachable::of_icmpv6(
                report.icmp_code,
            ))),
            (ErrorOrigin::Icmp6, 2) => Some(GuestError::TooBig { mtu: report.info }),
            (ErrorOrigin::Local, _) => report.mtu().map(|mtu| GuestError::TooBig { mtu }),
            _ => None,
        }
    }

    /// As an ICMP error to a guest whose link MTU is `link_mtu`.
    fn v4(self, link_mtu: u16) -> Icmpv4Error {
        match self {
            GuestError::Unreachable(why) => Icmpv4Error::DstUnreachable(why.v4()),
            GuestError::TooBig { mtu } => Icmpv4Error::FragRequired {
                next_hop_mtu: usable_mtu(mtu, nat_core::MTU_MIN, link_mtu),
            },
            GuestError::HopLimit => Icmpv4Error::TimeExceeded(Icmpv4TimeExceeded::TtlExpired),
            GuestError::Reassembly => Icmpv4Error::TimeExceeded(Icmpv4TimeExceeded::FragExpired),
        }
    }

    /// As an ICMPv6 error to a guest whose link MTU is `link_mtu`.
    fn v6(self, link_mtu: u16) -> Icmpv6Error {
        match self {
            GuestError::Unreachable(why) => Icmpv6Error::DstUnreachable(why.v6()),
            GuestError::TooBig { mtu } => Icmpv6Error::PacketTooBig {
                mtu: u32::from(usable_mtu(mtu, nat_core::IPV6_MIN_MTU, link_mtu)),
            },
            GuestError::HopLimit => Icmpv6Error::TimeExceeded(Icmpv6TimeExceeded::HopLimitExceeded),
            GuestError::Reassembly => {
                Icmpv6Error::TimeExceeded(Icmpv6TimeExceeded::FragReassemExceeded)
            }
        }
    }
}

/// A path MTU the guest can use: never below its family's minimum (a
/// report of 0, or of less than IPv6 allows, would stall it) and never above
/// its own link's MTU (it cannot send more than that anyway).
fn usable_mtu(reported: u32, family_min: u16, link_mtu: u16) -> u16 {
    let ceiling = link_mtu.max(family_min);
    u16::try_from(reported)
        .unwrap_or(u16::MAX)
        .clamp(family_min, ceiling)
}

/// What a synthetic quote stands for: a guest's UDP datagram or echo
/// request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quoted {
    Udp,
    Echo,
}

/// An IP header from the guest and the first 8 bytes of the transport: what
/// an error about a guest's datagram quotes when only its flow is left, so
/// that the guest's stack finds the socket it came from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quote {
    bytes: [u8; IPV6_HEADER_LEN + 8],
    len: usize,
}

impl Quote {
    /// A header from `src` to `dst` (one family) of a datagram whose
    /// transport part (header and data) was `upper_len` bytes as far as it
    /// is known, followed by `head`. An IPv4 header says `upper_len`, as
    /// quotes of long datagrams do; an IPv6 header's payload length says the
    /// 8 bytes that follow, as a datagram the guest's stack parses in full
    /// must.
    pub(crate) fn new(
        (src, dst): (IpAddr, IpAddr),
        quoted: Quoted,
        upper_len: usize,
        head: [u8; 8],
    ) -> Option<Self> {
        let mut bytes = [0u8; IPV6_HEADER_LEN + 8];
        let header_len = match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let protocol = if quoted == Quoted::Udp { 17 } else { 1 };
                write_ipv4_header(&mut bytes, (src, dst), protocol, upper_len);
                IPV4_HEADER_LEN
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let next_header = if quoted == Quoted::Udp { 17 } else { 58 };
                write_ipv6_header(&mut bytes, (src, dst), next_header);
                IPV6_HEADER_LEN
            }
            _ => return None,
        };
        bytes[header_len..header_len + 8].copy_from_slice(&head);
        Some(Self {
            bytes,
            len: header_len + 8,
        })
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn write_ipv4_header(out: &mut [u8], (src, dst): (Ipv4Addr, Ipv4Addr), proto: u8, upper: usize) {
    let total = upper
        .saturating_add(IPV4_HEADER_LEN)
        .max(IPV4_HEADER_LEN + 8);
    out[0] = 0x45;
    out[2..4].copy_from_slice(&u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes());
    out[8] = 64;
    out[9] = proto;
    out[12..16].copy_from_slice(&src.octets());
    out[16..20].copy_from_slice(&dst.octets());
    let checksum = !ip_checksum::data(&out[..IPV4_HEADER_LEN]);
    out[10..12].copy_from_slice(&checksum.to_be_bytes());
}

fn write_ipv6_header(out: &mut [u8], (src, dst): (Ipv6Addr, Ipv6Addr), next: u8) {
    out[0] = 0x60;
    out[4..6].copy_from_slice(&8u16.to_be_bytes());
    out[6] = next;
    out[7] = 64;
    out[8..24].copy_from_slice(&src.octets());
    out[24..40].copy_from_slice(&dst.octets());
}

/// The source and destination of the IPv4 or IPv6 datagram `packet`
/// starts with.
fn ends_of(packet: &[u8]) -> Option<(IpAddr, IpAddr)> {
    let field = |at: usize, len: usize| packet.get(at..at.checked_add(len)?);
    match packet.first()? >> 4 {
        4 => {
            let src: [u8; 4] = field(12, 4)?.try_into().ok()?;
            let dst: [u8; 4] = field(16, 4)?.try_into().ok()?;
            Some((IpAddr::from(src), IpAddr::from(dst)))
        }
        6 => {
            let src: [u8; 16] = field(8, 16)?.try_into().ok()?;
            let dst: [u8; 16] = field(24, 16)?.try_into().ok()?;
            Some((IpAddr::from(src), IpAddr::from(dst)))
        }
        _ => None,
    }
}

impl Backend {
    /// A destination unreachable from the gateway to the guest about
    /// `offending`, an IPv4 or IPv6 datagram it sent, unless no error may be
    /// sent about it.
    pub(crate) fn queue_unreachable(&mut self, offending: &[u8], reason: Unreachable) {
        self.queue_guest_error(None, GuestError::Unreachable(reason), offending);
    }

    /// Queues for the guest the error that `report` says the host got
    /// about a flow's datagram, which `quote` stands for. It comes from the
    /// flow's remote end as the guest sees it (`remote`) when the host it
    /// goes to (`target`) sent it, from the gateway, the guest's router,
    /// when a router on the way (or the host's own stack) did. A report the
    /// guest has no use for is only counted.
    pub(crate) fn queue_host_icmp_error(
        &mut self,
        report: &IcmpErrorReport,
        remote: IpAddr,
        target: IpAddr,
        quote: &Quote,
    ) {
        let Some(error) = GuestError::of_report(report) else {
            return;
        };
        let from_target = report.origin != ErrorOrigin::Local
            && report.offender.is_none_or(|offender| offender == target);
        let from = from_target.then_some(remote);
        if self.queue_guest_error(from, error, quote.as_bytes()) {
            self.counters.icmp_errors_to_guest += 1;
        }
    }

    /// Queues `error` about `offending` (a datagram of the guest's, or a
    /// quote standing for one) from `from`, or from the gateway of the
    /// datagram's family when `None`. Never about a datagram to a group or
    /// from a source that names no single host (RFC 1122 3.2.2, RFC 4443
    /// 2.4 (e)); such a refusal is counted. Returns whether one was queued.
    pub(crate) fn queue_guest_error(
        &mut self,
        from: Option<IpAddr>,
        error: GuestError,
        offending: &[u8],
    ) -> bool {
        let Some((src, dst)) = ends_of(offending) else {
            return false;
        };
        let link = self.frontdesk.link_to_guest();
        let link_mtu = self.frontdesk.plan().mtu();
        let plan = *self.frontdesk.plan();
        let mut queued = false;
        match (src, dst, from) {
            (IpAddr::V4(src), IpAddr::V4(dst), from) => {
                let from = match from {
                    Some(IpAddr::V4(from)) => from,
                    Some(IpAddr::V6(_)) => return false,
                    None => match plan.ipv4() {
                        Some(v4) => v4.gateway(),
                        None => return false,
                    },
                };
                if !self.icmp_error_allowed(src, dst) {
                    return false;
                }
                self.queue_built(ICMP_ERROR_FRAME_CAP, |buf| {
                    let len = build_icmp_v4_error(buf, link, from, error.v4(link_mtu), offending);
                    queued = len.is_some();
                    len
                });
            }
            (IpAddr::V6(src), IpAddr::V6(dst), from) => {
                let from = match from {
                    Some(IpAddr::V6(from)) => from,
                    Some(IpAddr::V4(_)) => return false,
                    None => match plan.ipv6() {
                        Some(v6) => v6.gateway(),
                        None => return false,
                    },
                };
                if dst.is_multicast() || src.is_multicast() || src.is_unspecified() {
                    self.counters.icmp_errors_suppressed += 1;
                    tracing::debug!(%src, %dst, "no ICMPv6 error about a datagram to or from a group address");
                    return false;
                }
                self.queue_built(ICMPV6_ERROR_FRAME_CAP, |buf| {
                    let len = build_icmpv6_error(buf, link, from, error.v6(link_mtu), offending);
                    queued = len.is_some();
                    len
                });
            }
            _ => {}
        }
        queued
    }

    /// Whether the guest's datagram to `dst` with hop limit (TTL)
    /// `hop_limit` may not go on to a host beyond: slipway is the guest's
    /// first router, which forwards nothing whose hop limit it would
    /// decrement to 0 (RFC 8200 section 3, RFC 1812 5.3.1). Datagrams to
    /// the gateway's own addresses are delivered here, not forwarded, and
    /// ones to a group or a link-local address (LLMNR and mDNS queries go
    /// with hop limit 1) are never forwarded at all, so none of them is
    /// refused here.
    pub(crate) fn hop_limit_spent(&self, dst: IpAddr, hop_limit: u8) -> bool {
        if hop_limit > 1 {
            return false;
        }
        let plan = self.frontdesk.plan();
        match dst {
            IpAddr::V4(dst) => {
                let own_or_group = |v4: &nat_core::Ipv4Plan| {
                    dst == v4.gateway() || dst == v4.dns() || dst == v4.broadcast()
                };
                !(dst.is_multicast()
                    || dst.is_broadcast()
                    || dst.is_link_local()
                    || plan.ipv4().is_some_and(own_or_group))
            }
            IpAddr::V6(dst) => {
                let own = |v6: &nat_core::Ipv6Plan| {
                    dst == v6.gateway() || dst == v6.gateway_link_local() || dst == v6.dns()
                };
                !(dst.is_multicast() || dst.is_unicast_link_local() || plan.ipv6().is_some_and(own))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn report(origin: ErrorOrigin, icmp_type: u8, icmp_code: u8, info: u32) -> IcmpErrorReport {
        IcmpErrorReport {
            errno: libc::EHOSTUNREACH,
            origin,
            icmp_type,
            icmp_code,
            info,
            offender: None,
            destination: None,
        }
    }

    #[test]
    fn icmpv6_reports_keep_their_meaning() {
        let of = |t, c, info| GuestError::of_report(&report(ErrorOrigin::Icmp6, t, c, info));
        assert_eq!(
            of(1, 0, 0),
            Some(GuestError::Unreachable(Unreachable::NoRoute))
        );
        assert_eq!(
            of(1, 1, 0),
            Some(GuestError::Unreachable(Unreachable::Prohibited))
        );
        assert_eq!(
            of(1, 3, 0),
            Some(GuestError::Unreachable(Unreachable::Address))
        );
        assert_eq!(
            of(1, 4, 0),
            Some(GuestError::Unreachable(Unreachable::Port))
        );
        assert_eq!(of(2, 0, 1280), Some(GuestError::TooBig { mtu: 1280 }));
        assert_eq!(of(3, 0, 0), Some(GuestError::HopLimit));
        assert_eq!(of(3, 1, 0), Some(GuestError::Reassembly));
        assert_eq!(of(4, 0, 0), None, "a parameter problem is only counted");
    }

    #[test]
    fn icmp_reports_keep_their_meaning() {
        let of = |t, c, info| GuestError::of_report(&report(ErrorOrigin::Icmp, t, c, info));
        assert_eq!(
            of(3, 3, 0),
            Some(GuestError::Unreachable(Unreachable::Port))
        );
        assert_eq!(
            of(3, 1, 0),
            Some(GuestError::Unreachable(Unreachable::Address))
        );
        assert_eq!(of(3, 4, 1400), Some(GuestError::TooBig { mtu: 1400 }));
        assert_eq!(of(11, 0, 0), Some(GuestError::HopLimit));
        assert_eq!(of(12, 0, 0), None);
    }

    #[test]
    fn a_local_emsgsize_is_too_big_and_nothing_else_local_is() {
        let mut local = report(ErrorOrigin::Local, 0, 0, 1400);
        local.errno = libc::EMSGSIZE;
        assert_eq!(
            GuestError::of_report(&local),
            Some(GuestError::TooBig { mtu: 1400 })
        );
        local.errno = libc::ENOBUFS;
        assert_eq!(GuestError::of_report(&local), None);
    }

    #[test]
    fn the_guest_gets_an_mtu_it_can_use() {
        let mtu = |reported, link| match (GuestError::TooBig { mtu: reported }).v6(link) {
            Icmpv6Error::PacketTooBig { mtu } => mtu,
            other => panic!("{other:?}"),
        };
        assert_eq!(mtu(1280, 65520), 1280);
        assert_eq!(mtu(1400, 1500), 1400);
        assert_eq!(mtu(0, 1500), 1280, "never below the IPv6 minimum");
        assert_eq!(mtu(1000, 65520), 1280);
        assert_eq!(mtu(9000, 1500), 1500, "never above the guest's link");
        assert_eq!(mtu(u32::MAX, 65520), 65520);
        let v4 = GuestError::TooBig { mtu: 0 }.v4(1500);
        assert_eq!(v4, Icmpv4Error::FragRequired { next_hop_mtu: 68 });
    }

    #[test]
    fn quotes_carry_the_guests_addresses_in_either_family() {
        let guest: Ipv6Addr = "fd00::15".parse().unwrap();
        let remote: Ipv6Addr = "2001:db8:2::2".parse().unwrap();
        let head = [1, 2, 3, 4, 5, 6, 7, 8];
        let q = Quote::new((guest.into(), remote.into()), Quoted::Udp, 1408, head).unwrap();
        let b = q.as_bytes();
        assert_eq!(b.len(), 48);
        assert_eq!(b[0] >> 4, 6);
        assert_eq!(u16::from_be_bytes([b[4], b[5]]), 8, "what the quote holds");
        assert_eq!(b[6], 17);
        assert_eq!(ends_of(b), Some((guest.into(), remote.into())));
        assert_eq!(&b[40..], &head);
        let v4 = Quote::new(
            (
                Ipv4Addr::new(10, 0, 2, 15).into(),
                Ipv4Addr::new(192, 0, 2, 1).into(),
            ),
            Quoted::Echo,
            64,
            head,
        )
        .unwrap();
        let b = v4.as_bytes();
        assert_eq!(
            (b.len(), b[9], u16::from_be_bytes([b[2], b[3]])),
            (28, 1, 84)
        );
        assert_eq!(ip_checksum::data(&b[..20]), 0xffff);
        assert!(
            Quote::new(
                (guest.into(), Ipv4Addr::LOCALHOST.into()),
                Quoted::Udp,
                8,
                head
            )
            .is_none()
        );
    }
}
