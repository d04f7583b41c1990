//! `cargo xtask verify`: the checks CI runs, in order, stopping at the first
//! failure. The layering checks (purity, layering, includes) come before the
//! tests: they take seconds and name the crate or line to fix. After the
//! tests, `examples` runs each crate's example of using its layer alone
//! ([`EXAMPLES`]), so an example that stops compiling or working fails CI.
//! The last, `fuzz`, runs every fuzz target for a few seconds; it needs a
//! nightly toolchain and cargo-fuzz, and fails saying so (and naming
//! `--skip fuzz`) where they are missing.

use std::fmt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::process::{cargo_command, run_echoed, succeeds, workspace_root};
use crate::{includes, layering, purity};

/// One check of `verify`, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `cargo fmt --all --check`.
    Fmt,
    /// `cargo clippy --workspace --all-targets -- -D warnings`.
    Clippy,
    /// The pure crates reach no OS-facing crate and forbid `unsafe`.
    Purity,
    /// Each crate with a layering rule reaches none of the crates it forbids.
    Layering,
    /// No include leaves its crate, and no library source includes a test file.
    Includes,
    /// Every test in the workspace, doctests included.
    Test,
    /// Every example in [`EXAMPLES`], run to completion.
    Examples,
    /// Rustdoc with warnings denied.
    Doc,
    /// Every fuzz target for a few seconds (needs nightly and cargo-fuzz).
    Fuzz,
}

impl Step {
    const ALL: [Step; 9] = [
        Step::Fmt,
        Step::Clippy,
        Step::Purity,
        Step::Layering,
        Step::Includes,
        Step::Test,
        Step::Examples,
        Step::Doc,
        Step::Fuzz,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::Fmt => "fmt",
            Step::Clippy => "clippy",
            Step::Purity => "purity",
            Step::Layering => "layering",
            Step::Includes => "includes",
            Step::Test => "test",
            Step::Examples => "examples",
            Step::Doc => "doc",
            Step::Fuzz => "fuzz",
        }
    }

    fn from_name(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.name() == name)
    }

    fn run(self) -> Result<(), String> {
        match self {
            Step::Fmt => run_echoed(&mut cargo_command(&["fmt", "--all", "--check"])),
            Step::Clippy => run_echoed(&mut cargo_command(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])),
            Step::Purity => run_purity(),
            Step::Layering => run_layering(),
            Step::Includes => run_includes(),
            Step::Test => run_tests(),
            Step::Examples => run_examples(),
            Step::Doc => run_echoed(
                cargo_command(&["doc", "--workspace", "--no-deps"])
                    .env("RUSTDOCFLAGS", rustdocflags()),
            ),
            Step::Fuzz => crate::fuzz::smoke(),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Command-line options of `verify`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    skip: Vec<Step>,
}

impl Options {
    /// Parses the arguments after `verify`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let list = if arg == "--skip" {
                args.next().ok_or("`--skip` needs a step name")?.as_str()
            } else if let Some(list) = arg.strip_prefix("--skip=") {
                list
            } else {
                return Err(format!("unknown argument `{arg}` for `verify`"));
            };
            for name in list.split(',').filter(|name| !name.is_empty()) {
                let step = Step::from_name(name).ok_or_else(|| {
                    format!(
                        "unknown step `{name}` for `--skip`; steps are {}",
                        step_names()
                    )
                })?;
                options.skip.push(step);
            }
        }
        Ok(options)
    }
}

fn step_names() -> String {
    Step::ALL.map(Step::name).join(", ")
}

/// Runs every step not skipped, in order, and reports each one's duration.
pub fn run(options: &Options) -> ExitCode {
    let started = Instant::now();
    let mut timings: Vec<(Step, Outcome)> = Vec::new();
    let mut failure = None;
    for step in Step::ALL {
        if options.skip.contains(&step) {
            eprintln!("==> {step}: skipped");
            timings.push((step, Outcome::Skipped));
            continue;
        }
        eprintln!("==> {step}");
        let step_started = Instant::now();
        let result = step.run();
        let elapsed = step_started.elapsed();
        match result {
            Ok(()) => {
                eprintln!("==> {step}: ok in {}", seconds(elapsed));
                timings.push((step, Outcome::Passed(elapsed)));
            }
            Err(message) => {
                eprintln!("==> {step}: FAILED in {}", seconds(elapsed));
                timings.push((step, Outcome::Failed(elapsed)));
                failure = Some((step, message));
                break;
            }
        }
    }
    print_summary(&timings, started.elapsed());
    match failure {
        None if options.skip.is_empty() => {
            eprintln!("verify: all steps passed");
            ExitCode::SUCCESS
        }
        None => {
            let skipped: Vec<&str> = options.skip.iter().map(|step| step.name()).collect();
            eprintln!(
                "verify: every step run passed; skipped: {}",
                skipped.join(", ")
            );
            ExitCode::SUCCESS
        }
        Some((step, message)) => {
            eprintln!("verify: step `{step}` failed: {message}");
            ExitCode::FAILURE
        }
    }
}

enum Outcome {
    Passed(Duration),
    Failed(Duration),
    Skipped,
}

