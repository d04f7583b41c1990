//! The paths a workload can take between a guest and host-side servers:
//! slipway, pasta and slirp4netns serving a network namespace, the kernel's
//! veth pair, plain host loopback, and the VM paths of [`crate::vm`].
//!
//! A [`Path`] knows whether it can run here and how to start a [`Guest`]: an
//! environment in which a command can run, plus the addresses by which the
//! guest reaches the host-side servers and the host reaches the guest. A VM
//! path implements the same two traits (its guest commands run inside the
//! VM; its stack process is the one whose costs are measured).
//!
//! Topology, so that nothing can leave the machine: every stack runs in a
//! "host" namespace the harness makes, whose only ways out are its loopback
//! and a veth into an empty namespace (the uplink the peers insist on
//! having, with a default route into nothing). The servers bind to
//! 127.0.0.1 there, and the stacks map the guest's gateway 10.0.2.2 to it.
//! The veth path's guest namespace is joined to the host namespace directly.

use std::cell::Cell;
use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::path::{Path as FsPath, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::sys::{self, Child, NetNs};
use crate::tools::ports;
use crate::workloads::Workload;

/// How long a stack may take to configure its guest.
const START_LIMIT: Duration = Duration::from_secs(15);
/// The guest's name for the host (the gateway, mapped to host loopback).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The DNS address the stacks answer on.
pub const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// The guest's address (slipway's and pasta's as configured here).
pub const GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The guest's name for the host over IPv6 (slipway's gateway, mapped to
/// host loopback ::1; pasta's and veth's as configured here).
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 2);
/// The guest's IPv6 address where the harness assigns it (pasta, veth).
pub const GUEST_ADDR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0x15);
/// Why slirp4netns's IPv6 workloads are absent.
const SLIRP_NO_IPV6: &str = "slirp4netns runs without --enable-ipv6 here (and maps no \
                             IPv6 address to host loopback)";

/// Where the host-side servers of one family bind and the address by
/// which the guest reaches them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostSide {
    /// The servers' bind address.
    pub bind: IpAddr,
    /// The guest's destination for them.
    pub addr: IpAddr,
}

impl HostSide {
    /// The IPv6 host side of a user-mode stack: servers on host loopback,
    /// reached through the gateway the stack maps to it.
    const MAPPED_LOOPBACK6: HostSide = HostSide {
        bind: IpAddr::V6(Ipv6Addr::LOCALHOST),
        addr: IpAddr::V6(GATEWAY6),
    };
}

/// The namespace the stacks and host-side servers run in, and the empty
/// namespace its uplink leads to. Made once per harness run.
pub struct Host {
    ns: NetNs,
    _void: NetNs,
    prefix: String,
    resolv: PathBuf,
    next_forward: Cell<u16>,
    _dir: TempDir,
}

impl Host {
    /// Builds the host namespace. `prefix` names every namespace the run
    /// makes (`PREFIX-host`, `PREFIX-PATH`).
    ///
    /// # Errors
    /// What `ip` said, or the temporary directory could not be made.
    pub fn create(prefix: &str) -> Result<Self, String> {
        let dir = TempDir::new(prefix)?;
        let resolv = dir.0.join("resolv.conf");
        std::fs::write(&resolv, "nameserver 127.0.0.1\n")
            .map_err(|e| format!("{}: {e}", resolv.display()))?;
        let ns = NetNs::create(&format!("{prefix}-host"))?;
        let void = NetNs::create(&format!("{prefix}-void"))?;
        ns.ip(&[
            "link",
            "add",
            "uplink",
            "type",
            "veth",
            "peer",
            "name",
            "void",
            "netns",
            void.name(),
        ])?;
        ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "uplink"])?;
        ns.ip(&["link", "set", "uplink", "up"])?;
        // With its far end down the uplink's routes are "linkdown", and
        // pasta then takes no IPv6 template from it.
        void.ip(&["link", "set", "void", "up"])?;
        ns.ip(&[
            "route",
            "add",
            "default",
            "via",
            "192.0.2.254",
            "dev",
            "uplink",
        ])?;
        ns.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "uplink", "nodad"])?;
        ns.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:1::fe",
            "dev",
            "uplink",
        ])?;
        Ok(Self {
            ns,
            _void: void,
            prefix: prefix.to_owned(),
            resolv,
            next_forward: Cell::new(ports::FORWARD),
            _dir: dir,
        })
    }

    /// The host namespace.
    #[must_use]
    pub fn ns(&self) -> &NetNs {
        &self.ns
    }

    /// `program` to be run in the host namespace.
    #[must_use]
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.ns.command(program)
    }

    /// `program` to be run in the host namespace with a private
    /// `/etc/resolv.conf` naming 127.0.0.1, where the DNS responder
    /// listens: how the peers, which read the resolver from that file, are
    /// pointed at it. The program's process id is the spawned one.
    #[must_use]
    pub fn stack_command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = self.ns.command("unshare");
        command
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"")
            .arg(&self.resolv)
            .arg(program);
        command
    }

    /// A host-side port for the next guest's inbound forward. Each guest
    /// gets its own: the last guest's connections may still hold the
    /// previous one in TIME-WAIT, and not every stack binds with
    /// `SO_REUSEADDR`.
    pub fn forward_port(&self) -> u16 {
        let port = self.next_forward.get();
        let next = port.checked_add(1).filter(|p| *p < ports::FORWARD_END);
        self.next_forward.set(next.unwrap_or(ports::FORWARD));
        port
    }

    fn guest_ns(&self, path: &str) -> Result<NetNs, String> {
        NetNs::create(&format!("{}-{path}", self.prefix))
    }
}

