//! Contract tests of the TCP sequence-mirroring state machine: one
//! deterministic scenario per behaviour, driving `TcpConn` with hand-built
//! guest segments and a simulated host socket on a virtual clock.
//!
//! [`harness`] holds the flow under test; each other module covers one area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod closing;
mod guest_to_host;
mod handshake;
mod host_to_guest;
mod reset;
mod retransmission;
mod timeouts;
