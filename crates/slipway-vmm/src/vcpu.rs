//! The vCPU thread: `KVM_RUN` until the guest powers off, resets or fails,
//! with the port I/O handled here and the device's MMIO sent to the
//! backend's thread.

use std::io::Write;
use std::sync::mpsc::{self, Receiver, Sender};

use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::acpi::{S5_SLEEP_TYPE, SLEEP_CONTROL_PORT, SLEEP_STATUS_PORT, SLP_EN};
use super::layout::VIRTIO_NET_BASE;
use super::serial::{COM1, PORTS, Serial};
use virtio_net_kvm::mmio::MMIO_SIZE;

/// The i8042 controller's data and command/status ports.
const I8042_DATA: u16 = 0x60;
const I8042_COMMAND: u16 = 0x64;
/// The i8042 command that pulses the CPU reset line (Linux's `reboot=k`).
const I8042_RESET: u8 = 0xfe;

/// How the VM ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmEnd {
    /// The guest powered off through the ACPI sleep register (S5).
    PowerOff,
    /// The guest reset the machine (i8042, triple fault or KVM's reset).
    Reset,
    /// KVM could not go on; the reason names the exit and where.
    Failed(String),
}

/// One MMIO access in the device's window, at `offset` from its base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// The offset from the device's base.
    pub offset: u64,
    /// `Some(bytes)` for a write, `None` for a read.
    pub write: Option<[u8; 8]>,
    /// The access width in bytes (1 to 8).
    pub len: usize,
}

/// The vCPU's end of the channel to the backend's thread.
#[derive(Debug)]
pub struct DeviceBus {
    requests: Sender<MmioAccess>,
    replies: Receiver<[u8; 8]>,
    wake: EventFd,
    ended: Sender<VmEnd>,
    ended_wake: EventFd,
}

/// The backend thread's end: requests to answer, the VM's end to notice.
#[derive(Debug)]
pub struct DeviceEnd {
    /// MMIO accesses from the vCPU.
    pub requests: Receiver<MmioAccess>,
    /// Where each read's bytes (and each write's acknowledgement) go.
    pub replies: Sender<[u8; 8]>,
    /// Signalled after each request.
    pub wake: EventFd,
    /// The VM's end, sent once.
    pub ended: Receiver<VmEnd>,
    /// Signalled when the VM ends.
    pub ended_wake: EventFd,
}

/// A connected pair.
pub(super) fn channel() -> std::io::Result<(DeviceBus, DeviceEnd)> {
    let (requests_tx, requests_rx) = mpsc::channel();
    let (replies_tx, replies_rx) = mpsc::channel();
    let (ended_tx, ended_rx) = mpsc::channel();
    let wake = EventFd::new(EFD_NONBLOCK)?;
    let ended_wake = EventFd::new(EFD_NONBLOCK)?;
    Ok((
        DeviceBus {
            requests: requests_tx,
            replies: replies_rx,
            wake: wake.try_clone()?,
            ended: ended_tx,
            ended_wake: ended_wake.try_clone()?,
        },
        DeviceEnd {
            requests: requests_rx,
            replies: replies_tx,
            wake,
            ended: ended_rx,
            ended_wake,
        },
    ))
}

impl DeviceBus {
    /// Sends an access and waits for its answer (a read's bytes; zeros
    /// for a write); `None` when the backend's thread is gone.
    pub fn access(&self, access: MmioAccess) -> Option<[u8; 8]> {
        self.requests.send(access).ok()?;
        // A full counter still wakes the loop.
        let _ = self.wake.write(1);
        self.replies.recv().ok()
    }

    /// Tells the backend's thread how the VM ended.
    pub fn finish(&self, end: &VmEnd) {
        let _ = self.ended.send(end.clone());
        let _ = self.ended_wake.write(1);
    }
}

