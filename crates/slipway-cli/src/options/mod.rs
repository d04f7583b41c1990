//! The `slipway` command line: [`parse`] turns the arguments into a
//! [`Command`], or into a [`UsageError`] that names the bad option and the
//! form it accepts.
//!
//! Invariant: parsing is a pure function of the arguments. It reads no file,
//! no environment variable and no clock; the binary resolves what depends on
//! the host (the resolver in `/etc/resolv.conf`, the namespace) afterwards.
//!
//! Option names and value syntax follow passt's where passt has the option
//! (`-t`/`-u` port specs, `--map-host-loopback`, `--mtu`, `--pcap`).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use nat_core::{Cidr, HostLoopback, MTU_MAX, MTU_MIN, Plan, PortForwards, PortSpec};

mod vmm;

pub use vmm::{VMM_USAGE, VmmCommand, VmmOptions, parse_vmm};

/// The help text of `slipway --help`.
pub const USAGE: &str = "\
slipway: a user-mode network stack for network namespaces and virtual machines

Usage:
  slipway run [OPTIONS] [--] CMD [ARGS...]
      Run CMD in a new network namespace served by slipway, and exit with
      CMD's status.
  slipway attach [OPTIONS] --netns PATH|PID
      Serve an existing network namespace until it is gone (when given by
      PID) or slipway is stopped (SIGINT, SIGTERM).
  slipway stream [OPTIONS] --socket PATH | --fd N
      Serve one QEMU guest over a UNIX stream socket (QEMU's -netdev
      stream, length-prefixed frames, as with passt) until it disconnects;
      one client at a time, others are refused. Prints the QEMU options to
      use on stdout (not with -q).
  slipway vhost-user [OPTIONS] --socket PATH
      Serve one VMM's virtio-net device as a vhost-user backend on the
      UNIX socket PATH (QEMU's -netdev vhost-user; guest memory must be
      shared and sealed against shrinking, as memory-backend-memfd,share=on
      is) until it disconnects.
      Prints the QEMU options to use on stdout (not with -q).

Options:
  -t, --tcp-ports SPEC    forward inbound TCP ports to the guest (repeatable)
                          SPEC: [ADDR/]FIRST[-LAST][:TOFIRST[-TOLAST]][,...],
                          ~FIRST[-LAST] to exclude, all, or none
  -u, --udp-ports SPEC    forward inbound UDP ports to the guest (repeatable)
      --mtu N             guest MTU, 68 to 65520 (default 65520)
      --map-host-loopback ADDR|none
                          the guest address that reaches the host's loopback:
                          the gateway 10.0.2.2 (default), or none
      --deny CIDR[,CIDR]  never connect to these destinations (repeatable)
      --dns-upstream ADDR[:PORT]
                          where DNS goes (default: the first nameserver of
                          /etc/resolv.conf); IPv6 with a port: [ADDR]:PORT
      --pcap FILE         capture the guest-side frames to FILE (pcap)
      --ifname NAME       interface name in the namespace (default eth0)
      --netns PATH|PID    attach: the namespace, as a path (/run/netns/NAME,
                          /proc/PID/ns/net) or a process id
      --socket PATH       stream, vhost-user: listen on PATH (created,
                          removed at exit; a stale socket nobody listens on
                          is replaced)
      --fd N              stream: serve the connected UNIX stream socket N
      --keep-listening    stream: after the client disconnects, wait for the
                          next one instead of exiting
      --no-offload        compute and verify every TCP/UDP checksum instead
                          of offloading them; run, attach: plain tap frames,
                          no segments larger than the MTU either way
      --max-flows N       open flows at most, all protocols (shared as the
                          defaults are: 64:16:1 TCP:UDP:ICMP; at most 82944;
                          default: what the open files limit, raised to its
                          hard limit, leaves after a reserve)
      --stats             print counters to stderr at exit
  -d, --debug             debug logging
      --trace             trace logging
  -q, --quiet             log errors only
  -h, --help              print this help and exit
  -V, --version           print the version and exit

The guest gets 10.0.2.15/24 with gateway 10.0.2.2 and DNS 10.0.2.3.
Exit status: run: CMD's status (128+N if a signal N ended it); 1 when
slipway fails; 2 on a usage error.
";

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Print [`USAGE`] and exit.
    Help,
    /// Print the version and exit.
    Version,
    /// Run a command in a new namespace.
    Run {
        /// The options.
        options: Options,
        /// The command and its arguments; never empty.
        argv: Vec<OsString>,
    },
    /// Serve an existing namespace.
    Attach {
        /// The options.
        options: Options,
        /// The namespace.
        netns: NetnsTarget,
    },
    /// Serve a QEMU guest over a stream socket.
    Stream {
        /// The options.
        options: Options,
        /// Where the guest connects, or its connection.
        target: StreamTarget,
        /// Whether to wait for another client after one disconnects.
        keep_listening: bool,
    },
    /// Serve a VMM's virtio-net device as a vhost-user backend.
    VhostUser {
        /// The options.
        options: Options,
        /// The socket to listen on.
        socket: PathBuf,
    },
}

/// The socket `stream` serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamTarget {
    /// A path to listen on (`--socket`).
    Socket(PathBuf),
    /// A descriptor of a connected socket (`--fd`).
    Fd(i32),
}

/// The namespace `attach` serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsTarget {
    /// The network namespace of a process; serving ends when it exits.
    Pid(i32),
    /// A namespace file such as `/run/netns/NAME`.
    Path(String),
}

