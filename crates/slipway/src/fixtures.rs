//! What the unit tests of more than one module build from.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use nat_core::{Plan, Rules};

use crate::{Backend, BackendConfig};

/// A backend on the default plan and rules.
pub(crate) fn backend() -> Backend {
    Backend::new(
        BackendConfig::new(Plan::default(), Rules::default()),
        Instant::now(),
    )
    .unwrap()
}

/// A broadcast ARP request from the guest for the gateway.
pub(crate) fn arp_request_for_gateway() -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend([0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06]);
    frame.extend([0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend([0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 10, 0, 2, 15]);
    frame.extend([0, 0, 0, 0, 0, 0, 10, 0, 2, 2]);
    frame
}
