//! The virtio-mmio frontend of the reference VMM (`slipway-vmm`): the
//! guest's virtio-net device, a `virtio-net-kvm` [`MmioTransport`] over
//! the guest's memory, served on the backend's thread.
//!
//! It runs in the serving loop, as the other frontends do: one thread, one
//! epoll set holding the backend's
//! descriptor, the stop sources, each queue's notify eventfd (a KVM
//! ioeventfd: the driver's notify write never leaves the kernel), the
//! eventfd the vCPU signals after sending a register access, and the one
//! it signals when the VM ends. The device raises its interrupt through
//! an eventfd KVM injects (an irqfd). The backend and the transport are
//! owned by this loop; the vCPU thread reaches them only through
//! [`crate::DeviceBus`] messages, so nothing is locked.
//!
//! Invariant: every register access the vCPU sends gets exactly one
//! answer, in order, so the vCPU never waits on an access the loop has
//! dropped; a frame the guest transmits goes to the backend and a frame the
//! backend hands out waits in the device core until the guest has room.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::Instant;

use epoll_dispatch::serve::{Frontend, Pass, frontend_kind, frontend_token, note_indexed};
use epoll_dispatch::{Interest, Kind, Poller, Readiness, Token};
use kvm_ioctls::VmFd;
use virtio_net_kvm::{MmioTransport, NetConfig, NetCounters, RX_QUEUE, TX_QUEUE};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use slipway::Backend;
use slipway::serve::{ServeEnd, StopWhen};

use crate::layout::{VIRTIO_NET_BASE, VIRTIO_NET_IRQ};
use crate::{DeviceEnd, MmioAccess, VmEnd};

const TOKEN_MMIO: Token = frontend_token(0);
const TOKEN_ENDED: Token = frontend_token(1);
const KIND_QUEUE: Kind = frontend_kind(2);

/// Calls of a queue's handler per pass before the loop looks at its other
/// sources; a queue with work left is served again on the next pass.
const ROUNDS: usize = 8;
/// Register accesses answered per pass; the vCPU sends one at a time, so
/// more than one waits only after a missed wakeup.
const ACCESSES_PER_PASS: usize = 64;

/// Why serving the guest ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestEnd {
    /// The VM ended: powered off, reset, or failed.
    Vm(VmEnd),
    /// A stop source (a signal, the deadline) ended serving.
    Stopped(ServeEnd),
}

/// The guest's virtio-net device on virtio-mmio.
#[derive(Debug)]
pub struct VirtioMmioFrontend {
    transport: MmioTransport<Arc<GuestMemoryMmap>>,
    bus: DeviceEnd,
    /// What the last wait reported, for the next pass.
    ready: Ready,
    /// The transmit queue has work left.
    tx_more: bool,
    /// The receive queue has work left: frames for the guest wait.
    rx_more: bool,
    /// How the VM ended, once it has.
    vm_end: Option<VmEnd>,
}

impl VirtioMmioFrontend {
    /// A device that tells the guest `config`, over the guest's `mem`,
    /// answering the vCPU on `bus`.
    ///
    /// # Errors
    /// The transport's eventfds could not be created.
    pub fn new(mem: Arc<GuestMemoryMmap>, config: NetConfig, bus: DeviceEnd) -> io::Result<Self> {
        let mut transport = MmioTransport::new(mem, config)?;
        // The device core completes partial checksums itself: the reference
        // VMM keeps the default, verified path.
        transport.set_checksum_offload(false);
        Ok(Self {
            transport,
            bus,
            ready: Ready::default(),
            tx_more: false,
            rx_more: false,
            vm_end: None,
        })
    }

    /// Registers the queue notifications as ioeventfds at the device's
    /// `QueueNotify` and the interrupt as an irqfd on its line.
    ///
    /// # Errors
    /// KVM refused a registration.
    pub fn register(&self, vm: &VmFd) -> Result<(), kvm_ioctls::Error> {
        virtio_net_kvm::kvm::register_eventfds(vm, &self.transport, VIRTIO_NET_BASE, VIRTIO_NET_IRQ)
    }

    /// The device core's counters.
    #[must_use]
    pub fn counters(&self) -> &NetCounters {
        self.transport.device().counters()
    }

    /// Serves the guest until the VM ends or `stop` says so.
    ///
    /// # Errors
    /// The epoll set or the backend's epoll set failed.
    pub fn serve(&mut self, backend: &mut Backend, stop: &StopWhen<'_>) -> io::Result<GuestEnd> {
        self.vm_end = None;
        let end = slipway::serve::serve(self, backend, stop)?;
        Ok(match self.vm_end.take() {
            Some(end) => GuestEnd::Vm(end),
            None => GuestEnd::Stopped(end),
        })
    }

