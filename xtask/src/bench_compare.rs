//! `cargo xtask bench-compare --baseline <ref>`: the benchmarks of this
//! tree against those of an earlier commit, interleaved, with a verdict
//! that tells a change from run-to-run noise.
//!
//! The baseline is checked out in a git worktree under
//! `target/bench-compare/<sha>/tree` (reused on the next run). The divan
//! benches measured are this tree's `crates/bench-harness/benches`, for
//! both trees: each tree gets a small cargo package of its own under
//! `target/bench-compare/<id>/overlay` whose bench targets are those files
//! and whose dependencies are that tree's crates, so the same code measures
//! both and a commit older than the benches can still be compared. A bench
//! file that does not compile against the baseline (an API it calls is
//! missing) is skipped and named. Both packages build with the same
//! profile and their own copy of their tree's `Cargo.lock`.
//!
//! The wall-clock harness, when this tree has one, runs from this tree for
//! both, with `--slipway` naming each tree's release `slipway` binary and
//! only slipway's own paths.

mod divan;
mod harness;
mod report;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::{capture, cargo, workspace_root};
use report::Series;

/// Default repetitions of each tree.
const DEFAULT_REPS: u32 = 3;
/// Default smallest change called faster or slower, in percent: identical
/// sources built into the two overlay packages measured up to 13 % apart,
/// steadily, on a few flow-table benches (code layout), so smaller deltas
/// say little.
const DEFAULT_MIN_CHANGE_PCT: f64 = 5.0;
/// The harness paths that run slipway itself.
const SLIPWAY_PATHS: &str = "slipway-65520,slipway-1500";
/// Longest one bench binary may run.
const BENCH_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest one harness run may take.
const HARNESS_TIMEOUT: Duration = Duration::from_secs(1800);

/// Command-line options of `bench-compare`.
#[derive(Debug, PartialEq)]
pub struct Options {
    baseline: String,
    reps: u32,
    min_change_pct: f64,
    harness: bool,
    harness_args: Vec<String>,
}

impl Options {
    /// Parses the arguments after `bench-compare`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut baseline = None;
        let mut options = Options {
            baseline: String::new(),
            reps: DEFAULT_REPS,
            min_change_pct: DEFAULT_MIN_CHANGE_PCT,
            harness: true,
            harness_args: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--baseline" => {
                    let value = args.next().ok_or("--baseline needs a git revision")?;
                    baseline = Some(value.clone());
                }
                "--reps" => {
                    let value = args.next().ok_or("--reps needs a number")?;
                    options.reps = match value.parse() {
                        Ok(n) if n >= 1 => n,
                        _ => return Err(format!("--reps takes a number from 1, not `{value}`")),
                    };
                }
                "--min-change" => {
                    let value = args.next().ok_or("--min-change needs a percentage")?;
                    options.min_change_pct = match value.parse::<f64>() {
                        Ok(pct) if pct.is_finite() && pct >= 0.0 => pct,
                        _ => return Err(format!("--min-change takes a percentage, not `{value}`")),
                    };
                }
                "--no-harness" => options.harness = false,
                "--harness-args" => options.harness_args = args.by_ref().cloned().collect(),
                other => return Err(format!("bench-compare: unknown option `{other}`")),
            }
        }
        options.baseline = baseline.ok_or("bench-compare needs --baseline <ref>")?;
        Ok(options)
    }
}

/// One of the two trees compared.
struct Tree {
    /// `baseline` or `current`.
    label: &'static str,
    /// The checkout.
    root: PathBuf,
    /// Its scratch directory under `target/bench-compare`.
    scratch: PathBuf,
    /// The target directory for builds in the checkout itself; `None` for
    /// this tree, which keeps the caller's.
    target_dir: Option<PathBuf>,
}

/// Runs the comparison and prints the report.
pub fn run(options: &Options) -> ExitCode {
    match compare(options) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("xtask bench-compare: {message}");
            ExitCode::FAILURE
        }
    }
}