impl NetnsTarget {
    /// The argument for `Namespace::open`.
    #[must_use]
    pub fn as_arg(&self) -> String {
        match self {
            NetnsTarget::Pid(pid) => pid.to_string(),
            NetnsTarget::Path(path) => path.clone(),
        }
    }
}

/// How much slipway logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogLevel {
    /// Errors only (`-q`).
    Quiet,
    /// Warnings and errors, or what `RUST_LOG` says.
    #[default]
    Default,
    /// Debug events (`-d`).
    Debug,
    /// Everything (`--trace`).
    Trace,
}

/// The options shared by `run`, `attach` and `stream`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Inbound TCP forwards (`-t`).
    pub tcp_forwards: PortForwards,
    /// Inbound UDP forwards (`-u`).
    pub udp_forwards: PortForwards,
    /// The guest MTU.
    pub mtu: u16,
    /// Where flows to the gateway go.
    pub host_loopback: HostLoopback,
    /// Denied destinations.
    pub deny: Vec<Cidr>,
    /// The DNS upstream; `None`: the host's resolver.
    pub dns_upstream: Option<SocketAddr>,
    /// The pcap file.
    pub pcap: Option<PathBuf>,
    /// The log level.
    pub log: LogLevel,
    /// Print counters at exit.
    pub stats: bool,
    /// Offload checksums to the guest's side (`--no-offload` turns it off).
    pub offload: bool,
    /// The interface name in the namespace.
    pub ifname: String,
    /// Open flows at most (`--max-flows`); `None`: sized to the open
    /// files limit.
    pub max_flows: Option<u64>,
}

/// The interface name when `--ifname` is not given.
pub const DEFAULT_IFNAME: &str = "eth0";

impl Default for Options {
    fn default() -> Self {
        Self {
            tcp_forwards: PortForwards::none(),
            udp_forwards: PortForwards::none(),
            mtu: nat_core::DEFAULT_MTU,
            host_loopback: HostLoopback::default(),
            deny: Vec::new(),
            dns_upstream: None,
            pcap: None,
            log: LogLevel::Default,
            stats: false,
            offload: true,
            ifname: DEFAULT_IFNAME.to_owned(),
            max_flows: None,
        }
    }
}

/// A command line slipway does not accept. The message names the option and
/// the form it takes; the command exits with status 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError {
    message: String,
}

impl UsageError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    fn invalid(option: &str, value: &str, why: impl fmt::Display) -> Self {
        Self::new(format!("{option}: invalid value {value:?}: {why}"))
    }

    /// An invalid value, followed by the form the option takes.
    fn invalid_form(option: &str, value: &str, opt: Opt) -> Self {
        Self::invalid(option, value, format!("expected {}", expected_form(opt)))
    }

    /// The message, without the `slipway: ` prefix.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// An option of the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Tcp,
    Udp,
    Mtu,
    MapHostLoopback,
    Deny,
    DnsUpstream,
    Pcap,
    Ifname,
    Netns,
    Socket,
    Fd,
    KeepListening,
    NoOffload,
    MaxFlows,
    Stats,
    Debug,
    Trace,
    Quiet,
    Help,
    Version,
    Kernel,
    Initrd,
    Cmdline,
    Mem,
    Console,
    DeviceOnCmdline,
}

/// Each option's short name, long name, and whether it takes a value.
const OPTIONS: &[(Option<char>, &str, Opt, bool)] = &[
    (Some('t'), "tcp-ports", Opt::Tcp, true),
    (Some('u'), "udp-ports", Opt::Udp, true),
    (None, "mtu", Opt::Mtu, true),
    (None, "map-host-loopback", Opt::MapHostLoopback, true),
    (None, "deny", Opt::Deny, true),
    (None, "dns-upstream", Opt::DnsUpstream, true),
    (None, "pcap", Opt::Pcap, true),
    (None, "ifname", Opt::Ifname, true),
    (None, "netns", Opt::Netns, true),
    (None, "socket", Opt::Socket, true),
    (None, "fd", Opt::Fd, true),
    (None, "keep-listening", Opt::KeepListening, false),
    (None, "no-offload", Opt::NoOffload, false),
    (None, "max-flows", Opt::MaxFlows, true),
    (None, "stats", Opt::Stats, false),
    (Some('d'), "debug", Opt::Debug, false),
    (None, "trace", Opt::Trace, false),
    (Some('q'), "quiet", Opt::Quiet, false),
    (Some('h'), "help", Opt::Help, false),
    (Some('V'), "version", Opt::Version, false),
    (None, "kernel", Opt::Kernel, true),
    (None, "initrd", Opt::Initrd, true),
    (None, "cmdline", Opt::Cmdline, true),
    (None, "mem", Opt::Mem, true),
    (None, "console", Opt::Console, true),
    (None, "device-on-cmdline", Opt::DeviceOnCmdline, false),
];

/// The subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sub {
    Run,
    Attach,
    Stream,
    VhostUser,
}

/// Options as they accumulate, before the subcommand checks them.
#[derive(Default)]
struct Collected {
    options: Options,
    tcp_specs: Vec<(String, PortSpec)>,
    udp_specs: Vec<(String, PortSpec)>,
    netns: Option<NetnsTarget>,
    socket: Option<PathBuf>,
    fd: Option<i32>,
    keep_listening: bool,
    ifname_set: bool,
    /// The options only `slipway-vmm` takes.
    vmm: vmm::Collected,
}

