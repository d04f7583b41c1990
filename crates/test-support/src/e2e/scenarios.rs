//! The namespace scenarios that IPv4 and IPv6 share, each over the
//! [`Family`] it is given: a guest of `slipway run` reaches servers on the
//! host's loopback of that family through the family's gateway address.
//! Each asserts what the guest and the server saw and ends with the
//! quiet-loop check of [`GuestRun`](super::GuestRun); the bulk ones print
//! their throughput as `e2e: ...` lines on stderr, and take a [`Client`]
//! that may also run behind the guest, in a namespace it routes for.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use super::data::{BULK_LEN, bulk};
use super::{
    CURL_GLOBOFF, Family, GUEST_UDP_ECHO_CLIENT, MANY_CONNECTIONS_PY, Output, Proc, TempDir,
    command, field, free_tcp_port, http_url, mib_per_s, python_in_guest, run_in_guest,
    run_then_quiet, servers, slipway_run, tcp_listening, wait_until,
};

/// The bound on a short command in the guest.
pub const LIMIT: Duration = Duration::from_secs(20);
/// The bound on a bulk transfer (curl's own `--max-time` is shorter, so
/// that a slow transfer fails with curl's account of it).
pub const BULK_LIMIT: Duration = Duration::from_secs(60);
/// How long a server may take to start listening.
pub const READY: Duration = Duration::from_secs(10);

/// Connects to `addr`, retrying for [`READY`] while a server (or a
/// forward's listener) comes up; sets read and write timeouts of
/// [`LIMIT`].
///
/// # Panics
/// No connection within [`READY`].
pub fn connect_bounded(addr: impl Into<SocketAddr>) -> TcpStream {
    let addr = addr.into();
    let deadline = Instant::now() + READY;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(stream) => {
                stream.set_read_timeout(Some(LIMIT)).expect("timeout");
                stream.set_write_timeout(Some(LIMIT)).expect("timeout");
                return stream;
            }
            Err(e) => assert!(Instant::now() < deadline, "connect to {addr}: {e}"),
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Where the client of a bulk transfer runs, and the family it reaches
/// host loopback over, through that family's gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// In the guest's own namespace: the guest's kernel delivers each
    /// segment to its socket.
    Guest(Family),
    /// Over IPv6 from a namespace behind the guest's (its address
    /// fd00:0:0:2::99, on a veth pair): the guest's kernel forwards each
    /// segment, and cuts the ones larger than the MTU itself by the GSO
    /// type and checksum start their vnet headers give, as a host of
    /// containers does, so a wrong one loses data that local delivery
    /// would take. IPv6 alone: the plan's /64 has room for the inner
    /// address, which the guest answers neighbour discovery for.
    Routed,
}

impl From<Family> for Client {
    fn from(family: Family) -> Self {
        Self::Guest(family)
    }
}

/// The guest's part of [`Client::Routed`]: makes the namespace behind it
/// (held by a `sleep` of at most 60 s, which it ends), routes and proxies
/// neighbour discovery for its address, and runs the client there, whose
/// exit status it returns.
const ROUTED: &str = r#"set -e
echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
echo 1 > /proc/sys/net/ipv6/conf/eth0/proxy_ndp
unshare -n sleep 60 &
inner=$!
i=0
while [ "$(readlink /proc/$inner/ns/net)" = "$(readlink /proc/self/ns/net)" ] && [ $i -lt 100 ]; do
    sleep 0.05; i=$((i + 1))
done
mtu=$(cat /sys/class/net/eth0/mtu)
ip link add veth0 mtu "$mtu" type veth peer name veth1 mtu "$mtu"
ip link set veth1 netns $inner
ip link set veth0 up
ip -6 addr add fe80::a/64 dev veth0 nodad
ip -6 route add fd00:0:0:2::99/128 dev veth0
ip -6 neigh add proxy fd00:0:0:2::99 dev eth0
set +e
nsenter -t $inner -n sh <<'CLIENT'
ip link set lo up
ip link set veth1 up
ip -6 addr add fd00:0:0:2::99/128 dev veth1 nodad
ip -6 route add default via fe80::a dev veth1
CLIENT_SCRIPT
CLIENT
status=$?
kill $inner
exit $status
"#;

impl Client {
    /// The family the client reaches host loopback over.
    #[must_use]
    pub fn family(self) -> Family {
        match self {
            Self::Guest(family) => family,
            Self::Routed => Family::V6,
        }
    }

    /// How the throughput lines name the way.
    fn name(self) -> &'static str {
        match self {
            Self::Guest(family) => family.name(),
            Self::Routed => "IPv6 through a routing guest",
        }
    }

    /// The guest's script that runs `client` where this client runs.
    fn script(self, client: &str) -> String {
        match self {
            Self::Guest(_) => client.to_owned(),
            Self::Routed => ROUTED.replace("CLIENT_SCRIPT", client),
        }
    }
}

