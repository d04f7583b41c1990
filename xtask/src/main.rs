//! Project automation for slipway, run as `cargo xtask <COMMAND>`.
//!
//! `verify` is the test command: `.ci/run` and the README both name it, and
//! CI runs nothing else. Each subcommand lives in its own module; this file
//! only parses the command line and maps outcomes to exit codes.

mod bench;
mod bench_compare;
mod demo;
mod depgraph;
mod e2e;
mod fuzz;
mod fuzz_seeds;
mod includes;
mod layering;
mod process;
mod purity;
#[cfg(test)]
mod scratch;
mod verify;

use std::process::ExitCode;

const USAGE: &str = "\
Usage: cargo xtask <COMMAND>

Commands:
  verify [--skip STEP]...     run every check CI runs, in order, stopping at
                              the first failure; STEP is one of fmt, clippy,
                              purity, layering, includes, test, examples,
                              doc, fuzz (repeat --skip or use commas);
                              examples runs each layer's example; fuzz runs
                              every fuzz target for 5 s and needs nightly
                              and cargo-fuzz
  demo                        a guest in a network namespace fetches a page from
                              a server on host loopback through slipway (root)
  guest-image                 build the Linux guest (kernel and busybox
                              initramfs) the VM tests boot, into
                              target/guest-image/; installs its Debian
                              packages with apt-get when run as root
  e2e [--netns] [--vm]        run the end-to-end suites with their output:
                              guest in a network namespace (default), guest
                              kernel under QEMU through slipway stream and
                              vhost-user, and in slipway-vmm on real KVM (--vm)
  bench [--install-peers] [HARNESS OPTIONS]
                              build slipway and bench-harness (release) and
                              run the wall-clock benchmarks (root); results in
                              target/bench/; --install-peers apt-installs
                              passt, slirp4netns and iperf3 first; see
                              `bench-harness --help` for the options
  fuzz TARGET... | --all [--seconds N | --runs N]
                              build the targets of fuzz/ once and run each
                              for N seconds (default 60) or N inputs with
                              `cargo +nightly fuzz run` (needs cargo-fuzz),
                              on fuzz/corpus, fuzz/seeds and fuzz/regressions
  fuzz --seed-corpora [PCAP...]
                              write fuzz/seeds/ from captures (`slipway run
                              --pcap`; default fuzz/captures/*.pcap) and
                              hand-built frames
  bench-compare --baseline REF [--reps N] [--min-change PCT] [--no-harness]
                [--harness-args ARGS...]
                              this tree's benches against commit REF's, runs
                              interleaved N times (default 3): divan benches
                              and the wall-clock harness, as a markdown table
                              with deltas; a delta within the run-to-run
                              spread or below PCT % (default 5) is noise
  help                        print this message
";

/// Exit code for a command line that names no known command or option.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        return usage_error("no command given");
    };
    match command.as_str() {
        "verify" => match verify::Options::parse(rest) {
            Ok(options) => verify::run(&options),
            Err(message) => usage_error(&message),
        },
        "demo" if rest.is_empty() => demo::run(),
        "guest-image" if rest.is_empty() => e2e::guest_image(),
        "e2e" => match e2e::Options::parse(rest) {
            Ok(options) => e2e::run(&options),
            Err(message) => usage_error(&message),
        },
        "bench" => bench::run(&bench::Options::parse(rest)),
        "fuzz" => match fuzz::Options::parse(rest) {
            Ok(options) => fuzz::run(&options),
            Err(message) => usage_error(&message),
        },
        "bench-compare" => match bench_compare::Options::parse(rest) {
            Ok(options) => bench_compare::run(&options),
            Err(message) => usage_error(&message),
        },
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => usage_error(&format!("unknown command `{other}`")),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("xtask: {message}\n\n{USAGE}");
    ExitCode::from(EXIT_USAGE)
}
