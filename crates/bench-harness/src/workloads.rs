//! The workloads and how each is measured on a running guest: iperf3 for
//! throughput (with the stack's CPU time around it), the harness's own
//! clients for round trips, DNS and forwards, and `/proc` for the stack's
//! wakeups and memory while idle.
//!
//! Invariant: a [`Session`] owns every process it starts (host servers,
//! guest server, clients) and every one of them is bounded in time; a
//! workload that fails leaves nothing running.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::paths::{Guest, Host, HostSide, Path};
use crate::report::{Metric, metric};
use crate::sys::{self, Child, ProcSample, Transport};
use crate::tools::{ClientWorkload, ports};

/// How long the servers may take to bind.
const READY: Duration = Duration::from_secs(10);
/// Slack on top of a workload's duration before its client is killed.
const SLACK: Duration = Duration::from_secs(30);
/// How long a stack is left alone before an idle measurement.
const SETTLE: Duration = Duration::from_secs(1);
/// How long the guest may take to reach the host side (the probe gives
/// up after its own 20 s).
const PROBE_LIMIT: Duration = Duration::from_secs(30);
/// How long servers live at most (the session kills them sooner).
const SERVER_LIFETIME: &str = "7200";

/// The IP version a workload's traffic uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4: the guest reaches the host side at the path's IPv4 gateway.
    V4,
    /// IPv6: the guest reaches the host side at the path's IPv6 gateway.
    V6,
}

/// A workload, in the order a session runs them: idle first (before any
/// flow has existed), the flows that hold 10k connections last. The TCP
/// workloads run over either family, the IPv6 one right after its IPv4
/// twin so that both see the same stack and the same load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// The stack's wakeups and memory with no flows.
    Idle,
    /// iperf3 from guest to host.
    TcpG2h(Family),
    /// iperf3 from host to guest (`-R`).
    TcpH2g(Family),
    /// 1-byte request-response on one TCP connection.
    TcpRr(Family),
    /// Connect, 1-byte request-response, close.
    TcpCrr(Family),
    /// 1-byte request-response over UDP.
    UdpRr,
    /// DNS queries per second through the DNS address.
    Dns,
    /// ICMP echo round trip to the gateway.
    Icmp,
    /// Inbound: connect through the port forward and get a 1-byte echo
    /// from the guest.
    FwdConnect,
    /// The stack's wakeups and memory while the guest holds many idle
    /// TCP connections.
    Idle10k,
}

impl Workload {
    /// Every workload, in running order.
    pub const ALL: [Workload; 14] = [
        Workload::Idle,
        Workload::TcpG2h(Family::V4),
        Workload::TcpG2h(Family::V6),
        Workload::TcpH2g(Family::V4),
        Workload::TcpH2g(Family::V6),
        Workload::TcpRr(Family::V4),
        Workload::TcpRr(Family::V6),
        Workload::TcpCrr(Family::V4),
        Workload::TcpCrr(Family::V6),
        Workload::UdpRr,
        Workload::Dns,
        Workload::Icmp,
        Workload::FwdConnect,
        Workload::Idle10k,
    ];

