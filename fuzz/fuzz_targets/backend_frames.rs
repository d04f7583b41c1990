//! Arbitrary guest frame sequences into a `Backend` with real host sockets:
//! IPv4 and IPv6 garbage (checksums repaired, through IPv6 extension
//! headers, or not; offloaded or not; TCP acknowledgments set to what the
//! backend sent, or not), interleaved with host readiness, clock jumps and
//! the host peers' moves on both loopbacks (TCP data, half-close and reset
//! from an accepted connection, UDP and DNS replies). The run itself is
//! `slipway_fuzz::frames`, where a test replays the seeds. Every
//! destination the backend could reach is host loopback: the rules deny
//! everything else (see `slipway_fuzz::loopback_config`), and the process
//! runs in a network namespace of its own where it may.
//!
//! Nothing may panic, no frame out may exceed the caller's buffer or claim
//! a checksum region outside itself, no flow table may exceed its limits,
//! and every poll loop ends. A fresh backend per input closes every socket
//! the input opened.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use slipway_fuzz::frames::Rig;

thread_local! {
    static RIG: RefCell<Option<Rig>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    RIG.with_borrow_mut(|rig| {
        rig.get_or_insert_with(Rig::new).run(data);
    });
});
