//! End to end with a real guest: the Linux kernel's own TCP/IP stack in the
//! network namespace that `slipway run` makes, using curl, iperf3, busybox
//! and python3 against servers on host loopback (reached through the
//! gateway 10.0.2.2), servers inside the guest (reached through `-t` and
//! `-u` forwards), and a server in a namespace the test builds, with
//! slipway itself run inside namespaces that have no route to the host's.
//!
//! Needs root and /dev/net/tun; each test says on stderr why it skips
//! otherwise, or which tool it is missing. Traffic goes only to 127.0.0.1
//! and to namespaces made here. Every process runs under a guard that kills
//! its process group; every wait is bounded. The bulk tests run one at a
//! time and print their throughput as `e2e: ...` lines on stderr (see them
//! with `--nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::e2e;
use test_support::require;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::Duration;

use e2e::data::{BULK_LEN, Sha256, Stream, hex};
use e2e::scenarios::{
    self, CURL_COULDNT_CONNECT, LIMIT, READY, connect_bounded, fetch_result, timed_fetch,
};
use e2e::{
    Family, GuestRun, NamedNetns, TempDir, bulk_lock, free_tcp_port, free_udp_port, http_url,
    python_in_guest, python3, run_in_guest, run_then_quiet, servers, slipway_run, stat, topology,
};

/// The guest's name for host loopback.
const GATEWAY: &str = "10.0.2.2";

// ---------------------------------------------------------------------------
// Bulk transfers, checked by hash.

#[test]
fn http_download_256mib_hash_verified() {
    require!("curl", "sha256sum");
    let _serial = bulk_lock();
    let stats = scenarios::http_download_256mib(Family::V4, &[], "");
    // The tap carries a vnet header: the data went to the guest with its
    // checksums left partial, one segment at least per 64 KiB.
    let partial = stat(&stats, "partial csums to guest").expect("the counter");
    assert!(partial >= (BULK_LEN / 65536) as u64, "{stats}");
}

#[test]
fn http_download_256mib_at_mtu_1500_goes_in_gso_segments_hash_verified() {
    require!("curl", "sha256sum");
    let _serial = bulk_lock();
    let stats = scenarios::http_download_256mib(Family::V4, &["--mtu", "1500"], " at MTU 1500");
    // Most of the data went in segments larger than the MTU, which the
    // guest's kernel took whole (GSO).
    let gso = stat(&stats, "gso frames to guest").expect("the counter");
    assert!(gso >= (BULK_LEN / 65536 / 2) as u64, "{stats}");
}

#[test]
fn http_upload_256mib_hash_verified() {
    require!("curl");
    let _serial = bulk_lock();
    let stats = scenarios::http_upload_256mib(Family::V4, &[], "");
    // The guest's kernel left the checksums partial, behind the tap's
    // vnet header.
    let partial = stat(&stats, "partial csums from guest").expect("the counter");
    assert!(partial >= (BULK_LEN / 65536) as u64, "{stats}");
}

#[test]
fn http_upload_256mib_at_mtu_1500_goes_in_tso_segments_hash_verified() {
    require!("curl");
    let _serial = bulk_lock();
    let stats = scenarios::http_upload_256mib(Family::V4, &["--mtu", "1500"], " at MTU 1500");
    // Most of the data came in segments larger than the MTU, which the
    // guest's kernel left for the tap to segment (TSO).
    let gso = stat(&stats, "gso frames from guest").expect("the counter");
    assert!(gso >= (BULK_LEN / 65536 / 2) as u64, "{stats}");
}

#[test]
fn iperf3_5s_each_direction() {
    require!("iperf3");
    let _serial = bulk_lock();
    scenarios::iperf3_each_direction(Family::V4);
}

#[test]
fn five_hundred_concurrent_connections_64kib_each() {
    require!("python3");
    let _serial = bulk_lock();
    scenarios::concurrent_connections(Family::V4, 500, 64 << 10);
}

// ---------------------------------------------------------------------------
// TCP half-close, UDP sizes, DNS, ICMP.

/// The guest sends this much before shutting down its side.
const HALF_CLOSE_LEN: usize = 1 << 20;

