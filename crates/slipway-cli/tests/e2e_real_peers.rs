//! End to end against peers as a real network has them, not loopback's: a
//! guest of `slipway run` (the Linux kernel in the namespace slipway
//! makes) whose slipway runs in a namespace `mid` joined by a veth at MTU
//! 1500 to a server namespace `srv` (192.0.2.1/24; `mid` is 192.0.2.2 and
//! has no other route). The host side of every flow has an MSS of 1460,
//! the guest's MTU is 65520 or 1500.
//!
//! The scenarios: an idle connection held for ten seconds, during which
//! slipway must use no CPU; 256 MiB each way checked by SHA-256; ping and
//! UDP to an address on the link that nobody holds (ARP fails: the errors
//! must reach the guest, and nothing spin); a server that sends urgent
//! data mid-stream (every byte must arrive, in order); and slipway under a
//! low `RLIMIT_NOFILE` hit by more flows than it has descriptors (refused
//! and counted, no spin; the flows it took keep working, and a new
//! connection works once the old ones are closed and while UDP flows fill
//! their share).
//! Every `slipway run` ends with the quiet-loop check of `e2e::GuestRun`.
//!
//! Needs root, /dev/net/tun, ip, python3 and prlimit; each test says on
//! stderr why it skips otherwise (a failure under `SLIPWAY_NO_SKIP`).
//! Traffic goes only to the namespaces made here. Every process runs under
//! a guard that kills its process group; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::common;
use test_support::e2e;
use test_support::require;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::Duration;

use e2e::data::{BULK_LEN, bulk};
use e2e::{
    GuestRun, NamedNetns, Proc, TempDir, bulk_lock, field, mib_per_s, python3, servers, stat,
};

/// The server namespace's address.
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// An address on the link that nobody holds.
const ABSENT: &str = "192.0.2.99";
/// The bound on a short guest script.
const LIMIT: Duration = Duration::from_secs(30);
/// The bound on a run with bulk transfers (curl's `--max-time` is shorter,
/// so that a slow transfer fails with curl's account of it).
const BULK_LIMIT: Duration = Duration::from_secs(150);
/// How long a server may take to start listening.
const READY: Duration = Duration::from_secs(10);
/// How long the idle connection is held.
const IDLE_SECONDS: u64 = 10;

/// `srv` and `mid`, joined by a veth at MTU 1500.
struct Link {
    srv: NamedNetns,
    mid: NamedNetns,
}

impl Link {
    /// Builds the two namespaces (named after `tag`, unique per test) and
    /// the veth, and checks that `mid` has nothing but its link route.
    fn new(tag: &str) -> Self {
        let srv = NamedNetns::new(&format!("rp-srv-{tag}"));
        let mid = NamedNetns::new(&format!("rp-mid-{tag}"));
        e2e::topology::link_by_veth(&mid, &srv, &[e2e::Family::V4]);
        Self { srv, mid }
    }

    /// `slipway run OPTIONS --stats --` in `mid`, for a [`GuestRun`].
    fn slipway(&self, options: &[&str]) -> std::process::Command {
        let mut args = vec!["run"];
        args.extend_from_slice(options);
        args.extend(["--stats", "--"]);
        self.mid.exec(env!("CARGO_BIN_EXE_slipway"), &args)
    }

    /// A Python server `script` in `srv`, started with `args`; waits for
    /// its `ready PORT` line and returns it with the port.
    fn python_server(&self, script: &str, args: &[&str]) -> (Proc, u16) {
        let mut argv = vec!["-c", script];
        argv.extend_from_slice(args);
        let mut server = Proc::spawn(&mut self.srv.exec(python3(), &argv));
        let line = server.wait_for_line("ready", READY);
        let port = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        (server, port)
    }
}

/// Python in the guest: connects to HOST:PORT, prints the server's
/// greeting with `connected`, holds the connection without a byte either
/// way until the file RELEASE exists (60 s at most), then checks that the
/// connection still carries a line each way. Arguments: HOST PORT RELEASE.
const GUEST_IDLE_CLIENT: &str = "\
import os, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
f = s.makefile('rb')
print('connected', f.readline().decode().strip(), flush=True)
for _ in range(600):
    if os.path.exists(sys.argv[3]):
        break
    time.sleep(0.1)
else:
    sys.exit('never released')
s.sendall(b'still there?\\n')
print('reply', f.readline().decode().strip(), flush=True)
";