/// Runs the vCPU until the VM ends.
pub(super) fn run<W: Write>(
    mut vcpu: VcpuFd,
    console: W,
    serial_irq: &EventFd,
    bus: &DeviceBus,
) -> VmEnd {
    let mut serial = Serial::new(console);
    let mut ports = Ports {
        serial: &mut serial,
        serial_irq,
    };
    let end = loop {
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(error) if error.errno() == libc::EINTR || error.errno() == libc::EAGAIN => {
                continue;
            }
            Err(error) => break VmEnd::Failed(format!("KVM_RUN: {error}")),
        };
        match exit {
            VcpuExit::IoOut(port, data) => {
                if let Some(end) = ports.write(port, data) {
                    break end;
                }
            }
            VcpuExit::IoIn(port, data) => ports.read(port, data),
            VcpuExit::MmioRead(addr, data) => mmio_read(bus, addr, data),
            VcpuExit::MmioWrite(addr, data) => mmio_write(bus, addr, data),
            VcpuExit::Hlt => {
                // With the in-kernel irqchip KVM handles HLT; one that
                // exits anyway means interrupts are off for good.
                break VmEnd::Failed("the guest halted with interrupts disabled".into());
            }
            VcpuExit::Shutdown => break VmEnd::Reset,
            VcpuExit::SystemEvent(kind, _) => {
                break match kind {
                    kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => VmEnd::PowerOff,
                    kvm_bindings::KVM_SYSTEM_EVENT_RESET => VmEnd::Reset,
                    other => VmEnd::Failed(format!("system event {other}")),
                };
            }
            VcpuExit::InternalError => break VmEnd::Failed(internal_error(&mut vcpu)),
            VcpuExit::FailEntry(reason, cpu) => {
                break VmEnd::Failed(format!(
                    "VM entry failed: hardware reason {reason:#x} on CPU {cpu}"
                ));
            }
            other => {
                let what = format!("{other:?}");
                break VmEnd::Failed(format!("unexpected exit {what} at {}", rip(&vcpu)));
            }
        }
    };
    serial.flush();
    end
}

fn rip(vcpu: &VcpuFd) -> String {
    match vcpu.get_regs() {
        Ok(regs) => format!("rip {:#x}", regs.rip),
        Err(_) => "an unknown rip".to_owned(),
    }
}

/// The internal error's suberror and data, and where the vCPU was.
fn internal_error(vcpu: &mut VcpuFd) -> String {
    let run = vcpu.get_kvm_run();
    // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, for which KVM
    // fills the `internal` member of the union.
    let internal = unsafe { run.__bindgen_anon_1.internal };
    let count = usize::try_from(internal.ndata)
        .unwrap_or(0)
        .min(internal.data.len());
    let data: Vec<String> = internal.data[..count]
        .iter()
        .map(|word| format!("{word:#x}"))
        .collect();
    let at = rip(vcpu);
    let code = match vcpu.get_sregs() {
        Ok(sregs) => format!(
            ", cs.l {} cr0 {:#x} efer {:#x}",
            sregs.cs.l, sregs.cr0, sregs.efer
        ),
        Err(_) => String::new(),
    };
    format!(
        "KVM internal error: suberror {} (1: emulation failure), data [{}], at {at}{code}",
        internal.suberror,
        data.join(", ")
    )
}

fn mmio_window(addr: u64) -> Option<u64> {
    let offset = addr.checked_sub(VIRTIO_NET_BASE)?;
    (offset < MMIO_SIZE).then_some(offset)
}

fn mmio_read(bus: &DeviceBus, addr: u64, data: &mut [u8]) {
    data.fill(0xff);
    let Some(offset) = mmio_window(addr) else {
        tracing::debug!(addr, "MMIO read outside any device");
        return;
    };
    let len = data.len().min(8);
    if let Some(bytes) = bus.access(MmioAccess {
        offset,
        write: None,
        len,
    }) {
        data[..len].copy_from_slice(&bytes[..len]);
    }
}

