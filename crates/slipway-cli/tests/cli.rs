//! The `slipway` command as a user runs it: usage errors without privileges,
//! and with root a real guest (the Linux kernel's own stack in a network
//! namespace) reaching services on host loopback through slipway.
//!
//! Every child process is bounded: it is killed (with its process group)
//! after [`LIMIT`] and the test fails.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use test_support::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The longest any child process may run.
const LIMIT: Duration = Duration::from_secs(20);

/// What the host's HTTP server answers every request with.
const BODY: &str = "hello from the host, through slipway\n";

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn slipway(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slipway"));
    command.args(args);
    common::scrub(&mut command);
    command.env_remove("RUST_LOG");
    command
}

/// Spawns `command` in its own process group with piped output.
fn spawn(command: &mut Command) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    match command.spawn() {
        Ok(child) => child,
        Err(e) => panic!("cannot spawn {command:?}: {e}"),
    }
}

fn read_all(stream: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stream) = stream {
            let _ = stream.read_to_string(&mut text);
        }
        text
    })
}

/// Waits for `child` at most [`LIMIT`]; on timeout kills its whole process
/// group (slipway and the command it runs) and panics.
fn wait_bounded(mut child: Child, what: &str) -> Output {
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                kill_group(&child);
                let _ = child.wait();
                let stderr = stderr.join().unwrap_or_default();
                panic!("{what}: no exit within {LIMIT:?}; killed. stderr:\n{stderr}");
            }
            Err(e) => panic!("{what}: wait failed: {e}"),
        }
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn kill_group(child: &Child) {
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

fn run(args: &[&str]) -> Output {
    wait_bounded(spawn(&mut slipway(args)), &format!("slipway {args:?}"))
}

/// Why the namespace tests cannot run here, if they cannot.
fn namespaces_unavailable() -> Option<&'static str> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (CAP_SYS_ADMIN) to create network namespaces");
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("needs /dev/net/tun");
    }
    None
}

macro_rules! require_namespaces {
    () => {
        if let Some(why) = namespaces_unavailable() {
            common::skip(why);
            return;
        }
    };
}

// ---------------------------------------------------------------------------
// Usage, no privileges needed.

