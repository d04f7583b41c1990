//! The virtio-mmio register file driven the way a guest driver drives it,
//! with virtio-queue's mock driver for the rings, real eventfds for queue
//! notifications and the interrupt, and hostile register traffic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::virtq;

use std::time::Instant;

use proptest::prelude::*;
use virtio_net_kvm::mmio::{
    MAGIC_VALUE, QUEUE_MAX_SIZE, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK,
    STATUS_FEATURES_OK, STATUS_NEEDS_RESET, VENDOR_ID,
};
use virtio_net_kvm::{DEVICE_FEATURES, F_VERSION_1, MmioTransport, NET_HDR_LEN, NetConfig};
use virtq::{Driver, Peer, guest_memory, pattern_frame, tx_header};
use vm_memory::GuestMemoryMmap;

// Register offsets, from the virtio spec's MMIO device layout.
const MAGIC: u64 = 0x000;
const VERSION: u64 = 0x004;
const DEVICE_ID: u64 = 0x008;
const VENDOR: u64 = 0x00c;
const DEVICE_FEATURES_REG: u64 = 0x010;
const DEVICE_FEATURES_SEL: u64 = 0x014;
const DRIVER_FEATURES: u64 = 0x020;
const DRIVER_FEATURES_SEL: u64 = 0x024;
const QUEUE_SEL: u64 = 0x030;
const QUEUE_NUM_MAX: u64 = 0x034;
const QUEUE_NUM: u64 = 0x038;
const QUEUE_READY: u64 = 0x044;
const QUEUE_NOTIFY: u64 = 0x050;
const INTERRUPT_STATUS: u64 = 0x060;
const INTERRUPT_ACK: u64 = 0x064;
const STATUS: u64 = 0x070;
const QUEUE_DESC_LOW: u64 = 0x080;
const QUEUE_DESC_HIGH: u64 = 0x084;
const QUEUE_DRIVER_LOW: u64 = 0x090;
const QUEUE_DRIVER_HIGH: u64 = 0x094;
const QUEUE_DEVICE_LOW: u64 = 0x0a0;
const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
const CONFIG_GENERATION: u64 = 0x0fc;
const CONFIG: u64 = 0x100;

type Transport<'m> = MmioTransport<&'m GuestMemoryMmap>;

fn read(t: &Transport<'_>, offset: u64) -> u32 {
    let mut data = [0u8; 4];
    t.read(offset, &mut data);
    u32::from_le_bytes(data)
}

fn write(t: &mut Transport<'_>, offset: u64, value: u32) {
    t.write(offset, &value.to_le_bytes());
}

fn config() -> NetConfig {
    NetConfig {
        mac: [0x52, 0x54, 0, 0xab, 0xcd, 0xef],
        mtu: 65520,
        rx_checksums_valid: false,
    }
}

/// Negotiates `features` the way Linux's virtio_mmio and virtio_net do,
/// returning the status the driver reads back after FEATURES_OK.
fn negotiate(t: &mut Transport<'_>, features: u64) -> u32 {
    write(t, STATUS, 0);
    write(t, STATUS, STATUS_ACKNOWLEDGE);
    write(t, STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    write(t, DRIVER_FEATURES_SEL, 0);
    write(t, DRIVER_FEATURES, features as u32);
    write(t, DRIVER_FEATURES_SEL, 1);
    write(t, DRIVER_FEATURES, (features >> 32) as u32);
    write(
        t,
        STATUS,
        STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
    );
    read(t, STATUS)
}

fn set_up_queue(t: &mut Transport<'_>, index: u32, driver: &Driver<'_>, size: u32) {
    write(t, QUEUE_SEL, index);
    assert_eq!(read(t, QUEUE_READY), 0);
    assert_eq!(read(t, QUEUE_NUM_MAX), u32::from(QUEUE_MAX_SIZE));
    write(t, QUEUE_NUM, size);
    let split = |a: vm_memory::GuestAddress| (a.0 as u32, (a.0 >> 32) as u32);
    let [desc, avail, used] = driver.addresses();
    let (lo, hi) = split(desc);
    write(t, QUEUE_DESC_LOW, lo);
    write(t, QUEUE_DESC_HIGH, hi);
    let (lo, hi) = split(avail);
    write(t, QUEUE_DRIVER_LOW, lo);
    write(t, QUEUE_DRIVER_HIGH, hi);
    let (lo, hi) = split(used);
    write(t, QUEUE_DEVICE_LOW, lo);
    write(t, QUEUE_DEVICE_HIGH, hi);
    write(t, QUEUE_READY, 1);
    assert_eq!(read(t, QUEUE_READY), 1);
}

fn bring_up<'m>(t: &mut Transport<'m>, rx: &Driver<'m>, tx: &Driver<'m>) {
    let status = negotiate(t, DEVICE_FEATURES);
    assert_ne!(status & STATUS_FEATURES_OK, 0, "features refused");
    set_up_queue(t, 0, rx, 16);
    set_up_queue(t, 1, tx, 16);
    write(
        t,
        STATUS,
        STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
    );
}

