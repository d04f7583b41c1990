//! A tiny real-mode guest on real KVM drives the device: it programs the
//! virtio-mmio registers (MMIO exits the test VMM forwards to the
//! transport), notifies the transmit queue (an ioeventfd: no exit), and
//! takes the used-buffer interrupt (an irqfd into the in-kernel PIC), in
//! whose handler it reads and acknowledges the interrupt status.
//!
//! The rings and the frame are laid out in guest memory by the test, as a
//! driver would have; the guest's part is the register, notify and
//! interrupt path, which is what KVM changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::common;
use test_support::virtq;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use kvm_ioctls::{Kvm, VcpuExit};
use virtio_net_kvm::{F_MAC, F_MRG_RXBUF, F_STATUS, F_VERSION_1, MmioTransport, NetConfig};
use virtq::{Driver, Peer, pattern_frame, tx_header};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Guest RAM: the first 512 KiB.
const RAM: usize = 0x8_0000;
/// The device's MMIO window, reachable from real mode as segment 0xd000.
const MMIO_BASE: u64 = 0xd_0000;
/// The interrupt line: IRQ 5 of the master PIC, vector 8 + 5.
const GSI: u32 = 5;
const CODE: u64 = 0x1000;
const HANDLER: u64 = 0x1100;
const TABLE: u64 = 0x2000;
/// Ports the guest reports on: registers programmed, interrupt handled.
const PORT_READY: u16 = 0xf0;
const PORT_HANDLED: u16 = 0xf1;

/// Programs the PIC, writes each (offset, value) of the register table to
/// the device, enables interrupts and halts.
#[rustfmt::skip]
const MAIN: [u8; 60] = [
    0xfa,                               // cli
    0xb0, 0x11, 0xe6, 0x20,             // ICW1: edge, cascade, ICW4
    0xb0, 0x08, 0xe6, 0x21,             // ICW2: vectors from 8
    0xb0, 0x04, 0xe6, 0x21,             // ICW3: slave on IRQ2
    0xb0, 0x01, 0xe6, 0x21,             // ICW4: 8086 mode
    0xb0, 0xdf, 0xe6, 0x21,             // mask all but IRQ5
    0xb0, 0xff, 0xe6, 0xa1,             // mask the slave
    0x31, 0xc0, 0x8e, 0xd8,             // ds = 0
    0xb8, 0x00, 0xd0, 0x8e, 0xc0,       // es = 0xd000 (the device)
    0xbe, 0x00, 0x20,                   // si = TABLE
    0xfc,                               // cld
    0xad,                               // loop: lodsw (offset)
    0x83, 0xf8, 0xff,                   // cmp ax, 0xffff
    0x74, 0x0a,                         // je done
    0x89, 0xc3,                         // mov bx, ax
    0x66, 0xad,                         // lodsd (value)
    0x26, 0x66, 0x89, 0x07,             // mov es:[bx], eax
    0xeb, 0xf0,                         // jmp loop
    0xfb,                               // done: sti
    0xe6, 0xf0,                         // out PORT_READY, al
    0xf4,                               // idle: hlt
    0xeb, 0xfd,                         // jmp idle
];

/// Reads InterruptStatus, writes it to InterruptACK, reports it, EOI, iret.
#[rustfmt::skip]
const IRQ_HANDLER: [u8; 22] = [
    0xbb, 0x60, 0x00,                   // mov bx, 0x60 (InterruptStatus)
    0x26, 0x66, 0x8b, 0x07,             // mov eax, es:[bx]
    0xbb, 0x64, 0x00,                   // mov bx, 0x64 (InterruptACK)
    0x26, 0x66, 0x89, 0x07,             // mov es:[bx], eax
    0xe6, 0xf1,                         // out PORT_HANDLED, al
    0xb0, 0x20, 0xe6, 0x20,             // EOI
    0xcf,                               // iret
    0xf4,
];

/// The virtio-mmio driver sequence for both queues, as (offset, value).
fn register_table(rx: &Driver<'_>, tx: &Driver<'_>) -> Vec<(u16, u32)> {
    let features = F_VERSION_1 | F_MAC | F_STATUS | F_MRG_RXBUF;
    let mut table = vec![
        (0x70, 0), // Status: reset
        (0x70, 1), // ACKNOWLEDGE
        (0x70, 3), // DRIVER
        (0x24, 0), // DriverFeaturesSel
        (0x20, features as u32),
        (0x24, 1),
        (0x20, (features >> 32) as u32),
        (0x70, 0xb), // FEATURES_OK
    ];
    for (index, driver) in [rx, tx].into_iter().enumerate() {
        let [desc, avail, used] = driver.addresses();
        table.extend([
            (0x30, index as u32), // QueueSel
            (0x38, 16),           // QueueNum
            (0x80, desc.0 as u32),
            (0x84, 0),
            (0x90, avail.0 as u32),
            (0x94, 0),
            (0xa0, used.0 as u32),
            (0xa4, 0),
            (0x44, 1), // QueueReady
        ]);
    }
    table.push((0x70, 0xf)); // DRIVER_OK
    table.push((0x50, 1)); // QueueNotify: the transmit queue
    table
}

/// What the guest's run showed.
#[derive(Debug)]
struct Run {
    frames: Vec<Vec<u8>>,
    status: u32,
    notify_exits: usize,
    notify_events: u64,
    interrupt_status_seen: Option<u8>,
}

