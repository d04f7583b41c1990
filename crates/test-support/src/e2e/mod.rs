//! Support for the end-to-end tests in which a real guest (the Linux kernel
//! in a network namespace made by `slipway run`) talks through slipway to
//! servers on host loopback or in namespaces the test builds.
//!
//! Every child process runs in its own process group under a [`Proc`]
//! guard that kills the group when dropped, so a failing test leaves
//! nothing behind; every wait has a deadline. Namespaces made with
//! `ip netns add` are deleted by their [`NamedNetns`] guard, temporary
//! directories by [`TempDir`].

pub mod data;
pub mod family;
pub mod routed;
pub mod scenarios;
pub mod servers;
pub mod topology;

pub use family::{CURL_GLOBOFF, Family, http_url};

use std::net::{IpAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, WaitId, WaitIdOptions};

pub use crate::process::Output;
use crate::process::{LineWait, kill_group, spawn_piped, wait_for_line};

/// How long the output readers may take to report once a process is gone.
const DRAIN: Duration = Duration::from_secs(5);

/// Why the namespace tests cannot run here, if they cannot.
pub fn namespaces_unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (CAP_SYS_ADMIN) to create network namespaces".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("needs /dev/net/tun".into());
    }
    None
}

/// The first of `tools` not found in `PATH`.
pub fn missing_tool(tools: &[&str]) -> Option<String> {
    tools
        .iter()
        .find(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|tool| (*tool).to_owned())
}

/// Returns from the test, saying why on stderr, unless namespaces and every
/// named tool are available.
#[macro_export]
macro_rules! require {
    ($($tool:expr),* $(,)?) => {
        if let Some(why) = $crate::e2e::namespaces_unavailable() {
            $crate::common::skip(&why);
            return;
        }
        if let Some(tool) = $crate::e2e::missing_tool(&[$($tool),*]) {
            $crate::common::skip(&format!("needs {tool} in PATH"));
            return;
        }
    };
}

/// The Python interpreter itself (not a version-manager shim), so that
/// every start is quick and behaves the same in any namespace.
pub fn python3() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .ok()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|path| !path.is_empty())
            .unwrap_or_else(|| "python3".to_owned())
    })
}

/// Serializes the bulk-transfer tests, so that their throughput figures
/// measure slipway rather than each other.
pub fn bulk_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `slipway` command the tests run: `$SLIPWAY_BIN`, else the path
/// nextest gives (`NEXTEST_BIN_EXE_slipway`), else `slipway` in the
/// profile directory of the running test binary (cargo puts test binaries
/// in `target/PROFILE/deps/` and binaries in `target/PROFILE/`).
///
/// # Panics
/// No such file: the `slipway-cli` package's binary was not built.
#[must_use]
pub fn slipway_binary() -> PathBuf {
    sibling_binary("slipway", "SLIPWAY_BIN", "slipway-cli")
}

/// The `slipway-vmm` command, found as [`slipway_binary`] finds `slipway`
/// (`$SLIPWAY_VMM_BIN`, `NEXTEST_BIN_EXE_slipway-vmm`, the profile
/// directory).
///
/// # Panics
/// No such file: the `slipway-vmm` package's binary was not built.
#[must_use]
pub fn slipway_vmm_binary() -> PathBuf {
    sibling_binary("slipway-vmm", "SLIPWAY_VMM_BIN", "slipway-vmm")
}

