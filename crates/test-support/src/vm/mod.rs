//! Support for the end-to-end tests in which the guest is a Linux kernel
//! under QEMU: the image (built by `cargo xtask guest-image`, or here when
//! it is missing), the network QEMU's virtio-net device is wired to
//! (`slipway stream` or `slipway vhost-user` on a UNIX socket, or QEMU's
//! own libslirp for comparison), and the boot itself.
//!
//! The guest's `/init` runs the script passed as the fw_cfg file
//! `opt/slipway/script` and reports on the serial console (QEMU's stdout)
//! with `SLIPWAY-RESULT KEY=VALUE` lines and a final `SLIPWAY-EXIT CODE`,
//! then powers off. QEMU and slipway each run under a [`Proc`] guard that
//! kills them when the test ends, however it ends; every wait is bounded.

pub mod accel;

use crate::guest_image;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::e2e::{Output, Proc, TempDir, command, mib_per_s, missing_tool, slipway};

pub use accel::{ACCEL_VAR, Accel, kvm_is_pvm};
#[allow(
    unused_imports,
    reason = "only the reference VMM test builds an archive"
)]
pub use guest_image::{Cpio, Image};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// The guest's RAM: room for the bulk file in its tmpfs and a copy in
/// busybox wget's upload buffer.
pub const GUEST_MIB: &str = "512";

/// How long a guest script holds still after its traffic for the host to
/// check that slipway is quiet ([`SlipwaySocket::check_quiet`] samples one
/// second of it).
pub const IDLE_SECONDS: u32 = 2;

/// How long `slipway stream` may take to create its socket.
const LISTEN_LIMIT: Duration = Duration::from_secs(10);

/// The cargo target directory the test binaries were built into.
fn target_dir() -> PathBuf {
    let slipway = crate::e2e::slipway_binary();
    slipway
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

/// The guest image, built on first use if `cargo xtask guest-image` has
/// not built it yet; or why there is none.
pub fn image() -> Result<&'static Image, String> {
    static IMAGE: OnceLock<Result<Image, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| guest_image::ensure(&target_dir()))
        .as_ref()
        .map_err(Clone::clone)
}

/// Why this build of slipway cannot serve a QEMU guest with `command`
/// (`stream`, `vhost-user`), if it cannot.
pub fn command_unsupported(command: &str) -> Option<String> {
    let help = slipway(&["--help"]).output().ok()?;
    let text = String::from_utf8_lossy(&help.stdout) + String::from_utf8_lossy(&help.stderr);
    (!text.contains(&format!("slipway {command} ")))
        .then(|| format!("this slipway has no `{command}` command"))
}

/// Why no VM can run here, if none can.
pub fn unavailable() -> Option<String> {
    if let Some(tool) = missing_tool(&[QEMU]) {
        return Some(format!("needs {tool} (apt-get install qemu-system-x86)"));
    }
    if let Err(why) = Accel::choose() {
        return Some(why);
    }
    image().err()
}

/// Returns from the test, saying why on stderr, unless a VM can boot here
/// and every named host tool is present.
#[macro_export]
macro_rules! require_vm {
    ($($tool:expr),* $(,)?) => {
        if let Some(why) = $crate::vm::unavailable() {
            $crate::common::skip(&why);
            return;
        }
        if let Some(tool) = $crate::e2e::missing_tool(&[$($tool),*]) {
            $crate::common::skip(&format!("needs {tool} in PATH"));
            return;
        }
    };
}

/// How QEMU reaches slipway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frontend {
    /// `slipway stream`: QEMU's `-netdev stream`, frames on a socket.
    Stream,
    /// `slipway vhost-user`: QEMU's `-netdev vhost-user`, shared memory.
    VhostUser,
}

impl Frontend {
    /// The slipway command.
    pub fn command(self) -> &'static str {
        match self {
            Frontend::Stream => "stream",
            Frontend::VhostUser => "vhost-user",
        }
    }
}

/// `slipway stream|vhost-user --socket PATH OPTIONS`, listening.
pub struct SlipwaySocket {
    proc: Proc,
    socket: PathBuf,
    frontend: Frontend,
}