fn compare(options: &Options) -> Result<String, String> {
    let root = workspace_root();
    let base_dir = root.join("target").join("bench-compare");
    let sha = git(
        &root,
        &[
            "rev-parse",
            "--verify",
            &format!("{}^{{commit}}", options.baseline),
        ],
    )?;
    let short = sha.get(..12).unwrap_or(&sha).to_owned();
    let subject = git(&root, &["log", "-1", "--format=%s", &sha])?;
    let baseline = Tree {
        label: "baseline",
        root: baseline_worktree(&root, &base_dir.join(&short).join("tree"), &sha)?,
        scratch: base_dir.join(&short),
        target_dir: Some(base_dir.join(&short).join("tree").join("target")),
    };
    let current = Tree {
        label: "current",
        root: root.clone(),
        scratch: base_dir.join("current"),
        target_dir: None,
    };
    let mut notes = vec![format!("baseline: {short} {subject}")];
    if !baseline.root.join("crates/bench-harness/benches").is_dir() {
        notes.push(
            "the baseline tree has no divan benches of its own; this tree's benches are \
             compiled against it"
                .to_owned(),
        );
    }

    let benches = bench_sources(&root)?;
    let mut built = Vec::new();
    for tree in [&baseline, &current] {
        let Built { exes, skipped } = build_overlay(tree, &root, &benches)?;
        for (bench, why) in skipped {
            notes.push(format!("{}: bench `{bench}` skipped: {why}", tree.label));
        }
        built.push(exes);
    }
    let [base_exes, cur_exes] = [&built[0], &built[1]];
    let common: Vec<&String> = cur_exes
        .keys()
        .filter(|b| base_exes.contains_key(*b))
        .collect();

    let harness = if options.harness {
        prepare_harness(&root, [&baseline, &current], &mut notes)?
    } else {
        notes.push("harness: not run (--no-harness)".to_owned());
        None
    };

    let trees = [&baseline, &current];
    let measured = measure(
        options,
        trees,
        &built,
        &common,
        harness.as_ref(),
        &mut notes,
    )?;
    let mut seen = std::collections::HashSet::new();
    notes.retain(|note| seen.insert(note.clone()));
    let out = render(options, &short, &notes, &measured, harness.is_some());
    let saved = base_dir.join(format!("report-{short}.md"));
    fs::write(&saved, &out).map_err(|e| format!("cannot write {}: {e}", saved.display()))?;
    eprintln!("bench-compare: report saved to {}", saved.display());
    Ok(out)
}

/// Every benchmark's values in both trees.
#[derive(Default)]
struct Measured {
    divan: BTreeMap<String, Series>,
    harness: BTreeMap<String, Series>,
}

/// Runs the benches both trees built, and the harness, tree after tree,
/// `options.reps` times.
fn measure(
    options: &Options,
    trees: [&Tree; 2],
    built: &[BTreeMap<String, PathBuf>],
    common: &[&String],
    harness: Option<&Harness>,
    notes: &mut Vec<String>,
) -> Result<Measured, String> {
    let mut measured = Measured::default();
    for rep in 1..=options.reps {
        for (index, tree) in trees.into_iter().enumerate() {
            for bench in common {
                let log = tree.scratch.join("logs").join(format!("{bench}-{rep}.txt"));
                eprintln!("bench-compare: rep {rep}, {}: {bench}", tree.label);
                let exe = built[index]
                    .get(*bench)
                    .ok_or("a bench binary went missing")?;
                let output = run_logged(Command::new(exe).arg("--bench"), &log, BENCH_TIMEOUT)?;
                for m in divan::parse(&output) {
                    let series = measured.divan.entry(m.name).or_insert_with(Series::nanos);
                    side(series, index).push(m.nanos);
                }
            }
            if let Some(h) = harness {
                let run = run_harness(h, tree, index, rep, &options.harness_args)?;
                for missing in run.missing {
                    notes.push(format!("{} harness: {missing}", tree.label));
                }
                for m in run.results {
                    let series = measured
                        .harness
                        .entry(m.name)
                        .or_insert_with(|| Series::new(&m.unit, m.better));
                    side(series, index).push(m.median);
                }
            }
        }
    }
    Ok(measured)
}

