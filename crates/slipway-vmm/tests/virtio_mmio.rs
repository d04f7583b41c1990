//! slipway-vmm's virtio-mmio frontend without a VM: the test plays the
//! vCPU, sending the driver's register accesses over the
//! [`slipway::vmm::DeviceBus`] exactly as the vCPU thread forwards MMIO
//! exits, while the frontend serves a real slipway backend on its own
//! thread. The rings are laid out in guest memory with virtio-queue's mock
//! driver; a DHCP DISCOVER goes out and slipway's OFFER comes back, and an
//! IPv6 router solicitation gets the advertisement of the plan's prefix.
//!
//! No KVM, no root: the notify write arrives as a register write (what
//! KVM's ioeventfd turns into the same eventfd signal), and the frontend's
//! interrupt status register is read back over the bus. Every wait is
//! bounded.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use test_support::common;
use test_support::harness;
use test_support::virtq;

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use harness::Frame;
use harness::frames::{GUEST_LL6, GUEST_MAC, check_dhcp_reply, dhcp_message, router_solicitation};
use slipway::Backend;
use slipway::frontend::StopWhen;
use slipway_vmm::virtio_mmio::{GuestEnd, VirtioMmioFrontend};
use slipway_vmm::{DeviceBus, MmioAccess, VmEnd, device_channel};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    DhcpMessageType, EthernetFrame, EthernetProtocol, Icmpv6Packet, Icmpv6Repr, Ipv6Packet,
    NdiscRepr,
};
use virtio_net_kvm::{F_MAC, F_MRG_RXBUF, F_STATUS, F_VERSION_1, NET_HDR_LEN, NetConfig};
use virtq::{Driver, guest_memory};

/// The longest the test waits for the device to answer.
const LIMIT: Duration = Duration::from_secs(20);

fn write(bus: &DeviceBus, offset: u64, value: u32) {
    let mut bytes = [0; 8];
    bytes[..4].copy_from_slice(&value.to_le_bytes());
    bus.access(MmioAccess {
        offset,
        write: Some(bytes),
        len: 4,
    })
    .expect("the frontend answers");
}

fn read(bus: &DeviceBus, offset: u64) -> u32 {
    let bytes = bus
        .access(MmioAccess {
            offset,
            write: None,
            len: 4,
        })
        .expect("the frontend answers");
    u32::from_le_bytes(bytes[..4].try_into().unwrap())
}

/// The driver's initialization over the bus, as Linux's virtio_mmio does
/// it: identify, negotiate, set up both queues, DRIVER_OK.
fn initialize(bus: &DeviceBus, rx: &Driver<'_>, tx: &Driver<'_>) {
    assert_eq!(read(bus, 0x00), 0x7472_6976, "magic \"virt\"");
    assert_eq!(read(bus, 0x04), 2, "virtio-mmio version 2");
    assert_eq!(read(bus, 0x08), 1, "a network card");
    write(bus, 0x70, 0);
    write(bus, 0x70, 1);
    write(bus, 0x70, 3);
    let features = F_VERSION_1 | F_MAC | F_STATUS | F_MRG_RXBUF;
    for (sel, word) in [(0, features as u32), (1, (features >> 32) as u32)] {
        write(bus, 0x14, sel);
        assert_eq!(read(bus, 0x10) & word, word, "offered word {sel}");
        write(bus, 0x24, sel);
        write(bus, 0x20, word);
    }
    write(bus, 0x70, 0xb);
    assert_eq!(read(bus, 0x70), 0xb, "FEATURES_OK kept");
    for (index, driver) in [rx, tx].into_iter().enumerate() {
        let [desc, avail, used] = driver.addresses();
        write(bus, 0x30, index as u32);
        assert!(read(bus, 0x34) >= 16, "queue {index} max size");
        write(bus, 0x38, 16);
        for (low, addr) in [(0x80, desc), (0x90, avail), (0xa0, used)] {
            write(bus, low, addr.0 as u32);
            write(bus, low + 4, (addr.0 >> 32) as u32);
        }
        write(bus, 0x44, 1);
    }
    write(bus, 0x70, 0xf);
    assert_eq!(read(bus, 0x70), 0xf, "DRIVER_OK without NEEDS_RESET");
}

