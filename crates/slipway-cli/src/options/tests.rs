#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use super::*;

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn run(list: &[&str]) -> (Options, Vec<OsString>) {
    match parse(&args(list)) {
        Ok(Command::Run { options, argv }) => (options, argv),
        other => panic!("{list:?}: expected run, got {other:?}"),
    }
}

fn error(list: &[&str]) -> String {
    match parse(&args(list)) {
        Err(e) => e.to_string(),
        Ok(other) => panic!("{list:?}: expected an error, got {other:?}"),
    }
}

#[test]
fn run_with_defaults() {
    let (options, argv) = run(&["run", "true"]);
    assert_eq!(options, Options::default());
    assert_eq!(argv, args(&["true"]));
    assert_eq!(options.mtu, 65520);
    assert_eq!(options.ifname, "eth0");
    assert_eq!(options.host_loopback, HostLoopback::LOOPBACK);
}

#[test]
fn help_and_version_anywhere_before_the_command() {
    for list in [
        &["--help"][..],
        &["-h"],
        &["run", "--help"],
        &["run", "-t", "80", "-h"],
    ] {
        assert_eq!(parse(&args(list)), Ok(Command::Help), "{list:?}");
    }
    assert_eq!(parse(&args(&["-V"])), Ok(Command::Version));
    assert_eq!(parse(&args(&["attach", "--version"])), Ok(Command::Version));
}

#[test]
fn usage_names_both_commands() {
    assert!(USAGE.contains("slipway run [OPTIONS] [--] CMD [ARGS...]"));
    assert!(USAGE.contains("slipway attach [OPTIONS] --netns PATH|PID"));
}

#[test]
fn command_ends_options_and_keeps_its_own() {
    let (options, argv) = run(&["run", "-d", "sh", "-c", "exit 7", "--mtu", "x"]);
    assert_eq!(options.log, LogLevel::Debug);
    assert_eq!(argv, args(&["sh", "-c", "exit 7", "--mtu", "x"]));
}

#[test]
fn double_dash_ends_options() {
    let (options, argv) = run(&["run", "--stats", "--", "--mtu", "-t"]);
    assert!(options.stats);
    assert!(options.offload);
    assert_eq!(argv, args(&["--mtu", "-t"]));
    let (_, argv) = run(&["run", "--", "--"]);
    assert_eq!(argv, args(&["--"]));
}

#[test]
fn double_dash_outside_run_is_refused() {
    assert!(error(&["--", "run", "true"]).contains("\"--\""));
    assert!(error(&["attach", "--netns", "1", "--", "x"]).contains("\"--\""));
}

#[test]
fn options_before_the_subcommand_count() {
    let (options, _) = run(&["-q", "--mtu", "1500", "run", "true"]);
    assert_eq!((options.log, options.mtu), (LogLevel::Quiet, 1500));
}

#[test]
fn missing_cmd() {
    assert!(error(&["run"]).starts_with("run: missing CMD"));
    assert!(error(&["run", "-d", "--"]).starts_with("run: missing CMD"));
}

#[test]
fn missing_or_unknown_subcommand() {
    assert!(error(&[]).starts_with("missing command"));
    assert!(error(&["-d"]).starts_with("missing command"));
    assert_eq!(
        error(&["walk"]),
        "unknown command \"walk\": expected \"run\", \"attach\", \"stream\" or \"vhost-user\""
    );
}

#[test]
fn unknown_option() {
    assert_eq!(
        error(&["run", "--frobnicate", "true"]),
        "unknown option \"--frobnicate\": see \"slipway --help\""
    );
    assert!(error(&["run", "-x", "true"]).contains("\"-x\""));
    assert!(error(&["run", "--frob=1", "true"]).contains("\"--frob\""));
}

#[test]
fn tcp_and_udp_specs_repeat_and_combine() {
    let (options, _) = run(&[
        "run",
        "-t",
        "8080:80",
        "-t",
        "127.0.0.1/9000-9001",
        "-u53",
        "true",
    ]);
    let tcp: Vec<_> = options
        .tcp_forwards
        .iter()
        .map(|f| (f.bind, f.host_port, f.guest_port))
        .collect();
    let local = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(
        tcp,
        vec![(None, 8080, 80), (local, 9000, 9000), (local, 9001, 9001)]
    );
    assert_eq!(options.udp_forwards.guest_port_for(53), Some(53));
    let (options, _) = run(&["run", "--tcp-ports=22", "--udp-ports", "none", "true"]);
    assert_eq!(options.tcp_forwards.guest_port_for(22), Some(22));
    assert!(options.udp_forwards.is_empty());
}

