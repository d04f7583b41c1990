//! End to end with the Linux kernel as the guest: the ICMPv6 errors about
//! its datagrams that a real path gives (no route, address unreachable,
//! packet too big) reach it through `slipway run`, and its kernel acts on
//! them: its sockets see the errors, its route cache learns the path MTU.
//!
//! slipway itself runs in the host side of a routed path the test builds
//! (`test_support::e2e::routed`), so that its host sockets reach a router
//! and a 1280-byte link without any route of the machine's own changing.
//! Needs root, /dev/net/tun, `ip`, `busybox` and `python3`; each test says
//! on stderr why it skips otherwise. Every process runs under a guard and
//! every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use test_support::e2e::routed::{ABSENT, BEYOND, NARROW_MTU, NO_ROUTE, Routed};
use test_support::e2e::{self, GuestRun, TempDir};
use test_support::require;

/// The bound on the guest's whole script.
const LIMIT: Duration = Duration::from_secs(60);

/// `slipway run --` inside the host side of `net`, for [`GuestRun`].
fn slipway_run_in(net: &Routed) -> std::process::Command {
    let slipway = e2e::slipway_binary();
    net.host
        .exec(slipway.to_str().expect("a UTF-8 path"), &["run", "--"])
}

/// Python run in the guest: for each address in `argv[1:]`, a UDP socket
/// with `IPV6_RECVERR` sends one datagram to its port 9 and reads its error
/// queue for at most 8 s; prints `error ADDRESS TYPE CODE SECONDS` for the
/// ICMPv6 error found, or `none ADDRESS`.
const ERROR_QUEUE_PROBE: &str = r"
import select, socket, struct, sys, time
IPV6_RECVERR = 25  # <linux/in6.h>; Python names no constant for it
for addr in sys.argv[1:]:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    s.connect((addr, 9))
    start = time.monotonic()
    s.send(b'anyone there?')
    found = None
    while found is None and time.monotonic() - start < 8:
        select.select([], [], [s], 0.2)
        try:
            _, anc, _, _ = s.recvmsg(512, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue
        for level, kind, data in anc:
            if level == socket.IPPROTO_IPV6 and kind == IPV6_RECVERR:
                _, origin, ty, code = struct.unpack_from('=IBBB', data)
                found = (ty, code)
    if found:
        print('error', addr, found[0], found[1], '%.1f' % (time.monotonic() - start), flush=True)
    else:
        print('none', addr, flush=True)
    s.close()
";

/// The `error` line the probe printed for `addr`: (type, code, seconds).
fn probe_result(stdout: &str, addr: &str) -> (u8, u8, f64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("error {addr} ")))
        .unwrap_or_else(|| panic!("no error seen for {addr}:\n{stdout}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (
        words[2].parse().unwrap(),
        words[3].parse().unwrap(),
        words[4].parse().unwrap(),
    )
}

#[test]
fn guest_sockets_see_no_route_and_address_unreachable_and_ping_ends_in_bounded_time() {
    require!("ip", "busybox", "python3");
    let net = Routed::new("e2eunr");
    let dir = TempDir::new("v6err-probe");
    let probe = dir.file("probe.py");
    std::fs::write(&probe, ERROR_QUEUE_PROBE).unwrap();
    let script = format!(
        "{python} {probe} {NO_ROUTE} {ABSENT}; \
         start=$(date +%s); busybox ping -6 -c 1 -W 2 {ABSENT}; echo ping-rc=$?; \
         echo ping-seconds=$(( $(date +%s) - start ))",
        python = e2e::python3(),
    );
    let started = Instant::now();
    let guest = GuestRun::spawn(slipway_run_in(&net), &["sh", "-c", &script]);
    let out = guest.finish_quiet(LIMIT, "after the error probes");
    out.assert_success("the guest's script");
    let (ty, code, seconds) = probe_result(&out.stdout, &NO_ROUTE.to_string());
    assert_eq!(
        (ty, code),
        (1, 0),
        "no route, from the router:\n{}",
        out.stdout
    );
    assert!(seconds < 2.0, "no route took {seconds} s");
    let (ty, code, seconds) = probe_result(&out.stdout, &ABSENT.to_string());
    assert_eq!((ty, code), (1, 3), "address unreachable:\n{}", out.stdout);
    assert!(seconds < 6.0, "address unreachable took {seconds} s");
    // The ping gets no reply: it reports the loss and ends on its deadline.
    assert_eq!(
        e2e::field(&out.stdout, "ping-rc"),
        Some("1"),
        "{}",
        out.stdout
    );
    let ping_seconds: u64 = e2e::field(&out.stdout, "ping-seconds")
        .unwrap()
        .parse()
        .unwrap();
    assert!(ping_seconds <= 4, "ping took {ping_seconds} s");
    assert!(out.stdout.contains("0 packets received"), "{}", out.stdout);
    eprintln!(
        "e2e: no route and address unreachable reached the guest's sockets in {:?}",
        started.elapsed()
    );
}

