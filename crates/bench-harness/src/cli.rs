//! The `bench-harness` command line: the harness run and the helper
//! subcommands it starts inside guests and on the host side.
//!
//! Invariant: parsing is a pure function of the arguments; it reads no file
//! and no environment. Defaults that depend on the machine (where slipway
//! was built) are resolved by the caller.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use crate::tools::ClientWorkload;
use crate::workloads::Workload;

/// The help text.
pub const USAGE: &str = "\
bench-harness: wall-clock benchmarks of slipway beside its peers

Usage:
  bench-harness [OPTIONS]
      Run every workload over every path, interleaved and repeated, and
      write the results as JSON, markdown and SVG (needs root).

Options:
  --paths P,..        paths to run (default: all): slipway-65520, slipway-1500,
                      pasta, pasta-current, slirp4netns-1500, slirp4netns-65520,
                      veth, loopback, qemu-slipway, qemu-slipway-vhost-user,
                      qemu-passt, qemu-libslirp (a QEMU guest)
  --workloads W,..    workloads to run (default: all): idle, tcp_g2h, tcp_g2h6,
                      tcp_h2g, tcp_h2g6, tcp_rr, tcp_rr6, tcp_crr, tcp_crr6,
                      udp_rr, dns, icmp, fwd_connect, idle_10k (a 6 at the end:
                      the same over IPv6)
  --reps N            repetitions of every path and workload (default 3)
  --duration SECS     length of each timed workload (default 5)
  --idle-flows N      connections idle_10k holds open (default 10000)
  --json FILE         JSON output (default target/bench/bench.json)
  --markdown FILE     markdown output (default target/bench/bench.md)
  --svg FILE          SVG plot (default target/bench/bench.svg)
  --slipway BIN       the slipway binary to test (default: target/release/slipway)
  --pasta-current BIN a pasta built from current sources, run as the path
                      pasta-current beside the packaged pasta in PATH
  -h, --help          print this help

Subcommands the harness runs itself (inside guests and on the host side):
  serve --bind ADDR [--lifetime SECS]
  serve-guest --port PORT [--lifetime SECS]
  client --workload tcp_rr|tcp_crr|udp_rr|dns|icmp --target ADDR:PORT [--duration SECS]
                         (ADDR:PORT of either family: 10.0.2.2:7001, [::1]:7001)
  hold --target ADDR:PORT --count N [--lifetime SECS]
  probe --target ADDR:PORT [--limit SECS]
  agent --port PORT      (inside a VM guest: run commands sent to PORT)
  remote --agent ADDR:PORT [--wait SECS] [--] PROGRAM [ARGS..]
                         (run PROGRAM in a VM through its agent; exits
                         with its status)
";

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Print [`USAGE`].
    Help,
    /// A harness run.
    Run(RunOptions),
    /// Host-side servers bound to an address.
    Serve {
        /// Where to bind.
        bind: IpAddr,
        /// When to exit.
        lifetime: Duration,
    },
    /// The echo server inside a guest.
    ServeGuest {
        /// The port.
        port: u16,
        /// When to exit.
        lifetime: Duration,
    },
    /// A timed client.
    Client {
        /// What to run.
        workload: ClientWorkload,
        /// Against what.
        target: SocketAddr,
        /// For how long.
        duration: Duration,
    },
    /// Hold idle connections.
    Hold {
        /// To what.
        target: SocketAddr,
        /// How many.
        count: usize,
        /// For how long at most.
        lifetime: Duration,
    },
    /// Serve commands inside a VM guest (see [`crate::agent`]).
    Agent {
        /// The TCP port.
        port: u16,
    },
    /// Run a command in a VM guest through its agent.
    Remote {
        /// The agent, as the host reaches it.
        agent: SocketAddrV4,
        /// How long to retry while the agent is not up yet.
        wait: Duration,
        /// The program and its arguments.
        argv: Vec<String>,
    },
    /// Wait until the echo at a target answers.
    Probe {
        /// The echo server.
        target: SocketAddr,
        /// How long to try.
        limit: Duration,
    },
}

