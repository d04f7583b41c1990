//! The flow table of slipway and the per-flow protocol state machines.
//!
//! Invariant: `flow-table` knows nothing about sockets, clocks or threads.
//! Time arrives as a `now: Instant` parameter, initial sequence numbers arrive
//! from the caller, and every decision leaves as a value the caller executes.
#![forbid(unsafe_code)]

pub mod datagram;
pub mod deadline;
pub mod key;
pub mod table;
pub mod tcp;

pub use datagram::DatagramFlowState;
pub use key::{FlowKey, IpVersion, Protocol};
pub use table::{FlowId, FlowTable, InsertError, Limits, LimitsError};