#[test]
fn guest_kernel_learns_the_path_mtu_from_a_routers_packet_too_big() {
    require!("ip", "busybox");
    let net = Routed::new("e2eptb");
    // 1400 bytes of data make a 1448-byte packet, which the router cannot
    // put on its 1280-byte link; 1200 make one that fits.
    let script = format!(
        "ip -6 route get {BEYOND}; \
         busybox ping -6 -c 1 -W 2 -s 1400 {BEYOND}; echo big-rc=$?; \
         echo learnt; ip -6 route get {BEYOND}; \
         busybox ping -6 -c 1 -W 2 -s 1200 {BEYOND}; echo small-rc=$?"
    );
    let guest = GuestRun::spawn(slipway_run_in(&net), &["sh", "-c", &script]);
    let out = guest.finish_quiet(LIMIT, "after the path MTU probe");
    out.assert_success("the guest's script");
    let (before, after) = out
        .stdout
        .split_once("learnt\n")
        .expect("both routes printed");
    let route = |text: &str| {
        text.lines()
            .find(|l| l.starts_with(&BEYOND.to_string()))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no route to {BEYOND}:\n{}", out.stdout))
    };
    let mtu = format!("mtu {NARROW_MTU}");
    assert!(
        !route(before).contains(&mtu),
        "known before: {}",
        route(before)
    );
    assert!(
        route(after).contains(&mtu),
        "not learnt: {}\n{}",
        route(after),
        out.stdout
    );
    assert_eq!(
        e2e::field(&out.stdout, "big-rc"),
        Some("1"),
        "{}",
        out.stdout
    );
    assert_eq!(
        e2e::field(&out.stdout, "small-rc"),
        Some("0"),
        "a ping that fits the path is answered:\n{}",
        out.stdout
    );
    eprintln!(
        "e2e: the guest's route after the packet too big: {}",
        route(after)
    );
}

/// Python run in the guest: sends one datagram to `[argv[1]]:argv[2]` and
/// prints the length and SHA-256 of the answer (`got LEN HEX`), or
/// `timeout` after 5 s.
const FETCH_DATAGRAM: &str = r"
import hashlib, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b'send', (sys.argv[1], int(sys.argv[2])))
try:
    data = s.recv(65535)
    print('got', len(data), hashlib.sha256(data).hexdigest(), flush=True)
except socket.timeout:
    print('timeout', flush=True)
";

#[test]
fn a_60000_byte_udp_reply_over_ipv6_reaches_the_guest_kernel_intact_at_mtu_1500_and_65520() {
    require!("python3");
    let reply = test_support::harness::pattern(60_000, 60);
    let digest = test_support::e2e::data::Sha256::digest(&reply);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    for mtu in ["1500", "65520"] {
        // A server on host loopback, which the guest reaches as its gateway.
        let server = std::net::UdpSocket::bind("[::1]:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let port = server.local_addr().unwrap().port().to_string();
        let answer = reply.clone();
        let replier = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let (_, peer) = server.recv_from(&mut buf).expect("the guest's request");
            server.send_to(&answer, peer).unwrap();
        });
        let args = ["fd00:0:0:2::2", port.as_str()];
        let out = e2e::python_in_guest(&["--mtu", mtu], FETCH_DATAGRAM, &args, LIMIT);
        out.assert_success("the guest's Python");
        replier.join().unwrap();
        let expected = format!("got 60000 {hex}");
        assert!(
            out.stdout.lines().any(|l| l == expected),
            "at MTU {mtu} the guest did not get the datagram intact:\n{}",
            out.stdout
        );
        eprintln!("e2e: at MTU {mtu} a 60000-byte IPv6 datagram reached the guest intact");
    }
}