/// The options of a harness run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// Paths by name; empty for all.
    pub paths: Vec<String>,
    /// Workloads; empty for all.
    pub workloads: Vec<Workload>,
    /// Repetitions.
    pub reps: u32,
    /// Length of each timed workload.
    pub duration: Duration,
    /// Connections held by `idle_10k`.
    pub idle_flows: usize,
    /// JSON output file.
    pub json: Option<PathBuf>,
    /// Markdown output file.
    pub markdown: Option<PathBuf>,
    /// SVG output file.
    pub svg: Option<PathBuf>,
    /// The slipway binary; `None` for the default.
    pub slipway: Option<PathBuf>,
    /// A pasta built from current sources (the `pasta-current` path).
    pub pasta_current: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            workloads: Vec::new(),
            reps: 3,
            duration: Duration::from_secs(5),
            idle_flows: 10_000,
            json: None,
            markdown: None,
            svg: None,
            slipway: None,
            pasta_current: None,
        }
    }
}

/// Parses the arguments after the program name.
///
/// # Errors
/// A message naming the bad option and the form it takes.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some(first) = args.first() else {
        return Ok(Command::Run(RunOptions::default()));
    };
    let rest = &args[1..];
    match first.as_str() {
        "-h" | "--help" | "help" => Ok(Command::Help),
        "serve" => {
            let o = Flags::parse(rest, &["--bind", "--lifetime"])?;
            Ok(Command::Serve {
                bind: o.required("--bind", parse_value)?,
                lifetime: o.seconds("--lifetime", 3600.0)?,
            })
        }
        "serve-guest" => {
            let o = Flags::parse(rest, &["--port", "--lifetime"])?;
            Ok(Command::ServeGuest {
                port: o.required("--port", parse_value)?,
                lifetime: o.seconds("--lifetime", 3600.0)?,
            })
        }
        "client" => {
            let o = Flags::parse(rest, &["--workload", "--target", "--duration"])?;
            Ok(Command::Client {
                workload: o.required("--workload", |v| {
                    ClientWorkload::parse(v)
                        .ok_or_else(|| "expected tcp_rr, tcp_crr, udp_rr, dns or icmp".to_owned())
                })?,
                target: o.required("--target", parse_value)?,
                duration: o.seconds("--duration", 5.0)?,
            })
        }
        "hold" => {
            let o = Flags::parse(rest, &["--target", "--count", "--lifetime"])?;
            Ok(Command::Hold {
                target: o.required("--target", parse_value)?,
                count: o.required("--count", parse_value)?,
                lifetime: o.seconds("--lifetime", 900.0)?,
            })
        }
        "agent" => {
            let o = Flags::parse(rest, &["--port"])?;
            Ok(Command::Agent {
                port: o.required("--port", parse_value)?,
            })
        }
        "remote" => parse_remote(rest),
        "probe" => {
            let o = Flags::parse(rest, &["--target", "--limit"])?;
            Ok(Command::Probe {
                target: o.required("--target", parse_value)?,
                limit: o.seconds("--limit", 20.0)?,
            })
        }
        _ => parse_run(args).map(Command::Run),
    }
}

/// `remote`'s options come first; everything after them (or after `--`)
/// is the guest's command line, passed on untouched.
fn parse_remote(args: &[String]) -> Result<Command, String> {
    let (mut agent, mut wait, mut at) = (None, Duration::ZERO, 0);
    while let Some(arg) = args.get(at) {
        let value = || {
            args.get(at + 1)
                .ok_or_else(|| format!("{arg}: missing value"))
        };
        match arg.as_str() {
            "--agent" => {
                agent = Some(
                    parse_value::<SocketAddrV4>(value()?).map_err(|e| format!("--agent: {e}"))?,
                )
            }
            "--wait" => {
                let secs = parse_value::<u64>(value()?).map_err(|e| format!("--wait: {e}"))?;
                wait = Duration::from_secs(secs);
            }
            "--" => {
                at += 1;
                break;
            }
            _ => break,
        }
        at += 2;
    }
    let agent = agent.ok_or("remote: --agent ADDR:PORT is required")?;
    let argv = args.get(at..).unwrap_or_default().to_vec();
    if argv.is_empty() {
        return Err("remote: no command to run".into());
    }
    Ok(Command::Remote { agent, wait, argv })
}

