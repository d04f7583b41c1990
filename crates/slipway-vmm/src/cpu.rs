//! The vCPU's starting state for the PVH entry: CPUID from what KVM
//! supports, the MSRs Linux expects firmware to have set, and 32-bit
//! protected mode with paging off, flat segments from a small GDT, and
//! `rbx` pointing at the `hvm_start_info`.

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES, Msrs, kvm_msr_entry, kvm_segment};
use kvm_ioctls::{Kvm, VcpuFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::VmmError;
use super::layout::{GDT_ADDR, START_INFO_ADDR};

/// CPUID leaf 1, ECX: "running under a hypervisor".
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;

/// The CPUID the guest sees: KVM's supported set, with the APIC id 0 and
/// the hypervisor bit.
///
/// # Errors
/// KVM did not report its CPUID.
pub fn cpuid(kvm: &Kvm) -> Result<CpuId, VmmError> {
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(VmmError::kvm("KVM_GET_SUPPORTED_CPUID"))?;
    for entry in cpuid.as_mut_slice() {
        match (entry.function, entry.index) {
            (1, _) => {
                // APIC id 0, one logical processor per package.
                entry.ebx &= 0x0000_ffff;
                entry.ebx |= 1 << 16;
                entry.ecx |= LEAF1_ECX_HYPERVISOR;
            }
            // The topology leaves: x2APIC id 0.
            (0xb | 0x1f, _) => entry.edx = 0,
            _ => {}
        }
    }
    Ok(cpuid)
}

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
/// MISC_ENABLE: fast string operations.
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRdefType: MTRRs enabled, memory write-back by default.
const MTRR_ENABLE_WRITEBACK: u64 = (1 << 11) | 6;

/// The MSRs firmware leaves set: the system call MSRs cleared, fast
/// strings on, and write-back memory by default (without it Linux maps
/// RAM uncached).
fn boot_msrs() -> Result<Msrs, VmmError> {
    let entries: Vec<kvm_msr_entry> = [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITEBACK),
    ]
    .into_iter()
    .map(|(index, data)| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    })
    .collect();
    Msrs::from_entries(&entries).map_err(|e| VmmError::Setup(format!("MSR list: {e:?}")))
}

/// The GDT: null, flat 32-bit code (0x08), flat data (0x10), a TSS (0x18).
pub const GDT: [u64; 4] = [
    0,
    0x00cf_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x0000_8b00_0000_0067,
];

/// The segment register the GDT entry at `selector` describes.
fn segment(selector: u16) -> kvm_segment {
    let entry = GDT[usize::from(selector >> 3)];
    let flags = (entry >> 40) as u16;
    kvm_segment {
        base: 0,
        limit: if flags & 0x8000 != 0 {
            0xffff_ffff
        } else {
            0x67
        },
        selector,
        type_: (flags & 0xf) as u8,
        present: u8::from(flags & 0x80 != 0),
        dpl: ((flags >> 5) & 3) as u8,
        db: u8::from(flags & 0x4000 != 0),
        s: u8::from(flags & 0x10 != 0),
        l: 0,
        g: u8::from(flags & 0x8000 != 0),
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Puts the vCPU at the PVH entry `entry`: 32-bit protected mode, paging
/// off, `rbx` at the start info.
///
/// # Errors
/// KVM refused a register or the CPUID, or the GDT did not fit in memory.
pub fn setup(
    vcpu: &VcpuFd,
    mem: &GuestMemoryMmap,
    cpuid: &CpuId,
    entry: u64,
) -> Result<(), VmmError> {
    vcpu.set_cpuid2(cpuid)
        .map_err(VmmError::kvm("KVM_SET_CPUID2"))?;
    let msrs = boot_msrs()?;
    let set = vcpu
        .set_msrs(&msrs)
        .map_err(VmmError::kvm("KVM_SET_MSRS"))?;
    if set != msrs.as_slice().len() {
        tracing::warn!(
            set,
            wanted = msrs.as_slice().len(),
            "KVM set only some MSRs"
        );
    }
    for (i, descriptor) in GDT.iter().enumerate() {
        mem.write_obj(*descriptor, GuestAddress(GDT_ADDR + 8 * i as u64))
            .map_err(|e| VmmError::Setup(format!("GDT: {e}")))?;
    }
    let mut sregs = vcpu.get_sregs().map_err(VmmError::kvm("KVM_GET_SREGS"))?;
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (std::mem::size_of_val(&GDT) - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = segment(0x08);
    let data = segment(0x10);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(0x18);
    // Protected mode, paging off (PE | ET).
    sregs.cr0 = 0x11;
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs)
        .map_err(VmmError::kvm("KVM_SET_SREGS"))?;
    let mut regs = vcpu.get_regs().map_err(VmmError::kvm("KVM_GET_REGS"))?;
    regs.rflags = 2;
    regs.rip = entry;
    regs.rbx = START_INFO_ADDR;
    vcpu.set_regs(&regs)
        .map_err(VmmError::kvm("KVM_SET_REGS"))?;
    // x87 control word and MXCSR at their reset values.
    let fpu = kvm_bindings::kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(VmmError::kvm("KVM_SET_FPU"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn gdt_segments_are_flat_32_bit_code_and_data() {
        let code = segment(0x08);
        assert_eq!(
            (code.type_, code.db, code.l, code.s, code.g),
            (0xb, 1, 0, 1, 1)
        );
        assert_eq!(
            (code.base, code.limit, code.present, code.dpl),
            (0, 0xffff_ffff, 1, 0)
        );
        let data = segment(0x10);
        assert_eq!(
            (data.type_, data.db, data.s, data.limit),
            (0x3, 1, 1, 0xffff_ffff)
        );
        let tss = segment(0x18);
        assert_eq!(
            (tss.type_, tss.s, tss.present, tss.limit),
            (0xb, 0, 1, 0x67)
        );
    }
}
