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
    use linux_loader::loader::elf::start_info::hvm_memmap_table_entry;
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

    /// A minimal `vmlinux`: one loadable segment of 16 pattern bytes at
    /// 1 MiB (2 MiB in memory), and, if `pvh_entry` is given, a note
    /// segment with `XEN_ELFNOTE_PHYS32_ENTRY`.
    fn tiny_vmlinux(pvh_entry: Option<u32>) -> Vec<u8> {
        let u16le = |v: u16| v.to_le_bytes().to_vec();
        let u32le = |v: u32| v.to_le_bytes().to_vec();
        let u64le = |v: u64| v.to_le_bytes().to_vec();
        let phnum = if pvh_entry.is_some() { 2 } else { 1 };
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(16, 0);
        for field in [
            u16le(2),
            u16le(0x3e),
            u32le(1),
            u64le(0x10_0000),
            u64le(64),
            u64le(0),
        ] {
            elf.extend(field);
        }
        for field in [
            u32le(0),
            u16le(64),
            u16le(56),
            u16le(phnum),
            u16le(64),
            u16le(0),
            u16le(0),
        ] {
            elf.extend(field);
        }
        // PT_LOAD: file offset 0x1000, 16 bytes, at 1 MiB, 2 MiB in memory.
        for field in [
            u32le(1),
            u32le(5),
            u64le(0x1000),
            u64le(0x10_0000),
            u64le(0x10_0000),
        ] {
            elf.extend(field);
        }
        for field in [u64le(16), u64le(0x20_0000), u64le(0x1000)] {
            elf.extend(field);
        }
        if let Some(entry) = pvh_entry {
            // PT_NOTE at file offset 0x200: namesz 4, descsz 4, type 18.
            for field in [u32le(4), u32le(4), u64le(0x200), u64le(0), u64le(0)] {
                elf.extend(field);
            }
            for field in [u64le(20), u64le(20), u64le(4)] {
                elf.extend(field);
            }
            elf.resize(0x200, 0);
            for field in [
                u32le(4),
                u32le(4),
                u32le(18),
                b"Xen\0".to_vec(),
                u32le(entry),
            ] {
                elf.extend(field);
            }
        }
        elf.resize(0x1000, 0);
        elf.extend(0..16u8);
        elf
    }

    struct Files(PathBuf);

    impl Files {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("slipway-vmm-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const MEM: u64 = 64 << 20;
    const DEVICE: acpi::VirtioMmioDevice = acpi::VirtioMmioDevice {
        base: 0xd000_0000,
        size: 0x200,
        irq: 5,
    };

    #[test]
    fn load_lays_out_kernel_cmdline_initrd_tables_and_start_info() {
        let files = Files::new("load");
        let spec = BootSpec {
            kernel: files.write("vmlinux", &tiny_vmlinux(Some(0x10_0008))),
            initrd: vec![files.write("initrd", &[0xa5; 5000])],
            cmdline: "console=ttyS0 quiet".to_owned(),
        };
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap();
        let loaded = load(&mem, MEM, &spec, Some(DEVICE)).unwrap();
        assert_eq!(loaded.entry, 0x10_0008, "the PVH note's entry, not e_entry");
        assert_eq!(loaded.kernel_end, 0x30_0000);
        let mut kernel = [0u8; 16];
        mem.read_slice(&mut kernel, GuestAddress(0x10_0000))
            .unwrap();
        assert_eq!(kernel.to_vec(), (0..16).collect::<Vec<u8>>());

        let info: hvm_start_info = mem.read_obj(GuestAddress(START_INFO_ADDR)).unwrap();
        assert_eq!(info, start_info(acpi::build(Some(DEVICE)).addr, 3, 1));
        let mut cmdline = [0u8; 20];
        mem.read_slice(&mut cmdline, GuestAddress(info.cmdline_paddr))
            .unwrap();
        assert_eq!(&cmdline, b"console=ttyS0 quiet\0");

        let module: hvm_modlist_entry = mem.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!(module.size, 5000);
        assert_eq!(
            module.paddr,
            (MEM - 5000) & !0xfff,
            "page-aligned at the top"
        );
        let mut initrd = vec![0u8; 5000];
        mem.read_slice(&mut initrd, GuestAddress(module.paddr))
            .unwrap();
        assert!(initrd.iter().all(|b| *b == 0xa5));

        for (i, expected) in memory_map(MEM).iter().enumerate() {
            let at = info.memmap_paddr + 24 * i as u64;
            let entry: hvm_memmap_table_entry = mem.read_obj(GuestAddress(at)).unwrap();
            assert_eq!(entry, *expected);
        }
        let mut rsdp = [0u8; 8];
        mem.read_slice(&mut rsdp, GuestAddress(info.rsdp_paddr))
            .unwrap();
        assert_eq!(&rsdp, b"RSD PTR ");
    }

    #[test]
    fn load_refuses_a_kernel_without_pvh_entry_and_what_does_not_fit() {
        let files = Files::new("refuse");
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap();
        let good = files.write("vmlinux", &tiny_vmlinux(Some(0x10_0000)));
        let spec = |kernel: &PathBuf, initrd: Vec<PathBuf>, cmdline: String| BootSpec {
            kernel: kernel.clone(),
            initrd,
            cmdline,
        };
        let no_note = files.write("plain", &tiny_vmlinux(None));
        let error = load(&mem, MEM, &spec(&no_note, vec![], String::new()), None).unwrap_err();
        assert!(error.to_string().contains("no PVH entry note"), "{error}");
        let not_elf = files.write("bzimage", b"MZ not an ELF");
        let error = load(&mem, MEM, &spec(&not_elf, vec![], String::new()), None).unwrap_err();
        assert!(error.to_string().starts_with("--kernel"), "{error}");
        let long = "x".repeat(CMDLINE_MAX);
        let error = load(&mem, MEM, &spec(&good, vec![], long), None).unwrap_err();
        assert!(error.to_string().contains("at most 2047"), "{error}");
        let big = files.write("big", &vec![0; 62 << 20]);
        let error = load(&mem, MEM, &spec(&good, vec![big], String::new()), None).unwrap_err();
        assert!(error.to_string().contains("raise --mem"), "{error}");
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