    /// The name in reports and on the command line: the IPv6 variant of
    /// a TCP workload is its IPv4 name with a `6` (`tcp_rr6`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Workload::Idle => "idle",
            Workload::TcpG2h(Family::V4) => "tcp_g2h",
            Workload::TcpG2h(Family::V6) => "tcp_g2h6",
            Workload::TcpH2g(Family::V4) => "tcp_h2g",
            Workload::TcpH2g(Family::V6) => "tcp_h2g6",
            Workload::TcpRr(Family::V4) => "tcp_rr",
            Workload::TcpRr(Family::V6) => "tcp_rr6",
            Workload::TcpCrr(Family::V4) => "tcp_crr",
            Workload::TcpCrr(Family::V6) => "tcp_crr6",
            Workload::UdpRr => "udp_rr",
            Workload::Dns => "dns",
            Workload::Icmp => "icmp",
            Workload::FwdConnect => "fwd_connect",
            Workload::Idle10k => "idle_10k",
        }
    }

    /// The workload named `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == name)
    }

    /// The family of the workload's traffic (IPv4 for every workload that
    /// has no IPv6 variant).
    #[must_use]
    pub fn family(self) -> Family {
        match self {
            Workload::TcpG2h(family)
            | Workload::TcpH2g(family)
            | Workload::TcpRr(family)
            | Workload::TcpCrr(family) => family,
            Workload::Idle
            | Workload::UdpRr
            | Workload::Dns
            | Workload::Icmp
            | Workload::FwdConnect
            | Workload::Idle10k => Family::V4,
        }
    }

    /// The same workload over `family`, if it runs over that family.
    #[must_use]
    pub fn over(self, family: Family) -> Option<Self> {
        match self {
            Workload::TcpG2h(_) => Some(Workload::TcpG2h(family)),
            Workload::TcpH2g(_) => Some(Workload::TcpH2g(family)),
            Workload::TcpRr(_) => Some(Workload::TcpRr(family)),
            Workload::TcpCrr(_) => Some(Workload::TcpCrr(family)),
            Workload::Idle
            | Workload::UdpRr
            | Workload::Dns
            | Workload::Icmp
            | Workload::FwdConnect
            | Workload::Idle10k => (family == Family::V4).then_some(self),
        }
    }

    /// The outside tool the workload needs, if any.
    #[must_use]
    pub fn tool(self) -> Option<&'static str> {
        matches!(self, Workload::TcpG2h(_) | Workload::TcpH2g(_)).then_some("iperf3")
    }
}

/// What running a workload on a path gave.
#[derive(Debug)]
pub enum Outcome {
    /// Measured values.
    Measured(Vec<(Metric, f64)>),
    /// The workload does not apply to this path (the kernel's paths have no
    /// stack process whose wakeups could be counted).
    NotApplicable(&'static str),
}

/// The settings every session shares.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The harness binary, run in guests and on the host side for its
    /// servers and clients.
    pub exe: PathBuf,
    /// How long each timed workload runs.
    pub duration: Duration,
    /// How many idle connections [`Workload::Idle10k`] holds.
    pub idle_flows: usize,
}

/// A started path with its servers: the host-side servers bound where the
/// guest reaches them and the echo server inside the guest.
pub struct Session<'a> {
    // Field order is drop order: servers stop before the guest goes.
    _servers: Vec<Child>,
    guest: Box<dyn Guest>,
    host: &'a Host,
    /// The run's settings, the duration cut to the guest's maximum.
    settings: Settings,
    /// The host side over IPv6, or why the guest could not reach it (the
    /// IPv6 workloads fail with that; the IPv4 ones still run).
    ipv6: Result<HostSide, String>,
}

impl<'a> Session<'a> {
    /// Starts `path`, its servers, and checks that the guest reaches them.
    ///
    /// # Errors
    /// The path, a server or the first round trip over IPv4 failed.
    pub fn start(host: &'a Host, path: &dyn Path, settings: &Settings) -> Result<Self, String> {
        let guest = path.start(host)?;
        let mut settings = settings.clone();
        if let Some(max) = guest.max_duration() {
            settings.duration = settings.duration.min(max);
        }
        let exe = settings.exe.as_os_str();
        let v4 = HostSide {
            bind: guest.server_bind().into(),
            addr: guest.host_addr().into(),
        };
        let mut servers = vec![start_host_servers(host, exe, v4)?];
        let mut guest_server = Child::spawn(
            guest
                .command(exe)
                .args(["serve-guest", "--port", &ports::GUEST_ECHO.to_string()])
                .args(["--lifetime", SERVER_LIFETIME]),
        )?;
        guest_server.wait_for_line("ready", READY)?;
        servers.push(guest_server);
        probe(guest.as_ref(), exe, v4)
            .map_err(|e| format!("the guest cannot reach the host side: {e}"))?;
        let ipv6 = match guest.ipv6() {
            Ok(v6) => start_host_servers(host, exe, v6)
                .and_then(|server| {
                    servers.push(server);
                    probe(guest.as_ref(), exe, v6)
                })
                .map(|()| v6)
                .map_err(|e| format!("the guest cannot reach the host side over IPv6: {e}")),
            Err(why) => Err(why.to_owned()),
        };
        Ok(Self {
            _servers: servers,
            guest,
            host,
            settings,
            ipv6,
        })
    }