impl SlipwaySocket {
    /// Starts slipway on `socket` and waits for the socket to appear.
    pub fn start(frontend: Frontend, socket: &Path, options: &[&str]) -> Self {
        let path = socket.to_string_lossy().into_owned();
        let mut args = vec![frontend.command(), "--socket", path.as_str()];
        args.extend_from_slice(options);
        let proc = Proc::spawn(&mut slipway(&args));
        let deadline = Instant::now() + LISTEN_LIMIT;
        while !socket.exists() {
            if proc.exited() {
                let out = proc.finish(LISTEN_LIMIT);
                panic!(
                    "slipway {} exited before listening ({:?}):\n{}",
                    frontend.command(),
                    out.status,
                    out.stderr
                );
            }
            assert!(
                Instant::now() < deadline,
                "slipway {}: no socket at {} within {LISTEN_LIMIT:?}",
                frontend.command(),
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            proc,
            socket: socket.to_path_buf(),
            frontend,
        }
    }

    /// slipway's process id.
    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// Waits at most `limit` for the guest's `SLIPWAY-IDLE` line (its
    /// traffic is over and it holds still for [`IDLE_SECONDS`]), then
    /// records a failure in `checks` unless slipway is quiet for a second.
    pub fn check_quiet(&self, guest: &mut Guest, limit: Duration, checks: &mut Checks) {
        guest.wait_for("SLIPWAY-IDLE", limit);
        let pid = self.pid();
        let what = format!(
            "slipway {} after the guest's checks",
            self.frontend.command()
        );
        match crate::common::quiet_for(1, &what, || crate::common::process_use(pid)) {
            Ok(summary) => eprintln!("e2e-vm: {summary}"),
            Err(why) => checks.check(false, || why),
        }
    }

    /// QEMU's options that wire the guest's `net0` to this socket.
    pub fn nic(&self) -> Nic {
        match self.frontend {
            Frontend::Stream => Nic::stream(&self.socket),
            Frontend::VhostUser => Nic::vhost_user(&self.socket),
        }
    }

    /// Waits at most `limit` for slipway to exit (it does when QEMU
    /// disconnects) and returns its output.
    pub fn finish(self, limit: Duration) -> Output {
        self.proc.finish(limit)
    }
}

/// QEMU's options for the guest's network device `net0`.
pub struct Nic {
    args: Vec<String>,
    /// The guest's RAM must be a shared memfd (vhost-user maps it).
    shared_memory: bool,
}

impl Nic {
    /// A `-netdev` with this value, in private guest memory.
    pub fn netdev(value: String) -> Self {
        Self {
            args: vec!["-netdev".to_owned(), value],
            shared_memory: false,
        }
    }

    /// `-netdev stream` to a stack listening on `socket`.
    pub fn stream(socket: &Path) -> Self {
        Self::netdev(format!(
            "stream,id=net0,server=off,addr.type=unix,addr.path={}",
            socket.display()
        ))
    }

    /// `-netdev vhost-user` through a chardev on `socket`, in shared guest
    /// memory.
    pub fn vhost_user(socket: &Path) -> Self {
        Self {
            args: vec![
                "-chardev".to_owned(),
                format!("socket,id=chr0,path={}", socket.display()),
                "-netdev".to_owned(),
                "vhost-user,id=net0,chardev=chr0".to_owned(),
            ],
            shared_memory: true,
        }
    }
}

/// QEMU's arguments that boot `kernel` and `initramfs` as a microvm under
/// `accel`, with `nic` as its network device `net0`, the serial console on
/// stdout and the file `script` as what the guest's `/init` runs.
pub fn microvm_args(
    accel: Accel,
    kernel: &Path,
    initramfs: &Path,
    nic: &Nic,
    script: &Path,
) -> Vec<OsString> {
    let append = format!(
        "console=ttyS0 quiet pci=off panic=-1 reboot=t{}",
        accel.kernel_args()
    );
    let memory = format!("memory-backend-memfd,id=mem,size={GUEST_MIB}M,share=on");
    // vhost-user maps the guest's RAM, so it must be a shared memfd; and
    // slipway's device is virtio 1.x only, while microvm's virtio-mmio
    // transports are legacy unless told otherwise.
    let mut args: Vec<OsString> = if nic.shared_memory {
        [
            "-M",
            "microvm,memory-backend=mem",
            "-object",
            &memory,
            "-global",
            "virtio-mmio.force-legacy=false",
        ]
        .map(OsString::from)
        .to_vec()
    } else {
        vec!["-M".into(), "microvm".into()]
    };
    args.extend(accel.qemu_args().into_iter().map(OsString::from));
    args.extend(nic.args.iter().map(OsString::from));
    args.extend(
        [
            "-m",
            GUEST_MIB,
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-serial",
            "stdio",
            "-no-reboot",
            "-kernel",
        ]
        .map(OsString::from),
    );
    args.push(kernel.into());
    args.push("-initrd".into());
    args.push(initramfs.into());
    args.extend(["-append".into(), append.into()]);
    args.extend(["-device", "virtio-net-device,netdev=net0", "-fw_cfg"].map(OsString::from));
    args.push(format!("name=opt/slipway/script,file={}", script.display()).into());
    args
}

/// QEMU's own user-mode network (libslirp) with `hostfwd` rules of the
/// form `tcp:127.0.0.1:HOSTPORT-:GUESTPORT`: the reference slipway is
/// compared with.
pub fn libslirp_netdev(hostfwd: &[String]) -> String {
    let mut netdev = "user,id=net0,net=10.0.2.0/24".to_owned();
    for rule in hostfwd {
        netdev.push_str(",hostfwd=");
        netdev.push_str(rule);
    }
    netdev
}

/// A booted guest running a test script.
pub struct Guest {
    qemu: Proc,
    started: Instant,
}

impl Guest {
    /// Boots the guest with `nic` as its only network device and
    /// `script` (a busybox `sh` script) as what `/init` runs once eth0 is up.
    pub fn boot(nic: &Nic, script: &str, dir: &TempDir) -> Self {
        let image = image().expect("the guest image");
        let accel = Accel::choose().expect("an accelerator");
        let script_path = dir.path().join("script.sh");
        std::fs::write(&script_path, script).expect("write the guest script");
        let args = microvm_args(accel, &image.kernel, &image.initramfs, nic, &script_path);
        eprintln!(
            "e2e-vm: booting the guest ({accel:?}, kernel {})",
            image.kernel_version
        );
        Self {
            qemu: Proc::spawn(command(QEMU, &[]).args(args)),
            started: Instant::now(),
        }
    }

