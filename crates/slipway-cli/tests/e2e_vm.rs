//! End to end with a real guest kernel under QEMU: a Debian kernel and a
//! busybox initramfs (`cargo xtask guest-image`) whose virtio-net device
//! is served by `slipway stream` over QEMU's `-netdev stream` socket, and
//! once more by `slipway vhost-user` over `-netdev vhost-user` (the guest's
//! memory a shared memfd), with the same checks.
//!
//! One boot runs every check (the lease DHCP gave, an inbound forward with
//! half-close, ping, DNS, HTTP download and upload of 64 MiB checked by
//! hash, half-close from the guest, iperf3 each way, then IPv6: the SLAAC
//! address and default route from slipway's advertisements, the DHCPv6
//! address dhcpcd leases, and the download over IPv6 from ::1) so that the
//! suite stays short under TCG. The same checks run once more over QEMU's
//! own libslirp, the reference slipway is measured against, minus DNS
//! (libslirp forwards it to the host's real resolver, which no test may
//! reach) and IPv6 (libslirp has a plan of its own and no DHCPv6 leases).
//!
//! Needs qemu-system-x86_64 and the image's Debian packages; each test says
//! on stderr why it skips otherwise. Traffic goes only to 127.0.0.1, ::1
//! and the guests made here. QEMU, slipway and the servers run under guards;
//! every wait is bounded. Throughput appears as `e2e-vm: ...` lines on
//! stderr (see them with `--no-capture`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::common;
use test_support::e2e;
use test_support::require_vm;
use test_support::vm;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

use e2e::data::{Sha256, Stream, hex};
use e2e::servers::{self, Upload};
use e2e::{Family, Proc, TempDir, command, free_tcp_port, mib_per_s, tcp_listening, wait_until};
use vm::{Checks, Frontend, Guest, Nic, Report, SlipwaySocket, libslirp_netdev};

/// The size of the HTTP transfers.
const BULK_LEN: usize = 64 << 20;
/// The size of the half-close transfers.
const HALF_LEN: usize = 1 << 20;
/// The length of each iperf3 run.
const IPERF_SECONDS: u32 = 3;
/// The bound on one boot, every check included.
const RUN_LIMIT: Duration = Duration::from_secs(150);
/// How long the guest may take to boot and start its server.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// The bound on a short step on the host.
const LIMIT: Duration = Duration::from_secs(20);
/// The guest's port behind the inbound forward.
const GUEST_PORT: u16 = 8080;

/// 64 MiB of test data and its SHA-256, once per test binary.
fn bulk() -> &'static (Vec<u8>, String) {
    static BULK: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    BULK.get_or_init(|| {
        let mut bytes = vec![0; BULK_LEN];
        Stream::new(64).fill(&mut bytes);
        let sha256 = hex(&Sha256::digest(&bytes));
        (bytes, sha256)
    })
}

/// Which user-mode network the guest's virtio-net device is wired to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Network {
    /// slipway, through one of its QEMU frontends.
    Slipway(Frontend),
    /// QEMU's `-netdev user`.
    Libslirp,
}

impl Network {
    fn name(self) -> &'static str {
        match self {
            Network::Slipway(Frontend::Stream) => "slipway",
            Network::Slipway(Frontend::VhostUser) => "slipway-vhost-user",
            Network::Libslirp => "libslirp",
        }
    }

    fn is_slipway(self) -> bool {
        matches!(self, Network::Slipway(_))
    }

    /// The MTU its DHCP server announces.
    fn mtu(self) -> &'static str {
        match self {
            Network::Slipway(_) => "65520",
            Network::Libslirp => "1500",
        }
    }
}

/// A one-shot iperf3 server on 127.0.0.1.
struct IperfServer {
    proc: Proc,
    port: u16,
}

impl IperfServer {
    fn start() -> Self {
        let port = free_tcp_port();
        let port_arg = port.to_string();
        let proc = Proc::spawn(&mut command(
            "iperf3",
            &["-s", "-B", "127.0.0.1", "-p", &port_arg, "-1"],
        ));
        wait_until("iperf3 server listening", LIMIT, || {
            tcp_listening(Ipv4Addr::LOCALHOST, port)
        });
        Self { proc, port }
    }
}

/// The receiver's bits per second in an iperf3 client's JSON report (the
/// client has it in either direction), or why there is none.
fn iperf_bits_per_second(json: &str) -> Result<f64, String> {
    let report: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("iperf3 client JSON: {e}\n{json}"))?;
    if let Some(error) = report.get("error") {
        return Err(format!("iperf3 client: {error}"));
    }
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .filter(|bits| *bits > 0.0)
        .ok_or_else(|| format!("iperf3: no bytes received: {}", report["end"]))
}

