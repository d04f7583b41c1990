//! `cargo xtask demo`: a guest reaches a host service through slipway.
//!
//! Starts a small HTTP server on 127.0.0.1, builds `slipway`, and runs an
//! HTTP client inside `slipway run`: the client lives in a fresh network
//! namespace whose only interface is slipway's tap, and reaches the server
//! at the gateway address 10.0.2.2, which slipway maps to host loopback.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, ExitCode};
use std::thread;
use std::time::Duration;

use crate::process::{cargo_command, run_echoed, succeeds, workspace_root};

const BODY: &str = "hello from a server on the host's 127.0.0.1, fetched through slipway\n";

/// Serves `BODY` to each connection, for as long as the process lives.
fn serve(listener: TcpListener) {
    for stream in listener.incoming().take(16) {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let response = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        let _ = stream.write_all(response.as_bytes());
    }
}

/// The HTTP client to run in the namespace: curl, else busybox wget.
fn client(url: &str) -> Option<Vec<String>> {
    let has = |program: &str, arg: &str| succeeds(Command::new(program).arg(arg));
    if has("curl", "--version") {
        Some(vec![
            "curl".into(),
            "-sS".into(),
            "--max-time".into(),
            "10".into(),
            url.into(),
        ])
    } else if has("busybox", "--help") {
        Some(vec![
            "busybox".into(),
            "wget".into(),
            "-q".into(),
            "-O".into(),
            "-".into(),
            url.into(),
        ])
    } else {
        None
    }
}

/// Runs the demo.
pub fn run() -> ExitCode {
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("demo: cannot listen on 127.0.0.1: {error}");
            return ExitCode::FAILURE;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    thread::spawn(move || serve(listener));
    println!("demo: an HTTP server listens on 127.0.0.1:{port} (host loopback)");
    if let Err(error) = run_echoed(&mut cargo_command(&[
        "build",
        "--release",
        "-p",
        "slipway-cli",
    ])) {
        eprintln!("demo: {error}");
        return ExitCode::FAILURE;
    }
    let url = format!("http://10.0.2.2:{port}/");
    let Some(client) = client(&url) else {
        eprintln!("demo: needs curl or busybox (apt-get install curl)");
        return ExitCode::FAILURE;
    };
    let slipway = workspace_root().join("target/release/slipway");
    println!(
        "demo: slipway run --stats -- {}   (in a new network namespace)",
        client.join(" ")
    );
    let output = Command::new(&slipway)
        .args(["run", "--stats", "--"])
        .args(&client)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) => {
            eprintln!("demo: cannot run {}: {error}", slipway.display());
            return ExitCode::FAILURE;
        }
    };
    let body = String::from_utf8_lossy(&output.stdout);
    println!("--- what the client in the namespace received ---\n{body}---");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if output.status.success() && body == BODY {
        println!("demo: OK: the namespace's kernel reached 127.0.0.1:{port} through slipway");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "demo: FAILED ({}); slipway run needs root and /dev/net/tun",
            output.status
        );
        ExitCode::FAILURE
    }
}
