//! Inbound port forwarding: which host ports slipway listens on, and which
//! guest port each one leads to.
//!
//! The syntax is passt's (`-t`/`-u` options): see [`PortSpec`]. Several specs
//! (several options) combine into one [`PortForwards`] table per protocol,
//! in which a host port is forwarded by at most one spec, whatever address
//! the specs bind: a flow arriving on a host port then has one guest port.

mod parse;
mod spec;

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::str::FromStr;

pub use parse::{LINUX_EPHEMERAL_PORTS, PortSpecError};
pub use spec::PortSpec;

/// What the host side does when it cannot bind a forwarded port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BindPolicy {
    /// Every port was listed explicitly: failing to bind one is an error.
    Required,
    /// The ports come from `all` or from exclusions only: ports that cannot
    /// be bound (already in use, privileged) are skipped, and only binding
    /// none at all is an error, as in passt.
    BestEffort,
}

/// A range of consecutive host ports forwarded to as many consecutive guest
/// ports: a bijection between the two ranges.
///
/// Invariants: `host_first <= host_last`; no port is 0; the guest range
/// ends at or before 65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortMapping {
    host_first: u16,
    host_last: u16,
    guest_first: u16,
}

impl PortMapping {
    /// The mapping of the host ports `host` to the guest ports starting at
    /// `guest_first`. `None` if `host` is empty, a port is 0, or the guest
    /// range would run past 65535.
    #[must_use]
    pub fn new(host: RangeInclusive<u16>, guest_first: u16) -> Option<Self> {
        let (first, last) = (*host.start(), *host.end());
        let fits =
            u32::from(guest_first) + u32::from(last.checked_sub(first)?) <= u32::from(u16::MAX);
        (first != 0 && guest_first != 0 && fits).then_some(Self {
            host_first: first,
            host_last: last,
            guest_first,
        })
    }

    /// For ranges the parser has checked.
    pub(crate) fn from_checked(host_first: u16, host_last: u16, guest_first: u16) -> Self {
        Self {
            host_first,
            host_last,
            guest_first,
        }
    }

    /// The first host port.
    #[must_use]
    pub fn host_first(&self) -> u16 {
        self.host_first
    }

    /// The last host port.
    #[must_use]
    pub fn host_last(&self) -> u16 {
        self.host_last
    }

    /// The host ports.
    #[must_use]
    pub fn host_ports(&self) -> RangeInclusive<u16> {
        self.host_first..=self.host_last
    }

    /// The first guest port.
    #[must_use]
    pub fn guest_first(&self) -> u16 {
        self.guest_first
    }

    /// The last guest port.
    #[must_use]
    pub fn guest_last(&self) -> u16 {
        self.guest_first
            .saturating_add(self.host_last - self.host_first)
    }

    /// The guest ports.
    #[must_use]
    pub fn guest_ports(&self) -> RangeInclusive<u16> {
        self.guest_first..=self.guest_last()
    }

    /// How many ports the mapping forwards (1 to 65535).
    #[must_use]
    pub fn port_count(&self) -> u32 {
        u32::from(self.host_last - self.host_first) + 1
    }

    /// The guest port `host_port` maps to, if it is in the host range.
    #[must_use]
    pub fn guest_port(&self, host_port: u16) -> Option<u16> {
        let offset = host_port
            .checked_sub(self.host_first)
            .filter(|_| host_port <= self.host_last)?;
        self.guest_first.checked_add(offset)
    }

    /// The host port that maps to `guest_port`, if it is in the guest range:
    /// the inverse of [`guest_port`](Self::guest_port).
    #[must_use]
    pub fn host_port(&self, guest_port: u16) -> Option<u16> {
        let offset = guest_port
            .checked_sub(self.guest_first)
            .filter(|_| guest_port <= self.guest_last())?;
        self.host_first.checked_add(offset)
    }

    /// `self` followed by `next` as one mapping, if `next` continues it.
    fn joined(&self, next: &PortMapping) -> Option<PortMapping> {
        let continues = self.host_last.checked_add(1) == Some(next.host_first)
            && self.guest_last().checked_add(1) == Some(next.guest_first);
        continues.then_some(PortMapping {
            host_last: next.host_last,
            ..*self
        })
    }
}

impl fmt::Display for PortMapping {
    /// `first[-last][:tofirst[-tolast]]`, the target only if it differs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let single = self.host_first == self.host_last;
        match (single, self.host_first == self.guest_first) {
            (true, true) => write!(f, "{}", self.host_first),
            (false, true) => write!(f, "{}-{}", self.host_first, self.host_last),
            (true, false) => write!(f, "{}:{}", self.host_first, self.guest_first),
            (false, false) => write!(
                f,
                "{}-{}:{}-{}",
                self.host_first,
                self.host_last,
                self.guest_first,
                self.guest_last()
            ),
        }
    }
}

