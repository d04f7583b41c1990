//! CIDR prefixes: `a.b.c.d/n` and `x::/n`.
//!
//! A prefix is always stored in canonical form: the host bits of its address
//! are zero. Parsing a prefix whose host bits are set is an error that names
//! the canonical network (`10.0.2.1/24` → "did you mean 10.0.2.0/24"), rather
//! than a silent truncation: a deny rule written as `192.168.1.7/24` is more
//! likely a typo than a wish to deny the whole `/24`. Code that wants the
//! truncation, such as a caller turning an interface address into its
//! network, asks for it by name with [`Ipv4Cidr::containing`] and
//! [`Ipv6Cidr::containing`].
//!
//! A bare address without `/n` parses as a single-host prefix (`/32` or
//! `/128`); [`Display`](fmt::Display) always prints the length, so the round
//! trip goes through the explicit form.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a CIDR prefix did not parse or could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The input was empty.
    #[error("empty CIDR prefix: expected ADDRESS/LENGTH, e.g. 10.0.2.0/24 or fd00::/64")]
    Empty,
    /// The address part is not an address of the expected family.
    #[error("invalid {family} address {addr:?} in {input:?}")]
    InvalidAddress {
        /// "IPv4", "IPv6" or "IP", the family that was expected.
        family: &'static str,
        /// The bad address part.
        addr: String,
        /// The whole input.
        input: String,
    },
    /// The length part is not a decimal number in `0..=max`.
    #[error("invalid prefix length {len:?} in {input:?}: expected 0 to {max}")]
    InvalidPrefixLen {
        /// The bad length part.
        len: String,
        /// The whole input.
        input: String,
        /// The largest length the family allows (32 or 128).
        max: u8,
    },
    /// The address has bits set beyond the prefix length.
    #[error("host bits set in {input:?}: did you mean {network}?")]
    HostBitsSet {
        /// The whole input.
        input: String,
        /// The canonical prefix with the host bits cleared.
        network: String,
    },
}

/// The netmask of a `len`-bit IPv6 prefix (`len <= 128`).
fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(u32::from(128 - len)).unwrap_or(0)
}

/// The netmask of a `len`-bit IPv4 prefix (`len <= 32`).
fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(u32::from(32 - len)).unwrap_or(0)
}

/// An IPv4 prefix such as `10.0.2.0/24`, with its host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Cidr {
    /// The prefix `addr/len`. Fails if `len > 32` or if `addr` has host bits
    /// set.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, CidrError> {
        let input = || format!("{addr}/{len}");
        if len > 32 {
            return Err(CidrError::InvalidPrefixLen {
                len: len.to_string(),
                input: input(),
                max: 32,
            });
        }
        let network = Self::containing(addr, len);
        if network.addr != addr {
            return Err(CidrError::HostBitsSet {
                input: input(),
                network: network.to_string(),
            });
        }
        Ok(network)
    }

    /// `addr/len` for constants known to be canonical (`len <= 32`, host
    /// bits zero).
    pub(crate) const fn from_canonical(addr: Ipv4Addr, len: u8) -> Self {
        Self { addr, len }
    }

    /// The `len`-bit prefix that contains `addr` (host bits cleared); a
    /// length above 32 is taken as 32.
    #[must_use]
    pub fn containing(addr: Ipv4Addr, len: u8) -> Self {
        let len = len.min(32);
        Self {
            addr: Ipv4Addr::from_bits(addr.to_bits() & mask32(len)),
            len,
        }
    }

    /// The network address (the first address of the prefix).
    #[must_use]
    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length in bits.
    #[must_use]
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The last address of the prefix: the directed broadcast address for
    /// prefixes shorter than `/31`.
    #[must_use]
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.addr.to_bits() | !mask32(self.len))
    }

    /// Whether `addr` lies inside the prefix.
    #[must_use]
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        addr.to_bits() & mask32(self.len) == self.addr.to_bits()
    }

    /// The address whose host part is `host` (counted from the network
    /// address), or `None` if `host` does not fit in the host bits.
    #[must_use]
    pub fn host(&self, host: u32) -> Option<Ipv4Addr> {
        (host & mask32(self.len) == 0).then(|| Ipv4Addr::from_bits(self.addr.to_bits() | host))
    }

    pub(crate) fn first_bits(&self) -> u32 {
        self.addr.to_bits()
    }

    pub(crate) fn last_bits(&self) -> u32 {
        self.last().to_bits()
    }
}

/// An IPv6 prefix such as `fd00:0:0:2::/64`, with its host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv6Cidr {
    addr: Ipv6Addr,
    len: u8,
}

impl Ipv6Cidr {
    /// The prefix `addr/len`. Fails if `len > 128` or if `addr` has host
    /// bits set.
    pub fn new(addr: Ipv6Addr, len: u8) -> Result<Self, CidrError> {
        let input = || format!("{addr}/{len}");
        if len > 128 {
            return Err(CidrError::InvalidPrefixLen {
                len: len.to_string(),
                input: input(),
                max: 128,
            });
        }
        let network = Self::containing(addr, len);
        if network.addr != addr {
            return Err(CidrError::HostBitsSet {
                input: input(),
                network: network.to_string(),
            });
        }
        Ok(network)
    }

