//! Virtio descriptor tables, available rings, indirect tables and buffers
//! written byte by byte by the input into guest memory, served by
//! `virtio_net_kvm::NetDevice` for a test peer, with the features the
//! input acks. The input rewrites memory between the device's calls, as a
//! driver racing the device would.
//!
//! Nothing may panic and every call returns; every frame handed to the peer
//! fits the largest frame and, when offloaded with a partial checksum, has
//! its checksum field inside it; every frame the peer gave the device is
//! delivered or dropped with a count (the one waiting for buffers at the
//! end is dropped by a reset, which counts it).
#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use slipway_fuzz::Input;
use virtio_net_kvm::{
    Checksum, DEVICE_FEATURES, FrameBackend, GuestFrame, MAX_FRAME_LEN, NetConfig, NetDevice,
    Notifier,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest memory: the receive queue's rings at 0, the transmit queue's at
/// [`TX_RINGS`] (descriptor table, then available ring a page on, used
/// ring two pages on), buffers from 0x6000.
const MEM: usize = 64 << 10;
const RX_RINGS: u64 = 0x0000;
const TX_RINGS: u64 = 0x3000;
/// The largest queue: its three rings fit in three pages.
const MAX_SIZE_LOG2: u8 = 8;

/// Guest memory and the device, made once (their buffers are large) and
/// reset before each input: memory zeroed, the device reset, which leaves
/// it as new but for its counters.
struct Rig {
    memory: GuestMemoryMmap,
    device: NetDevice,
}

thread_local! {
    static RIG: RefCell<Option<Rig>> = const { RefCell::new(None) };
}

static ZEROS: [u8; MEM] = [0; MEM];

/// Takes the guest's frames and hands out the input's.
struct Peer {
    to_guest: VecDeque<(usize, u8, Checksum)>,
    offload: bool,
    from_guest: u64,
}

impl Peer {
    fn take(&mut self, frame: &[u8], checksum: Checksum) {
        assert!(
            frame.len() <= MAX_FRAME_LEN,
            "a frame of {} bytes",
            frame.len()
        );
        if let Checksum::Partial { start, offset } = checksum {
            let end = usize::from(start) + usize::from(offset) + 2;
            assert!(
                end <= frame.len(),
                "{checksum:?} outside a frame of {}",
                frame.len()
            );
        }
        self.from_guest += 1;
    }

    fn give(&mut self, buf: &mut [u8]) -> Option<(usize, Checksum)> {
        let (len, fill, checksum) = self.to_guest.pop_front()?;
        // Lengths past the buffer are the backend's fault, which the
        // device counts; the bytes that fit are filled.
        let n = len.min(buf.len());
        buf[..n].fill(fill);
        Some((len, checksum))
    }
}

impl FrameBackend for Peer {
    fn handle_guest_frame(&mut self, frame: &[u8], _now: Instant) {
        self.take(frame, Checksum::Complete);
    }

    fn poll_guest_frame(&mut self, buf: &mut [u8], _now: Instant) -> Option<usize> {
        self.give(buf).map(|(len, _)| len)
    }

    fn offloads_checksums(&self) -> bool {
        self.offload
    }

    fn handle_guest_frame_offloaded(&mut self, frame: &[u8], checksum: Checksum, _now: Instant) {
        self.take(frame, checksum);
    }

    fn poll_guest_frame_offloaded(
        &mut self,
        buf: &mut [u8],
        _now: Instant,
    ) -> Option<GuestFrame> {
        let (len, checksum) = self.give(buf)?;
        Some(GuestFrame {
            len,
            checksum,
            gso_mss: None,
        })
    }
}

struct Quiet;

impl Notifier for Quiet {
    fn notify_used(&self) -> io::Result<()> {
        Ok(())
    }
}

fn queue(base: u64, size_log2: u8) -> Option<Queue> {
    let mut queue = Queue::new(1 << MAX_SIZE_LOG2).ok()?;
    queue
        .try_set_size(1 << (size_log2 % (MAX_SIZE_LOG2 + 1)))
        .ok()?;
    queue.try_set_desc_table_address(GuestAddress(base)).ok()?;
    queue
        .try_set_avail_ring_address(GuestAddress(base + 0x1000))
        .ok()?;
    queue
        .try_set_used_ring_address(GuestAddress(base + 0x2000))
        .ok()?;
    queue.set_ready(true);
    Some(queue)
}

fuzz_target!(|data: &[u8]| {
    RIG.with_borrow_mut(|rig| {
        let rig = rig.get_or_insert_with(|| Rig {
            memory: match GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]) {
                Ok(memory) => memory,
                Err(error) => panic!("no guest memory: {error}"),
            },
            device: NetDevice::new(NetConfig::default()),
        });
        if rig.memory.write_slice(&ZEROS, GuestAddress(0)).is_err() {
            panic!("guest memory cannot be cleared");
        }
        rig.device.reset();
        run(data, &rig.memory, &mut rig.device);
    });
});

