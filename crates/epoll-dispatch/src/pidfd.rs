//! Process descriptors: a stop source that turns readable when a process
//! exits, and the signal sent through one.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

/// A process descriptor of `pid`: it polls readable once the process exits.
///
/// # Errors
/// `ESRCH` when no such process exists; `ENOSYS` before Linux 5.3.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "process id must be positive")
    })?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// Sends `signal` to the process of `pidfd`.
///
/// # Errors
/// An unknown signal, or the `pidfd_send_signal` error (`ESRCH` once the
/// process has exited).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    let signal = rustix::process::Signal::from_named_raw(signal)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unknown signal"))?;
    Ok(rustix::process::pidfd_send_signal(pidfd, signal)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn pidfd_of_a_child_turns_readable_when_it_exits() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pidfd = pidfd_open(i32::try_from(child.id()).unwrap()).unwrap();
        child.wait().unwrap();
        let mut fds = [rustix::event::PollFd::new(
            &pidfd,
            rustix::event::PollFlags::IN,
        )];
        let ready = rustix::event::poll(&mut fds, None).unwrap();
        assert_eq!(ready, 1);
    }
}
