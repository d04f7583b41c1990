//! IPv6 datagrams from the guest: TCP, UDP and echo go to the same relays
//! and DNS forwarder as IPv4's, and the ICMPv6 errors about them (a denied
//! destination, say) come from here.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use frontdesk::{Icmpv6Error, build_icmpv6_error};
use smoltcp::wire::{Icmpv4DstUnreachable, Icmpv6DstUnreachable};

use super::Backend;

/// The ICMPv6 echo request type (RFC 4443, section 4.1).
const ECHO_REQUEST: u8 = 128;

/// Room for an ICMPv6 error frame: the error fits in the IPv6 minimum MTU.
const ICMPV6_ERROR_FRAME_CAP: usize = 14 + 1280;

/// Where the source and destination addresses are in an IPv6 header.
const SRC_AT: usize = 8;
const DST_AT: usize = 24;

/// Why a guest's datagram gets a destination unreachable, whatever its
/// address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unreachable {
    /// A rule or a limit forbids it.
    Prohibited,
    /// The host has no route to the destination.
    NoRoute,
}

impl Unreachable {
    fn v4(self) -> Icmpv4DstUnreachable {
        match self {
            Unreachable::Prohibited => Icmpv4DstUnreachable::CommProhibited,
            Unreachable::NoRoute => Icmpv4DstUnreachable::NetUnreachable,
        }
    }

    fn v6(self) -> Icmpv6DstUnreachable {
        match self {
            Unreachable::Prohibited => Icmpv6DstUnreachable::AdminProhibit,
            Unreachable::NoRoute => Icmpv6DstUnreachable::NoRoute,
        }
    }
}

/// The address of an IPv6 header's field at `at`.
fn v6_addr(packet: &[u8], at: usize) -> Option<Ipv6Addr> {
    let bytes: [u8; 16] = packet.get(at..at.checked_add(16)?)?.try_into().ok()?;
    Some(Ipv6Addr::from(bytes))
}

impl Backend {
    pub(super) fn handle_ipv6(&mut self, datagram: &frontdesk::Ipv6Datagram<'_>, now: Instant) {
        let ends = (
            IpAddr::V6(datagram.header.src_addr),
            IpAddr::V6(datagram.header.dst_addr),
        );
        self.learn_guest_v6(datagram.header.src_addr);
        let transport = datagram.transport;
        self.handle_transport(datagram.packet, ends, transport, ECHO_REQUEST, now);
    }

    /// A destination unreachable to the guest about `offending`, an IPv4 or
    /// IPv6 datagram it sent, unless no error may be sent about it.
    pub(crate) fn queue_unreachable(&mut self, offending: &[u8], reason: Unreachable) {
        match offending.first().map(|b| b >> 4) {
            Some(4) => self.queue_icmp_unreachable(offending, reason.v4()),
            Some(6) => self.queue_icmpv6_error(offending, Icmpv6Error::DstUnreachable(reason.v6())),
            _ => {}
        }
    }

    /// An ICMPv6 error from the gateway to the guest about `offending`.
    /// Never about a datagram to a group or from a source that names no
    /// single host (RFC 4443, section 2.4 (e)); a refusal is counted.
    fn queue_icmpv6_error(&mut self, offending: &[u8], error: Icmpv6Error) {
        let (Some(src), Some(dst)) = (v6_addr(offending, SRC_AT), v6_addr(offending, DST_AT))
        else {
            return;
        };
        if dst.is_multicast() || src.is_multicast() || src.is_unspecified() {
            self.counters.icmp_errors_suppressed += 1;
            tracing::debug!(%src, %dst, "no ICMPv6 error about a datagram to or from a group address");
            return;
        }
        let Some(gateway) = self.frontdesk.plan().ipv6().map(|v6| v6.gateway()) else {
            return;
        };
        let link = self.frontdesk.link_to_guest();
        self.queue_built(ICMPV6_ERROR_FRAME_CAP, |buf| {
            build_icmpv6_error(buf, link, gateway, error, offending)
        });
    }
}