/// Parses the arguments after the program name.
///
/// Options may stand before and after the subcommand; for `run`, the first
/// argument that is not an option (or everything after `--`) is the command.
///
/// # Errors
/// A [`UsageError`] naming the first bad argument.
pub fn parse(args: &[OsString]) -> Result<Command, UsageError> {
    let mut collected = Collected::default();
    let mut sub = None;
    let mut argv = Vec::new();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        if arg == "--" {
            if sub != Some(Sub::Run) {
                return Err(UsageError::new(
                    "unexpected \"--\": only \"slipway run [OPTIONS] -- CMD\" takes one",
                ));
            }
            argv = args[i..].to_vec();
            break;
        }
        let bytes = arg.as_encoded_bytes();
        if bytes.len() > 1 && bytes[0] == b'-' {
            let Some(arg) = arg.to_str() else {
                return Err(UsageError::new(format!(
                    "invalid option {:?}: not UTF-8",
                    arg.to_string_lossy()
                )));
            };
            let (opt, name, value) = split_option(arg, args.get(i))?;
            if value.consumed_next {
                i += 1;
            }
            match opt {
                Opt::Help => return Ok(Command::Help),
                Opt::Version => return Ok(Command::Version),
                _ => apply(&mut collected, opt, &name, value.text.as_deref())?,
            }
            continue;
        }
        match sub {
            None => sub = Some(subcommand(arg)?),
            Some(Sub::Run) => {
                argv = args[i - 1..].to_vec();
                break;
            }
            Some(Sub::Attach) => {
                return Err(UsageError::new(format!(
                    "attach: unexpected argument {:?}: attach runs no command \
                     (usage: slipway attach [OPTIONS] --netns PATH|PID)",
                    arg.to_string_lossy()
                )));
            }
            Some(Sub::Stream) => {
                return Err(UsageError::new(format!(
                    "stream: unexpected argument {:?}: stream runs no command \
                     (usage: slipway stream [OPTIONS] --socket PATH)",
                    arg.to_string_lossy()
                )));
            }
            Some(Sub::VhostUser) => {
                return Err(UsageError::new(format!(
                    "vhost-user: unexpected argument {:?}: vhost-user runs no command \
                     (usage: slipway vhost-user [OPTIONS] --socket PATH)",
                    arg.to_string_lossy()
                )));
            }
        }
    }
    finish(collected, sub, argv)
}

fn subcommand(arg: &OsStr) -> Result<Sub, UsageError> {
    match arg.to_str() {
        Some("run") => Ok(Sub::Run),
        Some("attach") => Ok(Sub::Attach),
        Some("stream") => Ok(Sub::Stream),
        Some("vhost-user") => Ok(Sub::VhostUser),
        _ => Err(UsageError::new(format!(
            "unknown command {:?}: expected \"run\", \"attach\", \"stream\" or \"vhost-user\"",
            arg.to_string_lossy()
        ))),
    }
}

/// The value of an option, and whether it was the next argument.
struct Value {
    text: Option<String>,
    consumed_next: bool,
}

/// Finds the option `arg` names, and its value: after `=` (long), attached
/// (short), or the next argument.
fn split_option(arg: &str, next: Option<&OsString>) -> Result<(Opt, String, Value), UsageError> {
    let (found, name, inline) = if let Some(long) = arg.strip_prefix("--") {
        let (key, inline) = match long.split_once('=') {
            Some((key, value)) => (key, Some(value.to_owned())),
            None => (long, None),
        };
        let found = OPTIONS.iter().find(|(_, l, _, _)| *l == key);
        (found, format!("--{key}"), inline)
    } else {
        let mut chars = arg.chars().skip(1);
        let short = chars.next();
        let rest: String = chars.collect();
        let found = OPTIONS
            .iter()
            .find(|(s, _, _, _)| *s == short && short.is_some());
        let name = short.map_or_else(String::new, |c| format!("-{c}"));
        (found, name, (!rest.is_empty()).then_some(rest))
    };
    let Some(&(_, _, opt, takes_value)) = found else {
        return Err(UsageError::new(format!(
            "unknown option {:?}: see \"slipway --help\"",
            if arg.starts_with("--") { &name } else { arg }
        )));
    };
    if !takes_value {
        if inline.is_some() {
            let message = if arg.starts_with("--") {
                format!("{name}: takes no value")
            } else {
                format!("{name}: takes no value: write short options separately, not {arg:?}")
            };
            return Err(UsageError::new(message));
        }
        let value = Value {
            text: None,
            consumed_next: false,
        };
        return Ok((opt, name, value));
    }
    if let Some(text) = inline {
        let value = Value {
            text: Some(text),
            consumed_next: false,
        };
        return Ok((opt, name, value));
    }
    let Some(next) = next else {
        return Err(UsageError::new(format!(
            "{name}: missing value: expected {}",
            expected_form(opt)
        )));
    };
    let Some(text) = next.to_str() else {
        return Err(UsageError::new(format!(
            "{name}: invalid value {:?}: not UTF-8",
            next.to_string_lossy()
        )));
    };
    let value = Value {
        text: Some(text.to_owned()),
        consumed_next: true,
    };
    Ok((opt, name, value))
}

