//! Executes the TCP sequence-mirroring state machine of `flow-table` against
//! host sockets: connect, peek, consume, write, shutdown, reset.
//!
//! Invariant: `relay-tcp` makes no protocol decisions; it carries out the
//! operations the state machine asks for and reports what the kernel did.