/// The host's side of one run: servers on 127.0.0.1, and the IPv6
/// download's on ::1.
struct HostServers {
    download: u16,
    download6: u16,
    upload: u16,
    uploads: Receiver<Upload>,
    reply_after_eof: u16,
    iperf_up: IperfServer,
    iperf_down: IperfServer,
}

impl HostServers {
    fn start() -> Self {
        let download = servers::http_body(&bulk().0);
        let download6 =
            servers::http_body_on(servers::loopback_listener(Family::V6, 128), &bulk().0);
        let (upload, uploads) = servers::http_upload_sink();
        Self {
            download,
            download6,
            upload,
            uploads,
            reply_after_eof: servers::reply_after_eof(),
            iperf_up: IperfServer::start(),
            iperf_down: IperfServer::start(),
        }
    }

    /// The guest script: the ports, then `vm/lease.sh` and `vm/checks.sh`.
    fn script(&self, network: Network) -> String {
        let slipway = u8::from(network.is_slipway());
        format!(
            "DOWNLOAD_PORT={}\nUPLOAD_PORT={}\nEOF_PORT={}\nIPERF_UP_PORT={}\n\
             IPERF_DOWN_PORT={}\nHALF_LEN={HALF_LEN}\nIPERF_SECONDS={IPERF_SECONDS}\n\
             CHECK_DNS={slipway}\nCHECK_IPV6={slipway}\nDOWNLOAD6_PORT={}\n\
             IDLE_SECONDS={}\n{}{}",
            self.download,
            self.upload,
            self.reply_after_eof,
            self.iperf_up.port,
            self.iperf_down.port,
            self.download6,
            if network.is_slipway() {
                vm::IDLE_SECONDS
            } else {
                0
            },
            vm::LEASE_SH,
            vm::CHECKS_SH
        )
    }
}

/// What the guest's server behind the forward answers for `data`.
fn expected_inbound_reply(data: &[u8]) -> String {
    format!("{}  -\n", hex(&Sha256::digest(data)))
}

/// Sends `data` through the forward on 127.0.0.1:`port`, shuts down the
/// sending side, and returns everything the guest answers until it closes.
fn half_close_through_forward(port: u16, data: &[u8]) -> Result<String, String> {
    let deadline = Instant::now() + LIMIT;
    let mut stream = loop {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Ok(stream) => break stream,
            Err(e) if Instant::now() >= deadline => return Err(format!("connect: {e}")),
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    };
    let io = |e: std::io::Error| format!("forward: {e}");
    stream.set_read_timeout(Some(LIMIT)).map_err(io)?;
    stream.set_write_timeout(Some(LIMIT)).map_err(io)?;
    stream.write_all(data).map_err(io)?;
    stream.shutdown(Shutdown::Write).map_err(io)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).map_err(io)?;
    Ok(reply)
}

/// Boots the guest on `network`, runs every check, and panics listing all
/// that failed.
fn run_checks(network: Network) {
    let name = network.name();
    let (data, sha256) = bulk();
    let dir = TempDir::new(&format!("vm-{name}"));
    let servers = HostServers::start();
    let forward_port = free_tcp_port();
    let (dns_port, dns_queries) = servers::dns_responder();

    let slipway = match network {
        Network::Slipway(frontend) => {
            let forward = format!("127.0.0.1/{forward_port}:{GUEST_PORT}");
            let upstream = format!("127.0.0.1:{dns_port}");
            let socket = dir.path().join("slipway.sock");
            Some(SlipwaySocket::start(
                frontend,
                &socket,
                &["-t", &forward, "--dns-upstream", &upstream, "--stats"],
            ))
        }
        Network::Libslirp => None,
    };
    let nic = match &slipway {
        Some(slipway) => slipway.nic(),
        None => Nic::netdev(libslirp_netdev(&[format!(
            "tcp:127.0.0.1:{forward_port}-:{GUEST_PORT}"
        )])),
    };
    let mut guest = Guest::boot(&nic, &servers.script(network), &dir);

    let mut checks = Checks::default();
    guest.wait_for("SLIPWAY-READY inbound", READY_LIMIT);
    let half = &data[..HALF_LEN];
    match half_close_through_forward(forward_port, half) {
        Ok(reply) => checks.equal(
            "inbound forward reply",
            &reply,
            &expected_inbound_reply(half),
        ),
        Err(e) => checks.check(false, || format!("inbound forward: {e}")),
    }
    if let Some(slipway) = &slipway {
        slipway.check_quiet(&mut guest, RUN_LIMIT, &mut checks);
    }
    let report = guest.finish(RUN_LIMIT);
    let slipway_log = slipway.map_or_else(String::new, |slipway| {
        let out = slipway.finish(LIMIT);
        checks.check(out.status.success(), || {
            format!("slipway exited with {:?}", out.status)
        });
        format!("slipway stderr:\n{}", out.stderr)
    });

    judge(network, &report, &mut checks);
    if network.is_slipway() {
        checks.dns_answer(&report, dns_queries.load(Ordering::Relaxed));
        checks.ipv6(&report, sha256);
    }
    checks.equal("download SHA-256", report.get("download_sha256"), sha256);
    check_upload(name, &servers.uploads, &report, sha256, &mut checks);
    report.print_download(&format!("e2e-vm: {name}"), BULK_LEN);
    for (server, run, direction) in [
        (servers.iperf_up, "up", "guest->host"),
        (servers.iperf_down, "down", "host->guest"),
    ] {
        check_iperf(name, server, run, direction, &report, &mut checks);
    }
    report.print_boot(&format!("e2e-vm: {name}"));
    checks.assert_all(&format!("{}\n{slipway_log}", report.log()));
}