    /// Why `workload` cannot run in this session's guest, if it cannot.
    #[must_use]
    pub fn skip(&self, workload: Workload) -> Option<&'static str> {
        let measures_the_stack = matches!(workload, Workload::Idle | Workload::Idle10k);
        if measures_the_stack && self.guest.stack_pid().is_none() {
            return Some(self.guest.no_stack_why());
        }
        if workload.family() == Family::V6 {
            if let Err(why) = self.guest.ipv6() {
                return Some(why);
            }
        }
        self.guest.skip(workload)
    }

    /// Runs one workload.
    ///
    /// # Errors
    /// The workload's client failed or printed something unexpected.
    pub fn run(&self, workload: Workload) -> Result<Outcome, String> {
        if let Some(why) = self.skip(workload) {
            return Ok(Outcome::NotApplicable(why));
        }
        let side = self.host_side(workload.family())?;
        let at = |port| SocketAddr::new(side.addr, port);
        match workload {
            Workload::Idle => self.idle(None),
            Workload::Idle10k => self.idle(Some(self.settings.idle_flows)),
            Workload::TcpG2h(_) => self.iperf(side, false),
            Workload::TcpH2g(_) => self.iperf(side, true),
            Workload::TcpRr(_) => self.round_trips(ClientWorkload::TcpRr, at(ports::ECHO_TCP)),
            Workload::TcpCrr(_) => self.round_trips(ClientWorkload::TcpCrr, at(ports::ECHO_TCP)),
            Workload::UdpRr => self.round_trips(ClientWorkload::UdpRr, at(ports::ECHO_UDP)),
            Workload::Icmp => self.round_trips(ClientWorkload::Icmp, at(0)),
            Workload::Dns => {
                let target = SocketAddr::new(self.guest.dns_addr().into(), ports::DNS);
                let command = self.guest.command(self.exe());
                let result = self.client(command, ClientWorkload::Dns, target)?;
                Ok(Outcome::Measured(vec![(
                    metric::QPS,
                    number(&result, "qps")?,
                )]))
            }
            Workload::FwdConnect => {
                // From the host side, in through the forward, to the
                // guest's echo server: a connect-request-response.
                let target = self.guest.forward_addr().into();
                let command = self.host.command(self.exe());
                let result = self.client(command, ClientWorkload::TcpCrr, target)?;
                Ok(Outcome::Measured(vec![
                    (metric::P50_US, number(&result, "p50_us")?),
                    (metric::P99_US, number(&result, "p99_us")?),
                    (metric::TPS, number(&result, "tps")?),
                    (metric::ERRORS, number(&result, "errors")?),
                ]))
            }
        }
    }

    /// Where the host-side servers of `family` are, as the guest reaches
    /// them.
    fn host_side(&self, family: Family) -> Result<HostSide, String> {
        match family {
            Family::V4 => Ok(HostSide {
                bind: self.guest.server_bind().into(),
                addr: self.guest.host_addr().into(),
            }),
            Family::V6 => self.ipv6.clone(),
        }
    }

    fn exe(&self) -> &OsStr {
        self.settings.exe.as_os_str()
    }

    /// A round-trip client from inside the guest: percentiles, the rate
    /// (but for ICMP) and, for CRR, the failed transactions.
    fn round_trips(&self, client: ClientWorkload, target: SocketAddr) -> Result<Outcome, String> {
        let result = self.client(self.guest.command(self.exe()), client, target)?;
        let mut values = vec![
            (metric::P50_US, number(&result, "p50_us")?),
            (metric::P99_US, number(&result, "p99_us")?),
        ];
        if client != ClientWorkload::Icmp {
            values.push((metric::TPS, number(&result, "tps")?));
        }
        if client == ClientWorkload::TcpCrr {
            values.push((metric::ERRORS, number(&result, "errors")?));
        }
        Ok(Outcome::Measured(values))
    }

    /// Runs the harness's client subcommand through `command` and parses
    /// the JSON it prints.
    fn client(
        &self,
        mut command: std::process::Command,
        workload: ClientWorkload,
        target: SocketAddr,
    ) -> Result<Value, String> {
        command
            .args([
                "client",
                "--workload",
                workload.name(),
                "--target",
                &target.to_string(),
            ])
            .args([
                "--duration",
                &self.settings.duration.as_secs_f64().to_string(),
            ]);
        let stdout = sys::run(&mut command, self.settings.duration + SLACK)?;
        serde_json::from_str(stdout.trim()).map_err(|e| format!("client printed {stdout:?}: {e}"))
    }

    fn iperf(&self, side: HostSide, reverse: bool) -> Result<Outcome, String> {
        let bind = side.bind.to_string();
        let port = ports::IPERF.to_string();
        let server = Child::spawn(
            self.host
                .command("iperf3")
                .args(["-s", "-1", "-B", &bind, "-p", &port]),
        )?;
        if !test_support::common::poll_until(READY, || {
            sys::listening(server.pid(), Transport::Tcp, ports::IPERF)
        }) {
            return Err("iperf3's server did not start listening".into());
        }
        let seconds = self.settings.duration.as_secs().max(1).to_string();
        let mut client = self.guest.command(OsStr::new("iperf3"));
        client
            .args(["-c", &side.addr.to_string(), "-p", &port])
            .args(["-t", &seconds, "-J", "--connect-timeout", "5000"]);
        if reverse {
            client.arg("-R");
        }
        let before = self.stack_sample()?;
        let stdout = sys::run(&mut client, self.settings.duration + SLACK)?;
        let after = self.stack_sample()?;
        let _ = server.finish(Duration::from_secs(5));
        let json: Value =
            serde_json::from_str(&stdout).map_err(|e| format!("iperf3 printed no JSON: {e}"))?;
        let received = &json["end"]["sum_received"];
        let bits_per_second = number(received, "bits_per_second")?;
        let gbits = number(received, "bytes")? * 8.0 / 1e9;
        let mut values = vec![(metric::GBIT_S, bits_per_second / 1e9)];
        if let (Some(before), Some(after)) = (before, after) {
            #[allow(clippy::cast_precision_loss, reason = "tick counts far below 2^52")]
            let cpu_s = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64
                / sys::ticks_per_second() as f64;
            if gbits > 0.0 {
                values.push((metric::CPU_S_PER_GBIT, cpu_s / gbits));
            }
        }
        Ok(Outcome::Measured(values))
    }

    fn stack_sample(&self) -> Result<Option<ProcSample>, String> {
        self.guest.stack_pid().map(ProcSample::read).transpose()
    }

    /// Counts the stack's wakeups over the duration, with `flows` idle TCP
    /// connections from the guest held open (none for `None`), and reads
    /// its resident memory.
    fn idle(&self, flows: Option<usize>) -> Result<Outcome, String> {
        let Some(pid) = self.guest.stack_pid() else {
            return Ok(Outcome::NotApplicable(self.guest.no_stack_why()));
        };
        let _holder = match flows {
            Some(count) => {
                let target = SocketAddr::new(self.guest.host_addr().into(), ports::HOLD);
                let mut holder = Child::spawn(
                    self.guest
                        .command(self.exe())
                        .args([
                            "hold",
                            "--target",
                            &target.to_string(),
                            "--count",
                            &count.to_string(),
                        ])
                        .args(["--lifetime", "900"]),
                )?;
                holder.wait_for_line("held", Duration::from_secs(150))?;
                Some(holder)
            }
            None => None,
        };
        thread::sleep(SETTLE);
        let before = ProcSample::read(pid)?;
        thread::sleep(self.settings.duration);
        let after = ProcSample::read(pid)?;
        #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        let wakeups = after.switches.saturating_sub(before.switches) as f64
            / self.settings.duration.as_secs_f64();
        #[allow(
            clippy::cast_precision_loss,
            reason = "memory sizes far below 2^52 KiB"
        )]
        let rss_mib = after.rss_kib as f64 / 1024.0;
        Ok(Outcome::Measured(vec![
            (metric::WAKEUPS_PER_S, wakeups),
            (metric::RSS_MIB, rss_mib),
        ]))
    }
}