fn drivers(mem: &GuestMemoryMmap) -> (Driver<'_>, Driver<'_>) {
    (
        Driver::new(mem, 0, 16, 0x10_0000),
        Driver::new(mem, 0x1_0000, 16, 0x80_0000),
    )
}

#[test]
fn identification_registers_read_as_a_version_2_network_device() {
    let mem = guest_memory();
    let t = MmioTransport::new(&mem, config()).unwrap();
    assert_eq!(read(&t, MAGIC), MAGIC_VALUE);
    assert_eq!(read(&t, MAGIC), u32::from_le_bytes(*b"virt"));
    assert_eq!(read(&t, VERSION), 2);
    assert_eq!(read(&t, DEVICE_ID), 1);
    assert_eq!(read(&t, VENDOR), VENDOR_ID);
    assert_eq!(read(&t, CONFIG_GENERATION), 0);
}

#[test]
fn driver_sequence_brings_the_device_up_and_moves_frames_both_ways() {
    let mem = guest_memory();
    let (mut rx, mut tx) = drivers(&mem);
    let mut t = MmioTransport::new(&mem, config()).unwrap();

    // Feature words as the driver reads them.
    let mut offered = 0u64;
    for sel in 0..2u32 {
        write(&mut t, DEVICE_FEATURES_SEL, sel);
        offered |= u64::from(read(&t, DEVICE_FEATURES_REG)) << (32 * sel);
    }
    assert_eq!(offered, DEVICE_FEATURES);
    write(&mut t, DEVICE_FEATURES_SEL, 2);
    assert_eq!(read(&t, DEVICE_FEATURES_REG), 0);

    // The configuration space, byte by byte and as a 16-bit MTU.
    let mac: Vec<u8> = (0..6)
        .map(|i| {
            let mut b = [0u8; 1];
            t.read(CONFIG + i, &mut b);
            b[0]
        })
        .collect();
    assert_eq!(mac, config().mac);
    let mut mtu = [0u8; 2];
    t.read(CONFIG + 10, &mut mtu);
    assert_eq!(u16::from_le_bytes(mtu), 65520);
    let mut status = [0u8; 2];
    t.read(CONFIG + 6, &mut status);
    assert_eq!(u16::from_le_bytes(status), 1, "link up");

    bring_up(&mut t, &rx, &tx);
    assert_eq!(
        read(&t, STATUS),
        STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK
    );
    assert_eq!(t.device().acked_features(), DEVICE_FEATURES);
    write(&mut t, QUEUE_SEL, 2);
    assert_eq!(read(&t, QUEUE_NUM_MAX), 0, "no third queue");

    let mut peer = Peer::default();
    let now = Instant::now();

    // Transmit: the notify write signals the queue's eventfd.
    let frame = pattern_frame(600, 1);
    tx.offer_tx(&[&tx_header(0, 0, 0, 0), &frame]);
    write(&mut t, QUEUE_NOTIFY, 1);
    assert_eq!(t.queue_event(1).unwrap().read().unwrap(), 1);
    while t.handle_queue_event(1, &mut peer, now) {}
    assert_eq!(peer.from_guest, vec![frame]);
    assert_eq!(read(&t, INTERRUPT_STATUS), 1, "used-buffer interrupt");
    assert_eq!(t.interrupt_event().read().unwrap(), 1, "irqfd signalled");
    write(&mut t, INTERRUPT_ACK, 1);
    assert_eq!(read(&t, INTERRUPT_STATUS), 0);

    // Receive: buffers offered and announced, then the backend's frame.
    let incoming = pattern_frame(900, 2);
    peer.to_guest.push_back(incoming.clone());
    let chain = rx.offer_rx(&[2048]);
    write(&mut t, QUEUE_NOTIFY, 0);
    while t.handle_queue_event(0, &mut peer, now) {}
    let used = rx.take_used();
    assert_eq!(used, vec![(u32::from(chain.head), 912)]);
    let written = chain.contents(&rx, 912);
    assert_eq!(&written[NET_HDR_LEN..], &incoming[..]);
    assert_eq!(read(&t, INTERRUPT_STATUS), 1);
    assert_eq!(t.device().counters().rx_frames, 1);
}