/// Python in `srv`: accepts one connection, greets it with the segment
/// size of its side (`hello mss=N`, `TCP_MAXSEG`), then echoes one line. Arguments: ADDR.
const SERVER_IDLE: &str = "\
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 0))
s.listen()
print('ready', s.getsockname()[1], flush=True)
s.settimeout(30)
c, _ = s.accept()
c.settimeout(60)
c.sendall(b'hello mss=%d\\n' % c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
c.sendall(c.makefile('rb').readline())
c.close()
";

/// Holds one idle connection from a guest at `mtu` to the MSS-1460 server
/// for [`IDLE_SECONDS`] and asserts that slipway stays quiet meanwhile.
fn idle_connection_at(mtu: &str) {
    let link = Link::new(&format!("idle{mtu}"));
    let (_server, port) = link.python_server(SERVER_IDLE, &[&SERVER.to_string()]);
    let dir = TempDir::new(&format!("idle-{mtu}"));
    let release = dir.file("release");
    let port = port.to_string();
    let mut guest = GuestRun::spawn(
        link.slipway(&["--mtu", mtu]),
        &[
            python3(),
            "-c",
            GUEST_IDLE_CLIENT,
            &SERVER.to_string(),
            &port,
            &release,
        ],
    );
    let line = guest.wait_for_line("connected", LIMIT);
    // 1460, less the 12 bytes of timestamps where both sides use them.
    assert!(
        line.contains("hello mss=1460") || line.contains("hello mss=1448"),
        "the server's side of the link has MSS 1460: {line:?}"
    );
    common::assert_process_quiet(
        guest.pid(),
        IDLE_SECONDS,
        &format!("an idle connection to an MSS-1460 peer, guest MTU {mtu}"),
    );
    std::fs::write(&release, b"").expect("release the guest");
    let out = guest.finish_quiet(LIMIT, "after the idle connection");
    out.assert_success("the idle client");
    assert!(
        out.stdout.contains("reply still there?"),
        "the connection carries data after the idle time:\n{}",
        out.stdout
    );
}

#[test]
fn idle_connection_to_an_mss_1460_peer_leaves_slipway_quiet_at_mtu_65520() {
    require!("ip", "python3");
    idle_connection_at("65520");
}

#[test]
fn idle_connection_to_an_mss_1460_peer_leaves_slipway_quiet_at_mtu_1500() {
    require!("ip", "python3");
    idle_connection_at("1500");
}

/// Downloads 256 MiB from a server in `srv` into a guest at `mtu` and
/// uploads them back, checking the SHA-256 at the receiving end each time.
fn bulk_both_ways_at(mtu: &str) {
    let _serial = bulk_lock();
    let link = Link::new(&format!("bulk{mtu}"));
    let data = bulk();
    let addr = SocketAddrV4::new(SERVER, 0);
    let (download, (upload, uploads)) = link.srv.within(|| {
        (
            servers::http_body_on(servers::listener_at(addr, 16), &data.bytes),
            servers::http_upload_sink_on(servers::listener_at(addr, 16)),
        )
    });
    let dir = TempDir::new(&format!("bulk-{mtu}"));
    let file = dir.file("bulk.bin");
    std::fs::write(&file, &data.bytes).expect("write the upload file");
    let script = format!(
        "curl -sS --max-time 60 -w '%{{stderr}}download_s=%{{time_total}}\\n' \
         http://{SERVER}:{download}/ | sha256sum | sed 's/ .*//; s/^/sha256=/' && \
         curl -sS --max-time 60 -H 'Expect:' -T {file} -w 'upload_s=%{{time_total}}\\n' \
         http://{SERVER}:{upload}/upload"
    );
    let out = GuestRun::spawn(link.slipway(&["--mtu", mtu]), &["sh", "-c", &script])
        .finish_quiet(BULK_LIMIT, "after 256 MiB each way");
    out.assert_success("download and upload");
    assert_eq!(
        field(&out.stdout, "sha256"),
        Some(data.sha256.as_str()),
        "the guest's hash of the download differs; curl said:\n{}",
        out.stderr
    );
    let upload = uploads
        .recv_timeout(Duration::from_secs(30))
        .expect("the upload server's report");
    assert_eq!(
        upload.len, BULK_LEN,
        "the server got every byte of the upload"
    );
    assert_eq!(upload.sha256, data.sha256, "the server's hash differs");
    assert_eq!(
        out.stdout
            .lines()
            .find(|line| line.parse::<usize>().is_ok()),
        Some(BULK_LEN.to_string().as_str()),
        "the server's answer to the upload:\n{}",
        out.stdout
    );
    for (what, text, key) in [
        ("download", &out.stderr, "download_s"),
        ("upload", &out.stdout, "upload_s"),
    ] {
        let seconds: f64 = field(text, key)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("curl's time of the {what}"));
        eprintln!(
            "e2e-real-peers: {what} 256 MiB over an MSS-1460 link, guest MTU {mtu}: \
             {seconds:.2} s = {:.0} MiB/s",
            mib_per_s(BULK_LEN, seconds)
        );
    }
}

