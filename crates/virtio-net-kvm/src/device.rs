//! The device: transmit and receive queue processing between a driver's
//! virtqueues and a [`FrameBackend`].

use std::ops::Range;
use std::time::Instant;

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemory;

use guest_frame::{Checksum, FrameBackend, checksum_field_in_frame, complete_checksum};

use crate::backend::Notifier;
use crate::chain::{ChainFault, Segment, gather_rx_chain, read_tx_chain, write_segments};
use crate::config::{
    DEVICE_FEATURES, F_CSUM, F_EVENT_IDX, F_GUEST_CSUM, F_MRG_RXBUF, FeatureError, NetConfig,
    check_driver_features,
};
use crate::header::{HeaderFault, MAX_FRAME_LEN, NET_HDR_LEN, TxHeader, rx_header};

/// The receive queue's index.
pub const RX_QUEUE: u16 = 0;
/// The transmit queue's index.
pub const TX_QUEUE: u16 = 1;
/// Queues the device has: one receive, one transmit.
pub const NUM_QUEUES: usize = 2;

/// Header plus the largest frame: the most the device reads from a
/// transmit chain or writes into receive chains for one frame.
const FRAME_BUF_LEN: usize = NET_HDR_LEN + MAX_FRAME_LEN;

/// Descriptor chains refused, by fault.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainFaults {
    /// Bad head or `next` index, a loop, or an unreadable descriptor.
    pub truncated: u64,
    /// Device-writable descriptors on transmit, device-readable on receive.
    pub wrong_direction: u64,
    /// Buffers outside guest memory.
    pub bad_address: u64,
    /// Transmit chains longer than a header and the largest frame.
    pub too_long: u64,
    /// Receive chains with room for less than a header.
    pub short: u64,
}

impl ChainFaults {
    fn count(&mut self, fault: ChainFault) {
        let counter = match fault {
            ChainFault::Truncated => &mut self.truncated,
            ChainFault::WrongDirection => &mut self.wrong_direction,
            ChainFault::BadAddress => &mut self.bad_address,
            ChainFault::TooLong => &mut self.too_long,
            ChainFault::Short => &mut self.short,
        };
        *counter += 1;
    }
}

/// Transmit frames dropped for their header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxHeaderDrops {
    /// Shorter than a header and an Ethernet header.
    pub short: u64,
    /// A GSO type other than none; the device offers no GSO.
    pub gso: u64,
    /// A partial checksum without `VIRTIO_NET_F_CSUM` negotiated.
    pub csum_not_negotiated: u64,
    /// `csum_start`/`csum_offset` outside the frame.
    pub csum_out_of_frame: u64,
}

impl TxHeaderDrops {
    fn count(&mut self, fault: HeaderFault) {
        let counter = match fault {
            HeaderFault::Short => &mut self.short,
            HeaderFault::Gso => &mut self.gso,
            HeaderFault::CsumNotNegotiated => &mut self.csum_not_negotiated,
            HeaderFault::CsumOutOfFrame => &mut self.csum_out_of_frame,
        };
        *counter += 1;
    }
}

/// What the device has done, for a user to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Frames from the guest handed to the backend.
    pub tx_frames: u64,
    /// Bytes of those frames, without the virtio header.
    pub tx_bytes: u64,
    /// Transmit chains refused, by fault; each one's frame is dropped.
    pub tx_chain_faults: ChainFaults,
    /// Transmit frames dropped for their header.
    pub tx_header_drops: TxHeaderDrops,
    /// Frames from the backend written to the guest.
    pub rx_frames: u64,
    /// Bytes of those frames, without the virtio header.
    pub rx_bytes: u64,
    /// Receive chains refused, by fault; each is returned to the driver empty.
    pub rx_chain_faults: ChainFaults,
    /// Frames too large for one receive chain without
    /// `VIRTIO_NET_F_MRG_RXBUF`, dropped.
    pub rx_too_big: u64,
    /// Frames dropped because a receive buffer could not be written.
    pub rx_write_errors: u64,
    /// Frames the backend reported with a length of zero or past its buffer.
    pub rx_backend_bad_length: u64,
    /// Frames the backend left with a partial checksum whose field lies
    /// outside the frame, dropped.
    pub rx_backend_bad_checksum: u64,
    /// Frames from the guest passed to the backend with their checksum
    /// left partial (checksum offload).
    pub tx_partial_checksums: u64,
    /// Frames written to the guest with their checksum left partial.
    pub rx_partial_checksums: u64,
    /// A frame had to wait because the driver offered too few receive buffers.
    pub rx_waits_for_buffers: u64,
    /// A frame waiting for receive buffers was dropped by a device reset.
    pub rx_dropped_at_reset: u64,
    /// The driver's available index ran more than a queue ahead.
    pub bad_avail_index: u64,
    /// The used ring could not be written.
    pub used_ring_errors: u64,
    /// A used-buffer notification could not be delivered.
    pub notify_errors: u64,
}