fn parse_run(args: &[String]) -> Result<RunOptions, String> {
    let o = Flags::parse(
        args,
        &[
            "--paths",
            "--workloads",
            "--reps",
            "--duration",
            "--idle-flows",
            "--json",
            "--markdown",
            "--svg",
            "--slipway",
            "--pasta-current",
        ],
    )?;
    let mut options = RunOptions::default();
    if let Some(list) = o.get("--paths") {
        options.paths = list
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
    }
    if let Some(list) = o.get("--workloads") {
        options.workloads = list
            .split(',')
            .filter(|w| !w.is_empty())
            .map(|w| {
                Workload::parse(w).ok_or_else(|| format!("--workloads: unknown workload {w:?}"))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(reps) = o.optional("--reps", parse_value::<u32>)? {
        if reps == 0 {
            return Err("--reps: expected at least 1".into());
        }
        options.reps = reps;
    }
    if let Some(secs) = o.optional("--duration", parse_value::<u64>)? {
        if secs == 0 {
            return Err("--duration: expected a whole number of seconds, at least 1".into());
        }
        options.duration = Duration::from_secs(secs);
    }
    if let Some(flows) = o.optional("--idle-flows", parse_value)? {
        options.idle_flows = flows;
    }
    options.json = o.get("--json").map(PathBuf::from);
    options.markdown = o.get("--markdown").map(PathBuf::from);
    options.svg = o.get("--svg").map(PathBuf::from);
    options.slipway = o.get("--slipway").map(PathBuf::from);
    options.pasta_current = o.get("--pasta-current").map(PathBuf::from);
    Ok(options)
}

/// `--flag VALUE` pairs, each flag at most once.
struct Flags<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Flags<'a> {
    fn parse(args: &'a [String], known: &[&str]) -> Result<Self, String> {
        let mut pairs = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let (flag, value) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
                _ => (arg.as_str(), None),
            };
            if !known.contains(&flag) {
                return Err(format!("unknown option {arg:?}"));
            }
            let value = match value {
                Some(value) => value,
                None => iter
                    .next()
                    .ok_or_else(|| format!("{flag}: missing value"))?,
            };
            if pairs.iter().any(|(f, _)| *f == flag) {
                return Err(format!("{flag}: given twice"));
            }
            pairs.push((flag, value));
        }
        Ok(Self { pairs })
    }

    fn get(&self, flag: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(f, _)| *f == flag).map(|(_, v)| *v)
    }

    fn optional<T>(
        &self,
        flag: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        self.get(flag)
            .map(|v| parse(v).map_err(|why| format!("{flag}: invalid value {v:?}: {why}")))
            .transpose()
    }

    fn required<T>(
        &self,
        flag: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, String> {
        self.optional(flag, parse)?
            .ok_or_else(|| format!("{flag} is required"))
    }

    fn seconds(&self, flag: &str, default: f64) -> Result<Duration, String> {
        let secs = self.optional(flag, parse_value::<f64>)?.unwrap_or(default);
        Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{flag}: expected a number of seconds"))
    }
}

