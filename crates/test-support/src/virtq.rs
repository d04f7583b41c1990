//! A driver built on virtio-queue's `MockSplitQueue`, a peer backend that
//! records what it gets, and a counting notifier.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_net_kvm::{Checksum, FrameBackend, GuestFrame, NET_HDR_LEN, Notifier};
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::mock::{AvailRing, DescriptorTable, UsedRing};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest memory for the tests: 16 MiB from address 0.
pub const MEM_SIZE: u64 = 16 << 20;

pub fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap()
}

/// Descriptor flags as the split ring stores them.
pub const NEXT: u16 = VRING_DESC_F_NEXT as u16;
pub const WRITE: u16 = VRING_DESC_F_WRITE as u16;

/// The driver side of one split queue, built from virtio-queue's mock
/// rings.
///
/// The rings are laid out here rather than by `MockSplitQueue::create`,
/// whose used ring (virtio-queue 0.18) starts inside the available ring
/// once a queue has more than a few entries.
pub struct Driver<'a> {
    desc_table: DescriptorTable<'a, GuestMemoryMmap>,
    avail: AvailRing<'a, GuestMemoryMmap>,
    used: UsedRing<'a, GuestMemoryMmap>,
    addrs: [GuestAddress; 3],
    mem: &'a GuestMemoryMmap,
    size: u16,
    next_desc: u16,
    next_buf: u64,
    seen_used: u16,
}

impl<'a> Driver<'a> {
    /// A queue of `size` entries with its rings at `ring_base` and its
    /// buffers allocated from `buf_base` on.
    pub fn new(mem: &'a GuestMemoryMmap, ring_base: u64, size: u16, buf_base: u64) -> Self {
        let n = u64::from(size);
        let desc = GuestAddress(ring_base);
        let avail = GuestAddress(ring_base + 16 * n);
        // flags, idx, ring, used_event; the used ring is 4-aligned.
        let used = GuestAddress((avail.0 + 6 + 2 * n + 3) & !3);
        Self {
            desc_table: DescriptorTable::new(mem, desc, size),
            avail: AvailRing::new(mem, avail, size),
            used: UsedRing::new(mem, used, size),
            addrs: [desc, avail, used],
            mem,
            size,
            next_desc: 0,
            next_buf: buf_base,
            seen_used: 0,
        }
    }

    /// Addresses of the descriptor table, available ring and used ring.
    pub fn addresses(&self) -> [GuestAddress; 3] {
        self.addrs
    }

    /// The available ring, for tests that write it directly.
    pub fn avail(&self) -> &AvailRing<'a, GuestMemoryMmap> {
        &self.avail
    }

    /// The device's `avail_event`: the available index at which it next
    /// wants a notification (`VIRTIO_RING_F_EVENT_IDX`).
    pub fn avail_event(&self) -> u16 {
        let at = self.addrs[2].0 + 4 + 8 * u64::from(self.size);
        self.mem.read_obj(GuestAddress(at)).unwrap()
    }

    /// The used ring's flags (`VRING_USED_F_NO_NOTIFY`).
    pub fn used_flags(&self) -> u16 {
        self.mem.read_obj(self.addrs[2]).unwrap()
    }

    /// Asks for an interrupt only once the used index passes `index`.
    pub fn set_used_event(&self, index: u16) {
        let at = self.addrs[1].0 + 4 + 2 * u64::from(self.size);
        self.mem.write_obj(index, GuestAddress(at)).unwrap();
    }

    /// The device's view of the queue, ready.
    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).unwrap();
        q.try_set_desc_table_address(self.addrs[0]).unwrap();
        q.try_set_avail_ring_address(self.addrs[1]).unwrap();
        q.try_set_used_ring_address(self.addrs[2]).unwrap();
        q.set_ready(true);
        q
    }

    /// Writes descriptor `index` as given.
    pub fn store(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.desc_table
            .store(
                index,
                RawDescriptor::from(Descriptor::new(addr, len, flags, next)),
            )
            .unwrap();
    }

    /// Makes `head` available, as a driver does after writing its chain.
    pub fn make_available(&self, head: u16) {
        let idx = self.avail.idx().load();
        self.avail
            .ring()
            .ref_at(usize::from(idx % self.size))
            .unwrap()
            .store(head);
        self.avail.idx().store(idx.wrapping_add(1));
    }

    fn alloc(&mut self, len: u32) -> u64 {
        let addr = self.next_buf;
        self.next_buf += (u64::from(len) + 15) & !15;
        assert!(self.next_buf <= MEM_SIZE, "test buffers exhausted");
        addr
    }

    fn chain(&mut self, buffers: &[(u64, u32)], flags: u16) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len)) in buffers.iter().enumerate() {
            let index = self.next_desc;
            self.next_desc = (self.next_desc + 1) % self.size;
            let last = i + 1 == buffers.len();
            let chain_flags = if last { flags } else { flags | NEXT };
            self.store(index, addr, len, chain_flags, self.next_desc);
        }
        self.make_available(head);
        head
    }

    /// Offers a transmit chain whose descriptors hold `pieces` in order.
    pub fn offer_tx(&mut self, pieces: &[&[u8]]) -> u16 {
        let buffers: Vec<(u64, u32)> = pieces
            .iter()
            .map(|piece| {
                let len = u32::try_from(piece.len()).unwrap();
                let addr = self.alloc(len);
                self.mem.write_slice(piece, GuestAddress(addr)).unwrap();
                (addr, len)
            })
            .collect();
        self.chain(&buffers, 0)
    }

    /// Offers a receive chain of buffers of the given lengths.
    pub fn offer_rx(&mut self, lens: &[u32]) -> RxBuffers {
        let buffers: Vec<(u64, u32)> = lens.iter().map(|&len| (self.alloc(len), len)).collect();
        let head = self.chain(&buffers, WRITE);
        RxBuffers { head, buffers }
    }

    /// Used entries (head, length) added since the last call.
    pub fn take_used(&mut self) -> Vec<(u32, u32)> {
        let idx = self.used.idx().load();
        let mut entries = Vec::new();
        while self.seen_used != idx {
            let elem = self
                .used
                .ring()
                .ref_at(usize::from(self.seen_used % self.size))
                .unwrap()
                .load();
            entries.push((elem.id(), elem.len()));
            self.seen_used = self.seen_used.wrapping_add(1);
        }
        entries
    }

    /// Reads `len` bytes of guest memory.
    pub fn read(&self, addr: u64, len: u32) -> Vec<u8> {
        let mut buf = vec![0; len as usize];
        self.mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
        buf
    }
}

