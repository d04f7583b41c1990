//! Loading the guest: the `vmlinux` ELF at its physical addresses, the
//! initrd at the top of RAM, the command line, the ACPI tables, and the
//! PVH `hvm_start_info` with the memory map and the initrd as module 0.

use std::fs::File;
use std::path::PathBuf;

use linux_loader::loader::KernelLoader;
use linux_loader::loader::elf::start_info::{
    XEN_HVM_START_MAGIC_VALUE, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::VmmError;
use super::acpi;
use super::layout::{
    CMDLINE_ADDR, CMDLINE_MAX, HIGH_RAM_START, MEMMAP_ADDR, MODLIST_ADDR, START_INFO_ADDR,
    initrd_addr, memory_map,
};

/// What the guest boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootSpec {
    /// The uncompressed kernel (`vmlinux`) with a PVH entry note.
    pub kernel: PathBuf,
    /// Initrd files, concatenated in order (cpio archives may be).
    pub initrd: Vec<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
}

/// The loaded guest: where the vCPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The PVH entry point (32-bit, paging off).
    pub entry: u64,
    /// The end of the kernel image.
    pub kernel_end: u64,
}

/// The initrd files concatenated, each starting 4-byte aligned as the
/// kernel's cpio unpacker requires between archives.
///
/// # Errors
/// A file could not be read.
pub fn read_initrd(files: &[PathBuf]) -> Result<Vec<u8>, VmmError> {
    let mut bytes = Vec::new();
    for file in files {
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        let data = std::fs::read(file)
            .map_err(|e| VmmError::Setup(format!("--initrd {}: {e}", file.display())))?;
        bytes.extend_from_slice(&data);
    }
    Ok(bytes)
}

/// The `hvm_start_info` for a command line at [`CMDLINE_ADDR`], an RSDP
/// at `rsdp`, a memory map of `memmap_entries` at [`MEMMAP_ADDR`], and
/// `modules` entries at [`MODLIST_ADDR`].
#[must_use]
pub fn start_info(rsdp: u64, memmap_entries: u32, modules: u32) -> hvm_start_info {
    hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        // Version 1: the memory map fields are valid.
        version: 1,
        flags: 0,
        nr_modules: modules,
        modlist_paddr: if modules > 0 { MODLIST_ADDR } else { 0 },
        cmdline_paddr: CMDLINE_ADDR,
        rsdp_paddr: rsdp,
        memmap_paddr: MEMMAP_ADDR,
        memmap_entries,
        reserved: 0,
    }
}

/// Loads the kernel, initrd, command line, ACPI tables and start info into
/// `mem` (of `mem_size` bytes from address 0).
///
/// # Errors
/// A file is missing or not a PVH-bootable `vmlinux`, the initrd or the
/// command line does not fit.
pub fn load(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    spec: &BootSpec,
    device: Option<acpi::VirtioMmioDevice>,
) -> Result<Loaded, VmmError> {
    let mut kernel = File::open(&spec.kernel)
        .map_err(|e| VmmError::Setup(format!("--kernel {}: {e}", spec.kernel.display())))?;
    let result = Elf::load(mem, None, &mut kernel, Some(GuestAddress(HIGH_RAM_START)))
        .map_err(|e| VmmError::Setup(format!("--kernel {}: {e}", spec.kernel.display())))?;
    let PvhBootCapability::PvhEntryPresent(entry) = result.pvh_boot_cap else {
        return Err(VmmError::Setup(format!(
            "--kernel {}: no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); \
             slipway-vmm boots an uncompressed vmlinux built with CONFIG_PVH",
            spec.kernel.display()
        )));
    };
    let kernel_end = result.kernel_end;

    let cmdline = spec.cmdline.as_bytes();
    if cmdline.len() >= CMDLINE_MAX || cmdline.contains(&0) {
        return Err(VmmError::Setup(format!(
            "kernel command line: {} bytes; at most {} without NUL bytes",
            cmdline.len(),
            CMDLINE_MAX - 1
        )));
    }
    let mut with_nul = cmdline.to_vec();
    with_nul.push(0);
    write(mem, CMDLINE_ADDR, &with_nul, "command line")?;

    let mut modules = Vec::new();
    let initrd = read_initrd(&spec.initrd)?;
    if !initrd.is_empty() {
        let len = initrd.len() as u64;
        let addr = initrd_addr(mem_size, kernel_end, len).ok_or_else(|| {
            VmmError::Setup(format!(
                "--initrd: {len} bytes do not fit in guest RAM above the kernel; raise --mem"
            ))
        })?;
        write(mem, addr, &initrd, "initrd")?;
        modules.push(hvm_modlist_entry {
            paddr: addr,
            size: len,
            cmdline_paddr: 0,
            reserved: 0,
        });
    }
    for (i, module) in modules.iter().enumerate() {
        let at = MODLIST_ADDR + (i * std::mem::size_of::<hvm_modlist_entry>()) as u64;
        mem.write_obj(*module, GuestAddress(at))
            .map_err(|e| VmmError::Setup(format!("module list: {e}")))?;
    }

    let tables = acpi::build(device);
    write(mem, tables.addr, &tables.bytes, "ACPI tables")?;

    let map = memory_map(mem_size);
    for (i, entry) in map.iter().enumerate() {
        let at = MEMMAP_ADDR + (i * std::mem::size_of_val(entry)) as u64;
        mem.write_obj(*entry, GuestAddress(at))
            .map_err(|e| VmmError::Setup(format!("memory map: {e}")))?;
    }
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let info = start_info(tables.addr, count(map.len()), count(modules.len()));
    mem.write_obj(info, GuestAddress(START_INFO_ADDR))
        .map_err(|e| VmmError::Setup(format!("start info: {e}")))?;
    Ok(Loaded {
        entry: entry.0,
        kernel_end,
    })
}

fn write(mem: &GuestMemoryMmap, addr: u64, bytes: &[u8], what: &str) -> Result<(), VmmError> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|e| VmmError::Setup(format!("{what} at {addr:#x}: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use vm_memory::ByteValued;

    #[test]
    fn start_info_points_at_the_fixed_areas() {
        let info = start_info(0xe_0000, 3, 1);
        let bytes = info.as_slice();
        assert_eq!(bytes.len(), 56);
        assert_eq!(&bytes[..4], &0x336e_c578u32.to_le_bytes(), "magic");
        assert_eq!(info.version, 1);
        assert_eq!((info.nr_modules, info.modlist_paddr), (1, MODLIST_ADDR));
        assert_eq!(info.cmdline_paddr, CMDLINE_ADDR);
        assert_eq!(info.rsdp_paddr, 0xe_0000);
        assert_eq!((info.memmap_paddr, info.memmap_entries), (MEMMAP_ADDR, 3));
        assert_eq!(start_info(0xe_0000, 3, 0).modlist_paddr, 0);
    }

    #[test]
    fn initrd_files_are_concatenated_4_byte_aligned() {
        let dir = std::env::temp_dir().join(format!("slipway-vmm-initrd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, b"12345").unwrap();
        std::fs::write(&b, b"xyz").unwrap();
        let bytes = read_initrd(&[a, b]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(bytes, b"12345\0\0\0xyz");
        let missing = read_initrd(&[dir.join("none")]).unwrap_err();
        assert!(missing.to_string().contains("--initrd"), "{missing}");
    }
}
