//! `slipway-cli` makes no protocol decision and serves no frame: it turns
//! arguments into a configured backend and frontend and hands them to
//! slipway.
//!
//! What the `slipway` and `slipway-vmm` commands share: the command line
//! ([`options`]) and the setup it drives ([`setup`]: the backend and
//! capture built from the network options, logging, stop signals, exit
//! statuses).
//!
//! This library exists so the two commands parse alike; it is not an API
//! for embedders, who use the `slipway` library.

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

pub mod options;
pub mod setup;
