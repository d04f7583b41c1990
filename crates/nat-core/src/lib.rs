//! `nat-core` knows nothing about sockets, clocks or frames: it performs no
//! I/O, holds no per-flow state, and every verdict is a pure function of
//! the configuration and the flow's addresses.
//!
//! The address plan and the stateless translation rules of slipway: for
//! every flow the guest opens and every connection the host forwards
//! inward, where it goes: a host address to connect to, the DNS upstream,
//! an answer from slipway itself, or a denial with its reason.
//!
//! # Map
//!
//! - [`Plan`] (built with [`PlanBuilder`]): the guest's networks, the
//!   gateway, DNS and guest addresses, the MTU and MAC addresses.
//! - [`Rules`]: host-loopback mapping ([`HostLoopback`]), the [`DenyList`]
//!   of [`Cidr`] prefixes, inbound [`PortForwards`] in passt's spec syntax,
//!   and the DNS upstream.
//! - [`Nat`]: a plan and its rules checked together;
//!   [`Nat::translate_outbound`] gives a [`Verdict`] for each flow the guest
//!   opens, [`Nat::translate_inbound`] the guest end of each forwarded flow.
#![forbid(unsafe_code)]

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

mod cidr;
mod deny;
mod forward;
mod mac;
mod plan;
mod rules;
mod translate;

pub use cidr::{Cidr, CidrError, Ipv4Cidr, Ipv6Cidr};
pub use deny::DenyList;
pub use forward::{
    BindPolicy, LINUX_EPHEMERAL_PORTS, PortForward, PortForwards, PortMapping, PortSpec,
    PortSpecError,
};
pub use mac::{MacAddr, MacAddrError};
pub use plan::{
    DEFAULT_GATEWAY_MAC, DEFAULT_GUEST_MAC, DEFAULT_MTU, IPV6_MIN_MTU, Ipv4Plan, Ipv6Plan, MTU_MAX,
    MTU_MIN, Plan, PlanBuilder, PlanError, PlanField,
};
pub use rules::{HostLoopback, Rules, RulesError};
pub use translate::{DenyReason, DnsUpstream, IpFamily, LocalService, Nat, Protocol, Verdict};