fn sibling_binary(name: &str, variable: &str, package: &str) -> PathBuf {
    let given = std::env::var_os(variable)
        .or_else(|| std::env::var_os(format!("NEXTEST_BIN_EXE_{name}")))
        .map(PathBuf::from);
    let path = given.unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap_or_default();
        let deps = exe.parent().unwrap_or(Path::new("."));
        let profile = if deps.ends_with("deps") {
            deps.parent().unwrap_or(deps)
        } else {
            deps
        };
        profile.join(name)
    });
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p {package}` (or run the \
         workspace's tests, which build it), or name it in ${variable}",
        path.display()
    );
    path
}

/// `slipway ARGS` with an environment that sends nothing through a proxy.
pub fn slipway(args: &[&str]) -> Command {
    let mut command = Command::new(slipway_binary());
    command.args(args);
    crate::common::scrub(&mut command);
    command
}

/// `PROGRAM ARGS`, with the same environment as [`slipway()`].
pub fn command(program: &str, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    crate::common::scrub(&mut command);
    command
}

/// A child process in its own process group, its output read by threads.
/// Dropping it kills the whole group and reaps the child.
pub struct Proc {
    child: Option<Child>,
    what: String,
    lines: Receiver<String>,
    stdout: String,
    stderr: Receiver<String>,
}

impl Proc {
    /// Spawns `command` in a new process group with stdin from /dev/null
    /// and piped stdout and stderr.
    pub fn spawn(command: &mut Command) -> Self {
        let what = format!("{command:?}");
        let piped = match spawn_piped(command) {
            Ok(piped) => piped,
            Err(e) => panic!("cannot spawn {what}: {e}"),
        };
        Self {
            child: Some(piped.child),
            what,
            lines: piped.lines,
            stdout: String::new(),
            stderr: piped.stderr,
        }
    }

    /// The process id (and process group id).
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits at most `limit` for a line of stdout that contains `needle`;
    /// panics (killing the group) if none comes. Earlier lines are kept for
    /// [`Proc::finish`].
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        match wait_for_line(&self.lines, &mut self.stdout, needle, limit) {
            LineWait::Found(line) => line,
            LineWait::Timeout | LineWait::Ended => {
                self.kill();
                let stderr = self.stderr.recv_timeout(DRAIN).unwrap_or_default();
                panic!(
                    "{}: no line with {needle:?} within {limit:?}.\nstdout:\n{}\nstderr:\n{stderr}",
                    self.what, self.stdout
                );
            }
        }
    }

    /// Waits at most `limit` for the process to exit, then kills whatever
    /// else is left in its group and returns its output. On timeout kills
    /// the group and panics with the output so far.
    pub fn finish(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let exited = loop {
            if self.exited() {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            thread::sleep(Duration::from_millis(10));
        };
        // The leader is a zombie until reaped, so its group id cannot have
        // been reused: kill stragglers (and the leader on timeout).
        self.kill_group();
        let status = match self.child.take().map(|mut child| child.wait()) {
            Some(Ok(status)) => status,
            Some(Err(e)) => panic!("{}: wait: {e}", self.what),
            None => panic!("{}: already reaped", self.what),
        };
        let stdout = self.drain_stdout();
        let stderr = self.stderr.recv_timeout(DRAIN).unwrap_or_default();
        assert!(
            exited,
            "{}: no exit within {limit:?}; killed.\nstdout:\n{stdout}\nstderr:\n{stderr}",
            self.what
        );
        Output {
            status,
            stdout,
            stderr,
        }
    }

    /// Whether the child has exited, without reaping it.
    pub fn exited(&self) -> bool {
        let Some(pid) = self.pid() else {
            return true;
        };
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
        match rustix::process::waitid(WaitId::Pid(pid), options) {
            Ok(status) => status.is_some(),
            Err(_) => true,
        }
    }

    fn drain_stdout(&mut self) -> String {
        let deadline = Instant::now() + DRAIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stdout.push_str(&line),
                Err(_) => return std::mem::take(&mut self.stdout),
            }
        }
    }

    fn pid(&self) -> Option<Pid> {
        self.child
            .as_ref()
            .and_then(|child| i32::try_from(child.id()).ok())
            .and_then(Pid::from_raw)
    }

    fn kill_group(&self) {
        if let Some(child) = &self.child {
            kill_group(child.id());
        }
    }

    fn kill(&mut self) {
        self.kill_group();
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `command` to completion within `limit` (see [`Proc::finish`]).
pub fn run(command: &mut Command, limit: Duration) -> Output {
    Proc::spawn(command).finish(limit)
}

/// The line a guest's command ends with once its own work is done (see
/// [`GuestRun`]).
const IDLE_MARKER: &str = "SLIPWAY-IDLE";

/// How long [`GuestRun`]'s guest waits at most, in tenths of a second, for
/// the test to sample slipway before it exits anyway.
const IDLE_HOLD_TENTHS: u32 = 300;

/// The shell around a guest's command: runs it (`"$@"`), prints
/// [`IDLE_MARKER`], and holds the namespace, without a packet, until the
/// file `$1` exists or `$2` tenths of a second have passed; exits with the
/// command's status.
const IDLE_WRAPPER: &str = r#"release=$1; hold=$2; shift 2; "$@"; rc=$?; echo SLIPWAY-IDLE; i=0; while [ ! -e "$release" ] && [ "$i" -lt "$hold" ]; do sleep 0.1; i=$((i + 1)); done; exit $rc"#;

/// A `slipway run` whose guest command, once done, holds the namespace
/// while the test checks that slipway has gone quiet
/// ([`GuestRun::finish_quiet`]): the quiet-loop check of every namespace
/// test, with the scenario's flows still in slipway's table.
pub struct GuestRun {
    proc: Proc,
    release: TempDir,
}

impl GuestRun {
    /// Spawns `command` (`slipway run [OPTIONS] --`, directly or under an
    /// `ip netns exec` that execs it) with `argv` as the guest's command.
    pub fn spawn(mut command: Command, argv: &[&str]) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let release = TempDir::new(&format!("idle-{n}"));
        let file = release.file("release");
        let hold = IDLE_HOLD_TENTHS.to_string();
        command.args(["sh", "-c", IDLE_WRAPPER, "sh", &file, &hold]);
        command.args(argv);
        Self {
            proc: Proc::spawn(&mut command),
            release,
        }
    }

    /// slipway's process id.
    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// See [`Proc::wait_for_line`].
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        self.proc.wait_for_line(needle, limit)
    }

    /// Waits at most `limit` for the guest's command to end, asserts that
    /// slipway is quiet for a second after it (named `what` if not), lets
    /// the guest exit and returns slipway's output (the marker line left
    /// out).
    pub fn finish_quiet(mut self, limit: Duration, what: &str) -> Output {
        let started = Instant::now();
        self.proc.wait_for_line(IDLE_MARKER, limit);
        let pid = self.proc.id();
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_eq!(name.trim(), "slipway", "process {pid} is not slipway");
        let quiet = crate::common::quiet_for(1, what, || crate::common::process_use(pid));
        std::fs::write(self.release.path().join("release"), b"").expect("release the guest");
        let mut out = self
            .proc
            .finish(limit.saturating_sub(started.elapsed()).max(DRAIN));
        if let Some(at) = out.stdout.rfind(&format!("{IDLE_MARKER}\n")) {
            out.stdout.replace_range(at..at + IDLE_MARKER.len() + 1, "");
        }
        match quiet {
            Ok(summary) => eprintln!("{summary}"),
            Err(why) => panic!(
                "{why}\nstdout:\n{}\nslipway's stderr:\n{}",
                out.stdout, out.stderr
            ),
        }
        out
    }
}

/// Runs `command` (`slipway run [OPTIONS] --`) with `argv` as the guest's
/// command within `limit`, and asserts that slipway is quiet once the
/// command is done (see [`GuestRun`]).
pub fn run_then_quiet(command: Command, argv: &[&str], limit: Duration, what: &str) -> Output {
    GuestRun::spawn(command, argv).finish_quiet(limit, what)
}

/// `slipway run [OPTIONS] --`.
pub fn slipway_run(options: &[&str]) -> Command {
    let mut args = vec!["run"];
    args.extend_from_slice(options);
    args.push("--");
    slipway(&args)
}

/// Runs `slipway run [OPTIONS] -- sh -c SCRIPT` within `limit`; asserts
/// that slipway is quiet once the script is done.
pub fn run_in_guest(options: &[&str], script: &str, limit: Duration) -> Output {
    run_then_quiet(
        slipway_run(options),
        &["sh", "-c", script],
        limit,
        "after the guest's script",
    )
}

/// Runs `slipway run [OPTIONS] -- python3 -c SCRIPT ARGS` within `limit`;
/// asserts that slipway is quiet once the script is done.
pub fn python_in_guest(options: &[&str], script: &str, args: &[&str], limit: Duration) -> Output {
    let mut argv = vec![python3(), "-c", script];
    argv.extend_from_slice(args);
    run_then_quiet(
        slipway_run(options),
        &argv,
        limit,
        "after the guest's Python",
    )
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    socket.local_addr().expect("local_addr").port()
}

/// Whether a TCP socket listens on `addr:port` in the caller's network
/// namespace (read from /proc/net/tcp or tcp6, so no connection disturbs
/// the server).
pub fn tcp_listening(addr: impl Into<IpAddr>, port: u16) -> bool {
    // /proc prints an address as host-order 32-bit words.
    let (table, words) = match addr.into() {
        IpAddr::V4(v4) => ("/proc/net/tcp", vec![v4.octets()]),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let words = o
                .chunks_exact(4)
                .map(|w| [w[0], w[1], w[2], w[3]])
                .collect();
            ("/proc/net/tcp6", words)
        }
    };
    let hex: String = words
        .iter()
        .map(|w| format!("{:08X}", u32::from_le_bytes(*w)))
        .collect();
    let local = format!("{hex}:{port:04X}");
    std::fs::read_to_string(table).is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            let mut fields = line.split_whitespace().skip(1);
            fields.next() == Some(local.as_str()) && fields.nth(1) == Some("0A")
        })
    })
}

/// Waits at most `limit` for `condition`, checking every 20 ms; panics with
/// `what` on timeout.
pub fn wait_until(what: &str, limit: Duration, condition: impl FnMut() -> bool) {
    assert!(
        crate::common::poll_until(limit, condition),
        "{what}: not within {limit:?}"
    );
}

/// A directory under the system temporary directory, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `slipway-e2e-PID-NAME`, empty.
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("slipway-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temporary directory");
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `NAME` inside the directory, as a string for command lines.
    pub fn file(&self, name: &str) -> String {
        self.path.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// How long one `ip` command may take.
const IP_LIMIT: Duration = Duration::from_secs(10);

/// Runs `ip ARGS`, panicking on failure.
pub fn ip(args: &[&str]) {
    run(&mut command("ip", args), IP_LIMIT).assert_success(&format!("ip {}", args.join(" ")));
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct NamedNetns {
    name: String,
}

impl NamedNetns {
    /// Creates `slw-ROLE-PID`, unique to this test run, with `lo` up.
    pub fn new(role: &str) -> Self {
        let name = format!("slw-{role}-{}", std::process::id());
        // A leftover of a killed earlier run with the same pid.
        let _ = run(&mut command("ip", &["netns", "del", &name]), IP_LIMIT);
        ip(&["netns", "add", &name]);
        let netns = Self { name };
        ip(&["-n", netns.name(), "link", "set", "lo", "up"]);
        netns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a thread inside the namespace and returns what it
    /// returns. The sockets `f` makes live in the namespace (a socket keeps
    /// the namespace it was made in), whichever thread then serves them.
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        use std::os::fd::AsFd;
        let path = format!("/run/netns/{}", self.name);
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    rustix::thread::move_into_link_name_space(
                        file.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .unwrap_or_else(|e| panic!("setns into {path}: {e}"));
                    f()
                })
                .join()
                .expect("the thread in the namespace panicked")
        })
    }

    /// `ip netns exec NAME PROGRAM ARGS`.
    pub fn exec(&self, program: &str, args: &[&str]) -> Command {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        command("ip", &all)
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = run(&mut command("ip", &["netns", "del", &self.name]), IP_LIMIT);
    }
}

/// Seconds and MiB/s for `bytes` moved in `seconds`.
pub fn mib_per_s(bytes: usize, seconds: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let mib = bytes as f64 / f64::from(1 << 20);
    mib / seconds
}

/// The value of counter `name` in `slipway --stats` output (a line of the
/// name, spaces, and the number).
pub fn stat(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(name)?;
        rest.trim().parse().ok()
    })
}

/// The value of the first `NAME=VALUE` line in `text`.
pub fn field<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    text.lines().find_map(|line| {
        line.trim()
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

/// Python run in the guest: sends a datagram of each size in `argv[3:]` to
/// `argv[1]:argv[2]` (the gateway of either family, and the port of a UDP
/// echo server on host loopback) and checks that each comes back
/// unchanged, three tries of 3 s each; prints `echo SIZE` per size.
pub const GUEST_UDP_ECHO_CLIENT: &str = "\
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((host, port))
for size in map(int, sys.argv[3:]):
    data = bytes((i * 7 + size) % 256 for i in range(size))
    for attempt in range(3):
        s.send(data)
        try:
            echo = s.recv(65536)
        except socket.timeout:
            continue
        break
    else:
        sys.exit('no echo of %d bytes' % size)
    if echo != data:
        sys.exit('echo of %d bytes came back as %d different bytes' % (size, len(echo)))
    print('echo', size, flush=True)
";

/// The Python client that opens many connections at once from the guest.
pub const MANY_CONNECTIONS_PY: &str = include_str!("many_connections.py");