/// The whole report: notes, then the tables.
fn render(
    options: &Options,
    short: &str,
    notes: &[String],
    measured: &Measured,
    harness_ran: bool,
) -> String {
    let mut out = format!(
        "## bench-compare: {short} (baseline) vs the working tree, {} rep(s), interleaved\n\n",
        options.reps
    );
    for note in notes {
        out.push_str(&format!("- {note}\n"));
    }
    out.push('\n');
    let floor = options.min_change_pct;
    out.push_str(&report::markdown("divan benches", &measured.divan, floor));
    if harness_ran {
        out.push('\n');
        out.push_str(&report::markdown(
            "wall-clock harness",
            &measured.harness,
            floor,
        ));
    }
    out.push_str(&format!(
        "\nspread %: the wider of the two trees' (max - min) / median over the repetitions; \
         a delta inside it, or below {floor}%, is noise.\n"
    ));
    out
}

fn side(series: &mut Series, index: usize) -> &mut Vec<f64> {
    if index == 0 {
        &mut series.baseline
    } else {
        &mut series.current
    }
}

/// `git ARGS` in `dir`, its trimmed stdout.
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    capture(Command::new("git").args(args).current_dir(dir)).map(|s| s.trim().to_owned())
}

/// The worktree of `sha` at `dir`: reused when it is there and clean,
/// created (detached) otherwise.
fn baseline_worktree(root: &Path, dir: &Path, sha: &str) -> Result<PathBuf, String> {
    if dir.join(".git").exists() {
        if git(dir, &["rev-parse", "HEAD"]).is_ok_and(|head| head == sha) {
            return Ok(dir.to_path_buf());
        }
        let shown = dir.to_string_lossy();
        let _ = git(root, &["worktree", "remove", "--force", &shown]);
    }
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    git(root, &["worktree", "prune"])?;
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    eprintln!(
        "bench-compare: git worktree add --detach {} {sha}",
        dir.display()
    );
    git(
        root,
        &["worktree", "add", "--detach", &dir.to_string_lossy(), sha],
    )?;
    Ok(dir.to_path_buf())
}

/// The bench files of this tree, by target name.
fn bench_sources(root: &Path) -> Result<BTreeMap<String, PathBuf>, String> {
    let dir = root.join("crates/bench-harness/benches");
    let entries = fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut benches = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                benches.insert(stem.to_owned(), path);
            }
        }
    }
    if benches.is_empty() {
        return Err(format!("no benches in {}", dir.display()));
    }
    Ok(benches)
}