fn print_summary(timings: &[(Step, Outcome)], total: Duration) {
    eprintln!("\nverify summary:");
    for (step, outcome) in timings {
        let (verdict, time) = match outcome {
            Outcome::Passed(elapsed) => ("ok", seconds(*elapsed)),
            Outcome::Failed(elapsed) => ("FAILED", seconds(*elapsed)),
            Outcome::Skipped => ("skipped", String::new()),
        };
        let line = format!("  {:<8} {verdict:<8} {time:>8}", step.name());
        eprintln!("{}", line.trim_end());
    }
    for step in Step::ALL.iter().skip(timings.len()) {
        eprintln!("  {:<8} not run", step.name());
    }
    eprintln!("  {:<8} {:<8} {:>8}", "total", "", seconds(total));
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

fn run_purity() -> Result<(), String> {
    let problems = purity::check_workspace(&workspace_root())?;
    if problems.is_empty() {
        eprintln!(
            "{} reach no OS-facing crate and forbid unsafe code",
            purity::pure_crates_listed()
        );
        return Ok(());
    }
    for problem in &problems {
        eprintln!("purity: {problem}");
    }
    Err(format!(
        "{} purity violation(s); {}",
        problems.len(),
        purity::rule()
    ))
}

fn run_layering() -> Result<(), String> {
    let problems = layering::check_workspace(&workspace_root(), layering::RULES)?;
    if problems.is_empty() {
        for rule in layering::RULES {
            eprintln!(
                "{} reaches none of {} through normal or build dependencies",
                rule.krate,
                rule.forbidden_list().replace(" or ", ", ")
            );
        }
        return Ok(());
    }
    for problem in &problems {
        eprintln!("layering: {problem}");
    }
    let mut broken: Vec<String> = Vec::new();
    for problem in &problems {
        let rule = problem.rule().to_string();
        if !broken.contains(&rule) {
            broken.push(rule);
        }
    }
    Err(format!(
        "{} layering violation(s); {}",
        problems.len(),
        broken.join("; ")
    ))
}

fn run_includes() -> Result<(), String> {
    let report = includes::check_workspace(&workspace_root())?;
    if report.problems.is_empty() {
        eprintln!(
            "{} includes in {} files of {} crates stay inside their crates and bring no test \
             file into library source",
            report.includes, report.files, report.crates
        );
        return Ok(());
    }
    for problem in &report.problems {
        eprintln!("includes: {problem}");
    }
    Err(format!(
        "{} include violation(s); {}",
        report.problems.len(),
        includes::RULE
    ))
}

/// nextest when it is installed (it isolates each test in a process), plus
/// `cargo test --doc` because nextest does not run doctests.
fn run_tests() -> Result<(), String> {
    if succeeds(&mut cargo_command(&["nextest", "--version"])) {
        run_echoed(&mut cargo_command(&["nextest", "run", "--workspace"]))?;
        run_echoed(&mut cargo_command(&["test", "--workspace", "--doc"]))
    } else {
        eprintln!("cargo-nextest is not installed; running `cargo test`");
        run_echoed(&mut cargo_command(&["test", "--workspace"]))
    }
}

/// The examples CI runs, as (package, example): each uses one layer (or the
/// whole library) through its public API only, talks only to loopback,
/// bounds itself in time and exits non-zero when what it shows did not
/// happen.
pub const EXAMPLES: [(&str, &str); 4] = [
    ("flow-table", "lossy-transfer"),
    ("relay-tcp", "one-flow"),
    ("virtio-net-kvm", "echo-device"),
    ("slipway", "custom-loop"),
];

/// Runs each of [`EXAMPLES`] with `cargo run`, stopping at the first that
/// fails.
fn run_examples() -> Result<(), String> {
    for (package, example) in EXAMPLES {
        run_echoed(&mut cargo_command(&[
            "run",
            "-q",
            "-p",
            package,
            "--example",
            example,
        ]))?;
    }
    Ok(())
}

/// `-D warnings` on top of whatever the caller already set.
fn rustdocflags() -> String {
    match std::env::var("RUSTDOCFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} -D warnings"),
        _ => "-D warnings".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn no_arguments_run_every_step() {
        assert_eq!(Options::parse(&[]), Ok(Options::default()));
    }

    #[test]
    fn skip_accepts_repeats_commas_and_equals() {
        let parsed = Options::parse(&args(&["--skip", "fmt,clippy", "--skip=doc"]));
        assert_eq!(
            parsed,
            Ok(Options {
                skip: vec![Step::Fmt, Step::Clippy, Step::Doc]
            })
        );
    }

    #[test]
    fn unknown_step_is_rejected_with_the_step_list() {
        let error = Options::parse(&args(&["--skip", "lint"])).err();
        assert!(error.is_some_and(|message| {
            message.contains("fmt, clippy, purity, layering, includes, test, examples, doc, fuzz")
        }));
    }

    #[test]
    fn examples_run_after_the_tests_and_can_be_skipped() {
        let position = |step| Step::ALL.iter().position(|s| *s == step);
        assert_eq!(
            position(Step::Examples),
            position(Step::Test).map(|test| test + 1)
        );
        assert_eq!(
            Options::parse(&args(&["--skip", "examples"])),
            Ok(Options {
                skip: vec![Step::Examples]
            })
        );
    }

    #[test]
    fn every_listed_example_exists() {
        let root = workspace_root();
        for (package, example) in EXAMPLES {
            let file = root
                .join("crates")
                .join(package)
                .join("examples")
                .join(format!("{example}.rs"));
            assert!(file.is_file(), "{} is missing", file.display());
        }
    }

    #[test]
    fn skip_without_a_value_is_rejected() {
        assert!(Options::parse(&args(&["--skip"])).is_err());
    }

    #[test]
    fn unknown_flag_is_rejected() {
        assert!(Options::parse(&args(&["--quick"])).is_err());
    }
}
