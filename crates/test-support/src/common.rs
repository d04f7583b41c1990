//! What the test binaries that run real processes share: skipping a test
//! that cannot run here (said out loud), and an environment without proxies.
//!
//! A test that needs root, /dev/net/tun or an outside tool says why it
//! cannot run and returns. Where the environment promises all of them (CI,
//! whose `.ci/run` installs the tools and runs as root), `SLIPWAY_NO_SKIP=1`
//! turns every such skip into a failure, so a test CI never runs cannot pass
//! unnoticed.

/// The variable that turns skips into failures.
pub const NO_SKIP: &str = "SLIPWAY_NO_SKIP";

/// Reports that the current test cannot run, and why; panics instead when
/// [`NO_SKIP`] is set to anything but `0` or empty.
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    let strict = std::env::var_os(NO_SKIP).is_some_and(|v| !v.is_empty() && v != "0");
    assert!(!strict, "{test}: cannot run here ({NO_SKIP} is set): {why}");
    eprintln!("{test}: skipped: {why}");
}

/// Reports that the current test cannot run on this kind of machine at
/// all, and why. Unlike [`skip`], [`NO_SKIP`] does not turn this into a
/// failure: it is for what no setup step can provide, where the
/// configuration the test needs only exists on other machines (a Linux
/// guest on KVM where /dev/kvm is PVM, whose KVM cannot run a stock
/// kernel). Never use it for a missing tool, privilege or image that CI
/// installs: those are [`skip`]s, and CI fails them.
pub fn platform_cannot(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    eprintln!("{test}: skipped: this machine cannot run it: {why}");
}

/// Removes the proxy variables from `command`'s environment (the guest
/// reaches only what the test starts, with nothing in between) and
/// `RUST_LOG` (slipway logs only what the test asks for).
pub fn scrub(command: &mut std::process::Command) {
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
        "no_proxy",
        "NO_PROXY",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
}

/// Polls `ready` every 20 ms until it holds (true) or `limit` passes
/// (false).
pub fn poll_until(limit: std::time::Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Wakeups (context switches of all its threads) a quiet slipway process
/// may make in one second once a scenario's traffic ends. The guest kernel
/// of a namespace sends an IPv6 router solicitation or MLD report now and
/// then, which slipway reads; a loop woken for nothing wakes thousands of
/// times.
pub const QUIET_WAKEUPS_PER_S: u64 = 10;

/// CPU time a quiet slipway process may use in one second, in clock ticks
/// (1/100 s): 1% of a core. [`quiet_for`] allows one tick more per
/// window for rounding.
pub const QUIET_TICKS_PER_S: u64 = 1;

/// The clock ticks of `/proc/PID/stat` per second (`USER_HZ`, which Linux
/// fixes at 100 for user space whatever the kernel's own tick rate).
const TICKS_PER_S: f64 = 100.0;

/// What one process (or one thread) has used so far: CPU ticks (user +
/// system) and context switches (voluntary + involuntary).
#[derive(Clone, Debug)]
pub struct ProcessUse {
    /// utime + stime of `/proc/PID/stat`, in clock ticks: every thread's,
    /// the exited ones' included.
    pub ticks: u64,
    /// Context switches over `/proc/PID/task/*/status`.
    pub switches: u64,
    /// Per living thread: its id, name, ticks and switches.
    pub threads: Vec<(u32, String, u64, u64)>,
}

/// utime + stime of a `/proc/.../stat` line, and the name between its
/// parentheses.
pub fn stat_ticks(stat: &str) -> Option<(String, u64)> {
    let (head, tail) = stat.rsplit_once(')')?;
    let name = head.split_once('(').map_or("", |(_, name)| name).to_owned();
    // The name may hold spaces: the fields start after its ')'.
    let fields: Vec<&str> = tail.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((name, ticks))
}

/// Voluntary plus involuntary context switches in a `/proc/.../status`.
pub fn status_switches(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|line| {
            line.strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
        })
        .map(|value| value.trim().parse::<u64>().unwrap_or(0))
        .sum()
}

/// What process `pid` has used so far, or `None` when it is gone.
pub fn process_use(pid: u32) -> Option<ProcessUse> {
    let (_, ticks) = stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Some(tid) = task.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let (Ok(stat), Ok(status)) = (
            std::fs::read_to_string(task.path().join("stat")),
            std::fs::read_to_string(task.path().join("status")),
        ) else {
            continue;
        };
        let Some((name, thread_ticks)) = stat_ticks(&stat) else {
            continue;
        };
        threads.push((tid, name, thread_ticks, status_switches(&status)));
    }
    let switches = threads.iter().map(|thread| thread.3).sum();
    Some(ProcessUse {
        ticks,
        switches,
        threads,
    })
}

