//! The front desk: classifying a guest's Ethernet/IPv4/TCP frame (every
//! header and the TCP checksum checked) and writing the headers of a TCP
//! segment to the guest in place.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddrV4;

use divan::{Bencher, black_box};
// Through slipway, which re-exports the front desk, so that `cargo xtask
// bench-compare` builds this bench against trees from before it was a crate.
use nat_core::Plan;
use slipway::frontdesk::{
    Classified, Counters, LinkAddrs, TcpFlags, TcpOptions, TcpSegmentV4, classify,
    tcp_v4_headers_len, write_tcp_v4_headers,
};

use common::{ACK, GATEWAY_IP, GUEST_IP, PSH, Seg};

fn main() {
    common::run_nanosecond_benches();
}

/// Payload sizes: a small request, one Ethernet MSS, a 64 KiB-MTU segment.
const PAYLOADS: [usize; 3] = [64, 1460, 65_000];

/// Classifies a guest data segment to host loopback (through the gateway).
#[divan::bench(args = PAYLOADS)]
fn classify_tcp_v4(bencher: Bencher<'_, '_>, payload: usize) {
    let plan = Plan::default();
    let data = vec![0x5a; payload];
    let frame = Seg {
        gateway_mac: plan.gateway_mac().0,
        src: SocketAddrV4::new(GUEST_IP, 40_000),
        dst: SocketAddrV4::new(GATEWAY_IP, 8080),
        seq: 1,
        ack: 1,
        flags: ACK | PSH,
        window: 65_535,
        mss: None,
        payload: &data,
    }
    .frame();
    let mut counters = Counters::new();
    assert!(matches!(
        classify(&frame, &plan, &mut counters),
        Classified::Ipv4(_)
    ));
    bencher
        .counter(divan::counter::BytesCount::new(frame.len()))
        .bench_local(|| {
            let classified = classify(black_box(&frame), &plan, &mut counters);
            matches!(classified, Classified::Ipv4(_))
        });
}

/// Writes Ethernet, IPv4 and TCP headers in front of a payload already in
/// place, checksum over the payload included.
#[divan::bench(args = PAYLOADS)]
fn write_tcp_headers_to_guest(bencher: Bencher<'_, '_>, payload: usize) {
    let plan = Plan::default();
    let segment = TcpSegmentV4 {
        link: LinkAddrs::to_guest(&plan),
        src: SocketAddrV4::new(GATEWAY_IP, 8080),
        dst: SocketAddrV4::new(GUEST_IP, 40_000),
        seq: 1,
        ack: 1,
        flags: TcpFlags::ACK | TcpFlags::PSH,
        window: 65_535,
        options: TcpOptions::default(),
    };
    let mut buf = vec![0x5a; tcp_v4_headers_len(segment.options) + payload];
    assert_eq!(
        write_tcp_v4_headers(&mut buf, &segment, payload),
        Some(buf.len())
    );
    bencher
        .counter(divan::counter::BytesCount::new(buf.len()))
        .bench_local(|| write_tcp_v4_headers(black_box(&mut buf), &segment, payload));
}
