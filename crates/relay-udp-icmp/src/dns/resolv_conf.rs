//! Finding the host's resolver in `/etc/resolv.conf`.
//!
//! The parser follows glibc's reading of the file: a `nameserver` line names
//! one address; lines starting with `#` or `;` are comments; anything after
//! the address is ignored; an address that does not parse is skipped. An
//! IPv6 address may carry a scope (`fe80::1%eth0` or `fe80::1%2`).

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::path::Path;

use crate::sys;

/// Where the host's resolver configuration lives.
pub const DEFAULT_PATH: &str = "/etc/resolv.conf";

/// The DNS port, which `resolv.conf` cannot change.
pub const DNS_PORT: u16 = 53;

const KEYWORD: &str = "nameserver";

/// The address and scope of each well-formed `nameserver` line, in order.
fn nameservers(text: &str) -> impl Iterator<Item = (IpAddr, Option<&str>)> + '_ {
    text.lines().filter_map(|line| {
        let line = line.trim_start();
        if line.starts_with('#') || line.starts_with(';') {
            return None;
        }
        let mut words = line.split_ascii_whitespace();
        if words.next()? != KEYWORD {
            return None;
        }
        let word = words.next()?;
        let (addr, scope) = match word.split_once('%') {
            Some((addr, scope)) => (addr, Some(scope)),
            None => (word, None),
        };
        let ip: IpAddr = addr.parse().ok()?;
        match (ip, scope) {
            (IpAddr::V4(_), Some(_)) => None,
            _ => Some((ip, scope)),
        }
    })
}

/// The address of the first well-formed `nameserver` line, without its
/// scope.
#[must_use]
pub fn first_nameserver(text: &str) -> Option<IpAddr> {
    nameservers(text).next().map(|(ip, _)| ip)
}

/// The socket address of the first well-formed `nameserver` line: port 53,
/// and for IPv6 the scope id, given as a number or an interface name (an
/// unknown interface leaves the scope at 0, as glibc does).
#[must_use]
pub fn first_nameserver_addr(text: &str) -> Option<SocketAddr> {
    let (ip, scope) = nameservers(text).next()?;
    Some(match ip {
        IpAddr::V4(_) => SocketAddr::new(ip, DNS_PORT),
        IpAddr::V6(v6) => {
            let scope_id = scope
                .and_then(|s| s.parse::<u32>().ok().or_else(|| sys::interface_index(s)))
                .unwrap_or(0);
            SocketAddr::V6(SocketAddrV6::new(v6, DNS_PORT, 0, scope_id))
        }
    })
}

/// Reads `path` (normally [`DEFAULT_PATH`]) and returns its first
/// nameserver as with [`first_nameserver_addr`]; `Ok(None)` when it names
/// none.
pub fn host_resolver(path: &Path) -> io::Result<Option<SocketAddr>> {
    let text = std::fs::read_to_string(path)?;
    Ok(first_nameserver_addr(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn systemd_resolved_stub_file() {
        let text = "# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).\n\
                    # Do not edit.\n\
                    \n\
                    nameserver 127.0.0.53\n\
                    options edns0 trust-ad\n\
                    search .\n";
        assert_eq!(
            first_nameserver(text),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)))
        );
        assert_eq!(
            first_nameserver_addr(text),
            Some(SocketAddr::from(([127, 0, 0, 53], 53)))
        );
    }

    #[test]
    fn comments_and_whitespace() {
        let text = "; nameserver 127.0.0.9\n  # nameserver 127.0.0.8\n\t nameserver\t127.0.0.7   # the real one\r\n";
        assert_eq!(
            first_nameserver(text),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)))
        );
    }

    #[test]
    fn invalid_lines_are_skipped() {
        let text = "nameservers 127.0.0.1\nnameserver\nnameserver not-an-address\nnameserver 127.0.0.1%eth0\nnameserver ::1\n";
        assert_eq!(
            first_nameserver(text),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
    }

    #[test]
    fn ipv6_scope_by_number_and_by_name() {
        let text = "nameserver fe80::1%7\n";
        let expected_ip: Ipv6Addr = "fe80::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        assert_eq!(first_nameserver(text), Some(IpAddr::V6(expected_ip)));
        assert_eq!(
            first_nameserver_addr(text),
            Some(SocketAddr::V6(SocketAddrV6::new(expected_ip, 53, 0, 7)))
        );
        let by_name = first_nameserver_addr("nameserver fe80::1%lo\n");
        let lo = sys::interface_index("lo");
        assert!(lo.is_some());
        assert!(matches!(by_name, Some(SocketAddr::V6(a)) if Some(a.scope_id()) == lo));
        let unknown = first_nameserver_addr("nameserver fe80::1%nosuchif9\n");
        assert!(matches!(unknown, Some(SocketAddr::V6(a)) if a.scope_id() == 0));
    }

    #[test]
    fn no_nameserver() {
        assert_eq!(first_nameserver(""), None);
        assert_eq!(
            first_nameserver("search example.invalid\noptions ndots:1\n"),
            None
        );
        assert_eq!(first_nameserver_addr("# nameserver 127.0.0.1"), None);
    }

    #[test]
    fn missing_file_is_an_error() {
        assert!(host_resolver(Path::new("/nonexistent/resolv.conf")).is_err());
    }
}
