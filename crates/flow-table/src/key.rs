//! Flow keys: the guest-side tuple that names a flow.
//!
//! A [`FlowKey`] is what the guest's own packets carry: protocol, the guest's
//! address and port (or ICMP echo identifier), and the destination address and
//! port. Both addresses of a key have the same IP version; an IPv4 key never
//! equals an IPv6 key, not even one whose addresses are IPv4-mapped.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP echo: ICMP over IPv4, ICMPv6 over IPv6.
    Icmp,
}

impl Protocol {
    /// Every protocol, in declaration order.
    pub const ALL: [Self; 3] = [Self::Tcp, Self::Udp, Self::Icmp];

    /// A dense index (0, 1, 2) for per-protocol arrays.
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Tcp => 0,
            Self::Udp => 1,
            Self::Icmp => 2,
        }
    }

    /// The lower-case name: `tcp`, `udp` or `icmp`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The IP version of a flow's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// The guest-side tuple of a TCP, UDP or ICMP echo flow, over IPv4 or IPv6.
///
/// For ICMP echo, the guest port is the echo identifier and the destination
/// port is always 0.
///
/// The key is 38 bytes: both addresses are stored as 16 bytes (an IPv4
/// address in the first four, the rest zero), and the IP version is a field of
/// its own, so equality and hashing never confuse the two families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    guest_addr: [u8; 16],
    dest_addr: [u8; 16],
    guest_port: u16,
    dest_port: u16,
    protocol: Protocol,
    version: IpVersion,
}

/// Stores an IPv4 address in the first four bytes, the rest zero.
fn v4_bytes(addr: Ipv4Addr) -> [u8; 16] {
    let mut bytes = [0; 16];
    let [a, b, c, d] = addr.octets();
    bytes[0] = a;
    bytes[1] = b;
    bytes[2] = c;
    bytes[3] = d;
    bytes
}

impl FlowKey {
    /// A key for an IPv4 flow. For [`Protocol::Icmp`], `guest`'s port is the
    /// echo identifier and `dest`'s port is ignored (stored as 0).
    #[must_use]
    pub fn v4(protocol: Protocol, guest: SocketAddrV4, dest: SocketAddrV4) -> Self {
        Self {
            guest_addr: v4_bytes(*guest.ip()),
            dest_addr: v4_bytes(*dest.ip()),
            guest_port: guest.port(),
            dest_port: Self::dest_port_for(protocol, dest.port()),
            protocol,
            version: IpVersion::V4,
        }
    }

    /// A key for an IPv6 flow. For [`Protocol::Icmp`], `guest`'s port is the
    /// echo identifier and `dest`'s port is ignored (stored as 0). Flow labels
    /// and scope ids are not part of the key.
    #[must_use]
    pub fn v6(protocol: Protocol, guest: SocketAddrV6, dest: SocketAddrV6) -> Self {
        Self {
            guest_addr: guest.ip().octets(),
            dest_addr: dest.ip().octets(),
            guest_port: guest.port(),
            dest_port: Self::dest_port_for(protocol, dest.port()),
            protocol,
            version: IpVersion::V6,
        }
    }

    /// A key from two socket addresses of the same IP version; `None` when
    /// one is IPv4 and the other IPv6. ICMP as in [`FlowKey::v4`].
    #[must_use]
    pub fn new(protocol: Protocol, guest: SocketAddr, dest: SocketAddr) -> Option<Self> {
        match (guest, dest) {
            (SocketAddr::V4(g), SocketAddr::V4(d)) => Some(Self::v4(protocol, g, d)),
            (SocketAddr::V6(g), SocketAddr::V6(d)) => Some(Self::v6(protocol, g, d)),
            (SocketAddr::V4(_), SocketAddr::V6(_)) | (SocketAddr::V6(_), SocketAddr::V4(_)) => None,
        }
    }

    /// A key for an ICMP (or ICMPv6) echo flow; `None` when the addresses are
    /// of different IP versions.
    #[must_use]
    pub fn icmp_echo(guest: IpAddr, echo_id: u16, dest: IpAddr) -> Option<Self> {
        Self::new(
            Protocol::Icmp,
            SocketAddr::new(guest, echo_id),
            SocketAddr::new(dest, 0),
        )
    }

    const fn dest_port_for(protocol: Protocol, port: u16) -> u16 {
        match protocol {
            Protocol::Tcp | Protocol::Udp => port,
            Protocol::Icmp => 0,
        }
    }

    fn addr(&self, bytes: [u8; 16]) -> IpAddr {
        match self.version {
            IpVersion::V4 => {
                let [a, b, c, d, ..] = bytes;
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            }
            IpVersion::V6 => IpAddr::V6(Ipv6Addr::from(bytes)),
        }
    }

    /// The flow's protocol.
    #[must_use]
    pub const fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The IP version of both addresses.
    #[must_use]
    pub const fn ip_version(&self) -> IpVersion {
        self.version
    }

    /// The guest's address.
    #[must_use]
    pub fn guest_addr(&self) -> IpAddr {
        self.addr(self.guest_addr)
    }

    /// The guest's port; for ICMP echo, the echo identifier.
    #[must_use]
    pub const fn guest_port(&self) -> u16 {
        self.guest_port
    }

    /// The destination address the guest sent to.
    #[must_use]
    pub fn dest_addr(&self) -> IpAddr {
        self.addr(self.dest_addr)
    }

    /// The destination port; 0 for ICMP echo.
    #[must_use]
    pub const fn dest_port(&self) -> u16 {
        self.dest_port
    }

