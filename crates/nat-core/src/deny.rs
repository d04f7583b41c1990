//! Deny lists: sets of CIDR prefixes the guest must not reach.
//!
//! Two prefixes are either disjoint or one contains the other, so once every
//! prefix contained in a wider one is dropped, the rest are pairwise
//! disjoint. Sorted by first address, they form a list of non-overlapping
//! ranges (`u32` for IPv4, `u128` for IPv6) in which a lookup is one binary
//! search: the only prefix that can contain an address is the last one that
//! starts at or before it. Keeping whole prefixes rather than merged ranges
//! lets a denial name the configured prefix that caused it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::cidr::{Cidr, CidrError, Ipv4Cidr, Ipv6Cidr};

/// A set of IPv4 and IPv6 prefixes with a logarithmic-time membership test.
///
/// Prefixes contained in a wider prefix of the list are dropped when the list
/// is built: they change nothing about which addresses are denied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DenyList {
    v4: Vec<Ipv4Cidr>,
    v6: Vec<Ipv6Cidr>,
}

/// Sorts `prefixes` by first address (the wider first on a tie) and drops
/// every prefix that lies inside the one kept before it.
fn reduce<T: Copy, K: Ord>(
    mut prefixes: Vec<T>,
    first: impl Fn(&T) -> K,
    last: impl Fn(&T) -> K,
) -> Vec<T> {
    prefixes.sort_by(|a, b| first(a).cmp(&first(b)).then_with(|| last(b).cmp(&last(a))));
    let mut kept: Vec<T> = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        // Prefixes never overlap partially, so a prefix that does not start
        // after the last kept one ends inside it.
        if kept.last().is_some_and(|k| last(&p) <= last(k)) {
            continue;
        }
        kept.push(p);
    }
    kept
}

/// The prefix of the sorted, disjoint `prefixes` that contains `key`.
fn find<T: Copy, K: Ord>(
    prefixes: &[T],
    key: &K,
    first: impl Fn(&T) -> K,
    last: impl Fn(&T) -> K,
) -> Option<T> {
    let after = prefixes.partition_point(|p| first(p) <= *key);
    let candidate = *prefixes.get(after.checked_sub(1)?)?;
    (last(&candidate) >= *key).then_some(candidate)
}

impl DenyList {
    /// The list of `prefixes`, in any order, overlaps allowed.
    #[must_use]
    pub fn new(prefixes: impl IntoIterator<Item = Cidr>) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for p in prefixes {
            match p {
                Cidr::V4(c) => v4.push(c),
                Cidr::V6(c) => v6.push(c),
            }
        }
        Self {
            v4: reduce(v4, Ipv4Cidr::first_bits, Ipv4Cidr::last_bits),
            v6: reduce(v6, Ipv6Cidr::first_bits, Ipv6Cidr::last_bits),
        }
    }

    /// The prefix of the list that contains `addr`, if any: the widest
    /// configured prefix covering it. `O(log n)`.
    #[must_use]
    pub fn denied_by(&self, addr: IpAddr) -> Option<Cidr> {
        match addr {
            IpAddr::V4(a) => find(
                &self.v4,
                &a.to_bits(),
                Ipv4Cidr::first_bits,
                Ipv4Cidr::last_bits,
            )
            .map(Cidr::V4),
            IpAddr::V6(a) => find(
                &self.v6,
                &a.to_bits(),
                Ipv6Cidr::first_bits,
                Ipv6Cidr::last_bits,
            )
            .map(Cidr::V6),
        }
    }

    /// Whether some prefix of the list contains `addr`.
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.denied_by(addr).is_some()
    }

    /// Whether the list denies nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The prefixes kept, IPv4 first, each family in address order.
    pub fn iter(&self) -> impl Iterator<Item = Cidr> + '_ {
        self.v4
            .iter()
            .copied()
            .map(Cidr::V4)
            .chain(self.v6.iter().copied().map(Cidr::V6))
    }
}

impl FromIterator<Cidr> for DenyList {
    fn from_iter<I: IntoIterator<Item = Cidr>>(iter: I) -> Self {
        Self::new(iter)
    }
}

impl fmt::Display for DenyList {
    /// The kept prefixes separated by commas; the empty list prints as
    /// nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl FromStr for DenyList {
    type Err = CidrError;

    /// Parses a comma-separated list of prefixes such as
    /// `10.0.0.0/8,fd00::/8`. The empty string is the empty list.
    fn from_str(s: &str) -> Result<Self, CidrError> {
        if s.is_empty() {
            return Ok(Self::default());
        }
        s.split(',').map(str::parse).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn list(s: &str) -> DenyList {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_list_denies_nothing() {
        let l = list("");
        assert!(l.is_empty());
        assert_eq!(l.denied_by(ip("10.0.0.1")), None);
        assert_eq!(l.to_string(), "");
    }

    #[test]
    fn lookup_names_the_widest_covering_prefix() {
        let l = list("10.1.0.0/16,10.0.0.0/8,192.0.2.0/24,fd00::/8,fd00:1::/32");
        assert_eq!(l.to_string(), "10.0.0.0/8,192.0.2.0/24,fd00::/8");
        assert_eq!(
            l.denied_by(ip("10.1.2.3")),
            Some("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            l.denied_by(ip("192.0.2.255")),
            Some("192.0.2.0/24".parse().unwrap())
        );
        assert_eq!(l.denied_by(ip("192.0.3.0")), None);
        assert_eq!(l.denied_by(ip("9.255.255.255")), None);
        assert_eq!(l.denied_by(ip("11.0.0.0")), None);
        assert_eq!(
            l.denied_by(ip("fd00:1::1")),
            Some("fd00::/8".parse().unwrap())
        );
        assert_eq!(l.denied_by(ip("fe00::1")), None);
    }

    #[test]
    fn adjacent_and_duplicate_prefixes() {
        let l = list("10.0.0.0/24,10.0.0.0/8,fd00::/64,fd00::/16");
        assert_eq!(l.to_string(), "10.0.0.0/8,fd00::/16");
        let l = list("10.0.0.0/24,10.0.1.0/24,10.0.0.0/24,10.0.0.7/32");
        assert_eq!(l.to_string(), "10.0.0.0/24,10.0.1.0/24");
        assert!(l.contains(ip("10.0.1.255")));
        assert!(!l.contains(ip("10.0.2.0")));
    }

    #[test]
    fn whole_address_space() {
        let l = list("0.0.0.0/0,::/0");
        assert!(l.contains(ip("255.255.255.255")));
        assert!(l.contains(ip("0.0.0.0")));
        assert!(l.contains(ip("::")));
        assert!(l.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    }

    #[test]
    fn bad_entry_is_named() {
        let err = "10.0.0.0/8,10.0.0.1/8".parse::<DenyList>().unwrap_err();
        assert!(err.to_string().contains("\"10.0.0.1/8\""), "{err}");
        let err = "10.0.0.0/8,".parse::<DenyList>().unwrap_err();
        assert_eq!(err, CidrError::Empty);
    }
}
