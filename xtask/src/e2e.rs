//! `cargo xtask guest-image` and `cargo xtask e2e`: the guest image the VM
//! suite boots, and the end-to-end suites (a guest in a network namespace,
//! against loopback and against realistic peers; a guest kernel under
//! QEMU) run with their output shown.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use crate::process::{cargo_command, run_echoed, succeeds};
use test_support::guest_image;

/// The cargo target directory: `CARGO_TARGET_DIR`, else the one this
/// program was built into (`TARGET/debug/xtask`), which is where the test
/// binaries look for the guest image too.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| crate::process::workspace_root().join("target"))
}

/// The package with the QEMU that boots the image.
const QEMU_PACKAGE: &str = "qemu-system-x86";

/// Installs the missing packages of the guest image, and QEMU, with
/// apt-get when running as root; otherwise says what to install.
fn install_packages() -> Result<(), String> {
    let mut missing = guest_image::missing_packages();
    if !succeeds(Command::new("qemu-system-x86_64").arg("--version")) {
        missing.push(QEMU_PACKAGE);
    }
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    if !is_root {
        return Err(format!(
            "missing Debian packages: {0}; install them with \
             `apt-get install --no-install-recommends {0}` (as root)",
            missing.join(" ")
        ));
    }
    run_echoed(Command::new("apt-get").args(["update", "-qq"]))?;
    run_echoed(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Builds (or finds up to date) the guest image and prints where it is.
fn build_image() -> Result<(), String> {
    install_packages()?;
    let started = std::time::Instant::now();
    let image = guest_image::ensure(&target_dir())?;
    eprintln!(
        "guest-image: kernel {} ready in {:.1}s\n  kernel:    {}\n  initramfs: {}",
        image.kernel_version,
        started.elapsed().as_secs_f64(),
        image.kernel.display(),
        image.initramfs.display()
    );
    Ok(())
}

/// Runs `cargo xtask guest-image`.
pub fn guest_image() -> ExitCode {
    match build_image() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("guest-image: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Which suites `cargo xtask e2e` runs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    netns: bool,
    vm: bool,
}

impl Options {
    /// Parses the arguments after `e2e`: `--netns`, `--vm`, or both; none
    /// means the namespace suite alone.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options::default();
        for arg in args {
            match arg.as_str() {
                "--netns" => options.netns = true,
                "--vm" => options.vm = true,
                other => return Err(format!("unknown argument `{other}` for `e2e`")),
            }
        }
        if !options.vm {
            options.netns = true;
        }
        Ok(options)
    }
}

/// The test runner's command for test binaries of `slipway-cli` (the
/// end-to-end suites live beside the command they run), output
/// shown: nextest when installed, else `cargo test`.
fn suite(tests: &[&str]) -> Command {
    let nextest = succeeds(&mut cargo_command(&["nextest", "--version"]));
    let mut args = if nextest {
        vec!["nextest", "run", "-p", "slipway-cli"]
    } else {
        vec!["test", "-p", "slipway-cli"]
    };
    for test in tests {
        args.extend(["--test", test]);
    }
    args.extend(if nextest {
        &["--no-capture"][..]
    } else {
        &["--", "--nocapture"][..]
    });
    cargo_command(&args)
}

/// Runs `cargo xtask e2e`.
pub fn run(options: &Options) -> ExitCode {
    let mut failed = false;
    if options.netns {
        // The guest against servers on loopback, and against peers behind
        // an MTU-1500 link.
        if let Err(message) = run_echoed(&mut suite(&["e2e_netns", "e2e_real_peers"])) {
            eprintln!("e2e: namespace suite: {message}");
            failed = true;
        }
    }
    if options.vm {
        // QEMU's guests, and slipway-vmm's where KVM can run Linux.
        let tests = ["e2e_vm", "reference_vmm"];
        let result = build_image().and_then(|()| run_echoed(&mut suite(&tests)));
        if let Err(message) = result {
            eprintln!("e2e: VM suite: {message}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::Options;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn e2e_without_flags_runs_the_namespace_suite_only() {
        let options = Options::parse(&[]).ok();
        assert_eq!(
            options,
            Some(Options {
                netns: true,
                vm: false
            })
        );
    }

    #[test]
    fn e2e_vm_alone_skips_the_namespace_suite_and_both_flags_run_both() {
        assert_eq!(
            Options::parse(&args(&["--vm"])).ok(),
            Some(Options {
                netns: false,
                vm: true
            })
        );
        assert_eq!(
            Options::parse(&args(&["--vm", "--netns"])).ok(),
            Some(Options {
                netns: true,
                vm: true
            })
        );
        assert!(Options::parse(&args(&["--fast"])).is_err());
    }
}