/// The form an option's value takes, for messages.
fn expected_form(opt: Opt) -> &'static str {
    match opt {
        Opt::Tcp | Opt::Udp => {
            "a port spec [ADDR/]FIRST[-LAST][:TOFIRST[-TOLAST]][,...], ~FIRST[-LAST], all or none"
        }
        Opt::Mtu => "a number from 68 to 65520",
        Opt::MapHostLoopback => "the gateway address 10.0.2.2 (or fd00:0:0:2::2), or none",
        Opt::Deny => "CIDR[,CIDR...], e.g. 192.168.0.0/16",
        Opt::DnsUpstream => "ADDR or ADDR:PORT, with an IPv6 address and a port as [ADDR]:PORT",
        Opt::Pcap => "a file name",
        Opt::Ifname => "an interface name of 1 to 15 bytes without '/', ':' or whitespace",
        Opt::Netns => "a namespace path such as /run/netns/NAME, or a process id",
        Opt::Socket => "a socket path",
        Opt::Fd => "a descriptor number from 0 to 2147483647",
        Opt::MaxFlows => "a number of flows from 0 to 82944",
        Opt::Kernel | Opt::Initrd | Opt::Console => "a file name",
        Opt::Cmdline => "kernel parameters",
        Opt::Mem => vmm::MEM_FORM,
        Opt::KeepListening
        | Opt::NoOffload
        | Opt::Stats
        | Opt::Debug
        | Opt::Trace
        | Opt::Quiet
        | Opt::Help
        | Opt::Version
        | Opt::DeviceOnCmdline => "nothing",
    }
}

fn apply(c: &mut Collected, opt: Opt, name: &str, value: Option<&str>) -> Result<(), UsageError> {
    let value = value.unwrap_or_default();
    let options = &mut c.options;
    match opt {
        Opt::Tcp => c
            .tcp_specs
            .push((value.to_owned(), port_spec(name, value)?)),
        Opt::Udp => c
            .udp_specs
            .push((value.to_owned(), port_spec(name, value)?)),
        Opt::Mtu => options.mtu = mtu(name, value)?,
        Opt::MapHostLoopback => options.host_loopback = host_loopback(name, value)?,
        Opt::Deny => options.deny.extend(deny(name, value)?),
        Opt::DnsUpstream => options.dns_upstream = Some(dns_upstream(name, value)?),
        Opt::Pcap if value.is_empty() => {
            return Err(UsageError::invalid_form(name, value, opt));
        }
        Opt::Pcap => options.pcap = Some(PathBuf::from(value)),
        Opt::Ifname => {
            options.ifname = ifname(name, value)?;
            c.ifname_set = true;
        }
        Opt::Netns => c.netns = Some(netns(name, value)?),
        Opt::Socket if value.is_empty() => {
            return Err(UsageError::invalid_form(name, value, opt));
        }
        Opt::Socket => c.socket = Some(PathBuf::from(value)),
        Opt::Fd => c.fd = Some(fd(name, value)?),
        Opt::KeepListening => c.keep_listening = true,
        Opt::NoOffload => options.offload = false,
        Opt::MaxFlows => options.max_flows = Some(max_flows(name, value)?),
        Opt::Stats => options.stats = true,
        Opt::Debug => options.log = LogLevel::Debug,
        Opt::Trace => options.log = LogLevel::Trace,
        Opt::Quiet => options.log = LogLevel::Quiet,
        Opt::Help | Opt::Version => {}
        Opt::Kernel
        | Opt::Initrd
        | Opt::Cmdline
        | Opt::Mem
        | Opt::Console
        | Opt::DeviceOnCmdline => c.vmm.apply(opt, name, value)?,
    }
    Ok(())
}

fn finish(c: Collected, sub: Option<Sub>, argv: Vec<OsString>) -> Result<Command, UsageError> {
    let Some(sub) = sub else {
        return Err(UsageError::new(
            "missing command: expected \"slipway run [OPTIONS] [--] CMD [ARGS...]\", \
             \"slipway attach [OPTIONS] --netns PATH|PID\", \
             \"slipway stream [OPTIONS] --socket PATH\" \
             or \"slipway vhost-user [OPTIONS] --socket PATH\"",
        ));
    };
    if let Some(name) = c.vmm.first_given() {
        return Err(UsageError::new(format!("{name}: only for slipway-vmm")));
    }
    let mut options = c.options;
    options.tcp_forwards = forwards("-t", c.tcp_specs)?;
    options.udp_forwards = forwards("-u", c.udp_specs)?;
    if sub != Sub::Stream {
        let stream_only = [
            (c.fd.is_some(), "--fd"),
            (c.keep_listening, "--keep-listening"),
        ];
        if let Some((_, name)) = stream_only.iter().find(|(given, _)| *given) {
            return Err(UsageError::new(format!("{name}: only for stream")));
        }
        if sub != Sub::VhostUser && c.socket.is_some() {
            return Err(UsageError::new("--socket: only for stream and vhost-user"));
        }
    }
    match sub {
        Sub::VhostUser => vhost_user(options, c.netns, c.socket, c.ifname_set),
        Sub::Stream => stream(
            options,
            c.netns,
            c.socket,
            c.fd,
            c.keep_listening,
            c.ifname_set,
        ),
        Sub::Run => {
            if c.netns.is_some() {
                return Err(UsageError::new(
                    "--netns: only for attach: run makes its own namespace",
                ));
            }
            if argv.is_empty() {
                return Err(UsageError::new(
                    "run: missing CMD: expected \"slipway run [OPTIONS] [--] CMD [ARGS...]\"",
                ));
            }
            Ok(Command::Run { options, argv })
        }
        Sub::Attach => match c.netns {
            Some(netns) => Ok(Command::Attach { options, netns }),
            None => Err(UsageError::new(
                "attach: missing --netns: expected \"slipway attach [OPTIONS] --netns PATH|PID\"",
            )),
        },
    }
}