/// A path: a way for a guest to reach the host side.
pub trait Path {
    /// The name in reports (`slipway-65520`).
    fn name(&self) -> &str;
    /// Why the path cannot run on this machine, if it cannot.
    fn absent(&self) -> Option<String>;
    /// Starts a guest environment served by this path.
    ///
    /// # Errors
    /// The stack would not start or configure the guest in time.
    fn start(&self, host: &Host) -> Result<Box<dyn Guest>, String>;
}

/// A running guest environment. Dropping it stops the stack and removes
/// the guest.
pub trait Guest {
    /// `program` to be run inside the guest. The harness runs its own
    /// binary (the client subcommands) and iperf3 this way.
    fn command(&self, program: &OsStr) -> Command;
    /// The address the host-side servers bind to.
    fn server_bind(&self) -> Ipv4Addr;
    /// The address by which the guest reaches those servers.
    fn host_addr(&self) -> Ipv4Addr;
    /// The DNS address the guest queries (port 53).
    fn dns_addr(&self) -> Ipv4Addr;
    /// The address by which the host side reaches the guest's echo server
    /// on [`ports::GUEST_ECHO`].
    fn forward_addr(&self) -> SocketAddrV4;
    /// The host side over IPv6, or why the path carries no IPv6 here (the
    /// IPv6 workloads are then absent, not failed).
    fn ipv6(&self) -> Result<HostSide, &'static str> {
        Err("the path measures IPv4 only")
    }
    /// The process of the stack, whose CPU time, wakeups and memory are
    /// measured; `None` for the kernel's own paths.
    fn stack_pid(&self) -> Option<u32>;
    /// Why [`Guest::stack_pid`] is `None`, as the stack metrics' absence
    /// is reported.
    fn no_stack_why(&self) -> &'static str {
        "no stack process to measure"
    }
    /// Why `workload` cannot run in this guest, if it cannot.
    fn skip(&self, workload: Workload) -> Option<&'static str> {
        let _ = workload;
        None
    }
    /// The longest a timed workload may run in this guest (shorter than
    /// `--duration` where the guest is slow, as an emulated CPU is).
    fn max_duration(&self) -> Option<Duration> {
        None
    }
}

