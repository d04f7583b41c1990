//! IPv6 on the tap: the per-interface sysctls that let the namespace's
//! kernel configure itself from slipway's router advertisements (SLAAC),
//! and a view of what it has configured, read from `/proc/net`.
//!
//! Both go through files opened by a thread inside the namespace:
//! `/proc/sys/net` and `/proc/thread-self/net` resolve to the namespace of
//! the thread that opens them, and an open `/proc/net` file keeps reading
//! that namespace whichever thread reads it later.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::Ipv6Addr;

use super::{Namespace, TapIpv6, step_error};

/// `IFA_F_TENTATIVE` in the flags byte of `/proc/net/if_inet6`: duplicate
/// address detection is still under way, the address is not usable yet.
const IFA_F_TENTATIVE: u8 = 0x40;
/// `IFA_F_DADFAILED`.
const IFA_F_DADFAILED: u8 = 0x08;
/// `IFA_F_PERMANENT`: set by hand rather than made from a prefix.
const IFA_F_PERMANENT: u8 = 0x80;
/// The scope byte of a global address in `/proc/net/if_inet6`.
const SCOPE_GLOBAL: u8 = 0;

/// The per-interface sysctls, in the order they are written, for `mode`.
///
/// For [`TapIpv6::Autoconf`]: IPv6 on; router advertisements accepted even
/// where forwarding is on (a container runtime's namespace may have it on,
/// and with it off `2` acts as `1`); their prefixes used for addresses;
/// interface identifiers from the MAC address (EUI-64), so that the guest's
/// SLAAC address follows from the plan's guest MAC and a link-local address
/// exists whatever the namespace's default mode; and no duplicate address
/// detection: slipway is the only other node on the link and never claims
/// the guest's addresses, so DAD would only hold every address back for a
/// second.
fn sysctls(mode: TapIpv6) -> &'static [(&'static str, &'static str)] {
    match mode {
        TapIpv6::Disabled => &[("disable_ipv6", "1")],
        TapIpv6::Autoconf => &[
            ("disable_ipv6", "0"),
            ("accept_ra", "2"),
            ("autoconf", "1"),
            ("addr_gen_mode", "0"),
            ("accept_dad", "0"),
        ],
    }
}

/// Writes the sysctls of `mode` for interface `name`, from a thread inside
/// the interface's namespace, before the link goes up (the link-local
/// address is made when it does).
///
/// # Errors
///
/// A sysctl cannot be written; the message names it. A kernel without
/// IPv6 (no `/proc/sys/net/ipv6`) is an error of kind
/// [`io::ErrorKind::NotFound`].
pub(crate) fn write_sysctls(name: &str, mode: TapIpv6) -> io::Result<()> {
    for (key, value) in sysctls(mode) {
        let path = format!("/proc/sys/net/ipv6/conf/{name}/{key}");
        std::fs::write(&path, value)
            .map_err(|err| step_error(format_args!("writing {value} to {path}"), err))?;
    }
    Ok(())
}

/// What the namespace's kernel has configured for IPv6 on one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ipv6State {
    /// Usable global addresses made from a router advertisement's prefix
    /// (SLAAC), with their prefix lengths.
    pub autoconf_addrs: Vec<(Ipv6Addr, u8)>,
    /// Usable global addresses set by hand (netlink, `ip addr add`).
    pub static_addrs: Vec<(Ipv6Addr, u8)>,
    /// The next hop of the interface's IPv6 default route, if it has one.
    pub default_router: Option<Ipv6Addr>,
}

impl Ipv6State {
    /// Whether the interface has a global address and a default route:
    /// what a command needs to reach IPv6 destinations.
    #[must_use]
    pub fn is_configured(&self) -> bool {
        (!self.autoconf_addrs.is_empty() || !self.static_addrs.is_empty())
            && self.default_router.is_some()
    }
}

/// Reads the IPv6 configuration of one interface in a namespace
/// ([`Ipv6State`]) without entering the namespace again for each read.
#[derive(Debug)]
pub struct Ipv6Watch {
    name: String,
    if_inet6: File,
    ipv6_route: File,
}

impl Ipv6Watch {
    /// Opens the namespace's `/proc/net/if_inet6` and `/proc/net/ipv6_route`
    /// for interface `name`.
    ///
    /// # Errors
    ///
    /// The files cannot be opened, for example in a kernel without IPv6
    /// ([`io::ErrorKind::NotFound`]).
    pub fn open(ns: &Namespace, name: &str) -> io::Result<Ipv6Watch> {
        let (if_inet6, ipv6_route) = ns.run_in(|| {
            let open = |file: &str| {
                let path = format!("/proc/thread-self/net/{file}");
                File::open(&path).map_err(|err| step_error(format_args!("opening {path}"), err))
            };
            Ok((open("if_inet6")?, open("ipv6_route")?))
        })?;
        Ok(Ipv6Watch {
            name: name.to_owned(),
            if_inet6,
            ipv6_route,
        })
    }

