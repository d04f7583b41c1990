//! Ethernet MAC addresses, written `52:54:00:12:34:56`.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// Why a MAC address did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid MAC address {input:?}: expected six hex octets separated by ':', e.g. 52:54:00:12:34:56"
)]
pub struct MacAddrError {
    /// The whole input.
    pub input: String,
}

impl MacAddr {
    /// Whether this is a group (multicast or broadcast) address: the low bit
    /// of the first octet is set.
    #[must_use]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Whether every octet is zero.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// Whether this address can name one interface: neither a group address
    /// nor all zeros.
    #[must_use]
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = MacAddrError;

    fn from_str(input: &str) -> Result<Self, MacAddrError> {
        let err = || MacAddrError {
            input: input.to_owned(),
        };
        let mut octets = [0u8; 6];
        let mut parts = input.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(octets))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn round_trips() {
        let m: MacAddr = "52:54:00:12:34:56".parse().unwrap();
        assert_eq!(m, MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(m.to_string(), "52:54:00:12:34:56");
        assert!(m.is_unicast());
        let m: MacAddr = "AA:b:0:0:0:1".parse().unwrap();
        assert_eq!(m.to_string(), "aa:0b:00:00:00:01");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "52:54:00:12:34:5g",
            "52:54::12:34:56",
            "+2:54:00:12:34:56",
            "152:54:00:12:34:56",
        ] {
            let err = bad.parse::<MacAddr>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn group_and_zero_are_not_unicast() {
        assert!(!MacAddr([0xff; 6]).is_unicast());
        assert!(!MacAddr([0x01, 0, 0x5e, 0, 0, 1]).is_unicast());
        assert!(!MacAddr([0; 6]).is_unicast());
    }
}
