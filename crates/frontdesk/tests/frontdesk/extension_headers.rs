//! IPv6 extension headers: the walk to the upper layer, within its bound.

use std::net::Ipv6Addr;

use frontdesk::{Classified, Counters, DropReason, MAX_EXTENSION_HEADERS, Transport, classify};
use smoltcp::wire::{ETHERNET_HEADER_LEN, IPV6_HEADER_LEN, IpProtocol};

use crate::plan;
use crate::v6frames::{Ext, GUEST6, ipv6_udp};

const REMOTE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

fn udp_behind(exts: &[Ext]) -> Vec<u8> {
    ipv6_udp((GUEST6, REMOTE6), exts, (40_000, 53), b"query")
}

fn classified(frame: &[u8]) -> (Classified<'_>, Counters) {
    let mut counters = Counters::new();
    let classified = classify(frame, &plan(), &mut counters);
    (classified, counters)
}

fn assert_dropped(frame: &[u8], reason: DropReason) {
    let (classified, counters) = classified(frame);
    assert_eq!(classified, Classified::Drop(reason));
    assert_eq!(counters.drops(reason), 1);
    assert_eq!(counters.total_drops(), 1);
}

#[test]
fn udp_behind_hop_by_hop_routing_and_destination_options_reaches_the_relays() {
    let exts = [Ext::hop_by_hop(), Ext::routing(), Ext::dest_opts()];
    let frame = udp_behind(&exts);
    let (classified, counters) = classified(&frame);
    let Classified::Ipv6(datagram) = classified else {
        panic!("{classified:?}");
    };
    assert_eq!(counters.total_drops(), 0);
    assert_eq!(datagram.transport_offset, IPV6_HEADER_LEN + 8 + 16 + 8);
    assert_eq!(
        datagram.transport,
        Transport::Udp {
            src_port: 40_000,
            dst_port: 53,
            payload: b"query",
        }
    );
    assert_eq!(datagram.packet.len(), frame.len() - ETHERNET_HEADER_LEN);
}

#[test]
fn no_extension_headers_put_the_upper_layer_after_the_fixed_header() {
    let frame = udp_behind(&[]);
    let Classified::Ipv6(datagram) = classified(&frame).0 else {
        panic!("not accepted");
    };
    assert_eq!(datagram.transport_offset, IPV6_HEADER_LEN);
}

#[test]
fn checksums_behind_extension_headers_are_verified() {
    let mut frame = udp_behind(&[Ext::dest_opts()]);
    let last = frame.len() - 1;
    frame[last] ^= 0xff;
    assert_dropped(&frame, DropReason::BadChecksum);
}

#[test]
fn ipv6_fragment_is_dropped_wherever_it_is_in_the_chain() {
    let fragment = Ext {
        kind: IpProtocol::Ipv6Frag,
        body: vec![0, 1, 0, 0, 0, 7],
    };
    assert_dropped(
        &udp_behind(std::slice::from_ref(&fragment)),
        DropReason::Fragment,
    );
    assert_dropped(
        &udp_behind(&[Ext::hop_by_hop(), Ext::dest_opts(), fragment]),
        DropReason::Fragment,
    );
}

#[test]
fn atomic_fragment_is_a_whole_datagram_and_reaches_the_relays() {
    // Offset 0 and no more fragments: RFC 8200 section 4.5 and RFC 6946.
    let atomic = Ext {
        kind: IpProtocol::Ipv6Frag,
        body: vec![0, 0, 0, 0, 0, 7],
    };
    let frame = udp_behind(&[Ext::hop_by_hop(), atomic]);
    let (classified, counters) = classified(&frame);
    let Classified::Ipv6(datagram) = classified else {
        panic!("{classified:?}");
    };
    assert_eq!(counters.total_drops(), 0);
    assert_eq!(datagram.transport_offset, IPV6_HEADER_LEN + 8 + 8);
    // A fragment at offset 0 with more to come is a fragment still.
    let first = Ext {
        kind: IpProtocol::Ipv6Frag,
        body: vec![0, 1, 0, 0, 0, 7],
    };
    assert_dropped(&udp_behind(&[first]), DropReason::Fragment);
}

