//! What the `slipway` and `slipway-vmm` commands share: the backend and
//! capture built from the network options, logging, the stop signals, and
//! how a failure becomes an exit status.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use crate::options::{LogLevel, Options};
use frontdesk::PcapWriter;
use nat_core::{DenyList, Nat, Plan, Rules, RulesError};
use relay_udp_icmp::resolv_conf;
use slipway::frontend::SignalFd;
use slipway::{Backend, BackendConfig, BackendError};

/// A pcap capture to a file.
pub type Pcap = slipway::capture::CaptureWriter;

/// Why slipway stops before the command's status is known.
pub enum Failure {
    /// A configuration error: exit status 2.
    Usage(String),
    /// A failure while running: exit status 1.
    Runtime(String),
}

impl Failure {
    /// A mapper from an I/O error to a runtime failure, led by `context`.
    pub fn runtime(context: &str) -> impl FnOnce(io::Error) -> Failure + '_ {
        move |error| Failure::Runtime(format!("{context}: {error}"))
    }
}

/// The exit status of `result`, saying on stderr, after `program`'s
/// name, why it failed: 2 for a usage error, 1 for a runtime failure.
pub fn exit_status(program: &str, result: Result<u8, Failure>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Usage(message)) => {
            eprintln!("{program}: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("{program}: {message}");
            ExitCode::from(1)
        }
    }
}

/// Logs to stderr at the level the options ask for.
pub fn init_logging(level: LogLevel) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        LogLevel::Quiet => EnvFilter::new("error"),
        LogLevel::Debug => EnvFilter::new("debug"),
        LogLevel::Trace => EnvFilter::new("trace"),
        LogLevel::Default => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"))
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
}

/// The backend (with the capture `--pcap` asks for) and its plan, built
/// from the options.
pub struct Setup {
    /// The address plan.
    pub plan: Plan,
    /// The backend.
    pub backend: Backend,
}

/// Builds the backend and opens the capture the options ask for.
pub fn setup(options: &Options) -> Result<Setup, Failure> {
    let plan = options
        .plan()
        .map_err(|e| Failure::Usage(e.message().to_owned()))?;
    let rules = Rules {
        host_loopback: options.host_loopback,
        deny: options.deny.iter().copied().collect::<DenyList>(),
        tcp_forwards: options.tcp_forwards.clone(),
        udp_forwards: options.udp_forwards.clone(),
        dns_upstream: options.dns_upstream,
    };
    Nat::new(plan, rules.clone()).map_err(|e| Failure::Usage(rules_message(&e)))?;
    let mut config = BackendConfig::new(plan, rules);
    // Every flow holds a descriptor: the soft limit goes up to the hard
    // one, and the flow limits fit what is there.
    let budget = slipway::fd_budget(&config.rules);
    if let Some(error) = &budget.raise_error {
        tracing::warn!(%error, soft = budget.soft, "cannot raise the open files limit");
    }
    // A limit the user gives wins, even over the descriptors: flows beyond
    // them are refused one by one, counted.
    config.limits = match options.max_flows {
        Some(flows) => flow_table::Limits::for_fd_budget(flows),
        None => budget.limits(),
    };
    tracing::debug!(
        soft_before = budget.soft_before,
        soft = budget.soft,
        reserved = budget.reserved,
        limits = ?config.limits,
        "flow limits sized to the open files limit"
    );
    if options.dns_upstream.is_none() {
        config.host_resolver = host_resolver(&config.rules.deny);
    }
    let mut backend = Backend::new(config, Instant::now()).map_err(|e| match e {
        BackendError::Rules(e) => Failure::Usage(rules_message(&e)),
        other => Failure::Runtime(format!("cannot start: {other}")),
    })?;
    if let Some(path) = &options.pcap {
        backend.set_capture(open_pcap(path)?);
    }
    Ok(Setup { plan, backend })
}

/// A rules error, led by the option it comes from.
fn rules_message(error: &RulesError) -> String {
    let option = match error {
        RulesError::DnsUpstreamPortZero { .. } => "--dns-upstream",
        RulesError::UnusableAddress { rule, .. } | RulesError::InsideGuestNetwork { rule, .. }
            if *rule == "DNS upstream" =>
        {
            "--dns-upstream"
        }
        RulesError::UnusableAddress { .. } | RulesError::InsideGuestNetwork { .. } => {
            "--map-host-loopback"
        }
        RulesError::ForwardFamilyDisabled { proto, .. } => match proto {
            nat_core::Protocol::Udp => "-u",
            _ => "-t",
        },
    };
    format!("{option}: {error}")
}

/// The host's resolver from `/etc/resolv.conf`, unless the deny list
/// covers it.
fn host_resolver(deny: &DenyList) -> Option<std::net::SocketAddr> {
    let path = Path::new(resolv_conf::DEFAULT_PATH);
    match resolv_conf::host_resolver(path) {
        Ok(Some(addr)) => match deny.denied_by(addr.ip()) {
            Some(prefix) => {
                tracing::warn!(%addr, %prefix, "the host resolver is denied; DNS is not forwarded");
                None
            }
            None => Some(addr),
        },
        Ok(None) => {
            tracing::warn!(
                "{} names no nameserver; DNS is not forwarded (see --dns-upstream)",
                path.display()
            );
            None
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read {}; DNS is not forwarded (see --dns-upstream)", path.display());
            None
        }
    }
}

fn open_pcap(path: &Path) -> Result<Pcap, Failure> {
    let file = File::create(path)
        .map_err(|e| Failure::Runtime(format!("--pcap: cannot create {}: {e}", path.display())))?;
    let writer: Box<dyn Write + Send> = Box::new(BufWriter::new(file));
    PcapWriter::new(writer, 0)
        .map_err(|e| Failure::Runtime(format!("--pcap: cannot write {}: {e}", path.display())))
}

/// Blocks SIGINT, SIGTERM and SIGHUP and opens a signalfd for them.
pub fn stop_signals() -> Result<SignalFd, Failure> {
    SignalFd::new(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
        .map_err(Failure::runtime("signalfd"))
}

/// After serving: prints `program`'s counters when `stats` (`--stats`)
/// asks, with the frontend's named counters, and closes the capture.
pub fn finish(program: &str, stats: bool, backend: &mut Backend, frontend: &[(&str, u64)]) {
    if stats {
        eprint!(
            "{program}: counters\n{}",
            slipway::frontend::stats_report(backend, frontend)
        );
    }
    finish_pcap(backend);
}

/// Flushes and closes the backend's capture.
pub fn finish_pcap(backend: &mut Backend) {
    let Some(pcap) = backend.take_capture() else {
        return;
    };
    if let Err(error) = pcap.into_inner().flush() {
        tracing::warn!(%error, "cannot finish the pcap file");
    }
}
