//! The harness end to end: a tiny run (one repetition, one-second
//! workloads) over slipway and host loopback, and one over QEMU guests
//! served by `slipway stream` and `slipway vhost-user`, whose JSON must
//! hold sane positive numbers, and runs on a machine without the peers or
//! without a usable slipway, which must report them absent rather than
//! failed.
//!
//! The first test needs root, /dev/net/tun and iperf3, and says why it
//! skips otherwise. Traffic goes only to 127.0.0.1 and to namespaces the
//! harness makes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A directory for the run's outputs, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("bench-harness-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bench-harness"))
}

/// The slipway binary of this build (built if the workspace's tests have
/// not built it yet).
fn slipway() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_bench-harness"));
    let binary = exe.with_file_name("slipway");
    if !binary.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "slipway-cli", "--bin", "slipway"])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
            .status()
            .expect("cargo build -p slipway-cli");
        assert!(status.success(), "cargo build -p slipway-cli failed");
    }
    binary
}

/// Runs the harness with `args` plus output files in `dir`; returns the
/// JSON it wrote and the markdown it printed.
fn run(dir: &Scratch, args: &[&str], path_env: Option<&Path>) -> (Value, String) {
    let json = dir.0.join("bench.json");
    let mut command = harness();
    command
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--markdown")
        .arg(dir.0.join("bench.md"))
        .arg("--svg")
        .arg(dir.0.join("bench.svg"));
    if let Some(path) = path_env {
        command.env("PATH", path);
    }
    common::scrub(&mut command);
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "harness failed: {}\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(&json).unwrap();
    (
        serde_json::from_str(&text).unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Asserts that a request-response workload's percentiles are ordered and
/// plausible and that it made more than `min_tps` transactions a second.
fn assert_round_trips(json: &Value, path: &str, workload: &str, min_tps: f64) {
    let p50 = value(json, path, workload, "p50_us");
    let p99 = value(json, path, workload, "p99_us");
    assert!(
        p50 > 0.0 && p50 <= p99 && p99 < 1e6,
        "{path} {workload}: {p50} {p99}"
    );
    assert!(
        value(json, path, workload, "tps") > min_tps,
        "{path} {workload}"
    );
}

fn value(json: &Value, path: &str, workload: &str, metric: &str) -> f64 {
    let results = json["results"].as_array().unwrap();
    let row = results
        .iter()
        .find(|r| r["path"] == path && r["workload"] == workload && r["metric"] == metric)
        .unwrap_or_else(|| panic!("no {path}/{workload}/{metric} in {json:#}"));
    assert_eq!(
        row["values"].as_array().unwrap().len(),
        1,
        "one rep, one value: {row}"
    );
    row["median"].as_f64().unwrap()
}

/// Whether the namespace paths and iperf3 can run here; says why not.
fn namespaces_and_iperf3() -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root || !Path::new("/dev/net/tun").exists() {
        common::skip("needs root and /dev/net/tun for network namespaces");
        return false;
    }
    if Command::new("iperf3").arg("--version").output().is_err() {
        common::skip("needs iperf3 in PATH");
        return false;
    }
    true
}

#[test]
fn tiny_run_over_slipway_and_loopback_measures_sane_numbers() {
    if !namespaces_and_iperf3() {
        return;
    }
    let dir = Scratch::new("tiny");
    let slipway = slipway();
    let (json, markdown) = run(
        &dir,
        &[
            "--paths",
            "slipway-65520,loopback",
            "--workloads",
            "idle,tcp_g2h,tcp_rr,udp_rr,dns",
            "--reps",
            "1",
            "--duration",
            "1",
            "--slipway",
            slipway.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(json["schema"], 1);
    assert_eq!(json["failures"].as_array().unwrap().len(), 0, "{json:#}");
    for path in ["slipway-65520", "loopback"] {
        assert!(value(&json, path, "tcp_g2h", "gbit_s") > 0.01, "{path}");
        for workload in ["tcp_rr", "udp_rr"] {
            assert_round_trips(&json, path, workload, 10.0);
        }
        assert!(value(&json, path, "dns", "qps") > 10.0, "{path}");
    }
    // The stack's own costs exist only where there is a stack process.
    let cpu = value(&json, "slipway-65520", "tcp_g2h", "cpu_s_per_gbit");
    assert!((0.0..10.0).contains(&cpu), "cpu s/Gbit {cpu}");
    assert!(value(&json, "slipway-65520", "idle", "rss_mib") > 0.1);
    assert!(value(&json, "slipway-65520", "idle", "wakeups_per_s") >= 0.0);
    let absent = json["absent"].as_array().unwrap();
    assert!(
        absent
            .iter()
            .any(|a| a["path"] == "loopback" && a["workload"] == "idle"),
        "{json:#}"
    );
    assert!(markdown.contains("| slipway-65520 |"), "{markdown}");
    let svg = std::fs::read_to_string(dir.0.join("bench.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("slipway-65520"));
}

/// The IPv6 rows beside the IPv4 ones in one run, over the kernel's own
/// paths: veth (an IPv6 address on each end) and loopback (`::1`). Each
/// IPv6 row carries its ratio to its IPv4 twin; slirp4netns, which carries
/// no IPv6 here, reports the IPv6 workloads absent rather than failed.
#[test]
fn tiny_run_measures_ipv6_beside_ipv4_and_reports_their_ratio() {
    if !namespaces_and_iperf3() {
        return;
    }
    let slirp = Command::new("slirp4netns")
        .arg("--version")
        .output()
        .is_ok();
    let paths = if slirp {
        "veth,loopback,slirp4netns-1500"
    } else {
        "veth,loopback"
    };
    let dir = Scratch::new("ipv6");
    let (json, markdown) = run(
        &dir,
        &[
            "--paths",
            paths,
            "--workloads",
            "tcp_g2h,tcp_g2h6,tcp_rr,tcp_rr6,tcp_crr,tcp_crr6",
            "--reps",
            "1",
            "--duration",
            "1",
        ],
        None,
    );
    assert_eq!(json["failures"].as_array().unwrap().len(), 0, "{json:#}");
    let results = json["results"].as_array().unwrap();
    for path in ["veth", "loopback"] {
        for workload in ["tcp_g2h", "tcp_g2h6"] {
            assert!(
                value(&json, path, workload, "gbit_s") > 0.01,
                "{path} {workload}"
            );
        }
        for workload in ["tcp_rr", "tcp_rr6", "tcp_crr", "tcp_crr6"] {
            assert_round_trips(&json, path, workload, 10.0);
        }
        assert_eq!(value(&json, path, "tcp_crr6", "errors"), 0.0, "{path}");
        let row = results
            .iter()
            .find(|r| r["path"] == path && r["workload"] == "tcp_g2h6")
            .unwrap();
        let expected =
            value(&json, path, "tcp_g2h6", "gbit_s") / value(&json, path, "tcp_g2h", "gbit_s");
        let ratio = row["v6_vs_v4"].as_f64().unwrap();
        assert!((ratio - expected).abs() < 1e-9, "{row}");
        assert!(
            markdown.contains(&format!(
                "| {path} | tcp_g2h | gbit_s (Gbit/s, higher better) |"
            )),
            "{markdown}"
        );
    }
    assert!(markdown.contains("IPv6 beside IPv4"), "{markdown}");
    if slirp {
        let absent = json["absent"].as_array().unwrap();
        for workload in ["tcp_g2h6", "tcp_rr6", "tcp_crr6"] {
            assert!(
                absent.iter().any(|a| a["path"] == "slirp4netns-1500"
                    && a["workload"] == workload
                    && a["why"].as_str().unwrap().contains("--enable-ipv6")),
                "{workload}: {json:#}"
            );
        }
        assert_round_trips(&json, "slirp4netns-1500", "tcp_rr", 10.0);
    } else {
        eprintln!("slirp4netns not installed: its IPv6 absence is not checked");
    }
}

/// The VM paths through slipway.
const SLIPWAY_VM_PATHS: [&str; 2] = ["qemu-slipway", "qemu-slipway-vhost-user"];

/// QEMU guests served by `slipway stream` and by `slipway vhost-user`: the
/// harness boots each, runs its clients inside the VM through the agent
/// and measures the slipway process. Skips (as the harness reports the
/// paths absent) without QEMU, the Debian kernel or root.
#[test]
fn tiny_run_over_qemu_guests_served_by_slipway_stream_and_vhost_user_measures_sane_numbers() {
    let root = rustix::process::geteuid().is_root();
    if !root || !Path::new("/dev/net/tun").exists() {
        common::skip("needs root and /dev/net/tun for network namespaces");
        return;
    }
    let dir = Scratch::new("vm");
    let slipway = slipway();
    let (json, markdown) = run(
        &dir,
        &[
            "--paths",
            &SLIPWAY_VM_PATHS.join(","),
            "--workloads",
            "idle,tcp_rr,fwd_connect",
            "--reps",
            "1",
            "--duration",
            "1",
            "--slipway",
            slipway.to_str().unwrap(),
        ],
        None,
    );
    let absent = json["absent"].as_array().unwrap();
    if let Some(why) = absent.iter().find(|a| {
        a.get("workload").is_none() && SLIPWAY_VM_PATHS.contains(&a["path"].as_str().unwrap())
    }) {
        common::skip(&format!("a VM path is absent: {why}"));
        return;
    }
    assert_eq!(json["failures"].as_array().unwrap().len(), 0, "{json:#}");
    for path in SLIPWAY_VM_PATHS {
        for workload in ["tcp_rr", "fwd_connect"] {
            assert_round_trips(&json, path, workload, 1.0);
        }
        assert_eq!(value(&json, path, "fwd_connect", "errors"), 0.0, "{path}");
        // The stack measured is the slipway process.
        assert!(value(&json, path, "idle", "rss_mib") > 0.1, "{path}");
        assert!(value(&json, path, "idle", "wakeups_per_s") >= 0.0, "{path}");
        assert!(markdown.contains(&format!("| {path} |")), "{markdown}");
    }
}

/// The reason `path` is absent in `json`, as a whole path.
fn absent_why(json: &Value, path: &str) -> String {
    json["absent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == path && a.get("workload").is_none())
        .and_then(|a| a["why"].as_str())
        .unwrap_or_else(|| panic!("{path} not absent: {json:#}"))
        .to_owned()
}

/// `qemu-slipway-vhost-user` is in the help and selected by name; it is
/// absent, not failed, when the slipway binary is missing or has no
/// `vhost-user` command (as a build from before it would not).
#[test]
fn vhost_user_vm_path_is_listed_and_absent_without_a_slipway_that_serves_it() {
    const PATH: &str = "qemu-slipway-vhost-user";
    let help = harness().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains(PATH));
    let qemu_installed = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("qemu-system-x86_64").is_file())
    });
    if !qemu_installed {
        common::skip("needs qemu-system-x86_64 in PATH to reach the slipway check");
        return;
    }
    let not_slipway = env!("CARGO_BIN_EXE_bench-harness");
    for (binary, expected) in [
        ("/nonexistent/slipway", "/nonexistent/slipway not found"),
        (not_slipway, "has no vhost-user command"),
    ] {
        let dir = Scratch::new("vhost-user-absent");
        let (json, markdown) = run(
            &dir,
            &[
                "--paths",
                PATH,
                "--workloads",
                "tcp_rr",
                "--reps",
                "1",
                "--slipway",
                binary,
            ],
            None,
        );
        assert_eq!(
            json["machine"]["paths"],
            serde_json::json!([PATH]),
            "{json:#}"
        );
        let why = absent_why(&json, PATH);
        assert!(why.contains(expected), "{binary}: {why}");
        assert_eq!(json["results"].as_array().unwrap().len(), 0);
        assert_eq!(json["failures"].as_array().unwrap().len(), 0);
        assert!(markdown.contains(&format!("- {PATH}: ")), "{markdown}");
    }
}

#[test]
fn peers_not_installed_are_absent_not_failed() {
    let dir = Scratch::new("absent");
    // An empty PATH: no pasta, no slirp4netns, no iperf3.
    let empty = dir.0.join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let (json, markdown) = run(
        &dir,
        &[
            "--paths",
            "pasta,slirp4netns-1500,slipway-65520,qemu-passt,qemu-slipway-vhost-user",
            "--workloads",
            "tcp_g2h,tcp_rr",
            "--reps",
            "1",
            "--duration",
            "1",
            "--slipway",
            "/nonexistent/slipway",
        ],
        Some(&empty),
    );
    let absent = json["absent"].as_array().unwrap();
    let why = |path: &str| absent_why(&json, path);
    assert!(why("pasta").contains("pasta not installed"));
    assert!(why("slirp4netns-1500").contains("slirp4netns not installed"));
    assert!(why("slipway-65520").contains("/nonexistent/slipway"));
    for path in ["qemu-passt", "qemu-slipway-vhost-user"] {
        assert!(why(path).contains("qemu-system-x86_64 not installed"));
    }
    assert!(
        absent
            .iter()
            .any(|a| a["workload"] == "tcp_g2h" && a["why"].as_str().unwrap().contains("iperf3")),
        "{json:#}"
    );
    assert_eq!(json["results"].as_array().unwrap().len(), 0);
    assert_eq!(json["failures"].as_array().unwrap().len(), 0);
    assert!(
        markdown.contains("- pasta: pasta not installed"),
        "{markdown}"
    );
}
