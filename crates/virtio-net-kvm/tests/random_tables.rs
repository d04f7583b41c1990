//! Random descriptor tables, available rings and indirect tables: the device
//! never panics, never loops without bound, accounts for every frame the
//! backend hands it, and never allocates more than a bounded amount, which a
//! counting global allocator measures.
//!
//! This binary holds one test so that no other test's allocations land in
//! the measurement.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::virtq;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use proptest::prelude::*;
use virtio_bindings::bindings::virtio_ring::{
    VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_net_kvm::{DEVICE_FEATURES, F_MRG_RXBUF, MAX_FRAME_LEN, NetConfig, NetDevice};
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use virtq::{Interrupts, Peer};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Tracks bytes currently allocated and the peak since the last reset.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to the system allocator with the caller's own
// arguments; the counters are bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Guest memory: 1 MiB. Rings at 0, indirect tables and buffers above.
const MEM: u64 = 1 << 20;

/// The most the device may allocate while serving any queue: its receive
/// segment list, one entry per byte of the largest frame at worst, and the
/// chain list, one entry per queue entry.
const ALLOCATION_BOUND: usize = (16 + 8) * (12 + MAX_FRAME_LEN) + 64 * 256 + (64 << 10);

fn address() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0x1_0000..MEM,
        1 => (MEM - 64)..(MEM + 64),
        1 => any::<u64>(),
    ]
}

fn length() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..4096,
        1 => Just(0u32),
        1 => (u32::MAX - 16)..=u32::MAX,
        1 => any::<u32>(),
    ]
}

fn flags() -> impl Strategy<Value = u16> {
    let next = VRING_DESC_F_NEXT as u16;
    let write = VRING_DESC_F_WRITE as u16;
    let indirect = VRING_DESC_F_INDIRECT as u16;
    prop_oneof![
        3 => Just(next),
        3 => Just(next | write),
        2 => Just(0u16),
        2 => Just(write),
        1 => Just(indirect),
        1 => any::<u16>(),
    ]
}

#[derive(Clone, Debug)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

fn desc() -> impl Strategy<Value = Desc> {
    (address(), length(), flags(), any::<u16>(), any::<bool>()).prop_map(
        |(addr, len, flags, next, near)| Desc {
            addr,
            len,
            flags,
            // Mostly indices that hit the table, so chains get long.
            next: if near { next % 32 } else { next },
        },
    )
}

/// The driver's available index: mostly no more than a queue ahead.
#[derive(Clone, Copy, Debug)]
enum Avail {
    WithinQueue(u16),
    Any(u16),
}

#[derive(Clone, Debug)]
struct Case {
    size_log2: u32,
    table: Vec<Desc>,
    indirect: Vec<Desc>,
    heads: Vec<u16>,
    avail_idx: Avail,
    frames: Vec<usize>,
    mergeable: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0u32..=8,
        prop::collection::vec(desc(), 256),
        prop::collection::vec(desc(), 64),
        prop::collection::vec(any::<u16>(), 256),
        prop_oneof![8 => (0u16..=256).prop_map(Avail::WithinQueue), 1 => any::<u16>().prop_map(Avail::Any)],
        prop::collection::vec(prop_oneof![0usize..2000, Just(MAX_FRAME_LEN), Just(0)], 0..8),
        any::<bool>(),
    )
        .prop_map(
            |(size_log2, table, indirect, heads, avail_idx, frames, mergeable)| Case {
                size_log2,
                table,
                indirect,
                heads: heads.into_iter().map(|h| h % 300).collect(),
                avail_idx,
                frames,
                mergeable,
            },
        )
}

const INDIRECT_TABLE: u64 = 0x8000;

fn store(mem: &GuestMemoryMmap, at: u64, d: &Desc) {
    let raw = RawDescriptor::from(Descriptor::new(d.addr, d.len, d.flags, d.next));
    mem.write_obj(raw, GuestAddress(at)).unwrap();
}

fn run(case: &Case) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap();
    let size = 1u16 << case.size_log2;
    let vq = MockSplitQueue::create(&mem, GuestAddress(0), size);
    for (i, d) in case.table.iter().take(usize::from(size)).enumerate() {
        store(&mem, vq.desc_table_addr().0 + 16 * i as u64, d);
    }
    for (i, d) in case.indirect.iter().enumerate() {
        store(&mem, INDIRECT_TABLE + 16 * i as u64, d);
    }
    for (i, &head) in case.heads.iter().take(usize::from(size)).enumerate() {
        vq.avail().ring().ref_at(i).unwrap().store(head);
    }
    let avail_idx = match case.avail_idx {
        Avail::WithinQueue(n) => n % (size + 1),
        Avail::Any(n) => n,
    };
    vq.avail().idx().store(avail_idx);

    let mut peer = Peer {
        to_guest: case
            .frames
            .iter()
            .enumerate()
            .map(|(i, &len)| vec![i as u8; len])
            .collect(),
        ..Peer::default()
    };
    let offered = peer.to_guest.len();
    let features = if case.mergeable {
        DEVICE_FEATURES
    } else {
        DEVICE_FEATURES & !F_MRG_RXBUF
    };
    let mut device = NetDevice::new(NetConfig::default());
    device.set_acked_features(features).unwrap();
    let irq = Interrupts::default();
    let mut rx_queue: Queue = vq.create_queue().unwrap();
    let mut tx_queue: Queue = vq.create_queue().unwrap();

    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let now = Instant::now();
    // Each call handles at most a queue's worth; a handful of calls drains
    // whatever a table of this size can offer.
    for _ in 0..4 {
        device.handle_tx(&mem, &mut tx_queue, &mut peer, &irq, now);
        device.handle_rx(&mem, &mut rx_queue, &mut peer, &irq, now);
    }
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    assert!(
        peak <= ALLOCATION_BOUND,
        "device allocated {peak} bytes, bound {ALLOCATION_BOUND}"
    );

    // Every frame the backend handed over is delivered, dropped with a
    // count, or the one waiting for buffers.
    let c = device.counters();
    let taken = offered - peer.to_guest.len();
    let accounted = c.rx_frames + c.rx_too_big + c.rx_write_errors + c.rx_backend_bad_length;
    let waiting = taken as u64 - accounted;
    assert!(
        waiting <= 1,
        "{taken} frames taken, {accounted} accounted for"
    );
    assert!(rx_queue.next_used() <= 4 * size + size);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_descriptor_tables_never_panic_or_allocate_without_bound(case in case()) {
        run(&case);
    }
}
