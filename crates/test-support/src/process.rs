//! The part of running a child process that the end-to-end guards
//! ([`crate::e2e::Proc`]) and the bench harness share: the child in its own
//! process group, its stdout read line by line and its stderr read whole
//! by threads, the group killed at the end, and what it left.
//!
//! Invariant: nothing here waits longer than the limit it is given, and
//! nothing panics but [`Output::assert_success`], whose job that is; the
//! callers decide what a failure means.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// A started child and the readers of its output.
pub struct Piped {
    /// The child, the leader of its own process group.
    pub child: Child,
    /// Its stdout, a line at a time (each with its newline, if any).
    pub lines: Receiver<String>,
    /// Its whole stderr, sent once the stream closes.
    pub stderr: Receiver<String>,
}

/// Starts `command` in a new process group with stdin from /dev/null and
/// stdout and stderr piped to reader threads.
///
/// # Errors
/// What `spawn` said.
pub fn spawn_piped(command: &mut Command) -> std::io::Result<Piped> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn()?;
    let (line_tx, lines) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        thread::spawn(move || {
            let mut out = BufReader::new(out);
            let mut line = Vec::new();
            while out.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                if line_tx
                    .send(String::from_utf8_lossy(&line).into_owned())
                    .is_err()
                {
                    break;
                }
                line.clear();
            }
        });
    }
    let (err_tx, stderr) = mpsc::channel();
    if let Some(mut err) = child.stderr.take() {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = err.read_to_end(&mut bytes);
            let _ = err_tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
    }
    Ok(Piped {
        child,
        lines,
        stderr,
    })
}

/// What a finished process left.
#[derive(Debug)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Output {
    /// Panics with `what`, the status and both streams unless the process
    /// exited with 0.
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what}: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// How a wait for a line of output ended.
#[derive(Debug, PartialEq, Eq)]
pub enum LineWait {
    /// This line holds the needle.
    Found(String),
    /// The time ran out first.
    Timeout,
    /// The output closed first (the process ended).
    Ended,
}

/// Waits at most `limit` for a line from `lines` containing `needle`,
/// appending every line received (that one included) to `seen`.
pub fn wait_for_line(
    lines: &Receiver<String>,
    seen: &mut String,
    needle: &str,
    limit: Duration,
) -> LineWait {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                if line.contains(needle) {
                    return LineWait::Found(line);
                }
            }
            Err(RecvTimeoutError::Timeout) => return LineWait::Timeout,
            Err(RecvTimeoutError::Disconnected) => return LineWait::Ended,
        }
    }
}

/// Sends SIGKILL to the process group `pgid` (a [`spawn_piped`] child's
/// id); a pid that cannot be one is ignored.
pub fn kill_group(pgid: u32) {
    if let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_stderr_are_read_and_the_needle_found() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo one; echo two >&2; echo three"]);
        let mut piped = spawn_piped(&mut command).unwrap();
        let mut seen = String::new();
        let limit = Duration::from_secs(10);
        let found = wait_for_line(&piped.lines, &mut seen, "thr", limit);
        assert_eq!(found, LineWait::Found("three\n".to_owned()));
        assert_eq!(seen, "one\nthree\n");
        assert_eq!(
            wait_for_line(&piped.lines, &mut seen, "four", limit),
            LineWait::Ended
        );
        assert_eq!(piped.stderr.recv_timeout(limit).unwrap(), "two\n");
        assert!(piped.child.wait().unwrap().success());
    }
}