/// Starts the host-side servers bound to `side.bind` and waits until they
/// are ready.
fn start_host_servers(host: &Host, exe: &OsStr, side: HostSide) -> Result<Child, String> {
    let mut servers = Child::spawn(
        host.command(exe)
            .args(["serve", "--bind", &side.bind.to_string()])
            .args(["--lifetime", SERVER_LIFETIME]),
    )?;
    servers.wait_for_line("ready", READY)?;
    Ok(servers)
}

/// Waits until the guest gets an echo from the host side at `side.addr`
/// (which, over IPv6, also waits out the guest's address configuration).
fn probe(guest: &dyn Guest, exe: &OsStr, side: HostSide) -> Result<(), String> {
    let echo = SocketAddr::new(side.addr, ports::ECHO_TCP);
    sys::run(
        guest
            .command(exe)
            .args(["probe", "--target", &echo.to_string()]),
        PROBE_LIMIT,
    )
    .map(drop)
}

/// The number at `key` of a JSON object.
fn number(value: &Value, key: &str) -> Result<f64, String> {
    value
        .get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("no number `{key}` in {value}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn workload_names_round_trip_and_run_idle_first() {
        for w in Workload::ALL {
            assert_eq!(Workload::parse(w.name()), Some(w));
        }
        assert_eq!(Workload::parse("nope"), None);
        let mut sorted = Workload::ALL;
        sorted.sort();
        assert_eq!(sorted, Workload::ALL);
        assert_eq!(sorted.first(), Some(&Workload::Idle));
        assert_eq!(sorted.last(), Some(&Workload::Idle10k));
    }

    #[test]
    fn ipv6_tcp_workloads_are_named_with_a_6_and_run_right_after_their_ipv4_twin() {
        let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
        for base in ["tcp_g2h", "tcp_h2g", "tcp_rr", "tcp_crr"] {
            let v4 = Workload::parse(base).unwrap();
            let v6 = Workload::parse(&format!("{base}6")).unwrap();
            assert_eq!((v4.family(), v6.family()), (Family::V4, Family::V6));
            assert_eq!(v6.over(Family::V4), Some(v4));
            assert_eq!(v4.over(Family::V6), Some(v6));
            assert_eq!(v4.tool(), v6.tool());
            let at = names.iter().position(|n| *n == base).unwrap();
            assert_eq!(names.get(at + 1), Some(&v6.name()));
        }
        // The workloads without an IPv6 variant have none.
        for w in [
            Workload::UdpRr,
            Workload::Dns,
            Workload::Icmp,
            Workload::Idle,
        ] {
            assert_eq!(w.family(), Family::V4);
            assert_eq!(w.over(Family::V6), None);
            assert_eq!(w.over(Family::V4), Some(w));
        }
        assert_eq!(Workload::parse("udp_rr6"), None);
    }
}