/// Writes a chunk of the input at an offset it chooses (wrapping inside
/// guest memory, cut at its end).
fn write_memory(input: &mut Input<'_>, memory: &GuestMemoryMmap) {
    let at = usize::from(input.u16()) % MEM;
    let bytes = input.chunk(512);
    let n = bytes.len().min(MEM - at);
    let _ = memory.write_slice(&bytes[..n], GuestAddress(at as u64));
}

fn run(data: &[u8], memory: &GuestMemoryMmap, device: &mut NetDevice) {
    let mut input = Input::new(data);
    let features = input.u64() & DEVICE_FEATURES;
    let before = device.counters().clone();
    if device.set_acked_features(features).is_err() {
        return;
    }
    let (Some(mut rx), Some(mut tx)) = (queue(RX_RINGS, input.u8()), queue(TX_RINGS, input.u8()))
    else {
        return;
    };
    let mut peer = Peer {
        to_guest: VecDeque::new(),
        offload: input.u8() & 1 == 1,
        from_guest: 0,
    };
    let mut offered = 0usize;
    let now = Instant::now();
    for _ in 0..64 {
        let Some(op) = input.try_u8() else { break };
        match op % 6 {
            0 | 1 => write_memory(&mut input, memory),
            2 => {
                let len = match op >> 4 {
                    0 => 0,
                    1 => MAX_FRAME_LEN,
                    2 => MAX_FRAME_LEN + 1,
                    _ => usize::from(input.u16()),
                };
                let checksum = if op & 0x08 == 0 {
                    Checksum::Complete
                } else {
                    Checksum::Partial {
                        start: input.u16(),
                        offset: input.u16(),
                    }
                };
                if peer.to_guest.len() < 16 {
                    peer.to_guest.push_back((len, input.u8(), checksum));
                    offered += 1;
                }
            }
            3 => {
                device.handle_tx(memory, &mut tx, &mut peer, &Quiet, now);
            }
            4 => {
                device.handle_rx(memory, &mut rx, &mut peer, &Quiet, now);
            }
            _ => device.reset(),
        }
    }
    // A frame still waiting for buffers is dropped (and counted) by the
    // next input's reset; count it here.
    device.reset();
    let (c, b) = (device.counters(), &before);
    assert_eq!(
        c.tx_frames - b.tx_frames,
        peer.from_guest,
        "frames to the peer miscounted"
    );
    let taken = (offered - peer.to_guest.len()) as u64;
    let accounted = (c.rx_frames - b.rx_frames)
        + (c.rx_too_big - b.rx_too_big)
        + (c.rx_write_errors - b.rx_write_errors)
        + (c.rx_backend_bad_length - b.rx_backend_bad_length)
        + (c.rx_backend_bad_checksum - b.rx_backend_bad_checksum)
        + (c.rx_dropped_at_reset - b.rx_dropped_at_reset);
    assert!(
        taken <= accounted,
        "{taken} frames taken from the peer, {accounted} accounted for: {c:?}"
    );
}
