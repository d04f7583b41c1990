//! `bench-harness`: the wall-clock harness and the helper subcommands it
//! runs inside guests; see the library documentation.

use std::process::ExitCode;

use bench_harness::cli::{self, Command};
use bench_harness::{agent, runner, tools};

/// Exit status of a usage error.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("bench-harness: {message}\n\n{}", cli::USAGE);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = match command {
        Command::Help => {
            print!("{}", cli::USAGE);
            Ok(())
        }
        Command::Run(options) => run(&options),
        Command::Serve { bind, lifetime } => tools::serve_host(bind, lifetime),
        Command::ServeGuest { port, lifetime } => tools::serve_guest(port, lifetime),
        Command::Client {
            workload,
            target,
            duration,
        } => tools::client(workload, target, duration).map(|result| println!("{result}")),
        Command::Hold {
            target,
            count,
            lifetime,
        } => tools::hold(target, count, lifetime),
        Command::Probe { target, limit } => tools::probe(target, limit),
        Command::Agent { port } => agent::serve(port),
        Command::Remote { agent, wait, argv } => {
            return match agent::remote(agent, &argv, wait) {
                // The guest command's status, as a shell reports it.
                Ok(code) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(u8::MAX)),
                Err(message) => {
                    eprintln!("bench-harness remote: {message}");
                    ExitCode::from(255)
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench-harness: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &cli::RunOptions) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let report = runner::run(options, &exe)?;
    for file in runner::write_outputs(&report, options)? {
        eprintln!("bench: wrote {}", file.display());
    }
    print!("{}", report.to_markdown());
    Ok(())
}
