//! The ACPI tables that declare the machine to the guest: RSDP, XSDT,
//! FADT (hardware-reduced ACPI, with a sleep control register for
//! poweroff), MADT (one local APIC, the IOAPIC) and a DSDT whose one
//! device is the virtio-mmio net device (`_HID` "LNRO0005", the ID Linux's
//! virtio_mmio driver matches, as QEMU's microvm and Firecracker declare
//! theirs). A kernel without `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES` (Debian's)
//! finds the device only this way.
//!
//! The tables are laid out back to back from [`ACPI_ADDR`], RSDP first;
//! each is checksummed by its encoder.

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, MADT, ProcessorLocalApic,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{Aml, aml};

use super::layout::{ACPI_ADDR, ACPI_END, IOAPIC_ADDR, LAPIC_ADDR};

const OEM_ID: [u8; 6] = *b"SLPWAY";
const OEM_TABLE_ID: [u8; 8] = *b"SLPWAYVM";
const OEM_REVISION: u32 = 1;

/// The I/O port of the FADT's sleep control register: the guest writes
/// `SLP_EN | SLP_TYP << 2` here to power off.
pub const SLEEP_CONTROL_PORT: u16 = 0x600;
/// The sleep status register the FADT names next to it.
pub const SLEEP_STATUS_PORT: u16 = 0x601;
/// The sleep type of S5 (soft off), as the DSDT's `_S5_` package says.
pub const S5_SLEEP_TYPE: u8 = 5;
/// The bit of a sleep control write that enters the sleep state.
pub const SLP_EN: u8 = 1 << 5;

/// What the DSDT declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmioDevice {
    /// The base of the register window.
    pub base: u32,
    /// The size of the register window.
    pub size: u32,
    /// The (edge-triggered, active-high) interrupt line.
    pub irq: u32,
}

/// The tables, as laid out in guest memory from `addr`.
#[derive(Debug)]
pub struct Tables {
    /// Where the bytes go; the RSDP is at this address.
    pub addr: u64,
    /// The tables back to back.
    pub bytes: Vec<u8>,
}

/// Appends `table` at the next 16-byte boundary of `bytes` (relative to
/// `base`) and returns its guest address.
fn place(bytes: &mut Vec<u8>, base: u64, table: &[u8]) -> u64 {
    let at = bytes.len().next_multiple_of(16);
    bytes.resize(at, 0);
    bytes.extend_from_slice(table);
    base + at as u64
}

fn encode(aml: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    aml.to_aml_bytes(&mut bytes);
    bytes
}

/// The DSDT's body: the net device under `\_SB` (if any) and the S5
/// sleep state.
#[must_use]
pub fn dsdt_body(device: Option<VirtioMmioDevice>) -> Vec<u8> {
    let s5_package = aml::Package::new(vec![&S5_SLEEP_TYPE]);
    let s5 = aml::Name::new("_S5_".into(), &s5_package);
    let mut body = device.map(device_aml).unwrap_or_default();
    s5.to_aml_bytes(&mut body);
    body
}

/// The net device: `Device (\_SB.VN00)` with its `_HID`, `_UID` and
/// `_CRS` (the register window and the interrupt).
fn device_aml(device: VirtioMmioDevice) -> Vec<u8> {
    let memory = aml::Memory32Fixed::new(true, device.base, device.size);
    let interrupt = aml::Interrupt::new(true, true, false, false, device.irq);
    let resources = aml::ResourceTemplate::new(vec![&memory, &interrupt]);
    let hid = aml::Name::new("_HID".into(), &"LNRO0005");
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let crs = aml::Name::new("_CRS".into(), &resources);
    let net = aml::Device::new("\\_SB_.VN00".into(), vec![&hid, &uid, &crs]);
    encode(&net)
}