impl NetCounters {
    /// The counters a user reads, each with its name (as `slipway --stats`
    /// prints them).
    #[must_use]
    pub fn lines(&self) -> [(&'static str, u64); 10] {
        [
            ("frames from guest", self.tx_frames),
            ("bytes from guest", self.tx_bytes),
            ("frames to guest", self.rx_frames),
            ("bytes to guest", self.rx_bytes),
            ("waits for rx buffers", self.rx_waits_for_buffers),
            ("frames too big for rx", self.rx_too_big),
            ("bad avail index", self.bad_avail_index),
            ("used ring errors", self.used_ring_errors),
            ("partial csums from guest", self.tx_partial_checksums),
            ("partial csums to guest", self.rx_partial_checksums),
        ]
    }
}

/// A receive chain held for the frame being placed.
#[derive(Clone, Debug)]
struct RxChain {
    head: u16,
    segments: Range<usize>,
    usable: usize,
}

/// A virtio-net device: feature state, the frame buffers, the receive chains
/// held for a waiting frame, and counters.
///
/// The queues and guest memory belong to the transport (virtio-mmio here,
/// a vhost-user backend elsewhere) and are lent to each call.
#[derive(Debug)]
pub struct NetDevice {
    config: NetConfig,
    acked_features: u64,
    counters: NetCounters,
    tx_buf: Box<[u8]>,
    /// Header then the frame from the backend.
    rx_buf: Box<[u8]>,
    /// Length and checksum state of a frame in `rx_buf` still to be
    /// written to the guest.
    rx_frame: Option<(usize, Checksum)>,
    rx_chains: Vec<RxChain>,
    rx_segments: Vec<Segment>,
    rx_usable: usize,
    /// Checksum offload is used where the driver and the backend take it.
    offload: bool,
}

impl NetDevice {
    /// A device that will tell the guest `config`.
    #[must_use]
    pub fn new(config: NetConfig) -> Self {
        Self {
            config,
            acked_features: 0,
            counters: NetCounters::default(),
            tx_buf: vec![0; FRAME_BUF_LEN].into_boxed_slice(),
            rx_buf: vec![0; FRAME_BUF_LEN].into_boxed_slice(),
            rx_frame: None,
            rx_chains: Vec::new(),
            rx_segments: Vec::new(),
            rx_usable: 0,
            offload: true,
        }
    }

    /// Whether to use checksum offload where the driver negotiated it and
    /// the backend takes it ([`FrameBackend::offloads_checksums`]); on by
    /// default. Off, the device completes every partial checksum from the
    /// driver and asks the backend for whole ones.
    pub fn set_checksum_offload(&mut self, on: bool) {
        self.offload = on;
    }

    /// What the guest is told.
    #[must_use]
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// The features the device offers.
    #[must_use]
    pub fn device_features(&self) -> u64 {
        DEVICE_FEATURES
    }

    /// The features the driver acknowledged and the device accepted.
    #[must_use]
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    /// Accepts the driver's features, as at `FEATURES_OK`.
    ///
    /// # Errors
    /// Features the device did not offer, or a legacy driver; the acked
    /// features are then unchanged.
    pub fn set_acked_features(&mut self, features: u64) -> Result<(), FeatureError> {
        self.acked_features = check_driver_features(features)?;
        Ok(())
    }

    /// The counters so far.
    #[must_use]
    pub fn counters(&self) -> &NetCounters {
        &self.counters
    }

    /// Forgets the negotiated features and any frame waiting for receive
    /// buffers, as a device reset does. Counters are kept.
    pub fn reset(&mut self) {
        self.acked_features = 0;
        if self.rx_frame.take().is_some() {
            self.counters.rx_dropped_at_reset += 1;
        }
        self.rx_chains.clear();
        self.rx_segments.clear();
        self.rx_usable = 0;
    }

    fn has(&self, feature: u64) -> bool {
        self.acked_features & feature != 0
    }