/// Python that connects to `10.0.2.2:PORT`, sends the contents of FILE,
/// shuts down writing and prints everything it then reads until the server
/// closes. Arguments: PORT FILE.
const GUEST_HALF_CLOSING_CLIENT: &str = "\
import socket, sys
data = open(sys.argv[2], 'rb').read()
s = socket.create_connection(('10.0.2.2', int(sys.argv[1])), timeout=10)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
print(b''.join(iter(lambda: s.recv(65536), b'')).decode())
";

/// Python serving one connection on guest port 8080: reads to end of
/// stream, then answers with the length and SHA-256 of what it read.
const GUEST_EOF_SERVER: &str = "\
import hashlib, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 8080))
s.listen()
print('ready', flush=True)
s.settimeout(20)
c, peer = s.accept()
c.settimeout(10)
data = b''.join(iter(lambda: c.recv(65536), b''))
c.sendall(b'got %d bytes sha256 %s' % (len(data), hashlib.sha256(data).hexdigest().encode()))
c.close()
";

fn half_close_payload() -> Vec<u8> {
    let mut data = vec![0; HALF_CLOSE_LEN];
    Stream::new(7).fill(&mut data);
    data
}

#[test]
fn half_close_both_ways() {
    require!("python3");
    let data = half_close_payload();
    let expected = format!(
        "got {} bytes sha256 {}",
        data.len(),
        hex(&Sha256::digest(&data))
    );

    // The guest shuts down writing and still reads the host's reply.
    let dir = TempDir::new("half-close");
    let input = dir.file("request.bin");
    std::fs::write(&input, &data).expect("write the request");
    let port = servers::reply_after_eof().to_string();
    let out = python_in_guest(&[], GUEST_HALF_CLOSING_CLIENT, &[&port, &input], LIMIT);
    out.assert_success("guest client");
    assert_eq!(out.stdout.trim_end(), expected);

    // A host client through a `-t` forward shuts down writing and still
    // reads the guest's reply.
    let host_port = free_tcp_port();
    let spec = format!("127.0.0.1/{host_port}:8080");
    let mut guest = GuestRun::spawn(
        slipway_run(&["-t", &spec]),
        &[python3(), "-c", GUEST_EOF_SERVER],
    );
    guest.wait_for_line("ready", READY);
    let mut stream = connect_bounded((Ipv4Addr::LOCALHOST, host_port));
    stream.write_all(&data).expect("write through the forward");
    stream.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .expect("read the guest's reply");
    assert_eq!(reply, expected);
    guest
        .finish_quiet(LIMIT, "after the half-close through the forward")
        .assert_success("guest server");
}

#[test]
fn udp_echo_1_1400_60000_bytes() {
    require!("python3");
    scenarios::udp_echo_sizes(Family::V4, &["1", "1400", "60000"]);
}

#[test]
fn dns_lookup_through_test_responder() {
    require!("busybox", "python3");
    let (port, queries) = servers::dns_responder();
    let upstream = format!("127.0.0.1:{port}");
    // busybox asks the server in resolv.conf itself; python goes through
    // the C library's resolver (hosts: files dns).
    let script = format!(
        "busybox nslookup {name} && {python} -c \"import socket; print('python', socket.gethostbyname('{name}'))\"",
        name = servers::DNS_NAME,
        python = python3()
    );
    let out = run_in_guest(&["--dns-upstream", &upstream], &script, LIMIT);
    out.assert_success("lookups");
    let address = servers::DNS_ADDRESS.to_string();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains("Address") && l.contains(&address)),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("python {address}")),
        "{}",
        out.stdout
    );
    assert!(queries.load(Ordering::Relaxed) >= 2);
}

#[test]
fn ping_gateway() {
    require!("busybox");
    scenarios::ping_answered(&[GATEWAY]);
}

// ---------------------------------------------------------------------------
// Inbound forwards.