/// Checks `stream`'s own options: exactly one of `--socket` and `--fd`,
/// `--keep-listening` only with a socket to listen on, nothing about a
/// namespace.
fn stream(
    options: Options,
    netns: Option<NetnsTarget>,
    socket: Option<PathBuf>,
    fd: Option<i32>,
    keep_listening: bool,
    ifname_set: bool,
) -> Result<Command, UsageError> {
    if netns.is_some() {
        return Err(UsageError::new(
            "--netns: only for attach: stream serves a socket, not a namespace",
        ));
    }
    if ifname_set {
        return Err(UsageError::new(
            "--ifname: only for run and attach: the guest names its own interface",
        ));
    }
    let target = match (socket, fd) {
        (Some(path), None) => StreamTarget::Socket(path),
        (None, Some(fd)) if keep_listening => {
            return Err(UsageError::new(format!(
                "--keep-listening: not with --fd {fd}: there is no socket to listen on"
            )));
        }
        (None, Some(fd)) => StreamTarget::Fd(fd),
        (Some(_), Some(_)) => {
            return Err(UsageError::new(
                "stream: --socket and --fd exclude each other: give one",
            ));
        }
        (None, None) => {
            return Err(UsageError::new(
                "stream: missing --socket: expected \"slipway stream [OPTIONS] --socket PATH\"",
            ));
        }
    };
    Ok(Command::Stream {
        options,
        target,
        keep_listening,
    })
}

/// Checks `vhost-user`'s own options: `--socket`, nothing about a
/// namespace.
fn vhost_user(
    options: Options,
    netns: Option<NetnsTarget>,
    socket: Option<PathBuf>,
    ifname_set: bool,
) -> Result<Command, UsageError> {
    if netns.is_some() {
        return Err(UsageError::new(
            "--netns: only for attach: vhost-user serves a socket, not a namespace",
        ));
    }
    if ifname_set {
        return Err(UsageError::new(
            "--ifname: only for run and attach: the guest names its own interface",
        ));
    }
    match socket {
        Some(socket) => Ok(Command::VhostUser { options, socket }),
        None => Err(UsageError::new(
            "vhost-user: missing --socket: expected \"slipway vhost-user [OPTIONS] --socket PATH\"",
        )),
    }
}

fn fd(name: &str, value: &str) -> Result<i32, UsageError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UsageError::invalid_form(name, value, Opt::Fd));
    }
    value
        .parse::<i32>()
        .map_err(|_| UsageError::invalid_form(name, value, Opt::Fd))
}

fn max_flows(name: &str, value: &str) -> Result<u64, UsageError> {
    let bad = || UsageError::invalid_form(name, value, Opt::MaxFlows);
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match value.parse::<u64>() {
        Ok(n) if n <= flow_table::Limits::DEFAULT.total() => Ok(n),
        _ => Err(bad()),
    }
}

fn port_spec(name: &str, value: &str) -> Result<PortSpec, UsageError> {
    let spec: PortSpec = value
        .parse()
        .map_err(|e| UsageError::invalid(name, value, e))?;
    if spec.interface().is_some() {
        return Err(UsageError::invalid(
            name,
            value,
            "binding a forward to an interface (%IFACE) is not supported: \
             expected [ADDR/]FIRST[-LAST][:TOFIRST[-TOLAST]]",
        ));
    }
    Ok(spec)
}

/// Combines the specs of repeated `-t` (or `-u`) options into one table.
fn forwards(name: &str, specs: Vec<(String, PortSpec)>) -> Result<PortForwards, UsageError> {
    let has_none = specs.iter().any(|(text, _)| text == "none");
    if has_none && specs.len() > 1 {
        return Err(UsageError::new(format!(
            "{name}: \"none\" cannot be combined with other {name} options"
        )));
    }
    PortForwards::from_specs(specs.into_iter().map(|(_, spec)| spec))
        .map_err(|e| UsageError::new(format!("{name}: {e}")))
}

fn mtu(name: &str, value: &str) -> Result<u16, UsageError> {
    let bad = || UsageError::invalid_form(name, value, Opt::Mtu);
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match value.parse::<u16>() {
        Ok(n) if (MTU_MIN..=MTU_MAX).contains(&n) => Ok(n),
        _ => Err(bad()),
    }
}

/// `none`, or an address of the gateway: nat-core maps host loopback only
/// through the gateway, so no other guest address can take its place.
fn host_loopback(name: &str, value: &str) -> Result<HostLoopback, UsageError> {
    if value == "none" {
        return Ok(HostLoopback::OFF);
    }
    let Ok(addr) = value.parse::<IpAddr>() else {
        return Err(UsageError::invalid_form(name, value, Opt::MapHostLoopback));
    };
    let plan = Plan::default();
    let is_gateway = match addr {
        IpAddr::V4(a) => plan.ipv4().is_some_and(|p| p.gateway() == a),
        IpAddr::V6(a) => plan
            .ipv6()
            .is_some_and(|p| p.gateway() == a || p.gateway_link_local() == a),
    };
    if is_gateway {
        Ok(HostLoopback::LOOPBACK)
    } else {
        Err(UsageError::invalid(
            name,
            value,
            "slipway maps host loopback only through the gateway: \
             expected 10.0.2.2 (or fd00:0:0:2::2), or none",
        ))
    }
}

fn deny(name: &str, value: &str) -> Result<Vec<Cidr>, UsageError> {
    if value.is_empty() {
        return Err(UsageError::invalid_form(name, value, Opt::Deny));
    }
    value
        .split(',')
        .map(|part| {
            part.parse::<Cidr>().map_err(|e| {
                UsageError::invalid(name, value, format!("{e} (expected CIDR[,CIDR...])"))
            })
        })
        .collect()
}

fn dns_upstream(name: &str, value: &str) -> Result<SocketAddr, UsageError> {
    let addr = value.parse::<SocketAddr>().ok().or_else(|| {
        value
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    });
    match addr {
        Some(addr) if addr.port() == 0 => Err(UsageError::invalid(
            name,
            value,
            "port 0: expected a port from 1 to 65535",
        )),
        Some(addr) => Ok(addr),
        None => Err(UsageError::invalid_form(name, value, Opt::DnsUpstream)),
    }
}

