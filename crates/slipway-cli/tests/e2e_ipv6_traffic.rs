//! End to end over IPv6 with the Linux kernel as the guest: the namespace
//! of `slipway run`, configured by SLAAC, reaches servers on the host's
//! ::1 through the gateway fd00:0:0:2::2 (curl, iperf3, 500 connections,
//! UDP), pings the router, looks names up through the DNS address
//! fd00:0:0:2::3, prefers IPv6 for a name of both families, is refused a
//! denied IPv6 destination at once, and reaches a documentation-prefix
//! server behind a veth when slipway runs in a namespace of its own. The
//! scenarios are the IPv4 ones of `e2e_netns.rs`, run over
//! `Family::V6` (see `test_support::e2e::scenarios`).
//!
//! Needs root, /dev/net/tun and the tools each test names; each says on
//! stderr why it skips otherwise. Traffic goes only to ::1, 127.0.0.1 and
//! the namespaces made here; every process runs under a guard, every wait
//! is bounded, and every `slipway run` ends with the quiet-loop check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::e2e;
use test_support::require;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use e2e::scenarios::{self, LIMIT};
use e2e::servers::{self, Records};
use e2e::{Family, bulk_lock, run_in_guest, topology};

const V6: Family = Family::V6;

#[test]
fn curl_6_downloads_256mib_from_host_ipv6_loopback_hash_verified() {
    require!("curl", "sha256sum");
    let _serial = bulk_lock();
    scenarios::http_download_256mib(V6, &[], "");
}

#[test]
fn curl_6_uploads_256mib_to_host_ipv6_loopback_hash_verified() {
    require!("curl");
    let _serial = bulk_lock();
    scenarios::http_upload_256mib(V6, &[], "");
}

#[test]
fn iperf3_6_runs_5s_each_direction_and_reports_throughput() {
    require!("iperf3");
    let _serial = bulk_lock();
    scenarios::iperf3_each_direction(V6);
}

#[test]
fn ping_6_of_router_link_local_and_gateway_is_answered() {
    require!("busybox");
    scenarios::ping_answered(&["fe80::1%eth0", &V6.gateway().to_string()]);
}

/// An address of the documentation prefix for the AAAA record.
const AAAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);

#[test]
fn dns_aaaa_query_to_the_ipv6_dns_address_is_answered_by_the_upstream() {
    require!("busybox");
    let (port, queries) = servers::dns_responder_with(Records {
        name: servers::DNS_NAME,
        a: Some(servers::DNS_ADDRESS),
        aaaa: Some(AAAA),
    });
    let upstream = format!("127.0.0.1:{port}");
    // The server named on the command line: the query goes to the IPv6
    // DNS address, not to resolv.conf's.
    let script = format!(
        "busybox nslookup -type=AAAA {} {}",
        servers::DNS_NAME,
        V6.dns()
    );
    let out = run_in_guest(&["--dns-upstream", &upstream], &script, LIMIT);
    out.assert_success("nslookup");
    assert!(
        out.stdout.contains(&format!("Server:\t\t{}", V6.dns()))
            || out.stdout.contains(&format!("Server: {}", V6.dns())),
        "not asked of {}:\n{}",
        V6.dns(),
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains("Address") && l.contains(&AAAA.to_string())),
        "{}",
        out.stdout
    );
    assert!(queries.aaaa.load(Ordering::Relaxed) >= 1);
}

#[test]
fn name_with_a_and_aaaa_records_is_reached_over_ipv6_first() {
    require!("curl");
    let name = "dual.test";
    let (dns_port, queries) = servers::dns_responder_with(Records {
        name,
        a: Some(Ipv4Addr::new(10, 0, 2, 2)),
        aaaa: Some(Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 2)),
    });
    let (port, peers) = servers::http_peer_on(servers::dual_stack_listeners(16));
    let upstream = format!("127.0.0.1:{dns_port}");
    let script = format!("curl -sS --max-time 10 http://{name}:{port}/");
    let out = run_in_guest(&["--dns-upstream", &upstream], &script, LIMIT);
    out.assert_success("curl by name");
    assert_eq!(out.stdout, "peer=::1\n", "{}", out.stderr);
    let first = peers
        .recv_timeout(Duration::from_secs(5))
        .expect("the server's report");
    assert_eq!(first.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert!(queries.aaaa.load(Ordering::Relaxed) >= 1);
}

#[test]
fn five_hundred_concurrent_ipv6_connections_each_get_their_own_data_back() {
    require!("python3");
    let _serial = bulk_lock();
    scenarios::concurrent_connections(V6, 500, 64 << 10);
}

#[test]
fn udp_6_datagrams_of_1_1400_60000_bytes_echo_intact() {
    require!("python3");
    scenarios::udp_echo_sizes(V6, &["1", "1400", "60000"]);
}

#[test]
fn denied_ipv6_cidr_fails_within_a_second() {
    require!("curl", "date");
    scenarios::denied_cidr_fails_within_a_second(V6, "fd00:0:0:2::2/128");
}

#[test]
fn ipv6_destination_other_than_gateway_behind_a_veth_hash_verified() {
    require!("ip", "curl", "sha256sum");
    topology::download_from_behind_a_veth(V6);
}