#[test]
fn help_prints_the_synopsis_and_exits_0() {
    let out = run(&["--help"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("slipway run [OPTIONS] [--] CMD [ARGS...]")
    );
    assert!(
        out.stdout
            .contains("slipway attach [OPTIONS] --netns PATH|PID")
    );
    assert!(out.stdout.contains("-t, --tcp-ports SPEC"));
    let out = run(&["-V"]);
    assert!(out.status.success());
    assert!(out.stdout.starts_with("slipway "));
}

#[test]
fn bad_options_exit_2_naming_the_option() {
    let cases: [(&[&str], &str); 7] = [
        (
            &["run", "--mtu", "abc", "true"],
            "slipway: --mtu: invalid value \"abc\": expected a number from 68 to 65520",
        ),
        (
            &["run", "--mtu", "67", "true"],
            "slipway: --mtu: invalid value \"67\"",
        ),
        (
            &["run", "-t", "80-", "true"],
            "slipway: -t: invalid value \"80-\"",
        ),
        (
            &["run", "--bogus", "true"],
            "slipway: unknown option \"--bogus\"",
        ),
        (&["run"], "slipway: run: missing CMD"),
        (&["attach"], "slipway: attach: missing --netns"),
        (
            &["run", "--map-host-loopback", "10.0.2.9", "true"],
            "slipway: --map-host-loopback: invalid value \"10.0.2.9\"",
        ),
    ];
    for (args, message) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.starts_with(message),
            "{args:?}: expected {message:?}, got {:?}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn no_arguments_is_a_usage_error() {
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("missing command"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// A real guest in a network namespace (root).

#[test]
fn run_exits_with_the_commands_status() {
    require_namespaces!();
    let out = run(&["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let out = run(&["run", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", out.stderr);
    let out = run(&["run", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15), "{}", out.stderr);
}

#[test]
fn run_reports_a_command_that_cannot_start() {
    require_namespaces!();
    let out = run(&["run", "--", "/nonexistent/slipway-test-command"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.starts_with("slipway: cannot run"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_command_sees_the_dns_address_in_resolv_conf() {
    require_namespaces!();
    let out = run(&["run", "--", "cat", "/etc/resolv.conf"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.lines().any(|line| line == "nameserver 10.0.2.3"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_namespace_has_the_planned_address_route_and_mtu() {
    require_namespaces!();
    let out = run(&[
        "run",
        "--mtu",
        "1500",
        "--ifname",
        "slip0",
        "--",
        "sh",
        "-c",
        "ip -o -4 addr show dev slip0; ip -4 route; cat /sys/class/net/slip0/mtu 2>/dev/null || ip -o link show slip0",
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("10.0.2.15/24"), "{}", out.stdout);
    assert!(
        out.stdout.contains("default via 10.0.2.2 dev slip0"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("1500"), "{}", out.stdout);
}

/// A host service on 127.0.0.1 answering every request with [`BODY`].
fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local_addr").port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || answer_http(stream));
        }
    });
    port
}

fn answer_http(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line == "\r\n" || line == "\n" {
            break;
        }
        line.clear();
    }
    let response = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut stream = &stream;
    let _ = stream.write_all(response.as_bytes());
}

/// A shell command that fetches `url` with whichever client exists.
fn fetch(host: &str, port: u16) -> String {
    let url = format!("http://{host}:{port}/");
    format!(
        "if command -v curl >/dev/null; then exec curl -sS --noproxy '*' --max-time 10 {url}; \
         elif command -v busybox >/dev/null; then exec busybox wget -q -T 10 -O - {url}; \
         else exec bash -c 'exec 3<>/dev/tcp/{host}/{port}; printf \"GET / HTTP/1.0\\r\\n\\r\\n\" >&3; sed \"1,/^\\r$/d\" <&3'; fi"
    )
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("slipway-cli-test-{}-{name}", std::process::id()))
}

#[test]
fn guest_reaches_a_host_loopback_service_through_the_gateway() {
    require_namespaces!();
    let port = http_server();
    let pcap = temp_path("demo.pcap");
    let pcap_arg = pcap.to_string_lossy().into_owned();
    let script = fetch("10.0.2.2", port);
    let out = run(&[
        "run", "--stats", "--pcap", &pcap_arg, "--", "sh", "-c", &script,
    ]);
    eprintln!("{}", out.stderr);
    assert!(out.status.success(), "status {:?}", out.status);
    assert_eq!(out.stdout, BODY);
    // The counters show one TCP flow, opened by the guest.
    let counter = |name: &str| -> Option<u64> {
        out.stderr
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
    };
    assert_eq!(counter("tcp flows opened"), Some(1));
    assert!(counter("tcp bytes to guest").is_some_and(|n| n >= BODY.len() as u64));
    // The capture holds the frames of both directions (ARP and TCP at least).
    let bytes = std::fs::read(&pcap).expect("pcap file");
    let _ = std::fs::remove_file(&pcap);
    assert_eq!(&bytes[..4], &0xa1b2_c3d4_u32.to_le_bytes());
    assert!(bytes.len() > 24 + 6 * 16, "{} bytes", bytes.len());
    // Checksums are offloaded on the tap, yet every TCP segment in the
    // capture carries its whole, correct checksum, both ways.
    let segments = pcap_tcp_checksums(&bytes);
    assert!(segments.len() >= 6, "{segments:?}");
    assert!(segments.iter().all(|&ok| ok), "{segments:?}");
}

/// Whether each TCP segment of either IP version in a pcap capture
/// verifies.
fn pcap_tcp_checksums(capture: &[u8]) -> Vec<bool> {
    use smoltcp::wire::{IpProtocol, TcpPacket};
    test_support::harness::frames::pcap_packets(capture, IpProtocol::Tcp)
        .iter()
        .map(|p| {
            TcpPacket::new_checked(p.payload)
                .unwrap()
                .verify_checksum(&p.src, &p.dst)
        })
        .collect()
}

#[test]
fn a_closed_host_port_is_refused_at_once() {
    require_namespaces!();
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let script = format!(
        "if command -v curl >/dev/null; then curl -sS --noproxy '*' --max-time 10 http://10.0.2.2:{port}/; \
         else busybox wget -q -T 10 -O - http://10.0.2.2:{port}/; fi; echo \"exit=$?\""
    );
    let started = Instant::now();
    let out = run(&["run", "--", "sh", "-c", &script]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(!out.stdout.contains("exit=0"), "{}", out.stdout);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "refusal took {:?}",
        started.elapsed()
    );
}

/// A DNS responder on 127.0.0.1 that answers every A query with 192.0.2.7.
fn dns_responder() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let port = socket.local_addr().expect("addr").port();
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, peer)) = socket.recv_from(&mut buf) {
            if let Some(reply) = dns_answer(&buf[..len]) {
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
    port
}

/// The answer to a one-question query: 192.0.2.7 for A, no records for
/// anything else.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut at = 12;
    while *query.get(at)? != 0 {
        at += 1 + usize::from(*query.get(at)?);
    }
    let question_end = at + 5;
    let qtype = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    let mut reply = query.get(..question_end)?.to_vec();
    reply[2] = 0x81; // QR, RD
    reply[3] = 0x80; // RA, no error
    reply[6..12].copy_from_slice(&[0, u8::from(qtype == 1), 0, 0, 0, 0]);
    if qtype == 1 {
        reply.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
    }
    Some(reply)
}

#[test]
fn guest_dns_goes_to_the_configured_upstream() {
    require_namespaces!();
    let port = dns_responder();
    let upstream = format!("127.0.0.1:{port}");
    let script = "if command -v getent >/dev/null; then getent ahostsv4 slipway.test; \
                  else busybox nslookup slipway.test; fi";
    let out = run(&["run", "--dns-upstream", &upstream, "--", "sh", "-c", script]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("192.0.2.7"), "{}", out.stdout);
}

#[test]
fn attach_serves_a_process_namespace_until_it_exits() {
    require_namespaces!();
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !have("unshare") || !have("nsenter") {
        common::skip("needs unshare and nsenter (util-linux)");
        return;
    }
    let port = http_server();
    // `unshare` execs `sleep`: the pid is the namespace's process.
    let holder = spawn(Command::new("unshare").args(["-n", "sleep", "15"]));
    let pid = holder.id().to_string();
    thread::sleep(Duration::from_millis(100));
    let server = spawn(&mut slipway(&["attach", "--netns", &pid]));
    // Wait (bounded) until slipway has set up the interface.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("nsenter")
            .args([
                "-t", &pid, "-n", "ip", "-o", "-4", "addr", "show", "dev", "eth0",
            ])
            .stderr(Stdio::null())
            .output()
            .expect("nsenter");
        if String::from_utf8_lossy(&out.stdout).contains("10.0.2.15/24") {
            break;
        }
        assert!(Instant::now() < deadline, "eth0 never appeared");
        thread::sleep(Duration::from_millis(50));
    }
    let script = fetch("10.0.2.2", port);
    let fetched = wait_bounded(
        spawn(Command::new("nsenter").args(["-t", &pid, "-n", "sh", "-c", &script])),
        "fetch in the attached namespace",
    );
    assert_eq!(fetched.stdout, BODY, "{}", fetched.stderr);
    // The namespace's process exits; slipway follows with status 0.
    kill_group(&holder);
    let holder_out = wait_bounded(holder, "namespace holder");
    assert_eq!(holder_out.status.signal(), Some(9));
    let out = wait_bounded(server, "slipway attach");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
}

#[test]
fn attach_stops_on_sigterm() {
    require_namespaces!();
    let holder = spawn(Command::new("unshare").args(["-n", "sleep", "15"]));
    let pid = holder.id().to_string();
    thread::sleep(Duration::from_millis(100));
    let path = format!("/proc/{pid}/ns/net");
    let server = spawn(&mut slipway(&["attach", "--netns", &path]));
    thread::sleep(Duration::from_millis(300));
    let slipway_pid = i32::try_from(server.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(slipway_pid) = slipway_pid {
        let _ = rustix::process::kill_process(slipway_pid, rustix::process::Signal::TERM);
    }
    let out = wait_bounded(server, "slipway attach");
    kill_group(&holder);
    let _ = wait_bounded(holder, "namespace holder");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
}

#[test]
fn run_passes_sigterm_to_the_command() {
    require_namespaces!();
    let child = spawn(&mut slipway(&["run", "--", "sleep", "15"]));
    thread::sleep(Duration::from_millis(500));
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let out = wait_bounded(child, "slipway run -- sleep 15");
    assert_eq!(out.status.code(), Some(128 + 15), "{}", out.stderr);
}

#[test]
fn map_host_loopback_none_keeps_host_loopback_out_of_reach() {
    require_namespaces!();
    let port = http_server();
    let script = format!(
        "{}; echo \"exit=$?\"",
        fetch("10.0.2.2", port).replace("exec ", "")
    );
    let out = run(&[
        "run",
        "--map-host-loopback",
        "none",
        "--stats",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(!out.stdout.contains(BODY), "{}", out.stdout);
    assert!(!out.stdout.contains("exit=0"), "{}", out.stdout);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("denied") && !l.ends_with(" 0"))
    );
}

#[test]
fn tcp_forward_reaches_a_guest_server() {
    require_namespaces!();
    let host_port = {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let have_python = Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success());
    if !have_python {
        common::skip("needs python3 for the guest-side server");
        return;
    }
    let spec = format!("127.0.0.1/{host_port}:8080");
    let server = "import socket\n\
                  s = socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen()\n\
                  c, peer = s.accept(); c.sendall(('hi from the guest; peer %s\\n' % peer[0]).encode()); c.close()";
    let guest = spawn(&mut slipway(&[
        "run", "-t", &spec, "--", "python3", "-c", server,
    ]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let reply = loop {
        // Until the guest listens, the guest's kernel resets the forwarded
        // connection and the host sees it close without data.
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", host_port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            if !text.is_empty() {
                break text;
            }
        }
        assert!(Instant::now() < deadline, "the forward never answered");
        thread::sleep(Duration::from_millis(50));
    };
    let out = wait_bounded(guest, "slipway run -t");
    assert_eq!(reply, "hi from the guest; peer 10.0.2.2\n");
    assert!(out.status.success(), "{}", out.stderr);
}

/// Without root, `slipway run` enters a user namespace of its own (as pasta
/// does) and still serves the guest. The test runs it as `nobody`; where the
/// machine's /dev/net/tun is root-only (stock Debian makes it 0666), a
/// private mount namespace shows a world-usable node of the same device in
/// its place, so nothing changes on the host.
#[test]
fn run_without_root_enters_a_user_namespace_and_serves_the_guest() {
    require_namespaces!();
    let has = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has("unshare") || !has("setpriv") {
        common::skip("needs util-linux's unshare and setpriv");
        return;
    }
    let port = http_server();
    let dir = temp_path("userns");
    std::fs::create_dir_all(&dir).unwrap();
    let node = dir.join("tun");
    let binary = dir.join("slipway");
    // nobody must be able to reach the binary: copy it out of target/.
    std::fs::copy(env!("CARGO_BIN_EXE_slipway"), &binary).unwrap();
    let script = format!(
        "set -e; mknod -m 666 {node} c 10 200; mount --bind {node} /dev/net/tun; \
         exec setpriv --reuid=65534 --regid=65534 --clear-groups \
         {binary} run -- sh -c 'id -u; {fetch}'",
        node = node.display(),
        binary = binary.display(),
        fetch = fetch("10.0.2.2", port).replace('\'', "'\\''"),
    );
    let mut command = Command::new("unshare");
    command.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let out = wait_bounded(spawn(&mut command), "slipway run as nobody");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "status {:?}: {}",
        out.status,
        out.stderr
    );
    assert_eq!(
        out.stdout,
        format!("0\n{BODY}"),
        "the command runs as root of the user namespace and fetches the page"
    );
}