#[test]
fn download_and_upload_256mib_over_an_mtu_1500_link_hash_verified_at_mtu_65520() {
    require!("ip", "curl", "sha256sum");
    bulk_both_ways_at("65520");
}

#[test]
fn download_and_upload_256mib_over_an_mtu_1500_link_hash_verified_at_mtu_1500() {
    require!("ip", "curl", "sha256sum");
    bulk_both_ways_at("1500");
}

/// Python in the guest: an ICMP echo request (raw socket) and a UDP
/// datagram (connected socket with `IP_RECVERR`: Linux reports a host
/// unreachable, not being fatal, only to such sockets) to TARGET, which
/// nobody on the link holds;
/// waits SECONDS at most for the errors and prints what came for each:
/// `icmp_error type=T code=C after=S` for an ICMP error that quotes the
/// echo, `udp_error errno=NAME after=S` for the socket's error, `none`
/// where nothing came. Arguments: TARGET SECONDS.
const GUEST_TO_AN_ABSENT_NEIGHBOUR: &str = "\
import errno, os, select, socket, struct, sys, time
target, limit = sys.argv[1], float(sys.argv[2])
def checksum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff
ident = os.getpid() & 0xffff
echo = struct.pack('!BBHHH', 8, 0, 0, ident, 1) + b'slipway!'
echo = echo[:2] + struct.pack('!H', checksum(echo)) + echo[4:]
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.setsockopt(socket.IPPROTO_IP, getattr(socket, 'IP_RECVERR', 11), 1)
udp.connect((target, 9))
start = time.monotonic()
raw.sendto(echo, (target, 0))
udp.send(b'anyone there?')
icmp = udp_result = None
while (icmp is None or udp_result is None) and time.monotonic() - start < limit:
    left = limit - (time.monotonic() - start)
    ready, _, _ = select.select([s for s, r in ((raw, icmp), (udp, udp_result)) if r is None], [], [], left)
    after = time.monotonic() - start
    if raw in ready:
        data, peer = raw.recvfrom(65536)
        ihl = (data[0] & 15) * 4
        kind, code = data[ihl], data[ihl + 1]
        quote = data[ihl + 8:]
        if kind == 3 and len(quote) >= 28:
            qihl = (quote[0] & 15) * 4
            if quote[qihl] == 8 and struct.unpack('!H', quote[qihl + 4:qihl + 6])[0] == ident:
                icmp = 'icmp_error type=3 code=%d after=%.2f' % (code, after)
        elif kind == 0:
            icmp = 'icmp_error none: an echo reply from %s' % peer[0]
    if udp in ready:
        try:
            udp.recv(100)
            udp_result = 'udp_error none: an answer came'
        except OSError as e:
            udp_result = 'udp_error errno=%s after=%.2f' % (errno.errorcode.get(e.errno, e.errno), after)
print(icmp or 'icmp_error none', flush=True)
print(udp_result or 'udp_error none', flush=True)
";

/// How long the guest waits for the errors of an absent neighbour: the
/// kernel gives up on ARP after three probes a second apart.
const NEIGHBOUR_ERROR_SECONDS: &str = "10";

