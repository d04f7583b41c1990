//! The device against virtio-queue's mock driver: frames in both directions,
//! checksum completion checked by smoltcp, merged receive buffers,
//! backpressure, and hostile descriptor chains.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::virtq;

use std::time::Instant;

use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Address,
    Ipv4Packet, TcpPacket, UdpPacket, checksum,
};
use virtio_net_kvm::{
    Checksum, DEVICE_FEATURES, DeferredNotifier, F_CSUM, F_EVENT_IDX, F_GUEST_CSUM, F_MRG_RXBUF,
    F_VERSION_1, NET_HDR_LEN, NetConfig, NetDevice,
};
use virtio_queue::Queue;
use virtq::{
    Driver, Interrupts, MEM_SIZE, NEXT, Peer, WRITE, guest_memory, pattern_frame, tx_header,
};
use vm_memory::GuestMemoryMmap;

const RX_RING: u64 = 0;
const TX_RING: u64 = 0x1_0000;
const RX_BUFS: u64 = 0x10_0000;
const TX_BUFS: u64 = 0x80_0000;

/// The device with its two queues as the transport would hold them.
struct Rig {
    device: NetDevice,
    rx_queue: Queue,
    tx_queue: Queue,
    peer: Peer,
    rx_irqs: Interrupts,
    tx_irqs: Interrupts,
}

impl Rig {
    fn new(features: u64, rx: &Driver<'_>, tx: &Driver<'_>) -> Self {
        Self::with_config(NetConfig::default(), features, rx, tx)
    }

    fn with_config(config: NetConfig, features: u64, rx: &Driver<'_>, tx: &Driver<'_>) -> Self {
        let mut device = NetDevice::new(config);
        device.set_acked_features(features).unwrap();
        Self {
            device,
            rx_queue: rx.queue(),
            tx_queue: tx.queue(),
            peer: Peer::default(),
            rx_irqs: Interrupts::default(),
            tx_irqs: Interrupts::default(),
        }
    }

    fn tx(&mut self, mem: &GuestMemoryMmap) {
        drain("transmit", || {
            self.device.handle_tx(
                mem,
                &mut self.tx_queue,
                &mut self.peer,
                &self.tx_irqs,
                Instant::now(),
            )
        });
    }

    fn rx(&mut self, mem: &GuestMemoryMmap) {
        drain("receive", || {
            self.device.handle_rx(
                mem,
                &mut self.rx_queue,
                &mut self.peer,
                &self.rx_irqs,
                Instant::now(),
            )
        });
    }
}

/// Offers `frame` behind a plain header and runs the transmit queue.
fn transmit(rig: &mut Rig, tx: &mut Driver<'_>, mem: &GuestMemoryMmap, frame: &[u8]) {
    tx.offer_tx(&[&tx_header(0, 0, 0, 0), frame]);
    rig.tx(mem);
}

/// Calls `step` until it reports no more work, a bounded number of times.
fn drain(what: &str, mut step: impl FnMut() -> bool) {
    for _ in 0..100 {
        if !step() {
            return;
        }
    }
    panic!("{what} never drains");
}

fn drivers(mem: &GuestMemoryMmap) -> (Driver<'_>, Driver<'_>) {
    (
        Driver::new(mem, RX_RING, 16, RX_BUFS),
        Driver::new(mem, TX_RING, 16, TX_BUFS),
    )
}

#[test]
fn transmitted_frame_reaches_backend_intact() {
    let mem = guest_memory();
    let (rx, mut tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    let frame = pattern_frame(1514, 7);
    // The header split across two descriptors, the frame across three more.
    let hdr = tx_header(0, 0, 0, 0);
    let head = tx.offer_tx(&[
        &hdr[..5],
        &hdr[5..],
        &frame[..100],
        &frame[100..1000],
        &frame[1000..],
    ]);
    rig.tx(&mem);
    assert_eq!(rig.peer.from_guest, vec![frame]);
    assert_eq!(tx.take_used(), vec![(u32::from(head), 0)]);
    assert_eq!(rig.tx_irqs.0.get(), 1);
    assert_eq!(rig.device.counters().tx_frames, 1);
    assert_eq!(rig.device.counters().tx_bytes, 1514);
}

const GUEST_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
const PEER_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);