    /// `addr/len` for constants known to be canonical (`len <= 128`, host
    /// bits zero).
    pub(crate) const fn from_canonical(addr: Ipv6Addr, len: u8) -> Self {
        Self { addr, len }
    }

    /// The `len`-bit prefix that contains `addr` (host bits cleared); a
    /// length above 128 is taken as 128.
    #[must_use]
    pub fn containing(addr: Ipv6Addr, len: u8) -> Self {
        let len = len.min(128);
        Self {
            addr: Ipv6Addr::from_bits(addr.to_bits() & mask128(len)),
            len,
        }
    }

    /// The network address (the first address of the prefix; as a
    /// destination, the subnet-router anycast address).
    #[must_use]
    pub fn network(&self) -> Ipv6Addr {
        self.addr
    }

    /// The prefix length in bits.
    #[must_use]
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The last address of the prefix.
    #[must_use]
    pub fn last(&self) -> Ipv6Addr {
        Ipv6Addr::from_bits(self.addr.to_bits() | !mask128(self.len))
    }

    /// Whether `addr` lies inside the prefix.
    #[must_use]
    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        addr.to_bits() & mask128(self.len) == self.addr.to_bits()
    }

    /// The address whose host part is `host` (counted from the network
    /// address), or `None` if `host` does not fit in the host bits.
    #[must_use]
    pub fn host(&self, host: u128) -> Option<Ipv6Addr> {
        (host & mask128(self.len) == 0).then(|| Ipv6Addr::from_bits(self.addr.to_bits() | host))
    }

    pub(crate) fn first_bits(&self) -> u128 {
        self.addr.to_bits()
    }

    pub(crate) fn last_bits(&self) -> u128 {
        self.last().to_bits()
    }
}

/// An IPv4 or IPv6 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cidr {
    /// An IPv4 prefix.
    V4(Ipv4Cidr),
    /// An IPv6 prefix.
    V6(Ipv6Cidr),
}

impl Cidr {
    /// The prefix `addr/len`, with the same checks as [`Ipv4Cidr::new`] and
    /// [`Ipv6Cidr::new`].
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, CidrError> {
        match addr {
            IpAddr::V4(a) => Ipv4Cidr::new(a, len).map(Cidr::V4),
            IpAddr::V6(a) => Ipv6Cidr::new(a, len).map(Cidr::V6),
        }
    }

    /// The network address.
    #[must_use]
    pub fn network(&self) -> IpAddr {
        match self {
            Cidr::V4(c) => IpAddr::V4(c.network()),
            Cidr::V6(c) => IpAddr::V6(c.network()),
        }
    }

    /// The prefix length in bits.
    #[must_use]
    pub fn prefix_len(&self) -> u8 {
        match self {
            Cidr::V4(c) => c.prefix_len(),
            Cidr::V6(c) => c.prefix_len(),
        }
    }

    /// Whether `addr` lies inside the prefix. An address of the other family
    /// never does (an IPv4-mapped IPv6 address is not inside an IPv4 prefix).
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self, addr) {
            (Cidr::V4(c), IpAddr::V4(a)) => c.contains(a),
            (Cidr::V6(c), IpAddr::V6(a)) => c.contains(a),
            (Cidr::V4(_), IpAddr::V6(_)) | (Cidr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

impl From<Ipv4Cidr> for Cidr {
    fn from(c: Ipv4Cidr) -> Self {
        Cidr::V4(c)
    }
}

impl From<Ipv6Cidr> for Cidr {
    fn from(c: Ipv6Cidr) -> Self {
        Cidr::V6(c)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cidr::V4(c) => c.fmt(f),
            Cidr::V6(c) => c.fmt(f),
        }
    }
}

/// Splits `input` into its address and optional length parts, and parses
/// the length (all decimal digits, at most `max`).
fn split_prefix(input: &str, max: u8) -> Result<(&str, Option<u8>), CidrError> {
    if input.is_empty() {
        return Err(CidrError::Empty);
    }
    let Some((addr, len)) = input.split_once('/') else {
        return Ok((input, None));
    };
    let bad_len = || CidrError::InvalidPrefixLen {
        len: len.to_owned(),
        input: input.to_owned(),
        max,
    };
    // `u8::from_str` accepts a leading '+', which a prefix length never has.
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_len());
    }
    match len.parse::<u8>() {
        Ok(n) if n <= max => Ok((addr, Some(n))),
        _ => Err(bad_len()),
    }
}