#[test]
fn bad_port_specs_name_the_option() {
    let e = error(&["run", "-t", "abc", "true"]);
    assert!(e.starts_with("-t: invalid value \"abc\": "), "{e}");
    let e = error(&["run", "--udp-ports", "70000", "true"]);
    assert!(
        e.starts_with("--udp-ports: invalid value \"70000\": "),
        "{e}"
    );
    let e = error(&["run", "-t", "80", "-t", "79-81", "true"]);
    assert!(
        e.starts_with("-t: host port 80 is forwarded by both"),
        "{e}"
    );
    let e = error(&["run", "-t", "none", "-t", "80", "true"]);
    assert!(e.contains("\"none\" cannot be combined"), "{e}");
    let e = error(&["run", "-t", "127.0.0.1%lo/80", "true"]);
    assert!(e.contains("interface"), "{e}");
    assert!(error(&["run", "-t"]).starts_with("-t: missing value: expected a port spec"));
}

#[test]
fn mtu_range() {
    assert_eq!(run(&["run", "--mtu", "68", "x"]).0.mtu, 68);
    assert_eq!(run(&["run", "--mtu=65520", "x"]).0.mtu, 65520);
    for bad in ["abc", "67", "65521", "", "+1500", "1e3", "99999999999"] {
        assert_eq!(
            error(&["run", "--mtu", bad, "x"]),
            format!("--mtu: invalid value {bad:?}: expected a number from 68 to 65520")
        );
    }
    assert_eq!(
        error(&["run", "--mtu"]),
        "--mtu: missing value: expected a number from 68 to 65520"
    );
}

#[test]
fn map_host_loopback_takes_the_gateway_or_none() {
    let hl = |v: &str| run(&["run", "--map-host-loopback", v, "x"]).0.host_loopback;
    assert_eq!(hl("none"), HostLoopback::OFF);
    assert_eq!(hl("10.0.2.2"), HostLoopback::LOOPBACK);
    assert_eq!(hl("fd00:0:0:2::2"), HostLoopback::LOOPBACK);
    let e = error(&["run", "--map-host-loopback", "10.0.2.9", "x"]);
    assert!(
        e.starts_with("--map-host-loopback: invalid value \"10.0.2.9\": "),
        "{e}"
    );
    assert!(e.contains("only through the gateway"), "{e}");
    let e = error(&["run", "--map-host-loopback", "gateway", "x"]);
    assert!(e.contains("expected the gateway address 10.0.2.2"), "{e}");
}

#[test]
fn deny_repeats_and_takes_lists() {
    let (options, _) = run(&[
        "run",
        "--deny",
        "10.0.0.0/8,fd00::/8",
        "--deny=192.0.2.1",
        "x",
    ]);
    let deny: Vec<String> = options.deny.iter().map(ToString::to_string).collect();
    assert_eq!(deny, ["10.0.0.0/8", "fd00::/8", "192.0.2.1/32"]);
    let e = error(&["run", "--deny", "10.0.0.1/8", "x"]);
    assert!(
        e.starts_with("--deny: invalid value \"10.0.0.1/8\": host bits set"),
        "{e}"
    );
    assert!(error(&["run", "--deny", "", "x"]).starts_with("--deny: invalid value \"\""));
}

#[test]
fn dns_upstream_forms() {
    let dns = |v: &str| run(&["run", "--dns-upstream", v, "x"]).0.dns_upstream;
    let v4 = |a, b, c, d, port| {
        Some(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(a, b, c, d),
            port,
        )))
    };
    assert_eq!(dns("127.0.0.1"), v4(127, 0, 0, 1, 53));
    assert_eq!(dns("127.0.0.1:5353"), v4(127, 0, 0, 1, 5353));
    assert_eq!(dns("[::1]:5353"), Some("[::1]:5353".parse().unwrap()));
    assert_eq!(dns("::1"), Some("[::1]:53".parse().unwrap()));
    for bad in ["localhost", "1.2.3.4:", "1.2.3.4:0", "::1:53:x"] {
        let e = error(&["run", "--dns-upstream", bad, "x"]);
        assert!(
            e.starts_with(&format!("--dns-upstream: invalid value {bad:?}: ")),
            "{e}"
        );
    }
}

