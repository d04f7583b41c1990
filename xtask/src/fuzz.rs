//! `cargo xtask fuzz`: runs cargo-fuzz targets of `fuzz/` for a bounded
//! time or number of runs, one target or all of them (built once), and
//! writes their seed corpora from captures (`--seed-corpora`, in
//! `fuzz_seeds`). `verify`'s `fuzz` step is [`smoke`]: every target for a
//! few seconds.
//!
//! Each run reads three corpus directories: `fuzz/corpus/TARGET` (the
//! working corpus, not committed, where new inputs go), `fuzz/seeds/TARGET`
//! (committed seeds) and `fuzz/regressions/TARGET` (committed inputs that
//! once failed), so every run replays the seeds and regressions first.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::fuzz_seeds;
use crate::process::{run_echoed, succeeds, workspace_root};

/// How long a run lasts when neither `--seconds` nor `--runs` is given.
const DEFAULT_SECONDS: u32 = 60;

/// How long `verify`'s smoke run gives each target.
pub const SMOKE_SECONDS: u32 = 5;

/// A libFuzzer unit slower than this is reported as a hang.
const UNIT_TIMEOUT_SECONDS: u32 = 10;

/// When a run stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// After this many seconds (`-max_total_time`).
    Seconds(u32),
    /// After this many inputs (`-runs`).
    Runs(u64),
}

/// What `fuzz` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Options {
    /// Run these targets, one after the other.
    Run {
        /// The targets, in order.
        targets: Vec<String>,
        /// When each stops.
        limit: Limit,
    },
    /// Write the seed corpora from these captures (the default ones when
    /// empty).
    SeedCorpora(Vec<PathBuf>),
}

impl Options {
    /// Parses the arguments after `fuzz`, checking targets against the
    /// files in `fuzz/fuzz_targets`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        parse_with_targets(args, &targets())
    }
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(
    flag: &str,
    value: &str,
) -> Result<T, String> {
    value
        .parse()
        .ok()
        .filter(|n| *n > T::default())
        .ok_or_else(|| format!("`{flag}` takes a positive whole number, not `{value}`"))
}

fn parse_with_targets(args: &[String], known: &[String]) -> Result<Options, String> {
    let mut named = Vec::new();
    let mut all = false;
    let mut seeds = false;
    let mut limit = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (arg.as_str(), None),
        };
        let mut value = |flag: &str| -> Result<String, String> {
            match inline {
                Some(value) => Ok(value.to_owned()),
                None => args
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("`{flag}` needs a number")),
            }
        };
        match flag {
            "--seconds" => limit = Some(Limit::Seconds(positive(flag, &value(flag)?)?)),
            "--runs" => limit = Some(Limit::Runs(positive(flag, &value(flag)?)?)),
            "--all" if inline.is_none() => all = true,
            "--seed-corpora" if inline.is_none() => seeds = true,
            _ if arg.starts_with('-') => {
                return Err(format!("unexpected argument `{arg}` for `fuzz`"));
            }
            _ => named.push(arg.clone()),
        }
    }
    if seeds {
        if all || limit.is_some() {
            return Err("`--seed-corpora` takes capture files only".to_owned());
        }
        return Ok(Options::SeedCorpora(
            named.into_iter().map(PathBuf::from).collect(),
        ));
    }
    let listing = format!("fuzz targets: {}", known.join(", "));
    let targets = match (all, named.as_slice()) {
        (true, []) => known.to_vec(),
        (true, _) => return Err("`--all` takes no target names".to_owned()),
        (false, []) => return Err(format!("`fuzz` needs a target or `--all`; {listing}")),
        (false, names) => {
            if let Some(unknown) = names.iter().find(|name| !known.contains(name)) {
                return Err(format!("unknown fuzz target `{unknown}`; {listing}"));
            }
            names.to_vec()
        }
    };
    Ok(Options::Run {
        targets,
        limit: limit.unwrap_or(Limit::Seconds(DEFAULT_SECONDS)),
    })
}

fn fuzz_dir() -> PathBuf {
    workspace_root().join("fuzz")
}

/// The target names: one `fuzz/fuzz_targets/NAME.rs` file each.
fn targets() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// `cargo +nightly ...` from `fuzz/`: the rustup proxy, not `$CARGO`, since
/// only the proxy understands `+nightly`.
fn nightly_cargo(args: &[&str]) -> Command {
    let mut command = Command::new("cargo");
    command
        .env_remove("RUSTUP_TOOLCHAIN")
        .current_dir(fuzz_dir())
        .arg("+nightly")
        .args(args);
    command
}

/// Fails with what to install when nightly or cargo-fuzz is missing.
fn check_tools() -> Result<(), String> {
    if succeeds(&mut nightly_cargo(&["fuzz", "--version"])) {
        return Ok(());
    }
    Err(
        "needs a nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`, \
         `cargo install cargo-fuzz --locked`; .ci/run installs them), \
         or skip this step with `cargo xtask verify --skip fuzz`"
            .to_owned(),
    )
}

/// The corpus directories of `target`, the working one first (libFuzzer
/// writes new inputs to the first); the committed ones only if present.
fn corpus_dirs(target: &str) -> Result<Vec<PathBuf>, String> {
    let working = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&working)
        .map_err(|e| format!("creating {}: {e}", working.display()))?;
    let mut dirs = vec![working];
    for kind in ["seeds", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        if dir.is_dir() {
            dirs.push(dir);
        }
    }
    Ok(dirs)
}

