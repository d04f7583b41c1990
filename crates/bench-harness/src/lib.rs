//! Benchmarks of slipway: divan microbenches of the hot paths and the
//! wall-clock harness that runs the same workloads over slipway and its peers.
//!
//! Invariant: every benchmark sends traffic only to loopback or to addresses
//! inside network namespaces the harness creates itself.
