//! `slipway-vmm`: a small reference VMM that boots a Linux guest on KVM
//! whose network is slipway's virtio-net device on virtio-mmio. See
//! `slipway-vmm --help` and [`slipway::vmm`].
//!
//! The main thread is the backend's: it owns the backend and the device
//! and serves them until the guest powers off, resets or fails, or a
//! signal stops it; the vCPU runs on its own thread. Exit status: 0 when
//! the guest powered off or reset, 1 when setting up failed, 2 on a usage
//! error, 3 when KVM could not run the guest.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::process::ExitCode;

use slipway::frontend::{ServeEnd, StopWhen};
use slipway_cli::options::{self as cli, VMM_USAGE, VmmCommand, VmmOptions};
use slipway_cli::setup::{Failure, Setup, exit_status, finish, init_logging, setup, stop_signals};
use slipway_vmm::virtio_mmio::{GuestEnd, VirtioMmioFrontend};
use slipway_vmm::{self as vmm, BootSpec, Machine, MachineConfig, VmEnd};

/// The exit status when KVM could not run the guest.
const EXIT_VM_FAILED: u8 = 3;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let options = match cli::parse_vmm(&args) {
        Ok(VmmCommand::Boot(options)) => *options,
        Ok(VmmCommand::Help) => {
            print!("{VMM_USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(VmmCommand::Version) => {
            println!("slipway-vmm {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("slipway-vmm: {error}");
            eprintln!("Try 'slipway-vmm --help' for more information.");
            return ExitCode::from(2);
        }
    };
    init_logging(options.network.log);
    exit_status("slipway-vmm", boot(&options))
}

/// The console: a file, or stdout.
fn console(options: &VmmOptions) -> Result<Box<dyn Write + Send>, Failure> {
    match &options.console {
        Some(path) => {
            let file = File::create(path).map_err(|e| {
                Failure::Runtime(format!("--console: cannot create {}: {e}", path.display()))
            })?;
            Ok(Box::new(file))
        }
        None => Ok(Box::new(io::stdout())),
    }
}

fn boot(options: &VmmOptions) -> Result<u8, Failure> {
    // Blocked first, before the vCPU thread starts.
    let signals = stop_signals()?;
    let Setup { plan, mut backend } = setup(&options.network)?;
    let mut cmdline = vmm::DEFAULT_CMDLINE.to_owned();
    if options.device_on_cmdline {
        cmdline.push(' ');
        cmdline.push_str(&vmm::device_cmdline());
    }
    for extra in &options.cmdline {
        cmdline.push(' ');
        cmdline.push_str(extra);
    }
    let config = MachineConfig {
        mem_mib: options.mem_mib,
        boot: BootSpec {
            kernel: options.kernel.clone(),
            initrd: options.initrd.clone(),
            cmdline,
        },
        acpi_device: !options.device_on_cmdline,
    };
    let machine = Machine::new(&config).map_err(|e| Failure::Runtime(e.to_string()))?;
    let (bus, device_end) = vmm::device_channel().map_err(Failure::runtime("eventfd"))?;
    let net = virtio_net_kvm::NetConfig {
        mtu: plan.mtu(),
        ..virtio_net_kvm::NetConfig::default()
    };
    let mut frontend = VirtioMmioFrontend::new(machine.memory().clone(), net, device_end)
        .map_err(Failure::runtime("virtio-net device"))?;
    frontend
        .register(machine.vm())
        .map_err(|e| Failure::Runtime(format!("ioeventfd/irqfd: {e}")))?;
    let console = console(options)?;
    // The vCPU thread is never joined: when serving ends the process
    // exits, and the VM with it.
    let _vcpu = machine
        .start(console, bus)
        .map_err(Failure::runtime("starting the vCPU"))?;
    let stop = StopWhen {
        signals: Some(&signals),
        ..StopWhen::default()
    };
    let end = frontend
        .serve(&mut backend, &stop)
        .map_err(Failure::runtime("serving the guest"))?;
    let counters = frontend.counters().lines();
    finish(
        "slipway-vmm",
        options.network.stats,
        &mut backend,
        &counters,
    );
    Ok(match end {
        GuestEnd::Vm(VmEnd::PowerOff) => {
            tracing::info!("the guest powered off");
            0
        }
        GuestEnd::Vm(VmEnd::Reset) => {
            tracing::info!("the guest reset the machine");
            0
        }
        GuestEnd::Vm(VmEnd::Failed(why)) => {
            eprintln!("slipway-vmm: the VM failed: {why}");
            EXIT_VM_FAILED
        }
        GuestEnd::Stopped(ServeEnd::Signal(signal)) => {
            tracing::info!(signal, "stopped by a signal");
            0
        }
        GuestEnd::Stopped(_) => 0,
    })
}
