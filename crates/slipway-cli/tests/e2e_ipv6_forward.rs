//! End to end with the Linux kernel as the guest: port forwards over IPv6
//! and the `-4`/`-6` switches, as a host client and a server in the
//! namespace see them.
//!
//! Needs root, /dev/net/tun and python3; each test says on stderr why it
//! skips otherwise. The host side connects only to loopback; every process
//! runs under a guard, every wait is bounded, and each scenario ends with
//! slipway's quiet-loop check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use test_support::e2e::data::{Sha256, Stream, hex};
use test_support::e2e::scenarios::connect_bounded;
use test_support::e2e::{self, GuestRun, free_tcp_port, python3, slipway_run};
use test_support::require;

/// The bound on a scenario's guest command.
const LIMIT: Duration = Duration::from_secs(60);
/// How long the guest's server may take to come up.
const READY: Duration = Duration::from_secs(10);
/// The plan's IPv6 gateway: host loopback as the guest sees it.
const GATEWAY6: &str = "fd00:0:0:2::2";

/// Python in the guest: serves `argv[1]` connections on a dual-stack
/// socket on [::]:8080, one at a time. Each is read to its end, reported as
/// `conn PEER LEN SHA256`, and its bytes sent back before it is closed.
const GUEST_HASHING_ECHO: &str = "\
import hashlib, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', 8080))
s.listen()
s.settimeout(30)
print('ready', flush=True)
for _ in range(int(sys.argv[1])):
    c, peer = s.accept()
    c.settimeout(30)
    data = bytearray()
    while True:
        d = c.recv(1 << 20)
        if not d:
            break
        data += d
    print('conn', peer[0], len(data), hashlib.sha256(data).hexdigest(), flush=True)
    c.sendall(data)
    c.close()
";

/// Sends `len` bytes of the stream `seed` through `addr`, half-closes, and
/// checks that the guest's echo comes back intact (SHA-256). Returns the
/// digest of what was sent, lowercase hex.
fn hashed_round_trip(addr: SocketAddr, len: usize, seed: u64) -> String {
    let mut data = vec![0u8; len];
    Stream::new(seed).fill(&mut data);
    let sent = Sha256::digest(&data);
    let mut stream = connect_bounded(addr);
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        thread::spawn(move || {
            stream.write_all(&data).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut back = Vec::with_capacity(len);
    stream.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert_eq!(back.len(), len, "the whole echo came back through {addr}");
    assert_eq!(
        Sha256::digest(&back),
        sent,
        "the echo through {addr} is intact"
    );
    hex(&sent)
}

/// The `conn` lines the guest printed: (peer, length, digest).
fn connections(stdout: &str) -> Vec<(String, usize, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("conn ")?.split(' ');
            let peer = words.next()?.to_owned();
            let len = words.next()?.parse().ok()?;
            Some((peer, len, words.next()?.to_owned()))
        })
        .collect()
}

#[test]
fn forward_on_ipv6_loopback_reaches_a_listener_on_any_address_in_the_namespace_intact() {
    require!("python3");
    const LEN: usize = 16 << 20;
    let port = free_tcp_port();
    let spec = format!("[::1]/{port}:8080");
    let mut guest = GuestRun::spawn(
        slipway_run(&["-t", &spec]),
        &[python3(), "-c", GUEST_HASHING_ECHO, "1"],
    );
    guest.wait_for_line("ready", READY);
    let started = Instant::now();
    let sent = hashed_round_trip(SocketAddr::from((Ipv6Addr::LOCALHOST, port)), LEN, 61);
    let seconds = started.elapsed().as_secs_f64();
    let out = guest.finish_quiet(LIMIT, "after the forward on [::1]");
    out.assert_success("the guest's server");
    assert_eq!(
        connections(&out.stdout),
        [(GATEWAY6.to_owned(), LEN, sent)],
        "the guest got every byte over IPv6, from the gateway"
    );
    eprintln!(
        "e2e: 16 MiB each way through [::1]:{port} in {seconds:.2} s ({:.0} MiB/s)",
        e2e::mib_per_s(2 * LEN, seconds)
    );
}