fn relative(path: &Path) -> String {
    path.strip_prefix(fuzz_dir())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Builds every target once, then runs each in turn until `limit`;
/// stops at the first that fails.
pub fn run_targets(targets: &[String], limit: Limit) -> Result<(), String> {
    check_tools()?;
    run_echoed(&mut nightly_cargo(&["fuzz", "build"]))?;
    for target in targets {
        let dirs: Vec<String> = corpus_dirs(target)?.iter().map(|d| relative(d)).collect();
        let limit_flag = match limit {
            Limit::Seconds(seconds) => format!("-max_total_time={seconds}"),
            Limit::Runs(runs) => format!("-runs={runs}"),
        };
        let timeout = format!("-timeout={UNIT_TIMEOUT_SECONDS}");
        let mut args = vec!["fuzz", "run", target.as_str()];
        args.extend(dirs.iter().map(String::as_str));
        // No leak checks: LeakSanitizer's check after an input stops the
        // whole process and scans it, which costs the socket targets most
        // of their speed; what the targets guard against is unbounded
        // growth, which they assert themselves.
        args.extend([
            "--",
            &limit_flag,
            &timeout,
            "-detect_leaks=0",
            "-print_final_stats=1",
        ]);
        run_echoed(&mut nightly_cargo(&args)).map_err(|e| format!("target `{target}`: {e}"))?;
    }
    Ok(())
}

/// `verify`'s fuzz step: the fuzz library's tests, which replay committed
/// seeds through `backend_frames`' run and check what of the backend they
/// reach (a seed that stops reaching its path fails here, not silently in
/// coverage), then every target for [`SMOKE_SECONDS`].
pub fn smoke() -> Result<(), String> {
    let mut tests = Command::new(crate::process::cargo());
    tests.current_dir(fuzz_dir()).args(["test", "--lib"]);
    run_echoed(&mut tests).map_err(|e| format!("the fuzz library's tests: {e}"))?;
    run_targets(&targets(), Limit::Seconds(SMOKE_SECONDS))
}

/// Runs `fuzz` as `options` say.
pub fn run(options: &Options) -> ExitCode {
    let result = match options {
        Options::Run { targets, limit } => run_targets(targets, *limit),
        Options::SeedCorpora(captures) => fuzz_seeds::seed_corpora(captures),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask fuzz: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Options, String> {
        let args: Vec<String> = words.iter().map(|word| (*word).to_owned()).collect();
        parse_with_targets(&args, &["port_spec".to_owned(), "tcp_ops".to_owned()])
    }

    fn run_of(targets: &[&str], limit: Limit) -> Result<Options, String> {
        Ok(Options::Run {
            targets: targets.iter().map(|t| (*t).to_owned()).collect(),
            limit,
        })
    }

    #[test]
    fn target_alone_runs_for_the_default_time() {
        assert_eq!(
            parse(&["port_spec"]),
            run_of(&["port_spec"], Limit::Seconds(DEFAULT_SECONDS))
        );
    }

    #[test]
    fn seconds_and_runs_are_taken_in_either_form() {
        for words in [
            &["--seconds", "5", "port_spec"][..],
            &["port_spec", "--seconds=5"],
        ] {
            assert_eq!(parse(words), run_of(&["port_spec"], Limit::Seconds(5)));
        }
        assert_eq!(
            parse(&["tcp_ops", "--runs", "10000000"]),
            run_of(&["tcp_ops"], Limit::Runs(10_000_000))
        );
    }

    #[test]
    fn all_runs_every_target_in_order() {
        assert_eq!(
            parse(&["--all", "--seconds", "5"]),
            run_of(&["port_spec", "tcp_ops"], Limit::Seconds(5))
        );
        assert!(parse(&["--all", "port_spec"]).is_err());
    }

    #[test]
    fn seed_corpora_takes_capture_files() {
        assert_eq!(
            parse(&["--seed-corpora", "a.pcap"]),
            Ok(Options::SeedCorpora(vec![PathBuf::from("a.pcap")]))
        );
        assert_eq!(
            parse(&["--seed-corpora"]),
            Ok(Options::SeedCorpora(Vec::new()))
        );
        assert!(parse(&["--seed-corpora", "--all"]).is_err());
    }

    #[test]
    fn unknown_or_missing_target_lists_the_targets() {
        for words in [&["frames"][..], &[]] {
            assert!(parse(words).is_err_and(|message| message.contains("port_spec")));
        }
    }

    #[test]
    fn zero_or_bad_limits_are_rejected() {
        assert!(parse(&["port_spec", "--seconds", "0"]).is_err());
        assert!(parse(&["port_spec", "--seconds", "soon"]).is_err());
        assert!(parse(&["port_spec", "--runs", "0"]).is_err());
        assert!(parse(&["port_spec", "--seconds"]).is_err());
    }

    #[test]
    fn the_shipped_targets_are_found() {
        let found = targets();
        for target in [
            "backend_frames",
            "dns_replies",
            "port_spec",
            "stream_codec",
            "tap_vnet",
            "tcp_ops",
            "vhost_user",
            "virtio_tables",
        ] {
            assert!(found.contains(&target.to_owned()), "{target} missing");
        }
    }
}
