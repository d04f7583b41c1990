//! `cargo xtask bench`: builds slipway and the wall-clock harness in
//! release mode and runs the harness, passing every other argument through
//! (see `bench-harness --help`). `--install-peers` first installs the peers
//! the harness compares with (pasta, passt, slirp4netns), iperf3, and QEMU
//! with what the VM paths' guest image is built from (see
//! `guest_image.rs`), from Debian packages.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use crate::process::{cargo_command, run_echoed, workspace_root};
use test_support::guest_image;

/// The Debian packages of the peers, of iperf3 and of QEMU (the VM paths'
/// guest image needs [`guest_image::PACKAGES`] too).
const PEER_PACKAGES: [&str; 4] = ["passt", "slirp4netns", "iperf3", "qemu-system-x86"];

/// Every package `--install-peers` installs.
fn packages() -> Vec<&'static str> {
    let mut all = PEER_PACKAGES.to_vec();
    for (package, _) in guest_image::PACKAGES {
        if !all.contains(&package) {
            all.push(package);
        }
    }
    all
}

/// What `cargo xtask bench` was asked to do.
pub struct Options {
    install_peers: bool,
    harness_args: Vec<String>,
}

impl Options {
    /// Takes `--install-peers` out of the arguments; the rest go to the
    /// harness, which checks them.
    pub fn parse(args: &[String]) -> Self {
        Self {
            install_peers: args.iter().any(|a| a == "--install-peers"),
            harness_args: args
                .iter()
                .filter(|a| *a != "--install-peers")
                .cloned()
                .collect(),
        }
    }
}

/// The package of the `slipway` binary the harness runs by default: it
/// must be built here, or the harness measures whatever release binary an
/// earlier build left.
const SLIPWAY_COMMAND_PACKAGE: &str = "slipway-cli";

/// Runs the command.
pub fn run(options: &Options) -> ExitCode {
    if options.install_peers {
        if let Err(error) = install_peers() {
            eprintln!("bench: {error}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(error) = run_echoed(&mut cargo_command(&[
        "build",
        "--release",
        "-p",
        SLIPWAY_COMMAND_PACKAGE,
        "-p",
        "bench-harness",
    ])) {
        eprintln!("bench: {error}");
        return ExitCode::FAILURE;
    }
    let harness = target_dir().join("release/bench-harness");
    match run_echoed(Command::new(harness).args(&options.harness_args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The target directory cargo builds into.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

fn install_peers() -> Result<(), String> {
    if !is_root() {
        return Err(format!(
            "--install-peers needs root (apt-get install {})",
            packages().join(" ")
        ));
    }
    let install = || {
        let mut command = Command::new("apt-get");
        command
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages())
            .env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    if run_echoed(&mut install()).is_ok() {
        return Ok(());
    }
    run_echoed(Command::new("apt-get").arg("update"))?;
    run_echoed(&mut install())
}

/// Whether we run as root, from `id -u` (xtask has no libc dependency).
fn is_root() -> bool {
    crate::process::capture(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::SLIPWAY_COMMAND_PACKAGE;
    use std::path::Path;

    #[test]
    fn the_package_built_for_the_harness_is_the_one_with_the_slipway_binary() -> std::io::Result<()>
    {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
        let manifest =
            std::fs::read_to_string(crates.join(SLIPWAY_COMMAND_PACKAGE).join("Cargo.toml"))?;
        assert!(
            manifest.contains("name = \"slipway\""),
            "{SLIPWAY_COMMAND_PACKAGE} builds no `slipway` binary:\n{manifest}"
        );
        Ok(())
    }
}