/// Every path the harness knows, in report order. `slipway` is the binary
/// under test; `pasta_current` a pasta built from current sources, beside
/// the packaged one in PATH; `target` the cargo target directory holding
/// (or to hold) the VM paths' guest image.
#[must_use]
pub fn all(
    slipway: &FsPath,
    pasta_current: Option<&FsPath>,
    target: &FsPath,
) -> Vec<Box<dyn Path>> {
    let mut all: Vec<Box<dyn Path>> = vec![
        Box::new(Slipway {
            binary: slipway.to_path_buf(),
            mtu: 65520,
            name: "slipway-65520".into(),
        }),
        Box::new(Slipway {
            binary: slipway.to_path_buf(),
            mtu: 1500,
            name: "slipway-1500".into(),
        }),
        Box::new(Pasta {
            name: "pasta",
            binary: sys::find_in_path("pasta")
                .ok_or_else(|| "pasta not installed (cargo xtask bench --install-peers)".into()),
        }),
        Box::new(Pasta {
            name: "pasta-current",
            binary: pasta_current
                .map(FsPath::to_path_buf)
                .ok_or_else(|| "no source-built pasta given (--pasta-current BIN)".into()),
        }),
        Box::new(Slirp {
            mtu: 1500,
            name: "slirp4netns-1500".into(),
        }),
        Box::new(Slirp {
            mtu: 65520,
            name: "slirp4netns-65520".into(),
        }),
        Box::new(Veth),
        Box::new(Loopback),
    ];
    all.extend(crate::vm::paths(slipway, target));
    all
}

/// Why namespace paths cannot run, if they cannot.
#[must_use]
pub fn namespaces_absent() -> Option<String> {
    if !sys::is_root() {
        return Some("needs root to create network namespaces".into());
    }
    if !FsPath::new("/dev/net/tun").exists() {
        return Some("needs /dev/net/tun".into());
    }
    ["ip", "nsenter", "unshare"]
        .into_iter()
        .find(|tool| !sys::in_path(tool))
        .map(|tool| format!("needs {tool} in PATH"))
}

/// A guest namespace served by a stack process in the host namespace.
struct NsGuest {
    // Field order is drop order: the stack stops before its namespace goes.
    stack: Option<Child>,
    ns: NetNs,
    host_addr: Ipv4Addr,
    forward: SocketAddrV4,
    ipv6: Result<HostSide, &'static str>,
    /// The stack is pasta, whose echo relay needs ping sockets.
    pasta: bool,
}

impl Guest for NsGuest {
    fn command(&self, program: &OsStr) -> Command {
        self.ns.command(program)
    }
    fn server_bind(&self) -> Ipv4Addr {
        if self.stack.is_some() {
            Ipv4Addr::LOCALHOST
        } else {
            GATEWAY
        }
    }
    fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }
    fn dns_addr(&self) -> Ipv4Addr {
        if self.stack.is_some() {
            DNS_ADDR
        } else {
            GATEWAY
        }
    }
    fn forward_addr(&self) -> SocketAddrV4 {
        self.forward
    }
    fn ipv6(&self) -> Result<HostSide, &'static str> {
        self.ipv6
    }
    fn stack_pid(&self) -> Option<u32> {
        self.stack.as_ref().map(Child::pid)
    }
    fn skip(&self, workload: Workload) -> Option<&'static str> {
        match workload {
            Workload::Icmp if self.pasta => sys::passt_echo_absent(),
            _ => None,
        }
    }
}

/// Starts `stack` (a command in the host namespace serving `ns`) and waits
/// until the guest has its IPv4 default route. `ipv6` is the guest's IPv6
/// host side, or why it has none; the session waits for that itself, as
/// the guest's address autoconfiguration may take a while longer.
fn start_stack(
    ns: NetNs,
    mut stack: Command,
    forward_port: u16,
    ipv6: Result<HostSide, &'static str>,
) -> Result<NsGuest, String> {
    let mut child = Child::spawn(&mut stack)?;
    let configured = test_support::common::poll_until(START_LIMIT, || {
        !child.running() || ns.has_default_route()
    });
    if !child.running() {
        return Err(format!(
            "{} exited: {}",
            sys::describe(&stack),
            child
                .finish(Duration::from_secs(2))
                .map(|o| o.stderr)
                .unwrap_or_default()
                .trim()
        ));
    }
    if !configured {
        return Err(format!(
            "{} did not configure the guest within {START_LIMIT:?}",
            sys::describe(&stack)
        ));
    }
    Ok(NsGuest {
        stack: Some(child),
        ns,
        host_addr: GATEWAY,
        forward: SocketAddrV4::new(Ipv4Addr::LOCALHOST, forward_port),
        ipv6,
        pasta: false,
    })
}

/// The `-t` option value forwarding host 127.0.0.1:`port` to the guest's
/// echo server (slipway and pasta share the syntax).
fn forward_spec(port: u16) -> String {
    format!("127.0.0.1/{port}:{}", ports::GUEST_ECHO)
}

struct Slipway {
    binary: PathBuf,
    mtu: u16,
    name: String,
}

