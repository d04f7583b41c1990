//! `flow-table` knows nothing about sockets, clocks or threads: time arrives
//! as a `now: Instant` parameter, initial sequence numbers arrive from the
//! caller, and every decision leaves as a value the caller carries out.
//!
//! The flow table of slipway ([`FlowTable`], by [`FlowKey`] and generational
//! [`FlowId`], with deadlines) and the per-flow protocol state machines
//! ([`tcp::TcpConn`], TCP sequence mirroring).
#![forbid(unsafe_code)]

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

pub mod datagram;
pub mod deadline;
pub mod key;
pub mod table;
pub mod tcp;

pub use datagram::DatagramFlowState;
pub use key::{FlowKey, IpVersion, Protocol};
pub use table::{FlowId, FlowTable, InsertError, Limits, LimitsError};
