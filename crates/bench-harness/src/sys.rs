//! The harness's contact with the operating system: child processes under
//! guards, network namespaces it creates and deletes, and what `/proc` says
//! about the stack's process (CPU time, context switches, resident memory,
//! listening sockets).
//!
//! Invariant: nothing the harness starts outlives it. Every child runs in
//! its own process group and [`Child`]'s drop kills the group; every
//! namespace is deleted by its [`NetNs`] guard; every wait has a deadline.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use test_support::common::{scrub, stat_ticks, status_switches};
pub use test_support::process::Output;
use test_support::process::{LineWait, kill_group, spawn_piped, wait_for_line};

/// A child process in its own process group, its stdout read line by line
/// and its stderr kept. Dropping it kills the group and reaps the child.
pub struct Child {
    child: std::process::Child,
    what: String,
    lines: Receiver<String>,
    stdout: String,
    stderr: Receiver<String>,
}

impl Child {
    /// Starts `command` with stdin from /dev/null and both outputs piped.
    ///
    /// # Errors
    /// The command and why it could not start.
    pub fn spawn(command: &mut Command) -> Result<Self, String> {
        let what = describe(command);
        let piped = spawn_piped(command).map_err(|e| format!("cannot start {what}: {e}"))?;
        Ok(Self {
            child: piped.child,
            what,
            lines: piped.lines,
            stdout: String::new(),
            stderr: piped.stderr,
        })
    }

    /// The process id, which is also its process group id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits at most `limit` for a line of stdout containing `needle` and
    /// returns it; earlier lines are kept for [`Child::finish`].
    ///
    /// # Errors
    /// The process ended or the time ran out first; the message carries its
    /// stderr.
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) -> Result<String, String> {
        match wait_for_line(&self.lines, &mut self.stdout, needle, limit) {
            LineWait::Found(line) => Ok(line),
            LineWait::Timeout => Err(format!(
                "{} printed no {needle:?} within {limit:?}",
                self.what
            )),
            LineWait::Ended => {
                self.kill();
                let stderr = self.take_stderr();
                Err(format!(
                    "{} ended before printing {needle:?}: {}",
                    self.what,
                    stderr.trim()
                ))
            }
        }
    }

    /// Waits at most `limit` for the process to exit and returns what it
    /// printed; kills it when the time runs out.
    ///
    /// # Errors
    /// The time ran out, or waiting failed.
    pub fn finish(mut self, limit: Duration) -> Result<Output, String> {
        let deadline = Instant::now() + limit;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                Ok(None) => {
                    self.kill();
                    let stderr = self.take_stderr();
                    return Err(format!(
                        "{} did not finish within {limit:?}: {}",
                        self.what,
                        stderr.trim()
                    ));
                }
                Err(e) => return Err(format!("waiting for {}: {e}", self.what)),
            }
        };
        // The pipes close when the process exits (unless it left
        // descendants holding them, whom the group kill below ends).
        self.kill_group();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.stdout.push_str(&line);
        }
        let stderr = self.take_stderr();
        Ok(Output {
            status,
            stdout: std::mem::take(&mut self.stdout),
            stderr,
        })
    }

    /// Like [`Child::finish`], but also fails when the process exits with a
    /// status other than 0; returns its stdout.
    ///
    /// # Errors
    /// As `finish`, or the status and stderr of a failed run.
    pub fn finish_ok(self, limit: Duration) -> Result<String, String> {
        let what = self.what.clone();
        let out = self.finish(limit)?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(format!(
                "{what} failed ({}): {}{}",
                out.status,
                out.stderr.trim(),
                if out.stderr.trim().is_empty() {
                    out.stdout.trim()
                } else {
                    ""
                }
            ))
        }
    }

    fn kill_group(&mut self) {
        kill_group(self.child.id());
    }

    fn kill(&mut self) {
        self.kill_group();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// All of stderr once it closes; empty when it was taken before.
    fn take_stderr(&mut self) -> String {
        self.stderr.recv().unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The command line as a user would type it.
#[must_use]
pub fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    format!("`{}`", words.join(" "))
}

/// Runs `command` to completion within `limit` and returns its stdout.
///
/// # Errors
/// It could not start, failed, or ran out of time.
pub fn run(command: &mut Command, limit: Duration) -> Result<String, String> {
    Child::spawn(command)?.finish_ok(limit)
}

/// Whether the host's `net.ipv4.ping_group_range` lets a process of
/// group `gid` open ICMP ping sockets (`false` also when it cannot be
/// read). Its default, "1 0", lets nobody, not even root.
#[must_use]
pub fn ping_sockets_allowed(gid: u32) -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .is_ok_and(|range| ping_range_allows(&range, gid))
}