    /// Sends every frame the driver has queued for transmission to the
    /// backend, returns the chains, and notifies the driver.
    ///
    /// Handles at most one queue's worth of chains per call, so a driver
    /// that refills as fast as the device drains cannot hold the thread;
    /// returns `true` when chains may remain and the caller should call again.
    pub fn handle_tx<M, B, N>(
        &mut self,
        mem: &M,
        queue: &mut Queue,
        backend: &mut B,
        notifier: &N,
        now: Instant,
    ) -> bool
    where
        M: GuestMemory,
        B: FrameBackend + ?Sized,
        N: Notifier + ?Sized,
    {
        queue.set_event_idx(self.has(F_EVENT_IDX));
        let budget = queue.size();
        let mut handled = 0u16;
        let mut used = false;
        // Drain with driver notifications off, then turn them back on and
        // look once more, so a chain made available in between is not
        // left waiting for a kick that never comes.
        let mut round_start = handled;
        let mut empty_rounds = 0;
        let more = 'drain: loop {
            self.set_notification(mem, queue, false);
            while let Some(chain) = self.pop_chain(mem, queue) {
                if handled == budget {
                    queue.go_to_previous_position();
                    break 'drain true;
                }
                handled += 1;
                let head = chain.head_index();
                let read = read_tx_chain(mem, chain, &mut self.tx_buf);
                used |= self.return_chain(mem, queue, head, 0);
                match read {
                    Ok(len) => self.deliver_tx(len, backend, now),
                    Err(fault) => {
                        tracing::debug!(?fault, head, "transmit chain dropped");
                        self.counters.tx_chain_faults.count(fault);
                    }
                }
            }
            // Two rounds in a row that find nothing although the ring says
            // otherwise mean an available ring that cannot be read.
            if handled == round_start {
                empty_rounds += 1;
            } else {
                empty_rounds = 0;
            }
            round_start = handled;
            if !self.set_notification(mem, queue, true) || empty_rounds == 2 {
                break false;
            }
        };
        if used {
            self.notify(mem, queue, notifier);
        }
        more
    }

    fn deliver_tx<B: FrameBackend + ?Sized>(&mut self, len: usize, backend: &mut B, now: Instant) {
        let chain = &mut self.tx_buf[..len];
        let csum_negotiated = self.acked_features & F_CSUM != 0;
        let offload = self.offload && backend.offloads_checksums();
        // `parse` checks the chain holds a whole header before it is split.
        let checked = TxHeader::parse(chain, csum_negotiated).and_then(|header| {
            let frame = &mut chain[NET_HDR_LEN..];
            let checksum = match header.csum {
                Some((start, offset)) if offload => {
                    checksum_field_in_frame(frame.len(), start, offset)
                        .map_err(|_| HeaderFault::CsumOutOfFrame)?;
                    Checksum::Partial { start, offset }
                }
                Some((start, offset)) => {
                    complete_checksum(frame, start, offset)
                        .map_err(|_| HeaderFault::CsumOutOfFrame)?;
                    Checksum::Complete
                }
                None => Checksum::Complete,
            };
            Ok((frame, checksum))
        });
        match checked {
            Ok((frame, checksum)) => {
                if matches!(checksum, Checksum::Partial { .. }) {
                    self.counters.tx_partial_checksums += 1;
                    backend.handle_guest_frame_offloaded(frame, checksum, now);
                } else {
                    backend.handle_guest_frame(frame, now);
                }
                self.counters.tx_frames += 1;
                self.counters.tx_bytes += frame.len() as u64;
            }
            Err(fault) => {
                tracing::debug!(?fault, "transmit frame dropped");
                self.counters.tx_header_drops.count(fault);
            }
        }
    }

    /// Writes frames from the backend into the driver's receive buffers
    /// while both have some, and notifies the driver.
    ///
    /// The backend is asked for a frame only while the device holds a
    /// receive chain; a frame that needs more chains than the driver has
    /// offered waits in the device until the next call, and nothing is
    /// dropped for lack of buffers. Call this when the backend may have
    /// frames and when the driver kicks the receive queue. Returns `true`
    /// when the per-call budget ran out and the caller should call again.
    pub fn handle_rx<M, B, N>(
        &mut self,
        mem: &M,
        queue: &mut Queue,
        backend: &mut B,
        notifier: &N,
        now: Instant,
    ) -> bool
    where
        M: GuestMemory,
        B: FrameBackend + ?Sized,
        N: Notifier + ?Sized,
    {
        queue.set_event_idx(self.has(F_EVENT_IDX));
        let budget = queue.size().max(1);
        let mut used = false;
        let mut more = true;
        for _ in 0..budget {
            if !self.place_one_frame(mem, queue, backend, now, &mut used) {
                more = false;
                break;
            }
        }
        if used {
            self.notify(mem, queue, notifier);
        }
        more
    }