fn mmio_write(bus: &DeviceBus, addr: u64, data: &[u8]) {
    let Some(offset) = mmio_window(addr) else {
        tracing::debug!(addr, "MMIO write outside any device");
        return;
    };
    let len = data.len().min(8);
    let mut bytes = [0; 8];
    bytes[..len].copy_from_slice(&data[..len]);
    let _ = bus.access(MmioAccess {
        offset,
        write: Some(bytes),
        len,
    });
}

/// The devices on I/O ports.
struct Ports<'a, W> {
    serial: &'a mut Serial<W>,
    serial_irq: &'a EventFd,
}

impl<W: Write> Ports<'_, W> {
    /// A port write; returns the VM's end if it was a poweroff or reset.
    fn write(&mut self, port: u16, data: &[u8]) -> Option<VmEnd> {
        let value = data.first().copied().unwrap_or(0);
        match port {
            _ if (COM1..COM1 + PORTS).contains(&port) && self.serial.write(port - COM1, value) => {
                let _ = self.serial_irq.write(1);
            }
            I8042_COMMAND if value == I8042_RESET => return Some(VmEnd::Reset),
            SLEEP_CONTROL_PORT if value & SLP_EN != 0 && (value >> 2) & 0x7 == S5_SLEEP_TYPE => {
                return Some(VmEnd::PowerOff);
            }
            _ => {}
        }
        None
    }

    /// A port read: the device's register, or all ones where nothing
    /// answers (as on an ISA bus).
    fn read(&mut self, port: u16, data: &mut [u8]) {
        data.fill(0xff);
        let value = match port {
            _ if (COM1..COM1 + PORTS).contains(&port) => self.serial.read(port - COM1),
            // No key, output buffer empty, ready for a command.
            I8042_DATA | I8042_COMMAND => 0,
            SLEEP_STATUS_PORT => 0,
            _ => return,
        };
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ports_test(run: impl FnOnce(&mut Ports<'_, Vec<u8>>)) -> Vec<u8> {
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut serial = Serial::new(Vec::new());
        let mut ports = Ports {
            serial: &mut serial,
            serial_irq: &irq,
        };
        run(&mut ports);
        serial.output().clone()
    }

    #[test]
    fn i8042_reset_and_acpi_s5_end_the_vm() {
        ports_test(|ports| {
            assert_eq!(ports.write(I8042_COMMAND, &[0xd1]), None);
            assert_eq!(
                ports.write(I8042_COMMAND, &[I8042_RESET]),
                Some(VmEnd::Reset)
            );
            assert_eq!(ports.write(SLEEP_CONTROL_PORT, &[S5_SLEEP_TYPE << 2]), None);
            assert_eq!(
                ports.write(SLEEP_CONTROL_PORT, &[(S5_SLEEP_TYPE << 2) | SLP_EN]),
                Some(VmEnd::PowerOff)
            );
            // S3 is not supported: nothing happens.
            assert_eq!(ports.write(SLEEP_CONTROL_PORT, &[(3 << 2) | SLP_EN]), None);
        });
    }

    #[test]
    fn console_bytes_reach_the_output_and_absent_ports_read_all_ones() {
        let out = ports_test(|ports| {
            for byte in b"hi\n" {
                ports.write(COM1, &[*byte]);
            }
            let mut data = [0u8; 2];
            ports.read(0x2f8, &mut data);
            assert_eq!(data, [0xff, 0xff], "no COM2");
            let mut status = [0u8];
            ports.read(I8042_COMMAND, &mut status);
            assert_eq!(status, [0]);
        });
        assert_eq!(out, b"hi\n");
    }

    #[test]
    fn mmio_window_is_the_devices_registers_only() {
        assert_eq!(mmio_window(VIRTIO_NET_BASE), Some(0));
        assert_eq!(mmio_window(VIRTIO_NET_BASE + 0x1ff), Some(0x1ff));
        assert_eq!(mmio_window(VIRTIO_NET_BASE + 0x200), None);
        assert_eq!(mmio_window(VIRTIO_NET_BASE - 1), None);
    }
}