/// A receive chain the driver offered.
pub struct RxBuffers {
    pub head: u16,
    pub buffers: Vec<(u64, u32)>,
}

impl RxBuffers {
    /// The first `len` bytes the device wrote into this chain.
    pub fn contents(&self, driver: &Driver<'_>, len: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut left = len;
        for &(addr, cap) in &self.buffers {
            let n = left.min(cap);
            out.extend(driver.read(addr, n));
            left -= n;
        }
        out
    }
}

/// A network peer that records frames from the guest and hands out queued
/// frames to it.
#[derive(Default)]
pub struct Peer {
    pub from_guest: Vec<Vec<u8>>,
    pub to_guest: VecDeque<Vec<u8>>,
    pub polls: usize,
    /// Takes checksum offload: partial checksums in, `to_guest_checksum`
    /// out.
    pub offload: bool,
    /// What the device said of each frame's checksum, in `from_guest` order.
    pub from_guest_checksums: Vec<Checksum>,
    /// What the peer says of every frame it hands out while offloading.
    pub to_guest_checksum: Option<Checksum>,
}

impl FrameBackend for Peer {
    fn handle_guest_frame(&mut self, frame: &[u8], _now: Instant) {
        self.from_guest.push(frame.to_vec());
    }

    fn poll_guest_frame(&mut self, buf: &mut [u8], _now: Instant) -> Option<usize> {
        self.polls += 1;
        let frame = self.to_guest.pop_front()?;
        buf[..frame.len()].copy_from_slice(&frame);
        Some(frame.len())
    }

    fn offloads_checksums(&self) -> bool {
        self.offload
    }

    fn handle_guest_frame_offloaded(&mut self, frame: &[u8], checksum: Checksum, _now: Instant) {
        self.from_guest.push(frame.to_vec());
        self.from_guest_checksums.push(checksum);
    }

    fn poll_guest_frame_offloaded(&mut self, buf: &mut [u8], now: Instant) -> Option<GuestFrame> {
        let len = self.poll_guest_frame(buf, now)?;
        Some(GuestFrame {
            len,
            checksum: self.to_guest_checksum.unwrap_or(Checksum::Complete),
            gso_mss: None,
        })
    }
}

/// Counts used-buffer notifications, as an interrupt line would.
#[derive(Default)]
pub struct Interrupts(pub Cell<u32>);

impl Notifier for Interrupts {
    fn notify_used(&self) -> io::Result<()> {
        self.0.set(self.0.get() + 1);
        Ok(())
    }
}

/// A transmit header: flags, gso type, csum start and offset.
pub fn tx_header(flags: u8, gso_type: u8, csum_start: u16, csum_offset: u16) -> [u8; NET_HDR_LEN] {
    let mut hdr = [0u8; NET_HDR_LEN];
    hdr[0] = flags;
    hdr[1] = gso_type;
    hdr[6..8].copy_from_slice(&csum_start.to_le_bytes());
    hdr[8..10].copy_from_slice(&csum_offset.to_le_bytes());
    hdr
}

/// A frame of `len` bytes with a recognisable pattern after an Ethernet
/// header.
pub fn pattern_frame(len: usize, seed: u8) -> Vec<u8> {
    let mut frame: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    frame[12] = 0x08;
    frame[13] = 0x00;
    frame
}