#[test]
fn forward_without_address_takes_connections_of_both_families() {
    require!("python3");
    const LEN: usize = 1 << 20;
    let port = free_tcp_port();
    let mut guest = GuestRun::spawn(
        slipway_run(&["-t", &format!("{port}:8080")]),
        &[python3(), "-c", GUEST_HASHING_ECHO, "2"],
    );
    guest.wait_for_line("ready", READY);
    let v4 = hashed_round_trip(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), LEN, 62);
    let v6 = hashed_round_trip(SocketAddr::from((Ipv6Addr::LOCALHOST, port)), LEN, 63);
    let out = guest.finish_quiet(LIMIT, "after the dual-stack forward");
    out.assert_success("the guest's server");
    // The guest's dual-stack socket shows an IPv4 peer as IPv4-mapped.
    assert_eq!(
        connections(&out.stdout),
        [
            ("::ffff:10.0.2.2".to_owned(), LEN, v4),
            (GATEWAY6.to_owned(), LEN, v6),
        ],
        "each family reached the guest in its own"
    );
}

/// A guest script printing what the kernel has of each family on eth0
/// and where DNS goes, then serving one forwarded connection.
const FAMILY_REPORT: &str = "\
echo v4: $(ip -4 -o addr show dev eth0 | grep -c inet)
echo v6: $(ip -6 -o addr show dev eth0 scope global | grep -c inet6)
echo v6-disabled: $(cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6)
echo resolv: $(grep -m1 nameserver /etc/resolv.conf)
exec \"$@\"
";

/// Runs the family report and one hashed forwarded connection through
/// `connect_to` with `options`; asserts that `refused` finds nothing
/// listening; returns the guest's output.
fn family_scenario(
    options: &[&str],
    port: u16,
    connect_to: SocketAddr,
    refused: SocketAddr,
) -> String {
    let mut argv = vec!["sh", "-c", FAMILY_REPORT, "sh", python3()];
    argv.extend_from_slice(&["-c", GUEST_HASHING_ECHO, "1"]);
    let mut guest = GuestRun::spawn(slipway_run(options), &argv);
    guest.wait_for_line("ready", READY);
    let error = TcpStream::connect_timeout(&refused, Duration::from_secs(5)).unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::ConnectionRefused,
        "{refused}: nothing listens on the family that is off (port {port})"
    );
    let sent = hashed_round_trip(connect_to, 1 << 20, 64);
    let out = guest.finish_quiet(LIMIT, "after the one-family scenario");
    out.assert_success("the guest's script");
    let conns = connections(&out.stdout);
    assert_eq!(conns.len(), 1, "{}", out.stdout);
    assert_eq!(conns[0].2, sent);
    out.stdout
}

#[test]
fn ipv6_only_gives_the_namespace_no_ipv4_and_forwards_on_ipv6_alone() {
    require!("python3", "ip", "grep");
    let port = free_tcp_port();
    let stdout = family_scenario(
        &["-6", "-t", &format!("{port}:8080")],
        port,
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
    );
    assert!(stdout.contains("v4: 0\n"), "no IPv4 address:\n{stdout}");
    assert!(stdout.contains("v6: 1\n"), "a SLAAC address:\n{stdout}");
    assert!(
        stdout.contains("resolv: nameserver fd00:0:0:2::3\n"),
        "DNS over IPv6:\n{stdout}"
    );
    assert_eq!(connections(&stdout)[0].0, GATEWAY6);
}

#[test]
fn ipv4_only_gives_the_namespace_no_ipv6_and_forwards_on_ipv4_alone() {
    require!("python3", "ip", "grep");
    let port = free_tcp_port();
    let stdout = family_scenario(
        &["-4", "-t", &format!("{port}:8080")],
        port,
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
    );
    assert!(stdout.contains("v4: 1\n"), "the IPv4 address:\n{stdout}");
    assert!(stdout.contains("v6: 0\n"), "no IPv6 address:\n{stdout}");
    assert!(stdout.contains("v6-disabled: 1\n"), "IPv6 off:\n{stdout}");
    assert!(stdout.contains("resolv: nameserver 10.0.2.3\n"), "{stdout}");
    assert_eq!(connections(&stdout)[0].0, "::ffff:10.0.2.2");
}

#[test]
fn ipv4_only_refuses_a_forward_bound_to_an_ipv6_address() {
    let out = e2e::run(
        &mut e2e::slipway(&["run", "-4", "-t", "[::1]/8080", "--", "true"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "a usage error: {}", out.stderr);
    assert!(
        out.stderr.contains("-t: ") && out.stderr.contains("IPv6 is disabled"),
        "{}",
        out.stderr
    );
}