#[test]
fn pcap_stats_ifname_and_log_levels() {
    let (options, _) = run(&[
        "run",
        "--pcap",
        "/tmp/x.pcap",
        "--stats",
        "--ifname",
        "tap0",
        "--trace",
        "x",
    ]);
    assert_eq!(options.pcap, Some(PathBuf::from("/tmp/x.pcap")));
    assert!(options.stats);
    assert_eq!(options.ifname, "tap0");
    assert_eq!(options.log, LogLevel::Trace);
    assert_eq!(run(&["run", "-d", "-q", "x"]).0.log, LogLevel::Quiet);
    assert!(error(&["run", "--pcap=", "x"]).starts_with("--pcap: invalid value \"\""));
    for bad in ["", "a/b", "a:b", "a b", "sixteen-bytes-xx", ".."] {
        let e = error(&["run", "--ifname", bad, "x"]);
        assert!(
            e.starts_with(&format!("--ifname: invalid value {bad:?}: ")),
            "{e}"
        );
    }
}

#[test]
fn max_flows_takes_a_count_up_to_the_default_total() {
    assert_eq!(run(&["run", "x"]).0.max_flows, None);
    assert_eq!(
        run(&["run", "--max-flows", "500", "x"]).0.max_flows,
        Some(500)
    );
    assert_eq!(
        run(&["run", "--max-flows=82944", "x"]).0.max_flows,
        Some(82_944)
    );
    for bad in ["", "-1", "82945", "many"] {
        let e = error(&["run", "--max-flows", bad, "x"]);
        assert!(
            e.starts_with(&format!(
                "--max-flows: invalid value {bad:?}: expected a number"
            )),
            "{e}"
        );
    }
}

#[test]
fn flags_take_no_value() {
    assert_eq!(error(&["run", "--stats=1", "x"]), "--stats: takes no value");
    assert_eq!(
        error(&["run", "-dq", "x"]),
        "-d: takes no value: write short options separately, not \"-dq\""
    );
}

#[test]
fn attach_needs_netns() {
    let parsed = parse(&args(&["attach", "--netns", "/run/netns/a", "-t", "80"]));
    let Ok(Command::Attach { options, netns }) = parsed else {
        panic!("{parsed:?}")
    };
    assert_eq!(netns, NetnsTarget::Path("/run/netns/a".into()));
    assert_eq!(options.tcp_forwards.guest_port_for(80), Some(80));
    let parsed = parse(&args(&["attach", "--netns=1234"]));
    assert!(matches!(
        parsed,
        Ok(Command::Attach {
            netns: NetnsTarget::Pid(1234),
            ..
        })
    ));
    assert!(error(&["attach"]).starts_with("attach: missing --netns"));
    assert!(error(&["attach", "--netns", "0"]).starts_with("--netns: invalid value \"0\""));
    assert!(error(&["attach", "--netns", "1", "sh"]).contains("attach runs no command"));
    assert!(error(&["run", "--netns", "1", "sh"]).starts_with("--netns: only for attach"));
}

fn stream_parsed(list: &[&str]) -> (Options, StreamTarget, bool) {
    match parse(&args(list)) {
        Ok(Command::Stream {
            options,
            target,
            keep_listening,
        }) => (options, target, keep_listening),
        other => panic!("{list:?}: expected stream, got {other:?}"),
    }
}

#[test]
fn stream_takes_a_socket_or_an_fd_and_the_shared_options() {
    let (options, target, keep) = stream_parsed(&[
        "stream",
        "--socket",
        "/tmp/s.sock",
        "-t",
        "2222:22",
        "--mtu",
        "1500",
        "--pcap",
        "/tmp/x.pcap",
        "-q",
    ]);
    assert_eq!(target, StreamTarget::Socket(PathBuf::from("/tmp/s.sock")));
    assert!(!keep);
    assert_eq!(options.tcp_forwards.guest_port_for(2222), Some(22));
    assert_eq!(
        (options.mtu, options.log, options.pcap.is_some()),
        (1500, LogLevel::Quiet, true)
    );
    let (_, target, keep) = stream_parsed(&["stream", "--socket=s", "--keep-listening"]);
    assert_eq!((target, keep), (StreamTarget::Socket("s".into()), true));
    let (_, target, _) = stream_parsed(&["stream", "--fd", "3"]);
    assert_eq!(target, StreamTarget::Fd(3));
    assert!(USAGE.contains("slipway stream [OPTIONS] --socket PATH"));
}

