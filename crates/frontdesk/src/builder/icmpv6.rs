//! ICMPv6 messages to the guest: echo replies and the errors (destination
//! unreachable, packet too big, time exceeded) about a datagram it sent.

use std::net::{IpAddr, Ipv6Addr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IPV6_HEADER_LEN, Icmpv6DstUnreachable, Icmpv6Message, Icmpv6Packet, Icmpv6Repr,
    Icmpv6TimeExceeded, IpProtocol, Ipv6Packet,
};

use super::{ICMP_HEADER_LEN, LinkAddrs, build_icmp_v4_echo_reply, ip_frame};
use crate::frame::walk_extension_headers;

/// The IPv6 minimum MTU (RFC 8200): an ICMPv6 error fits in it whole
/// (RFC 4443, section 2.4 (c)).
const IPV6_MIN_MTU: usize = 1280;

/// How many bytes of the offending packet an ICMPv6 error quotes at most.
const MAX_QUOTED_LEN: usize = IPV6_MIN_MTU - IPV6_HEADER_LEN - ICMP_HEADER_LEN;

/// Writes an ICMPv6 echo reply from `src` to `dst` with the request's
/// identifier, sequence number and data. Returns the frame length.
pub fn build_icmpv6_echo_reply(
    buf: &mut [u8],
    link: LinkAddrs,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ident: u16,
    seq_no: u16,
    data: &[u8],
) -> Option<usize> {
    let repr = Icmpv6Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    let ips = (src.into(), dst.into());
    let (frame, l4_start) = ip_frame(buf, link, ips, IpProtocol::Icmpv6, repr.buffer_len())?;
    let frame_len = frame.len();
    let icmp = frame.get_mut(l4_start..)?;
    repr.emit(
        &src,
        &dst,
        &mut Icmpv6Packet::new_unchecked(icmp),
        &ChecksumCapabilities::default(),
    );
    Some(frame_len)
}

/// Writes an ICMP (IPv4) or ICMPv6 (IPv6) echo reply from `src` to `dst`,
/// as their family says. Returns the frame length, `None` for mixed
/// families.
pub fn build_echo_reply(
    buf: &mut [u8],
    link: LinkAddrs,
    (src, dst): (IpAddr, IpAddr),
    ident: u16,
    seq_no: u16,
    data: &[u8],
) -> Option<usize> {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            build_icmp_v4_echo_reply(buf, link, src, dst, ident, seq_no, data)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            build_icmpv6_echo_reply(buf, link, src, dst, ident, seq_no, data)
        }
        _ => None,
    }
}

/// An ICMPv6 error to send about a datagram from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icmpv6Error {
    /// Destination unreachable with the given code.
    DstUnreachable(Icmpv6DstUnreachable),
    /// Packet too big, with the MTU of the next hop (RFC 8201).
    PacketTooBig {
        /// The MTU of the next hop.
        mtu: u32,
    },
    /// Time exceeded with the given code (hop limit, or reassembly).
    TimeExceeded(Icmpv6TimeExceeded),
}

impl Icmpv6Error {
    /// Type, code and the four bytes after the checksum.
    fn header(self) -> (Icmpv6Message, u8, [u8; 4]) {
        match self {
            Icmpv6Error::DstUnreachable(reason) => {
                (Icmpv6Message::DstUnreachable, reason.into(), [0; 4])
            }
            Icmpv6Error::PacketTooBig { mtu } => (Icmpv6Message::PktTooBig, 0, mtu.to_be_bytes()),
            Icmpv6Error::TimeExceeded(reason) => {
                (Icmpv6Message::TimeExceeded, reason.into(), [0; 4])
            }
        }
    }
}

/// Writes an ICMPv6 error from `src` about `offending`, a datagram the
/// guest sent (its fixed header at least). The error goes to the offending
/// datagram's source and quotes as much of it as keeps the error within the
/// IPv6 minimum MTU (RFC 4443, section 3). Returns the frame length.
///
/// Returns `None`, as RFC 4443 section 2.4 (e) requires, when the offending
/// datagram is itself an ICMPv6 error (or too short to tell), has a source
/// that is not a unicast address, or (except for packet too big) a
/// multicast destination; and when the offending bytes do not start with an
/// IPv6 header.
pub fn build_icmpv6_error(
    buf: &mut [u8],
    link: LinkAddrs,
    src: Ipv6Addr,
    error: Icmpv6Error,
    offending: &[u8],
) -> Option<usize> {
    let quoted = quotable(offending, error)?;
    let dst = Ipv6Packet::new_unchecked(quoted).src_addr();
    let icmp_len = ICMP_HEADER_LEN.checked_add(quoted.len())?;
    let ips = (src.into(), dst.into());
    let (frame, l4_start) = ip_frame(buf, link, ips, IpProtocol::Icmpv6, icmp_len)?;
    let frame_len = frame.len();
    let icmp = frame.get_mut(l4_start..)?;
    let (msg_type, code, rest) = error.header();
    icmp.get_mut(4..ICMP_HEADER_LEN)?.copy_from_slice(&rest);
    icmp.get_mut(ICMP_HEADER_LEN..)?.copy_from_slice(quoted);
    let mut packet = Icmpv6Packet::new_unchecked(icmp);
    packet.set_msg_type(msg_type);
    packet.set_msg_code(code);
    packet.fill_checksum(&src, &dst);
    Some(frame_len)
}