/// Sends `request` through the frontend as a driver does (register
/// accesses over the bus) and returns the one frame that comes back, after
/// checking the interrupt, the returned transmit chain, a quiet frontend
/// thread and a clean power-off.
fn one_exchange(request: &[u8], what: &str) -> Frame {
    let mem = Arc::new(guest_memory());
    let (bus, device_end) = device_channel().unwrap();
    let memory = Arc::clone(&mem);
    let (tid_tx, tid) = std::sync::mpsc::channel();
    let server = thread::spawn(move || {
        let _ = tid_tx.send(common::current_tid());
        let mut backend = Backend::new(harness::default_config(), Instant::now()).unwrap();
        let mut frontend =
            VirtioMmioFrontend::new(memory, NetConfig::default(), device_end).unwrap();
        let stop = StopWhen {
            deadline: Some(Instant::now() + LIMIT),
            ..StopWhen::default()
        };
        let end = frontend.serve(&mut backend, &stop).unwrap();
        (end, frontend.counters().clone())
    });

    let mut rx = Driver::new(&mem, 0x1_0000, 16, 0x10_0000);
    let mut tx = Driver::new(&mem, 0x2_0000, 16, 0x20_0000);
    initialize(&bus, &rx, &tx);
    let rx_buffers = rx.offer_rx(&[4096]);
    write(&bus, 0x50, 0);
    tx.offer_tx(&[&[0u8; NET_HDR_LEN], request]);
    write(&bus, 0x50, 1);

    let deadline = Instant::now() + LIMIT;
    let status = loop {
        let status = read(&bus, 0x60);
        if status & 1 != 0 && !rx.take_used().is_empty() {
            break status;
        }
        assert!(Instant::now() < deadline, "no {what} within {LIMIT:?}");
        thread::sleep(Duration::from_millis(5));
    };
    write(&bus, 0x64, status);
    assert_eq!(read(&bus, 0x60) & 1, 0, "the interrupt was acknowledged");
    let (addr, cap) = rx_buffers.buffers[0];
    let written = rx.read(addr, cap);
    let frame = Frame(written[NET_HDR_LEN..].to_vec());
    assert_eq!(tx.take_used().len(), 1, "the transmit chain is returned");

    let tid = tid.recv_timeout(LIMIT).expect("the frontend's thread id");
    common::assert_thread_quiet(tid, 1, &format!("the device after the {what}"));
    bus.finish(&VmEnd::PowerOff);
    let (end, counters) = server.join().unwrap();
    assert_eq!(end, GuestEnd::Vm(VmEnd::PowerOff));
    assert_eq!(counters.tx_frames, 1);
    assert_eq!(counters.rx_frames, 1);
    frame
}

#[test]
fn dhcp_offer_comes_back_through_register_accesses_sent_over_the_bus() {
    let xid = 0x6d6d_696f;
    let discover = dhcp_message(DhcpMessageType::Discover, xid, None, None);
    let frame = one_exchange(&discover, "DHCP offer");
    check_dhcp_reply(&frame, DhcpMessageType::Offer, xid);
}

#[test]
fn ipv6_router_advertisement_comes_back_through_register_accesses_sent_over_the_bus() {
    let frame = one_exchange(&router_solicitation(), "router advertisement");
    let eth = EthernetFrame::new_checked(&frame.0[..]).unwrap();
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
    assert_eq!(
        eth.dst_addr(),
        GUEST_MAC,
        "answered to the soliciting guest"
    );
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    let router_ll = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (router_ll, GUEST_LL6));
    assert_eq!(ip.hop_limit(), 255, "neighbour discovery's hop limit");
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    let repr = Icmpv6Repr::parse(
        &ip.src_addr(),
        &ip.dst_addr(),
        &icmp,
        &ChecksumCapabilities::default(),
    )
    .expect("an advertisement whose checksum is right");
    let Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert { prefix_info, .. }) = repr else {
        panic!("not a router advertisement: {repr:?}");
    };
    let prefix = prefix_info.expect("the plan's prefix");
    assert_eq!(
        (prefix.prefix, prefix.prefix_len),
        (Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0), 64)
    );
}