#[test]
fn stream_option_errors_name_the_option() {
    assert!(error(&["stream"]).starts_with("stream: missing --socket"));
    assert!(error(&["stream", "--socket", "a", "--fd", "3"]).contains("exclude each other"));
    assert!(error(&["stream", "--fd", "x"]).starts_with("--fd: invalid value \"x\""));
    assert!(error(&["stream", "--fd", "-1"]).starts_with("--fd: invalid value \"-1\""));
    assert!(error(&["stream", "--socket="]).starts_with("--socket: invalid value \"\""));
    assert!(
        error(&["stream", "--fd", "3", "--keep-listening"])
            .starts_with("--keep-listening: not with --fd")
    );
    assert!(
        error(&["stream", "--socket", "s", "--ifname", "x"])
            .starts_with("--ifname: only for run and attach")
    );
    assert!(
        error(&["stream", "--socket", "s", "--netns", "1"]).starts_with("--netns: only for attach")
    );
    assert!(error(&["stream", "--socket", "s", "qemu"]).contains("stream runs no command"));
    assert_eq!(
        error(&["run", "--socket", "s", "true"]),
        "--socket: only for stream and vhost-user"
    );
    assert_eq!(
        error(&["attach", "--netns", "1", "--keep-listening"]),
        "--keep-listening: only for stream"
    );
}

#[test]
fn vhost_user_takes_a_socket_and_the_shared_options() {
    let parsed = parse(&args(&[
        "vhost-user",
        "--socket",
        "/tmp/v.sock",
        "-t",
        "8080",
        "--mtu",
        "1500",
    ]));
    let Ok(Command::VhostUser { options, socket }) = parsed else {
        panic!("expected vhost-user, got {parsed:?}");
    };
    assert_eq!(socket, PathBuf::from("/tmp/v.sock"));
    assert_eq!(options.mtu, 1500);
    assert!(USAGE.contains("slipway vhost-user [OPTIONS] --socket PATH"));
    assert!(error(&["vhost-user"]).starts_with("vhost-user: missing --socket"));
    assert_eq!(
        error(&["vhost-user", "--socket", "s", "--fd", "3"]),
        "--fd: only for stream"
    );
    assert!(
        error(&["vhost-user", "--socket", "s", "--netns", "1"])
            .starts_with("--netns: only for attach")
    );
    assert!(error(&["vhost-user", "--socket", "s", "qemu"]).contains("runs no command"));
}

#[test]
fn non_utf8_command_arguments_pass_through() {
    use std::os::unix::ffi::OsStringExt;
    let odd = OsString::from_vec(vec![b'a', 0xff]);
    let list = vec!["run".into(), "echo".into(), odd.clone()];
    let Ok(Command::Run { argv, .. }) = parse(&list) else {
        panic!()
    };
    assert_eq!(argv, vec![OsString::from("echo"), odd]);
}

#[test]
fn ipv4_only_and_ipv6_only_leave_the_other_family_out_of_the_plan() {
    let (options, _) = run(&["run", "-4", "true"]);
    assert_eq!(options.families, Families::Ipv4Only);
    let plan = options.plan().unwrap();
    assert!(plan.ipv4().is_some() && plan.ipv6().is_none());
    let (options, _) = run(&["run", "--ipv6-only", "true"]);
    assert_eq!(options.families, Families::Ipv6Only);
    let plan = options.plan().unwrap();
    assert!(plan.ipv4().is_none() && plan.ipv6().is_some());
    let (options, _) = run(&["run", "true"]);
    let plan = options.plan().unwrap();
    assert!(
        plan.ipv4().is_some() && plan.ipv6().is_some(),
        "both by default"
    );
    // Repeating one is harmless; the two together leave the guest nothing.
    assert_eq!(
        run(&["run", "-4", "-4", "x"]).0.families,
        Families::Ipv4Only
    );
    let e = error(&["run", "-4", "-6", "x"]);
    assert!(e.contains("-4 and -6 exclude each other"), "{e}");
    assert_eq!(error(&["run", "-4x", "y"]).split(':').next(), Some("-4"));
}