    /// Places one frame, or drops one the guest cannot take. Returns whether
    /// there was anything to do.
    fn place_one_frame<M, B>(
        &mut self,
        mem: &M,
        queue: &mut Queue,
        backend: &mut B,
        now: Instant,
        used: &mut bool,
    ) -> bool
    where
        M: GuestMemory,
        B: FrameBackend + ?Sized,
    {
        let (frame_len, checksum) = match self.rx_frame {
            Some(frame) => frame,
            None => {
                if self.rx_chains.is_empty() && !self.take_rx_chain(mem, queue, used) {
                    return false;
                }
                let Some((len, checksum)) = self.poll_backend(backend, now) else {
                    return false;
                };
                if len == 0 || len > MAX_FRAME_LEN {
                    self.counters.rx_backend_bad_length += 1;
                    return true;
                }
                if let Checksum::Partial { start, offset } = checksum
                    && checksum_field_in_frame(len, start, offset).is_err()
                {
                    self.counters.rx_backend_bad_checksum += 1;
                    return true;
                }
                self.rx_frame = Some((len, checksum));
                (len, checksum)
            }
        };
        let needed = NET_HDR_LEN + frame_len;
        let mergeable = self.has(F_MRG_RXBUF);
        while self.rx_usable < needed {
            if !mergeable && !self.rx_chains.is_empty() {
                tracing::debug!(frame_len, "receive frame larger than the receive buffer");
                self.counters.rx_too_big += 1;
                self.rx_frame = None;
                return true;
            }
            if !self.take_rx_chain(mem, queue, used) {
                self.counters.rx_waits_for_buffers += 1;
                return false;
            }
        }
        self.write_frame(mem, queue, needed, checksum);
        *used = true;
        true
    }

    /// The backend's next frame for the guest and its checksum state:
    /// partial checksums only when the backend offloads them and the driver
    /// takes them (`VIRTIO_NET_F_GUEST_CSUM`).
    fn poll_backend<B: FrameBackend + ?Sized>(
        &mut self,
        backend: &mut B,
        now: Instant,
    ) -> Option<(usize, Checksum)> {
        let offload = self.offload && backend.offloads_checksums() && self.has(F_GUEST_CSUM);
        let area = &mut self.rx_buf[NET_HDR_LEN..];
        if offload {
            // The device cuts no segments: a backend is asked for GSO
            // segments only by a frontend that cuts them itself.
            backend
                .poll_guest_frame_offloaded(area, now)
                .map(|frame| (frame.len, frame.checksum))
        } else {
            backend
                .poll_guest_frame(area, now)
                .map(|len| (len, Checksum::Complete))
        }
    }

    /// Writes header and frame (`needed` bytes of `rx_buf`) across the held
    /// chains and returns them all to the driver.
    fn write_frame<M: GuestMemory>(
        &mut self,
        mem: &M,
        queue: &mut Queue,
        needed: usize,
        checksum: Checksum,
    ) {
        let chains = std::mem::take(&mut self.rx_chains);
        // A chain is at most a queue long and a queue at most 32768 entries.
        let num_buffers = u16::try_from(chains.len()).unwrap_or(u16::MAX);
        // Only a driver with VIRTIO_NET_F_GUEST_CSUM is told anything about
        // checksums; `poll_backend` hands out partial ones only to it.
        let checksum = match checksum {
            Checksum::Partial { .. } => {
                self.counters.rx_partial_checksums += 1;
                checksum
            }
            Checksum::Valid | Checksum::Complete
                if self.has(F_GUEST_CSUM)
                    && (self.config.rx_checksums_valid || checksum == Checksum::Valid) =>
            {
                Checksum::Valid
            }
            Checksum::Valid | Checksum::Complete => Checksum::Complete,
        };
        self.rx_buf[..NET_HDR_LEN].copy_from_slice(&rx_header(checksum, num_buffers));
        let mut pos = 0;
        let mut write_failed = false;
        for chain in &chains {
            let take = chain.usable.min(needed - pos);
            let segments = &self.rx_segments[chain.segments.clone()];
            if write_segments(mem, segments, &self.rx_buf[pos..pos + take]).is_err() {
                write_failed = true;
            }
            pos += take;
            let written = if write_failed { 0 } else { take };
            // `take` is at most a header and the largest frame.
            self.return_chain(mem, queue, chain.head, u32::try_from(written).unwrap_or(0));
        }
        self.rx_chains = chains;
        self.rx_chains.clear();
        self.rx_segments.clear();
        self.rx_usable = 0;
        self.rx_frame = None;
        if write_failed {
            self.counters.rx_write_errors += 1;
        } else {
            self.counters.rx_frames += 1;
            self.counters.rx_bytes += (needed - NET_HDR_LEN) as u64;
        }
    }

