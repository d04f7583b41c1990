//! Helpers shared by the scenario tests: bounded waits on a socket.

#![allow(dead_code)]

use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

/// The longest any test waits for the kernel to deliver something on
/// loopback.
pub const WAIT: Duration = Duration::from_secs(5);

/// Waits until `fd` reports one of `flags` (errors and hang-ups always
/// count), at most `timeout`; returns what it reported, empty on timeout.
pub fn wait_for(fd: impl AsFd, flags: PollFlags, timeout: Duration) -> PollFlags {
    let deadline = Instant::now() + timeout;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return PollFlags::empty();
        }
        let left = deadline - now;
        let ts = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&fd, flags)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return PollFlags::empty(),
            Ok(_) => return fds[0].revents(),
            Err(e) if e == rustix::io::Errno::INTR => {}
            Err(e) => panic!("poll failed: {e}"),
        }
    }
}

/// Waits until `fd` is readable, at most [`WAIT`]; panics on timeout.
pub fn wait_readable(fd: impl AsFd) {
    let got = wait_for(fd, PollFlags::IN, WAIT);
    assert!(
        got.contains(PollFlags::IN),
        "not readable within {WAIT:?}: {got:?}"
    );
}

/// Waits until `fd` has an error queued (`POLLERR`), at most [`WAIT`];
/// panics on timeout.
pub fn wait_error(fd: impl AsFd) {
    let got = wait_for(fd, PollFlags::empty(), WAIT);
    assert!(
        got.contains(PollFlags::ERR),
        "no error within {WAIT:?}: {got:?}"
    );
}

/// Whether this machine has IPv6 loopback; when not, says so on stderr.
pub fn ipv6_loopback_available(test: &str) -> bool {
    match UdpSocket::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("{test}: skipping the IPv6 part: cannot bind [::1]: {e}");
            false
        }
    }
}

/// A loopback port nothing listens on: bound once to learn a free port,
/// then closed.
pub fn closed_port(ip: std::net::IpAddr) -> SocketAddr {
    let probe = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind a loopback port");
    let addr = probe.local_addr().expect("local address");
    drop(probe);
    addr
}