/// The `[section]` of a manifest as `(key, value)` lines; keys such as
/// `divan.workspace` come back as `divan`. Enough for this workspace's
/// manifests, whose dependency entries are one line each.
fn manifest_section(manifest: &str, section: &str) -> Vec<(String, String)> {
    let header = format!("[{section}]");
    manifest
        .lines()
        .skip_while(|line| line.trim() != header)
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            let key = key.trim();
            let name = key.strip_suffix(".workspace").unwrap_or(key);
            (!key.starts_with('#')).then(|| (name.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// The manifest of the overlay package of `tree`: this tree's bench files,
/// `tree`'s crates, registry dependencies as this workspace pins them.
fn overlay_manifest(
    tree: &Path,
    current: &Path,
    benches: &BTreeMap<String, PathBuf>,
) -> Result<String, String> {
    let read = |path: PathBuf| {
        fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let harness_manifest = read(current.join("crates/bench-harness/Cargo.toml"))?;
    let workspace = read(current.join("Cargo.toml"))?;
    let pinned = manifest_section(&workspace, "workspace.dependencies");
    let mut out = String::from(
        "# Written by `cargo xtask bench-compare`.\n\
         [package]\nname = \"bench-compare-overlay\"\nversion = \"0.0.0\"\n\
         edition = \"2024\"\npublish = false\n\n[workspace]\n\n[dev-dependencies]\n",
    );
    for (name, _) in manifest_section(&harness_manifest, "dev-dependencies") {
        let member = tree.join("crates").join(&name);
        if member.join("Cargo.toml").is_file() {
            out.push_str(&format!(
                "{name} = {{ path = {:?} }}\n",
                member.to_string_lossy()
            ));
        } else if let Some((_, spec)) = pinned
            .iter()
            .find(|(n, v)| *n == name && !v.contains("path"))
        {
            out.push_str(&format!("{name} = {spec}\n"));
        }
    }
    for (name, path) in benches {
        out.push_str(&format!(
            "\n[[bench]]\nname = {name:?}\npath = {:?}\nharness = false\n",
            path.to_string_lossy()
        ));
    }
    Ok(out)
}

/// Writes and builds `tree`'s overlay package. Returns the bench binaries
/// by name and the benches that did not build, with the first error.
fn build_overlay(
    tree: &Tree,
    current: &Path,
    benches: &BTreeMap<String, PathBuf>,
) -> Result<Built, String> {
    let overlay = tree.scratch.join("overlay");
    let src = overlay.join("src");
    fs::create_dir_all(&src).map_err(|e| format!("cannot create {}: {e}", src.display()))?;
    let write = |path: PathBuf, text: &str| {
        fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(
        overlay.join("Cargo.toml"),
        &overlay_manifest(&tree.root, current, benches)?,
    )?;
    write(src.join("lib.rs"), "//! Bench targets only.\n")?;
    // The tree's own versions of everything it shares with the benches;
    // cargo adds what only the benches use.
    let lock = overlay.join("Cargo.lock");
    if let Err(e) = fs::copy(tree.root.join("Cargo.lock"), &lock) {
        eprintln!(
            "bench-compare: {} tree's Cargo.lock not copied: {e}",
            tree.label
        );
    }
    let manifest = overlay.join("Cargo.toml");
    let target = overlay.join("target");
    let build = |only: Option<&str>| {
        let mut command = Command::new(cargo());
        command
            .args([
                "bench",
                "--no-run",
                "--message-format=json-render-diagnostics",
            ])
            .arg("--manifest-path")
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&overlay);
        if let Some(bench) = only {
            command.args(["--bench", bench]);
        }
        eprintln!(
            "bench-compare: building the {} benches{}",
            tree.label,
            only.map(|b| format!(" ({b})")).unwrap_or_default()
        );
        command.stdin(Stdio::null()).stderr(Stdio::piped()).output()
    };
    let output = build(None).map_err(|e| format!("cannot run cargo: {e}"))?;
    let mut exes = executables(&String::from_utf8_lossy(&output.stdout), "bench");
    let mut skipped = Vec::new();
    if !output.status.success() {
        let missing: Vec<&String> = benches.keys().filter(|b| !exes.contains_key(*b)).collect();
        for bench in missing {
            let one = build(Some(bench)).map_err(|e| format!("cannot run cargo: {e}"))?;
            if one.status.success() {
                exes.extend(executables(&String::from_utf8_lossy(&one.stdout), "bench"));
            } else {
                skipped.push((
                    bench.clone(),
                    first_error(&String::from_utf8_lossy(&one.stderr)),
                ));
            }
        }
    }
    Ok(Built { exes, skipped })
}

/// The outcome of building an overlay package.
struct Built {
    /// Bench binaries by target name.
    exes: BTreeMap<String, PathBuf>,
    /// Benches that did not build, with the first error.
    skipped: Vec<(String, String)>,
}

/// The executables of `kind` targets in cargo's JSON messages, by name.
fn executables(messages: &str, kind: &str) -> BTreeMap<String, PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|x| x == kind))
        })
        .filter_map(|m| {
            let name = m["target"]["name"].as_str()?.to_owned();
            Some((name, PathBuf::from(m["executable"].as_str()?)))
        })
        .collect()
}

