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