#[test]
fn ping_and_udp_to_an_absent_neighbour_get_errors_and_leave_slipway_quiet() {
    require!("ip", "python3");
    let link = Link::new("absent");
    let out = GuestRun::spawn(
        link.slipway(&[]),
        &[
            python3(),
            "-c",
            GUEST_TO_AN_ABSENT_NEIGHBOUR,
            ABSENT,
            NEIGHBOUR_ERROR_SECONDS,
        ],
    )
    .finish_quiet(LIMIT, "after the errors of an absent neighbour");
    out.assert_success("the guest's probes");
    let icmp = field(&out.stdout, "icmp_error type").unwrap_or_default();
    assert!(
        icmp.starts_with("3 code="),
        "the guest's echo to {ABSENT} draws an ICMP destination unreachable within \
         {NEIGHBOUR_ERROR_SECONDS} s:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let udp = field(&out.stdout, "udp_error errno").unwrap_or_default();
    assert!(
        udp.starts_with("EHOSTUNREACH ") || udp.starts_with("ENETUNREACH "),
        "the guest's UDP socket to {ABSENT} gets an unreachable error within \
         {NEIGHBOUR_ERROR_SECONDS} s:\n{}\n{}",
        out.stdout,
        out.stderr
    );
}

/// Python in `srv`: accepts one connection and sends 1 MiB in four
/// chunks, with an urgent byte (`MSG_OOB`) between each two, a pause
/// either side of it; then closes its side, waits for the guest's close
/// and prints `sent LEN SHA256` of everything it sent, the urgent bytes in
/// their places. Arguments: ADDR.
const SERVER_URGENT: &str = "\
import hashlib, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 0))
s.listen()
print('ready', s.getsockname()[1], flush=True)
s.settimeout(30)
c, _ = s.accept()
c.settimeout(30)
h, total = hashlib.sha256(), 0
for i in range(4):
    chunk = bytes((j * 31 + i) % 251 for j in range(256 * 1024))
    c.sendall(chunk)
    h.update(chunk)
    total += len(chunk)
    if i < 3:
        time.sleep(0.2)
        urgent = bytes([0x21 + i])
        c.send(urgent, socket.MSG_OOB)
        h.update(urgent)
        total += 1
        time.sleep(0.2)
c.shutdown(socket.SHUT_WR)
c.recv(1)
print('sent', total, h.hexdigest(), flush=True)
";

/// Python in the guest: connects to HOST:PORT, takes urgent data inline,
/// reads to end of stream and prints `got LEN SHA256`. Arguments: HOST
/// PORT.
const GUEST_URGENT_CLIENT: &str = "\
import hashlib, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
s.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
h, total = hashlib.sha256(), 0
while True:
    data = s.recv(65536)
    if not data:
        break
    h.update(data)
    total += len(data)
print('got', total, h.hexdigest(), flush=True)
s.close()
";

#[test]
fn urgent_data_mid_stream_arrives_inline_with_every_byte() {
    require!("ip", "python3");
    let link = Link::new("urgent");
    let (mut server, port) = link.python_server(SERVER_URGENT, &[&SERVER.to_string()]);
    let port = port.to_string();
    let out = GuestRun::spawn(
        link.slipway(&[]),
        &[
            python3(),
            "-c",
            GUEST_URGENT_CLIENT,
            &SERVER.to_string(),
            &port,
        ],
    )
    .finish_quiet(LIMIT, "after the stream with urgent data");
    let sent = server.wait_for_line("sent", LIMIT);
    out.assert_success("the guest's client");
    let got = out
        .stdout
        .lines()
        .find(|line| line.starts_with("got "))
        .unwrap_or_default();
    assert_eq!(
        got.strip_prefix("got "),
        sent.trim().strip_prefix("sent "),
        "every byte the server sent, its three urgent bytes inline, reaches the guest in order"
    );
}

/// slipway's descriptor limit (soft and hard) in the flood test.
const FD_LIMIT: &str = "128";
/// Flows of each protocol the guest opens at once: more than slipway has
/// descriptors.
const FLOOD_FLOWS: &str = "200";

/// Python in the guest, which inherits slipway's descriptor limit: so
/// that it can open more flows than slipway has descriptors, W worker
/// processes share each flood. First N TCP connections to HOST:TCP_PORT at
/// once; each worker waits 20 s at most for each to be established or
/// refused and checks that each established one echoes; the sum is
/// printed as `tcp ok=A refused=B pending=C other={...}`, then `held`
/// while the workers hold them until the file REL1 exists. Once they have
/// closed them, a new connection must echo within 10 s
/// (`tcp_recovered after=S`). Then one UDP socket is answered, N more send
/// a datagram each to HOST:UDP_PORT from the workers, and after 3 s it
/// prints `udp answered=A of N` and `held` until REL2 exists; then the
/// first socket is answered again (`udp_recovered True`) and a new TCP
/// connection still echoes (`tcp_after_udp ok`). Arguments: HOST TCP_PORT
/// UDP_PORT N REL1 REL2.
const GUEST_FLOOD: &str = "\
import errno, os, select, socket, sys, time
host, tport, uport, n, rel1, rel2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
workers = 4
def hold(path):
    for _ in range(600):
        if os.path.exists(path):
            return
        time.sleep(0.1)
    sys.exit('never released')
def echoes(s, data):
    s.settimeout(10)
    s.sendall(data)
    got = b''
    while len(got) < len(data):
        more = s.recv(len(data) - len(got))
        if not more:
            break
        got += more
    return got == data
def tcp_flood(count, report):
    socks = []
    for i in range(count):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, tport))
        socks.append(s)
    poll = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poll.register(fd, select.POLLOUT)
    ok, refused, other = [], 0, 0
    deadline = time.monotonic() + 20
    while by_fd and time.monotonic() < deadline:
        for fd, _ in poll.poll(500):
            s = by_fd.pop(fd)
            poll.unregister(fd)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                ok.append(s)
            elif err in (errno.ECONNREFUSED, errno.ECONNRESET):
                refused += 1
                s.close()
            else:
                other += 1
                s.close()
    broken = 0
    for s in ok:
        s.setblocking(True)
        if not echoes(s, b'flood\\n'):
            broken += 1
    os.write(report, b'%d %d %d %d %d\\n' % (len(ok), refused, len(by_fd), other, broken))
    hold(rel1)
