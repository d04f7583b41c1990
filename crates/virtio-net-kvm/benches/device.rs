//! Frames per second through the device core: a full queue of 1514-byte
//! frames transmitted, and received into 2048-byte buffers, against the
//! mock driver's rings in ordinary memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::virtq;

use std::time::Instant;

use divan::Bencher;
use divan::counter::BytesCount;
use virtio_net_kvm::{DEVICE_FEATURES, FrameBackend, NetConfig, NetDevice};
use virtq::{Driver, Interrupts, WRITE, guest_memory, pattern_frame, tx_header};
use vm_memory::{Bytes, GuestAddress};

const FRAME: usize = 1514;
const QUEUE: u16 = 256;
const BUFS: u64 = 0x10_0000;

fn main() {
    divan::main();
}

/// A backend that takes frames and hands out a fixed one, without
/// allocating, so the device's own cost is what is measured.
struct Sink {
    frame: Vec<u8>,
    taken: usize,
}

impl FrameBackend for Sink {
    fn handle_guest_frame(&mut self, frame: &[u8], _now: Instant) {
        self.taken += frame.len();
    }

    fn poll_guest_frame(&mut self, buf: &mut [u8], _now: Instant) -> Option<usize> {
        buf[..self.frame.len()].copy_from_slice(&self.frame);
        Some(self.frame.len())
    }
}

fn device() -> NetDevice {
    let mut device = NetDevice::new(NetConfig::default());
    device.set_acked_features(DEVICE_FEATURES).unwrap();
    device
}

#[divan::bench]
fn transmit_a_queue_of_1514_byte_frames(bencher: Bencher<'_, '_>) {
    let mem = guest_memory();
    let driver = Driver::new(&mem, 0, QUEUE, BUFS);
    let frame = pattern_frame(FRAME, 1);
    let hdr = tx_header(0, 0, 0, 0);
    // One two-descriptor chain per pair of entries: header, frame.
    let chains = QUEUE / 2;
    for c in 0..chains {
        let addr = BUFS + u64::from(c) * 2048;
        mem.write_slice(&hdr, GuestAddress(addr)).unwrap();
        mem.write_slice(&frame, GuestAddress(addr + 16)).unwrap();
        driver.store(2 * c, addr, 12, virtq::NEXT, 2 * c + 1);
        driver.store(2 * c + 1, addr + 16, FRAME as u32, 0, 0);
    }
    let mut queue = driver.queue();
    let mut device = device();
    let mut sink = Sink {
        frame: Vec::new(),
        taken: 0,
    };
    let irq = Interrupts::default();
    bencher
        .counter(BytesCount::new(usize::from(chains) * FRAME))
        .bench_local(|| {
            for c in 0..chains {
                driver.make_available(2 * c);
            }
            device.handle_tx(&mem, &mut queue, &mut sink, &irq, Instant::now());
        });
    assert!(sink.taken > 0);
}

#[divan::bench]
fn receive_a_queue_of_1514_byte_frames(bencher: Bencher<'_, '_>) {
    let mem = guest_memory();
    let driver = Driver::new(&mem, 0, QUEUE, BUFS);
    for c in 0..QUEUE {
        driver.store(c, BUFS + u64::from(c) * 2048, 2048, WRITE, 0);
    }
    let mut queue = driver.queue();
    let mut device = device();
    let mut source = Sink {
        frame: pattern_frame(FRAME, 2),
        taken: 0,
    };
    let irq = Interrupts::default();
    bencher
        .counter(BytesCount::new(usize::from(QUEUE) * FRAME))
        .bench_local(|| {
            for c in 0..QUEUE {
                driver.make_available(c);
            }
            device.handle_rx(&mem, &mut queue, &mut source, &irq, Instant::now());
        });
    assert_eq!(device.counters().rx_waits_for_buffers, 0);
}
