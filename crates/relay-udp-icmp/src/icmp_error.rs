//! ICMP errors as the kernel reports them through `IP_RECVERR` and
//! `IPV6_RECVERR`: a `sock_extended_err` control message followed by the
//! address of the node that sent the error.
//!
//! Decoding works on the bytes of the control message, so everything here is
//! safe code and testable with golden bytes.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// `sizeof(struct sock_extended_err)`: errno, origin, type, code, pad, info,
/// data.
const EXTENDED_ERR_LEN: usize = 16;
const SOCKADDR_IN_LEN: usize = 16;
const SOCKADDR_IN6_LEN: usize = 28;

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PORT_UNREACH: u8 = 4;
const ICMPV6_PKT_TOOBIG: u8 = 2;

/// Where an error report comes from (`ee_origin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorOrigin {
    /// The local stack (`SO_EE_ORIGIN_LOCAL`), e.g. a datagram larger than
    /// the known path MTU; [`IcmpErrorReport::info`] is then the MTU.
    Local,
    /// An ICMP message (`SO_EE_ORIGIN_ICMP`).
    Icmp,
    /// An ICMPv6 message (`SO_EE_ORIGIN_ICMP6`).
    Icmp6,
    /// Any other origin (timestamping, zero-copy completions), by number.
    Other(u8),
}

impl ErrorOrigin {
    fn from_raw(origin: u8) -> Self {
        match origin {
            libc::SO_EE_ORIGIN_LOCAL => ErrorOrigin::Local,
            libc::SO_EE_ORIGIN_ICMP => ErrorOrigin::Icmp,
            libc::SO_EE_ORIGIN_ICMP6 => ErrorOrigin::Icmp6,
            other => ErrorOrigin::Other(other),
        }
    }
}

/// One error read from a socket's error queue: enough for the backend to
/// synthesize the matching ICMP or ICMPv6 error to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpErrorReport {
    /// The errno the error maps to (`ECONNREFUSED` for port unreachable,
    /// `EMSGSIZE` for fragmentation needed, `EHOSTUNREACH`, ...).
    pub errno: i32,
    /// Where the error comes from.
    pub origin: ErrorOrigin,
    /// The ICMP or ICMPv6 type (0 for a local error).
    pub icmp_type: u8,
    /// The ICMP or ICMPv6 code (0 for a local error).
    pub icmp_code: u8,
    /// Extra information: the next-hop MTU for "fragmentation needed",
    /// "packet too big" and local `EMSGSIZE`, the pointer of a parameter
    /// problem; 0 otherwise.
    pub info: u32,
    /// The node that sent the ICMP error, when the kernel names one.
    pub offender: Option<IpAddr>,
    /// Where the datagram that failed was going, when the kernel says
    /// (always for an unconnected socket such as a [`UdpListener`]).
    ///
    /// [`UdpListener`]: crate::UdpListener
    pub destination: Option<SocketAddr>,
}

impl IcmpErrorReport {
    /// The error as an [`io::Error`].
    #[must_use]
    pub fn error(&self) -> io::Error {
        io::Error::from_raw_os_error(self.errno)
    }

    /// Whether this is ICMP port unreachable (type 3 code 3) or ICMPv6
    /// port unreachable (type 1 code 4).
    #[must_use]
    pub fn is_port_unreachable(&self) -> bool {
        match self.origin {
            ErrorOrigin::Icmp => {
                self.icmp_type == ICMP_DEST_UNREACH && self.icmp_code == ICMP_PORT_UNREACH
            }
            ErrorOrigin::Icmp6 => {
                self.icmp_type == ICMPV6_DEST_UNREACH && self.icmp_code == ICMPV6_PORT_UNREACH
            }
            ErrorOrigin::Local | ErrorOrigin::Other(_) => false,
        }
    }

    /// The path MTU the error announces: "fragmentation needed" (ICMP type 3
    /// code 4), "packet too big" (ICMPv6 type 2) or a local `EMSGSIZE`.
    #[must_use]
    pub fn mtu(&self) -> Option<u32> {
        let announces_mtu = match self.origin {
            ErrorOrigin::Icmp => {
                self.icmp_type == ICMP_DEST_UNREACH && self.icmp_code == ICMP_FRAG_NEEDED
            }
            ErrorOrigin::Icmp6 => self.icmp_type == ICMPV6_PKT_TOOBIG,
            ErrorOrigin::Local => self.errno == libc::EMSGSIZE,
            ErrorOrigin::Other(_) => false,
        };
        (announces_mtu && self.info != 0).then_some(self.info)
    }
}

/// Decodes one control message read with `MSG_ERRQUEUE`. Returns `None` for
/// a message of another kind, or one too short to hold a
/// `sock_extended_err`.
pub(crate) fn decode(
    level: i32,
    kind: i32,
    data: &[u8],
    destination: Option<SocketAddr>,
) -> Option<IcmpErrorReport> {
    let is_recverr = (level == libc::SOL_IP && kind == libc::IP_RECVERR)
        || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR);
    if !is_recverr {
        return None;
    }
    let ee = data.get(..EXTENDED_ERR_LEN)?;
    let errno = u32::from_ne_bytes([ee[0], ee[1], ee[2], ee[3]]);
    let info = u32::from_ne_bytes([ee[8], ee[9], ee[10], ee[11]]);
    let offender = data
        .get(EXTENDED_ERR_LEN..)
        .and_then(parse_sockaddr)
        .map(|a| a.ip());
    Some(IcmpErrorReport {
        errno: i32::try_from(errno).unwrap_or(libc::EIO),
        origin: ErrorOrigin::from_raw(ee[4]),
        icmp_type: ee[5],
        icmp_code: ee[6],
        info,
        offender,
        destination,
    })
}