/// The first `error` line of a build's stderr, for the report.
fn first_error(stderr: &str) -> String {
    stderr
        .lines()
        .find(|line| line.starts_with("error"))
        .unwrap_or("the build failed")
        .to_owned()
}

/// The harness binary of this tree and each tree's `slipway`, built in
/// release; `None`, with a note, when this tree has no harness.
struct Harness {
    binary: PathBuf,
    slipway: [PathBuf; 2],
}

fn prepare_harness(
    root: &Path,
    trees: [&Tree; 2],
    notes: &mut Vec<String>,
) -> Result<Option<Harness>, String> {
    let metadata = capture(
        Command::new(cargo())
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .current_dir(root),
    )?;
    let metadata: Value =
        serde_json::from_str(&metadata).map_err(|e| format!("cargo metadata: {e}"))?;
    let has_harness = metadata["packages"].as_array().is_some_and(|packages| {
        packages.iter().any(|p| {
            p["targets"].as_array().is_some_and(|targets| {
                targets.iter().any(|t| {
                    t["name"] == "bench-harness"
                        && t["kind"]
                            .as_array()
                            .is_some_and(|k| k.iter().any(|x| x == "bin"))
                })
            })
        })
    });
    if !has_harness {
        notes.push(
            "harness: not available in this tree (no `bench-harness` binary); divan benches only"
                .to_owned(),
        );
        return Ok(None);
    }
    let binary = build_release(trees[1], "bench-harness", "bench-harness")?;
    let slipway = [
        build_release(trees[0], command_package(trees[0]), "slipway")?,
        build_release(trees[1], command_package(trees[1]), "slipway")?,
    ];
    Ok(Some(Harness { binary, slipway }))
}

/// The package of `tree` that holds the `slipway` command: `slipway-cli`
/// once the command left the library, `slipway` in older trees.
fn command_package(tree: &Tree) -> &'static str {
    if tree.root.join("crates/slipway-cli/Cargo.toml").is_file() {
        "slipway-cli"
    } else {
        "slipway"
    }
}

/// Builds binary `bin` of `package` in `tree` in release and returns it.
fn build_release(tree: &Tree, package: &str, bin: &str) -> Result<PathBuf, String> {
    let mut command = Command::new(cargo());
    command
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
            "-p",
            package,
            "--bin",
            bin,
        ])
        .current_dir(&tree.root);
    if let Some(dir) = &tree.target_dir {
        command.env("CARGO_TARGET_DIR", dir);
    }
    eprintln!("bench-compare: building {bin} of the {} tree", tree.label);
    let messages = capture(&mut command)?;
    executables(&messages, "bin")
        .remove(bin)
        .ok_or_else(|| format!("cargo built no `{bin}` binary in the {} tree", tree.label))
}

fn run_harness(
    harness: &Harness,
    tree: &Tree,
    index: usize,
    rep: u32,
    extra: &[String],
) -> Result<harness::Run, String> {
    let logs = tree.scratch.join("logs");
    let json = logs.join(format!("harness-{rep}.json"));
    fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    let mut command = Command::new(&harness.binary);
    // Whatever else the harness writes by default lands beside its log.
    command
        .current_dir(&logs)
        .arg("--slipway")
        .arg(&harness.slipway[index])
        .arg("--json")
        .arg(&json);
    // bench-compare repeats the harness itself; one repetition per run
    // unless told otherwise.
    for (option, default) in [("--paths", SLIPWAY_PATHS), ("--reps", "1")] {
        if !extra.iter().any(|a| a == option) {
            command.args([option, default]);
        }
    }
    command.args(extra);
    eprintln!("bench-compare: rep {rep}, {}: harness", tree.label);
    run_logged(
        &mut command,
        &logs.join(format!("harness-{rep}.txt")),
        HARNESS_TIMEOUT,
    )?;
    let text = fs::read_to_string(&json)
        .map_err(|e| format!("harness wrote no {}: {e}", json.display()))?;
    harness::parse(&text)
}