    /// The interface's IPv6 configuration now.
    ///
    /// # Errors
    ///
    /// The files cannot be read again.
    pub fn read(&mut self) -> io::Result<Ipv6State> {
        let addrs = reread(&mut self.if_inet6)?;
        let routes = reread(&mut self.ipv6_route)?;
        let mut state = Ipv6State {
            default_router: default_router(&routes, &self.name),
            ..Ipv6State::default()
        };
        for (addr, prefix_len, flags) in global_addrs(&addrs, &self.name) {
            if flags & IFA_F_PERMANENT == 0 {
                state.autoconf_addrs.push((addr, prefix_len));
            } else {
                state.static_addrs.push((addr, prefix_len));
            }
        }
        Ok(state)
    }
}

/// The whole of a `/proc` file, read again from its start.
fn reread(file: &mut File) -> io::Result<String> {
    file.seek(SeekFrom::Start(0))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// A hexadecimal IPv6 address as `/proc/net` prints it (32 digits).
fn parse_hex_addr(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(hex, 16).ok().map(Ipv6Addr::from)
}

/// The usable global addresses of interface `name` in `/proc/net/if_inet6`
/// (address, interface index, prefix length, scope, flags, name; all but
/// the name in hex), with their prefix lengths and flags.
fn global_addrs<'t>(
    if_inet6: &'t str,
    name: &'t str,
) -> impl Iterator<Item = (Ipv6Addr, u8, u8)> + 't {
    if_inet6.lines().filter_map(move |line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [addr, _index, prefix_len, scope, flags, dev] = fields[..] else {
            return None;
        };
        let byte = |hex: &str| u8::from_str_radix(hex, 16).ok();
        let (prefix_len, scope, flags) = (byte(prefix_len)?, byte(scope)?, byte(flags)?);
        let usable = flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) == 0;
        (dev == name && scope == SCOPE_GLOBAL && usable)
            .then_some(())
            .and(parse_hex_addr(addr).map(|addr| (addr, prefix_len, flags)))
    })
}

/// The next hop of the default route out of `name` in
/// `/proc/net/ipv6_route` (destination, its length, source, its length,
/// next hop, metric, reference count, use count, flags, device).
fn default_router(ipv6_route: &str, name: &str) -> Option<Ipv6Addr> {
    ipv6_route.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [dst, dst_len, _, _, next_hop, _, _, _, _, dev] = fields[..] else {
            return None;
        };
        let dst = parse_hex_addr(dst)?;
        let next_hop = parse_hex_addr(next_hop)?;
        (dev == name && dst.is_unspecified() && dst_len == "00" && !next_hop.is_unspecified())
            .then_some(next_hop)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const IF_INET6: &str = "\
fd00000000000002505400fffe123456 02 40 00 00     eth0
fd00000000000002505400fffe1234ab 02 40 00 40     eth0
fd000000000000020000000000000015 02 40 00 80     eth0
fe80000000000000505400fffe123456 02 40 20 80     eth0
fd000000000000030000000000000001 03 40 00 00     eth1
00000000000000000000000000000001 01 80 10 80       lo
";

    const IPV6_ROUTE: &str = "\
fd000000000000020000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003     eth0
";

    #[test]
    fn usable_global_addresses_of_the_interface_are_found() {
        let found: Vec<_> = global_addrs(IF_INET6, "eth0").collect();
        assert_eq!(
            found,
            [
                (
                    Ipv6Addr::new(0xfd00, 0, 0, 2, 0x5054, 0xff, 0xfe12, 0x3456),
                    64,
                    0
                ),
                (Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0x15), 64, 0x80),
            ]
        );
    }

    #[test]
    fn default_route_of_the_interface_names_its_router() {
        assert_eq!(
            default_router(IPV6_ROUTE, "eth0"),
            Some(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1))
        );
        assert_eq!(default_router(IPV6_ROUTE, "lo"), None);
        assert_eq!(default_router(IPV6_ROUTE, "eth1"), None);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "zz 02 40 00 00 eth0\nfd00 02 40 00 00 eth0\n\n1 2 3\n";
        assert_eq!(global_addrs(text, "eth0").count(), 0);
        assert_eq!(default_router(text, "eth0"), None);
    }

    #[test]
    fn configured_needs_an_address_and_a_default_route() {
        let addr = (Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0x15), 64);
        let router = Some(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
        let only_addr = Ipv6State {
            autoconf_addrs: vec![addr],
            ..Ipv6State::default()
        };
        assert!(!only_addr.is_configured());
        let both = Ipv6State {
            default_router: router,
            ..only_addr
        };
        assert!(both.is_configured());
        let only_route = Ipv6State {
            default_router: router,
            ..Ipv6State::default()
        };
        assert!(!only_route.is_configured());
    }

    #[test]
    fn autoconf_turns_ipv6_on_before_anything_else() {
        assert_eq!(sysctls(TapIpv6::Autoconf)[0], ("disable_ipv6", "0"));
        assert_eq!(sysctls(TapIpv6::Disabled), [("disable_ipv6", "1")]);
    }
}
