//! The command channel into a VM guest. Inside the guest, `bench-harness
//! agent --port PORT` listens on TCP and runs one command per connection;
//! on the host, `bench-harness remote --agent ADDR:PORT PROGRAM ARGS..`
//! (reaching the agent through the stack's inbound forward) sends the
//! command line and relays what it prints and its exit status, so that a
//! command in the VM looks to the harness like a local process.
//!
//! Wire format: the host sends one line, the command's argv as a JSON
//! array of strings; the agent answers with frames `KIND LEN DATA` (`KIND`
//! one byte: 1 stdout, 2 stderr, 3 exit status as a big-endian `i32`;
//! `LEN` a big-endian `u32`), the exit frame last.
//!
//! Invariant: the guest's side of the channel is hostile input to the
//! host: a frame longer than [`MAX_FRAME`] or of an unknown kind ends the
//! relay with an error, never an allocation of the announced size. A
//! command whose host side goes away (the harness killed `remote`, so its
//! connection closed) is killed in the guest; no command outlives its
//! caller.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 1 << 20;
/// The longest command line the agent reads.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long the agent waits for the command line after a connect.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the host side waits with no frame before giving up: longer
/// than any server's lifetime in the harness.
const RELAY_TIMEOUT: Duration = Duration::from_secs(7300);
/// How often the agent checks whether its command exited or its caller
/// left.
const POLL: Duration = Duration::from_millis(10);

const KIND_STDOUT: u8 = 1;
const KIND_STDERR: u8 = 2;
const KIND_EXIT: u8 = 3;

/// A frame from the agent.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Bytes the command wrote to stdout.
    Stdout(Vec<u8>),
    /// Bytes the command wrote to stderr.
    Stderr(Vec<u8>),
    /// The command's exit status (128 + N when signal N ended it); the last
    /// frame.
    Exit(i32),
}

impl Frame {
    /// The frame's bytes on the wire.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let (kind, data) = match self {
            Frame::Stdout(data) => (KIND_STDOUT, data.as_slice()),
            Frame::Stderr(data) => (KIND_STDERR, data.as_slice()),
            Frame::Exit(code) => return frame_bytes(KIND_EXIT, &code.to_be_bytes()),
        };
        frame_bytes(kind, data)
    }

    /// Reads one frame; `None` at a clean end of the stream between frames.
    ///
    /// # Errors
    /// The stream failed or ended inside a frame, or the frame is too long
    /// or of an unknown kind.
    pub fn read(from: &mut impl Read) -> Result<Option<Self>, String> {
        let mut header = [0u8; 5];
        let mut got = 0;
        while got < header.len() {
            match from.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err("the agent's stream ended inside a frame header".into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading from the agent: {e}")),
            }
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_FRAME {
            return Err(format!(
                "the agent sent a frame of {len} bytes (at most {MAX_FRAME})"
            ));
        }
        let mut data = vec![0u8; len];
        from.read_exact(&mut data)
            .map_err(|e| format!("reading a frame from the agent: {e}"))?;
        match header[0] {
            KIND_STDOUT => Ok(Some(Frame::Stdout(data))),
            KIND_STDERR => Ok(Some(Frame::Stderr(data))),
            KIND_EXIT => {
                let code: [u8; 4] = data
                    .as_slice()
                    .try_into()
                    .map_err(|_| format!("the agent sent an exit frame of {len} bytes"))?;
                Ok(Some(Frame::Exit(i32::from_be_bytes(code))))
            }
            kind => Err(format!("the agent sent a frame of unknown kind {kind}")),
        }
    }
}

fn frame_bytes(kind: u8, data: &[u8]) -> Vec<u8> {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut bytes = Vec::with_capacity(5 + data.len());
    bytes.push(kind);
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// The command line as the host sends it.
#[must_use]
pub fn encode_request(argv: &[String]) -> Vec<u8> {
    let mut line = serde_json::Value::from(argv).to_string().into_bytes();
    line.push(b'\n');
    line
}

/// The argv in a command line from the host.
///
/// # Errors
/// The line is not a non-empty JSON array of strings.
pub fn decode_request(line: &[u8]) -> Result<Vec<String>, String> {
    let argv: Vec<String> =
        serde_json::from_slice(line).map_err(|e| format!("bad command line: {e}"))?;
    if argv.is_empty() {
        return Err("empty command line".into());
    }
    Ok(argv)
}

/// Serves commands on `0.0.0.0:port`, one thread per connection, forever.
///
/// # Errors
/// The port could not be bound.
pub fn serve(port: u16) -> Result<(), String> {
    crate::sys::raise_nofile();
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .map_err(|e| format!("agent: bind tcp port {port}: {e}"))?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            thread::sleep(POLL);
            continue;
        };
        thread::spawn(move || {
            if let Err(error) = handle(&stream) {
                let _ = (&stream)
                    .write_all(&Frame::Stderr(format!("agent: {error}\n").into_bytes()).encode());
                let _ = (&stream).write_all(&Frame::Exit(127).encode());
            }
        });
    }
    Ok(())
}

