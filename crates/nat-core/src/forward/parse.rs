//! The parser for passt's port forwarding spec syntax.
//!
//! ```text
//! spec    = "none" | [bind "/"] ports
//! bind    = [address] ["%" interface]      (address may be in [brackets])
//! ports   = "all" | item *("," item)
//! item    = range [":" range] | "~" range
//! range   = port ["-" port]                 (port: 1 to 65535)
//! ```
//!
//! Exclusions (`~`) apply to the whole spec, wherever they stand. A spec made
//! of exclusions only, and `all`, forward every port outside the ephemeral
//! range and the exclusions, with [`BindPolicy::BestEffort`].

use std::net::IpAddr;
use std::ops::RangeInclusive;

use super::spec::PortSpec;
use super::{BindPolicy, PortMapping};

/// Linux's default ephemeral port range (`net.ipv4.ip_local_port_range`),
/// which `all` and exclusion-only specs leave out.
pub const LINUX_EPHEMERAL_PORTS: RangeInclusive<u16> = 32768..=60999;

/// The longest interface name Linux accepts (`IFNAMSIZ - 1`).
const MAX_INTERFACE_LEN: usize = 15;

/// Why a port forwarding spec did not parse. Each variant names the bad
/// part (`token`) and the spec it stands in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    /// The spec is empty.
    #[error("empty port forwarding spec: expected PORTS, ADDRESS/PORTS, \"all\" or \"none\"")]
    Empty,
    /// A port number is not a decimal number in 1..=65535.
    #[error("invalid port {token:?} in {spec:?}: ports are 1 to 65535")]
    InvalidPort {
        /// The bad port number.
        token: String,
        /// The whole spec.
        spec: String,
    },
    /// An entry of the list is not a range, a mapping or an exclusion.
    #[error(
        "invalid port range {token:?} in {spec:?}: expected PORT[-PORT][:PORT[-PORT]] or ~PORT[-PORT]"
    )]
    Malformed {
        /// The bad entry.
        token: String,
        /// The whole spec.
        spec: String,
    },
    /// The list has an empty entry.
    #[error("empty entry in {spec:?}: remove the extra ','")]
    EmptyEntry {
        /// The whole spec.
        spec: String,
    },
    /// A range's first port is above its last.
    #[error("port range {token:?} in {spec:?} runs backwards")]
    ReversedRange {
        /// The bad range.
        token: String,
        /// The whole spec.
        spec: String,
    },
    /// A mapping's host and guest ranges differ in length.
    #[error(
        "port ranges in {token:?} in {spec:?} differ in length: {host} host ports, {guest} guest ports"
    )]
    LengthMismatch {
        /// The bad mapping.
        token: String,
        /// The whole spec.
        spec: String,
        /// The number of host ports.
        host: u32,
        /// The number of guest ports.
        guest: u32,
    },
    /// A mapping's implied guest range runs past port 65535.
    #[error("guest ports of {token:?} in {spec:?} run past 65535")]
    TargetOverflow {
        /// The bad mapping.
        token: String,
        /// The whole spec.
        spec: String,
    },
    /// An exclusion has a target port.
    #[error("exclusion {token:?} in {spec:?} cannot have a target port")]
    ExclusionTarget {
        /// The bad exclusion.
        token: String,
        /// The whole spec.
        spec: String,
    },
    /// The bind address does not parse.
    #[error("invalid forwarding address {token:?} in {spec:?}")]
    InvalidAddress {
        /// The bad address.
        token: String,
        /// The whole spec.
        spec: String,
    },
    /// The interface name is not one Linux accepts.
    #[error(
        "invalid interface name {token:?} in {spec:?}: 1 to 15 bytes, without '/', ':', '%' or whitespace"
    )]
    InvalidInterface {
        /// The bad interface name.
        token: String,
        /// The whole spec.
        spec: String,
    },
    /// `all` or `none` stands inside a list instead of alone.
    #[error("{token:?} in {spec:?} must be the whole list of ports")]
    MisplacedKeyword {
        /// The keyword.
        token: String,
        /// The whole spec.
        spec: String,
    },
    /// A keyword slipway does not implement (`auto`).
    #[error("{token:?} in {spec:?} is not supported: list the ports to forward, or use \"all\"")]
    Unsupported {
        /// The keyword.
        token: String,
        /// The whole spec.
        spec: String,
    },
    /// Two entries of one spec forward the same host port.
    #[error("host port {port} is forwarded by both {first:?} and {second:?} in {spec:?}")]
    Overlap {
        /// The first port forwarded twice.
        port: u16,
        /// The earlier entry.
        first: String,
        /// The later entry.
        second: String,
        /// The whole spec.
        spec: String,
    },
    /// Two specs forward the same host port.
    #[error("host port {port} is forwarded by both {first:?} and {second:?}")]
    SpecsOverlap {
        /// The first port forwarded twice.
        port: u16,
        /// One spec.
        first: String,
        /// The other spec.
        second: String,
    },
    /// The exclusions leave no port to forward.
    #[error("{spec:?} forwards no ports: every port is excluded")]
    NoPorts {
        /// The whole spec.
        spec: String,
    },
    /// `none` is combined with other specs.
    #[error("\"none\" cannot be combined with other specs in {input:?}")]
    NoneCombined {
        /// The whole input.
        input: String,
    },
}

