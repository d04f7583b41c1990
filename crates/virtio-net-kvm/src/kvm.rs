//! The only KVM calls of the crate: wiring an [`MmioTransport`]'s eventfds
//! into a VM so queue notifications and the interrupt bypass the VMM.

use std::ops::Deref;

use kvm_ioctls::{IoEventAddress, VmFd};
use vm_memory::GuestMemory;

use crate::device::NUM_QUEUES;
use crate::mmio::{MmioTransport, QUEUE_NOTIFY};

/// Registers the transport's queue eventfds as ioeventfds on
/// `base + QueueNotify` (matching each queue's index) and its interrupt
/// eventfd as an irqfd on `gsi`. A driver's notify write then signals the
/// queue's eventfd inside KVM without an exit, and a raised interrupt is
/// injected without the VMM's help.
///
/// # Errors
/// KVM refused a registration (no in-kernel irqchip for the irqfd, an
/// address already taken).
pub fn register_eventfds<M>(
    vm: &VmFd,
    transport: &MmioTransport<M>,
    base: u64,
    gsi: u32,
) -> Result<(), kvm_ioctls::Error>
where
    M: Deref,
    M::Target: GuestMemory + Sized,
{
    let notify = IoEventAddress::Mmio(base + QUEUE_NOTIFY);
    for index in 0..NUM_QUEUES {
        // Two queues: the index always fits.
        let index = u16::try_from(index).unwrap_or(u16::MAX);
        if let Some(event) = transport.queue_event(index) {
            vm.register_ioevent(event, &notify, u32::from(index))?;
        }
    }
    vm.register_irqfd(transport.interrupt_event(), gsi)
}