fn parse_value<T: std::str::FromStr>(value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::workloads::Family;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn no_arguments_run_everything_with_defaults() {
        assert_eq!(parse(&[]).unwrap(), Command::Run(RunOptions::default()));
    }

    #[test]
    fn run_options_parse() {
        let Command::Run(o) = parse(&args(
            "--paths slipway-65520,loopback --workloads tcp_rr,udp_rr --reps 1 --duration=2 --json out.json --slipway /x/slipway",
        ))
        .unwrap() else {
            panic!("not a run");
        };
        assert_eq!(o.paths, ["slipway-65520", "loopback"]);
        assert_eq!(o.workloads, [Workload::TcpRr(Family::V4), Workload::UdpRr]);
        assert_eq!(o.reps, 1);
        assert_eq!(o.duration, Duration::from_secs(2));
        assert_eq!(o.json, Some(PathBuf::from("out.json")));
        assert_eq!(o.slipway, Some(PathBuf::from("/x/slipway")));
        assert_eq!(o.markdown, None);
        assert_eq!(o.pasta_current, None);
    }

    #[test]
    fn ipv6_workloads_and_a_current_pasta_parse() {
        let Command::Run(o) = parse(&args(
            "--workloads tcp_g2h,tcp_g2h6,tcp_crr6 --pasta-current /src/passt/pasta",
        ))
        .unwrap() else {
            panic!("not a run");
        };
        assert_eq!(
            o.workloads,
            [
                Workload::TcpG2h(Family::V4),
                Workload::TcpG2h(Family::V6),
                Workload::TcpCrr(Family::V6)
            ]
        );
        assert_eq!(o.pasta_current, Some(PathBuf::from("/src/passt/pasta")));
        let error = parse(&args("--workloads udp_rr6")).unwrap_err();
        assert!(error.contains("udp_rr6"), "{error}");
    }

    #[test]
    fn helper_subcommands_take_ipv6_addresses() {
        assert_eq!(
            parse(&args(
                "client --workload tcp_rr --target [fd00:0:0:2::2]:7001"
            ))
            .unwrap(),
            Command::Client {
                workload: ClientWorkload::TcpRr,
                target: "[fd00:0:0:2::2]:7001".parse().unwrap(),
                duration: Duration::from_secs(5),
            }
        );
        assert_eq!(
            parse(&args("serve --bind ::1")).unwrap(),
            Command::Serve {
                bind: "::1".parse().unwrap(),
                lifetime: Duration::from_secs(3600),
            }
        );
        assert!(parse(&args("probe --target fd00::2:7001")).is_err());
    }

    #[test]
    fn bad_run_options_name_the_option() {
        for (line, needle) in [
            ("--reps 0", "--reps"),
            ("--reps x", "--reps"),
            ("--duration 0", "--duration"),
            ("--workloads tcp_rr,bogus", "bogus"),
            ("--frobnicate 1", "--frobnicate"),
            ("--reps", "missing value"),
            ("--reps 1 --reps 2", "twice"),
        ] {
            let error = parse(&args(line)).unwrap_err();
            assert!(error.contains(needle), "{line}: {error}");
        }
    }

    #[test]
    fn subcommands_parse() {
        assert_eq!(
            parse(&args(
                "client --workload udp_rr --target 10.0.2.2:7002 --duration 0.5"
            ))
            .unwrap(),
            Command::Client {
                workload: ClientWorkload::UdpRr,
                target: "10.0.2.2:7002".parse().unwrap(),
                duration: Duration::from_millis(500),
            }
        );
        assert_eq!(
            parse(&args("hold --target 10.0.2.2:7003 --count 10000")).unwrap(),
            Command::Hold {
                target: "10.0.2.2:7003".parse().unwrap(),
                count: 10_000,
                lifetime: Duration::from_secs(900),
            }
        );
        assert!(
            parse(&args("serve"))
                .unwrap_err()
                .contains("--bind is required")
        );
        assert!(parse(&args("client --workload ping --target 1.2.3.4:1")).is_err());
    }

    #[test]
    fn remote_passes_the_guest_command_line_on_untouched() {
        assert_eq!(
            parse(&args(
                "remote --agent 127.0.0.1:18000 --wait 5 -- iperf3 -c 10.0.2.2 --wait"
            ))
            .unwrap(),
            Command::Remote {
                agent: "127.0.0.1:18000".parse().unwrap(),
                wait: Duration::from_secs(5),
                argv: args("iperf3 -c 10.0.2.2 --wait"),
            }
        );
        assert_eq!(
            parse(&args(
                "remote --agent 127.0.0.1:1 bench-harness probe --target x"
            ))
            .unwrap(),
            Command::Remote {
                agent: "127.0.0.1:1".parse().unwrap(),
                wait: Duration::ZERO,
                argv: args("bench-harness probe --target x"),
            }
        );
        for (line, needle) in [
            ("remote true", "--agent"),
            ("remote --agent 127.0.0.1:1 --", "no command"),
            ("remote --agent nope true", "--agent"),
            ("remote --agent", "missing value"),
        ] {
            let error = parse(&args(line)).unwrap_err();
            assert!(error.contains(needle), "{line}: {error}");
        }
        assert_eq!(
            parse(&args("agent --port 7100")).unwrap(),
            Command::Agent { port: 7100 }
        );
    }
}
