//! Arbitrary guest frame sequences into a `Backend` with real host sockets:
//! IPv4 and IPv6 garbage (checksums repaired or not, offloaded or not),
//! interleaved with host readiness, clock jumps and the host peers' moves
//! (TCP data, half-close and reset from an accepted connection, UDP and DNS
//! replies). Every destination the backend could reach is host loopback:
//! the rules deny everything else (see `slipway_fuzz::loopback_config`),
//! and the process runs in a network namespace of its own where it may.
//!
//! Nothing may panic, no frame out may exceed the caller's buffer or claim
//! a checksum region outside itself, no flow table may exceed its limits,
//! and every poll loop ends. A fresh backend per input closes every socket
//! the input opened.
#![no_main]

use std::cell::RefCell;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use slipway::{Backend, Checksum, FrameBackend, Served};
use slipway_fuzz::{
    Clock, HostPeers, Input, assert_within_limits, fix_checksums, loopback_backend,
};

/// Operations per input.
const MAX_OPS: usize = 256;
/// Frames taken from the backend after each operation, at most.
const MAX_POLLS: usize = 256;
/// The frame buffer: the largest frame the backend may hand out.
const OUT_LEN: usize = 65536 + 14;

/// The host peers and the frame buffers, kept across inputs.
struct Rig {
    peers: HostPeers,
    out: Vec<u8>,
    frame: Vec<u8>,
}

thread_local! {
    static RIG: RefCell<Option<Rig>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    RIG.with_borrow_mut(|rig| {
        let rig = rig.get_or_insert_with(|| {
            slipway_fuzz::isolate_network();
            Rig {
                peers: HostPeers::bind(),
                out: vec![0u8; OUT_LEN],
                frame: Vec::with_capacity(OUT_LEN),
            }
        });
        rig.peers.reset();
        run(data, rig);
    });
});

fn run(data: &[u8], rig: &mut Rig) {
    let Rig { peers, out, frame } = rig;
    let mut input = Input::new(data);
    let mut clock = Clock::new();
    let mut backend = loopback_backend(clock.now());
    for _ in 0..MAX_OPS {
        let Some(op) = input.try_u8() else { break };
        let now = clock.now();
        let variant = op >> 4;
        match op & 0x0f {
            0..=5 => {
                frame.clear();
                frame.extend_from_slice(input.chunk(usize::from(u16::MAX)));
                if variant & 1 == 0 {
                    fix_checksums(frame);
                }
                match (variant >> 1) % 4 {
                    0 => backend.handle_guest_frame(frame, now),
                    1 => backend.handle_guest_frame_offloaded(frame, Checksum::Valid, now),
                    2 => {
                        let checksum = Checksum::Partial {
                            start: input.u16(),
                            offset: input.u16(),
                        };
                        backend.handle_guest_frame_offloaded(frame, checksum, now);
                    }
                    _ => backend.handle_guest_frame_offloaded(frame, Checksum::Complete, now),
                }
            }
            6 | 7 => {
                let by = Duration::from_millis(u64::from(input.u16()) * 16);
                backend.handle_timeout(clock.advance(by));
            }
            8 | 9 => host_events(&mut backend, now),
            10 => peers.tcp(input.u8(), variant, input.chunk(8192)),
            11 => peers.udp_reply(input.chunk(2048)),
            12 => peers.dns_reply(input.chunk(1024), variant & 1 == 0),
            13 => backend.set_gso_to_guest(variant & 1 == 1),
            _ => {
                // Give loopback a moment: connects and replies complete in
                // the kernel's softirq, usually before this returns.
                std::thread::yield_now();
                host_events(&mut backend, now);
            }
        }
        drain(&mut backend, out, variant & 2 == 0, clock.now());
        assert_within_limits(&backend);
    }
    host_events(&mut backend, clock.now());
    drain(&mut backend, out, true, clock.now());
    assert_within_limits(&backend);
}

fn host_events(backend: &mut Backend, now: Instant) {
    if let Err(error) = backend.handle_host_events(now) {
        panic!("the backend's epoll set failed: {error}");
    }
}

/// Takes the backend's frames for the guest, with whole or partial
/// checksums, and checks what it says of each.
fn drain(backend: &mut Backend, out: &mut [u8], whole: bool, now: Instant) {
    for _ in 0..MAX_POLLS {
        if whole {
            let Some(len) = backend.poll_guest_frame(out, now) else {
                return;
            };
            assert!(
                len <= out.len(),
                "frame of {len} bytes in a buffer of {}",
                out.len()
            );
            continue;
        }
        let Some(frame) = backend.poll_guest_frame_offloaded(out, now) else {
            return;
        };
        assert!(
            frame.len <= out.len(),
            "{frame:?} in a buffer of {}",
            out.len()
        );
        if let Checksum::Partial { start, offset } = frame.checksum {
            let end = usize::from(start) + usize::from(offset) + 2;
            assert!(
                end <= frame.len,
                "{frame:?}: checksum field beyond the frame"
            );
        }
        if frame.gso_mss.is_some() {
            assert!(
                matches!(frame.checksum, Checksum::Partial { .. }),
                "{frame:?}: a GSO frame with a whole checksum"
            );
        }
    }
}
