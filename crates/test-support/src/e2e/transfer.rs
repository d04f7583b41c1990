//! The hashed bulk transfers of the namespace tests, over either IP
//! version: 256 MiB downloaded by curl in the guest of `slipway run` from a
//! server on host loopback, and uploaded to one, each checked by SHA-256
//! at the receiving end; over IPv6 also from a namespace behind the guest's,
//! which the guest's kernel routes for.

use std::net::{Ipv6Addr, TcpListener};
use std::time::Duration;

use super::data::{BULK_LEN, bulk};
use super::{Output, TempDir, field, mib_per_s, run_in_guest, servers};

/// The bound on a bulk transfer (curl's own `--max-time` is shorter, so
/// that a slow transfer fails with curl's account of it).
const BULK_LIMIT: Duration = Duration::from_secs(60);

/// The IP version a guest reaches host loopback over, through the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// 10.0.2.2 to 127.0.0.1.
    Ipv4,
    /// fd00:0:0:2::2 to ::1.
    Ipv6,
    /// fd00:0:0:2::2 to ::1 from a namespace behind the guest's (its
    /// address fd00:0:0:2::99, on a veth pair): the guest's kernel forwards
    /// each segment, and cuts the ones larger than the MTU itself, as a
    /// host of containers does.
    Ipv6Routed,
}

/// The guest's part of [`Via::Ipv6Routed`]: makes the namespace behind it
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

impl Via {
    /// The gateway as a URL names it.
    #[must_use]
    pub fn url_host(self) -> &'static str {
        match self {
            Self::Ipv4 => "10.0.2.2",
            Self::Ipv6 | Self::Ipv6Routed => "[fd00:0:0:2::2]",
        }
    }

    /// A listener on host loopback of this version, ephemeral port.
    ///
    /// # Panics
    /// The address cannot be bound.
    #[must_use]
    pub fn listener(self) -> TcpListener {
        match self {
            Self::Ipv4 => servers::listener(128),
            Self::Ipv6 | Self::Ipv6Routed => {
                TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).expect("bind [::1]:0")
            }
        }
    }

    /// curl's option that keeps it to this version.
    fn curl_flag(self) -> &'static str {
        match self {
            Self::Ipv4 => "-4",
            Self::Ipv6 | Self::Ipv6Routed => "-6",
        }
    }

    /// How the throughput lines name the version.
    fn name(self) -> &'static str {
        match self {
            Self::Ipv4 => "",
            Self::Ipv6 => " over IPv6",
            Self::Ipv6Routed => " over IPv6 through a routing guest",
        }
    }

    /// The guest's script that runs `client` where this way starts.
    fn script(self, client: &str) -> String {
        match self {
            Self::Ipv4 | Self::Ipv6 => client.to_owned(),
            Self::Ipv6Routed => ROUTED.replace("CLIENT_SCRIPT", client),
        }
    }
}

/// Runs `script` in a guest of `slipway run OPTIONS --stats` and checks it
/// succeeded.
fn run_with_stats(options: &[&str], script: &str, what: &str) -> Output {
    let mut options = options.to_vec();
    options.push("--stats");
    let out = run_in_guest(&options, script, BULK_LIMIT);
    out.assert_success(what);
    out
}

/// Downloads 256 MiB into a guest of `slipway run OPTIONS` from a server on
/// host loopback reached `via` the gateway, checks the guest's hash, and
/// returns slipway's `--stats` output (with curl's). `what` names the
/// options in the throughput line.
///
/// # Panics
/// The download fails or its hash differs.
#[must_use]
pub fn http_download_256mib(via: Via, options: &[&str], what: &str) -> String {
    let data = bulk();
    let port = servers::http_body_on(via.listener(), &data.bytes);
    let script = format!(
        "curl {} -sS --max-time 50 -w '%{{stderr}}time_total=%{{time_total}}\\n' \
         http://{}:{port}/ | sha256sum",
        via.curl_flag(),
        via.url_host()
    );
    let out = run_with_stats(options, &via.script(&script), "download");
    assert_eq!(
        out.stdout.split_whitespace().next(),
        Some(data.sha256.as_str()),
        "the guest's hash differs; curl said:\n{}",
        out.stderr
    );
    let seconds: f64 = field(&out.stderr, "time_total")
        .and_then(|s| s.parse().ok())
        .expect("curl's time_total");
    eprintln!(
        "e2e: download 256 MiB{}{what} in {seconds:.2} s = {:.0} MiB/s",
        via.name(),
        mib_per_s(BULK_LEN, seconds)
    );
    out.stderr
}

/// Uploads 256 MiB from a guest of `slipway run OPTIONS` to a server on
/// host loopback reached `via` the gateway, checks the server's hash and
/// that no frame was dropped for a checksum, and returns slipway's
/// `--stats` output.
///
/// # Panics
/// The upload fails, a frame was dropped for its checksum, or the server's
/// hash differs.
#[must_use]
pub fn http_upload_256mib(via: Via, options: &[&str], what: &str) -> String {
    let data = bulk();
    let dir = TempDir::new("upload");
    let file = dir.file("bulk.bin");
    std::fs::write(&file, &data.bytes).expect("write the upload file");
    let (port, uploads) = servers::http_upload_sink_on(via.listener());
    // No `Expect: 100-continue`: the body follows the head at once.
    let script = format!(
        "curl {} -sS --max-time 50 -H 'Expect:' -T {file} -w 'time_total=%{{time_total}}\\n' \
         http://{}:{port}/upload",
        via.curl_flag(),
        via.url_host()
    );
    let out = run_with_stats(options, &via.script(&script), "upload");
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
    let seconds: f64 = field(&out.stdout, "time_total")
        .and_then(|s| s.parse().ok())
        .expect("curl's time_total");
    eprintln!(
        "e2e: upload 256 MiB{}{what} in {seconds:.2} s = {:.0} MiB/s (server received for {:.2} s)",
        via.name(),
        mib_per_s(BULK_LEN, seconds),
        upload.elapsed.as_secs_f64()
    );
    out.stderr
}