/// Reads a `sockaddr_in` or `sockaddr_in6` from raw bytes; `None` for any
/// other family (`AF_UNSPEC` when the kernel names no address) or too few
/// bytes.
pub(crate) fn parse_sockaddr(bytes: &[u8]) -> Option<SocketAddr> {
    let family = bytes.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]]))?;
    if i32::from(family) == libc::AF_INET {
        let b = bytes.get(..SOCKADDR_IN_LEN)?;
        let port = u16::from_be_bytes([b[2], b[3]]);
        let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
        Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
    } else if i32::from(family) == libc::AF_INET6 {
        let b = bytes.get(..SOCKADDR_IN6_LEN)?;
        let port = u16::from_be_bytes([b[2], b[3]]);
        let flowinfo = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&b[8..24]);
        let scope_id = u32::from_ne_bytes([b[24], b[25], b[26], b[27]]);
        let ip = Ipv6Addr::from(octets);
        Some(SocketAddr::V6(SocketAddrV6::new(
            ip, port, flowinfo, scope_id,
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extended_err(errno: i32, origin: u8, ty: u8, code: u8, info: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&errno.to_ne_bytes());
        v.extend_from_slice(&[origin, ty, code, 0]);
        v.extend_from_slice(&info.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v
    }

    fn sockaddr_in(ip: [u8; 4], port: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&u16::try_from(libc::AF_INET).unwrap_or(2).to_ne_bytes());
        v.extend_from_slice(&port.to_be_bytes());
        v.extend_from_slice(&ip);
        v.extend_from_slice(&[0; 8]);
        v
    }

    #[test]
    fn port_unreachable_from_loopback_decodes() {
        let mut data = extended_err(libc::ECONNREFUSED, libc::SO_EE_ORIGIN_ICMP, 3, 3, 0);
        data.extend(sockaddr_in([127, 0, 0, 1], 0));
        let r = decode(libc::SOL_IP, libc::IP_RECVERR, &data, None);
        let r = r.unwrap_or_else(|| panic!("not decoded"));
        assert_eq!(r.origin, ErrorOrigin::Icmp);
        assert!(r.is_port_unreachable());
        assert_eq!(r.errno, libc::ECONNREFUSED);
        assert_eq!(r.offender, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(r.mtu(), None);
    }

    #[test]
    fn frag_needed_carries_the_mtu() {
        let mut data = extended_err(libc::EMSGSIZE, libc::SO_EE_ORIGIN_ICMP, 3, 4, 1400);
        data.extend(sockaddr_in([127, 0, 0, 2], 0));
        let r = decode(libc::SOL_IP, libc::IP_RECVERR, &data, None);
        assert_eq!(r.and_then(|r| r.mtu()), Some(1400));
    }

    #[test]
    fn icmpv6_port_unreachable_and_packet_too_big() {
        let data = extended_err(libc::ECONNREFUSED, libc::SO_EE_ORIGIN_ICMP6, 1, 4, 0);
        let r = decode(libc::SOL_IPV6, libc::IPV6_RECVERR, &data, None);
        assert!(r.is_some_and(|r| r.is_port_unreachable() && r.offender.is_none()));
        let data = extended_err(libc::EMSGSIZE, libc::SO_EE_ORIGIN_ICMP6, 2, 0, 1280);
        let r = decode(libc::SOL_IPV6, libc::IPV6_RECVERR, &data, None);
        assert_eq!(r.and_then(|r| r.mtu()), Some(1280));
    }

    #[test]
    fn local_error_has_no_offender() {
        let mut data = extended_err(libc::EMSGSIZE, libc::SO_EE_ORIGIN_LOCAL, 0, 0, 1500);
        data.extend_from_slice(&[0; 16]);
        let r = decode(libc::SOL_IP, libc::IP_RECVERR, &data, None);
        let r = r.unwrap_or_else(|| panic!("not decoded"));
        assert_eq!(r.origin, ErrorOrigin::Local);
        assert_eq!(r.offender, None);
        assert_eq!(r.mtu(), Some(1500));
    }

    #[test]
    fn other_messages_and_short_data_are_ignored() {
        let data = extended_err(libc::ECONNREFUSED, libc::SO_EE_ORIGIN_ICMP, 3, 3, 0);
        assert!(decode(libc::SOL_SOCKET, libc::SCM_RIGHTS, &data, None).is_none());
        assert!(decode(libc::SOL_IP, libc::IP_RECVERR, &data[..15], None).is_none());
        assert!(parse_sockaddr(&[2]).is_none());
        assert!(parse_sockaddr(&sockaddr_in([1, 2, 3, 4], 5)[..10]).is_none());
    }

    #[test]
    fn sockaddr_in6_round_trips() {
        let mut b = Vec::new();
        b.extend_from_slice(&u16::try_from(libc::AF_INET6).unwrap_or(10).to_ne_bytes());
        b.extend_from_slice(&53u16.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        b.extend_from_slice(&3u32.to_ne_bytes());
        let a = parse_sockaddr(&b);
        assert_eq!(
            a,
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::LOCALHOST,
                53,
                0,
                3
            )))
        );
    }
}
