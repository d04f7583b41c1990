//! One port forwarding spec: the argument of one `-t` or `-u` option.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::str::FromStr;

use super::parse::{self, LINUX_EPHEMERAL_PORTS, PortSpecError};
use super::{BindPolicy, PortForward, PortMapping};

/// One parsed spec in passt's syntax, `[addr[%iface]/]first[-last][:tofirst[-tolast]],...`,
/// with `~first[-last]` exclusions, `all` and `none`.
///
/// The host listens on each host port (on `bind` if set, else on every
/// address; on `interface` if set) and the guest receives the flow on the
/// mapped guest port.
///
/// The mappings are kept sorted by host port, disjoint, and merged where a
/// mapping continues the one before it with the same offset, so that two
/// specs forwarding the same ports compare equal. [`Display`](fmt::Display)
/// prints that canonical form, which parses back to an equal spec (under the
/// same ephemeral range, for `all` and exclusion-only specs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortSpec {
    bind: Option<IpAddr>,
    interface: Option<String>,
    mappings: Vec<PortMapping>,
    policy: BindPolicy,
}

impl PortSpec {
    /// The spec `none`: no forwarding.
    #[must_use]
    pub fn none() -> Self {
        Self {
            bind: None,
            interface: None,
            mappings: Vec::new(),
            policy: BindPolicy::Required,
        }
    }

    pub(super) fn from_parts(
        bind: Option<IpAddr>,
        interface: Option<String>,
        mut mappings: Vec<PortMapping>,
        policy: BindPolicy,
    ) -> Self {
        mappings.sort_by_key(PortMapping::host_first);
        let mut merged: Vec<PortMapping> = Vec::with_capacity(mappings.len());
        for m in mappings {
            match merged
                .last_mut()
                .and_then(|prev| prev.joined(&m).map(|j| (prev, j)))
            {
                Some((prev, joined)) => *prev = joined,
                None => merged.push(m),
            }
        }
        Self {
            bind,
            interface,
            mappings: merged,
            policy,
        }
    }

    /// Parses `spec`, leaving out the ports of `ephemeral` for `all` and
    /// exclusion-only specs. Pass the host's
    /// `net.ipv4.ip_local_port_range`; [`FromStr`] assumes
    /// [`LINUX_EPHEMERAL_PORTS`]. An empty `ephemeral` range leaves out
    /// nothing.
    pub fn parse_with(spec: &str, ephemeral: RangeInclusive<u16>) -> Result<Self, PortSpecError> {
        parse::parse_spec(spec, ephemeral)
    }

    /// The address the host listens on, or `None` for every address.
    #[must_use]
    pub fn bind(&self) -> Option<IpAddr> {
        self.bind
    }

    /// The host interface the listeners are bound to, if any.
    #[must_use]
    pub fn interface(&self) -> Option<&str> {
        self.interface.as_deref()
    }

    /// Whether a port that cannot be bound is an error or skipped.
    #[must_use]
    pub fn bind_policy(&self) -> BindPolicy {
        self.policy
    }

    /// The mappings, sorted by host port, pairwise disjoint.
    #[must_use]
    pub fn mappings(&self) -> &[PortMapping] {
        &self.mappings
    }

    /// Whether the spec forwards nothing (`none`).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.mappings.is_empty()
    }

    /// The mapping that forwards `host_port`, if any. `O(log n)`.
    #[must_use]
    pub fn mapping_for(&self, host_port: u16) -> Option<&PortMapping> {
        let after = self
            .mappings
            .partition_point(|m| m.host_first() <= host_port);
        let m = self.mappings.get(after.checked_sub(1)?)?;
        (host_port <= m.host_last()).then_some(m)
    }

    /// The guest port a flow arriving on `host_port` goes to. `O(log n)`.
    #[must_use]
    pub fn guest_port_for(&self, host_port: u16) -> Option<u16> {
        self.mapping_for(host_port)?.guest_port(host_port)
    }

    /// Every forwarded port, in host port order.
    pub fn iter(&self) -> impl Iterator<Item = PortForward> + '_ {
        let bind = self.bind;
        self.mappings.iter().flat_map(move |m| {
            m.host_ports().map(move |host_port| PortForward {
                bind,
                host_port,
                guest_port: m.guest_port(host_port).unwrap_or(host_port),
            })
        })
    }

    fn fmt_prefix(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(bind) = self.bind {
            write!(f, "{bind}")?;
        }
        if let Some(interface) = &self.interface {
            write!(f, "%{interface}")?;
        }
        if self.bind.is_some() || self.interface.is_some() {
            f.write_str("/")?;
        }
        Ok(())
    }

    /// Prints a best-effort spec as the exclusions that give it back.
    fn fmt_exclusions(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let forwarded: Vec<_> = self
            .mappings
            .iter()
            .map(|m| (m.host_first(), m.host_last()))
            .collect();
        let excluded = parse::subtract((1, u16::MAX), &forwarded);
        if excluded.is_empty() {
            return f.write_str("all");
        }
        for (i, (first, last)) in excluded.into_iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            if first == last {
                write!(f, "{sep}~{first}")?;
            } else {
                write!(f, "{sep}~{first}-{last}")?;
            }
        }
        Ok(())
    }
}

impl Default for PortSpec {
    fn default() -> Self {
        Self::none()
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mappings.is_empty() {
            return f.write_str("none");
        }
        self.fmt_prefix(f)?;
        match self.policy {
            BindPolicy::BestEffort => self.fmt_exclusions(f),
            BindPolicy::Required => {
                for (i, m) in self.mappings.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{m}")?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for PortSpec {
    type Err = PortSpecError;

    /// Parses one spec with [`LINUX_EPHEMERAL_PORTS`] as the ephemeral range.
    fn from_str(spec: &str) -> Result<Self, PortSpecError> {
        Self::parse_with(spec, LINUX_EPHEMERAL_PORTS)
    }
}
