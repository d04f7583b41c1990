//! The address plan options: which families the guest gets (`-4`, `-6`,
//! as passt's) and its addresses in each (`--network`, `-a`/`--address`,
//! `-g`/`--gateway`, `--dns-forward`; passt's names where passt has the
//! option). Each address option takes an address of either family and sets
//! that family's value; the plan builder checks them together, and its
//! error names the option.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nat_core::{Cidr, IPV6_MIN_MTU, Ipv4Cidr, Ipv6Cidr, Plan, PlanBuilder, PlanField};

use super::table::Opt;
use super::{Options, UsageError};

/// The address families the guest gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Families {
    /// IPv4 and IPv6 (the default).
    #[default]
    Both,
    /// IPv4 alone (`-4`, `--ipv4-only`): nothing of IPv6 is answered,
    /// relayed or forwarded.
    Ipv4Only,
    /// IPv6 alone (`-6`, `--ipv6-only`): nothing of IPv4 is answered,
    /// relayed or forwarded.
    Ipv6Only,
}

/// One value per address family, each unset unless an option set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerFamily<V4, V6> {
    /// The IPv4 value.
    pub v4: Option<V4>,
    /// The IPv6 value.
    pub v6: Option<V6>,
}

impl<V4, V6> Default for PerFamily<V4, V6> {
    fn default() -> Self {
        Self { v4: None, v6: None }
    }
}

/// The plan's addresses the options set; unset ones keep the plan's
/// defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressOptions {
    /// The guest's network (`--network`).
    pub network: PerFamily<Ipv4Cidr, Ipv6Cidr>,
    /// The guest's address (`-a`, `--address`): its DHCP lease, its
    /// DHCPv6 address.
    pub address: PerFamily<Ipv4Addr, Ipv6Addr>,
    /// The gateway's address (`-g`, `--gateway`).
    pub gateway: PerFamily<Ipv4Addr, Ipv6Addr>,
    /// The address the guest sends DNS queries to (`--dns-forward`).
    pub dns: PerFamily<Ipv4Addr, Ipv6Addr>,
}

/// The long name of an address option, for messages.
fn long_name(opt: Opt) -> &'static str {
    match opt {
        Opt::Network => "--network",
        Opt::Address => "--address",
        Opt::Gateway => "--gateway",
        _ => "--dns-forward",
    }
}

/// Sets `slot` to `value`, unless an earlier option set it already.
fn set_once<T: std::fmt::Display>(
    slot: &mut Option<T>,
    value: T,
    name: &str,
    family: &str,
) -> Result<(), UsageError> {
    if let Some(earlier) = slot {
        return Err(UsageError::new(format!(
            "{name}: given twice for {family} ({earlier} and {value}): give one address of each family"
        )));
    }
    *slot = Some(value);
    Ok(())
}

impl AddressOptions {
    /// Takes the value of address option `opt`, given as `name`.
    pub(super) fn apply(&mut self, opt: Opt, name: &str, value: &str) -> Result<(), UsageError> {
        if opt == Opt::Network {
            let network: Cidr = value
                .parse()
                .map_err(|e| UsageError::invalid(name, value, e))?;
            return match network {
                Cidr::V4(n) => set_once(&mut self.network.v4, n, name, "IPv4"),
                Cidr::V6(n) => set_once(&mut self.network.v6, n, name, "IPv6"),
            };
        }
        let addr: IpAddr = value
            .parse()
            .map_err(|_| UsageError::invalid_form(name, value, opt))?;
        let slot = match opt {
            Opt::Address => &mut self.address,
            Opt::Gateway => &mut self.gateway,
            _ => &mut self.dns,
        };
        match addr {
            IpAddr::V4(a) => set_once(&mut slot.v4, a, name, "IPv4"),
            IpAddr::V6(a) => set_once(&mut slot.v6, a, name, "IPv6"),
        }
    }

    /// The option that sets a value of IPv4 (`v6` false) or IPv6, if any.
    fn first_of_family(&self, v6: bool) -> Option<&'static str> {
        let set =
            |opt, v4_set: bool, v6_set: bool| (if v6 { v6_set } else { v4_set }).then_some(opt);
        [
            set(
                Opt::Network,
                self.network.v4.is_some(),
                self.network.v6.is_some(),
            ),
            set(
                Opt::Address,
                self.address.v4.is_some(),
                self.address.v6.is_some(),
            ),
            set(
                Opt::Gateway,
                self.gateway.v4.is_some(),
                self.gateway.v6.is_some(),
            ),
            set(
                Opt::DnsForward,
                self.dns.v4.is_some(),
                self.dns.v6.is_some(),
            ),
        ]
        .into_iter()
        .flatten()
        .next()
        .map(long_name)
    }
}

/// `builder` with `set` applied to `value`, if there is one.
fn with<T>(
    builder: PlanBuilder,
    value: Option<T>,
    set: fn(PlanBuilder, T) -> PlanBuilder,
) -> PlanBuilder {
    match value {
        Some(value) => set(builder, value),
        None => builder,
    }
}

/// The option a plan field comes from.
fn option_of(field: Option<PlanField>) -> &'static str {
    match field {
        Some(PlanField::Ipv4Network | PlanField::Ipv6Network) => "--network",
        Some(PlanField::Ipv4Guest | PlanField::Ipv6Guest) => "--address",
        Some(PlanField::Ipv4Gateway | PlanField::Ipv6Gateway) => "--gateway",
        Some(PlanField::Ipv4Dns | PlanField::Ipv6Dns) => "--dns-forward",
        Some(PlanField::Mtu) => "--mtu",
        Some(PlanField::Ipv6GatewayLinkLocal | PlanField::GatewayMac | PlanField::GuestMac)
        | None => "address plan",
    }
}

impl Options {
    /// The address plan the options describe.
    ///
    /// # Errors
    /// A [`UsageError`] naming the option whose value the plan refuses, or
    /// an address option of a family `-4` or `-6` turns off.
    pub fn plan(&self) -> Result<Plan, UsageError> {
        let a = &self.addresses;
        let off = match self.families {
            Families::Both => None,
            Families::Ipv4Only => Some(("IPv6", "-4", a.first_of_family(true))),
            Families::Ipv6Only => Some(("IPv4", "-6", a.first_of_family(false))),
        };
        if let Some((family, flag, Some(name))) = off {
            return Err(UsageError::new(format!(
                "{name}: an {family} address, but {flag} turns {family} off"
            )));
        }
        let mut builder = Plan::builder().mtu(self.mtu);
        builder = with(builder, a.network.v4, PlanBuilder::ipv4_network);
        builder = with(builder, a.network.v6, PlanBuilder::ipv6_network);
        builder = with(builder, a.address.v4, PlanBuilder::ipv4_guest);
        builder = with(builder, a.address.v6, PlanBuilder::ipv6_guest);
        builder = with(builder, a.gateway.v4, PlanBuilder::ipv4_gateway);
        builder = with(builder, a.gateway.v6, PlanBuilder::ipv6_gateway);
        builder = with(builder, a.dns.v4, PlanBuilder::ipv4_dns);
        builder = with(builder, a.dns.v6, PlanBuilder::ipv6_dns);
        builder = match self.families {
            Families::Ipv4Only => builder.disable_ipv6(),
            Families::Ipv6Only => builder.disable_ipv4(),
            // Linux turns IPv6 off on a link this small, and so does the plan.
            Families::Both if self.mtu < IPV6_MIN_MTU => builder.disable_ipv6(),
            Families::Both => builder,
        };
        builder
            .build()
            .map_err(|e| UsageError::new(format!("{}: {e}", option_of(e.field()))))
    }
}