/// Whether a `ping_group_range` value ("LOW HIGH") includes `gid`.
fn ping_range_allows(range: &str, gid: u32) -> bool {
    let mut bounds = range.split_whitespace().map(str::parse::<u32>);
    match (bounds.next(), bounds.next()) {
        (Some(Ok(low)), Some(Ok(high))) => (low..=high).contains(&gid),
        _ => false,
    }
}

/// Why passt and pasta (run as root) cannot answer echo requests here,
/// if they cannot: they relay them only through ping sockets.
#[must_use]
pub fn passt_echo_absent() -> Option<&'static str> {
    (!ping_sockets_allowed(0)).then_some(
        "passt and pasta relay echo requests only through ping sockets, which this \
         host's net.ipv4.ping_group_range refuses to root (its default \"1 0\")",
    )
}

/// Whether `program` is found in `PATH` as an executable file.
#[must_use]
pub fn in_path(program: &str) -> bool {
    find_in_path(program).is_some()
}

/// The full path of `program` in `PATH`.
#[must_use]
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|file| {
            fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether the harness runs as root (needed to create namespaces).
#[must_use]
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The open-file limit the harness asks for, so that every stack can hold
/// the idle flows of `idle_10k` however many descriptors it spends per
/// flow (some spend two).
const WANTED_NOFILE: u64 = 1 << 18;

/// Raises the limit on open files for the harness and its children
/// (servers, clients and the stacks themselves): the hard limit to
/// 262144 where allowed (root), the soft limit to the hard one.
/// Returns the new soft limit.
pub fn raise_nofile() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let current = getrlimit(Resource::Nofile);
    if current.maximum.is_some_and(|max| max < WANTED_NOFILE) {
        let wanted = Some(WANTED_NOFILE);
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: wanted,
                maximum: wanted,
            },
        );
    }
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
    getrlimit(Resource::Nofile).current
}

/// The prefix of every namespace a harness run makes: `PREFIX<pid>-`.
pub const NETNS_PREFIX: &str = "slwb";

/// Cleans up after harness runs that were killed before their guards ran:
/// for each namespace named [`NETNS_PREFIX`]`<pid>-...` whose harness
/// process `<pid>` is gone, kills the processes in it (the stacks, servers
/// and clients that run) and deletes it. Returns the namespaces removed.
pub fn reap_stale_runs() -> Vec<String> {
    let limit = Duration::from_secs(10);
    let Ok(list) = run(Command::new("ip").args(["netns", "list"]), limit) else {
        return Vec::new();
    };
    let mut reaped = Vec::new();
    for name in list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        let Some(owner) = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        if let Ok(pids) = run(Command::new("ip").args(["netns", "pids", name]), limit) {
            for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                if let Some(pid) = Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
            }
        }
        let _ = run(Command::new("ip").args(["netns", "del", name]), limit);
        reaped.push(name.to_owned());
    }
    reaped
}

/// A network namespace made with `ip netns add`, deleted when dropped.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates the namespace `name` with its loopback up, and the kernel
    /// settings every namespace of the harness shares: ping sockets for
    /// every group, a wide ephemeral port range that stays clear of the
    /// servers' and forwards' ports (see `tools::ports`), and reuse of
    /// TIME-WAIT ports for new connections (connect-per-transaction
    /// workloads otherwise run out of ports).
    ///
    /// # Errors
    /// What `ip` or the sysctl write said.
    pub fn create(name: &str) -> Result<Self, String> {
        let limit = Duration::from_secs(10);
        // A namespace left by a killed earlier run would make `add` fail.
        let _ = run(Command::new("ip").args(["netns", "del", name]), limit);
        run(Command::new("ip").args(["netns", "add", name]), limit)?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        for (file, value) in [
            ("ipv4/ping_group_range", "0 2147483647"),
            ("ipv4/ip_local_port_range", "20000 65535"),
            ("ipv4/tcp_tw_reuse", "1"),
        ] {
            // /proc/sys/net shows the namespace of the process that opens it.
            run(
                ns.command("sh")
                    .args(["-c", "echo \"$1\" > \"$0\""])
                    .arg(format!("/proc/sys/net/{file}"))
                    .arg(value),
                limit,
            )?;
        }
        Ok(ns)
    }

    /// The name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file, for `nsenter --net=` and `--netns`.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs `ip -n NAME ARGS`.
    ///
    /// # Errors
    /// What `ip` said.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        run(
            Command::new("ip").args(["-n", &self.name]).args(args),
            Duration::from_secs(10),
        )
    }

    /// `PROGRAM` to be run inside the namespace (through `nsenter`, which
    /// execs it: the process id is the program's own).
    #[must_use]
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        nsenter(&self.path(), program)
    }

    /// Whether the namespace has an IPv4 default route (its stack has
    /// configured it).
    #[must_use]
    pub fn has_default_route(&self) -> bool {
        self.ip(&["-4", "route", "show", "default"])
            .is_ok_and(|out| out.contains("default"))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = run(
            Command::new("ip").args(["netns", "del", &self.name]),
            Duration::from_secs(10),
        );
    }
}

