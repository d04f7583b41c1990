//! The virtio-net device core serving an echo backend: a [`FrameBackend`]
//! that sends every frame from the guest straight back. The guest's driver
//! is played here with virtio-queue's mock split-queue rings over a
//! `GuestMemoryMmap`, as a transport (virtio-mmio, vhost-user) would lend
//! the device its queues and memory: the driver offers a receive buffer and
//! one frame to transmit, the device hands the frame to the backend and
//! writes the echo into the receive buffer, and the driver reads it back.
//!
//! ```text
//! cargo run -p virtio-net-kvm --example echo-device
//! ```
//!
//! Exits non-zero unless the frame came back byte for byte.

use std::collections::VecDeque;
use std::error::Error;
use std::process::ExitCode;
use std::time::Instant;

use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_net_kvm::{
    DeferredNotifier, F_VERSION_1, FrameBackend, NET_HDR_LEN, NetConfig, NetDevice,
};
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::mock::{AvailRing, DescriptorTable, UsedRing};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const QUEUE_SIZE: u16 = 16;
const RX_RING: u64 = 0x1000;
const TX_RING: u64 = 0x2000;
const RX_BUFFER: u64 = 0x1_0000;
const TX_BUFFER: u64 = 0x2_0000;
/// Room for the virtio-net header and a 1500-byte-MTU frame.
const RX_BUFFER_LEN: u32 = 2048;

/// The backend: each frame from the guest is queued and handed back.
#[derive(Default)]
struct Echo {
    frames: VecDeque<Vec<u8>>,
}

impl FrameBackend for Echo {
    fn handle_guest_frame(&mut self, frame: &[u8], _now: Instant) {
        self.frames.push_back(frame.to_vec());
    }

    fn poll_guest_frame(&mut self, buf: &mut [u8], _now: Instant) -> Option<usize> {
        // A frame longer than the caller's buffer is dropped, never cut.
        let frame = self.frames.pop_front()?;
        buf.get_mut(..frame.len())?.copy_from_slice(&frame);
        Some(frame.len())
    }
}

/// The driver's side of one split queue. The three rings are placed here
/// (16-byte descriptors, then the available ring, then the 4-aligned used
/// ring) rather than by `MockSplitQueue::create`, whose used ring starts
/// inside the available ring.
struct DriverQueue<'a> {
    descriptors: DescriptorTable<'a, GuestMemoryMmap>,
    avail: AvailRing<'a, GuestMemoryMmap>,
    used: UsedRing<'a, GuestMemoryMmap>,
    addresses: [GuestAddress; 3],
}

impl<'a> DriverQueue<'a> {
    fn new(mem: &'a GuestMemoryMmap, base: u64) -> Self {
        let size = u64::from(QUEUE_SIZE);
        let desc = GuestAddress(base);
        let avail = GuestAddress(base + 16 * size);
        // flags, idx, the ring, used_event.
        let used = GuestAddress((avail.0 + 6 + 2 * size + 3) & !3);
        DriverQueue {
            descriptors: DescriptorTable::new(mem, desc, QUEUE_SIZE),
            avail: AvailRing::new(mem, avail, QUEUE_SIZE),
            used: UsedRing::new(mem, used, QUEUE_SIZE),
            addresses: [desc, avail, used],
        }
    }

    /// The queue as the device sees it once the driver has set it up.
    fn device_view(&self) -> Result<Queue, Box<dyn Error>> {
        let mut queue = Queue::new(QUEUE_SIZE)?;
        queue.try_set_desc_table_address(self.addresses[0])?;
        queue.try_set_avail_ring_address(self.addresses[1])?;
        queue.try_set_used_ring_address(self.addresses[2])?;
        queue.set_ready(true);
        Ok(queue)
    }

    /// Makes a one-descriptor chain available in slot 0.
    fn offer(&self, addr: u64, len: u32, flags: u16) -> Result<(), Box<dyn Error>> {
        let descriptor = RawDescriptor::from(Descriptor::new(addr, len, flags, 0));
        self.descriptors.store(0, descriptor)?;
        self.avail.ring().ref_at(0)?.store(0);
        self.avail.idx().store(1);
        Ok(())
    }

    /// The length the device wrote into the chain it returned, if it has.
    fn used_len(&self) -> Result<Option<u32>, Box<dyn Error>> {
        if self.used.idx().load() == 0 {
            return Ok(None);
        }
        Ok(Some(self.used.ring().ref_at(0)?.load().len()))
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(len) => {
            println!("echo-device: OK, a {len}-byte frame there and back");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("echo-device: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<usize, Box<dyn Error>> {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)])?;
    let config = NetConfig::default();
    // An Ethernet frame to the guest's own MAC, with an experimental EtherType.
    let mut frame = config.mac.to_vec();
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x88, 0xb5]);
    frame.extend_from_slice(b"echo me, virtio-net");

    // The driver: a receive buffer, and the frame behind a zeroed header
    // (no checksum offload, no segmentation).
    let (rx, tx) = (
        DriverQueue::new(&mem, RX_RING),
        DriverQueue::new(&mem, TX_RING),
    );
    rx.offer(RX_BUFFER, RX_BUFFER_LEN, u16::try_from(VRING_DESC_F_WRITE)?)?;
    let mut chain = vec![0u8; NET_HDR_LEN];
    chain.extend_from_slice(&frame);
    mem.write_slice(&chain, GuestAddress(TX_BUFFER))?;
    tx.offer(TX_BUFFER, u32::try_from(chain.len())?, 0)?;

    // The device, as a transport drives it on queue notifications.
    let mut device = NetDevice::new(config);
    device.set_acked_features(F_VERSION_1)?;
    let (mut rx_queue, mut tx_queue) = (rx.device_view()?, tx.device_view()?);
    let mut echo = Echo::default();
    let interrupt = DeferredNotifier::default();
    let now = Instant::now();
    let _ = device.handle_tx(&mem, &mut tx_queue, &mut echo, &interrupt, now);
    let _ = device.handle_rx(&mem, &mut rx_queue, &mut echo, &interrupt, now);

    // The driver: both chains came back, and the receive buffer holds a
    // header and then the frame.
    if tx.used_len()?.is_none() {
        return Err("the transmit chain was not returned".into());
    }
    let len = rx.used_len()?.ok_or("no frame was received")?;
    let mut received = vec![0u8; usize::try_from(len)?];
    mem.read_slice(&mut received, GuestAddress(RX_BUFFER))?;
    if received.get(NET_HDR_LEN..) != Some(&frame[..]) {
        return Err(format!("received {received:?}, sent {frame:?}").into());
    }
    if !interrupt.take() {
        return Err("the driver was not interrupted".into());
    }
    let counters = device.counters();
    println!(
        "tx_frames {}, rx_frames {}",
        counters.tx_frames, counters.rx_frames
    );
    Ok(frame.len())
}