/// An inclusive range of host ports.
type Range = (u16, u16);

/// Parses one spec; `ephemeral` is the range `all` and exclusion-only specs
/// leave out.
pub(super) fn parse_spec(
    spec: &str,
    ephemeral: RangeInclusive<u16>,
) -> Result<PortSpec, PortSpecError> {
    let cx = Cx { spec };
    if spec.is_empty() {
        return Err(PortSpecError::Empty);
    }
    if spec == "none" {
        return Ok(PortSpec::none());
    }
    let (bind, interface, ports) = match spec.split_once('/') {
        Some((prefix, ports)) => {
            let (bind, interface) = cx.bind(prefix)?;
            (bind, interface, ports)
        }
        None => (None, None, spec),
    };
    let (mappings, policy) = match ports {
        "all" => (cx.all_except(&[], ephemeral)?, BindPolicy::BestEffort),
        _ => cx.list(ports, ephemeral)?,
    };
    Ok(PortSpec::from_parts(bind, interface, mappings, policy))
}

/// The spec being parsed, to build errors from.
struct Cx<'a> {
    spec: &'a str,
}

/// One entry of the list, before exclusions are applied.
struct Include<'a> {
    token: &'a str,
    host: Range,
    guest_first: u16,
}

impl<'a> Cx<'a> {
    fn token(&self, token: &str) -> (String, String) {
        (token.to_owned(), self.spec.to_owned())
    }

    fn bind(&self, prefix: &str) -> Result<(Option<IpAddr>, Option<String>), PortSpecError> {
        let (addr, interface) = match prefix.split_once('%') {
            Some((addr, interface)) => (addr, Some(self.interface(interface)?)),
            None => (prefix, None),
        };
        if addr.is_empty() && interface.is_some() {
            return Ok((None, interface));
        }
        let bare = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let ip = bare.parse::<IpAddr>().map_err(|_| {
            let (token, spec) = self.token(addr);
            PortSpecError::InvalidAddress { token, spec }
        })?;
        Ok((Some(ip), interface))
    }

    fn interface(&self, name: &str) -> Result<String, PortSpecError> {
        let bad = |c: char| c == '/' || c == ':' || c == '%' || c.is_whitespace();
        let valid = !name.is_empty()
            && name.len() <= MAX_INTERFACE_LEN
            && name != "."
            && name != ".."
            && !name.chars().any(bad);
        if valid {
            Ok(name.to_owned())
        } else {
            let (token, spec) = self.token(name);
            Err(PortSpecError::InvalidInterface { token, spec })
        }
    }