/// Python serving guest TCP port 8080 and UDP port 5353 once each: the
/// answer names the protocol, echoes the request and names the peer.
const GUEST_FORWARDED_SERVERS: &str = "\
import socket
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(('0.0.0.0', 8080))
t.listen()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(('0.0.0.0', 5353))
print('ready', flush=True)
u.settimeout(20)
data, peer = u.recvfrom(65536)
u.sendto(b'udp in the guest got %s from %s' % (data, peer[0].encode()), peer)
t.settimeout(20)
c, peer = t.accept()
c.settimeout(10)
data = c.recv(65536)
c.sendall(b'tcp in the guest got %s from %s' % (data, peer[0].encode()))
c.close()
";

#[test]
fn tcp_and_udp_forwards_reach_servers_in_the_namespace() {
    require!("python3");
    let tcp_port = free_tcp_port();
    let udp_port = free_udp_port();
    let tcp_spec = format!("127.0.0.1/{tcp_port}:8080");
    let udp_spec = format!("127.0.0.1/{udp_port}:5353");
    let mut guest = GuestRun::spawn(
        slipway_run(&["-t", &tcp_spec, "-u", &udp_spec]),
        &[python3(), "-c", GUEST_FORWARDED_SERVERS],
    );
    guest.wait_for_line("ready", READY);

    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    socket
        .connect((Ipv4Addr::LOCALHOST, udp_port))
        .expect("connect udp");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0; 1500];
    let udp_reply = (0..10)
        .find_map(|_| {
            socket.send(b"ping over udp").ok()?;
            let len = socket.recv(&mut buf).ok()?;
            Some(String::from_utf8_lossy(&buf[..len]).into_owned())
        })
        .expect("no UDP answer through the forward");
    assert_eq!(
        udp_reply,
        "udp in the guest got ping over udp from 10.0.2.2"
    );

    let mut stream = connect_bounded((Ipv4Addr::LOCALHOST, tcp_port));
    stream.write_all(b"hello over tcp").expect("write");
    let mut tcp_reply = String::new();
    stream.read_to_string(&mut tcp_reply).expect("read");
    assert_eq!(
        tcp_reply,
        "tcp in the guest got hello over tcp from 10.0.2.2"
    );
    guest
        .finish_quiet(LIMIT, "after the forwarded flows")
        .assert_success("guest servers");
}

// ---------------------------------------------------------------------------
// Failures are quick.

#[test]
fn closed_port_fails_within_a_second() {
    require!("curl", "date");
    let port = free_tcp_port();
    let url = http_url(Family::V4.gateway(), port, "");
    let out = run_in_guest(&[], &timed_fetch(&url), LIMIT);
    let (rc, ms) = fetch_result(&out);
    assert_eq!(rc, CURL_COULDNT_CONNECT, "{}", out.stderr);
    assert!(ms < 1000, "refusal took {ms} ms");
    eprintln!("e2e: closed port refused in {ms} ms");
}

#[test]
fn denied_cidr_fails_within_a_second() {
    require!("curl", "date");
    scenarios::denied_cidr_fails_within_a_second(Family::V4, "10.0.2.2/32");
}

// ---------------------------------------------------------------------------
// Namespaces the test builds: a destination other than the gateway, and a
// host side with no route anywhere.

#[test]
fn destination_other_than_gateway_via_namespace_topology() {
    require!("ip", "curl", "sha256sum");
    // Guest namespace (slipway's) -> slipway in `mid` -> veth -> `srv`.
    // `mid` has only lo and the veth end: no route anywhere else.
    topology::download_from_behind_a_veth(Family::V4);
}

#[test]
fn an_unreachable_dns_upstream_does_not_stop_slipway() {
    require!("ip");
    // A namespace with only lo: no route to the upstream (TEST-NET-2), so
    // connecting the forwarder's socket fails at once and nothing is sent.
    let isolated = NamedNetns::new("noroute");
    let out = run_then_quiet(
        isolated.exec(
            env!("CARGO_BIN_EXE_slipway"),
            &["run", "--dns-upstream", "198.51.100.53", "--"],
        ),
        &["true"],
        LIMIT,
        "with an unreachable DNS upstream",
    );
    out.assert_success("slipway run with an unreachable DNS upstream");
    assert!(
        out.stderr.contains("DNS upstream unreachable"),
        "{}",
        out.stderr
    );
}
