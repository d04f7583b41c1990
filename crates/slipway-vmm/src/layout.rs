//! Where everything sits in the guest's physical address space, and the
//! memory map the guest is told.
//!
//! ```text
//! 0x0000_0500  GDT the vCPU starts with (4 entries)
//! 0x0000_6000  hvm_start_info, then the module list
//! 0x0000_7000  the PVH memory map
//! 0x0002_0000  the kernel command line (COMMAND_LINE_SIZE bytes)
//! 0x0009_fc00  end of low RAM (the EBDA would follow)
//! 0x000e_0000  ACPI tables, RSDP first (reserved in the map)
//! 0x0010_0000  high RAM: the kernel at its ELF physical address, the
//!              initrd at the top
//! 0xc000_0000  the MMIO hole: no RAM from here to 4 GiB
//! 0xd000_0000  the virtio-mmio net device (MMIO_SIZE bytes)
//! 0xfec0_0000  IOAPIC           0xfee0_0000  local APIC
//! ```

use linux_loader::loader::elf::start_info::{
    XEN_HVM_MEMMAP_TYPE_RAM, XEN_HVM_MEMMAP_TYPE_RESERVED, hvm_memmap_table_entry,
};

/// The GDT the vCPU starts with.
pub const GDT_ADDR: u64 = 0x500;
/// The `hvm_start_info` structure; `rbx` points here at the PVH entry.
pub const START_INFO_ADDR: u64 = 0x6000;
/// The PVH module list (the initrd), right after the start info.
pub const MODLIST_ADDR: u64 = 0x6040;
/// The PVH memory map.
pub const MEMMAP_ADDR: u64 = 0x7000;
/// The kernel command line.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Linux's `COMMAND_LINE_SIZE` on x86, terminating NUL included.
pub const CMDLINE_MAX: usize = 2048;
/// The end of low RAM: what PC firmware leaves below the EBDA.
pub const LOW_RAM_END: u64 = 0x9_fc00;
/// The ACPI tables, RSDP first.
pub const ACPI_ADDR: u64 = 0xe_0000;
/// The end of the ACPI area.
pub const ACPI_END: u64 = 0x10_0000;
/// Where high RAM starts.
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// The start of the MMIO hole below 4 GiB; RAM ends before it.
pub const MMIO_HOLE: u64 = 0xc000_0000;
/// The virtio-mmio net device's registers.
pub const VIRTIO_NET_BASE: u64 = 0xd000_0000;
/// The IOAPIC's registers (KVM's in-kernel IOAPIC).
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// The local APIC's registers.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// The serial port's interrupt line (COM1).
pub const SERIAL_IRQ: u32 = 4;
/// The virtio-mmio net device's interrupt line: free on a PC, below 16 so
/// the legacy PIC routes it too.
pub const VIRTIO_NET_IRQ: u32 = 5;
/// Guest RAM when `--mem` is not given.
pub const DEFAULT_MEM_MIB: u64 = 512;
/// The least guest RAM: the kernel, its initrd and a busybox userland.
pub const MIN_MEM_MIB: u64 = 64;
/// The most guest RAM: what fits below the MMIO hole.
pub const MAX_MEM_MIB: u64 = MMIO_HOLE >> 20;

/// The memory map the guest gets for `mem_size` bytes of RAM: low RAM,
/// the reserved ACPI area, high RAM.
#[must_use]
pub fn memory_map(mem_size: u64) -> [hvm_memmap_table_entry; 3] {
    let entry = |addr: u64, end: u64, type_| hvm_memmap_table_entry {
        addr,
        size: end - addr,
        type_,
        reserved: 0,
    };
    [
        entry(0, LOW_RAM_END, XEN_HVM_MEMMAP_TYPE_RAM),
        entry(ACPI_ADDR, ACPI_END, XEN_HVM_MEMMAP_TYPE_RESERVED),
        entry(
            HIGH_RAM_START,
            mem_size.max(HIGH_RAM_START),
            XEN_HVM_MEMMAP_TYPE_RAM,
        ),
    ]
}

/// Where an initrd of `len` bytes goes: page-aligned at the top of RAM,
/// above the kernel's end; `None` if it does not fit.
#[must_use]
pub fn initrd_addr(mem_size: u64, kernel_end: u64, len: u64) -> Option<u64> {
    let addr = mem_size.checked_sub(len)? & !0xfff;
    (addr >= kernel_end).then_some(addr)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn memory_map_leaves_out_the_hole_and_reserves_the_acpi_tables() {
        let map = memory_map(512 << 20);
        assert_eq!(map[0].addr, 0);
        assert_eq!(map[0].size, 0x9_fc00);
        assert_eq!(map[0].type_, XEN_HVM_MEMMAP_TYPE_RAM);
        assert_eq!((map[1].addr, map[1].size), (0xe_0000, 0x2_0000));
        assert_eq!(map[1].type_, XEN_HVM_MEMMAP_TYPE_RESERVED);
        assert_eq!(
            (map[2].addr, map[2].addr + map[2].size),
            (1 << 20, 512 << 20)
        );
        assert_eq!(map[2].type_, XEN_HVM_MEMMAP_TYPE_RAM);
        for window in map.windows(2) {
            assert!(window[0].addr + window[0].size <= window[1].addr);
        }
    }

    #[test]
    fn fixed_areas_do_not_overlap() {
        let areas = [
            (GDT_ADDR, GDT_ADDR + 32),
            (START_INFO_ADDR, START_INFO_ADDR + 56),
            (MODLIST_ADDR, MODLIST_ADDR + 32),
            (MEMMAP_ADDR, MEMMAP_ADDR + 3 * 24),
            (CMDLINE_ADDR, CMDLINE_ADDR + CMDLINE_MAX as u64),
        ];
        for (i, a) in areas.iter().enumerate() {
            assert!(a.1 <= LOW_RAM_END);
            for b in &areas[i + 1..] {
                assert!(a.1 <= b.0 || b.1 <= a.0, "{a:x?} overlaps {b:x?}");
            }
        }
        const {
            assert!(VIRTIO_NET_BASE >= MMIO_HOLE);
            assert!(VIRTIO_NET_BASE + virtio_net_kvm::mmio::MMIO_SIZE <= IOAPIC_ADDR as u64);
        }
    }

    #[test]
    fn initrd_goes_page_aligned_to_the_top_above_the_kernel() {
        assert_eq!(initrd_addr(0x100_0000, 0x80_0000, 0x1234), Some(0xffe000));
        assert_eq!(initrd_addr(0x100_0000, 0xff_f000, 0x2000), None);
        assert_eq!(initrd_addr(0x1000, 0, 0x2000), None);
    }
}
