//! The virtio-mmio transport (version 2): the register file a driver
//! programs, queue notifications as eventfds (what KVM's ioeventfd signals),
//! and the interrupt as an interrupt status register plus an eventfd (what
//! KVM's irqfd injects).
//!
//! Register accesses come from the driver and are as hostile as its queues:
//! unknown offsets, odd widths, out-of-range selectors and writes in the
//! wrong state are ignored; nothing here panics or allocates.
//!
//! The transport knows nothing about KVM: a VMM registers
//! [`MmioTransport::queue_event`] at `base + QUEUE_NOTIFY` as an ioeventfd
//! and [`MmioTransport::interrupt_event`] as an irqfd, and forwards the
//! other MMIO exits to [`MmioTransport::read`] and [`MmioTransport::write`].
//! A VMM without ioeventfd gets the same behaviour: a write to
//! `QueueNotify` signals the same eventfd.

use std::io;
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use virtio_bindings::bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::bindings::virtio_mmio::{
    VIRTIO_MMIO_CONFIG, VIRTIO_MMIO_CONFIG_GENERATION, VIRTIO_MMIO_DEVICE_FEATURES,
    VIRTIO_MMIO_DEVICE_FEATURES_SEL, VIRTIO_MMIO_DEVICE_ID, VIRTIO_MMIO_DRIVER_FEATURES,
    VIRTIO_MMIO_DRIVER_FEATURES_SEL, VIRTIO_MMIO_INT_VRING, VIRTIO_MMIO_INTERRUPT_ACK,
    VIRTIO_MMIO_INTERRUPT_STATUS, VIRTIO_MMIO_MAGIC_VALUE, VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
    VIRTIO_MMIO_QUEUE_AVAIL_LOW, VIRTIO_MMIO_QUEUE_DESC_HIGH, VIRTIO_MMIO_QUEUE_DESC_LOW,
    VIRTIO_MMIO_QUEUE_NOTIFY, VIRTIO_MMIO_QUEUE_NUM, VIRTIO_MMIO_QUEUE_NUM_MAX,
    VIRTIO_MMIO_QUEUE_READY, VIRTIO_MMIO_QUEUE_SEL, VIRTIO_MMIO_QUEUE_USED_HIGH,
    VIRTIO_MMIO_QUEUE_USED_LOW, VIRTIO_MMIO_STATUS, VIRTIO_MMIO_VENDOR_ID, VIRTIO_MMIO_VERSION,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemory;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use guest_frame::FrameBackend;

use crate::backend::Notifier;
use crate::config::NetConfig;
use crate::device::{NUM_QUEUES, NetDevice, RX_QUEUE, TX_QUEUE};

/// "virt" in little endian.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// The virtio-mmio version without the legacy interface.
pub const MMIO_VERSION: u32 = 2;
/// The virtio device id of a network card.
pub const NET_DEVICE_ID: u32 = 1;
/// The vendor id the device reports: "SLPW" in little endian.
pub const VENDOR_ID: u32 = u32::from_le_bytes(*b"SLPW");
/// The largest queue a driver may set up.
pub const QUEUE_MAX_SIZE: u16 = 256;
/// Bytes of MMIO space the device decodes.
pub const MMIO_SIZE: u64 = 0x200;
/// The offset of the `QueueNotify` register, where a VMM registers the
/// queue eventfds as ioeventfds (with the queue index as datamatch).
pub const QUEUE_NOTIFY: u64 = VIRTIO_MMIO_QUEUE_NOTIFY as u64;

/// The interrupt: a status register the driver reads and acknowledges,
/// raised together with an eventfd that injects it.
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    event: EventFd,
}

impl Interrupt {
    fn new() -> io::Result<Self> {
        Ok(Self {
            status: AtomicU32::new(0),
            event: EventFd::new(EFD_NONBLOCK)?,
        })
    }
}

impl Notifier for Interrupt {
    fn notify_used(&self) -> io::Result<()> {
        self.status
            .fetch_or(VIRTIO_MMIO_INT_VRING, Ordering::SeqCst);
        self.event.write(1)
    }
}

/// A virtio-net device on the virtio-mmio transport, over guest memory `M`
/// (`&GuestMemoryMmap`, `Arc<GuestMemoryMmap>`, a `GuestMemoryAtomic` guard,
/// ...).
#[derive(Debug)]
pub struct MmioTransport<M> {
    mem: M,
    device: NetDevice,
    queues: [Queue; NUM_QUEUES],
    queue_events: [EventFd; NUM_QUEUES],
    interrupt: Interrupt,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
}

