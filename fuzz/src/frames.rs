//! The `backend_frames` target's run, here so that a test can replay the
//! committed seeds through exactly what the fuzzer runs and check which
//! parts of the backend they reach (see the tests at the end).
//!
//! An input is a list of operations: guest frames (checksums repaired or
//! not, offloaded or not; one kind has its TCP acknowledgment number set
//! to what the backend last sent that guest port, so that a seed can
//! complete a handshake with a backend whose ISNs are random), clock
//! jumps, host readiness, and the host peers' moves.

use std::time::{Duration, Instant};

use slipway::{Backend, Checksum, FrameBackend, Served};

use crate::checksum::transport;
use crate::{Clock, HostPeers, Input, assert_within_limits, fix_checksums, loopback_backend};

/// Operations per input.
const MAX_OPS: usize = 256;
/// Frames taken from the backend after each operation, at most.
const MAX_POLLS: usize = 256;
/// The frame buffer: the largest frame the backend may hand out.
const OUT_LEN: usize = 65536 + 14;
/// The low nibble of the frame operation whose TCP acknowledgment number
/// is set from [`Acks`].
pub const OP_FRAME_ACKED: u8 = 5;
/// Guest ports whose next sequence number [`Acks`] remembers.
const ACK_SLOTS: usize = 16;
/// Frames the backend sent that [`Rig::run_recorded`] keeps at most.
const MAX_RECORDED: usize = 4096;

/// The next sequence number the backend's segments to each guest port
/// leave off at, for the last [`ACK_SLOTS`] ports; and, when recording,
/// the frames themselves.
#[derive(Debug, Default)]
struct Acks {
    slots: Vec<(u16, u32)>,
    recorded: Option<Vec<Vec<u8>>>,
}

impl Acks {
    /// Notes a frame the backend sent the guest.
    fn observe(&mut self, frame: &[u8]) {
        if let Some(recorded) = &mut self.recorded {
            if recorded.len() < MAX_RECORDED {
                recorded.push(frame.to_vec());
            }
        }
        let Some((6, start, end)) = transport(frame) else {
            return;
        };
        let Some(tcp) = frame.get(start..end) else {
            return;
        };
        let (Some(port), Some(seq), Some(&offset), Some(&flags)) =
            (tcp.get(2..4), tcp.get(4..8), tcp.get(12), tcp.get(13))
        else {
            return;
        };
        let port = u16::from_be_bytes([port[0], port[1]]);
        let seq = u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]);
        let payload = tcp.len().saturating_sub(usize::from(offset >> 4) * 4);
        let control = u32::from(flags & 0x02 != 0) + u32::from(flags & 0x01 != 0);
        let next = seq
            .wrapping_add(u32::try_from(payload).unwrap_or(0))
            .wrapping_add(control);
        self.slots.retain(|(p, _)| *p != port);
        if self.slots.len() >= ACK_SLOTS {
            self.slots.remove(0);
        }
        self.slots.push((port, next));
    }

    /// Sets the acknowledgment number of a guest TCP segment to what the
    /// backend sent its source port last, if it sent any.
    fn apply(&self, frame: &mut [u8]) {
        let Some((6, start, _)) = transport(frame) else {
            return;
        };
        let Some(port) = frame.get(start..start + 2) else {
            return;
        };
        let port = u16::from_be_bytes([port[0], port[1]]);
        let Some(&(_, next)) = self.slots.iter().find(|(p, _)| *p == port) else {
            return;
        };
        if let Some(ack) = frame.get_mut(start + 8..start + 12) {
            ack.copy_from_slice(&next.to_be_bytes());
        }
    }
}

/// The host peers and the frame buffers, kept across inputs.
#[derive(Debug)]
pub struct Rig {
    peers: HostPeers,
    out: Vec<u8>,
    frame: Vec<u8>,
}

impl Rig {
    /// Moves into a private network namespace where it may and binds the
    /// host peers there.
    #[must_use]
    pub fn new() -> Self {
        crate::isolate_network();
        Self {
            peers: HostPeers::bind(),
            out: vec![0u8; OUT_LEN],
            frame: Vec::with_capacity(OUT_LEN),
        }
    }

    /// Runs one input against a fresh backend and returns the backend, its
    /// flows still open, for a caller that reads its counters.
    pub fn run(&mut self, data: &[u8]) -> Backend {
        self.run_with(data, Acks::default()).0
    }

    /// [`Rig::run`], and the frames the backend sent the guest (the first
    /// [`MAX_RECORDED`]).
    pub fn run_recorded(&mut self, data: &[u8]) -> (Backend, Vec<Vec<u8>>) {
        let acks = Acks {
            recorded: Some(Vec::new()),
            ..Acks::default()
        };
        let (backend, acks) = self.run_with(data, acks);
        (backend, acks.recorded.unwrap_or_default())
    }

