//! The `slipway` command: `slipway run [OPTIONS] [--] CMD [ARGS...]` runs a
//! command in a new network namespace whose only link is a tap device served
//! by slipway; `slipway attach [OPTIONS] --netns PATH|PID` serves an existing
//! namespace; `slipway stream [OPTIONS] --socket PATH` serves a QEMU guest
//! over a UNIX stream socket (`-netdev stream`); `slipway vhost-user
//! [OPTIONS] --socket PATH` serves a VMM's virtio-net device as a
//! vhost-user backend (`-netdev vhost-user`). See `slipway --help`.
//!
//! Exit status: `run` exits with the command's status (128+N when signal N
//! ended it); 1 when slipway itself fails; 2 on a usage error.

use std::ffi::OsString;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use slipway_cli::options::{
    self as cli, Command, LogLevel, NetnsTarget, Options, StreamTarget, USAGE,
};
use slipway_cli::setup::{Failure, Setup, exit_status, finish, init_logging, setup, stop_signals};

use nat_core::Plan;
use rustix::process::{Resource, getrlimit, setrlimit};
use slipway::Backend;
use slipway::frontend::framing::max_frame_for_mtu;
use slipway::frontend::stream::adopt_connected_fd;
use slipway::frontend::{
    AfterDisconnect, ServeEnd, StopWhen, StreamFrontend, StreamSocket, TapFrontend, pidfd_open,
    pidfd_send_signal,
};
use slipway::netns::{self, Ipv6Watch, Namespace, TapConfig, TapIpv6, TapOffload};
use virtio_net_kvm::vhost_user::VhostUserFrontend;

/// How long slipway keeps serving after the command exits, so that its
/// connections close cleanly on the host side too.
const DRAIN: Duration = Duration::from_millis(500);

/// How long `run` serves the namespace at most, before starting the
/// command, for its kernel to configure IPv6 from the router advertisement
/// (a few milliseconds: it solicits one as the link comes up, and uses the
/// address at once).
const IPV6_AUTOCONF_WAIT: Duration = Duration::from_secs(1);
/// How long each turn of serving lasts while waiting for IPv6.
const IPV6_AUTOCONF_POLL: Duration = Duration::from_millis(5);

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("slipway: {error}");
            eprintln!("Try 'slipway --help' for more information.");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("slipway {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Run { options, argv } => {
            // Not root: a user namespace of our own gives the capabilities
            // the guest's namespace and tap need. Only while single-threaded.
            if !rustix::process::geteuid().is_root() {
                if let Err(error) = slipway::netns::enter_user_namespace() {
                    eprintln!("slipway: {error}");
                    return ExitCode::from(1);
                }
            }
            init_logging(options.log);
            run(&options, &argv)
        }
        Command::Attach { options, netns } => {
            init_logging(options.log);
            attach(&options, &netns)
        }
        Command::Stream {
            options,
            target,
            keep_listening,
        } => {
            init_logging(options.log);
            stream(&options, &target, keep_listening)
        }
        Command::VhostUser { options, socket } => {
            init_logging(options.log);
            vhost_user(&options, &socket)
        }
    };
    exit_status("slipway", result)
}

/// The offloads the tap is opened with: checksums and TSO/GSO unless
/// `--no-offload`.
fn tap_offload(options: &Options) -> TapOffload {
    if options.offload {
        TapOffload::ChecksumTso
    } else {
        TapOffload::None
    }
}

fn tap_config(options: &Options, plan: &Plan) -> TapConfig {
    let v4 = plan.ipv4();
    TapConfig {
        name: options.ifname.clone(),
        mac: plan.guest_mac().0,
        mtu: u32::from(plan.mtu()),
        addr_v4: v4.map(|v4| (v4.guest(), v4.network().prefix_len())),
        gateway_v4: v4.map(nat_core::Ipv4Plan::gateway),
        // The namespace's kernel takes its IPv6 address and default route
        // from the backend's router advertisements (SLAAC), as a guest on
        // any IPv6 link does: the address follows from the guest MAC, and
        // the prefix, MTU and DNS address from the plan in one place. An
        // address given with `-a` (the one DHCPv6 hands out) is set on the
        // interface as well, as IPv4's lease is and as pasta's
        // --config-net does, so that the command has it without a DHCPv6
        // client.
        addr_v6: plan
            .ipv6()
            .and_then(|v6| Some((v6.guest()?, v6.network().prefix_len()))),
        gateway_v6: None,
        ipv6: if plan.ipv6().is_some() {
            TapIpv6::Autoconf
        } else {
            TapIpv6::Disabled
        },
        offload: tap_offload(options),
    }
}