    /// Waits at most `limit` for a serial console line containing `marker`.
    pub fn wait_for(&mut self, marker: &str, limit: Duration) -> String {
        self.qemu.wait_for_line(marker, limit)
    }

    /// Waits at most `limit` for the guest to power off and returns what
    /// it reported.
    pub fn finish(self, limit: Duration) -> Report {
        let started = self.started;
        let out = self.qemu.finish(limit);
        Report::parse(&out.stdout, out.stderr, started.elapsed())
    }
}

/// What a guest reported before powering off.
pub struct Report {
    /// The serial console, kernel messages included.
    pub serial: String,
    /// What the VMM (QEMU, slipway-vmm) itself wrote to stderr.
    pub qemu_stderr: String,
    /// The `SLIPWAY-RESULT` lines.
    pub results: BTreeMap<String, String>,
    /// The text between `SLIPWAY-BEGIN NAME` and `SLIPWAY-END NAME` lines.
    pub blocks: BTreeMap<String, String>,
    /// The test script's exit status, if the guest got that far.
    pub exit: Option<i32>,
    /// From the start of the VMM to its exit.
    pub elapsed: Duration,
}

impl Report {
    /// What the guest reported on its serial console `serial` (the VMM's
    /// stdout), with the VMM's `stderr`, `elapsed` after it started.
    pub fn parse(serial: &str, stderr: String, elapsed: Duration) -> Self {
        let serial = serial.replace('\r', "");
        let mut results = BTreeMap::new();
        let mut blocks = BTreeMap::new();
        let mut block: Option<(String, String)> = None;
        let mut exit = None;
        for line in serial.lines() {
            if let Some((name, text)) = &mut block {
                if line.strip_prefix("SLIPWAY-END ") == Some(name.as_str()) {
                    let (name, text) = block.take().unwrap_or_default();
                    blocks.insert(name, text);
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            } else if let Some(name) = line.strip_prefix("SLIPWAY-BEGIN ") {
                block = Some((name.trim().to_owned(), String::new()));
            } else if let Some(result) = line.strip_prefix("SLIPWAY-RESULT ") {
                if let Some((key, value)) = result.split_once('=') {
                    results.insert(key.to_owned(), value.trim().to_owned());
                }
            } else if let Some(code) = line.strip_prefix("SLIPWAY-EXIT ") {
                exit = code.trim().parse().ok();
            }
        }
        Self {
            serial,
            qemu_stderr: stderr,
            results,
            blocks,
            exit,
            elapsed,
        }
    }

    /// The value reported for `key`, or an empty string.
    pub fn get(&self, key: &str) -> &str {
        self.results.get(key).map_or("", String::as_str)
    }

    /// The block called `name`, or an empty string.
    pub fn block(&self, name: &str) -> &str {
        self.blocks.get(name).map_or("", String::as_str)
    }

    /// The value for `key` as a number of seconds, if it is one.
    pub fn seconds(&self, key: &str) -> Option<f64> {
        self.get(key).parse().ok().filter(|s: &f64| *s > 0.0)
    }

    /// Says on stderr, after `prefix`, how fast the guest's downloads of
    /// `len` bytes went, over IPv4 and IPv6, for those it reported.
    pub fn print_download(&self, prefix: &str, len: usize) {
        for (key, over) in [
            ("download_seconds", ""),
            ("download6_seconds", " over IPv6"),
        ] {
            if let Some(seconds) = self.seconds(key) {
                eprintln!(
                    "{prefix}: download {} MiB{over} in {seconds:.2} s = {:.0} MiB/s",
                    len >> 20,
                    mib_per_s(len, seconds)
                );
            }
        }
    }

    /// Says on stderr, after `prefix`, how long the guest ran, when it
    /// reached the network, and how long its IPv6 checks took, if it ran
    /// them.
    pub fn print_boot(&self, prefix: &str) {
        eprintln!(
            "{prefix}: boot to poweroff {:.1} s (the guest reached the network at {} s of uptime)",
            self.elapsed.as_secs_f64(),
            self.get("boot_uptime")
        );
        if let Some(seconds) = self.seconds("ipv6_seconds") {
            eprintln!("{prefix}: IPv6 checks (SLAAC, DHCPv6, download) {seconds:.2} s");
        }
    }

    /// Everything a failure message needs: the serial log and QEMU's stderr.
    pub fn log(&self) -> String {
        format!(
            "guest serial console:\n{}\nqemu stderr:\n{}",
            self.serial, self.qemu_stderr
        )
    }
}

/// Failed checks, gathered so that one boot reports all of them.
#[derive(Default)]
pub struct Checks {
    failures: Vec<String>,
}

impl Checks {
    /// Records a failure unless `actual == expected`.
    pub fn equal(&mut self, what: &str, actual: &str, expected: &str) {
        if actual != expected {
            self.failures
                .push(format!("{what}: got {actual:?}, expected {expected:?}"));
        }
    }