impl Path for Slipway {
    fn name(&self) -> &str {
        &self.name
    }
    fn absent(&self) -> Option<String> {
        if !self.binary.is_file() {
            return Some(format!(
                "{} not found (build it or pass --slipway)",
                self.binary.display()
            ));
        }
        namespaces_absent()
    }
    fn start(&self, host: &Host) -> Result<Box<dyn Guest>, String> {
        let ns = host.guest_ns(&self.name)?;
        let port = host.forward_port();
        let mut stack = host.stack_command(&self.binary);
        stack
            .args(["attach", "-q", "--mtu", &self.mtu.to_string()])
            .args(["--dns-upstream", &format!("127.0.0.1:{}", ports::DNS)])
            .args(["-t", &forward_spec(port)])
            .arg("--netns")
            .arg(ns.path());
        Ok(Box::new(start_stack(
            ns,
            stack,
            port,
            Ok(HostSide::MAPPED_LOOPBACK6),
        )?))
    }
}

/// pasta: the packaged one in PATH, or one built from current sources.
struct Pasta {
    name: &'static str,
    /// The binary, or why there is none.
    binary: Result<PathBuf, String>,
}

impl Path for Pasta {
    fn name(&self) -> &str {
        self.name
    }
    fn absent(&self) -> Option<String> {
        match &self.binary {
            Err(why) => Some(why.clone()),
            Ok(binary) if !binary.is_file() => Some(format!("{} not found", binary.display())),
            Ok(_) => namespaces_absent(),
        }
    }
    fn start(&self, host: &Host) -> Result<Box<dyn Guest>, String> {
        let binary = self.binary.as_ref().map_err(Clone::clone)?;
        let ns = host.guest_ns(self.name)?;
        let port = host.forward_port();
        let mut stack = host.stack_command(binary);
        // Foreground, as root (pasta otherwise drops to nobody and then
        // cannot enter the namespace), slipway's address plan in both
        // families, each gateway mapped to host loopback (pasta's default
        // for the gateway), DNS at 10.0.2.3 forwarded to the resolver, and
        // only the one inbound forward (no automatic port scanning, which
        // wakes pasta up).
        let (guest6, gateway6) = (GUEST_ADDR6.to_string(), GATEWAY6.to_string());
        stack
            .args(["-f", "-q", "--runas", "0", "--config-net"])
            .args(["-a", "10.0.2.15", "-n", "24", "-g", "10.0.2.2"])
            .args(["-a", &guest6, "-g", &gateway6])
            .args(["-m", "65520"])
            .args(["--dns-forward", "10.0.2.3"])
            .args([
                "-t",
                &forward_spec(port),
                "-u",
                "none",
                "-T",
                "none",
                "-U",
                "none",
            ])
            .arg("--netns")
            .arg(ns.path());
        let guest = start_stack(ns, stack, port, Ok(HostSide::MAPPED_LOOPBACK6))?;
        Ok(Box::new(NsGuest {
            pasta: true,
            ..guest
        }))
    }
}

struct Slirp {
    mtu: u16,
    name: String,
}

/// The address slirp4netns gives its guest.
const SLIRP_GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);

impl Path for Slirp {
    fn name(&self) -> &str {
        &self.name
    }
    fn absent(&self) -> Option<String> {
        if !sys::in_path("slirp4netns") {
            return Some("slirp4netns not installed (cargo xtask bench --install-peers)".into());
        }
        namespaces_absent()
    }
    fn start(&self, host: &Host) -> Result<Box<dyn Guest>, String> {
        let ns = host.guest_ns(&self.name)?;
        let dir = TempDir::new(&format!("{}-api", self.name))?;
        let api = dir.0.join("api.sock");
        let mut stack = host.stack_command("slirp4netns");
        stack
            .args([
                "--configure",
                "--mtu",
                &self.mtu.to_string(),
                "--netns-type=path",
            ])
            .arg(format!("--api-socket={}", api.display()))
            .arg(ns.path())
            .arg("tap0");
        let port = host.forward_port();
        let guest = start_stack(ns, stack, port, Err(SLIRP_NO_IPV6))?;
        slirp_forward(&api, port)?;
        Ok(Box::new(guest))
    }
}

