//! A real IPv6 path for the error tests: a host side (where slipway or its
//! backend runs), a Linux router with forwarding on, and a destination
//! behind the router's 1280-byte link, each in a namespace of its own.
//!
//! ```text
//! host side 2001:db8:1::1 -- 2001:db8:1::2 router 2001:db8:2::1 -- 2001:db8:2::2
//!          (MTU 1500)                           (MTU 1280)
//! ```
//!
//! The router also rejects 2001:db8:3::/64 (an `unreachable` route: no
//! route, at once), and 2001:db8:1::99 on the first link is an address no
//! neighbour answers for. IPv4 takes the same path, 198.51.100.1 to
//! 198.51.100.2 and 203.0.113.1 to 203.0.113.2. Only documentation
//! addresses, only inside the namespaces: nothing reaches the machine's own
//! network.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{NamedNetns, ip};

/// The host side's address on the link to the router.
pub const HOST_SIDE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The router's address on that link.
pub const ROUTER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// An address on that link that no neighbour answers for.
pub const ABSENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x99);
/// The destination behind the router's 1280-byte link.
pub const BEYOND: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
/// An address the router has no route to.
pub const NO_ROUTE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 1);
/// The destination behind the router's 1280-byte link, over IPv4.
pub const BEYOND_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The MTU of the router's link to [`BEYOND`].
pub const NARROW_MTU: u16 = 1280;

/// The three namespaces; each goes when this is dropped, the links with
/// them.
pub struct Routed {
    /// The host side.
    pub host: NamedNetns,
    /// The router.
    pub router: NamedNetns,
    /// The destination's namespace.
    pub beyond: NamedNetns,
}

impl Routed {
    /// Builds the path, the namespaces named after `tag` (unique among the
    /// tests of one binary). Needs root.
    #[must_use]
    pub fn new(tag: &str) -> Self {
        let host = NamedNetns::new(&format!("{tag}h"));
        let router = NamedNetns::new(&format!("{tag}r"));
        let beyond = NamedNetns::new(&format!("{tag}b"));
        let (h, r, b) = (host.name(), router.name(), beyond.name());
        let narrow = NARROW_MTU.to_string();
        let veth = |ns: &str, x: &str, y: &str, peer_ns: &str| {
            ip(&[
                "-n", ns, "link", "add", x, "type", "veth", "peer", "name", y, "netns", peer_ns,
            ]);
        };
        let up = |ns: &str, dev: &str, addr: String, mtu: &str| {
            ip(&["-n", ns, "link", "set", dev, "mtu", mtu, "up"]);
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev, "nodad"]);
        };
        veth(h, "v0", "v1", r);
        veth(r, "v2", "v3", b);
        up(h, "v0", format!("{HOST_SIDE}/64"), "1500");
        up(r, "v1", format!("{ROUTER}/64"), "1500");
        up(r, "v2", "2001:db8:2::1/64".into(), &narrow);
        up(b, "v3", format!("{BEYOND}/64"), &narrow);
        let via = ROUTER.to_string();
        for prefix in ["2001:db8:2::/64", "2001:db8:3::/64"] {
            ip(&["-n", h, "-6", "route", "add", prefix, "via", &via]);
        }
        ip(&[
            "-n",
            r,
            "-6",
            "route",
            "add",
            "unreachable",
            "2001:db8:3::/64",
        ]);
        ip(&[
            "-n",
            b,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:2::1",
        ]);
        for (ns, dev, addr) in [
            (h, "v0", "198.51.100.1/24"),
            (r, "v1", "198.51.100.2/24"),
            (r, "v2", "203.0.113.1/24"),
            (b, "v3", "203.0.113.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
        }
        ip(&[
            "-n",
            h,
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            "198.51.100.2",
        ]);
        ip(&["-n", b, "route", "add", "default", "via", "203.0.113.1"]);
        router
            .within(|| {
                std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            })
            .expect("forwarding on in the router");
        // Ping sockets of both families follow this one setting.
        host.within(|| std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647"))
            .expect("ping sockets on the host side");
        Self {
            host,
            router,
            beyond,
        }
    }
}