    /// Parses a comma-separated list of entries.
    fn list(
        &self,
        ports: &str,
        ephemeral: RangeInclusive<u16>,
    ) -> Result<(Vec<PortMapping>, BindPolicy), PortSpecError> {
        let mut includes = Vec::new();
        let mut excludes = Vec::new();
        for entry in ports.split(',') {
            if let Some(range) = entry.strip_prefix('~') {
                if range.contains(':') {
                    let (token, spec) = self.token(entry);
                    return Err(PortSpecError::ExclusionTarget { token, spec });
                }
                excludes.push(self.range(range, entry)?);
            } else {
                includes.push(self.include(entry)?);
            }
        }
        let excludes = merge(excludes);
        if includes.is_empty() {
            return Ok((
                self.all_except(&excludes, ephemeral)?,
                BindPolicy::BestEffort,
            ));
        }
        let mut pieces = Vec::new();
        for inc in &includes {
            for (first, last) in subtract(inc.host, &excludes) {
                let guest_first = shift(inc.guest_first, first - inc.host.0);
                pieces.push((
                    PortMapping::from_checked(first, last, guest_first),
                    inc.token,
                ));
            }
        }
        self.check_overlaps(&mut pieces)?;
        if pieces.is_empty() {
            return Err(PortSpecError::NoPorts {
                spec: self.spec.to_owned(),
            });
        }
        Ok((
            pieces.into_iter().map(|(m, _)| m).collect(),
            BindPolicy::Required,
        ))
    }

    /// Every port but the ephemeral ones and `excludes`.
    fn all_except(
        &self,
        excludes: &[Range],
        ephemeral: RangeInclusive<u16>,
    ) -> Result<Vec<PortMapping>, PortSpecError> {
        let mut out = excludes.to_vec();
        if ephemeral.start() <= ephemeral.end() {
            out.push((*ephemeral.start(), *ephemeral.end()));
        }
        let pieces = subtract((1, u16::MAX), &merge(out));
        if pieces.is_empty() {
            return Err(PortSpecError::NoPorts {
                spec: self.spec.to_owned(),
            });
        }
        Ok(pieces
            .into_iter()
            .map(|(f, l)| PortMapping::from_checked(f, l, f))
            .collect())
    }

