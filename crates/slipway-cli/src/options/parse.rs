//! The parser: walks the arguments, applies each option through the table,
//! then checks the options against the subcommand.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use nat_core::PortSpec;

use super::table::{OPTIONS, Opt, expected_form};
use super::values::{
    deny, dns_upstream, fd, forwards, host_loopback, ifname, max_flows, mtu, netns, port_spec,
};
use super::{Command, Families, LogLevel, NetnsTarget, Options, StreamTarget, UsageError, vmm};

/// The subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sub {
    Run,
    Attach,
    Stream,
    VhostUser,
}

/// Options as they accumulate, before the subcommand checks them.
#[derive(Default)]
pub(super) struct Collected {
    pub(super) options: Options,
    pub(super) tcp_specs: Vec<(String, PortSpec)>,
    pub(super) udp_specs: Vec<(String, PortSpec)>,
    pub(super) netns: Option<NetnsTarget>,
    pub(super) socket: Option<PathBuf>,
    pub(super) fd: Option<i32>,
    pub(super) keep_listening: bool,
    pub(super) ifname_set: bool,
    /// `--map-host-loopback` as given (name and value), checked against
    /// the plan's gateway once every address option is in.
    pub(super) host_loopback: Option<(String, String)>,
    /// The options only `slipway-vmm` takes.
    pub(super) vmm: vmm::Collected,
}

/// Parses the arguments after the program name.
///
/// Options may stand before and after the subcommand; for `run`, the first
/// argument that is not an option (or everything after `--`) is the command.
///
/// # Errors
/// A [`UsageError`] naming the first bad argument.
pub fn parse(args: &[OsString]) -> Result<Command, UsageError> {
    let mut collected = Collected::default();
    let mut sub = None;
    let mut argv = Vec::new();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        if arg == "--" {
            if sub != Some(Sub::Run) {
                return Err(UsageError::new(
                    "unexpected \"--\": only \"slipway run [OPTIONS] -- CMD\" takes one",
                ));
            }
            argv = args[i..].to_vec();
            break;
        }
        let bytes = arg.as_encoded_bytes();
        if bytes.len() > 1 && bytes[0] == b'-' {
            let Some(arg) = arg.to_str() else {
                return Err(UsageError::new(format!(
                    "invalid option {:?}: not UTF-8",
                    arg.to_string_lossy()
                )));
            };
            let (opt, name, value) = split_option(arg, args.get(i))?;
            if value.consumed_next {
                i += 1;
            }
            match opt {
                Opt::Help => return Ok(Command::Help),
                Opt::Version => return Ok(Command::Version),
                _ => apply(&mut collected, opt, &name, value.text.as_deref())?,
            }
            continue;
        }
        match sub {
            None => sub = Some(subcommand(arg)?),
            Some(Sub::Run) => {
                argv = args[i - 1..].to_vec();
                break;
            }
            Some(Sub::Attach) => {
                return Err(UsageError::new(format!(
                    "attach: unexpected argument {:?}: attach runs no command \
                     (usage: slipway attach [OPTIONS] --netns PATH|PID)",
                    arg.to_string_lossy()
                )));
            }
            Some(Sub::Stream) => {
                return Err(UsageError::new(format!(
                    "stream: unexpected argument {:?}: stream runs no command \
                     (usage: slipway stream [OPTIONS] --socket PATH)",
                    arg.to_string_lossy()
                )));
            }
            Some(Sub::VhostUser) => {
                return Err(UsageError::new(format!(
                    "vhost-user: unexpected argument {:?}: vhost-user runs no command \
                     (usage: slipway vhost-user [OPTIONS] --socket PATH)",
                    arg.to_string_lossy()
                )));
            }
        }
    }
    finish(collected, sub, argv)
}

fn subcommand(arg: &OsStr) -> Result<Sub, UsageError> {
    match arg.to_str() {
        Some("run") => Ok(Sub::Run),
        Some("attach") => Ok(Sub::Attach),
        Some("stream") => Ok(Sub::Stream),
        Some("vhost-user") => Ok(Sub::VhostUser),
        _ => Err(UsageError::new(format!(
            "unknown command {:?}: expected \"run\", \"attach\", \"stream\" or \"vhost-user\"",
            arg.to_string_lossy()
        ))),
    }
}

/// The value of an option, and whether it was the next argument.
pub(super) struct Value {
    pub(super) text: Option<String>,
    pub(super) consumed_next: bool,
}