/// `program` to be run in the network namespace `netns` (a namespace
/// file) through `nsenter`, with a scrubbed environment.
pub fn nsenter(netns: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net={}", netns.display()))
        .arg("--")
        .arg(program);
    scrub(&mut command);
    command
}

/// A reading of a process's counters from `/proc`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// User plus system CPU time of the whole thread group, in clock ticks.
    pub cpu_ticks: u64,
    /// Voluntary plus involuntary context switches, summed over its
    /// threads: each is one wakeup of a thread that then slept or was
    /// preempted.
    pub switches: u64,
    /// Resident memory in KiB.
    pub rss_kib: u64,
}

impl ProcSample {
    /// Reads the counters of process `pid`.
    ///
    /// # Errors
    /// The process is gone or `/proc` reads differently than expected.
    pub fn read(pid: u32) -> Result<Self, String> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let stat =
            fs::read_to_string(proc.join("stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
        let status = fs::read_to_string(proc.join("status"))
            .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        let mut switches = 0;
        if let Ok(tasks) = fs::read_dir(proc.join("task")) {
            for task in tasks.flatten() {
                if let Ok(text) = fs::read_to_string(task.path().join("status")) {
                    switches += status_switches(&text);
                }
            }
        }
        Ok(Self {
            cpu_ticks: cpu_ticks(&stat)
                .ok_or_else(|| format!("/proc/{pid}/stat: unexpected layout"))?,
            switches,
            rss_kib: status_field(&status, "VmRSS:").unwrap_or(0),
        })
    }
}

/// Clock ticks per second, the unit of [`ProcSample::cpu_ticks`].
#[must_use]
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// utime + stime from the text of `/proc/PID/stat`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    stat_ticks(stat).map(|(_, ticks)| ticks)
}

/// The first number on the line of `/proc/PID/status` starting with `key`.
fn status_field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The transport a listening check looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A TCP socket in LISTEN state.
    Tcp,
    /// A bound UDP socket.
    Udp,
}

/// Whether a socket of `transport` is bound to `port`, over either IP
/// version, in the network namespace of process `pid` (read from
/// `/proc/PID/net/`, which shows that process's namespace).
#[must_use]
pub fn listening(pid: u32, transport: Transport, port: u16) -> bool {
    let (file, state) = match transport {
        Transport::Tcp => ("tcp", "0A"),
        Transport::Udp => ("udp", "07"),
    };
    [file.to_owned(), format!("{file}6")].iter().any(|file| {
        fs::read_to_string(format!("/proc/{pid}/net/{file}"))
            .is_ok_and(|table| table_has(&table, state, port))
    })
}

fn table_has(table: &str, state: &str, port: u16) -> bool {
    let want = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1).is_some_and(|local| local.ends_with(&want)) && fields.get(3) == Some(&state)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ping_group_range_admits_only_the_groups_inside_it() {
        assert!(!ping_range_allows("1\t0\n", 0), "the default admits nobody");
        assert!(!ping_range_allows("1 0", 1));
        assert!(ping_range_allows("0 2147483647\n", 0));
        assert!(ping_range_allows("100 100", 100));
        assert!(!ping_range_allows("100 100", 0));
        assert!(!ping_range_allows("garbage", 0));
        assert!(!ping_range_allows("", 0));
    }

    #[test]
    fn cpu_ticks_count_fields_after_the_command_name() {
        let stat = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn own_process_reads_sanely() {
        let sample = ProcSample::read(std::process::id()).unwrap();
        assert!(sample.rss_kib > 0);
        assert!(sample.switches > 0);
    }

    #[test]
    fn listening_sees_a_bound_listener_and_not_a_free_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listening(std::process::id(), Transport::Tcp, port));
        drop(listener);
        assert!(!listening(std::process::id(), Transport::Tcp, port));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        assert!(listening(std::process::id(), Transport::Udp, port));
        // IPv6 sockets are in tables of their own.
        let listener6 = std::net::TcpListener::bind("[::1]:0").unwrap();
        let port = listener6.local_addr().unwrap().port();
        assert!(listening(std::process::id(), Transport::Tcp, port));
        let udp6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let port = udp6.local_addr().unwrap().port();
        assert!(listening(std::process::id(), Transport::Udp, port));
    }
}