    fn run_with(&mut self, data: &[u8], mut acks: Acks) -> (Backend, Acks) {
        self.peers.reset();
        let Self { peers, out, frame } = self;
        let mut input = Input::new(data);
        let mut clock = Clock::new();
        let mut backend = loopback_backend(clock.now());
        for _ in 0..MAX_OPS {
            let Some(op) = input.try_u8() else { break };
            let now = clock.now();
            let variant = op >> 4;
            match op & 0x0f {
                kind @ 0..=5 => {
                    frame.clear();
                    frame.extend_from_slice(input.chunk(usize::from(u16::MAX)));
                    if kind == OP_FRAME_ACKED {
                        acks.apply(frame);
                    }
                    guest_frame(&mut backend, frame, variant, &mut input, now);
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
                    // Give loopback a moment: connects and replies complete
                    // in the kernel's softirq, usually before this returns.
                    std::thread::yield_now();
                    host_events(&mut backend, now);
                }
            }
            drain(&mut backend, out, variant & 2 == 0, &mut acks, clock.now());
            assert_within_limits(&backend);
        }
        host_events(&mut backend, clock.now());
        drain(&mut backend, out, true, &mut acks, clock.now());
        assert_within_limits(&backend);
        (backend, acks)
    }
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

/// Hands `frame` to the backend as `variant` says: checksums repaired
/// (bit 0 clear) or not, then verified, vouched for, partial (offsets from
/// the input) or complete.
fn guest_frame(
    backend: &mut Backend,
    frame: &mut [u8],
    variant: u8,
    input: &mut Input<'_>,
    now: Instant,
) {
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

fn host_events(backend: &mut Backend, now: Instant) {
    if let Err(error) = backend.handle_host_events(now) {
        panic!("the backend's epoll set failed: {error}");
    }
}

/// Takes the backend's frames for the guest, with whole or partial
/// checksums, checks what it says of each and notes their TCP sequence
/// numbers.
fn drain(backend: &mut Backend, out: &mut [u8], whole: bool, acks: &mut Acks, now: Instant) {
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
            acks.observe(&out[..len]);
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
        acks.observe(&out[..frame.len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed seed `name` of `backend_frames`.
    fn seed(name: &str) -> Vec<u8> {
        let path = format!("{}/seeds/backend_frames/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Whether `frames` hold an IPv6 message of `protocol` whose first two
    /// bytes (ICMPv6 type and code, or the UDP source port's) are `head`.
    fn has(frames: &[Vec<u8>], protocol: u8, head: [u8; 2]) -> bool {
        frames.iter().any(|f| {
            f.get(12..14) == Some(&[0x86, 0xdd][..])
                && transport(f).is_some_and(|(p, start, _)| {
                    p == protocol && f.get(start..start + 2) == Some(&head[..])
                })
        })
    }

    /// One test, so that one thread (the one [`crate::isolate_network`]
    /// moves into a private namespace where it may) opens every socket.
    #[test]
    fn the_ipv6_seeds_reach_every_ipv6_path_of_the_backend() {
        let mut rig = Rig::new();
        for name in ["hand-built-ipv6-0", "hand-built-ipv6-0-offloaded"] {
            hand_built_reaches_every_path(&mut rig, name);
        }
        let backend = rig.run(&seed("ipv6-traffic-0"));
        let c = backend.counters();
        // The captured HTTP exchange and UDP datagram reached the peers.
        assert!(c.tcp_bytes_to_host > 0, "{c:?}");
        assert!(c.tcp_bytes_to_guest >= 3000, "{c:?}");
        assert!(c.udp_bytes_to_host > 0, "{c:?}");
    }

    fn hand_built_reaches_every_path(rig: &mut Rig, name: &str) {
        let (backend, frames) = rig.run_recorded(&seed(name));
        let c = backend.counters();
        // Neighbour and router advertisements, DHCPv6 Advertise and Reply,
        // an echo reply.
        assert!(
            has(&frames, 58, [136, 0]),
            "{name}: no neighbour advertisement"
        );
        assert!(
            has(&frames, 58, [134, 0]),
            "{name}: no router advertisement"
        );
        assert!(
            has(&frames, 17, 547u16.to_be_bytes()),
            "{name}: no DHCPv6 answer"
        );
        assert!(has(&frames, 58, [129, 0]), "{name}: no echo reply");
        // The handshake completed: the guest's data reached the host peer
        // on ::1 and the peer's came back.
        assert_eq!(c.tcp_bytes_to_host, 16, "{name}: {c:?}");
        assert!(c.tcp_bytes_to_guest >= 15, "{name}: {c:?}");
        // The SYN behind an atomic fragment opened a flow of its own.
        assert!(c.tcp_flows_opened >= 2, "{name}: {c:?}");
        // The plain datagram and the one behind two options.
        assert!(c.udp_flows_opened >= 2, "{name}: {c:?}");
        assert!(c.udp_bytes_to_host >= 14 + 18, "{name}: {c:?}");
        assert!(c.udp_bytes_to_guest >= 14, "{name}: {c:?}");
        assert_eq!(c.dns_queries, 1, "{name}: {c:?}");
        let drops = backend.frame_counters();
        for reason in [
            frontdesk::DropReason::BadChecksum,
            frontdesk::DropReason::NdpInvalid,
            frontdesk::DropReason::Dhcpv6Malformed,
            frontdesk::DropReason::Dhcpv6Ignored,
            frontdesk::DropReason::ExtensionHeaderLimit,
        ] {
            assert_eq!(drops.drops(reason), 0, "{name}: {reason:?}");
        }
    }
}