/// Finds the option `arg` names, and its value: after `=` (long), attached
/// (short), or the next argument.
pub(super) fn split_option(
    arg: &str,
    next: Option<&OsString>,
) -> Result<(Opt, String, Value), UsageError> {
    let (found, name, inline) = if let Some(long) = arg.strip_prefix("--") {
        let (key, inline) = match long.split_once('=') {
            Some((key, value)) => (key, Some(value.to_owned())),
            None => (long, None),
        };
        let found = OPTIONS.iter().find(|(_, l, _, _)| *l == key);
        (found, format!("--{key}"), inline)
    } else {
        let mut chars = arg.chars().skip(1);
        let short = chars.next();
        let rest: String = chars.collect();
        let found = OPTIONS
            .iter()
            .find(|(s, _, _, _)| *s == short && short.is_some());
        let name = short.map_or_else(String::new, |c| format!("-{c}"));
        (found, name, (!rest.is_empty()).then_some(rest))
    };
    let Some(&(_, _, opt, takes_value)) = found else {
        return Err(UsageError::new(format!(
            "unknown option {:?}: see \"slipway --help\"",
            if arg.starts_with("--") { &name } else { arg }
        )));
    };
    if !takes_value {
        if inline.is_some() {
            let message = if arg.starts_with("--") {
                format!("{name}: takes no value")
            } else {
                format!("{name}: takes no value: write short options separately, not {arg:?}")
            };
            return Err(UsageError::new(message));
        }
        let value = Value {
            text: None,
            consumed_next: false,
        };
        return Ok((opt, name, value));
    }
    if let Some(text) = inline {
        let value = Value {
            text: Some(text),
            consumed_next: false,
        };
        return Ok((opt, name, value));
    }
    let Some(next) = next else {
        return Err(UsageError::new(format!(
            "{name}: missing value: expected {}",
            expected_form(opt)
        )));
    };
    let Some(text) = next.to_str() else {
        return Err(UsageError::new(format!(
            "{name}: invalid value {:?}: not UTF-8",
            next.to_string_lossy()
        )));
    };
    let value = Value {
        text: Some(text.to_owned()),
        consumed_next: true,
    };
    Ok((opt, name, value))
}

pub(super) fn apply(
    c: &mut Collected,
    opt: Opt,
    name: &str,
    value: Option<&str>,
) -> Result<(), UsageError> {
    let value = value.unwrap_or_default();
    let options = &mut c.options;
    match opt {
        Opt::Tcp => c
            .tcp_specs
            .push((value.to_owned(), port_spec(name, value)?)),
        Opt::Udp => c
            .udp_specs
            .push((value.to_owned(), port_spec(name, value)?)),
        Opt::Mtu => options.mtu = mtu(name, value)?,
        Opt::MapHostLoopback => c.host_loopback = Some((name.to_owned(), value.to_owned())),
        Opt::Deny => options.deny.extend(deny(name, value)?),
        Opt::DnsUpstream => options.dns_upstream = Some(dns_upstream(name, value)?),
        Opt::Ipv4Only | Opt::Ipv6Only => {
            let (this, other) = if opt == Opt::Ipv4Only {
                (Families::Ipv4Only, Families::Ipv6Only)
            } else {
                (Families::Ipv6Only, Families::Ipv4Only)
            };
            if options.families == other {
                return Err(UsageError::new(
                    "-4 and -6 exclude each other: the guest needs one family",
                ));
            }
            options.families = this;
        }
        Opt::Network | Opt::Address | Opt::Gateway | Opt::DnsForward => {
            options.addresses.apply(opt, name, value)?;
        }
        Opt::Pcap if value.is_empty() => {
            return Err(UsageError::invalid_form(name, value, opt));
        }
        Opt::Pcap => options.pcap = Some(PathBuf::from(value)),
        Opt::Ifname => {
            options.ifname = ifname(name, value)?;
            c.ifname_set = true;
        }
        Opt::Netns => c.netns = Some(netns(name, value)?),
        Opt::Socket if value.is_empty() => {
            return Err(UsageError::invalid_form(name, value, opt));
        }
        Opt::Socket => c.socket = Some(PathBuf::from(value)),
        Opt::Fd => c.fd = Some(fd(name, value)?),
        Opt::KeepListening => c.keep_listening = true,
        Opt::NoOffload => options.offload = false,
        Opt::MaxFlows => options.max_flows = Some(max_flows(name, value)?),
        Opt::Stats => options.stats = true,
        Opt::Debug => options.log = LogLevel::Debug,
        Opt::Trace => options.log = LogLevel::Trace,
        Opt::Quiet => options.log = LogLevel::Quiet,
        Opt::Help | Opt::Version => {}
        Opt::Kernel
        | Opt::Initrd
        | Opt::Cmdline
        | Opt::Mem
        | Opt::Console
        | Opt::DeviceOnCmdline => c.vmm.apply(opt, name, value)?,
    }
    Ok(())
}

