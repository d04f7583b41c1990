//! A harness run: every selected path, started afresh in each repetition,
//! runs every selected workload; repetitions interleave the paths so that
//! drift in the machine's load spreads over all of them.
//!
//! Invariant: a path that cannot run here is reported absent, never
//! failed; a workload that fails is recorded with its error and the run
//! goes on; every namespace and process of the run is gone when
//! [`run`] returns.

use std::fs;
use std::path::{Path as FsPath, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::cli::RunOptions;
use crate::paths::{self, Host, Path};
use crate::report::{Absent, Failure, Report};
use crate::sys;
use crate::workloads::{Outcome, Session, Settings, Workload};

/// Where results go unless the options say otherwise.
#[must_use]
pub fn default_out_dir() -> PathBuf {
    target_dir().join("bench")
}

/// The workspace's target directory: `CARGO_TARGET_DIR` when set at build
/// time, else `target/` under the workspace root.
pub(crate) fn target_dir() -> PathBuf {
    option_env!("CARGO_TARGET_DIR").map_or_else(
        || FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    )
}

/// The slipway binary to test when `--slipway` is not given: next to the
/// harness's own binary (both built by `cargo build --release`), else the
/// workspace's `target/release/slipway`.
#[must_use]
pub fn default_slipway(exe: &FsPath) -> PathBuf {
    let beside = exe.with_file_name("slipway");
    if beside.is_file() {
        return beside;
    }
    target_dir().join("release/slipway")
}

/// Runs the harness and returns its report.
///
/// # Errors
/// An unknown path name, or the host namespace could not be built.
pub fn run(options: &RunOptions, exe: &FsPath) -> Result<Report, String> {
    sys::raise_nofile();
    let slipway = options
        .slipway
        .clone()
        .unwrap_or_else(|| default_slipway(exe));
    let all = paths::all(&slipway, options.pasta_current.as_deref(), &target_dir());
    let selected: Vec<&dyn Path> = if options.paths.is_empty() {
        all.iter().map(AsRef::as_ref).collect()
    } else {
        options
            .paths
            .iter()
            .map(|name| {
                all.iter()
                    .find(|p| p.name() == name)
                    .map(AsRef::as_ref)
                    .ok_or_else(|| {
                        let known: Vec<&str> = all.iter().map(|p| p.name()).collect();
                        format!(
                            "--paths: unknown path {name:?} (known: {})",
                            known.join(", ")
                        )
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let mut workloads = if options.workloads.is_empty() {
        Workload::ALL.to_vec()
    } else {
        options.workloads.clone()
    };
    workloads.sort();
    workloads.dedup();

    let mut report = Report {
        machine: machine(options, &slipway, &selected, &workloads),
        ..Report::default()
    };
    let mut present = Vec::new();
    for path in selected {
        match path.absent() {
            Some(why) => report.absent.push(Absent {
                path: path.name().to_owned(),
                workload: None,
                why,
            }),
            None => present.push(path),
        }
    }
    let mut runnable = Vec::new();
    for workload in workloads {
        match workload.tool().filter(|tool| !sys::in_path(tool)) {
            Some(tool) => report.absent.push(Absent {
                path: "*".into(),
                workload: Some(workload.name().to_owned()),
                why: format!("{tool} not installed"),
            }),
            None => runnable.push(workload),
        }
    }
    if present.is_empty() {
        return Ok(report);
    }
    for name in sys::reap_stale_runs() {
        eprintln!("bench: removed {name}, left by a harness run that was killed");
    }
    let host = Host::create(&format!("{}{}", sys::NETNS_PREFIX, std::process::id()))?;
    let settings = Settings {
        exe: exe.to_path_buf(),
        duration: options.duration,
        idle_flows: options.idle_flows,
    };
    for rep in 1..=options.reps {
        for path in &present {
            run_path(&mut report, &host, *path, &settings, &runnable, rep);
        }
    }
    Ok(report)
}

fn run_path(
    report: &mut Report,
    host: &Host,
    path: &dyn Path,
    settings: &Settings,
    workloads: &[Workload],
    rep: u32,
) {
    let name = path.name();
    eprintln!("bench: rep {rep}: {name}");
    let mut idle_10k = false;
    {
        let Some(session) = start_session(report, host, path, settings, rep) else {
            return;
        };
        for workload in workloads {
            // idle_10k measures what 10k flows cost: it gets a stack of its
            // own (below), so that its memory figure does not carry the
            // allocator's high-water mark of the throughput workloads.
            if *workload == Workload::Idle10k && session.skip(*workload).is_none() {
                idle_10k = true;
            } else {
                run_workload(report, &session, name, *workload, rep);
            }
        }
        // The session ends here: its servers hold the ports the next needs.
    }
    if idle_10k {
        if let Some(own) = start_session(report, host, path, settings, rep) {
            run_workload(report, &own, name, Workload::Idle10k, rep);
        }
    }
}

/// Starts a session of `path`, or records why it did not start.
fn start_session<'a>(
    report: &mut Report,
    host: &'a Host,
    path: &dyn Path,
    settings: &Settings,
    rep: u32,
) -> Option<Session<'a>> {
    let name = path.name();
    match Session::start(host, path, settings) {
        Ok(session) => Some(session),
        Err(error) => {
            eprintln!("bench:   {name} did not start: {error}");
            report.failures.push(Failure {
                path: name.into(),
                workload: None,
                rep,
                error,
            });
            None
        }
    }
}

/// Runs `workload` in `session` and records what it measured, why it does
/// not apply, or how it failed.
fn run_workload(
    report: &mut Report,
    session: &Session<'_>,
    name: &str,
    workload: Workload,
    rep: u32,
) {
    match session.run(workload) {
        Ok(Outcome::Measured(values)) => {
            let shown: Vec<String> = values
                .iter()
                .map(|(m, v)| format!("{}={v:.2}", m.name))
                .collect();
            eprintln!("bench:   {} {}", workload.name(), shown.join(" "));
            for (metric, value) in values {
                report.record(name, workload.name(), metric, value);
            }
        }
        Ok(Outcome::NotApplicable(why)) => {
            let already = report
                .absent
                .iter()
                .any(|a| a.path == name && a.workload.as_deref() == Some(workload.name()));
            if !already {
                report.absent.push(Absent {
                    path: name.into(),
                    workload: Some(workload.name().into()),
                    why: why.into(),
                });
            }
        }
        Err(error) => {
            eprintln!("bench:   {} failed: {error}", workload.name());
            report.failures.push(Failure {
                path: name.into(),
                workload: Some(workload.name().into()),
                rep,
                error,
            });
        }
    }
}

/// What the report says about the machine and the run.
fn machine(
    options: &RunOptions,
    slipway: &FsPath,
    paths: &[&dyn Path],
    workloads: &[Workload],
) -> Map<String, Value> {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut machine = Map::new();
    machine.insert(
        "kernel".into(),
        json!(
            fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
        ),
    );
    machine.insert("cpu".into(), json!(cpu));
    machine.insert(
        "cpus".into(),
        json!(std::thread::available_parallelism().map_or(0, usize::from)),
    );
    machine.insert("unix_time".into(), json!(timestamp));
    machine.insert("slipway".into(), json!(slipway.display().to_string()));
    machine.insert("reps".into(), json!(options.reps));
    machine.insert("duration_s".into(), json!(options.duration.as_secs_f64()));
    machine.insert("idle_flows".into(), json!(options.idle_flows));
    machine.insert(
        "paths".into(),
        json!(paths.iter().map(|p| p.name()).collect::<Vec<_>>()),
    );
    machine.insert(
        "workloads".into(),
        json!(workloads.iter().map(|w| w.name()).collect::<Vec<_>>()),
    );
    let mut versions = Map::new();
    for (tool, package) in [
        ("pasta", "passt"),
        ("slirp4netns", "slirp4netns"),
        ("iperf3", "iperf3"),
    ] {
        if let Some(version) = package_version(tool, package) {
            versions.insert(tool.into(), json!(version));
        }
    }
    if let Some(version) = options
        .pasta_current
        .as_deref()
        .and_then(|binary| first_line_of_version(binary.as_os_str()))
    {
        versions.insert("pasta-current".into(), json!(version));
    }
    machine.insert("versions".into(), Value::Object(versions));
    machine
}

/// The Debian package version of an installed tool, or what `--version`
/// prints first.
fn package_version(tool: &str, package: &str) -> Option<String> {
    if !sys::in_path(tool) {
        return None;
    }
    let limit = Duration::from_secs(5);
    sys::run(
        Command::new("dpkg-query").args(["-W", "-f", "${Version}", package]),
        limit,
    )
    .ok()
    .filter(|v| !v.trim().is_empty())
    .or_else(|| first_line_of_version(tool.as_ref()))
    .map(|v| v.trim().to_owned())
}

/// The first line `program --version` prints.
fn first_line_of_version(program: &std::ffi::OsStr) -> Option<String> {
    sys::run(
        Command::new(program).arg("--version"),
        Duration::from_secs(5),
    )
    .ok()
    .and_then(|out| out.lines().next().map(|line| line.trim().to_owned()))
}

/// Writes the report's three renderings where the options say (defaults
/// under `target/bench/`), and returns the files written.
///
/// # Errors
/// A file could not be written.
pub fn write_outputs(report: &Report, options: &RunOptions) -> Result<Vec<PathBuf>, String> {
    let dir = default_out_dir();
    let outputs = [
        (
            options
                .json
                .clone()
                .unwrap_or_else(|| dir.join("bench.json")),
            {
                let mut text =
                    serde_json::to_string_pretty(&report.to_json()).map_err(|e| e.to_string())?;
                text.push('\n');
                text
            },
        ),
        (
            options
                .markdown
                .clone()
                .unwrap_or_else(|| dir.join("bench.md")),
            report.to_markdown(),
        ),
        (
            options.svg.clone().unwrap_or_else(|| dir.join("bench.svg")),
            crate::svg::render(report),
        ),
    ];
    let mut written = Vec::new();
    for (file, text) in outputs {
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        written.push(file);
    }
    Ok(written)
}