fn open_tap(ns: &Namespace, options: &Options, plan: &Plan) -> Result<OwnedFd, Failure> {
    netns::open_tap(ns, &tap_config(options, plan)).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::AlreadyExists {
            " (choose another name with --ifname)"
        } else {
            ""
        };
        Failure::Runtime(format!(
            "cannot set up the tap device {:?} in the namespace: {e}{hint}",
            options.ifname
        ))
    })
}

fn run(options: &Options, argv: &[OsString]) -> Result<u8, Failure> {
    // The command gets the open files limit slipway was given, not the one
    // `setup` raises for slipway's own flows.
    let inherited = getrlimit(Resource::Nofile);
    let Setup { plan, mut backend } = setup(options)?;
    // The DNS address of IPv4 where the guest has IPv4, else of IPv6.
    let dns = match (plan.ipv4(), plan.ipv6()) {
        (Some(v4), _) => IpAddr::V4(v4.dns()),
        (None, Some(v6)) => IpAddr::V6(v6.dns()),
        (None, None) => return Err(Failure::Runtime("the plan has no family".into())),
    };
    let ns = Namespace::create().map_err(|e| match e.kind() {
        // The message already says what is missing.
        io::ErrorKind::PermissionDenied => Failure::Runtime(e.to_string()),
        _ => Failure::Runtime(format!("cannot create a network namespace: {e}")),
    })?;
    let tap = open_tap(&ns, options, &plan)?;
    let mut frontend = TapFrontend::with_offload(tap.as_fd(), tap_offload(options));
    if plan.ipv6().is_some() {
        await_ipv6(&mut backend, &mut frontend, &ns, &options.ifname)?;
    }
    let resolv = netns::write_resolv_conf(&[dns])
        .map_err(Failure::runtime("cannot write the namespace's resolv.conf"))?;
    let _resolv_guard = RemoveOnDrop(&resolv);
    let raised = getrlimit(Resource::Nofile);
    if let Err(error) = setrlimit(Resource::Nofile, inherited) {
        tracing::debug!(%error, "the command inherits the raised open files limit");
    }
    let spawned = netns::spawn_in(&ns, argv, Some(&resolv));
    if let Err(error) = setrlimit(Resource::Nofile, raised) {
        tracing::warn!(%error, "cannot raise the open files limit again");
    }
    let mut child = spawned.map_err(|e| {
        let name = argv
            .first()
            .map(|a| a.to_string_lossy())
            .unwrap_or_default();
        Failure::Runtime(format!("cannot run {name:?}: {e}"))
    })?;
    let outcome = serve_child(&mut backend, frontend, &mut child);
    let status = match outcome {
        Ok((status, counters)) => {
            finish("slipway", options.stats, &mut backend, &counters.lines());
            status
        }
        Err(failure) => {
            kill_and_reap(&mut child);
            return Err(failure);
        }
    };
    Ok(exit_code(status))
}

/// Serves the namespace until its kernel has an IPv6 address and default
/// route on `ifname` or [`IPV6_AUTOCONF_WAIT`] passes, so that the command
/// finds IPv6 ready as it finds IPv4 (set before it starts).
fn await_ipv6(
    backend: &mut Backend,
    frontend: &mut TapFrontend<'_>,
    ns: &Namespace,
    ifname: &str,
) -> Result<(), Failure> {
    let mut watch = match Ipv6Watch::open(ns, ifname) {
        Ok(watch) => watch,
        Err(error) => {
            tracing::debug!(%error, "no IPv6 to wait for in the namespace");
            return Ok(());
        }
    };
    let started = Instant::now();
    let deadline = started + IPV6_AUTOCONF_WAIT;
    // Bounded by the deadline: each turn serves for a slice of it.
    loop {
        match watch.read() {
            Ok(state) if state.is_configured() => {
                tracing::debug!(
                    elapsed = ?started.elapsed(),
                    addrs = ?state.autoconf_addrs,
                    router = ?state.default_router,
                    "the namespace configured IPv6"
                );
                return Ok(());
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "cannot read the namespace's IPv6 state");
                return Ok(());
            }
        }
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(
                wait = ?IPV6_AUTOCONF_WAIT,
                "the namespace has no IPv6 address and route yet; starting the command anyway"
            );
            return Ok(());
        }
        let serving = StopWhen {
            deadline: Some((now + IPV6_AUTOCONF_POLL).min(deadline)),
            ..StopWhen::default()
        };
        frontend
            .serve(backend, &serving)
            .map_err(Failure::runtime("serving the namespace"))?;
    }
}

