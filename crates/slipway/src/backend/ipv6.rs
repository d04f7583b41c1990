//! IPv6 datagrams from the guest: TCP, UDP and echo go to the same flows
//! and DNS forwarder as IPv4's (echo to the gateway or DNS address is
//! answered here), and a denied destination gets an ICMPv6 error.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use frontdesk::{Icmpv6Error, Transport, build_icmpv6_echo_reply, build_icmpv6_error};
use smoltcp::wire::{Icmpv4DstUnreachable, Icmpv6DstUnreachable};

use super::Backend;
use super::icmp::EchoRequest;

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
        let src = IpAddr::V6(datagram.header.src_addr);
        let dst = IpAddr::V6(datagram.header.dst_addr);
        match datagram.transport {
            Transport::Udp {
                src_port,
                dst_port,
                payload,
            } => {
                let ends = (
                    SocketAddr::new(src, src_port),
                    SocketAddr::new(dst, dst_port),
                );
                self.udp_from_guest(datagram.packet, ends, payload, now);
            }
            Transport::Icmp {
                msg_type: ECHO_REQUEST,
                code: 0,
                message,
            } => self.icmpv6_echo_from_guest(datagram, message, now),
            Transport::Tcp(segment) => self.tcp_from_guest(src, dst, &segment, now),
            Transport::Icmp { .. } | Transport::Other { .. } => {
                tracing::trace!(%src, %dst, "IPv6 datagram not relayed");
            }
        }
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

    /// ICMPv6 echo requests: to the gateway and the DNS address, answered
    /// here (the gateway maps to host loopback, which always answers); to a
    /// host beyond, relayed on an echo socket; to a denied destination, an
    /// administratively prohibited.
    fn icmpv6_echo_from_guest(
        &mut self,
        datagram: &frontdesk::Ipv6Datagram<'_>,
        message: &[u8],
        now: Instant,
    ) {
        let (src, dst) = (datagram.header.src_addr, datagram.header.dst_addr);
        let verdict = self.nat.translate_outbound(
            nat_core::Protocol::Icmp,
            IpAddr::V6(src),
            SocketAddr::new(IpAddr::V6(dst), 0),
        );
        let relay_to = match verdict {
            nat_core::Verdict::AnswerLocally(_) => None,
            nat_core::Verdict::Connect(addr) if addr.ip().is_loopback() => None,
            nat_core::Verdict::Connect(addr) => Some(addr.ip()),
            nat_core::Verdict::ForwardDns(_) => return,
            nat_core::Verdict::Deny(reason) => {
                self.counters.denied += 1;
                tracing::debug!(%reason, %dst, "ICMPv6 echo request denied");
                self.queue_unreachable(datagram.packet, Unreachable::Prohibited);
                return;
            }
        };
        let (Some(head), Some(data)) = (message.get(4..8), message.get(8..)) else {
            return;
        };
        let ident = u16::from_be_bytes([head[0], head[1]]);
        let seq = u16::from_be_bytes([head[2], head[3]]);
        if let Some(target) = relay_to {
            // On a ping socket (IPPROTO_ICMPV6), or a raw one where ping
            // sockets are not allowed, as IPv4 echo goes.
            let request = EchoRequest {
                guest: IpAddr::V6(src),
                dst: IpAddr::V6(dst),
                ident,
                seq,
            };
            if !self.icmp_echo_relay(request, target, data, now) {
                self.queue_unreachable(datagram.packet, Unreachable::Prohibited);
            }
            return;
        }
        let link = self.frontdesk.link_to_guest();
        self.queue_built(96 + data.len(), |buf| {
            build_icmpv6_echo_reply(buf, link, dst, src, ident, seq, data)
        });
    }
}
