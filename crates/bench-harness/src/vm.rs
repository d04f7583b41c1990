//! VM paths: the same workloads with the guest a Linux kernel under QEMU,
//! its virtio-net device served by `slipway stream` or passt over QEMU's
//! `-netdev stream`, by `slipway vhost-user` over QEMU's `-netdev
//! vhost-user` (the guest's RAM a shared memfd that slipway maps), or by
//! QEMU's own libslirp (`-netdev user`).
//!
//! The guest is the image `cargo xtask guest-image` builds (the Debian
//! kernel, a busybox initramfs with iperf3), plus a second cpio archive
//! appended to its initramfs (Linux unpacks concatenated archives) that
//! holds this very binary and its shared libraries. The guest's script
//! runs `bench-harness agent`; [`crate::agent`] carries every guest
//! command in through the stack's inbound TCP forward, so the VM is a
//! [`Guest`] like any namespace.
//!
//! Invariant: QEMU and the stack run in the harness's host namespace, so
//! the guest reaches only the host-side servers (the gateway 10.0.2.2 is
//! the host namespace's loopback); QEMU is killed before the stack, and
//! both when the guest is dropped. Under TCG (no usable /dev/kvm) the
//! timed workloads are cut to [`TCG_DURATION`] and `idle_10k` is not run.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::paths::{DNS_ADDR, GATEWAY, Guest, Host, Path, TempDir, namespaces_absent};
use crate::sys::{self, Child};
use crate::tools::ports;
use crate::workloads::Workload;

use test_support::guest_image;
pub use test_support::vm::accel::ACCEL_VAR;
use test_support::vm::accel::Accel;
use test_support::vm::{Nic, QEMU, libslirp_netdev, microvm_args};

/// How long a guest may take to boot and answer on the agent port.
const BOOT_LIMIT: Duration = Duration::from_secs(120);
/// How long `slipway stream`, `slipway vhost-user` or passt may take to
/// create its socket.
const LISTEN_LIMIT: Duration = Duration::from_secs(10);
/// The timed workloads' length under TCG, whatever `--duration` says: an
/// emulated CPU is slow enough that longer runs add time, not precision.
pub const TCG_DURATION: Duration = Duration::from_secs(2);

/// What serves the guest's network device.
#[derive(Clone, Debug)]
enum Network {
    /// `slipway stream --socket` with this binary.
    Slipway(PathBuf),
    /// `slipway vhost-user --socket` with this binary.
    SlipwayVhostUser(PathBuf),
    /// `passt --socket`.
    Passt,
    /// QEMU's `-netdev user`.
    Libslirp,
}

/// The kernel and the initramfs with the harness appended, shared by the
/// VM paths of a run and removed with the last of them.
struct VmImage {
    kernel: PathBuf,
    initramfs: PathBuf,
    _dir: TempDir,
}

/// The VM paths, in report order: `qemu-slipway`,
/// `qemu-slipway-vhost-user`, `qemu-passt`, `qemu-libslirp`. `slipway` is the binary under test; `target` the cargo
/// target directory holding (or to hold) the guest image.
#[must_use]
pub fn paths(slipway: &FsPath, target: &FsPath) -> Vec<Box<dyn Path>> {
    let image = Arc::new(SharedImage {
        target: target.to_path_buf(),
        image: OnceLock::new(),
    });
    [
        ("qemu-slipway", Network::Slipway(slipway.to_path_buf())),
        (
            "qemu-slipway-vhost-user",
            Network::SlipwayVhostUser(slipway.to_path_buf()),
        ),
        ("qemu-passt", Network::Passt),
        ("qemu-libslirp", Network::Libslirp),
    ]
    .into_iter()
    .map(|(name, network)| {
        Box::new(Vm {
            name,
            network,
            image: Arc::clone(&image),
        }) as Box<dyn Path>
    })
    .collect()
}

struct SharedImage {
    target: PathBuf,
    image: OnceLock<Result<VmImage, String>>,
}