/// Serves the namespace until `child` exits and a short drain is over;
/// returns its status and the tap counters.
fn serve_child(
    backend: &mut Backend,
    mut frontend: TapFrontend<'_>,
    child: &mut Child,
) -> Result<(ExitStatus, slipway::frontend::TapCounters), Failure> {
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let pidfd = pidfd_open(pid).map_err(Failure::runtime("pidfd_open"))?;
    // Blocked only now: the child must not inherit a mask that blocks them.
    let signals = stop_signals()?;
    let serving = StopWhen {
        process_exit: Some(pidfd.as_fd()),
        signals: Some(&signals),
        ..StopWhen::default()
    };
    loop {
        let end = frontend
            .serve(backend, &serving)
            .map_err(Failure::runtime("serving the namespace"))?;
        match end {
            ServeEnd::Signal(signal) => {
                // The command decides what a signal means; slipway serves on
                // until it exits.
                tracing::debug!(signal, "passing the signal to the command");
                if let Err(error) = pidfd_send_signal(pidfd.as_fd(), signal) {
                    tracing::debug!(%error, "the command did not take the signal");
                }
            }
            ServeEnd::ProcessExited
            | ServeEnd::Deadline
            | ServeEnd::TcpSettled
            | ServeEnd::Disconnected => break,
        }
    }
    let draining = StopWhen {
        signals: Some(&signals),
        deadline: Some(Instant::now() + DRAIN),
        tcp_settled: true,
        ..StopWhen::default()
    };
    let end = frontend.serve(backend, &draining);
    tracing::debug!(?end, "drained");
    let status = child
        .wait()
        .map_err(Failure::runtime("waiting for the command"))?;
    Ok((status, frontend.counters().clone()))
}

fn attach(options: &Options, target: &NetnsTarget) -> Result<u8, Failure> {
    // Blocked first, so the helper threads of the namespace calls inherit
    // the mask and no signal lands on a thread that does not block it.
    let signals = stop_signals()?;
    let Setup { plan, mut backend } = setup(options)?;
    let process = match target {
        NetnsTarget::Pid(pid) => Some(
            pidfd_open(*pid)
                .map_err(|e| Failure::Runtime(format!("--netns: process {pid}: {e}")))?,
        ),
        NetnsTarget::Path(_) => None,
    };
    let ns =
        Namespace::open(&target.as_arg()).map_err(|e| Failure::Runtime(format!("--netns: {e}")))?;
    let tap = open_tap(&ns, options, &plan)?;
    let mut frontend = TapFrontend::with_offload(tap.as_fd(), tap_offload(options));
    let stop = StopWhen {
        process_exit: process.as_ref().map(AsFd::as_fd),
        signals: Some(&signals),
        ..StopWhen::default()
    };
    let end = frontend
        .serve(&mut backend, &stop)
        .map_err(Failure::runtime("serving the namespace"))?;
    finish_serving(options, end, &mut backend, &frontend.counters().lines());
    Ok(0)
}

/// Logs why serving ended, prints the counters if `--stats` asks, and
/// closes the capture.
fn finish_serving(
    options: &Options,
    end: ServeEnd,
    backend: &mut Backend,
    frontend: &[(&str, u64)],
) {
    match end {
        ServeEnd::ProcessExited => tracing::info!("the namespace's process exited"),
        ServeEnd::Disconnected => tracing::info!("the guest disconnected"),
        ServeEnd::Signal(signal) => tracing::info!(signal, "stopped by a signal"),
        ServeEnd::Deadline | ServeEnd::TcpSettled => {}
    }
    finish("slipway", options.stats, backend, frontend);
}

fn stream(options: &Options, target: &StreamTarget, keep_listening: bool) -> Result<u8, Failure> {
    // Blocked first, before anything could start a thread.
    let signals = stop_signals()?;
    let Setup { plan, mut backend } = setup(options)?;
    let max_frame = max_frame_for_mtu(plan.mtu());
    let mut frontend = match target {
        StreamTarget::Socket(path) => {
            let socket = listen_announced(options, path, "", &qemu_options(path))?;
            let after = if keep_listening {
                AfterDisconnect::Listen
            } else {
                AfterDisconnect::Exit
            };
            StreamFrontend::listen(socket, max_frame, after)
        }
        StreamTarget::Fd(fd) => {
            let client =
                adopt_connected_fd(*fd).map_err(|e| Failure::Usage(format!("--fd: {e}")))?;
            StreamFrontend::connected(client, max_frame)
        }
    };
    let stop = StopWhen {
        signals: Some(&signals),
        ..StopWhen::default()
    };
    let end = frontend
        .serve(&mut backend, &stop)
        .map_err(Failure::runtime("serving the guest"))?;
    finish_serving(options, end, &mut backend, &frontend.counters().lines());
    Ok(0)
}