/// Builds the tables for one vCPU (APIC id 0) and the net `device`, if
/// the DSDT is to declare it, to be written at [`ACPI_ADDR`].
///
/// # Panics
/// Never: the tables' size is fixed by this function and far below the
/// area's.
#[must_use]
pub fn build(device: Option<VirtioMmioDevice>) -> Tables {
    let base = ACPI_ADDR;
    // The RSDP goes first; its XSDT address is known once the others are
    // placed, so it is written last into this slot.
    let mut bytes = vec![0; Rsdp::len()];

    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for byte in dsdt_body(device) {
        acpi_tables::AmlSink::byte(&mut dsdt, byte);
    }
    let dsdt_addr = place(&mut bytes, base, dsdt.as_slice());

    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .dsdt_64(dsdt_addr);
    // No VGA, no MSI, no ASPM control, no CMOS RTC: a bare PC.
    fadt.iapc_boot_arch = ((1u16 << 2) | (1 << 3) | (1 << 4) | (1 << 5)).into();
    fadt.sleep_control_reg = GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(SLEEP_CONTROL_PORT),
    );
    fadt.sleep_status_reg = GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(SLEEP_STATUS_PORT),
    );
    fadt.hypervisor_vendor_identity = u64::from_le_bytes(*b"SLIPWAY\0").into();
    let fadt_addr = place(&mut bytes, base, &encode(&fadt.finalize()));

    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(LAPIC_ADDR),
    );
    madt.add_structure(ProcessorLocalApic::new(0, 0, EnabledStatus::Enabled));
    madt.add_structure(IoApic::new(0, IOAPIC_ADDR, 0));
    let madt_addr = place(&mut bytes, base, &encode(&madt));

    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt_addr = place(&mut bytes, base, &encode(&xsdt));

    let rsdp = encode(&Rsdp::new(OEM_ID, xsdt_addr));
    bytes[..rsdp.len()].copy_from_slice(&rsdp);
    debug_assert!(base + bytes.len() as u64 <= ACPI_END);
    Tables { addr: base, bytes }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const DEVICE: VirtioMmioDevice = VirtioMmioDevice {
        base: 0xd000_0000,
        size: 0x200,
        irq: 5,
    };

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    /// The table at guest address `addr`: its bytes, as long as its header
    /// says, after checking its signature and checksum.
    fn table<'a>(tables: &'a Tables, addr: u64, signature: &[u8; 4]) -> &'a [u8] {
        let at = usize::try_from(addr - tables.addr).unwrap();
        let len = u32_at(&tables.bytes, at + 4) as usize;
        let table = &tables.bytes[at..at + len];
        assert_eq!(&table[..4], signature);
        assert_eq!(
            sum(table),
            0,
            "{} checksum",
            String::from_utf8_lossy(signature)
        );
        table
    }

    #[test]
    fn rsdp_leads_through_xsdt_to_checksummed_fadt_madt_and_dsdt() {
        let tables = build(Some(DEVICE));
        let rsdp = &tables.bytes[..36];
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(rsdp[15], 2, "ACPI 2.0+ RSDP");
        assert_eq!(sum(&rsdp[..20]), 0, "RSDP v1 checksum");
        assert_eq!(sum(rsdp), 0, "RSDP extended checksum");
        assert_eq!(u32_at(rsdp, 20), 36);

        let xsdt = table(&tables, u64_at(rsdp, 24), b"XSDT");
        assert_eq!(xsdt.len(), 36 + 2 * 8);
        let fadt = table(&tables, u64_at(xsdt, 36), b"FACP");
        let madt = table(&tables, u64_at(xsdt, 44), b"APIC");

        assert_eq!(fadt.len(), 276, "ACPI 6 FADT");
        let flags = u32_at(fadt, 112);
        assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
        // SLEEP_CONTROL_REG: system I/O, 8 bits, at the port.
        assert_eq!(&fadt[244..248], &[1, 8, 0, 1]);
        assert_eq!(u64_at(fadt, 248), u64::from(SLEEP_CONTROL_PORT));
        let dsdt = table(&tables, u64_at(fadt, 140), b"DSDT");
        assert_eq!(&dsdt[36..], &dsdt_body(Some(DEVICE))[..]);

        // MADT: LAPIC address, then a local APIC (type 0) and an IOAPIC
        // (type 1) at their addresses.
        assert_eq!(u32_at(madt, 36), LAPIC_ADDR);
        assert_eq!(&madt[44..52], &[0, 8, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&madt[52..56], &[1, 12, 0, 0]);
        assert_eq!(u32_at(madt, 56), IOAPIC_ADDR);
        assert_eq!(u32_at(madt, 60), 0, "GSI base");
        assert_eq!(madt.len(), 64);
        assert!(tables.addr + tables.bytes.len() as u64 <= ACPI_END);
    }

    /// The device as `iasl` compiles
    /// `Device (\_SB.VN00) { Name (_HID, "LNRO0005") Name (_UID, Zero)
    /// Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite,
    /// 0xD0000000, 0x200) Interrupt (ResourceConsumer, Edge, ActiveHigh,
    /// Exclusive) { 5 } }) }` followed by `Name (_S5, Package () { 5 })`.
    #[test]
    fn dsdt_declares_the_virtio_mmio_device_and_s5() {
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x5b, 0x82, 0x41, 0x04,                   // DeviceOp, PkgLength 65 (2 bytes)
            0x5c, 0x2e, b'_', b'S', b'B', b'_', b'V', b'N', b'0', b'0',
            0x08, b'_', b'H', b'I', b'D',             // Name (_HID,
            0x0d, b'L', b'N', b'R', b'O', b'0', b'0', b'0', b'5', 0x00,
            0x08, b'_', b'U', b'I', b'D', 0x00,       // Name (_UID, Zero)
            0x08, b'_', b'C', b'R', b'S',             // Name (_CRS,
            0x11, 0x1a, 0x0a, 0x17,                   // Buffer, 23 bytes
            0x86, 0x09, 0x00, 0x01,                   // Memory32Fixed, RW
            0x00, 0x00, 0x00, 0xd0, 0x00, 0x02, 0x00, 0x00,
            0x89, 0x06, 0x00, 0x03, 0x01,             // Extended IRQ: consumer, edge
            0x05, 0x00, 0x00, 0x00,
            0x79, 0x00,                               // EndTag
            0x08, b'_', b'S', b'5', b'_',             // Name (_S5_,
            0x12, 0x04, 0x01, 0x0a, 0x05,             // Package { 5 }
        ];
        assert_eq!(dsdt_body(Some(DEVICE)), expected);
        assert_eq!(dsdt_body(None), &expected[67..], "S5 alone");
    }
}