/// Writes the register table, the code, and the IVT entry for vector 13.
fn write_program(mem: &GuestMemoryMmap<()>, rx: &Driver<'_>, tx: &Driver<'_>) {
    let mut at = TABLE;
    for (offset, value) in register_table(rx, tx) {
        mem.write_obj(offset, GuestAddress(at)).unwrap();
        mem.write_obj(value, GuestAddress(at + 2)).unwrap();
        at += 6;
    }
    mem.write_obj(0xffffu16, GuestAddress(at)).unwrap();
    mem.write_slice(&MAIN, GuestAddress(CODE)).unwrap();
    mem.write_slice(&IRQ_HANDLER, GuestAddress(HANDLER))
        .unwrap();
    mem.write_obj(HANDLER as u16, GuestAddress(13 * 4)).unwrap();
    mem.write_obj(0u16, GuestAddress(13 * 4 + 2)).unwrap();
}

/// Points the vCPU, in real mode with code segment 0, at [`CODE`].
fn start_at_code(vcpu: &kvm_ioctls::VcpuFd) {
    let mut sregs = vcpu.get_sregs().unwrap();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).unwrap();
    let mut regs = vcpu.get_regs().unwrap();
    regs.rip = CODE;
    regs.rsp = 0x7000;
    regs.rflags = 2;
    vcpu.set_regs(&regs).unwrap();
}

fn run_guest() -> Result<Run, String> {
    let kvm = Kvm::new().map_err(|e| format!("open /dev/kvm: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| format!("create VM: {e}"))?;
    vm.create_irq_chip()
        .map_err(|e| format!("in-kernel irqchip: {e}"))?;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
    let host = mem.get_host_address(GuestAddress(0)).unwrap();
    let region = kvm_bindings::kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: RAM as u64,
        userspace_addr: host as u64,
        flags: 0,
    };
    // SAFETY: `host` is the start of `mem`'s single mapping of RAM bytes,
    // which outlives the VM: both are dropped at the end of this function,
    // the VM first.
    unsafe { vm.set_user_memory_region(region) }.map_err(|e| format!("guest memory: {e}"))?;

    // What a driver would have put in memory: rings and one frame.
    let rx = Driver::new(&mem, 0x5000, 16, 0x3_0000);
    let mut tx = Driver::new(&mem, 0x4000, 16, 0x6000);
    let frame = pattern_frame(60, 9);
    tx.offer_tx(&[&tx_header(0, 0, 0, 0), &frame]);
    write_program(&mem, &rx, &tx);

    let mut transport = MmioTransport::new(&mem, NetConfig::default()).unwrap();
    virtio_net_kvm::kvm::register_eventfds(&vm, &transport, MMIO_BASE, GSI)
        .map_err(|e| format!("ioeventfd/irqfd: {e}"))?;

    let mut vcpu = vm.create_vcpu(0).map_err(|e| format!("vCPU: {e}"))?;
    start_at_code(&vcpu);

    let mut peer = Peer::default();
    let mut run = Run {
        frames: Vec::new(),
        status: 0,
        notify_exits: 0,
        notify_events: 0,
        interrupt_status_seen: None,
    };
    for _ in 0..1000 {
        match vcpu.run().map_err(|e| format!("KVM_RUN: {e}"))? {
            VcpuExit::MmioWrite(addr, data) => {
                let offset = addr - MMIO_BASE;
                if offset == 0x50 {
                    run.notify_exits += 1;
                }
                transport.write(offset, data);
            }
            VcpuExit::MmioRead(addr, data) => transport.read(addr - MMIO_BASE, data),
            VcpuExit::IoOut(PORT_READY, _) => {
                // The event loop's turn: the notify arrived as an eventfd.
                run.status = transport.status();
                run.notify_events = transport.queue_event(1).unwrap().read().unwrap_or(0);
                while transport.handle_queue_event(1, &mut peer, Instant::now()) {}
            }
            VcpuExit::IoOut(PORT_HANDLED, data) => {
                run.interrupt_status_seen = data.first().copied();
                break;
            }
            other => return Err(format!("unexpected exit {other:?}")),
        }
    }
    run.frames = peer.from_guest;
    Ok(run)
}

#[test]
fn guest_drives_registers_notifies_through_ioeventfd_and_takes_the_irqfd_interrupt() {
    if !std::path::Path::new("/dev/kvm").exists() {
        common::skip("no /dev/kvm");
        return;
    }
    let (done, result) = mpsc::channel();
    // A guest that never gets its interrupt halts forever inside KVM_RUN:
    // the vCPU runs on its own thread and the test waits a bounded time.
    std::thread::spawn(move || {
        let _ = done.send(run_guest());
    });
    let run = match result.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(run)) => run,
        Ok(Err(why)) if why.starts_with("open /dev/kvm") => {
            common::skip(&why);
            return;
        }
        Ok(Err(why)) => panic!("KVM guest: {why}"),
        Err(_) => panic!("the guest never took the interrupt (30 s)"),
    };
    assert_eq!(run.status, 0xf, "driver reached DRIVER_OK: {run:?}");
    assert_eq!(run.notify_exits, 0, "the notify never left KVM");
    assert_eq!(run.notify_events, 1, "the ioeventfd fired once");
    assert_eq!(run.frames, vec![pattern_frame(60, 9)]);
    assert_eq!(run.interrupt_status_seen, Some(1), "used-buffer interrupt");
}