/// Runs the one command a connection asks for, relaying its output.
/// Errors are the ones before the command started.
fn handle(stream: &TcpStream) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| format!("socket timeout: {e}"))?;
    let mut line = Vec::new();
    BufReader::new(stream.take(MAX_REQUEST))
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading the command line: {e}"))?;
    let argv = decode_request(&line)?;
    let (program, args) = argv.split_first().ok_or("empty command line")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let out = Arc::new(Mutex::new(
        stream.try_clone().map_err(|e| format!("socket: {e}"))?,
    ));
    let mut pumps = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        pumps.push(pump(stdout, Arc::clone(&out), Frame::Stdout));
    }
    if let Some(stderr) = child.stderr.take() {
        pumps.push(pump(stderr, Arc::clone(&out), Frame::Stderr));
    }
    let gone = Arc::new(AtomicBool::new(false));
    let watcher = stream.try_clone().map_err(|e| format!("socket: {e}"))?;
    let flag = Arc::clone(&gone);
    thread::spawn(move || {
        // The host sends nothing after the command line: any byte, the
        // end of the stream or an error means it went away.
        let _ = watcher.set_read_timeout(None);
        let _ = (&watcher).read(&mut [0u8; 1]);
        flag.store(true, Ordering::Relaxed);
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if gone.load(Ordering::Relaxed) => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(());
            }
            Ok(None) => thread::sleep(POLL),
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    for handle in pumps {
        let _ = handle.join();
    }
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    if let Ok(mut out) = out.lock() {
        let _ = out.write_all(&Frame::Exit(code).encode());
    }
    Ok(())
}

/// Copies what `from` yields to `to` as frames made by `frame`.
fn pump(
    mut from: impl Read + Send + 'static,
    to: Arc<Mutex<TcpStream>>,
    frame: fn(Vec<u8>) -> Frame,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let bytes = frame(buf[..n].to_vec()).encode();
                    let sent = to.lock().map(|mut to| to.write_all(&bytes).is_ok());
                    if !matches!(sent, Ok(true)) {
                        return;
                    }
                }
            }
        }
    })
}

/// Runs `argv` through the agent at `agent`, copying its stdout and stderr
/// to ours, and returns its exit status. With `wait`, retries until then
/// while the agent cannot be reached or closes the connection before a
/// single frame (as the stacks' forwards do while the guest boots).
///
/// # Errors
/// The agent could not be reached (in time), or broke the protocol.
pub fn remote(agent: SocketAddrV4, argv: &[String], wait: Duration) -> Result<i32, String> {
    let deadline = Instant::now() + wait;
    loop {
        match relay(agent, argv) {
            Ok(code) => return Ok(code),
            Err(Relay::NoFrame(_)) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(200));
            }
            Err(Relay::NoFrame(error) | Relay::Broken(error)) => return Err(error),
        }
    }
}

enum Relay {
    /// Failed before the agent sent anything: the command did not start.
    NoFrame(String),
    /// Failed after.
    Broken(String),
}