/// The prefix of `offending` an ICMPv6 error quotes, or `None` when no
/// error may be sent about it.
fn quotable(offending: &[u8], error: Icmpv6Error) -> Option<&[u8]> {
    let packet = Ipv6Packet::new_checked(offending).ok()?;
    if packet.version() != 6 {
        return None;
    }
    let (source, dest) = (packet.src_addr(), packet.dst_addr());
    let to_group_allowed = matches!(error, Icmpv6Error::PacketTooBig { .. });
    if source.is_unspecified()
        || source.is_multicast()
        || source.is_loopback()
        || (dest.is_multicast() && !to_group_allowed)
    {
        return None;
    }
    let after_fixed = offending.get(IPV6_HEADER_LEN..)?;
    // A chain the walk refuses (a fragment, too many headers) may still hide
    // an ICMPv6 error: no error about it.
    let (upper, offset) = walk_extension_headers(packet.next_header(), after_fixed).ok()?;
    // Types below 128 are errors (RFC 4443, section 2.1).
    if upper == IpProtocol::Icmpv6 && *after_fixed.get(offset)? < 128 {
        return None;
    }
    offending.get(..offending.len().min(MAX_QUOTED_LEN))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use nat_core::Plan;
    use smoltcp::wire::Ipv6Repr;

    use super::*;

    fn offending(next_header: IpProtocol, first_payload_byte: u8, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; IPV6_HEADER_LEN + len];
        Ipv6Repr {
            src_addr: "fd00:0:0:2::15".parse().unwrap(),
            dst_addr: "2001:db8::1".parse().unwrap(),
            next_header,
            payload_len: len,
            hop_limit: 64,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut bytes[..]));
        if let Some(byte) = bytes.get_mut(IPV6_HEADER_LEN) {
            *byte = first_payload_byte;
        }
        bytes
    }

    #[test]
    fn no_error_about_an_icmpv6_error() {
        let link = LinkAddrs::to_guest(&Plan::default());
        let gw: Ipv6Addr = "fd00:0:0:2::2".parse().unwrap();
        let error = Icmpv6Error::DstUnreachable(Icmpv6DstUnreachable::AdminProhibit);
        let mut buf = [0u8; 256];
        let unreachable = offending(IpProtocol::Icmpv6, 1, 8);
        assert_eq!(
            build_icmpv6_error(&mut buf, link, gw, error, &unreachable),
            None
        );
        let echo = offending(IpProtocol::Icmpv6, 128, 8);
        assert!(build_icmpv6_error(&mut buf, link, gw, error, &echo).is_some());
        assert_eq!(
            build_icmpv6_error(&mut buf, link, gw, error, &echo[..39]),
            None
        );
    }

    #[test]
    fn quote_keeps_the_error_within_the_minimum_mtu() {
        let link = LinkAddrs::to_guest(&Plan::default());
        let gw: Ipv6Addr = "fd00:0:0:2::2".parse().unwrap();
        let error = Icmpv6Error::PacketTooBig { mtu: 1500 };
        let big = offending(IpProtocol::Udp, 0, 3000);
        let mut buf = vec![0u8; 4000];
        let len = build_icmpv6_error(&mut buf, link, gw, error, &big).unwrap();
        assert_eq!(len, 14 + IPV6_MIN_MTU);
        let ip = Ipv6Packet::new_checked(&buf[14..len]).unwrap();
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&gw, &"fd00:0:0:2::15".parse().unwrap()));
        assert_eq!(icmp.msg_type(), Icmpv6Message::PktTooBig);
        assert_eq!(&ip.payload()[4..8], &1500u32.to_be_bytes());
        assert_eq!(&ip.payload()[8..], &big[..MAX_QUOTED_LEN]);
    }

    #[test]
    fn time_exceeded_carries_its_code_and_the_quote() {
        let link = LinkAddrs::to_guest(&Plan::default());
        let gw: Ipv6Addr = "fd00:0:0:2::2".parse().unwrap();
        let error = Icmpv6Error::TimeExceeded(Icmpv6TimeExceeded::HopLimitExceeded);
        let udp = offending(IpProtocol::Udp, 0, 8);
        let mut buf = [0u8; 256];
        let len = build_icmpv6_error(&mut buf, link, gw, error, &udp).unwrap();
        let ip = Ipv6Packet::new_checked(&buf[14..len]).unwrap();
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), Icmpv6Message::TimeExceeded);
        assert_eq!(icmp.msg_code(), 0);
        assert_eq!(&ip.payload()[4..8], &[0; 4]);
        assert_eq!(&ip.payload()[8..], &udp[..]);
    }
}
