//! How QEMU runs a test guest's CPU: KVM where it can run a stock Linux
//! kernel, TCG elsewhere. One file, included by path by the VM tests of
//! `slipway` and by the bench harness's VM paths, so both pick alike.

use std::path::Path;

/// The variable that picks QEMU's accelerator: `kvm`, `tcg` or `auto`.
pub const ACCEL_VAR: &str = "SLIPWAY_VM_ACCEL";

/// How QEMU runs the guest's CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// QEMU's binary translator: slower, runs anywhere.
    Tcg,
}

/// Whether /dev/kvm is PVM, a software hypervisor whose instruction
/// emulator cannot run a stock Linux kernel.
pub fn kvm_is_pvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

impl Accel {
    /// [`ACCEL_VAR`] when set; otherwise KVM where /dev/kvm opens and is
    /// not PVM (whose KVM cannot run a stock kernel), TCG elsewhere.
    pub fn choose() -> Result<Self, String> {
        match std::env::var(ACCEL_VAR).as_deref() {
            Ok("kvm") => return Ok(Self::Kvm),
            Ok("tcg") => return Ok(Self::Tcg),
            Ok("" | "auto") | Err(_) => {}
            Ok(other) => return Err(format!("{ACCEL_VAR}={other}: expected kvm, tcg or auto")),
        }
        let kvm_opens = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        Ok(if kvm_opens && !kvm_is_pvm() {
            Self::Kvm
        } else {
            Self::Tcg
        })
    }

    /// QEMU's options for this accelerator.
    pub fn qemu_args(self) -> [&'static str; 4] {
        match self {
            Self::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Self::Tcg => ["-accel", "tcg", "-cpu", "max"],
        }
    }

    /// Kernel parameters the accelerator needs: under TCG the guest's
    /// timer calibration otherwise hangs or takes seconds.
    pub fn kernel_args(self) -> &'static str {
        match self {
            Self::Kvm => "",
            Self::Tcg => " tsc_early_khz=2100000 tsc=reliable lpj=8400000",
        }
    }
}
