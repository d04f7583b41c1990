//! The workloads and how each is measured on a running guest: iperf3 for
//! throughput (with the stack's CPU time around it), the harness's own
//! clients for round trips, DNS and forwards, and `/proc` for the stack's
//! wakeups and memory while idle.
//!
//! Invariant: a [`Session`] owns every process it starts (host servers,
//! guest server, clients) and every one of them is bounded in time; a
//! workload that fails leaves nothing running.

use std::ffi::OsStr;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::paths::{Guest, Host, Path};
use crate::report::{Metric, metric};
use crate::sys::{self, Child, ProcSample, Transport};
use crate::tools::ports;

/// How long the servers may take to bind.
const READY: Duration = Duration::from_secs(10);
/// Slack on top of a workload's duration before its client is killed.
const SLACK: Duration = Duration::from_secs(30);
/// How long a stack is left alone before an idle measurement.
const SETTLE: Duration = Duration::from_secs(1);
/// How long servers live at most (the session kills them sooner).
const SERVER_LIFETIME: &str = "7200";

/// A workload, in the order a session runs them: idle first (before any
/// flow has existed), the flows that hold 10k connections last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// The stack's wakeups and memory with no flows.
    Idle,
    /// iperf3 from guest to host.
    TcpG2h,
    /// iperf3 from host to guest (`-R`).
    TcpH2g,
    /// 1-byte request-response on one TCP connection.
    TcpRr,
    /// Connect, 1-byte request-response, close.
    TcpCrr,
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
    pub const ALL: [Workload; 10] = [
        Workload::Idle,
        Workload::TcpG2h,
        Workload::TcpH2g,
        Workload::TcpRr,
        Workload::TcpCrr,
        Workload::UdpRr,
        Workload::Dns,
        Workload::Icmp,
        Workload::FwdConnect,
        Workload::Idle10k,
    ];

    /// The name in reports and on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Workload::Idle => "idle",
            Workload::TcpG2h => "tcp_g2h",
            Workload::TcpH2g => "tcp_h2g",
            Workload::TcpRr => "tcp_rr",
            Workload::TcpCrr => "tcp_crr",
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

    /// The outside tool the workload needs, if any.
    #[must_use]
    pub fn tool(self) -> Option<&'static str> {
        matches!(self, Workload::TcpG2h | Workload::TcpH2g).then_some("iperf3")
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
}

impl<'a> Session<'a> {
    /// Starts `path`, its servers, and checks that the guest reaches them.
    ///
    /// # Errors
    /// The path, a server or the first round trip failed.
    pub fn start(host: &'a Host, path: &dyn Path, settings: &Settings) -> Result<Self, String> {
        let guest = path.start(host)?;
        let mut settings = settings.clone();
        if let Some(max) = guest.max_duration() {
            settings.duration = settings.duration.min(max);
        }
        let exe = settings.exe.as_os_str();
        let mut host_servers = Child::spawn(
            host.command(exe)
                .args(["serve", "--bind", &guest.server_bind().to_string()])
                .args(["--lifetime", SERVER_LIFETIME]),
        )?;
        host_servers.wait_for_line("ready", READY)?;
        let mut guest_server = Child::spawn(
            guest
                .command(exe)
                .args(["serve-guest", "--port", &ports::GUEST_ECHO.to_string()])
                .args(["--lifetime", SERVER_LIFETIME]),
        )?;
        guest_server.wait_for_line("ready", READY)?;
        let echo = SocketAddrV4::new(guest.host_addr(), ports::ECHO_TCP);
        sys::run(
            guest
                .command(exe)
                .args(["probe", "--target", &echo.to_string()]),
            Duration::from_secs(30),
        )
        .map_err(|e| format!("the guest cannot reach the host side: {e}"))?;
        Ok(Self {
            _servers: vec![host_servers, guest_server],
            guest,
            host,
            settings,
        })
    }

    /// Why `workload` cannot run in this session's guest, if it cannot.
    #[must_use]
    pub fn skip(&self, workload: Workload) -> Option<&'static str> {
        let measures_the_stack = matches!(workload, Workload::Idle | Workload::Idle10k);
        if measures_the_stack && self.guest.stack_pid().is_none() {
            return Some(self.guest.no_stack_why());
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
        let host = self.guest.host_addr();
        match workload {
            Workload::Idle => self.idle(None),
            Workload::Idle10k => self.idle(Some(self.settings.idle_flows)),
            Workload::TcpG2h => self.iperf(false),
            Workload::TcpH2g => self.iperf(true),
            Workload::TcpRr => {
                self.round_trips(workload, SocketAddrV4::new(host, ports::ECHO_TCP), true)
            }
            Workload::TcpCrr => {
                self.round_trips(workload, SocketAddrV4::new(host, ports::ECHO_TCP), true)
            }
            Workload::UdpRr => {
                self.round_trips(workload, SocketAddrV4::new(host, ports::ECHO_UDP), true)
            }
            Workload::Icmp => self.round_trips(workload, SocketAddrV4::new(host, 0), false),
            Workload::Dns => {
                let target = SocketAddrV4::new(self.guest.dns_addr(), ports::DNS);
                let result = self.client(self.guest.command(self.exe()), "dns", target)?;
                Ok(Outcome::Measured(vec![(
                    metric::QPS,
                    number(&result, "qps")?,
                )]))
            }
            Workload::FwdConnect => {
                // From the host side, in through the forward, to the
                // guest's echo server: a connect-request-response.
                let target = self.guest.forward_addr();
                let result = self.client(self.host.command(self.exe()), "tcp_crr", target)?;
                Ok(Outcome::Measured(vec![
                    (metric::P50_US, number(&result, "p50_us")?),
                    (metric::P99_US, number(&result, "p99_us")?),
                    (metric::TPS, number(&result, "tps")?),
                    (metric::ERRORS, number(&result, "errors")?),
                ]))
            }
        }
    }

    fn exe(&self) -> &OsStr {
        self.settings.exe.as_os_str()
    }

    fn round_trips(
        &self,
        workload: Workload,
        target: SocketAddrV4,
        with_rate: bool,
    ) -> Result<Outcome, String> {
        let result = self.client(self.guest.command(self.exe()), workload.name(), target)?;
        let mut values = vec![
            (metric::P50_US, number(&result, "p50_us")?),
            (metric::P99_US, number(&result, "p99_us")?),
        ];
        if with_rate {
            values.push((metric::TPS, number(&result, "tps")?));
        }
        if workload == Workload::TcpCrr {
            values.push((metric::ERRORS, number(&result, "errors")?));
        }
        Ok(Outcome::Measured(values))
    }

    /// Runs the harness's client subcommand through `command` and parses
    /// the JSON it prints.
    fn client(
        &self,
        mut command: std::process::Command,
        workload: &str,
        target: SocketAddrV4,
    ) -> Result<Value, String> {
        command
            .args([
                "client",
                "--workload",
                workload,
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

    fn iperf(&self, reverse: bool) -> Result<Outcome, String> {
        let bind = self.guest.server_bind().to_string();
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
            .args(["-c", &self.guest.host_addr().to_string(), "-p", &port])
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
                let target = SocketAddrV4::new(self.guest.host_addr(), ports::HOLD);
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
        assert_eq!(sorted[0], Workload::Idle);
        assert_eq!(sorted[9], Workload::Idle10k);
    }
}