    /// Parses `range[:range]`.
    fn include(&self, entry: &'a str) -> Result<Include<'a>, PortSpecError> {
        match entry {
            "" => {
                return Err(PortSpecError::EmptyEntry {
                    spec: self.spec.to_owned(),
                });
            }
            "all" | "none" => {
                let (token, spec) = self.token(entry);
                return Err(PortSpecError::MisplacedKeyword { token, spec });
            }
            "auto" => {
                let (token, spec) = self.token(entry);
                return Err(PortSpecError::Unsupported { token, spec });
            }
            _ => {}
        }
        let (host_text, guest_text) = match entry.split_once(':') {
            Some((h, g)) => (h, Some(g)),
            None => (entry, None),
        };
        let host = self.range(host_text, entry)?;
        let count = u32::from(host.1 - host.0) + 1;
        let Some(guest_text) = guest_text else {
            return Ok(Include {
                token: entry,
                host,
                guest_first: host.0,
            });
        };
        let (guest_first, guest_last) = match guest_text.split_once('-') {
            Some(_) => self.range(guest_text, entry)?,
            None => {
                let first = self.port(guest_text, entry)?;
                let last = u32::from(first) + count - 1;
                let last = u16::try_from(last).map_err(|_| {
                    let (token, spec) = self.token(entry);
                    PortSpecError::TargetOverflow { token, spec }
                })?;
                (first, last)
            }
        };
        let guest_count = u32::from(guest_last - guest_first) + 1;
        if guest_count != count {
            let (token, spec) = self.token(entry);
            return Err(PortSpecError::LengthMismatch {
                token,
                spec,
                host: count,
                guest: guest_count,
            });
        }
        Ok(Include {
            token: entry,
            host,
            guest_first,
        })
    }

    /// Parses `port[-port]`; `entry` is the list entry it stands in.
    fn range(&self, text: &str, entry: &str) -> Result<Range, PortSpecError> {
        let (first, last) = match text.split_once('-') {
            Some((f, l)) => (self.port(f, entry)?, self.port(l, entry)?),
            None => {
                let p = self.port(text, entry)?;
                (p, p)
            }
        };
        if first > last {
            let (token, spec) = self.token(text);
            return Err(PortSpecError::ReversedRange { token, spec });
        }
        Ok((first, last))
    }

    /// Parses one port number; an empty or non-numeric one makes the whole
    /// `entry` malformed, a number outside 1..=65535 is an invalid port.
    fn port(&self, text: &str, entry: &str) -> Result<u16, PortSpecError> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            let (token, spec) = self.token(entry);
            return Err(PortSpecError::Malformed { token, spec });
        }
        match text.parse::<u16>() {
            Ok(p) if p != 0 => Ok(p),
            _ => {
                let (token, spec) = self.token(text);
                Err(PortSpecError::InvalidPort { token, spec })
            }
        }
    }

    fn check_overlaps(&self, pieces: &mut [(PortMapping, &str)]) -> Result<(), PortSpecError> {
        pieces.sort_by_key(|(m, _)| m.host_first());
        for pair in pieces.windows(2) {
            let [(a, first), (b, second)] = pair else {
                continue;
            };
            if b.host_first() <= a.host_last() {
                return Err(PortSpecError::Overlap {
                    port: b.host_first(),
                    first: (*first).to_owned(),
                    second: (*second).to_owned(),
                    spec: self.spec.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// `port + offset`, for offsets inside a range already checked to fit.
fn shift(port: u16, offset: u16) -> u16 {
    port.saturating_add(offset)
}

/// Sorts `ranges` and merges the ones that overlap or touch.
pub(super) fn merge(mut ranges: Vec<Range>) -> Vec<Range> {
    ranges.sort_unstable();
    let mut out: Vec<Range> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match out.last_mut() {
            Some(prev) if u32::from(first) <= u32::from(prev.1) + 1 => prev.1 = prev.1.max(last),
            _ => out.push((first, last)),
        }
    }
    out
}

/// The parts of `range` outside the sorted, merged `excludes`.
pub(super) fn subtract(range: Range, excludes: &[Range]) -> Vec<Range> {
    let mut out = Vec::new();
    let mut next = Some(range.0);
    for &(ex_first, ex_last) in excludes {
        let Some(start) = next else { break };
        if ex_last < start || ex_first > range.1 {
            continue;
        }
        if ex_first > start {
            out.push((start, ex_first - 1));
        }
        next = ex_last.checked_add(1).filter(|n| *n <= range.1);
    }
    if let Some(start) = next.filter(|s| *s <= range.1) {
        out.push((start, range.1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_cases() {
        assert_eq!(subtract((1, 10), &[]), vec![(1, 10)]);
        assert_eq!(subtract((1, 10), &[(3, 4)]), vec![(1, 2), (5, 10)]);
        assert_eq!(subtract((1, 10), &[(1, 10)]), vec![]);
        assert_eq!(
            subtract((5, 10), &[(1, 6), (8, 8), (10, 20)]),
            vec![(7, 7), (9, 9)]
        );
        assert_eq!(subtract((1, u16::MAX), &[(2, u16::MAX)]), vec![(1, 1)]);
        assert_eq!(subtract((1, u16::MAX), &[(1, 1)]), vec![(2, u16::MAX)]);
    }

    #[test]
    fn merge_cases() {
        assert_eq!(
            merge(vec![(5, 6), (1, 2), (3, 4), (10, 12), (11, 11)]),
            vec![(1, 6), (10, 12)]
        );
        assert_eq!(merge(vec![(1, 2), (5, 6)]), vec![(1, 2), (5, 6)]);
        assert_eq!(
            merge(vec![(u16::MAX, u16::MAX), (1, u16::MAX)]),
            vec![(1, u16::MAX)]
        );
    }
}
