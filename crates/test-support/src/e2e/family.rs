//! The address family a scenario runs over, and the addresses of the plan
//! and of the host that each family gives it, so that one scenario serves
//! IPv4 and IPv6 alike.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// IPv4 or IPv6, as the guest and the host's servers use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// 10.0.2.0/24 in the guest, 127.0.0.1 on the host.
    V4,
    /// fd00:0:0:2::/64 (SLAAC) in the guest, ::1 on the host.
    V6,
}

impl Family {
    /// The host's loopback address, where the gateway leads.
    #[must_use]
    pub fn loopback(self) -> IpAddr {
        match self {
            Self::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Self::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }

    /// The guest's name for host loopback: the plan's gateway address.
    #[must_use]
    pub fn gateway(self) -> IpAddr {
        match self {
            Self::V4 => IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)),
            Self::V6 => IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 2)),
        }
    }

    /// The plan's DNS address.
    #[must_use]
    pub fn dns(self) -> IpAddr {
        match self {
            Self::V4 => IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3)),
            Self::V6 => IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 3)),
        }
    }

    /// The TEST-NET (IPv4) or documentation (IPv6) network of the veth
    /// link between a namespace that runs slipway and a server namespace:
    /// the server's address and the other end's, and the prefix length.
    #[must_use]
    pub fn link(self) -> (IpAddr, IpAddr, u8) {
        match self {
            Self::V4 => (
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
                24,
            ),
            Self::V6 => (
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
                64,
            ),
        }
    }

    /// The family's option for `curl`, `ping`, `ip` and `iperf3`.
    #[must_use]
    pub fn flag(self) -> &'static str {
        match self {
            Self::V4 => "-4",
            Self::V6 => "-6",
        }
    }

    /// "IPv4" or "IPv6", for messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }

    /// The family of `addr`.
    #[must_use]
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }
}

/// `http://HOST:PORT/PATH` with an IPv6 host in brackets (curl needs `-g`
/// for those, see [`CURL_GLOBOFF`]).
#[must_use]
pub fn http_url(addr: IpAddr, port: u16, path: &str) -> String {
    format!("http://{}/{path}", SocketAddr::new(addr, port))
}

/// curl's option that leaves the brackets of an IPv6 URL alone rather than
/// reading them as a glob.
pub const CURL_GLOBOFF: &str = "-g";
