//! Each option's value syntax, checked into the type `Options` holds.

use std::net::{IpAddr, SocketAddr};

use nat_core::{Cidr, HostLoopback, MTU_MAX, MTU_MIN, Plan, PortForwards, PortSpec};

use super::table::Opt;
use super::{NetnsTarget, UsageError};

pub(super) fn fd(name: &str, value: &str) -> Result<i32, UsageError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UsageError::invalid_form(name, value, Opt::Fd));
    }
    value
        .parse::<i32>()
        .map_err(|_| UsageError::invalid_form(name, value, Opt::Fd))
}

pub(super) fn max_flows(name: &str, value: &str) -> Result<u64, UsageError> {
    let bad = || UsageError::invalid_form(name, value, Opt::MaxFlows);
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match value.parse::<u64>() {
        Ok(n) if n <= flow_table::Limits::DEFAULT.total() => Ok(n),
        _ => Err(bad()),
    }
}

pub(super) fn port_spec(name: &str, value: &str) -> Result<PortSpec, UsageError> {
    let spec: PortSpec = value
        .parse()
        .map_err(|e| UsageError::invalid(name, value, e))?;
    if spec.interface().is_some() {
        return Err(UsageError::invalid(
            name,
            value,
            "binding a forward to an interface (%IFACE) is not supported: \
             expected [ADDR/]FIRST[-LAST][:TOFIRST[-TOLAST]]",
        ));
    }
    Ok(spec)
}

/// Combines the specs of repeated `-t` (or `-u`) options into one table.
pub(super) fn forwards(
    name: &str,
    specs: Vec<(String, PortSpec)>,
) -> Result<PortForwards, UsageError> {
    let has_none = specs.iter().any(|(text, _)| text == "none");
    if has_none && specs.len() > 1 {
        return Err(UsageError::new(format!(
            "{name}: \"none\" cannot be combined with other {name} options"
        )));
    }
    PortForwards::from_specs(specs.into_iter().map(|(_, spec)| spec))
        .map_err(|e| UsageError::new(format!("{name}: {e}")))
}

pub(super) fn mtu(name: &str, value: &str) -> Result<u16, UsageError> {
    let bad = || UsageError::invalid_form(name, value, Opt::Mtu);
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match value.parse::<u16>() {
        Ok(n) if (MTU_MIN..=MTU_MAX).contains(&n) => Ok(n),
        _ => Err(bad()),
    }
}

/// `none`, or an address of `plan`'s gateway: nat-core maps host loopback
/// only through the gateway, so no other guest address can take its place.
pub(super) fn host_loopback(
    name: &str,
    value: &str,
    plan: &Plan,
) -> Result<HostLoopback, UsageError> {
    if value == "none" {
        return Ok(HostLoopback::OFF);
    }
    let Ok(addr) = value.parse::<IpAddr>() else {
        return Err(UsageError::invalid_form(name, value, Opt::MapHostLoopback));
    };
    let is_gateway = match addr {
        IpAddr::V4(a) => plan.ipv4().is_some_and(|p| p.gateway() == a),
        IpAddr::V6(a) => plan
            .ipv6()
            .is_some_and(|p| p.gateway() == a || p.gateway_link_local() == a),
    };
    if is_gateway {
        Ok(HostLoopback::LOOPBACK)
    } else {
        let gateways: Vec<String> = [
            plan.ipv4().map(|p| p.gateway().to_string()),
            plan.ipv6().map(|p| p.gateway().to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        Err(UsageError::invalid(
            name,
            value,
            format!(
                "slipway maps host loopback only through the gateway: expected {}, or none",
                gateways.join(" or ")
            ),
        ))
    }
}

pub(super) fn deny(name: &str, value: &str) -> Result<Vec<Cidr>, UsageError> {
    if value.is_empty() {
        return Err(UsageError::invalid_form(name, value, Opt::Deny));
    }
    value
        .split(',')
        .map(|part| {
            part.parse::<Cidr>().map_err(|e| {
                UsageError::invalid(name, value, format!("{e} (expected CIDR[,CIDR...])"))
            })
        })
        .collect()
}

pub(super) fn dns_upstream(name: &str, value: &str) -> Result<SocketAddr, UsageError> {
    let addr = value.parse::<SocketAddr>().ok().or_else(|| {
        value
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    });
    match addr {
        Some(addr) if addr.port() == 0 => Err(UsageError::invalid(
            name,
            value,
            "port 0: expected a port from 1 to 65535",
        )),
        Some(addr) => Ok(addr),
        None => Err(UsageError::invalid_form(name, value, Opt::DnsUpstream)),
    }
}

pub(super) fn ifname(name: &str, value: &str) -> Result<String, UsageError> {
    let ok = (1..=15).contains(&value.len())
        && value != "."
        && value != ".."
        && !value
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(value.to_owned())
    } else {
        Err(UsageError::invalid_form(name, value, Opt::Ifname))
    }
}

pub(super) fn netns(name: &str, value: &str) -> Result<NetnsTarget, UsageError> {
    if value.is_empty() {
        return Err(UsageError::invalid_form(name, value, Opt::Netns));
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return match value.parse::<i32>() {
            Ok(pid) if pid > 0 => Ok(NetnsTarget::Pid(pid)),
            _ => Err(UsageError::invalid(
                name,
                value,
                "not a process id: expected a number from 1 to 2147483647, or a path",
            )),
        };
    }
    Ok(NetnsTarget::Path(value.to_owned()))
}
