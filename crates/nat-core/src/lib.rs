//! The address plan and the stateless translation rules of slipway.
//!
//! `nat-core` decides, for every flow the guest opens and every connection the
//! host forwards inward, where it goes: a host address to connect to, the DNS
//! upstream, an answer from slipway itself, or a denial with its reason.
//!
//! Invariant: `nat-core` knows nothing about sockets, clocks or frames. It
//! performs no I/O and holds no per-flow state; every verdict is a pure
//! function of the configuration and the flow's addresses.
#![forbid(unsafe_code)]
