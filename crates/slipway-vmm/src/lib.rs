//! `slipway-vmm` trusts nothing the guest does: everything it does through
//! ports, MMIO or memory is input that may be hostile, and no exit reason,
//! port, width or value panics the VMM. What the guest cannot be allowed to
//! do (a triple fault, an instruction KVM cannot emulate) ends the VM with
//! [`VmEnd::Failed`] and the reason.
//!
//! A small reference VMM: boots a Linux `vmlinux` on KVM (one vCPU, the
//! in-kernel IOAPIC/PIC/PIT, PVH entry) with slipway's virtio-net device
//! on virtio-mmio, declared to the guest by ACPI. It is what
//! `slipway-vmm` runs, and shows how a rust-vmm VMM embeds
//! `virtio-net-kvm` with the slipway backend.
//!
//! Two threads. The vCPU thread runs `KVM_RUN` and handles the port I/O
//! itself (the 16550 console, the i8042 reset line, the ACPI sleep
//! register); an MMIO exit in the device's window goes to the backend's
//! thread as a [`MmioAccess`] and the vCPU waits for the answer. The
//! backend's thread ([`virtio_mmio`]) owns the backend,
//! the virtio-mmio transport and the device core, and serves queue
//! notifications (ioeventfds) and register accesses on one epoll set; the
//! interrupt goes straight into KVM (an irqfd). Nothing is shared between
//! the threads but the guest's memory, which the device only reads and
//! writes through `vm-memory`'s checked accessors.

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

pub mod acpi;
pub mod boot;
pub mod cpu;
pub mod layout;
pub mod serial;
mod vcpu;
pub mod virtio_mmio;

use std::io::Write;
use std::sync::Arc;

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

pub use boot::BootSpec;
pub use vcpu::{MmioAccess, VmEnd};

/// Why the VM could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// A KVM ioctl failed.
    #[error("{call}: {error}")]
    Kvm {
        /// The ioctl.
        call: &'static str,
        /// What KVM said.
        error: kvm_ioctls::Error,
    },
    /// Loading the guest or preparing memory failed.
    #[error("{0}")]
    Setup(String),
}

impl VmmError {
    /// A mapper from a KVM error to this error, naming the call.
    pub fn kvm(call: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Self {
        move |error| Self::Kvm { call, error }
    }
}

/// Everything about the machine but the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineConfig {
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// What to boot.
    pub boot: BootSpec,
    /// Whether the ACPI DSDT declares the net device (otherwise the
    /// command line must, see [`device_cmdline`]).
    pub acpi_device: bool,
}

/// The kernel parameters every guest gets: the console on COM1, reboot
/// through the i8042 (which ends the VMM), a reboot at once after a panic
/// (so a panicked guest ends the VMM too), and no PCI probing (the machine
/// has no PCI bus).
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 pci=off";

/// The net device as the DSDT declares it.
pub const NET_DEVICE: acpi::VirtioMmioDevice = acpi::VirtioMmioDevice {
    base: 0xd000_0000,
    size: 0x200,
    irq: layout::VIRTIO_NET_IRQ,
};

/// The kernel parameter that declares the net device to a kernel built
/// with `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`, for machines booted without
/// the device in the DSDT.
#[must_use]
pub fn device_cmdline() -> String {
    format!(
        "virtio_mmio.device={}@{:#x}:{}",
        NET_DEVICE.size, NET_DEVICE.base, NET_DEVICE.irq
    )
}

/// The KVM address of the TSS the VMX code needs, in the MMIO hole.
const TSS_ADDR: usize = 0xfffb_d000;

/// A created, loaded VM whose vCPU has not run yet.
#[derive(Debug)]
pub struct Machine {
    // Field order is drop order: the VM goes before the memory it maps.
    vcpu: VcpuFd,
    vm: VmFd,
    mem: Arc<GuestMemoryMmap>,
    serial_irq: EventFd,
}