fn relay(agent: SocketAddrV4, argv: &[String]) -> Result<i32, Relay> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(agent), Duration::from_secs(5))
        .map_err(|e| Relay::NoFrame(format!("agent {agent}: {e}")))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(RELAY_TIMEOUT))
        .and_then(|()| stream.write_all(&encode_request(argv)))
        .map_err(|e| Relay::NoFrame(format!("agent {agent}: {e}")))?;
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let mut any = false;
    loop {
        let frame = Frame::read(&mut stream).map_err(|e| {
            if any {
                Relay::Broken(e)
            } else {
                Relay::NoFrame(e)
            }
        })?;
        let broken = |e: std::io::Error| Relay::Broken(format!("relaying output: {e}"));
        match frame {
            None if any => {
                return Err(Relay::Broken(format!(
                    "agent {agent} closed the connection without an exit status"
                )));
            }
            None => {
                return Err(Relay::NoFrame(format!(
                    "agent {agent} closed the connection"
                )));
            }
            Some(Frame::Stdout(data)) => {
                stdout
                    .write_all(&data)
                    .and_then(|()| stdout.flush())
                    .map_err(broken)?;
            }
            Some(Frame::Stderr(data)) => stderr.write_all(&data).map_err(broken)?,
            Some(Frame::Exit(code)) => return Ok(code),
        }
        any = true;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly_between_frames() {
        let frames = [
            Frame::Stdout(b"ready\n".to_vec()),
            Frame::Stderr(Vec::new()),
            Frame::Exit(-3),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut reader = wire.as_slice();
        for frame in frames {
            assert_eq!(Frame::read(&mut reader).unwrap(), Some(frame));
        }
        assert_eq!(Frame::read(&mut reader).unwrap(), None);
    }

    #[test]
    fn hostile_frames_are_errors_without_allocating_their_length() {
        // A length of 4 GiB, a truncated frame, an unknown kind and an exit
        // status of the wrong size.
        let huge = [KIND_STDOUT, 0xff, 0xff, 0xff, 0xff];
        assert!(
            Frame::read(&mut huge.as_slice())
                .unwrap_err()
                .contains("at most")
        );
        let short = frame_bytes(KIND_STDOUT, b"abc");
        assert!(Frame::read(&mut &short[..6]).is_err());
        assert!(Frame::read(&mut &short[..3]).is_err());
        let unknown = frame_bytes(9, b"");
        assert!(
            Frame::read(&mut unknown.as_slice())
                .unwrap_err()
                .contains("kind")
        );
        let exit = frame_bytes(KIND_EXIT, b"12345");
        assert!(Frame::read(&mut exit.as_slice()).is_err());
    }

    #[test]
    fn command_lines_round_trip_and_garbage_is_refused() {
        let argv = vec!["iperf3".to_owned(), "-c".into(), "a b\"\n".into()];
        let line = encode_request(&argv);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(decode_request(&line).unwrap(), argv);
        for bad in [&b"[]"[..], b"{}", b"[1]", b"not json", b""] {
            assert!(decode_request(bad).is_err(), "{bad:?}");
        }
    }

    /// A real agent on loopback: output and status come back, a missing
    /// program is status 127, and a command whose caller leaves is killed.
    #[test]
    fn agent_runs_commands_relays_output_and_kills_orphans() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
            unreachable!()
        };
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    if handle(&stream).is_err() {
                        let _ = (&stream).write_all(&Frame::Exit(127).encode());
                    }
                });
            }
        });
        let run = |argv: &[&str]| -> (Vec<Frame>, TcpStream) {
            let mut stream = TcpStream::connect(addr).unwrap();
            let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
            stream.write_all(&encode_request(&argv)).unwrap();
            let mut frames = Vec::new();
            while let Some(frame) = Frame::read(&mut stream).unwrap() {
                let last = matches!(frame, Frame::Exit(_));
                frames.push(frame);
                if last {
                    break;
                }
            }
            (frames, stream)
        };
        let (frames, _) = run(&["sh", "-c", "echo out; echo err >&2; exit 7"]);
        assert!(
            frames.contains(&Frame::Stdout(b"out\n".to_vec())),
            "{frames:?}"
        );
        assert!(
            frames.contains(&Frame::Stderr(b"err\n".to_vec())),
            "{frames:?}"
        );
        assert_eq!(frames.last(), Some(&Frame::Exit(7)));
        let (frames, _) = run(&["/nonexistent/program"]);
        assert_eq!(frames.last(), Some(&Frame::Exit(127)));

        // A long sleeper whose caller disconnects: the agent kills it.
        let dir = std::env::temp_dir().join(format!("agent-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        let script = format!(
            "echo $$ > {}; echo started; exec sleep 60",
            pidfile.display()
        );
        let mut stream = TcpStream::connect(addr).unwrap();
        let argv = vec!["sh".to_owned(), "-c".into(), script];
        stream.write_all(&encode_request(&argv)).unwrap();
        let first = Frame::read(&mut stream).unwrap();
        assert_eq!(first, Some(Frame::Stdout(b"started\n".to_vec())));
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        drop(stream);
        let proc_dir = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
        let gone = test_support::common::poll_until(Duration::from_secs(5), || {
            std::fs::read_to_string(proc_dir.join("stat"))
                .map_or(true, |stat| stat.contains(") Z "))
        });
        let _ = std::fs::remove_dir_all(&dir);
        assert!(gone, "the orphaned command still runs");
    }
}