/// Asks slirp4netns, through its API socket, to forward 127.0.0.1:`port`
/// to the guest's echo port.
fn slirp_forward(api: &FsPath, port: u16) -> Result<(), String> {
    use std::io::{Read, Write};
    let request = serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": {
            "proto": "tcp",
            "host_addr": "127.0.0.1",
            "host_port": port,
            "guest_addr": SLIRP_GUEST.to_string(),
            "guest_port": ports::GUEST_ECHO,
        }
    });
    let mut socket = std::os::unix::net::UnixStream::connect(api)
        .map_err(|e| format!("slirp4netns API {}: {e}", api.display()))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| format!("slirp4netns API: {e}"))?;
    socket
        .write_all(request.to_string().as_bytes())
        .and_then(|()| socket.shutdown(std::net::Shutdown::Write))
        .map_err(|e| format!("slirp4netns API: {e}"))?;
    let mut reply = String::new();
    socket
        .read_to_string(&mut reply)
        .map_err(|e| format!("slirp4netns API: {e}"))?;
    if reply.contains("\"return\"") {
        Ok(())
    } else {
        Err(format!("slirp4netns add_hostfwd: {}", reply.trim()))
    }
}

struct Veth;

impl Path for Veth {
    fn name(&self) -> &str {
        "veth"
    }
    fn absent(&self) -> Option<String> {
        namespaces_absent()
    }
    fn start(&self, host: &Host) -> Result<Box<dyn Guest>, String> {
        let ns = host.guest_ns("veth")?;
        host.ns().ip(&[
            "link",
            "add",
            "guest0",
            "mtu",
            "65520",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "mtu",
            "65520",
            "netns",
            ns.name(),
        ])?;
        host.ns()
            .ip(&["addr", "add", "10.0.2.2/24", "dev", "guest0"])?;
        host.ns().ip(&["link", "set", "guest0", "up"])?;
        ns.ip(&["addr", "add", "10.0.2.15/24", "dev", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        ns.ip(&["route", "add", "default", "via", "10.0.2.2"])?;
        // IPv6 on both ends, without duplicate address detection, which
        // would leave the addresses tentative (unbindable) for a second.
        let (host6, guest6) = (format!("{GATEWAY6}/64"), format!("{GUEST_ADDR6}/64"));
        host.ns()
            .ip(&["addr", "add", &host6, "dev", "guest0", "nodad"])?;
        ns.ip(&["addr", "add", &guest6, "dev", "eth0", "nodad"])?;
        let gateway6 = IpAddr::V6(GATEWAY6);
        Ok(Box::new(NsGuest {
            stack: None,
            ns,
            host_addr: GATEWAY,
            forward: SocketAddrV4::new(GUEST_ADDR, ports::GUEST_ECHO),
            ipv6: Ok(HostSide {
                bind: gateway6,
                addr: gateway6,
            }),
            pasta: false,
        }))
    }
}

struct Loopback;

/// The host namespace as its own guest: client and server both on
/// 127.0.0.1.
struct LoopbackGuest {
    netns: PathBuf,
}

impl Path for Loopback {
    fn name(&self) -> &str {
        "loopback"
    }
    fn absent(&self) -> Option<String> {
        namespaces_absent()
    }
    fn start(&self, host: &Host) -> Result<Box<dyn Guest>, String> {
        Ok(Box::new(LoopbackGuest {
            netns: host.ns().path(),
        }))
    }
}

impl Guest for LoopbackGuest {
    fn command(&self, program: &OsStr) -> Command {
        sys::nsenter(&self.netns, program)
    }
    fn server_bind(&self) -> Ipv4Addr {
        Ipv4Addr::LOCALHOST
    }
    fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::LOCALHOST
    }
    fn dns_addr(&self) -> Ipv4Addr {
        Ipv4Addr::LOCALHOST
    }
    fn forward_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, ports::GUEST_ECHO)
    }
    fn ipv6(&self) -> Result<HostSide, &'static str> {
        let loopback = IpAddr::V6(Ipv6Addr::LOCALHOST);
        Ok(HostSide {
            bind: loopback,
            addr: loopback,
        })
    }
    fn stack_pid(&self) -> Option<u32> {
        None
    }
}

/// A directory under the system's temporary directory, removed when
/// dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Makes a fresh directory whose name starts with `prefix`.
    ///
    /// # Errors
    /// The directory could not be made.
    pub fn new(prefix: &str) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