def udp_flood(count, report):
    udps = []
    for i in range(count):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.connect((host, uport))
        u.setblocking(False)
        u.send(b'udp %d' % i)
        udps.append(u)
    answered = set()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        ready, _, _ = select.select([u for u in udps if u not in answered], [], [], 0.2)
        for u in ready:
            try:
                u.recv(100)
                answered.add(u)
            except OSError:
                pass
    os.write(report, b'%d\\n' % len(answered))
def in_workers(job):
    read, write = os.pipe()
    pids = []
    for w in range(workers):
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                job(n // workers, write)
            finally:
                os._exit(0)
        pids.append(pid)
    os.close(write)
    lines = os.fdopen(read)
    return pids, [list(map(int, lines.readline().split() or [0, 0, 0, 0, 0])) for _ in pids]
def reap(pids):
    for pid in pids:
        os.waitpid(pid, 0)
pids, reports = in_workers(tcp_flood)
ok, refused, pending, other, broken = (sum(r[i] for r in reports) for i in range(5))
print('tcp ok=%d refused=%d pending=%d other=%d broken=%d' % (ok, refused, pending, other, broken), flush=True)
print('held', flush=True)
reap(pids)
start = time.monotonic()
while True:
    try:
        s = socket.create_connection((host, tport), timeout=2)
        if echoes(s, b'recovered\\n'):
            s.close()
            break
        s.close()
    except OSError:
        pass
    if time.monotonic() - start > 10:
        sys.exit('no new connection within 10 s of closing the flood')
    time.sleep(0.2)
print('tcp_recovered after=%.2f' % (time.monotonic() - start), flush=True)
first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
first.connect((host, uport))
first.settimeout(3)
first.send(b'first')
if first.recv(100) != b'first':
    sys.exit('no UDP answer before the flood')
pids, reports = in_workers(udp_flood)
reap(pids)
print('udp answered=%d of %d' % (sum(r[0] for r in reports), n // workers * workers), flush=True)
print('held', flush=True)
hold(rel2)
first.send(b'again')
try:
    print('udp_recovered', first.recv(100) == b'again', flush=True)
except OSError as e:
    print('udp_recovered', e, flush=True)
try:
    s = socket.create_connection((host, tport), timeout=5)
    print('tcp_after_udp', 'ok' if echoes(s, b'after udp\\n') else 'broken', flush=True)
except OSError as e:
    print('tcp_after_udp', e, flush=True)
";

/// The sum of the `--stats` counters in `stats` that count a flow slipway
/// refused for want of a descriptor or over a flow limit (a datagram it
/// could not send counts among the UDP drops).
fn refusals(stats: &str) -> u64 {
    ["flow limit drops", "out of descriptors drops", "udp drops"]
        .iter()
        .filter_map(|name| stat(stats, name))
        .sum()
}

/// `slipway run` under an open-files limit of [`FD_LIMIT`] in the middle
/// namespace, its guest running [`GUEST_FLOOD`] against the server's TCP
/// and UDP echo ports, held at the files `rel1` and `rel2`.
fn spawn_flood_guest(
    link: &Link,
    tcp_port: u16,
    udp_port: u16,
    rel1: &str,
    rel2: &str,
) -> GuestRun {
    let limit = format!("--nofile={FD_LIMIT}:{FD_LIMIT}");
    let mut command = link
        .mid
        .exec("prlimit", &[&limit, env!("CARGO_BIN_EXE_slipway")]);
    // At the MTU of the link, so that the held connections' segments are
    // the peer's size and the test measures the descriptors alone.
    command.args(["run", "--mtu", "1500", "--stats", "--"]);
    let (tcp_port, udp_port) = (tcp_port.to_string(), udp_port.to_string());
    GuestRun::spawn(
        command,
        &[
            python3(),
            "-c",
            GUEST_FLOOD,
            &SERVER.to_string(),
            &tcp_port,
            &udp_port,
            FLOOD_FLOWS,
            rel1,
            rel2,
        ],
    )
}

/// The number N of the word `KEY=N` in a line the guest reports.
fn count(text: &str, key: &str) -> u64 {
    text.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key}=N in {text:?}"))
}

#[test]
fn flows_beyond_a_low_fd_limit_are_refused_counted_and_leave_room_for_new_ones() {
    require!("ip", "python3", "prlimit");
    let link = Link::new("nofile");
    let addr = SocketAddrV4::new(SERVER, 0);
    let ((tcp_port, accepted), udp_port) = link.srv.within(|| {
        (
            servers::echo_on(servers::listener_at(addr, 1024)),
            servers::udp_echo_on(UdpSocket::bind(addr).expect("bind udp")),
        )
    });
    let dir = TempDir::new("nofile");
    let (rel1, rel2) = (dir.file("rel1"), dir.file("rel2"));
    let mut guest = spawn_flood_guest(&link, tcp_port, udp_port, &rel1, &rel2);
    let tcp = guest.wait_for_line("tcp ok=", LIMIT);
    eprintln!("e2e-real-peers: {FLOOD_FLOWS} connections, {FD_LIMIT} descriptors: {tcp}");
    guest.wait_for_line("held", LIMIT);
    common::assert_process_quiet(guest.pid(), 1, "holding TCP flows past the fd limit");
    std::fs::write(&rel1, b"").expect("release the guest");
    let udp = guest.wait_for_line("udp answered=", LIMIT);
    eprintln!("e2e-real-peers: {FLOOD_FLOWS} UDP flows, {FD_LIMIT} descriptors: {udp}");
    guest.wait_for_line("held", LIMIT);
    common::assert_process_quiet(guest.pid(), 1, "holding UDP flows past the fd limit");
    std::fs::write(&rel2, b"").expect("release the guest");
    let out = guest.finish_quiet(LIMIT, "after the floods");
    let context = format!("{}\n{}", out.stdout, out.stderr);

    let flows: u64 = FLOOD_FLOWS.parse().unwrap();
    let (ok, refused, pending) = (
        count(&tcp, "ok"),
        count(&tcp, "refused"),
        count(&tcp, "pending"),
    );
    assert!(
        tcp.contains("other=0 broken=0") && pending == 0 && ok + refused == flows,
        "every TCP connection past the limit is refused, none left hanging: {tcp}\n{context}"
    );
    assert!(
        ok > 0 && refused > 0,
        "some connections fit, the rest are refused: {tcp}\n{context}"
    );
    assert!(
        accepted.load(Ordering::Relaxed) as u64 >= ok,
        "the server saw each established connection"
    );
    let answered = count(&udp, "answered");
    assert!(
        answered > 0 && answered < flows,
        "some UDP flows fit, the rest are refused: {udp}\n{context}"
    );
    assert!(
        refusals(&out.stderr) >= refused + (flows - answered),
        "every refused flow is counted ({refused} TCP, {} UDP):\n{context}",
        flows - answered
    );
    for line in ["udp_recovered True", "tcp_after_udp ok"] {
        assert!(
            out.stdout.contains(line),
            "the guest reports {line:?}:\n{context}"
        );
    }
    assert!(out.stdout.contains("tcp_recovered after="), "{context}");
    out.assert_success("the guest's floods");
}
