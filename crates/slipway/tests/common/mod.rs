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
#[allow(dead_code, reason = "not every test binary needs a platform")]
pub fn platform_cannot(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    eprintln!("{test}: skipped: this machine cannot run it: {why}");
}

/// Removes the proxy variables from `command`'s environment (the guest
/// reaches only what the test starts, with nothing in between) and
/// `RUST_LOG` (slipway logs only what the test asks for).
#[allow(dead_code, reason = "not every test binary starts processes")]
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

/// Wakeups (context switches of all its threads) a quiet slipway process
/// may make in one second once a scenario's traffic ends. The guest kernel
/// of a namespace sends an IPv6 router solicitation or MLD report now and
/// then, which slipway reads; a loop woken for nothing wakes thousands of
/// times.
pub const QUIET_WAKEUPS_PER_S: u64 = 10;

/// CPU time a quiet slipway process may use in one second, in clock ticks
/// (1/100 s): at most 1% of a core, with one tick of rounding.
pub const QUIET_TICKS_PER_S: u64 = 2;

/// What one process has used so far: CPU ticks (user + system) and context
/// switches (voluntary + involuntary) of every thread.
#[allow(dead_code, reason = "not every test binary runs slipway")]
#[derive(Clone, Copy, Debug)]
pub struct ProcessUse {
    /// utime + stime of `/proc/PID/stat`, in clock ticks.
    pub ticks: u64,
    /// Context switches over `/proc/PID/task/*/status`.
    pub switches: u64,
}

/// What process `pid` has used so far, or `None` when it is gone.
#[allow(dead_code, reason = "not every test binary runs slipway")]
pub fn process_use(pid: u32) -> Option<ProcessUse> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields start after its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let mut switches = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(value) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                switches += value.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Some(ProcessUse { ticks, switches })
}

/// Asserts that slipway process `pid` is quiet: over `seconds` seconds (at
/// least one) it uses at most [`QUIET_TICKS_PER_S`] of CPU and makes at
/// most [`QUIET_WAKEUPS_PER_S`] wakeups per second. Call it once a
/// scenario's traffic has ended, with the scenario's connections still
/// open where it has any: a loop that spins on an always-ready socket or
/// a timer that keeps firing fails here.
#[allow(dead_code, reason = "not every test binary runs slipway")]
pub fn assert_process_quiet(pid: u32, seconds: u64, what: &str) {
    let seconds = seconds.max(1);
    let before = process_use(pid).unwrap_or_else(|| panic!("{what}: slipway ({pid}) is gone"));
    std::thread::sleep(std::time::Duration::from_secs(seconds));
    let after = process_use(pid)
        .unwrap_or_else(|| panic!("{what}: slipway ({pid}) exited while it should idle"));
    let ticks = after.ticks - before.ticks;
    let switches = after.switches - before.switches;
    eprintln!("{what}: slipway idle for {seconds} s: {ticks} CPU ticks, {switches} wakeups");
    assert!(
        ticks <= QUIET_TICKS_PER_S * seconds && switches <= QUIET_WAKEUPS_PER_S * seconds,
        "{what}: slipway did not go quiet: {ticks} CPU ticks (1/100 s) and {switches} wakeups \
         in {seconds} s after the traffic ended (at most {} and {} allowed)",
        QUIET_TICKS_PER_S * seconds,
        QUIET_WAKEUPS_PER_S * seconds
    );
}