#[test]
fn features_the_device_did_not_offer_leave_features_ok_unset() {
    let mem = guest_memory();
    let mut t = MmioTransport::new(&mem, config()).unwrap();
    let host_tso4 = 1u64 << 11;
    let status = negotiate(&mut t, DEVICE_FEATURES | host_tso4);
    assert_eq!(status & STATUS_FEATURES_OK, 0);
    let status = negotiate(&mut t, DEVICE_FEATURES & !F_VERSION_1);
    assert_eq!(status & STATUS_FEATURES_OK, 0, "legacy driver refused");
    let status = negotiate(&mut t, F_VERSION_1);
    assert_ne!(status & STATUS_FEATURES_OK, 0, "a subset is fine");
}

#[test]
fn driver_ok_with_rings_outside_memory_asks_for_reset_and_moves_nothing() {
    let mem = guest_memory();
    let (rx, mut tx) = drivers(&mem);
    let mut t = MmioTransport::new(&mem, config()).unwrap();
    negotiate(&mut t, DEVICE_FEATURES);
    set_up_queue(&mut t, 0, &rx, 16);
    write(&mut t, QUEUE_SEL, 1);
    write(&mut t, QUEUE_NUM, 16);
    write(&mut t, QUEUE_DESC_LOW, 0);
    write(&mut t, QUEUE_DESC_HIGH, 0x10);
    write(&mut t, QUEUE_READY, 1);
    write(
        &mut t,
        STATUS,
        STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
    );
    assert_ne!(read(&t, STATUS) & STATUS_NEEDS_RESET, 0);
    tx.offer_tx(&[&tx_header(0, 0, 0, 0), &pattern_frame(64, 0)]);
    let mut peer = Peer::default();
    assert!(!t.process_tx(&mut peer, Instant::now()));
    assert!(peer.from_guest.is_empty());
}

#[test]
fn queue_layout_cannot_change_while_the_queue_is_ready() {
    let mem = guest_memory();
    let (rx, mut tx) = drivers(&mem);
    let mut t = MmioTransport::new(&mem, config()).unwrap();
    bring_up(&mut t, &rx, &tx);
    write(&mut t, QUEUE_SEL, 1);
    write(&mut t, QUEUE_NUM, 4);
    write(&mut t, QUEUE_DESC_LOW, 0x40_0000);
    write(&mut t, QUEUE_DRIVER_LOW, 0x40_1000);
    let frame = pattern_frame(64, 0);
    tx.offer_tx(&[&tx_header(0, 0, 0, 0), &frame]);
    let mut peer = Peer::default();
    t.process_tx(&mut peer, Instant::now());
    assert_eq!(peer.from_guest, vec![frame]);
}

