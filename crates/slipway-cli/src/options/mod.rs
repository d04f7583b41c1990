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

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use nat_core::{Cidr, HostLoopback, PortForwards};

mod parse;
mod plan;
mod table;
#[cfg(test)]
mod tests;
mod usage;
mod values;
mod vmm;

pub use parse::parse;
pub use plan::{AddressOptions, Families, PerFamily};
pub use usage::USAGE;
pub use vmm::{VMM_USAGE, VmmCommand, VmmOptions, parse_vmm};

use parse::{Collected, apply, split_option};
use table::{Opt, expected_form};

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
    /// The address families the guest gets (`-4`, `-6`).
    pub families: Families,
    /// The plan's addresses the options set.
    pub addresses: AddressOptions,
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
            families: Families::Both,
            addresses: AddressOptions::default(),
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