/// Runs `script` where `client` runs, in a guest of `slipway run OPTIONS
/// --stats`, and checks it succeeded.
fn run_bulk(client: Client, options: &[&str], script: &str, what: &str) -> Output {
    let mut options = options.to_vec();
    options.push("--stats");
    let out = run_in_guest(&options, &client.script(script), BULK_LIMIT);
    out.assert_success(what);
    out
}

/// Downloads 256 MiB to `client` (a [`Family`] for the guest itself) in a
/// guest of `slipway run OPTIONS` from a server on host loopback, checks
/// the client's hash, and returns slipway's `--stats` output (with curl's).
/// `what` names the options in the throughput line.
pub fn http_download_256mib(client: impl Into<Client>, options: &[&str], what: &str) -> String {
    let client = client.into();
    let family = client.family();
    let data = bulk();
    let port = servers::http_body_on(servers::loopback_listener(family, 128), &data.bytes);
    let url = http_url(family.gateway(), port, "");
    let script = format!(
        "curl {CURL_GLOBOFF} {} -sS --max-time 50 \
         -w '%{{stderr}}time_total=%{{time_total}}\\n' {url} | sha256sum",
        family.flag()
    );
    let out = run_bulk(client, options, &script, "download");
    assert_eq!(
        out.stdout.split_whitespace().next(),
        Some(data.sha256.as_str()),
        "the guest's hash differs; curl said:\n{}",
        out.stderr
    );
    let seconds = curl_seconds(&out.stderr);
    eprintln!(
        "e2e: download 256 MiB over {}{what} in {seconds:.2} s = {:.0} MiB/s",
        client.name(),
        mib_per_s(BULK_LEN, seconds)
    );
    out.stderr
}

/// Uploads 256 MiB from `client` (a [`Family`] for the guest itself) in a
/// guest of `slipway run OPTIONS` to a server on host loopback, checks the
/// server's hash and that no frame was dropped for a checksum, and returns
/// slipway's `--stats` output.
pub fn http_upload_256mib(client: impl Into<Client>, options: &[&str], what: &str) -> String {
    let client = client.into();
    let family = client.family();
    let data = bulk();
    let dir = TempDir::new(&format!("upload-{}", family.name()));
    let file = dir.file("bulk.bin");
    std::fs::write(&file, &data.bytes).expect("write the upload file");
    let (port, uploads) = servers::http_upload_sink_on(servers::loopback_listener(family, 128));
    let url = http_url(family.gateway(), port, "upload");
    // No `Expect: 100-continue`: the body follows the head at once.
    let script = format!(
        "curl {CURL_GLOBOFF} {} -sS --max-time 50 -H 'Expect:' -T {file} \
         -w 'time_total=%{{time_total}}\\n' {url}",
        family.flag()
    );
    let out = run_bulk(client, options, &script, "upload");
    assert_eq!(
        super::stat(&out.stderr, "dropped: bad_checksum"),
        None,
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stdout.lines().next(),
        Some(BULK_LEN.to_string().as_str())
    );
    let upload = uploads
        .recv_timeout(Duration::from_secs(30))
        .expect("the server's report");
    assert_eq!(upload.len, BULK_LEN);
    assert_eq!(upload.sha256, data.sha256, "the server's hash differs");
    let seconds = curl_seconds(&out.stdout);
    eprintln!(
        "e2e: upload 256 MiB over {}{what} in {seconds:.2} s = {:.0} MiB/s (server received for {:.2} s)",
        client.name(),
        mib_per_s(BULK_LEN, seconds),
        upload.elapsed.as_secs_f64()
    );
    out.stderr
}

/// The `time_total=SECONDS` that curl's `-w` wrote into `text`.
fn curl_seconds(text: &str) -> f64 {
    field(text, "time_total")
        .and_then(|s| s.parse().ok())
        .expect("curl's time_total")
}

/// Runs a 5-second iperf3 test over `family` from the guest to a one-off
/// server on host loopback (from the server to the guest with `reverse`);
/// returns the receiver's bits per second.
pub fn iperf3_from_guest(family: Family, reverse: bool) -> f64 {
    let port = free_tcp_port();
    let (port_arg, bind) = (port.to_string(), family.loopback().to_string());
    let server = Proc::spawn(&mut command(
        "iperf3",
        &["-s", "-B", &bind, "-p", &port_arg, "-1"],
    ));
    wait_until("iperf3 server listening", READY, || {
        tcp_listening(family.loopback(), port)
    });
    let gateway = family.gateway().to_string();
    let mut args = vec![
        "iperf3",
        family.flag(),
        "-c",
        &gateway,
        "-p",
        &port_arg,
        "-t",
        "5",
        "-J",
    ];
    if reverse {
        args.push("-R");
    }
    let out = run_then_quiet(slipway_run(&[]), &args, LIMIT, "after iperf3");
    out.assert_success("iperf3 client");
    let report: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3 -J output: {e}\n{}", out.stdout));
    assert!(report.get("error").is_none(), "iperf3: {}", report["error"]);
    let server = server.finish(LIMIT);
    server.assert_success("iperf3 server");
    let bits = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("end.sum_received.bits_per_second");
    assert!(bits > 0.0, "no bytes received: {}", report["end"]);
    bits
}