fn vhost_user(options: &Options, path: &Path) -> Result<u8, Failure> {
    // Blocked first, before anything could start a thread.
    let signals = stop_signals()?;
    let Setup { plan, mut backend } = setup(options)?;
    let qemu = vhost_user_qemu_options(path);
    let socket = listen_announced(options, path, " (RAM: the guest's -m size)", &qemu)?;
    let config = virtio_net_kvm::NetConfig {
        mtu: plan.mtu(),
        // The backend's frames carry correct checksums.
        rx_checksums_valid: options.offload,
        ..virtio_net_kvm::NetConfig::default()
    };
    let listener = socket
        .try_clone_listener()
        .map_err(Failure::runtime("--socket"))?;
    // `socket` stays alive while serving: it removes the socket file when
    // dropped.
    let mut frontend =
        VhostUserFrontend::new(listener, config).map_err(Failure::runtime("--socket"))?;
    frontend.set_checksum_offload(options.offload);
    let stop = StopWhen {
        signals: Some(&signals),
        ..StopWhen::default()
    };
    let end = frontend
        .serve(&mut backend, &stop)
        .map_err(Failure::runtime("serving the guest"))?;
    let counters = frontend.counters().lines();
    finish_serving(options, end, &mut backend, &counters);
    drop(socket);
    Ok(0)
}

/// Listens on `path` and, unless `-q`, says so on stdout with the QEMU
/// options (`qemu`, explained by `note`) that connect a guest to it.
fn listen_announced(
    options: &Options,
    path: &Path,
    note: &str,
    qemu: &str,
) -> Result<StreamSocket, Failure> {
    let socket =
        StreamSocket::bind(path).map_err(|e| Failure::Runtime(format!("--socket: {e}")))?;
    if options.log != LogLevel::Quiet {
        println!(
            "slipway: listening on {}; start QEMU with{note}: {qemu}",
            path.display()
        );
        let _ = io::stdout().flush();
    }
    Ok(socket)
}

/// QEMU's options for a vhost-user NIC on the socket at `path`: the guest's
/// memory must be shared with slipway, hence the memfd backend. (On
/// `-M microvm`, `-device virtio-net-device` also needs
/// `-global virtio-mmio.force-legacy=false`: the device is virtio 1.x. Under
/// TCG, QEMU 7.2 crashes starting vhost on a virtio-net-pci with MSI-X;
/// `vectors=0` avoids it.)
fn vhost_user_qemu_options(path: &Path) -> String {
    format!(
        "-object memory-backend-memfd,id=mem,size=RAM,share=on \
         -machine memory-backend=mem -chardev socket,id=chr0,path={} \
         -netdev vhost-user,id=net0,chardev=chr0 -device virtio-net-pci,netdev=net0",
        qemu_path(path)
    )
}

/// `path` as QEMU's options want it: absolute, as QEMU may run elsewhere,
/// with commas doubled.
fn qemu_path(path: &Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path));
    absolute.display().to_string().replace(',', ",,")
}

/// QEMU's options for a guest NIC on the socket at `path`: absolute, as
/// QEMU may run elsewhere, with commas doubled as QEMU's option syntax
/// wants.
fn qemu_options(path: &Path) -> String {
    let path = qemu_path(path);
    format!(
        "-netdev stream,id=net0,server=off,addr.type=unix,addr.path={path} \
         -device virtio-net-pci,netdev=net0"
    )
}

fn kill_and_reap(child: &mut Child) {
    if let Err(error) = child.kill() {
        tracing::debug!(%error, "cannot kill the command");
    }
    let _ = child.wait();
}

/// The shell's convention: the exit code, or 128 plus the signal number.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + (signal & 0x7f)).unwrap_or(255),
        (None, None) => 1,
    }
}

/// Removes a file when dropped.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        match std::fs::remove_file(self.0) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                tracing::debug!(%error, path = %self.0.display(), "cannot remove");
            }
            _ => {}
        }
    }
}