#[test]
fn reset_returns_the_device_to_its_initial_state() {
    let mem = guest_memory();
    let (rx, mut tx) = drivers(&mem);
    let mut t = MmioTransport::new(&mem, config()).unwrap();
    bring_up(&mut t, &rx, &tx);
    tx.offer_tx(&[&tx_header(0, 0, 0, 0), &pattern_frame(64, 0)]);
    let mut peer = Peer::default();
    t.process_tx(&mut peer, Instant::now());
    assert_eq!(read(&t, INTERRUPT_STATUS), 1);

    write(&mut t, STATUS, 0);
    assert_eq!(read(&t, STATUS), 0);
    assert_eq!(read(&t, INTERRUPT_STATUS), 0);
    assert_eq!(t.device().acked_features(), 0);
    for q in 0..2 {
        write(&mut t, QUEUE_SEL, q);
        assert_eq!(read(&t, QUEUE_READY), 0);
    }
    // Nothing moves until the driver sets the device up again.
    tx.offer_tx(&[&tx_header(0, 0, 0, 0), &pattern_frame(64, 1)]);
    assert!(!t.process_tx(&mut peer, Instant::now()));
    assert_eq!(peer.from_guest.len(), 1);
    // And it can: a fresh bring-up with fresh rings.
    let (rx2, mut tx2) = (
        Driver::new(&mem, 0x2_0000, 16, 0x20_0000),
        Driver::new(&mem, 0x3_0000, 16, 0x90_0000),
    );
    bring_up(&mut t, &rx2, &tx2);
    let frame = pattern_frame(70, 2);
    tx2.offer_tx(&[&tx_header(0, 0, 0, 0), &frame]);
    t.process_tx(&mut peer, Instant::now());
    assert_eq!(peer.from_guest.last(), Some(&frame));
}

#[test]
fn status_writes_that_drop_bits_are_ignored() {
    let mem = guest_memory();
    let (rx, tx) = drivers(&mem);
    let mut t = MmioTransport::new(&mem, config()).unwrap();
    bring_up(&mut t, &rx, &tx);
    let before = read(&t, STATUS);
    write(&mut t, STATUS, STATUS_ACKNOWLEDGE);
    assert_eq!(read(&t, STATUS), before);
}

/// One register access from a hostile driver.
#[derive(Clone, Debug)]
enum Access {
    Read { offset: u64, len: usize },
    Write { offset: u64, data: Vec<u8> },
    Process { queue: u16 },
}

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => (0u64..0x110).prop_map(|o| o & !3),
        2 => 0u64..0x200,
        1 => any::<u64>(),
    ]
}

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![
        3 => (offset(), 0usize..9).prop_map(|(offset, len)| Access::Read { offset, len }),
        6 => (offset(), prop_oneof![
            4 => any::<u32>().prop_map(|v| v.to_le_bytes().to_vec()),
            1 => (0u32..0x100).prop_map(|v| v.to_le_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..9),
        ])
            .prop_map(|(offset, data)| Access::Write { offset, data }),
        1 => (0u16..3).prop_map(|queue| Access::Process { queue }),
    ]
}

proptest! {
    #[test]
    fn random_register_traffic_never_panics(
        accesses in prop::collection::vec(access(), 0..200),
    ) {
        let mem = guest_memory();
        let mut t = MmioTransport::new(&mem, config()).unwrap();
        let mut peer = Peer::default();
        peer.to_guest.extend((0..4).map(|i| pattern_frame(100, i)));
        let now = Instant::now();
        for access in accesses {
            match access {
                Access::Read { offset, len } => {
                    let mut data = vec![0u8; len];
                    t.read(offset, &mut data);
                }
                Access::Write { offset, data } => t.write(offset, &data),
                Access::Process { queue } => {
                    t.handle_queue_event(queue, &mut peer, now);
                }
            }
        }
    }
}