impl<M> MmioTransport<M>
where
    M: Deref,
    M::Target: GuestMemory + Sized,
{
    /// A device that will tell the guest `config`, over `mem`.
    ///
    /// # Errors
    /// The eventfds could not be created.
    pub fn new(mem: M, config: NetConfig) -> io::Result<Self> {
        let queue = || Queue::new(QUEUE_MAX_SIZE).map_err(io::Error::other);
        Ok(Self {
            mem,
            device: NetDevice::new(config),
            queues: [queue()?, queue()?],
            queue_events: [EventFd::new(EFD_NONBLOCK)?, EventFd::new(EFD_NONBLOCK)?],
            interrupt: Interrupt::new()?,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
        })
    }

    /// The device core, for its counters and negotiated features.
    #[must_use]
    pub fn device(&self) -> &NetDevice {
        &self.device
    }

    /// Whether the device core uses checksum offload where the driver and
    /// the backend take it ([`NetDevice::set_checksum_offload`]).
    pub fn set_checksum_offload(&mut self, on: bool) {
        self.device.set_checksum_offload(on);
    }

    /// The eventfd signalled when the driver notifies queue `index`; `None`
    /// past the last queue.
    #[must_use]
    pub fn queue_event(&self, index: u16) -> Option<&EventFd> {
        self.queue_events.get(usize::from(index))
    }

    /// The eventfd signalled when the device raises its interrupt.
    #[must_use]
    pub fn interrupt_event(&self) -> &EventFd {
        &self.interrupt.event
    }

    /// The device status register.
    #[must_use]
    pub fn status(&self) -> u32 {
        self.status
    }

    fn driver_ok(&self) -> bool {
        self.status & VIRTIO_CONFIG_S_DRIVER_OK != 0
            && self.status & VIRTIO_CONFIG_S_NEEDS_RESET == 0
    }

    /// Serves queue `index` after its eventfd fired: drains the eventfd and
    /// runs the queue. Returns `true` when work remains and the caller
    /// should call again.
    pub fn handle_queue_event<B>(&mut self, index: u16, backend: &mut B, now: Instant) -> bool
    where
        B: FrameBackend + ?Sized,
    {
        if let Some(event) = self.queue_events.get(usize::from(index)) {
            // Nonblocking: an empty counter only means nothing is pending.
            let _ = event.read();
        }
        match index {
            TX_QUEUE => self.process_tx(backend, now),
            RX_QUEUE => self.process_rx(backend, now),
            _ => false,
        }
    }

    /// Runs the transmit queue. Returns `true` when work remains.
    pub fn process_tx<B: FrameBackend + ?Sized>(&mut self, backend: &mut B, now: Instant) -> bool {
        if !self.driver_ok() {
            return false;
        }
        let [_, tx] = &mut self.queues;
        self.device
            .handle_tx(&*self.mem, tx, backend, &self.interrupt, now)
    }

    /// Fills the receive queue from the backend: call it on a receive
    /// notification and whenever the backend may have frames. Returns
    /// `true` when work remains.
    pub fn process_rx<B: FrameBackend + ?Sized>(&mut self, backend: &mut B, now: Instant) -> bool {
        if !self.driver_ok() {
            return false;
        }
        let [rx, _] = &mut self.queues;
        self.device
            .handle_rx(&*self.mem, rx, backend, &self.interrupt, now)
    }

    fn selected_queue(&self) -> Option<&Queue> {
        self.queues.get(usize::try_from(self.queue_sel).ok()?)
    }

    /// The selected queue, if it exists and may still be configured.
    fn configurable_queue(&mut self) -> Option<&mut Queue> {
        let queue = self.queues.get_mut(usize::try_from(self.queue_sel).ok()?)?;
        (!queue.ready()).then_some(queue)
    }

    /// A driver read of `data.len()` bytes at `offset`. Registers are read
    /// whole (4 bytes); anything else reads as zeros.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        if let Some(config_offset) = offset.checked_sub(u64::from(VIRTIO_MMIO_CONFIG)) {
            self.device.config().read(config_offset, data);
            return;
        }
        data.fill(0);
        let (Ok(register), 4) = (u32::try_from(offset), data.len()) else {
            return;
        };
        let value = self.read_register(register);
        data.copy_from_slice(&value.to_le_bytes());
    }

    fn read_register(&self, register: u32) -> u32 {
        match register {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC_VALUE,
            VIRTIO_MMIO_VERSION => MMIO_VERSION,
            VIRTIO_MMIO_DEVICE_ID => NET_DEVICE_ID,
            VIRTIO_MMIO_VENDOR_ID => VENDOR_ID,
            VIRTIO_MMIO_DEVICE_FEATURES => {
                feature_word(self.device.device_features(), self.device_features_sel)
            }
            VIRTIO_MMIO_QUEUE_NUM_MAX => {
                self.selected_queue().map_or(0, |q| u32::from(q.max_size()))
            }
            VIRTIO_MMIO_QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt.status.load(Ordering::SeqCst),
            VIRTIO_MMIO_STATUS => self.status,
            // The configuration never changes while the driver runs.
            VIRTIO_MMIO_CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    /// A driver write of `data` at `offset`. Registers are written whole
    /// (4 bytes); the configuration space is read-only.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let (Ok(register), Ok(bytes)) = (u32::try_from(offset), <[u8; 4]>::try_from(data)) else {
            return;
        };
        let value = u32::from_le_bytes(bytes);
        match register {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES => self.write_driver_features(value),
            VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = value,
            VIRTIO_MMIO_QUEUE_NUM => {
                if let (Some(queue), Ok(size)) = (self.configurable_queue(), u16::try_from(value)) {
                    // A size that is not a power of two up to the maximum is
                    // refused by the queue and leaves the old size.
                    let _ = queue.try_set_size(size);
                }
            }
            VIRTIO_MMIO_QUEUE_READY => {
                if let Some(queue) = self.queues.get_mut(self.queue_sel as usize) {
                    queue.set_ready(value == 1);
                }
            }
            VIRTIO_MMIO_QUEUE_NOTIFY => {
                if let Some(event) = self.queue_events.get(value as usize) {
                    // A full counter already wakes the queue.
                    let _ = event.write(1);
                }
            }
            VIRTIO_MMIO_INTERRUPT_ACK => {
                self.interrupt.status.fetch_and(!value, Ordering::SeqCst);
            }
            VIRTIO_MMIO_STATUS => self.write_status(value),
            VIRTIO_MMIO_QUEUE_DESC_LOW => {
                self.set_address(|q| q.set_desc_table_address(Some(value), None))
            }
            VIRTIO_MMIO_QUEUE_DESC_HIGH => {
                self.set_address(|q| q.set_desc_table_address(None, Some(value)))
            }
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => {
                self.set_address(|q| q.set_avail_ring_address(Some(value), None))
            }
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH => {
                self.set_address(|q| q.set_avail_ring_address(None, Some(value)))
            }
            VIRTIO_MMIO_QUEUE_USED_LOW => {
                self.set_address(|q| q.set_used_ring_address(Some(value), None))
            }
            VIRTIO_MMIO_QUEUE_USED_HIGH => {
                self.set_address(|q| q.set_used_ring_address(None, Some(value)))
            }
            _ => tracing::debug!(offset, value, "write to an unknown register ignored"),
        }
    }

    fn set_address(&mut self, set: impl FnOnce(&mut Queue)) {
        if let Some(queue) = self.configurable_queue() {
            set(queue);
        }
    }

    fn write_driver_features(&mut self, value: u32) {
        // Features are settled once FEATURES_OK is set.
        if self.status & VIRTIO_CONFIG_S_DRIVER == 0
            || self.status & VIRTIO_CONFIG_S_FEATURES_OK != 0
        {
            return;
        }
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value),
            1 => {
                self.driver_features =
                    (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32);
            }
            _ => {}
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        // The driver only adds bits; a write that clears one is a driver bug.
        if value & self.status != self.status {
            tracing::debug!(
                old = self.status,
                new = value,
                "status write dropping bits ignored"
            );
            return;
        }
        let added = value & !self.status;
        let mut status = value;
        if added & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
            if let Err(error) = self.device.set_acked_features(self.driver_features) {
                tracing::debug!(%error, "features refused");
                // The driver reads the status back and sees FEATURES_OK unset.
                status &= !VIRTIO_CONFIG_S_FEATURES_OK;
            }
        }
        if added & VIRTIO_CONFIG_S_DRIVER_OK != 0 && !self.can_start() {
            status |= VIRTIO_CONFIG_S_NEEDS_RESET;
        }
        self.status = status;
    }

    /// Whether the driver set the device up completely: features accepted
    /// and both queues ready inside guest memory.
    fn can_start(&self) -> bool {
        self.status & VIRTIO_CONFIG_S_FEATURES_OK != 0
            && self.queues.iter().all(|q| q.is_valid(&*self.mem))
    }

    fn reset(&mut self) {
        self.device.reset();
        for queue in &mut self.queues {
            queue.reset();
        }
        self.interrupt.status.store(0, Ordering::SeqCst);
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
    }
}