/// An Ethernet/IPv4 frame carrying `protocol` with `payload`, its transport
/// checksum field holding the pseudo-header sum only, as a driver with
/// checksum offload leaves it. Returns the frame, csum_start, csum_offset.
fn partially_checksummed(protocol: IpProtocol, payload: &[u8]) -> (Vec<u8>, u16, u16) {
    let (l4_header, csum_offset) = match protocol {
        IpProtocol::Tcp => (20, 16),
        IpProtocol::Udp => (8, 6),
        other => panic!("no transport header for {other}"),
    };
    let l4_len = l4_header + payload.len();
    let mut frame = vec![0u8; 14 + 20 + l4_len];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(EthernetAddress([0x52, 0x55, 10, 0, 2, 2]));
    eth.set_src_addr(EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
    eth.set_ethertype(EthernetProtocol::Ipv4);
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len(u16::try_from(20 + l4_len).unwrap());
    ip.set_hop_limit(64);
    ip.set_next_header(protocol);
    ip.set_src_addr(GUEST_IP);
    ip.set_dst_addr(PEER_IP);
    ip.fill_checksum();
    let l4 = &mut frame[34..];
    l4[0..2].copy_from_slice(&40000u16.to_be_bytes());
    l4[2..4].copy_from_slice(&8080u16.to_be_bytes());
    if protocol == IpProtocol::Tcp {
        l4[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        l4[12] = 5 << 4;
        l4[13] = 0x18;
        l4[14..16].copy_from_slice(&65535u16.to_be_bytes());
    } else {
        l4[4..6].copy_from_slice(&u16::try_from(l4_len).unwrap().to_be_bytes());
    }
    l4[l4_header..].copy_from_slice(payload);
    let pseudo = checksum::pseudo_header_v4(
        &GUEST_IP,
        &PEER_IP,
        protocol,
        u32::try_from(l4_len).unwrap(),
    );
    l4[csum_offset..csum_offset + 2].copy_from_slice(&pseudo.to_be_bytes());
    (frame, 34, u16::try_from(csum_offset).unwrap())
}

#[test]
fn partial_tcp_and_udp_checksums_are_completed_before_the_backend() {
    let mem = guest_memory();
    let (rx, mut tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    let payload: Vec<u8> = (0..1001u32).map(|i| (i * 7 % 251) as u8).collect();
    let (tcp, tcp_start, tcp_off) = partially_checksummed(IpProtocol::Tcp, &payload);
    let (udp, udp_start, udp_off) = partially_checksummed(IpProtocol::Udp, &payload[..333]);
    let needs_csum = 1;
    tx.offer_tx(&[&tx_header(needs_csum, 0, tcp_start, tcp_off), &tcp]);
    tx.offer_tx(&[
        &tx_header(needs_csum, 0, udp_start, udp_off),
        &udp[..50],
        &udp[50..],
    ]);
    rig.tx(&mem);

    assert_eq!(rig.peer.from_guest.len(), 2);
    let (src, dst) = (IpAddress::Ipv4(GUEST_IP), IpAddress::Ipv4(PEER_IP));
    let sent_tcp = &rig.peer.from_guest[0];
    let tcp_packet = TcpPacket::new_checked(&sent_tcp[34..]).unwrap();
    assert!(tcp_packet.verify_checksum(&src, &dst), "TCP checksum wrong");
    assert_eq!(tcp_packet.payload(), &payload[..]);
    let sent_udp = &rig.peer.from_guest[1];
    let udp_packet = UdpPacket::new_checked(&sent_udp[34..]).unwrap();
    assert!(udp_packet.verify_checksum(&src, &dst), "UDP checksum wrong");
    assert_ne!(
        udp_packet.checksum(),
        0,
        "a computed UDP checksum is never 0"
    );
    // Nothing but the checksum field changed.
    let mut expected = tcp.clone();
    expected[50..52].copy_from_slice(&sent_tcp[50..52]);
    assert_eq!(sent_tcp, &expected);
}

#[test]
fn a_backend_that_offloads_gets_partial_checksums_as_they_are() {
    let mem = guest_memory();
    let (rx, mut tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    rig.peer.offload = true;
    let (tcp, start, offset) = partially_checksummed(IpProtocol::Tcp, b"not summed");
    tx.offer_tx(&[&tx_header(1, 0, start, offset), &tcp]);
    tx.offer_tx(&[&tx_header(1, 0, 99, 0), &tcp]); // field past the frame
    tx.offer_tx(&[&tx_header(0, 0, 0, 0), &tcp]);
    rig.tx(&mem);
    assert_eq!(rig.peer.from_guest, vec![tcp.clone(), tcp]);
    assert_eq!(
        rig.peer.from_guest_checksums,
        vec![Checksum::Partial { start, offset }]
    );
    let counters = rig.device.counters();
    assert_eq!(counters.tx_partial_checksums, 1);
    assert_eq!(counters.tx_header_drops.csum_out_of_frame, 1);
}

#[test]
fn partial_checksums_reach_only_a_guest_that_negotiated_guest_csum() {
    let mem = guest_memory();
    let partial = Checksum::Partial {
        start: 34,
        offset: 16,
    };
    for (features, expected) in [
        (DEVICE_FEATURES, Some((1u8, 34u16, 16u16))),
        (DEVICE_FEATURES & !F_GUEST_CSUM, None),
    ] {
        let (mut rx, tx) = drivers(&mem);
        let mut rig = Rig::new(features, &rx, &tx);
        rig.peer.offload = true;
        rig.peer.to_guest_checksum = Some(partial);
        let chain = rx.offer_rx(&[2048]);
        let frame = pattern_frame(80, 3);
        rig.peer.to_guest.push_back(frame.clone());
        rig.rx(&mem);
        let (_, len) = rx.take_used()[0];
        let written = chain.contents(&rx, len);
        assert_eq!(&written[NET_HDR_LEN..], &frame[..]);
        let header = (
            written[0],
            u16::from_le_bytes([written[6], written[7]]),
            u16::from_le_bytes([written[8], written[9]]),
        );
        match expected {
            Some(fields) => assert_eq!(header, fields, "NEEDS_CSUM with the offsets"),
            // Without GUEST_CSUM the device asks the backend for a complete
            // frame and says nothing of checksums.
            None => assert_eq!(header, (0, 0, 0)),
        }
        assert_eq!(
            rig.device.counters().rx_partial_checksums,
            u64::from(expected.is_some())
        );
    }
}

#[test]
fn a_partial_checksum_field_past_the_backend_frame_is_dropped_and_counted() {
    let mem = guest_memory();
    let (mut rx, tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    rig.peer.offload = true;
    rig.peer.to_guest_checksum = Some(Checksum::Partial {
        start: 70,
        offset: 9,
    });
    rx.offer_rx(&[2048]);
    rig.peer.to_guest.push_back(pattern_frame(80, 3));
    rig.rx(&mem);
    assert!(rx.take_used().is_empty());
    assert_eq!(rig.device.counters().rx_backend_bad_checksum, 1);
}

#[test]
fn frame_without_needs_csum_passes_through_unchanged() {
    let mem = guest_memory();
    let (rx, mut tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    let (tcp, _, _) = partially_checksummed(IpProtocol::Tcp, b"hello");
    tx.offer_tx(&[&tx_header(0, 0, 0, 0), &tcp]);
    rig.tx(&mem);
    assert_eq!(rig.peer.from_guest, vec![tcp]);
}

#[test]
fn headers_the_device_did_not_agree_to_are_dropped_and_counted() {
    let mem = guest_memory();
    let (rx, mut tx) = drivers(&mem);
    // No VIRTIO_NET_F_CSUM: a partial checksum is a driver bug.
    let mut rig = Rig::new(F_VERSION_1 | F_MRG_RXBUF, &rx, &tx);
    let frame = pattern_frame(100, 1);
    tx.offer_tx(&[&tx_header(1, 0, 34, 16), &frame]);
    tx.offer_tx(&[&tx_header(0, 1, 0, 0), &frame]); // GSO TCPv4, never offered
    tx.offer_tx(&[&tx_header(0, 0, 0, 0), &frame[..13]]); // shorter than Ethernet
    transmit(&mut rig, &mut tx, &mem, &frame);
    let drops = &rig.device.counters().tx_header_drops;
    assert_eq!(
        (drops.csum_not_negotiated, drops.gso, drops.short),
        (1, 1, 1)
    );
    assert_eq!(rig.peer.from_guest, vec![frame]);
    assert_eq!(
        tx.take_used().len(),
        4,
        "every chain goes back to the driver"
    );
}

#[test]
fn checksum_offsets_past_the_frame_are_dropped_and_counted() {
    let mem = guest_memory();
    let (rx, mut tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    let frame = pattern_frame(100, 1);
    tx.offer_tx(&[&tx_header(1, 0, 99, 0), &frame]);
    tx.offer_tx(&[&tx_header(1, 0, u16::MAX, u16::MAX), &frame]);
    tx.offer_tx(&[&tx_header(1, 0, 34, 65), &frame]);
    rig.tx(&mem);
    assert_eq!(rig.device.counters().tx_header_drops.csum_out_of_frame, 3);
    assert!(rig.peer.from_guest.is_empty());
}

/// The `num_buffers` field of the header at the start of a receive chain.
fn num_buffers(header: &[u8]) -> u16 {
    u16::from_le_bytes([header[10], header[11]])
}

#[test]
fn received_frame_spans_small_buffers_with_num_buffers() {
    let mem = guest_memory();
    let (mut rx, tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    let chains: Vec<_> = (0..6).map(|_| rx.offer_rx(&[100, 156])).collect();
    let frame = pattern_frame(1000, 3);
    rig.peer.to_guest.push_back(frame.clone());
    rig.rx(&mem);

    let used = rx.take_used();
    let lens: Vec<u32> = used.iter().map(|&(_, len)| len).collect();
    assert_eq!(lens, [256, 256, 256, 244]);
    let heads: Vec<u32> = used.iter().map(|&(head, _)| head).collect();
    let offered: Vec<u32> = chains[..4].iter().map(|c| u32::from(c.head)).collect();
    assert_eq!(heads, offered);
    let mut written = Vec::new();
    for (chain, len) in chains.iter().zip(lens) {
        written.extend(chain.contents(&rx, len));
    }
    assert_eq!(num_buffers(&written), 4);
    assert_eq!(written[0], 0, "no checksum claim unless configured");
    assert_eq!(&written[NET_HDR_LEN..], &frame[..]);
    assert_eq!(rig.rx_irqs.0.get(), 1);
    assert_eq!(rig.device.counters().rx_frames, 1);
    assert_eq!(rig.device.counters().rx_bytes, 1000);
}

#[test]
fn without_receive_buffers_frames_stay_in_the_backend() {
    let mem = guest_memory();
    let (mut rx, tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    let frames: Vec<Vec<u8>> = (0..3).map(|i| pattern_frame(60 + i, i as u8)).collect();
    rig.peer.to_guest.extend(frames.iter().cloned());
    rig.rx(&mem);
    assert_eq!(
        rig.peer.polls, 0,
        "the backend is not asked without a buffer"
    );
    assert_eq!(rig.peer.to_guest.len(), 3);

    let chains: Vec<_> = (0..3).map(|_| rx.offer_rx(&[2048])).collect();
    rig.rx(&mem);
    let used = rx.take_used();
    assert_eq!(used.len(), 3);
    for ((chain, frame), (_, len)) in chains.iter().zip(&frames).zip(used) {
        let written = chain.contents(&rx, len);
        assert_eq!(num_buffers(&written), 1);
        assert_eq!(&written[NET_HDR_LEN..], &frame[..]);
    }
}

#[test]
fn frame_waits_for_enough_merged_buffers_then_arrives_whole() {
    let mem = guest_memory();
    let (mut rx, tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    let frame = pattern_frame(1500, 9);
    let second = pattern_frame(64, 10);
    rig.peer.to_guest.push_back(frame.clone());
    rig.peer.to_guest.push_back(second.clone());
    let mut chains = vec![rx.offer_rx(&[512]), rx.offer_rx(&[512])];
    rig.rx(&mem);
    assert!(
        rx.take_used().is_empty(),
        "a partial frame is never published"
    );
    assert_eq!(rig.device.counters().rx_waits_for_buffers, 1);
    assert_eq!(rig.peer.to_guest, vec![second.clone()]);

    chains.push(rx.offer_rx(&[512]));
    chains.push(rx.offer_rx(&[512]));
    rig.rx(&mem);
    let used = rx.take_used();
    assert_eq!(
        used.len(),
        4,
        "three chains for the first frame, one for the second"
    );
    let mut written = Vec::new();
    for (chain, &(_, len)) in chains.iter().zip(&used[..3]) {
        written.extend(chain.contents(&rx, len));
    }
    assert_eq!(num_buffers(&written), 3);
    assert_eq!(&written[NET_HDR_LEN..], &frame[..]);
    let last = chains[3].contents(&rx, used[3].1);
    assert_eq!(&last[NET_HDR_LEN..], &second[..]);
    assert_eq!(rig.device.counters().rx_frames, 2);
}

#[test]
fn without_merged_buffers_a_frame_too_big_for_one_chain_is_dropped() {
    let mem = guest_memory();
    let (mut rx, tx) = drivers(&mem);
    let mut rig = Rig::new(F_VERSION_1 | F_CSUM, &rx, &tx);
    let chain = rx.offer_rx(&[1000]);
    let big = pattern_frame(1200, 1);
    let small = pattern_frame(200, 2);
    rig.peer.to_guest.push_back(big);
    rig.peer.to_guest.push_back(small.clone());
    rig.rx(&mem);
    assert_eq!(rig.device.counters().rx_too_big, 1);
    let used = rx.take_used();
    assert_eq!(used, vec![(u32::from(chain.head), 212)]);
    let written = chain.contents(&rx, 212);
    assert_eq!(num_buffers(&written), 1);
    assert_eq!(&written[NET_HDR_LEN..], &small[..]);
}

#[test]
fn data_valid_is_set_only_for_a_backend_that_checksums_and_a_guest_that_asked() {
    let mem = guest_memory();
    let config = NetConfig {
        rx_checksums_valid: true,
        ..NetConfig::default()
    };
    for (features, expected_flags) in [(DEVICE_FEATURES, 2u8), (DEVICE_FEATURES & !F_GUEST_CSUM, 0)]
    {
        let (mut rx, tx) = drivers(&mem);
        let mut rig = Rig::with_config(config.clone(), features, &rx, &tx);
        let chain = rx.offer_rx(&[2048]);
        rig.peer.to_guest.push_back(pattern_frame(60, 0));
        rig.rx(&mem);
        let (_, len) = rx.take_used()[0];
        assert_eq!(chain.contents(&rx, len)[0], expected_flags);
    }
}

// Hostile drivers. Each test offers one bad chain between two good frames:
// the bad one is dropped and counted, the good ones still get through.

/// Offers a good frame, lets `bad` write descriptors and make heads
/// available, offers another good frame, and runs the transmit queue.
fn tx_around(bad: impl FnOnce(&mut Driver<'_>)) -> (Rig, Vec<(u32, u32)>) {
    let mem = guest_memory();
    let (rx, mut tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    let hdr = tx_header(0, 0, 0, 0);
    let first = pattern_frame(80, 1);
    tx.offer_tx(&[&hdr, &first]);
    bad(&mut tx);
    let last = pattern_frame(90, 2);
    tx.offer_tx(&[&hdr, &last]);
    rig.tx(&mem);
    assert_eq!(
        rig.peer.from_guest,
        vec![first, last],
        "good frames around a bad chain"
    );
    let used = tx.take_used();
    (rig, used)
}

// The helpers write bad chains at descriptor indices 8 and up, clear of the
// good chains at 0..4.
const BAD: u16 = 8;
const DATA: u64 = 0x40_0000;

#[test]
fn head_index_past_the_queue_is_dropped_and_counted() {
    let (rig, used) = tx_around(|tx| tx.make_available(16));
    assert_eq!(rig.device.counters().tx_chain_faults.truncated, 1);
    assert_eq!(used.len(), 2, "an index past the queue cannot be returned");
}

#[test]
fn next_index_past_the_queue_is_dropped_and_counted() {
    let (rig, used) = tx_around(|tx| {
        tx.store(BAD, DATA, 12, NEXT, 400);
        tx.make_available(BAD);
    });
    assert_eq!(rig.device.counters().tx_chain_faults.truncated, 1);
    assert!(used.contains(&(u32::from(BAD), 0)));
}

#[test]
fn descriptor_loop_is_dropped_and_counted() {
    let (rig, _) = tx_around(|tx| {
        tx.store(BAD, DATA, 100, NEXT, BAD + 1);
        tx.store(BAD + 1, DATA, 100, NEXT, BAD);
        tx.make_available(BAD);
    });
    assert_eq!(rig.device.counters().tx_chain_faults.truncated, 1);
}

#[test]
fn chain_longer_than_the_queue_is_dropped_and_counted() {
    // Every descriptor of the table points to the next, the last back to
    // the first: a chain through all sixteen that never ends.
    let mem = guest_memory();
    let (rx, mut tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    for i in 0..16u16 {
        tx.store(i, DATA, 4, NEXT, (i + 1) % 16);
    }
    tx.make_available(5);
    rig.tx(&mem);
    assert_eq!(rig.device.counters().tx_chain_faults.truncated, 1);
    assert_eq!(tx.take_used(), vec![(5, 0)]);
    // The device goes on serving the queue.
    let frame = pattern_frame(64, 3);
    transmit(&mut rig, &mut tx, &mem, &frame);
    assert_eq!(rig.peer.from_guest, vec![frame]);
}

#[test]
fn length_of_u32_max_is_dropped_and_counted() {
    let (rig, _) = tx_around(|tx| {
        tx.store(BAD, DATA, u32::MAX, 0, 0);
        tx.make_available(BAD);
    });
    assert_eq!(rig.device.counters().tx_chain_faults.too_long, 1);
}

#[test]
fn chain_one_byte_past_the_largest_frame_is_dropped_but_the_largest_passes() {
    let largest = u32::try_from(NET_HDR_LEN + virtio_net_kvm::MAX_FRAME_LEN).unwrap();
    let (rig, _) = tx_around(|tx| {
        tx.store(BAD, DATA, largest - 1000, NEXT, BAD + 1);
        tx.store(BAD + 1, DATA, 1001, 0, 0);
        tx.make_available(BAD);
    });
    assert_eq!(rig.device.counters().tx_chain_faults.too_long, 1);

    let mem = guest_memory();
    let (rx, mut tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    let frame = pattern_frame(virtio_net_kvm::MAX_FRAME_LEN, 5);
    transmit(&mut rig, &mut tx, &mem, &frame);
    assert_eq!(rig.peer.from_guest, vec![frame]);
}

#[test]
fn buffer_outside_guest_memory_is_dropped_and_counted() {
    let (rig, _) = tx_around(|tx| {
        tx.store(BAD, MEM_SIZE - 10, 100, 0, 0);
        tx.store(BAD + 1, u64::MAX - 5, 100, 0, 0);
        tx.make_available(BAD);
        tx.make_available(BAD + 1);
    });
    assert_eq!(rig.device.counters().tx_chain_faults.bad_address, 2);
}

#[test]
fn write_only_descriptor_on_transmit_is_dropped_and_counted() {
    let (rig, _) = tx_around(|tx| {
        tx.store(BAD, DATA, 100, NEXT, BAD + 1);
        tx.store(BAD + 1, DATA, 100, WRITE, 0);
        tx.make_available(BAD);
    });
    assert_eq!(rig.device.counters().tx_chain_faults.wrong_direction, 1);
}

#[test]
fn available_index_running_ahead_is_counted_and_nothing_is_read() {
    let mem = guest_memory();
    let (rx, tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    tx.avail().idx().store(1000);
    rig.tx(&mem);
    assert!(rig.device.counters().bad_avail_index > 0);
    assert!(rig.peer.from_guest.is_empty());
}

#[test]
fn bad_receive_chains_are_returned_empty_and_good_ones_used() {
    let mem = guest_memory();
    let (mut rx, tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    // Read-only, outside memory, a loop, too short for a header, then a good one.
    rx.store(BAD, DATA, 2048, 0, 0);
    rx.store(BAD + 1, MEM_SIZE - 100, 2048, WRITE, 0);
    rx.store(BAD + 2, DATA, 100, WRITE | NEXT, BAD + 3);
    rx.store(BAD + 3, DATA, 100, WRITE | NEXT, BAD + 2);
    rx.store(BAD + 5, DATA, 11, WRITE, 0);
    for head in [BAD, BAD + 1, BAD + 2, BAD + 5, 17] {
        rx.make_available(head);
    }
    let good = rx.offer_rx(&[2048]);
    let frame = pattern_frame(300, 4);
    rig.peer.to_guest.push_back(frame.clone());
    rig.rx(&mem);

    let faults = &rig.device.counters().rx_chain_faults;
    assert_eq!(
        (
            faults.wrong_direction,
            faults.bad_address,
            faults.truncated,
            faults.short
        ),
        (1, 1, 2, 1)
    );
    let used = rx.take_used();
    let expected: Vec<(u32, u32)> = [BAD, BAD + 1, BAD + 2, BAD + 5]
        .iter()
        .map(|&head| (u32::from(head), 0))
        .chain([(u32::from(good.head), 312)])
        .collect();
    assert_eq!(used, expected);
    assert_eq!(&good.contents(&rx, 312)[NET_HDR_LEN..], &frame[..]);
}

#[test]
fn chain_of_empty_descriptors_is_dropped_and_counted() {
    let (rig, used) = tx_around(|tx| {
        tx.store(BAD, DATA, 0, NEXT, BAD + 1);
        tx.store(BAD + 1, DATA, 0, 0, 0);
        tx.make_available(BAD);
    });
    assert_eq!(rig.device.counters().tx_header_drops.short, 1);
    assert!(used.contains(&(u32::from(BAD), 0)));
}

#[test]
fn with_event_idx_the_device_asks_for_the_next_kick_and_honours_used_event() {
    let mem = guest_memory();
    let (mut rx, mut tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    let hdr = tx_header(0, 0, 0, 0);
    // The driver wants an interrupt only once the third chain is used.
    tx.set_used_event(2);
    tx.offer_tx(&[&hdr, &pattern_frame(60, 0)]);
    rig.tx(&mem);
    assert_eq!(tx.avail_event(), 1, "kick me when chain 1 is available");
    assert_eq!(rig.tx_irqs.0.get(), 0, "used_event not reached");
    tx.offer_tx(&[&hdr, &pattern_frame(60, 1)]);
    tx.offer_tx(&[&hdr, &pattern_frame(60, 2)]);
    rig.tx(&mem);
    assert_eq!(tx.avail_event(), 3);
    assert_eq!(rig.tx_irqs.0.get(), 1, "used_event passed");
    assert_eq!(rig.peer.from_guest.len(), 3);

    // Out of receive buffers with a frame waiting: the device asks to be
    // kicked at the next buffer.
    rig.peer.to_guest.push_back(pattern_frame(3000, 3));
    rx.offer_rx(&[1024]);
    rig.rx(&mem);
    assert_eq!(rig.device.counters().rx_waits_for_buffers, 1);
    assert_eq!(rx.avail_event(), 1);
}

#[test]
fn without_event_idx_kicks_are_suppressed_only_while_draining() {
    let mem = guest_memory();
    let (rx, mut tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES & !F_EVENT_IDX, &rx, &tx);
    tx.offer_tx(&[&tx_header(0, 0, 0, 0), &pattern_frame(60, 0)]);
    rig.tx(&mem);
    assert_eq!(tx.used_flags(), 0, "notifications back on after draining");
    assert_eq!(tx.avail_event(), 0, "avail_event untouched");
    assert_eq!(rig.tx_irqs.0.get(), 1);
}

#[test]
fn deferred_notifier_says_when_a_vring_must_be_signalled() {
    let mem = guest_memory();
    let (rx, mut tx) = drivers(&mem);
    let mut rig = Rig::new(DEVICE_FEATURES, &rx, &tx);
    let deferred = DeferredNotifier::default();
    let hdr = tx_header(0, 0, 0, 0);
    tx.set_used_event(1);
    tx.offer_tx(&[&hdr, &pattern_frame(60, 0)]);
    rig.device.handle_tx(
        &mem,
        &mut rig.tx_queue,
        &mut rig.peer,
        &deferred,
        Instant::now(),
    );
    assert!(
        !deferred.take(),
        "used_event 1 not reached by the first chain"
    );
    tx.offer_tx(&[&hdr, &pattern_frame(60, 1)]);
    rig.device.handle_tx(
        &mem,
        &mut rig.tx_queue,
        &mut rig.peer,
        &deferred,
        Instant::now(),
    );
    assert!(deferred.take());
    assert!(!deferred.take(), "taking clears it");
}