    /// The ICMP echo identifier, for ICMP flows only.
    #[must_use]
    pub const fn echo_id(&self) -> Option<u16> {
        match self.protocol {
            Protocol::Icmp => Some(self.guest_port),
            Protocol::Tcp | Protocol::Udp => None,
        }
    }

    /// The guest's address and port (the echo identifier for ICMP).
    #[must_use]
    pub fn guest(&self) -> SocketAddr {
        SocketAddr::new(self.guest_addr(), self.guest_port)
    }

    /// The destination address and port (port 0 for ICMP).
    #[must_use]
    pub fn dest(&self) -> SocketAddr {
        SocketAddr::new(self.dest_addr(), self.dest_port)
    }
}

impl Hash for FlowKey {
    // Three fixed-width writes instead of the derived per-field (and
    // length-prefixed array) writes; covers every field compared by `Eq`.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.guest_addr));
        state.write_u128(u128::from_ne_bytes(self.dest_addr));
        let version: u64 = match self.version {
            IpVersion::V4 => 0,
            IpVersion::V6 => 1,
        };
        let protocol = self.protocol.index() as u64;
        state.write_u64(
            u64::from(self.guest_port)
                | (u64::from(self.dest_port) << 16)
                | (protocol << 32)
                | (version << 40),
        );
    }
}

impl fmt::Display for FlowKey {
    /// `tcp 10.0.2.15:40000 -> 192.0.2.1:80`, `udp [fd00::15]:5353 -> [::1]:53`,
    /// `icmp 10.0.2.15 id 7 -> 192.0.2.1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Protocol::Tcp | Protocol::Udp => {
                write!(f, "{} {} -> {}", self.protocol, self.guest(), self.dest())
            }
            Protocol::Icmp => write!(
                f,
                "{} {} id {} -> {}",
                self.protocol,
                self.guest_addr(),
                self.guest_port,
                self.dest_addr()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::collections::HashSet;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn key_is_compact() {
        let size = std::mem::size_of::<FlowKey>();
        println!("size_of::<FlowKey>() = {size} bytes");
        assert_eq!(size, 38);
        assert_eq!(std::mem::size_of::<Option<FlowKey>>(), 38);
    }

    #[test]
    fn accessors_round_trip_v4_and_v6() {
        for (g, d) in [
            ("10.0.2.15:40000", "192.0.2.1:80"),
            ("[fd00::15]:40000", "[2001:db8::1]:443"),
        ] {
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                let key = FlowKey::new(protocol, sa(g), sa(d)).unwrap();
                assert_eq!(key.protocol(), protocol);
                assert_eq!(key.guest(), sa(g));
                assert_eq!(key.dest(), sa(d));
                assert_eq!(key.echo_id(), None);
            }
        }
    }

    #[test]
    fn mixed_families_make_no_key() {
        assert!(FlowKey::new(Protocol::Tcp, sa("10.0.2.15:1"), sa("[::1]:2")).is_none());
        assert!(FlowKey::new(Protocol::Udp, sa("[::1]:2"), sa("10.0.2.15:1")).is_none());
    }

    #[test]
    fn v4_key_never_equals_v4_mapped_v6_key() {
        let v4 = FlowKey::new(Protocol::Tcp, sa("10.0.2.15:1000"), sa("1.2.3.4:80")).unwrap();
        let mapped = FlowKey::new(
            Protocol::Tcp,
            sa("[::ffff:10.0.2.15]:1000"),
            sa("[::ffff:1.2.3.4]:80"),
        )
        .unwrap();
        // An IPv6 key whose bytes start like the IPv4 key's storage.
        let prefix =
            FlowKey::new(Protocol::Tcp, sa("[a00:20f::]:1000"), sa("[102:304::]:80")).unwrap();
        assert_eq!(prefix.guest_addr, v4.guest_addr);
        assert_ne!(v4, mapped);
        assert_ne!(v4, prefix);
        let set: HashSet<FlowKey> = [v4, mapped, prefix].into_iter().collect();
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn icmp_key_ignores_destination_port() {
        let a = FlowKey::new(Protocol::Icmp, sa("10.0.2.15:7"), sa("192.0.2.1:99")).unwrap();
        let b = FlowKey::icmp_echo(
            "10.0.2.15".parse().unwrap(),
            7,
            "192.0.2.1".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.dest_port(), 0);
        assert_eq!(a.echo_id(), Some(7));
    }

    #[test]
    fn protocol_distinguishes_keys() {
        let g = sa("10.0.2.15:53");
        let d = sa("10.0.2.3:53");
        let tcp = FlowKey::new(Protocol::Tcp, g, d).unwrap();
        let udp = FlowKey::new(Protocol::Udp, g, d).unwrap();
        assert_ne!(tcp, udp);
    }

    #[test]
    fn display_names_protocol_and_endpoints() {
        let tcp = FlowKey::new(Protocol::Tcp, sa("10.0.2.15:40000"), sa("192.0.2.1:80")).unwrap();
        assert_eq!(tcp.to_string(), "tcp 10.0.2.15:40000 -> 192.0.2.1:80");
        let udp = FlowKey::new(Protocol::Udp, sa("[fd00::15]:5353"), sa("[::1]:53")).unwrap();
        assert_eq!(udp.to_string(), "udp [fd00::15]:5353 -> [::1]:53");
        let icmp =
            FlowKey::icmp_echo("fd00::15".parse().unwrap(), 7, "::1".parse().unwrap()).unwrap();
        assert_eq!(icmp.to_string(), "icmp fd00::15 id 7 -> ::1");
    }
}