#[test]
fn address_options_set_the_plan_of_the_family_of_their_value() {
    let (options, _) = run(&[
        "run",
        "--network",
        "fd00:0:0:7::/64",
        "-a",
        "fd00:0:0:7::15",
        "-g",
        "fd00:0:0:7::1",
        "--dns-forward=fd00:0:0:7::53",
        "--network",
        "10.9.0.0/16",
        "--gateway",
        "10.9.0.1",
        "x",
    ]);
    let plan = options.plan().unwrap();
    let v6 = plan.ipv6().unwrap();
    assert_eq!(v6.network().to_string(), "fd00:0:0:7::/64");
    assert_eq!(v6.guest(), Some("fd00:0:0:7::15".parse().unwrap()));
    assert_eq!(
        v6.gateway(),
        "fd00:0:0:7::1".parse::<std::net::Ipv6Addr>().unwrap()
    );
    assert_eq!(
        v6.dns(),
        "fd00:0:0:7::53".parse::<std::net::Ipv6Addr>().unwrap()
    );
    let v4 = plan.ipv4().unwrap();
    assert_eq!(v4.network().to_string(), "10.9.0.0/16");
    assert_eq!(v4.gateway(), Ipv4Addr::new(10, 9, 0, 1));
    assert_eq!(v4.guest(), Ipv4Addr::new(10, 9, 0, 15), "the default host");
}

#[test]
fn address_option_errors_name_the_option() {
    let cases: &[(&[&str], &str)] = &[
        // The plan builder's checks, each named after its option.
        (
            &["-g", "fd00:1::2"],
            "--gateway: IPv6 gateway address fd00:1::2 is outside",
        ),
        (
            &["-a", "fd00:0:0:2::2"],
            "--address: IPv6 guest address fd00:0:0:2::2 is also",
        ),
        (
            &["--network", "::1/128"],
            "--network: IPv6 network ::1/128 overlaps",
        ),
        (
            &["--dns-forward", "10.0.3.3"],
            "--dns-forward: IPv4 DNS address 10.0.3.3 is outside",
        ),
        (
            &["--network", "fd00:0:0:2::/80"],
            "--network: IPv6 network fd00:0:0:2::/80 is not a /64",
        ),
        // The option's own syntax.
        (
            &["-a", "fd00::x"],
            "-a: invalid value \"fd00::x\": expected an IPv4 or IPv6 address",
        ),
        (
            &["--network", "10.0.0.0/33"],
            "--network: invalid value \"10.0.0.0/33\"",
        ),
        // One per family.
        (
            &["-g", "10.0.2.1", "-g", "10.0.2.4"],
            "-g: given twice for IPv4",
        ),
        // A family that is off.
        (
            &["-4", "-g", "fd00:0:0:2::1"],
            "--gateway: an IPv6 address, but -4 turns IPv6 off",
        ),
        (
            &["--network", "10.1.0.0/24", "-6"],
            "--network: an IPv4 address, but -6 turns IPv4 off",
        ),
        (&["-6", "--mtu", "1000"], "--mtu: MTU 1000 is below 1280"),
    ];
    for (list, expected) in cases {
        let mut argv = vec!["run"];
        argv.extend_from_slice(list);
        argv.push("x");
        let e = error(&argv);
        assert!(e.starts_with(expected), "{list:?}: {e}");
    }
}

#[test]
fn map_host_loopback_follows_the_configured_gateway() {
    let list = [
        "run",
        "--map-host-loopback",
        "10.0.2.1",
        "-g",
        "10.0.2.1",
        "x",
    ];
    assert_eq!(run(&list).0.host_loopback, HostLoopback::LOOPBACK);
    let e = error(&[
        "run",
        "-g",
        "10.0.2.1",
        "--map-host-loopback",
        "10.0.2.2",
        "x",
    ]);
    assert!(
        e.contains("only through the gateway: expected 10.0.2.1 or fd00:0:0:2::2, or none"),
        "{e}"
    );
}