/// What thread `tid` of this test process has used so far (a backend
/// served on a thread of the test), or `None` when it is gone.
#[allow(
    dead_code,
    reason = "not every test binary serves a backend on a thread"
)]
pub fn thread_use(tid: u32) -> Option<ProcessUse> {
    let dir = format!("/proc/self/task/{tid}");
    let (name, ticks) = stat_ticks(&std::fs::read_to_string(format!("{dir}/stat")).ok()?)?;
    let switches = status_switches(&std::fs::read_to_string(format!("{dir}/status")).ok()?);
    Some(ProcessUse {
        ticks,
        switches,
        threads: vec![(tid, name, ticks, switches)],
    })
}

/// Samples `sample` (a process's or a thread's use) for `seconds` seconds
/// (at least one) and judges it: at most [`QUIET_TICKS_PER_S`] of CPU
/// (plus one tick of rounding) and [`QUIET_WAKEUPS_PER_S`] per second,
/// over the time that really passed (a loaded machine may sleep longer).
/// `Ok` says what it used; `Err` says why it is not quiet, thread by
/// thread.
pub fn quiet_for(
    seconds: u64,
    what: &str,
    mut sample: impl FnMut() -> Option<ProcessUse>,
) -> Result<String, String> {
    let seconds = seconds.max(1);
    let started = std::time::Instant::now();
    let before = sample().ok_or_else(|| format!("{what}: the process is gone"))?;
    std::thread::sleep(std::time::Duration::from_secs(seconds));
    let after =
        sample().ok_or_else(|| format!("{what}: the process exited while it should idle"))?;
    let elapsed = started.elapsed().as_secs_f64();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a few seconds"
    )]
    let window = (elapsed.round() as u64).max(seconds);
    let ticks = after.ticks.saturating_sub(before.ticks);
    let switches = after.switches.saturating_sub(before.switches);
    let (max_ticks, max_switches) = (QUIET_TICKS_PER_S * window + 1, QUIET_WAKEUPS_PER_S * window);
    let summary = format!(
        "{what}: idle for {elapsed:.2} s: {ticks} CPU ticks ({:.1}% of a core), {switches} wakeups",
        ticks as f64 * 100.0 / TICKS_PER_S / elapsed
    );
    if ticks <= max_ticks && switches <= max_switches {
        return Ok(summary);
    }
    let mut threads = String::new();
    for (tid, name, thread_ticks, thread_switches) in &after.threads {
        let (was_ticks, was_switches) = before
            .threads
            .iter()
            .find(|thread| thread.0 == *tid)
            .map_or((0, 0), |thread| (thread.2, thread.3));
        threads.push_str(&format!(
            "\n  thread {tid} ({name}): {} ticks, {} wakeups",
            thread_ticks.saturating_sub(was_ticks),
            thread_switches.saturating_sub(was_switches)
        ));
    }
    Err(format!(
        "{summary}: not quiet after the traffic ended (at most {max_ticks} ticks and \
         {max_switches} wakeups allowed){threads}"
    ))
}

/// Asserts that slipway process `pid` is quiet: over `seconds` seconds (at
/// least one) it uses at most 1% of a core (one tick of rounding) and makes
/// at most [`QUIET_WAKEUPS_PER_S`] wakeups per second. Call it once a
/// scenario's traffic has ended, with the scenario's connections still
/// open where it has any: a loop that spins on an always-ready socket or
/// a timer that keeps firing fails here.
pub fn assert_process_quiet(pid: u32, seconds: u64, what: &str) {
    match quiet_for(seconds, &format!("{what} (slipway, pid {pid})"), || {
        process_use(pid)
    }) {
        Ok(summary) => eprintln!("{summary}"),
        Err(why) => panic!("{why}"),
    }
}

/// Asserts that thread `tid` of this test process, which serves a backend,
/// is quiet by the measure of [`assert_process_quiet`].
#[allow(
    dead_code,
    reason = "not every test binary serves a backend on a thread"
)]
pub fn assert_thread_quiet(tid: u32, seconds: u64, what: &str) {
    match quiet_for(seconds, &format!("{what} (thread {tid})"), || {
        thread_use(tid)
    }) {
        Ok(summary) => eprintln!("{summary}"),
        Err(why) => panic!("{why}"),
    }
}

/// The id of the calling thread (for [`assert_thread_quiet`]), from
/// `/proc/thread-self`, which names it as `PID/task/TID`.
#[allow(
    dead_code,
    reason = "not every test binary serves a backend on a thread"
)]
pub fn current_tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|link| link.file_name()?.to_str()?.parse().ok())
        .expect("/proc/thread-self names this thread")
}