/// Runs `command` with its stdout and stderr in `log`, killing it after
/// `timeout`; returns its stdout (the whole log).
fn run_logged(command: &mut Command, log: &Path, timeout: Duration) -> Result<String, String> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let file =
        fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let errors = file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let shown = format!("{:?}", command.get_program());
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(errors)
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{shown} ran longer than {timeout:?}; log: {}",
                    log.display()
                ));
            }
            Err(e) => return Err(format!("waiting for {shown}: {e}")),
        }
    };
    if !status.success() {
        return Err(format!("{shown} failed ({status}); log: {}", log.display()));
    }
    fs::read_to_string(log).map_err(|e| format!("cannot read {}: {e}", log.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(words: &[&str]) -> Result<Options, String> {
        let args: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        Options::parse(&args)
    }

    #[test]
    fn baseline_is_required_and_reps_default_to_three() {
        assert!(parse(&[]).is_err());
        let options = parse(&["--baseline", "HEAD~1"]).unwrap();
        assert_eq!(options.baseline, "HEAD~1");
        assert_eq!(options.reps, 3);
        assert!((options.min_change_pct - 5.0).abs() < f64::EPSILON);
        assert!(options.harness);
    }

    #[test]
    fn harness_args_take_the_rest() {
        let options = parse(&[
            "--reps",
            "5",
            "--baseline",
            "v1",
            "--harness-args",
            "--duration",
            "2",
            "--reps",
            "1",
        ])
        .unwrap();
        assert_eq!(options.reps, 5);
        assert_eq!(options.harness_args, ["--duration", "2", "--reps", "1"]);
    }

    #[test]
    fn bad_reps_or_unknown_options_are_refused() {
        assert!(parse(&["--baseline", "x", "--reps", "0"]).is_err());
        assert!(parse(&["--baseline", "x", "--reps"]).is_err());
        assert!(parse(&["--baseline", "x", "--fast"]).is_err());
        assert!(parse(&["--baseline", "x", "--min-change", "-1"]).is_err());
        let zero = parse(&["--baseline", "x", "--min-change", "0"]).unwrap();
        assert!(zero.min_change_pct.abs() < f64::EPSILON);
    }

    #[test]
    fn overlay_uses_the_trees_crates_and_this_trees_benches() {
        let root = workspace_root();
        let benches = bench_sources(&root).unwrap();
        assert!(benches.contains_key("flow_table"), "{benches:?}");
        let tree = Path::new("/nonexistent/old-tree");
        let manifest = overlay_manifest(tree, &root, &benches).unwrap();
        // No crate of the old tree exists, so only registry crates remain.
        assert!(manifest.contains("\ndivan = "), "{manifest}");
        assert!(!manifest.contains("slipway = "), "{manifest}");
        let manifest = overlay_manifest(&root, &root, &benches).unwrap();
        let slipway = root.join("crates/slipway");
        assert!(manifest.contains(&format!(
            "slipway = {{ path = {:?} }}",
            slipway.to_string_lossy()
        )));
        assert!(manifest.contains("name = \"flow_table\"\npath = "));
    }

    #[test]
    fn cargo_artifacts_give_the_executables() {
        let messages = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"nat_core"},"executable":null}
{"reason":"compiler-artifact","target":{"kind":["bench"],"name":"tcp"},"executable":"/t/release/deps/tcp-1"}
{"reason":"build-finished","success":true}"#;
        let exes = executables(messages, "bench");
        assert_eq!(exes.len(), 1);
        assert_eq!(exes["tcp"], PathBuf::from("/t/release/deps/tcp-1"));
    }
}