impl Machine {
    /// Creates the VM with its irqchip and PIT, maps `config.mem_mib` of
    /// RAM, loads the guest, and sets up the vCPU at its entry.
    ///
    /// # Errors
    /// /dev/kvm cannot be opened, KVM refused a step, or loading failed.
    pub fn new(config: &MachineConfig) -> Result<Self, VmmError> {
        let kvm = Kvm::new().map_err(VmmError::kvm("open /dev/kvm"))?;
        let vm = kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM"))?;
        vm.set_tss_address(TSS_ADDR)
            .map_err(VmmError::kvm("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip()
            .map_err(VmmError::kvm("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit)
            .map_err(VmmError::kvm("KVM_CREATE_PIT2"))?;

        let mem_size = config.mem_mib << 20;
        let size = usize::try_from(mem_size)
            .map_err(|_| VmmError::Setup(format!("--mem {}: too large", config.mem_mib)))?;
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)])
            .map_err(|e| VmmError::Setup(format!("guest RAM of {} MiB: {e}", config.mem_mib)))?;
        for (slot, region) in mem.iter().enumerate() {
            let host = mem
                .get_host_address(region.start_addr())
                .map_err(|e| VmmError::Setup(format!("guest RAM: {e}")))?;
            let region = kvm_userspace_memory_region {
                slot: u32::try_from(slot).unwrap_or(u32::MAX),
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
                flags: 0,
            };
            // SAFETY: the region is one of `mem`'s mappings. Once the
            // `Machine` exists the mapping lives (behind an `Arc` the
            // device's thread shares) until after the VM is dropped: the
            // field `vm` is declared before `mem`, and the vCPU thread drops
            // them in that order. Before then no vCPU exists that could
            // touch the memory.
            unsafe { vm.set_user_memory_region(region) }
                .map_err(VmmError::kvm("KVM_SET_USER_MEMORY_REGION"))?;
        }
        let device = config.acpi_device.then_some(NET_DEVICE);
        let loaded = boot::load(&mem, mem_size, &config.boot, device)?;
        tracing::debug!(
            entry = loaded.entry,
            kernel_end = loaded.kernel_end,
            "kernel loaded"
        );

        let serial_irq =
            EventFd::new(EFD_NONBLOCK).map_err(|e| VmmError::Setup(format!("eventfd: {e}")))?;
        vm.register_irqfd(&serial_irq, layout::SERIAL_IRQ)
            .map_err(VmmError::kvm("KVM_IRQFD (serial)"))?;
        let vcpu = vm
            .create_vcpu(0)
            .map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
        let cpuid = cpu::cpuid(&kvm)?;
        cpu::setup(&vcpu, &mem, &cpuid, loaded.entry)?;
        Ok(Self {
            vcpu,
            vm,
            mem: Arc::new(mem),
            serial_irq,
        })
    }

    /// The guest's memory, for the device.
    #[must_use]
    pub fn memory(&self) -> &Arc<GuestMemoryMmap> {
        &self.mem
    }

    /// The VM, to register the device's eventfds.
    #[must_use]
    pub fn vm(&self) -> &VmFd {
        &self.vm
    }

    /// Starts the vCPU on its own thread, with the console going to
    /// `console`. MMIO accesses in the device's window go over `bus` to
    /// the backend's thread, which holds the other end; when the VM ends,
    /// the bus says how. The thread returns the same [`VmEnd`].
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start<W: Write + Send + 'static>(
        self,
        console: W,
        bus: vcpu::DeviceBus,
    ) -> std::io::Result<std::thread::JoinHandle<VmEnd>> {
        let Self {
            vcpu,
            vm,
            mem,
            serial_irq,
        } = self;
        std::thread::Builder::new()
            .name("vcpu0".into())
            .spawn(move || {
                let end = vcpu::run(vcpu, console, &serial_irq, &bus);
                bus.finish(&end);
                // The VM outlives its vCPU's last run.
                drop(vm);
                drop(mem);
                end
            })
    }
}

/// The vCPU's and the backend thread's ends of the device's channel, made
/// by [`device_channel`].
pub use vcpu::{DeviceBus, DeviceEnd};

/// Makes the channel pair between the vCPU and the backend's thread.
///
/// # Errors
/// An eventfd could not be created.
pub fn device_channel() -> std::io::Result<(DeviceBus, DeviceEnd)> {
    vcpu::channel()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn net_device_is_where_the_layout_puts_it() {
        assert_eq!(u64::from(NET_DEVICE.base), layout::VIRTIO_NET_BASE);
        assert_eq!(u64::from(NET_DEVICE.size), virtio_net_kvm::mmio::MMIO_SIZE);
        assert_eq!(device_cmdline(), "virtio_mmio.device=512@0xd0000000:5");
    }
}