impl SharedImage {
    fn get(&self) -> Result<&VmImage, String> {
        self.image
            .get_or_init(|| build_image(&self.target))
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// The guest image, built if missing, with a cpio archive holding this
/// binary (as `/bin/bench-harness`) and its libraries appended.
fn build_image(target: &FsPath) -> Result<VmImage, String> {
    let base = guest_image::ensure(target)
        .map_err(|e| format!("no guest image (cargo xtask guest-image): {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let mut extra = guest_image::Cpio::default();
    let mut files = vec![("bin/bench-harness".to_owned(), exe.clone())];
    for library in guest_image::shared_libraries(&exe)? {
        files.push((library.trim_start_matches('/').to_owned(), library.into()));
    }
    let mut made = std::collections::BTreeSet::new();
    for (guest, host) in &files {
        for parent in FsPath::new(guest).ancestors().skip(1) {
            let parent = parent.to_string_lossy().into_owned();
            if !parent.is_empty() && made.insert(parent.clone()) {
                extra.directory(&parent);
            }
        }
        let bytes = std::fs::read(host).map_err(|e| format!("read {}: {e}", host.display()))?;
        extra.file(guest, 0o755, &bytes);
    }
    let mut initramfs = std::fs::read(&base.initramfs)
        .map_err(|e| format!("read {}: {e}", base.initramfs.display()))?;
    initramfs.extend_from_slice(&extra.finish());
    let dir = TempDir::new("slipway-bench-vm")?;
    let path = dir.0.join("initramfs.cpio");
    std::fs::write(&path, initramfs).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(VmImage {
        kernel: base.kernel,
        initramfs: path,
        _dir: dir,
    })
}

struct Vm {
    name: &'static str,
    network: Network,
    image: Arc<SharedImage>,
}

impl Path for Vm {
    fn name(&self) -> &str {
        self.name
    }

    fn absent(&self) -> Option<String> {
        if !sys::in_path(QEMU) {
            return Some(format!(
                "{QEMU} not installed (apt-get install qemu-system-x86)"
            ));
        }
        match &self.network {
            Network::Slipway(binary) | Network::SlipwayVhostUser(binary) if !binary.is_file() => {
                return Some(format!(
                    "{} not found (build it or pass --slipway)",
                    binary.display()
                ));
            }
            Network::SlipwayVhostUser(binary) if !has_command(binary, "vhost-user") => {
                return Some(format!("{} has no vhost-user command", binary.display()));
            }
            Network::Passt if !sys::in_path("passt") => {
                return Some("passt not installed (apt-get install passt)".into());
            }
            Network::Slipway(_)
            | Network::SlipwayVhostUser(_)
            | Network::Passt
            | Network::Libslirp => {}
        }
        if let Some(why) = namespaces_absent() {
            return Some(why);
        }
        if let Err(why) = Accel::choose() {
            return Some(why);
        }
        self.image.get().err()
    }

    fn start(&self, host: &Host) -> Result<Box<dyn Guest>, String> {
        let image = self.image.get()?;
        let accel = Accel::choose()?;
        let dir = TempDir::new(&format!("slipway-bench-{}", self.name))?;
        let agent_port = host.forward_port();
        let echo_port = host.forward_port();
        let script = dir.0.join("script.sh");
        std::fs::write(
            &script,
            format!(
                "ulimit -n 65536 2>/dev/null\nexec bench-harness agent --port {}\n",
                ports::AGENT
            ),
        )
        .map_err(|e| format!("write {}: {e}", script.display()))?;
        let forwards = [(agent_port, ports::AGENT), (echo_port, ports::GUEST_ECHO)];
        let (stack, nic) = self
            .network
            .start(host, &dir.0.join("net.sock"), &forwards)?;
        let mut qemu = qemu_command(host, accel, image, &nic, &script);
        let qemu = Child::spawn(&mut qemu)?;
        let mut guest = VmGuest {
            qemu: Some(qemu),
            stack,
            netns: host.ns().path(),
            exe: std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?,
            agent: SocketAddrV4::new(Ipv4Addr::LOCALHOST, agent_port),
            forward: SocketAddrV4::new(Ipv4Addr::LOCALHOST, echo_port),
            accel,
            libslirp: matches!(self.network, Network::Libslirp),
            passt: matches!(self.network, Network::Passt),
            _dir: dir,
        };
        guest.wait_for_agent()?;
        Ok(Box::new(guest))
    }
}

/// QEMU booting `image` with `nic` as its network device and `script` as
/// what the guest's `/init` runs, in the host namespace.
fn qemu_command(
    host: &Host,
    accel: Accel,
    image: &VmImage,
    nic: &Nic,
    script: &FsPath,
) -> std::process::Command {
    let mut qemu = host.stack_command(QEMU);
    qemu.args(microvm_args(
        accel,
        &image.kernel,
        &image.initramfs,
        nic,
        script,
    ));
    qemu
}

impl Network {
    /// Starts the stack (none for libslirp, which lives in QEMU) with
    /// `forwards` (host port on 127.0.0.1, guest port), listening on
    /// `socket`; returns it and QEMU's options that reach it.
    fn start(
        &self,
        host: &Host,
        socket: &FsPath,
        forwards: &[(u16, u16)],
    ) -> Result<(Option<Child>, Nic), String> {
        match self {
            Self::Slipway(binary) | Self::SlipwayVhostUser(binary) => {
                let vhost_user = matches!(self, Self::SlipwayVhostUser(_));
                let mut command = host.stack_command(binary);
                command
                    .args([if vhost_user { "vhost-user" } else { "stream" }])
                    .args(["-q", "--socket"])
                    .arg(socket)
                    .args(["--dns-upstream", &format!("127.0.0.1:{}", ports::DNS)]);
                for (from, to) in forwards {
                    command.args(["-t", &format!("127.0.0.1/{from}:{to}")]);
                }
                let stack = listening(&mut command, socket)?;
                let nic = if vhost_user {
                    Nic::vhost_user(socket)
                } else {
                    Nic::stream(socket)
                };
                Ok((Some(stack), nic))
            }
            Self::Passt => {
                // Foreground, errors to stderr, IPv4, as root (it would
                // drop to nobody), the same address plan as slipway's, the
                // gateway mapped to host loopback (passt's default), DNS
                // at 10.0.2.3 forwarded to the resolver, only the two
                // inbound forwards.
                let mut command = host.stack_command("passt");
                command
                    .args(["-f", "-q", "-4", "--runas", "0", "--socket"])
                    .arg(socket)
                    .args(["-a", "10.0.2.15", "-n", "24", "-g", "10.0.2.2"])
                    .args(["-m", "65520", "--dns-forward", "10.0.2.3"])
                    .args(["-e", "-u", "none"]);
                for (from, to) in forwards {
                    command.args(["-t", &format!("127.0.0.1/{from}:{to}")]);
                }
                Ok((Some(listening(&mut command, socket)?), Nic::stream(socket)))
            }
            Self::Libslirp => {
                let hostfwd: Vec<String> = forwards
                    .iter()
                    .map(|(from, to)| format!("tcp:127.0.0.1:{from}-:{to}"))
                    .collect();
                Ok((None, Nic::netdev(libslirp_netdev(&hostfwd))))
            }
        }
    }
}

/// Whether `binary --help` names the subcommand `command` (a slipway built
/// before it was added does not).
fn has_command(binary: &FsPath, command: &str) -> bool {
    let mut help = std::process::Command::new(binary);
    help.arg("--help");
    sys::run(&mut help, Duration::from_secs(10))
        .is_ok_and(|usage| usage.contains(&format!("slipway {command} ")))
}

/// Starts a stack and waits until it listens on `socket`.
fn listening(command: &mut std::process::Command, socket: &FsPath) -> Result<Child, String> {
    let mut child = Child::spawn(command)?;
    test_support::common::poll_until(LISTEN_LIMIT, || !child.running() || socket.exists());
    if !socket.exists() {
        let what = sys::describe(command);
        let stderr = child
            .finish(Duration::from_secs(2))
            .map(|o| o.stderr)
            .unwrap_or_else(|e| e);
        return Err(format!(
            "{what} made no socket within {LISTEN_LIMIT:?}: {}",
            stderr.trim()
        ));
    }
    Ok(child)
}

/// A booted VM whose commands go through its agent.
struct VmGuest {
    // Field order is drop order: QEMU stops before its stack.
    qemu: Option<Child>,
    stack: Option<Child>,
    netns: PathBuf,
    exe: PathBuf,
    agent: SocketAddrV4,
    forward: SocketAddrV4,
    accel: Accel,
    libslirp: bool,
    passt: bool,
    _dir: TempDir,
}

impl VmGuest {
    /// Waits until the guest has booted and its agent runs a command, or
    /// QEMU has exited (with what it said), or [`BOOT_LIMIT`] passed.
    fn wait_for_agent(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + BOOT_LIMIT;
        let mut last = String::new();
        while Instant::now() < deadline {
            let exited = self.qemu.as_mut().is_some_and(|q| !q.running());
            if let Some(qemu) = self.qemu.take_if(|_| exited) {
                let out = qemu.finish(Duration::from_secs(2))?;
                return Err(format!(
                    "QEMU exited while the guest booted: {}\nserial console:\n{}",
                    out.stderr.trim(),
                    out.stdout.trim()
                ));
            }
            let mut probe = self.remote(&["--wait", "5"]);
            probe.arg("true");
            match sys::run(&mut probe, Duration::from_secs(20)) {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(format!(
            "the guest's agent did not answer within {BOOT_LIMIT:?}: {last}"
        ))
    }

    /// `bench-harness remote --agent ADDR OPTIONS --` in the host namespace.
    fn remote(&self, options: &[&str]) -> std::process::Command {
        let mut command = sys::nsenter(&self.netns, &self.exe);
        command
            .args(["remote", "--agent", &self.agent.to_string()])
            .args(options)
            .arg("--");
        command
    }
}

impl Drop for VmGuest {
    fn drop(&mut self) {
        // QEMU first: the stack then sees its guest leave.
        drop(self.qemu.take());
        drop(self.stack.take());
    }
}

impl Guest for VmGuest {
    fn command(&self, program: &OsStr) -> std::process::Command {
        // Programs run by name from the guest's PATH: the harness is
        // /bin/bench-harness there, iperf3 is in /usr/bin.
        let name = FsPath::new(program).file_name().unwrap_or(program);
        let mut command = self.remote(&[]);
        command.arg(name);
        command
    }
    fn server_bind(&self) -> Ipv4Addr {
        Ipv4Addr::LOCALHOST
    }
    fn host_addr(&self) -> Ipv4Addr {
        GATEWAY
    }
    fn dns_addr(&self) -> Ipv4Addr {
        DNS_ADDR
    }
    fn forward_addr(&self) -> SocketAddrV4 {
        self.forward
    }
    fn stack_pid(&self) -> Option<u32> {
        self.stack.as_ref().map(Child::pid)
    }
    fn no_stack_why(&self) -> &'static str {
        if self.libslirp {
            "libslirp runs inside QEMU's process, beside the emulated CPU"
        } else {
            "no stack process to measure"
        }
    }
    fn skip(&self, workload: Workload) -> Option<&'static str> {
        match workload {
            Workload::Idle10k if self.accel == Accel::Tcg => {
                Some("10k connections from a TCG-emulated guest take minutes to open")
            }
            Workload::Icmp if self.passt => sys::passt_echo_absent(),
            _ => None,
        }
    }
    fn max_duration(&self) -> Option<Duration> {
        (self.accel == Accel::Tcg).then_some(TCG_DURATION)
    }
}
