//! `cargo xtask fuzz TARGET [--seconds N]`: runs one cargo-fuzz target of
//! `fuzz/` for a bounded time.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use crate::process::{run_echoed, succeeds, workspace_root};

/// How long a run lasts when `--seconds` is not given.
const DEFAULT_SECONDS: u32 = 60;

/// Command-line options of `fuzz`.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    target: String,
    seconds: u32,
}

impl Options {
    /// Parses the arguments after `fuzz`, checking the target against the
    /// files in `fuzz/fuzz_targets`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        parse_with_targets(args, &targets())
    }
}

fn parse_with_targets(args: &[String], known: &[String]) -> Result<Options, String> {
    let mut target = None;
    let mut seconds = DEFAULT_SECONDS;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = if arg == "--seconds" {
            Some(args.next().ok_or("`--seconds` needs a number")?.as_str())
        } else {
            arg.strip_prefix("--seconds=")
        };
        if let Some(value) = value {
            seconds = value
                .parse()
                .ok()
                .filter(|&seconds| seconds > 0)
                .ok_or_else(|| {
                    format!("`--seconds` takes a positive whole number, not `{value}`")
                })?;
        } else if arg.starts_with('-') || target.is_some() {
            return Err(format!("unexpected argument `{arg}` for `fuzz`"));
        } else {
            target = Some(arg.clone());
        }
    }
    let listing = format!("fuzz targets: {}", known.join(", "));
    let target = target.ok_or_else(|| format!("`fuzz` needs a target; {listing}"))?;
    if !known.contains(&target) {
        return Err(format!("unknown fuzz target `{target}`; {listing}"));
    }
    Ok(Options { target, seconds })
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

/// `cargo +nightly fuzz run TARGET -- -max_total_time=N` from `fuzz/`.
pub fn run(options: &Options) -> ExitCode {
    // The rustup proxy, not `$CARGO`: only the proxy understands `+nightly`.
    let nightly_cargo = || {
        let mut command = Command::new("cargo");
        command
            .env_remove("RUSTUP_TOOLCHAIN")
            .current_dir(fuzz_dir());
        command
    };
    if !succeeds(nightly_cargo().args(["+nightly", "fuzz", "--version"])) {
        eprintln!(
            "xtask fuzz: needs a nightly toolchain and cargo-fuzz \
             (`rustup toolchain install nightly`, `cargo install cargo-fuzz`)"
        );
        return ExitCode::FAILURE;
    }
    let max_total_time = format!("-max_total_time={}", options.seconds);
    let result = run_echoed(nightly_cargo().args([
        "+nightly",
        "fuzz",
        "run",
        &options.target,
        "--",
        &max_total_time,
    ]));
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
        parse_with_targets(&args, &["port_spec".to_owned()])
    }

    #[test]
    fn target_alone_runs_for_the_default_time() {
        assert_eq!(
            parse(&["port_spec"]),
            Ok(Options {
                target: "port_spec".to_owned(),
                seconds: DEFAULT_SECONDS
            })
        );
    }

    #[test]
    fn seconds_are_taken_in_either_form() {
        for words in [
            &["--seconds", "5", "port_spec"][..],
            &["port_spec", "--seconds=5"],
        ] {
            assert_eq!(parse(words).map(|options| options.seconds), Ok(5));
        }
    }

    #[test]
    fn unknown_or_missing_target_lists_the_targets() {
        for words in [&["frames"][..], &[]] {
            assert!(parse(words).is_err_and(|message| message.contains("port_spec")));
        }
    }

    #[test]
    fn zero_or_bad_seconds_are_rejected() {
        assert!(parse(&["port_spec", "--seconds", "0"]).is_err());
        assert!(parse(&["port_spec", "--seconds", "soon"]).is_err());
    }

    #[test]
    fn the_shipped_targets_are_found() {
        assert!(targets().contains(&"port_spec".to_owned()));
    }
}