#[test]
fn jumbogram_is_dropped() {
    let jumbo = Ext {
        kind: IpProtocol::HopByHop,
        // Pad1, then a jumbo payload option of 4 bytes, then a PadN of 0.
        body: vec![0, 0xc2, 4, 0, 1, 0, 0],
    };
    assert_dropped(&udp_behind(&[jumbo]), DropReason::Jumbogram);
}

#[test]
fn jumbogram_with_a_zero_payload_length_is_dropped() {
    let jumbo = Ext {
        kind: IpProtocol::HopByHop,
        body: vec![0xc2, 4, 0, 1, 0, 0],
    };
    let mut frame = udp_behind(&[jumbo]);
    frame[ETHERNET_HEADER_LEN + 4..ETHERNET_HEADER_LEN + 6].copy_from_slice(&[0, 0]);
    assert_dropped(&frame, DropReason::Jumbogram);
}

#[test]
fn hop_by_hop_after_another_header_is_malformed() {
    let frame = udp_behind(&[Ext::dest_opts(), Ext::hop_by_hop()]);
    assert_dropped(&frame, DropReason::Malformed);
}

#[test]
fn extension_header_past_the_end_is_malformed() {
    let mut frame = udp_behind(&[Ext::dest_opts()]);
    // The header's length now claims 2048 bytes.
    frame[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + 1] = 255;
    assert_dropped(&frame, DropReason::Malformed);
}

#[test]
fn chains_of_0_to_200_headers_are_walked_up_to_the_bound() {
    for n in 0..=200 {
        let exts = vec![Ext::dest_opts(); n];
        let frame = udp_behind(&exts);
        let (classified, counters) = classified(&frame);
        if n <= MAX_EXTENSION_HEADERS {
            let Classified::Ipv6(datagram) = classified else {
                panic!("{n} headers: {classified:?}");
            };
            assert_eq!(datagram.transport_offset, IPV6_HEADER_LEN + 8 * n, "{n}");
            assert!(matches!(
                datagram.transport,
                Transport::Udp { dst_port: 53, .. }
            ));
        } else {
            assert_eq!(
                classified,
                Classified::Drop(DropReason::ExtensionHeaderLimit)
            );
            assert_eq!(counters.drops(DropReason::ExtensionHeaderLimit), 1, "{n}");
        }
    }
}

#[test]
fn truncated_chains_of_any_length_never_panic() {
    for n in 1..=40 {
        let frame = udp_behind(&vec![Ext::dest_opts(); n]);
        let header_end = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;
        for cut in header_end..frame.len() {
            let mut short = frame[..cut].to_vec();
            // The IPv6 payload length follows the cut, so the chain ends
            // early rather than the frame.
            let payload_len = u16::try_from(cut - header_end).unwrap();
            short[ETHERNET_HEADER_LEN + 4..ETHERNET_HEADER_LEN + 6]
                .copy_from_slice(&payload_len.to_be_bytes());
            let (classified, counters) = classified(&short);
            assert!(
                matches!(classified, Classified::Drop(_)),
                "{n} cut at {cut}"
            );
            assert_eq!(counters.total_drops(), 1);
        }
    }
}

#[test]
fn other_upper_layer_behind_extension_headers_is_passed_on() {
    let mut frame = udp_behind(&[Ext::dest_opts()]);
    // Next header 59: no next header.
    frame[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN] = 59;
    let Classified::Ipv6(datagram) = classified(&frame).0 else {
        panic!("not accepted");
    };
    assert!(matches!(
        datagram.transport,
        Transport::Other {
            protocol: IpProtocol::Ipv6NoNxt,
            ..
        }
    ));
}