    /// Records `failure` unless `ok`.
    pub fn check(&mut self, ok: bool, failure: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(failure());
        }
    }

    /// The script's exit status and the lease `vm/lease.sh` reported: the
    /// default plan, with `mtu`.
    pub fn exit_and_lease(&mut self, report: &Report, mtu: &str) {
        self.check(report.exit == Some(0), || {
            format!("the guest script's exit status: {:?}", report.exit)
        });
        self.equal("guest address", report.get("address"), "10.0.2.15/24");
        self.equal("default router", report.get("router"), "10.0.2.2");
        self.equal("nameserver", report.get("nameserver"), "10.0.2.3");
        self.equal("MTU", report.get("mtu"), mtu);
    }

    /// The guest's IPv6 configuration under the default plan (by SLAAC from
    /// the router's advertisements for the guest's MAC 52:54:00:12:34:56,
    /// and by DHCPv6) and its download over IPv6, whose hash must be
    /// `sha256`.
    pub fn ipv6(&mut self, report: &Report, sha256: &str) {
        self.equal(
            "SLAAC address",
            report.get("ipv6_slaac"),
            "fd00::2:5054:ff:fe12:3456/64",
        );
        self.equal("IPv6 default router", report.get("ipv6_router"), "fe80::1");
        self.equal(
            "DHCPv6 address",
            report.get("ipv6_dhcp"),
            "fd00:0:0:2::15/128",
        );
        self.equal(
            "download SHA-256 over IPv6",
            report.get("download6_sha256"),
            sha256,
        );
    }

    /// The guest's lookup through slipway's DNS address: the test's
    /// responder, which saw `queries`, gave the answer.
    pub fn dns_answer(&mut self, report: &Report, queries: usize) {
        let expected = crate::e2e::servers::DNS_ADDRESS.to_string();
        self.equal("DNS answer", report.get("dns_answer"), &expected);
        self.check(queries > 0, || "the DNS responder saw no query".to_owned());
    }

    /// Panics listing every failure, with `context` (logs), if any failed.
    pub fn assert_all(self, context: &str) {
        assert!(
            self.failures.is_empty(),
            "{} check(s) failed:\n  {}\n\n{context}",
            self.failures.len(),
            self.failures.join("\n  ")
        );
    }
}

/// The guest script part that reports the DHCP lease (`SLIPWAY-RESULT`
/// lines), run before a suite's checks.
pub const LEASE_SH: &str = include_str!("lease.sh");

/// The guest checks of the QEMU suite.
pub const CHECKS_SH: &str = include_str!("checks.sh");