/// The shared options once every argument is in: the forward tables, the
/// plan checked (it is built again when slipway starts; here its errors
/// become usage errors that name the option) and the host-loopback
/// mapping checked against the plan's gateway.
pub(super) fn finish_options(c: &mut Collected) -> Result<Options, UsageError> {
    let mut options = std::mem::take(&mut c.options);
    options.tcp_forwards = forwards("-t", std::mem::take(&mut c.tcp_specs))?;
    options.udp_forwards = forwards("-u", std::mem::take(&mut c.udp_specs))?;
    let plan = options.plan()?;
    if let Some((name, value)) = &c.host_loopback {
        options.host_loopback = host_loopback(name, value, &plan)?;
    }
    Ok(options)
}

fn finish(mut c: Collected, sub: Option<Sub>, argv: Vec<OsString>) -> Result<Command, UsageError> {
    let Some(sub) = sub else {
        return Err(UsageError::new(
            "missing command: expected \"slipway run [OPTIONS] [--] CMD [ARGS...]\", \
             \"slipway attach [OPTIONS] --netns PATH|PID\", \
             \"slipway stream [OPTIONS] --socket PATH\" \
             or \"slipway vhost-user [OPTIONS] --socket PATH\"",
        ));
    };
    if let Some(name) = c.vmm.first_given() {
        return Err(UsageError::new(format!("{name}: only for slipway-vmm")));
    }
    let options = finish_options(&mut c)?;
    if sub != Sub::Stream {
        let stream_only = [
            (c.fd.is_some(), "--fd"),
            (c.keep_listening, "--keep-listening"),
        ];
        if let Some((_, name)) = stream_only.iter().find(|(given, _)| *given) {
            return Err(UsageError::new(format!("{name}: only for stream")));
        }
        if sub != Sub::VhostUser && c.socket.is_some() {
            return Err(UsageError::new("--socket: only for stream and vhost-user"));
        }
    }
    match sub {
        Sub::VhostUser => vhost_user(options, c.netns, c.socket, c.ifname_set),
        Sub::Stream => stream(
            options,
            c.netns,
            c.socket,
            c.fd,
            c.keep_listening,
            c.ifname_set,
        ),
        Sub::Run => {
            if c.netns.is_some() {
                return Err(UsageError::new(
                    "--netns: only for attach: run makes its own namespace",
                ));
            }
            if argv.is_empty() {
                return Err(UsageError::new(
                    "run: missing CMD: expected \"slipway run [OPTIONS] [--] CMD [ARGS...]\"",
                ));
            }
            Ok(Command::Run { options, argv })
        }
        Sub::Attach => match c.netns {
            Some(netns) => Ok(Command::Attach { options, netns }),
            None => Err(UsageError::new(
                "attach: missing --netns: expected \"slipway attach [OPTIONS] --netns PATH|PID\"",
            )),
        },
    }
}

/// Checks `stream`'s own options: exactly one of `--socket` and `--fd`,
/// `--keep-listening` only with a socket to listen on, nothing about a
/// namespace.
fn stream(
    options: Options,
    netns: Option<NetnsTarget>,
    socket: Option<PathBuf>,
    fd: Option<i32>,
    keep_listening: bool,
    ifname_set: bool,
) -> Result<Command, UsageError> {
    if netns.is_some() {
        return Err(UsageError::new(
            "--netns: only for attach: stream serves a socket, not a namespace",
        ));
    }
    if ifname_set {
        return Err(UsageError::new(
            "--ifname: only for run and attach: the guest names its own interface",
        ));
    }
    let target = match (socket, fd) {
        (Some(path), None) => StreamTarget::Socket(path),
        (None, Some(fd)) if keep_listening => {
            return Err(UsageError::new(format!(
                "--keep-listening: not with --fd {fd}: there is no socket to listen on"
            )));
        }
        (None, Some(fd)) => StreamTarget::Fd(fd),
        (Some(_), Some(_)) => {
            return Err(UsageError::new(
                "stream: --socket and --fd exclude each other: give one",
            ));
        }
        (None, None) => {
            return Err(UsageError::new(
                "stream: missing --socket: expected \"slipway stream [OPTIONS] --socket PATH\"",
            ));
        }
    };
    Ok(Command::Stream {
        options,
        target,
        keep_listening,
    })
}

/// Checks `vhost-user`'s own options: `--socket`, nothing about a
/// namespace.
fn vhost_user(
    options: Options,
    netns: Option<NetnsTarget>,
    socket: Option<PathBuf>,
    ifname_set: bool,
) -> Result<Command, UsageError> {
    if netns.is_some() {
        return Err(UsageError::new(
            "--netns: only for attach: vhost-user serves a socket, not a namespace",
        ));
    }
    if ifname_set {
        return Err(UsageError::new(
            "--ifname: only for run and attach: the guest names its own interface",
        ));
    }
    match socket {
        Some(socket) => Ok(Command::VhostUser { options, socket }),
        None => Err(UsageError::new(
            "vhost-user: missing --socket: expected \"slipway vhost-user [OPTIONS] --socket PATH\"",
        )),
    }
}