fn with_input(err: CidrError, input: &str) -> CidrError {
    match err {
        CidrError::HostBitsSet { network, .. } => CidrError::HostBitsSet {
            input: input.to_owned(),
            network,
        },
        other => other,
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(input: &str) -> Result<Self, CidrError> {
        let (addr, len) = split_prefix(input, 32)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| CidrError::InvalidAddress {
            family: "IPv4",
            addr: addr.to_owned(),
            input: input.to_owned(),
        })?;
        Ipv4Cidr::new(addr, len.unwrap_or(32)).map_err(|e| with_input(e, input))
    }
}

impl FromStr for Ipv6Cidr {
    type Err = CidrError;

    fn from_str(input: &str) -> Result<Self, CidrError> {
        let (addr, len) = split_prefix(input, 128)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| CidrError::InvalidAddress {
            family: "IPv6",
            addr: addr.to_owned(),
            input: input.to_owned(),
        })?;
        Ipv6Cidr::new(addr, len.unwrap_or(128)).map_err(|e| with_input(e, input))
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `a.b.c.d/n` or `x::/n`; the family follows from the address
    /// (an address containing ':' is IPv6).
    fn from_str(input: &str) -> Result<Self, CidrError> {
        let addr = input.split_once('/').map_or(input, |(a, _)| a);
        if addr.contains(':') {
            input.parse().map(Cidr::V6)
        } else if addr.contains('.') {
            input.parse().map(Cidr::V4)
        } else if input.is_empty() {
            Err(CidrError::Empty)
        } else {
            Err(CidrError::InvalidAddress {
                family: "IP",
                addr: addr.to_owned(),
                input: input.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_and_prints_canonical_prefixes() {
        let c: Cidr = "10.0.2.0/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.2.0/24");
        let c: Cidr = "fd00:0:0:2::/64".parse().unwrap();
        assert_eq!(c.to_string(), "fd00:0:0:2::/64");
        let c: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(c.contains("255.255.255.255".parse().unwrap()));
        let c: Cidr = "::/0".parse().unwrap();
        assert!(c.contains("ffff::1".parse().unwrap()));
    }

    #[test]
    fn bare_address_is_a_host_prefix() {
        let c: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(c.to_string(), "192.0.2.7/32");
        let c: Cidr = "::1".parse().unwrap();
        assert_eq!(c.to_string(), "::1/128");
    }

    #[test]
    fn host_bits_set_is_an_error_naming_the_network() {
        let err = "10.0.2.1/24".parse::<Cidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "host bits set in \"10.0.2.1/24\": did you mean 10.0.2.0/24?"
        );
        let err = "fd00::1/64".parse::<Cidr>().unwrap_err();
        assert!(err.to_string().contains("fd00::/64"), "{err}");
    }

    #[test]
    fn errors_name_the_bad_part() {
        let err = "10.0.2.x/24".parse::<Cidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid IPv4 address \"10.0.2.x\" in \"10.0.2.x/24\""
        );
        let err = "10.0.2.0/33".parse::<Cidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid prefix length \"33\" in \"10.0.2.0/33\": expected 0 to 32"
        );
        let err = "fd00::/+8".parse::<Cidr>().unwrap_err();
        assert!(err.to_string().contains("\"+8\""), "{err}");
        let err = "fd00::/".parse::<Cidr>().unwrap_err();
        assert!(err.to_string().contains("length \"\""), "{err}");
        let err = "fd00::zz/8".parse::<Cidr>().unwrap_err();
        assert!(err.to_string().contains("\"fd00::zz\""), "{err}");
        let err = "localhost/8".parse::<Cidr>().unwrap_err();
        assert!(err.to_string().contains("\"localhost\""), "{err}");
        assert_eq!("".parse::<Cidr>().unwrap_err(), CidrError::Empty);
    }

    #[test]
    fn containing_truncates_and_last_is_the_broadcast() {
        let c = Ipv4Cidr::containing(Ipv4Addr::new(10, 0, 2, 15), 24);
        assert_eq!(c.to_string(), "10.0.2.0/24");
        assert_eq!(c.last(), Ipv4Addr::new(10, 0, 2, 255));
        assert_eq!(c.host(15), Some(Ipv4Addr::new(10, 0, 2, 15)));
        assert_eq!(c.host(256), None);
        let c = Ipv6Cidr::containing("fd00:0:0:2::15".parse().unwrap(), 64);
        assert_eq!(c.to_string(), "fd00:0:0:2::/64");
        assert_eq!(
            c.last(),
            "fd00:0:0:2:ffff:ffff:ffff:ffff"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
        assert_eq!(c.host(1 << 64), None);
    }

    #[test]
    fn families_do_not_mix() {
        let c: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(!c.contains("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn zero_and_full_lengths() {
        let c = Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0).unwrap();
        assert_eq!(c.last(), Ipv4Addr::BROADCAST);
        let c = Ipv6Cidr::new(Ipv6Addr::LOCALHOST, 128).unwrap();
        assert!(c.contains(Ipv6Addr::LOCALHOST));
        assert!(!c.contains(Ipv6Addr::UNSPECIFIED));
        assert!(Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 33).is_err());
        assert!(Ipv6Cidr::new(Ipv6Addr::UNSPECIFIED, 129).is_err());
    }
}