    /// Takes the next usable receive chain from the driver, returning
    /// unusable ones empty. Returns `false` when the driver has none.
    fn take_rx_chain<M: GuestMemory>(
        &mut self,
        mem: &M,
        queue: &mut Queue,
        used: &mut bool,
    ) -> bool {
        let mut looked_again = false;
        for _ in 0..=queue.size() {
            let Some(chain) = self.pop_chain(mem, queue) else {
                // Out of buffers: ask the driver to kick when it adds some,
                // and catch any it added before it could see the request.
                if !looked_again && self.set_notification(mem, queue, true) {
                    looked_again = true;
                    continue;
                }
                return false;
            };
            let head = chain.head_index();
            let start = self.rx_segments.len();
            let limit = FRAME_BUF_LEN.saturating_sub(self.rx_usable);
            match gather_rx_chain(mem, chain, &mut self.rx_segments, limit) {
                Ok(room) => {
                    self.rx_chains.push(RxChain {
                        head,
                        segments: start..self.rx_segments.len(),
                        usable: room.usable,
                    });
                    self.rx_usable += room.usable;
                    return true;
                }
                Err(fault) => {
                    self.rx_segments.truncate(start);
                    tracing::debug!(?fault, head, "receive chain refused");
                    self.counters.rx_chain_faults.count(fault);
                    *used |= self.return_chain(mem, queue, head, 0);
                }
            }
        }
        false
    }

    /// The next chain the driver made available, if any.
    fn pop_chain<'m, M: GuestMemory>(
        &mut self,
        mem: &'m M,
        queue: &mut Queue,
    ) -> Option<DescriptorChain<&'m M>> {
        match queue.iter(mem) {
            Ok(mut chains) => chains.next(),
            Err(virtio_queue::Error::QueueNotReady) => None,
            Err(error) => {
                tracing::debug!(%error, "available ring unusable");
                self.counters.bad_avail_index += 1;
                None
            }
        }
    }

    /// Puts a chain on the used ring; returns whether it went there.
    fn return_chain<M: GuestMemory>(
        &mut self,
        mem: &M,
        queue: &mut Queue,
        head: u16,
        len: u32,
    ) -> bool {
        // A head past the queue cannot go on the used ring; the driver
        // never learns of it, which is what a bad index deserves.
        if head >= queue.size() {
            return false;
        }
        match queue.add_used(mem, head, len) {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, "used ring unwritable");
                self.counters.used_ring_errors += 1;
                false
            }
        }
    }

    /// Turns driver notifications for `queue` on or off (the used ring's
    /// flags, or its `avail_event` with `VIRTIO_RING_F_EVENT_IDX`). When
    /// turning them on, returns whether chains arrived meanwhile.
    fn set_notification<M: GuestMemory>(&mut self, mem: &M, queue: &mut Queue, on: bool) -> bool {
        let result = if on {
            queue.enable_notification(mem)
        } else {
            queue.disable_notification(mem).map(|()| false)
        };
        result.unwrap_or_else(|error| {
            tracing::debug!(%error, "used ring unwritable");
            self.counters.used_ring_errors += 1;
            false
        })
    }

    fn notify<M: GuestMemory, N: Notifier + ?Sized>(
        &mut self,
        mem: &M,
        queue: &mut Queue,
        notifier: &N,
    ) {
        match queue.needs_notification(mem) {
            Ok(true) => {
                if let Err(error) = notifier.notify_used() {
                    tracing::debug!(%error, "notification failed");
                    self.counters.notify_errors += 1;
                }
            }
            Ok(false) => {}
            Err(error) => {
                tracing::debug!(%error, "used event unreadable");
                self.counters.used_ring_errors += 1;
            }
        }
    }
}
