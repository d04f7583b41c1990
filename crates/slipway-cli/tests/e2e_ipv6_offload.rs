//! End to end with the Linux kernel as the guest, over IPv6: the tap's
//! offloads carry IPv6 as they carry IPv4. Under `slipway run --mtu 1500`,
//! 256 MiB go each way between the namespace and a server on [::1]
//! (through the gateway fd00:0:0:2::2), checked by SHA-256, and slipway's
//! counters show that the data went in segments larger than the MTU both
//! ways (GSO to the guest, TSO from it). The same transfers go once more
//! from a namespace behind the guest's, which the guest's kernel routes
//! for: forwarding, it cuts slipway's GSO segments to the MTU itself, by
//! the GSO type and checksum offsets their vnet headers give, so a wrong
//! one loses the data. A capture shows the MSS both ends use over IPv6 at
//! that MTU: the MTU less 60 bytes of IPv6 and TCP headers.
//!
//! Needs root, /dev/net/tun, curl, sha256sum, unshare and nsenter; each
//! test says on stderr why it skips otherwise. Traffic goes only to ::1
//! and the namespaces made by `slipway run` and the test's script; every
//! run ends with the check that slipway went quiet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::e2e;
use test_support::harness::frames::pcap_packets;
use test_support::require;

use std::time::Duration;

use e2e::data::{BULK_LEN, bulk};
use e2e::scenarios::{Client, http_download_256mib, http_upload_256mib};
use e2e::{CURL_GLOBOFF, Family, TempDir, bulk_lock, http_url, run_in_guest, servers, stat};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv6Address, TcpPacket, TcpRepr};

/// The MTU the tests give the namespace.
const MTU: u16 = 1500;
/// The MSS over IPv6 at [`MTU`]: less 40 bytes of IPv6 and 20 of TCP header.
const MSS: u16 = MTU - 60;
/// The gateway, host loopback's name in the guest.
const GATEWAY: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 2, 0, 0, 0, 2);

/// The least number of segments larger than the MTU a 256 MiB transfer
/// goes in: half of what it takes in 64 KiB segments.
fn least_gso_frames() -> u64 {
    (BULK_LEN / 65536 / 2) as u64
}

#[test]
fn http_download_256mib_over_ipv6_at_mtu_1500_goes_in_gso_segments_hash_verified() {
    require!("curl", "sha256sum");
    let _serial = bulk_lock();
    let stats = http_download_256mib(Family::V6, &["--mtu", "1500"], " at MTU 1500");
    let gso = stat(&stats, "gso frames to guest").expect("the counter");
    assert!(gso >= least_gso_frames(), "{stats}");
    let partial = stat(&stats, "partial csums to guest").expect("the counter");
    assert!(partial >= gso, "{stats}");
}

#[test]
fn http_upload_256mib_over_ipv6_at_mtu_1500_goes_in_tso_segments_hash_verified() {
    require!("curl");
    let _serial = bulk_lock();
    let stats = http_upload_256mib(Family::V6, &["--mtu", "1500"], " at MTU 1500");
    let gso = stat(&stats, "gso frames from guest").expect("the counter");
    assert!(gso >= least_gso_frames(), "{stats}");
    assert_eq!(stat(&stats, "bad vnet headers"), Some(0), "{stats}");
}

#[test]
fn http_download_256mib_over_ipv6_through_a_routing_guest_at_mtu_1500_hash_verified() {
    require!("curl", "sha256sum", "unshare", "nsenter");
    let _serial = bulk_lock();
    let stats = http_download_256mib(Client::Routed, &["--mtu", "1500"], " at MTU 1500");
    let gso = stat(&stats, "gso frames to guest").expect("the counter");
    assert!(gso >= least_gso_frames(), "{stats}");
}

#[test]
fn http_upload_256mib_over_ipv6_through_a_routing_guest_at_mtu_1500_hash_verified() {
    require!("curl", "unshare", "nsenter");
    let _serial = bulk_lock();
    let stats = http_upload_256mib(Client::Routed, &["--mtu", "1500"], " at MTU 1500");
    let gso = stat(&stats, "gso frames from guest").expect("the counter");
    assert!(gso >= least_gso_frames(), "{stats}");
}

/// An IPv6 TCP segment in a capture, its checksum verified.
#[derive(Debug)]
struct Segment {
    to_guest: bool,
    syn: bool,
    mss: Option<u16>,
    payload: usize,
    frame_len: usize,
}

/// The IPv6 TCP segments of a pcap capture; panics on a wrong checksum.
fn captured_segments(capture: &[u8]) -> Vec<Segment> {
    let mut segments = Vec::new();
    for packet in pcap_packets(capture, IpProtocol::Tcp) {
        let IpAddress::Ipv6(src) = packet.src else {
            continue;
        };
        let tcp_packet = TcpPacket::new_checked(packet.payload).unwrap();
        let checksums = ChecksumCapabilities::default();
        let tcp = TcpRepr::parse(&tcp_packet, &packet.src, &packet.dst, &checksums)
            .unwrap_or_else(|e| panic!("a TCP segment in the capture: {e}"));
        segments.push(Segment {
            to_guest: src == GATEWAY,
            syn: tcp_packet.syn(),
            mss: tcp.max_seg_size,
            payload: tcp.payload.len(),
            frame_len: packet.frame_len,
        });
    }
    segments
}

#[test]
fn at_mtu_1500_both_ends_of_an_ipv6_connection_use_an_mss_of_the_mtu_less_60() {
    require!("curl", "sha256sum");
    let _serial = bulk_lock();
    // While it writes a capture, slipway takes no offload: each segment to
    // the guest is cut to the MSS by slipway itself.
    let body = &bulk().bytes[..4 << 20];
    let port = servers::http_body_on(servers::loopback_listener(Family::V6, 128), body);
    let dir = TempDir::new("ipv6-mss");
    let pcap = dir.file("capture.pcap");
    let url = http_url(Family::V6.gateway(), port, "");
    let script = format!("curl {CURL_GLOBOFF} -6 -sS --max-time 20 {url} | sha256sum");
    let out = run_in_guest(
        &["--mtu", "1500", "--pcap", &pcap],
        &script,
        Duration::from_secs(30),
    );
    out.assert_success("download");
    let want = e2e::data::hex(&e2e::data::Sha256::digest(body));
    assert_eq!(out.stdout.split_whitespace().next(), Some(want.as_str()));
    let segments = captured_segments(&std::fs::read(&pcap).expect("the capture"));
    let syn_mss = |to_guest| {
        segments
            .iter()
            .find(|s| s.syn && s.to_guest == to_guest)
            .and_then(|s| s.mss)
    };
    assert_eq!(syn_mss(false), Some(MSS), "the guest's SYN");
    assert_eq!(syn_mss(true), Some(MSS), "slipway's SYN-ACK");
    let to_guest: Vec<_> = segments.iter().filter(|s| s.to_guest).collect();
    let largest = to_guest.iter().map(|s| s.payload).max().unwrap_or(0);
    assert_eq!(largest, usize::from(MSS), "segments fill the MSS");
    let longest = to_guest.iter().map(|s| s.frame_len).max().unwrap_or(0);
    assert_eq!(longest, 14 + usize::from(MTU), "frames fill the MTU");
    let data: usize = to_guest.iter().map(|s| s.payload).sum();
    assert!(
        data >= body.len(),
        "{data} bytes to the guest in the capture"
    );
}