    /// Answers the register accesses the vCPU sent; returns whether any
    /// was a write (which may have started the device).
    fn answer_accesses(&mut self) -> bool {
        // Nonblocking: an empty counter only means the accesses were taken
        // on an earlier pass.
        let _ = self.bus.wake.read();
        let mut wrote = false;
        for _ in 0..ACCESSES_PER_PASS {
            let Ok(access) = self.bus.requests.try_recv() else {
                return wrote;
            };
            let reply = self.access(access);
            wrote |= access.write.is_some();
            // The vCPU is gone only when the VM ended, which the loop
            // hears about next.
            let _ = self.bus.replies.send(reply);
        }
        // The bound was reached: what is left is taken on the next pass.
        let _ = self.bus.wake.write(1);
        wrote
    }

    fn access(&mut self, access: MmioAccess) -> [u8; 8] {
        let len = access.len.min(8);
        let mut bytes = [0; 8];
        match access.write {
            Some(data) => self.transport.write(access.offset, &data[..len]),
            None => self.transport.read(access.offset, &mut bytes[..len]),
        }
        bytes
    }

    /// Runs queue `index` if `due`, for up to [`ROUNDS`] calls; returns
    /// whether work is left.
    fn serve_queue(&mut self, index: u16, due: bool, frames: &mut Backend, now: Instant) -> bool {
        if !due {
            return false;
        }
        let mut more = self.transport.handle_queue_event(index, frames, now);
        for _ in 1..ROUNDS {
            if !more {
                break;
            }
            more = self.transport.handle_queue_event(index, frames, now);
        }
        more
    }
}

/// Which of the frontend's sources the last wait reported.
#[derive(Clone, Copy, Debug, Default)]
struct Ready {
    mmio: bool,
    ended: bool,
    /// Per queue: its notify eventfd.
    queues: [bool; 2],
}

impl Frontend<Backend> for VirtioMmioFrontend {
    fn register(&mut self, poller: &Poller) -> io::Result<()> {
        poller.register(borrow(&self.bus.wake), TOKEN_MMIO, Interest::READABLE)?;
        poller.register(
            borrow(&self.bus.ended_wake),
            TOKEN_ENDED,
            Interest::READABLE,
        )?;
        for index in [RX_QUEUE, TX_QUEUE] {
            if let (Some(event), Some(token)) = (
                self.transport.queue_event(index),
                Token::new(KIND_QUEUE, u32::from(index), 0),
            ) {
                poller.register(borrow(event), token, Interest::READABLE)?;
            }
        }
        Ok(())
    }

    fn note_first_pass(&mut self) {
        self.ready = Ready::default();
        self.tx_more = false;
        self.rx_more = false;
    }

    fn note_ready(&mut self, token: Token, _readiness: Readiness) {
        match token {
            TOKEN_MMIO => self.ready.mmio = true,
            TOKEN_ENDED => self.ready.ended = true,
            _ => {
                note_indexed(&mut self.ready.queues, token, KIND_QUEUE);
            }
        }
    }

    fn handle_input(
        &mut self,
        _poller: &Poller,
        _backend: &mut Backend,
        _now: Instant,
    ) -> io::Result<Pass> {
        if self.ready.ended {
            if let Ok(end) = self.bus.ended.try_recv() {
                self.vm_end = Some(end);
                return Ok(Pass::End(ServeEnd::Disconnected));
            }
        }
        if self.ready.mmio && self.answer_accesses() {
            // The driver may have just started the device with buffers
            // already offered.
            self.tx_more = true;
        }
        Ok(Pass::Idle)
    }

    fn handle_output(
        &mut self,
        _poller: &Poller,
        backend: &mut Backend,
        now: Instant,
    ) -> io::Result<Pass> {
        let ready = std::mem::take(&mut self.ready);
        let tx_due = ready.queues[usize::from(TX_QUEUE)] || self.tx_more;
        self.tx_more = self.serve_queue(TX_QUEUE, tx_due, backend, now);
        // The receive queue runs every pass: the backend may have frames
        // whenever a host socket or a timer ran.
        let rx_more = self.serve_queue(RX_QUEUE, true, backend, now);
        self.rx_more = rx_more;
        Ok(Pass::busy_if(self.tx_more || rx_more))
    }

    fn is_flushed(&self) -> bool {
        !self.rx_more
    }
}

/// An eventfd's descriptor, for the epoll set.
fn borrow(event: &EventFd) -> BorrowedFd<'_> {
    // SAFETY: the descriptor is the eventfd's own, open for as long as
    // `event` lives, which the returned borrow cannot outlive.
    unsafe { BorrowedFd::borrow_raw(event.as_raw_fd()) }
}