/// One forwarded port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortForward {
    /// The address the host listens on, or `None` for every address.
    pub bind: Option<IpAddr>,
    /// The port the host listens on.
    pub host_port: u16,
    /// The port the guest receives the flow on.
    pub guest_port: u16,
}

/// The forwarding table of one protocol: zero or more [`PortSpec`]s that
/// forward disjoint sets of host ports.
///
/// As text, the specs are separated by whitespace (each is one passt
/// option argument); the empty table is `none`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortForwards {
    /// The specs, ordered by their first host port.
    specs: Vec<PortSpec>,
    /// Every mapping of every spec, sorted by host port, with the index of
    /// its spec.
    index: Vec<(PortMapping, usize)>,
}

impl PortForwards {
    /// The empty table.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Combines `specs`. Fails if two of them forward the same host port.
    pub fn from_specs(specs: impl IntoIterator<Item = PortSpec>) -> Result<Self, PortSpecError> {
        let mut specs: Vec<PortSpec> = specs.into_iter().filter(|s| !s.is_empty()).collect();
        specs.sort_by_key(|s| s.mappings().first().map(PortMapping::host_first));
        let mut index: Vec<(PortMapping, usize)> = specs
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.mappings().iter().map(move |m| (*m, i)))
            .collect();
        index.sort_by_key(|(m, _)| m.host_first());
        for pair in index.windows(2) {
            let [(a, i), (b, j)] = pair else { continue };
            if b.host_first() <= a.host_last() {
                return Err(PortSpecError::SpecsOverlap {
                    port: b.host_first(),
                    first: specs[*i].to_string(),
                    second: specs[*j].to_string(),
                });
            }
        }
        Ok(Self { specs, index })
    }

    /// Parses whitespace-separated specs, leaving out `ephemeral` for `all`
    /// and exclusion-only specs (see [`PortSpec::parse_with`]).
    pub fn parse_with(input: &str, ephemeral: RangeInclusive<u16>) -> Result<Self, PortSpecError> {
        let words: Vec<&str> = input.split_whitespace().collect();
        match words.as_slice() {
            [] => Err(PortSpecError::Empty),
            ["none"] => Ok(Self::none()),
            _ if words.contains(&"none") => Err(PortSpecError::NoneCombined {
                input: input.to_owned(),
            }),
            _ => {
                let specs = words
                    .iter()
                    .map(|w| PortSpec::parse_with(w, ephemeral.clone()))
                    .collect::<Result<Vec<_>, _>>()?;
                Self::from_specs(specs)
            }
        }
    }

    /// The specs, ordered by their first host port.
    #[must_use]
    pub fn specs(&self) -> &[PortSpec] {
        &self.specs
    }

    /// Whether nothing is forwarded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The spec that forwards `host_port`, if any. `O(log n)`.
    #[must_use]
    pub fn spec_for(&self, host_port: u16) -> Option<&PortSpec> {
        let (_, i) = self.entry_for(host_port)?;
        self.specs.get(i)
    }

    /// The guest port a flow arriving on `host_port` goes to. `O(log n)` in
    /// the number of mappings.
    #[must_use]
    pub fn guest_port_for(&self, host_port: u16) -> Option<u16> {
        self.entry_for(host_port)?.0.guest_port(host_port)
    }

    fn entry_for(&self, host_port: u16) -> Option<(PortMapping, usize)> {
        let after = self
            .index
            .partition_point(|(m, _)| m.host_first() <= host_port);
        let entry = *self.index.get(after.checked_sub(1)?)?;
        (host_port <= entry.0.host_last()).then_some(entry)
    }

    /// Every forwarded port, in host port order.
    pub fn iter(&self) -> impl Iterator<Item = PortForward> + '_ {
        self.index.iter().flat_map(move |(m, i)| {
            let bind = self.specs.get(*i).and_then(PortSpec::bind);
            m.host_ports().map(move |host_port| PortForward {
                bind,
                host_port,
                guest_port: m.guest_port(host_port).unwrap_or(host_port),
            })
        })
    }
}

impl fmt::Display for PortForwards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.specs.is_empty() {
            return f.write_str("none");
        }
        for (i, spec) in self.specs.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{spec}")?;
        }
        Ok(())
    }
}

impl FromStr for PortForwards {
    type Err = PortSpecError;

    /// Parses whitespace-separated specs with [`LINUX_EPHEMERAL_PORTS`] as
    /// the ephemeral range.
    fn from_str(input: &str) -> Result<Self, PortSpecError> {
        Self::parse_with(input, LINUX_EPHEMERAL_PORTS)
    }
}

#[cfg(test)]
mod tests;