/// iperf3 over `family` for 5 s each way, both throughputs reported.
pub fn iperf3_each_direction(family: Family) {
    let up = iperf3_from_guest(family, false);
    eprintln!(
        "e2e: iperf3 over {} guest->host {:.2} Gbit/s",
        family.name(),
        up / 1e9
    );
    let down = iperf3_from_guest(family, true);
    eprintln!(
        "e2e: iperf3 over {} host->guest {:.2} Gbit/s",
        family.name(),
        down / 1e9
    );
}

/// Opens `count` connections at once over `family` from the guest to a
/// server on host loopback, sends `size` bytes of its own on each and
/// checks that every one gets the SHA-256 of what it sent.
pub fn concurrent_connections(family: Family, count: usize, size: usize) {
    let (port, answered) = servers::hash_server_on(servers::loopback_listener(family, 1024), size);
    let gateway = family.gateway().to_string();
    let (port, count_arg, size_arg) = (port.to_string(), count.to_string(), size.to_string());
    let started = Instant::now();
    let out = python_in_guest(
        &[],
        MANY_CONNECTIONS_PY,
        &[&gateway, &port, &count_arg, &size_arg],
        BULK_LIMIT,
    );
    let wall = started.elapsed();
    out.assert_success(&format!("{count} connections"));
    assert_eq!(answered.load(Ordering::Relaxed), count);
    let elapsed = field(&out.stdout, "elapsed").expect("the client's elapsed time");
    eprintln!(
        "e2e: {count} concurrent {} connections x {} KiB in {elapsed} s ({:.2} s with slipway run)",
        family.name(),
        size >> 10,
        wall.as_secs_f64()
    );
}

/// Sends a datagram of each of `sizes` over `family` from the guest to a
/// UDP echo server on host loopback and checks each comes back intact.
pub fn udp_echo_sizes(family: Family, sizes: &[&str]) {
    let port = servers::udp_echo_at(family).to_string();
    let gateway = family.gateway().to_string();
    let mut args = vec![gateway.as_str(), port.as_str()];
    args.extend_from_slice(sizes);
    let out = python_in_guest(&[], GUEST_UDP_ECHO_CLIENT, &args, LIMIT);
    out.assert_success("udp client");
    let expected: String = sizes.iter().map(|size| format!("echo {size}\n")).collect();
    assert_eq!(out.stdout, expected);
}

/// Pings each of `targets` three times from the guest (busybox ping, which
/// takes either family) and checks every request is answered.
pub fn ping_answered(targets: &[&str]) {
    let script: Vec<String> = targets
        .iter()
        .map(|target| format!("busybox ping -c 3 -W 2 {target}"))
        .collect();
    let out = run_in_guest(&[], &script.join(" && "), LIMIT);
    out.assert_success("ping");
    let answered = out
        .stdout
        .matches("3 packets transmitted, 3 packets received")
        .count();
    assert_eq!(answered, targets.len(), "{}", out.stdout);
}

/// curl's "Failed to connect to host": refused or unreachable, not timed
/// out.
pub const CURL_COULDNT_CONNECT: i32 = 7;

/// A guest script that fetches `url` with curl and prints curl's exit
/// status as `rc=N` and the time it took as `ms=N`.
pub fn timed_fetch(url: &str) -> String {
    format!(
        "s=$(date +%s%N); curl {CURL_GLOBOFF} -sS --max-time 5 {url}; rc=$?; \
         e=$(date +%s%N); echo; echo rc=$rc; echo ms=$(( (e - s) / 1000000 ))"
    )
}

/// curl's exit status and milliseconds from [`timed_fetch`]'s output.
pub fn fetch_result(out: &Output) -> (i32, u64) {
    out.assert_success("timed fetch");
    let rc = field(&out.stdout, "rc").and_then(|s| s.parse().ok());
    let ms = field(&out.stdout, "ms").and_then(|s| s.parse().ok());
    match (rc, ms) {
        (Some(rc), Some(ms)) => (rc, ms),
        _ => panic!("no rc= or ms= in:\n{}\n{}", out.stdout, out.stderr),
    }
}

/// A guest of `slipway run --deny CIDR` fetches from a server on host
/// loopback behind `family`'s gateway, which `cidr` covers: the connection
/// is refused within a second and the server sees none.
pub fn denied_cidr_fails_within_a_second(family: Family, cidr: &str) {
    let (port, accepted) = servers::counting_listener_on(servers::loopback_listener(family, 128));
    let url = http_url(family.gateway(), port, "");
    let out = run_in_guest(&["--deny", cidr], &timed_fetch(&url), LIMIT);
    let (rc, ms) = fetch_result(&out);
    assert_eq!(rc, CURL_COULDNT_CONNECT, "{}\n{}", out.stdout, out.stderr);
    assert!(ms < 1000, "denial took {ms} ms");
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        0,
        "the server was reached"
    );
    eprintln!(
        "e2e: denied {} destination failed in {ms} ms (curl exit {rc})",
        family.name()
    );
}