fn ifname(name: &str, value: &str) -> Result<String, UsageError> {
    let ok = (1..=15).contains(&value.len())
        && value != "."
        && value != ".."
        && !value
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(value.to_owned())
    } else {
        Err(UsageError::invalid_form(name, value, Opt::Ifname))
    }
}

fn netns(name: &str, value: &str) -> Result<NetnsTarget, UsageError> {
    if value.is_empty() {
        return Err(UsageError::invalid_form(name, value, Opt::Netns));
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return match value.parse::<i32>() {
            Ok(pid) if pid > 0 => Ok(NetnsTarget::Pid(pid)),
            _ => Err(UsageError::invalid(
                name,
                value,
                "not a process id: expected a number from 1 to 2147483647, or a path",
            )),
        };
    }
    Ok(NetnsTarget::Path(value.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn run(list: &[&str]) -> (Options, Vec<OsString>) {
        match parse(&args(list)) {
            Ok(Command::Run { options, argv }) => (options, argv),
            other => panic!("{list:?}: expected run, got {other:?}"),
        }
    }

    fn error(list: &[&str]) -> String {
        match parse(&args(list)) {
            Err(e) => e.to_string(),
            Ok(other) => panic!("{list:?}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn run_with_defaults() {
        let (options, argv) = run(&["run", "true"]);
        assert_eq!(options, Options::default());
        assert_eq!(argv, args(&["true"]));
        assert_eq!(options.mtu, 65520);
        assert_eq!(options.ifname, "eth0");
        assert_eq!(options.host_loopback, HostLoopback::LOOPBACK);
    }

    #[test]
    fn help_and_version_anywhere_before_the_command() {
        for list in [
            &["--help"][..],
            &["-h"],
            &["run", "--help"],
            &["run", "-t", "80", "-h"],
        ] {
            assert_eq!(parse(&args(list)), Ok(Command::Help), "{list:?}");
        }
        assert_eq!(parse(&args(&["-V"])), Ok(Command::Version));
        assert_eq!(parse(&args(&["attach", "--version"])), Ok(Command::Version));
    }

    #[test]
    fn usage_names_both_commands() {
        assert!(USAGE.contains("slipway run [OPTIONS] [--] CMD [ARGS...]"));
        assert!(USAGE.contains("slipway attach [OPTIONS] --netns PATH|PID"));
    }

    #[test]
    fn command_ends_options_and_keeps_its_own() {
        let (options, argv) = run(&["run", "-d", "sh", "-c", "exit 7", "--mtu", "x"]);
        assert_eq!(options.log, LogLevel::Debug);
        assert_eq!(argv, args(&["sh", "-c", "exit 7", "--mtu", "x"]));
    }

    #[test]
    fn double_dash_ends_options() {
        let (options, argv) = run(&["run", "--stats", "--", "--mtu", "-t"]);
        assert!(options.stats);
        assert!(options.offload);
        assert_eq!(argv, args(&["--mtu", "-t"]));
        let (_, argv) = run(&["run", "--", "--"]);
        assert_eq!(argv, args(&["--"]));
    }

    #[test]
    fn double_dash_outside_run_is_refused() {
        assert!(error(&["--", "run", "true"]).contains("\"--\""));
        assert!(error(&["attach", "--netns", "1", "--", "x"]).contains("\"--\""));
    }

    #[test]
    fn options_before_the_subcommand_count() {
        let (options, _) = run(&["-q", "--mtu", "1500", "run", "true"]);
        assert_eq!((options.log, options.mtu), (LogLevel::Quiet, 1500));
    }

    #[test]
    fn missing_cmd() {
        assert!(error(&["run"]).starts_with("run: missing CMD"));
        assert!(error(&["run", "-d", "--"]).starts_with("run: missing CMD"));
    }

    #[test]
    fn missing_or_unknown_subcommand() {
        assert!(error(&[]).starts_with("missing command"));
        assert!(error(&["-d"]).starts_with("missing command"));
        assert_eq!(
            error(&["walk"]),
            "unknown command \"walk\": expected \"run\", \"attach\", \"stream\" or \"vhost-user\""
        );
    }

    #[test]
    fn unknown_option() {
        assert_eq!(
            error(&["run", "--frobnicate", "true"]),
            "unknown option \"--frobnicate\": see \"slipway --help\""
        );
        assert!(error(&["run", "-x", "true"]).contains("\"-x\""));
        assert!(error(&["run", "--frob=1", "true"]).contains("\"--frob\""));
    }

    #[test]
    fn tcp_and_udp_specs_repeat_and_combine() {
        let (options, _) = run(&[
            "run",
            "-t",
            "8080:80",
            "-t",
            "127.0.0.1/9000-9001",
            "-u53",
            "true",
        ]);
        let tcp: Vec<_> = options
            .tcp_forwards
            .iter()
            .map(|f| (f.bind, f.host_port, f.guest_port))
            .collect();
        let local = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            tcp,
            vec![(None, 8080, 80), (local, 9000, 9000), (local, 9001, 9001)]
        );
        assert_eq!(options.udp_forwards.guest_port_for(53), Some(53));
        let (options, _) = run(&["run", "--tcp-ports=22", "--udp-ports", "none", "true"]);
        assert_eq!(options.tcp_forwards.guest_port_for(22), Some(22));
        assert!(options.udp_forwards.is_empty());
    }

    #[test]
    fn bad_port_specs_name_the_option() {
        let e = error(&["run", "-t", "abc", "true"]);
        assert!(e.starts_with("-t: invalid value \"abc\": "), "{e}");
        let e = error(&["run", "--udp-ports", "70000", "true"]);
        assert!(
            e.starts_with("--udp-ports: invalid value \"70000\": "),
            "{e}"
        );
        let e = error(&["run", "-t", "80", "-t", "79-81", "true"]);
        assert!(
            e.starts_with("-t: host port 80 is forwarded by both"),
            "{e}"
        );
        let e = error(&["run", "-t", "none", "-t", "80", "true"]);
        assert!(e.contains("\"none\" cannot be combined"), "{e}");
        let e = error(&["run", "-t", "127.0.0.1%lo/80", "true"]);
        assert!(e.contains("interface"), "{e}");
        assert!(error(&["run", "-t"]).starts_with("-t: missing value: expected a port spec"));
    }

    #[test]
    fn mtu_range() {
        assert_eq!(run(&["run", "--mtu", "68", "x"]).0.mtu, 68);
        assert_eq!(run(&["run", "--mtu=65520", "x"]).0.mtu, 65520);
        for bad in ["abc", "67", "65521", "", "+1500", "1e3", "99999999999"] {
            assert_eq!(
                error(&["run", "--mtu", bad, "x"]),
                format!("--mtu: invalid value {bad:?}: expected a number from 68 to 65520")
            );
        }
        assert_eq!(
            error(&["run", "--mtu"]),
            "--mtu: missing value: expected a number from 68 to 65520"
        );
    }

    #[test]
    fn map_host_loopback_takes_the_gateway_or_none() {
        let hl = |v: &str| run(&["run", "--map-host-loopback", v, "x"]).0.host_loopback;
        assert_eq!(hl("none"), HostLoopback::OFF);
        assert_eq!(hl("10.0.2.2"), HostLoopback::LOOPBACK);
        assert_eq!(hl("fd00:0:0:2::2"), HostLoopback::LOOPBACK);
        let e = error(&["run", "--map-host-loopback", "10.0.2.9", "x"]);
        assert!(
            e.starts_with("--map-host-loopback: invalid value \"10.0.2.9\": "),
            "{e}"
        );
        assert!(e.contains("only through the gateway"), "{e}");
        let e = error(&["run", "--map-host-loopback", "gateway", "x"]);
        assert!(e.contains("expected the gateway address 10.0.2.2"), "{e}");
    }

    #[test]
    fn deny_repeats_and_takes_lists() {
        let (options, _) = run(&[
            "run",
            "--deny",
            "10.0.0.0/8,fd00::/8",
            "--deny=192.0.2.1",
            "x",
        ]);
        let deny: Vec<String> = options.deny.iter().map(ToString::to_string).collect();
        assert_eq!(deny, ["10.0.0.0/8", "fd00::/8", "192.0.2.1/32"]);
        let e = error(&["run", "--deny", "10.0.0.1/8", "x"]);
        assert!(
            e.starts_with("--deny: invalid value \"10.0.0.1/8\": host bits set"),
            "{e}"
        );
        assert!(error(&["run", "--deny", "", "x"]).starts_with("--deny: invalid value \"\""));
    }

    #[test]
    fn dns_upstream_forms() {
        let dns = |v: &str| run(&["run", "--dns-upstream", v, "x"]).0.dns_upstream;
        let v4 = |a, b, c, d, port| {
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::new(a, b, c, d),
                port,
            )))
        };
        assert_eq!(dns("127.0.0.1"), v4(127, 0, 0, 1, 53));
        assert_eq!(dns("127.0.0.1:5353"), v4(127, 0, 0, 1, 5353));
        assert_eq!(dns("[::1]:5353"), Some("[::1]:5353".parse().unwrap()));
        assert_eq!(dns("::1"), Some("[::1]:53".parse().unwrap()));
        for bad in ["localhost", "1.2.3.4:", "1.2.3.4:0", "::1:53:x"] {
            let e = error(&["run", "--dns-upstream", bad, "x"]);
            assert!(
                e.starts_with(&format!("--dns-upstream: invalid value {bad:?}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn pcap_stats_ifname_and_log_levels() {
        let (options, _) = run(&[
            "run",
            "--pcap",
            "/tmp/x.pcap",
            "--stats",
            "--ifname",
            "tap0",
            "--trace",
            "x",
        ]);
        assert_eq!(options.pcap, Some(PathBuf::from("/tmp/x.pcap")));
        assert!(options.stats);
        assert_eq!(options.ifname, "tap0");
        assert_eq!(options.log, LogLevel::Trace);
        assert_eq!(run(&["run", "-d", "-q", "x"]).0.log, LogLevel::Quiet);
        assert!(error(&["run", "--pcap=", "x"]).starts_with("--pcap: invalid value \"\""));
        for bad in ["", "a/b", "a:b", "a b", "sixteen-bytes-xx", ".."] {
            let e = error(&["run", "--ifname", bad, "x"]);
            assert!(
                e.starts_with(&format!("--ifname: invalid value {bad:?}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn max_flows_takes_a_count_up_to_the_default_total() {
        assert_eq!(run(&["run", "x"]).0.max_flows, None);
        assert_eq!(
            run(&["run", "--max-flows", "500", "x"]).0.max_flows,
            Some(500)
        );
        assert_eq!(
            run(&["run", "--max-flows=82944", "x"]).0.max_flows,
            Some(82_944)
        );
        for bad in ["", "-1", "82945", "many"] {
            let e = error(&["run", "--max-flows", bad, "x"]);
            assert!(
                e.starts_with(&format!(
                    "--max-flows: invalid value {bad:?}: expected a number"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn flags_take_no_value() {
        assert_eq!(error(&["run", "--stats=1", "x"]), "--stats: takes no value");
        assert_eq!(
            error(&["run", "-dq", "x"]),
            "-d: takes no value: write short options separately, not \"-dq\""
        );
    }

    #[test]
    fn attach_needs_netns() {
        let parsed = parse(&args(&["attach", "--netns", "/run/netns/a", "-t", "80"]));
        let Ok(Command::Attach { options, netns }) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(netns, NetnsTarget::Path("/run/netns/a".into()));
        assert_eq!(options.tcp_forwards.guest_port_for(80), Some(80));
        let parsed = parse(&args(&["attach", "--netns=1234"]));
        assert!(matches!(
            parsed,
            Ok(Command::Attach {
                netns: NetnsTarget::Pid(1234),
                ..
            })
        ));
        assert!(error(&["attach"]).starts_with("attach: missing --netns"));
        assert!(error(&["attach", "--netns", "0"]).starts_with("--netns: invalid value \"0\""));
        assert!(error(&["attach", "--netns", "1", "sh"]).contains("attach runs no command"));
        assert!(error(&["run", "--netns", "1", "sh"]).starts_with("--netns: only for attach"));
    }

    fn stream_parsed(list: &[&str]) -> (Options, StreamTarget, bool) {
        match parse(&args(list)) {
            Ok(Command::Stream {
                options,
                target,
                keep_listening,
            }) => (options, target, keep_listening),
            other => panic!("{list:?}: expected stream, got {other:?}"),
        }
    }

    #[test]
    fn stream_takes_a_socket_or_an_fd_and_the_shared_options() {
        let (options, target, keep) = stream_parsed(&[
            "stream",
            "--socket",
            "/tmp/s.sock",
            "-t",
            "2222:22",
            "--mtu",
            "1500",
            "--pcap",
            "/tmp/x.pcap",
            "-q",
        ]);
        assert_eq!(target, StreamTarget::Socket(PathBuf::from("/tmp/s.sock")));
        assert!(!keep);
        assert_eq!(options.tcp_forwards.guest_port_for(2222), Some(22));
        assert_eq!(
            (options.mtu, options.log, options.pcap.is_some()),
            (1500, LogLevel::Quiet, true)
        );
        let (_, target, keep) = stream_parsed(&["stream", "--socket=s", "--keep-listening"]);
        assert_eq!((target, keep), (StreamTarget::Socket("s".into()), true));
        let (_, target, _) = stream_parsed(&["stream", "--fd", "3"]);
        assert_eq!(target, StreamTarget::Fd(3));
        assert!(USAGE.contains("slipway stream [OPTIONS] --socket PATH"));
    }

    #[test]
    fn stream_option_errors_name_the_option() {
        assert!(error(&["stream"]).starts_with("stream: missing --socket"));
        assert!(error(&["stream", "--socket", "a", "--fd", "3"]).contains("exclude each other"));
        assert!(error(&["stream", "--fd", "x"]).starts_with("--fd: invalid value \"x\""));
        assert!(error(&["stream", "--fd", "-1"]).starts_with("--fd: invalid value \"-1\""));
        assert!(error(&["stream", "--socket="]).starts_with("--socket: invalid value \"\""));
        assert!(
            error(&["stream", "--fd", "3", "--keep-listening"])
                .starts_with("--keep-listening: not with --fd")
        );
        assert!(
            error(&["stream", "--socket", "s", "--ifname", "x"])
                .starts_with("--ifname: only for run and attach")
        );
        assert!(
            error(&["stream", "--socket", "s", "--netns", "1"])
                .starts_with("--netns: only for attach")
        );
        assert!(error(&["stream", "--socket", "s", "qemu"]).contains("stream runs no command"));
        assert_eq!(
            error(&["run", "--socket", "s", "true"]),
            "--socket: only for stream and vhost-user"
        );
        assert_eq!(
            error(&["attach", "--netns", "1", "--keep-listening"]),
            "--keep-listening: only for stream"
        );
    }

    #[test]
    fn vhost_user_takes_a_socket_and_the_shared_options() {
        let parsed = parse(&args(&[
            "vhost-user",
            "--socket",
            "/tmp/v.sock",
            "-t",
            "8080",
            "--mtu",
            "1500",
        ]));
        let Ok(Command::VhostUser { options, socket }) = parsed else {
            panic!("expected vhost-user, got {parsed:?}");
        };
        assert_eq!(socket, PathBuf::from("/tmp/v.sock"));
        assert_eq!(options.mtu, 1500);
        assert!(USAGE.contains("slipway vhost-user [OPTIONS] --socket PATH"));
        assert!(error(&["vhost-user"]).starts_with("vhost-user: missing --socket"));
        assert_eq!(
            error(&["vhost-user", "--socket", "s", "--fd", "3"]),
            "--fd: only for stream"
        );
        assert!(
            error(&["vhost-user", "--socket", "s", "--netns", "1"])
                .starts_with("--netns: only for attach")
        );
        assert!(error(&["vhost-user", "--socket", "s", "qemu"]).contains("runs no command"));
    }

    #[test]
    fn non_utf8_command_arguments_pass_through() {
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(vec![b'a', 0xff]);
        let list = vec!["run".into(), "echo".into(), odd.clone()];
        let Ok(Command::Run { argv, .. }) = parse(&list) else {
            panic!()
        };
        assert_eq!(argv, vec![OsString::from("echo"), odd]);
    }
}