/// Checks what the upload server received against the bulk data, and
/// prints the upload's rate.
fn check_upload(
    name: &str,
    uploads: &Receiver<Upload>,
    report: &Report,
    sha256: &str,
    checks: &mut Checks,
) {
    match uploads.recv_timeout(LIMIT) {
        Ok(upload) => {
            checks.equal(
                "upload length",
                &upload.len.to_string(),
                &BULK_LEN.to_string(),
            );
            checks.equal("upload SHA-256 at the server", &upload.sha256, sha256);
            if let Some(seconds) = report.seconds("upload_seconds") {
                eprintln!(
                    "e2e-vm: {name}: upload {} MiB in {seconds:.2} s = {:.0} MiB/s (server received for {:.2} s)",
                    BULK_LEN >> 20,
                    mib_per_s(BULK_LEN, seconds),
                    upload.elapsed.as_secs_f64()
                );
            }
        }
        Err(_) => checks.check(false, || "the upload server got no request".to_owned()),
    }
}

/// Checks one iperf3 run (`run` is `up` or `down`): the guest's client
/// status, its rate, and the host server's exit.
fn check_iperf(
    name: &str,
    server: IperfServer,
    run: &str,
    direction: &str,
    report: &Report,
    checks: &mut Checks,
) {
    let status = report.get(&format!("iperf_{run}_status")).to_owned();
    checks.equal(&format!("iperf3 {direction} client"), &status, "0");
    match iperf_bits_per_second(report.block(&format!("iperf_{run}"))) {
        Ok(bits) => eprintln!(
            "e2e-vm: {name}: iperf3 {direction} {:.2} Gbit/s",
            bits / 1e9
        ),
        Err(e) => checks.check(false, || e),
    }
    let out = server.proc.finish(LIMIT);
    checks.check(out.status.success(), || {
        format!(
            "iperf3 server ({direction}): {:?}\n{}",
            out.status, out.stderr
        )
    });
}

/// The checks whose expected values depend only on the network's plan.
fn judge(network: Network, report: &Report, checks: &mut Checks) {
    checks.exit_and_lease(report, network.mtu());
    checks.equal("guest's server status", report.get("inbound_status"), "0");
    checks.equal(
        "ping replies from the gateway",
        report.get("ping_received"),
        "3",
    );
    checks.equal(
        "upload reply",
        report.get("upload_reply"),
        &BULK_LEN.to_string(),
    );
    let half = &bulk().0[..HALF_LEN];
    checks.equal(
        "half-close reply",
        report.get("halfclose_reply"),
        &format!("got {HALF_LEN} bytes sha256 {}", hex(&Sha256::digest(half))),
    );
}

#[test]
fn guest_kernel_through_slipway_stream_passes_every_check() {
    require_vm!("iperf3");
    if let Some(why) = vm::command_unsupported("stream") {
        common::skip(&why);
        return;
    }
    run_checks(Network::Slipway(Frontend::Stream));
}

#[test]
fn guest_kernel_through_slipway_vhost_user_passes_every_check() {
    require_vm!("iperf3");
    if let Some(why) = vm::command_unsupported("vhost-user") {
        common::skip(&why);
        return;
    }
    run_checks(Network::Slipway(Frontend::VhostUser));
}

#[test]
fn guest_kernel_through_qemu_libslirp_passes_the_same_checks() {
    require_vm!("iperf3");
    run_checks(Network::Libslirp);
}