/// Word `sel` (0: bits 0-31, 1: bits 32-63) of a feature set.
fn feature_word(features: u64, sel: u32) -> u32 {
    match sel {
        0 => (features & 0xffff_ffff) as u32,
        1 => (features >> 32) as u32,
        _ => 0,
    }
}

/// Status bits a driver sets in order during initialization.
pub const STATUS_ACKNOWLEDGE: u32 = VIRTIO_CONFIG_S_ACKNOWLEDGE;
/// See [`STATUS_ACKNOWLEDGE`].
pub const STATUS_DRIVER: u32 = VIRTIO_CONFIG_S_DRIVER;
/// See [`STATUS_ACKNOWLEDGE`].
pub const STATUS_FEATURES_OK: u32 = VIRTIO_CONFIG_S_FEATURES_OK;
/// See [`STATUS_ACKNOWLEDGE`].
pub const STATUS_DRIVER_OK: u32 = VIRTIO_CONFIG_S_DRIVER_OK;
/// Set by the device when the driver's setup cannot work.
pub const STATUS_NEEDS_RESET: u32 = VIRTIO_CONFIG_S_NEEDS_RESET;
/// Set by the driver when it gives up.
pub const STATUS_FAILED: u32 = VIRTIO_CONFIG_S_FAILED;
