//! The serving loop with a scripted backend and frontend: the first pass
//! does not wait, busy passes only collect readiness, an idle loop sleeps
//! (and flushes the backend first), and the stop sources end it in their
//! order. Nothing leaves the process; every wait is bounded by a deadline.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use epoll_dispatch::serve::{
    Frontend, Pass, ServeEnd, Served, Signals, StopWhen, frontend_token, serve,
};
use epoll_dispatch::{Interest, Poller, Readiness, Token, pidfd_open};
use rustix::event::{EventfdFlags, eventfd};

const TOKEN_GUEST: Token = frontend_token(0);

fn event() -> OwnedFd {
    eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC).expect("eventfd")
}

fn signal(fd: &OwnedFd) {
    rustix::io::write(fd, &1u64.to_ne_bytes()).expect("eventfd write");
}

fn drain(fd: &OwnedFd) -> bool {
    let mut buf = [0u8; 8];
    rustix::io::read(fd, &mut buf).is_ok()
}

/// A backend whose host side is an eventfd.
struct Backend {
    host: OwnedFd,
    host_events: u32,
    timeouts: u32,
    idles: u32,
    settled: bool,
}

impl Backend {
    fn new() -> Self {
        Self {
            host: event(),
            host_events: 0,
            timeouts: 0,
            idles: 0,
            settled: false,
        }
    }
}

impl Served for Backend {
    fn host_fd(&self) -> BorrowedFd<'_> {
        self.host.as_fd()
    }

    fn handle_host_events(&mut self, _now: Instant) -> io::Result<()> {
        self.host_events += 1;
        drain(&self.host);
        Ok(())
    }

    fn handle_timeout(&mut self, _now: Instant) {
        self.timeouts += 1;
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }

    fn is_settled(&self) -> bool {
        self.settled
    }

    fn handle_idle(&mut self) {
        self.idles += 1;
    }
}

/// A frontend that says it is busy for its first `busy` passes, has frames
/// unwritten for its first `unflushed` passes, and ends at pass `end_at`.
struct Script {
    guest: OwnedFd,
    busy: u32,
    unflushed: u32,
    end_at: Option<u32>,
    passes: u32,
    first: bool,
    ready: u32,
    /// The backend's idle count at each pass's output.
    idles_seen: Vec<u32>,
}

impl Script {
    fn new() -> Self {
        Self {
            guest: event(),
            busy: 0,
            unflushed: 0,
            end_at: None,
            passes: 0,
            first: false,
            ready: 0,
            idles_seen: Vec::new(),
        }
    }
}

impl Frontend<Backend> for Script {
    fn register(&mut self, poller: &Poller) -> io::Result<()> {
        poller.register(&self.guest, TOKEN_GUEST, Interest::READABLE)
    }

    fn note_first_pass(&mut self) {
        self.first = true;
    }

    fn note_ready(&mut self, token: Token, readiness: Readiness) {
        if token == TOKEN_GUEST && readiness.is_readable() {
            self.ready += 1;
            drain(&self.guest);
        }
    }

    fn handle_input(&mut self, _: &Poller, _: &mut Backend, _: Instant) -> io::Result<Pass> {
        self.passes += 1;
        if self.end_at == Some(self.passes) {
            return Ok(Pass::End(ServeEnd::Disconnected));
        }
        Ok(Pass::Idle)
    }

    fn handle_output(&mut self, _: &Poller, backend: &mut Backend, _: Instant) -> io::Result<Pass> {
        self.idles_seen.push(backend.idles);
        Ok(Pass::busy_if(self.passes <= self.busy))
    }

    fn is_flushed(&self) -> bool {
        self.passes > self.unflushed
    }
}

fn within(ms: u64) -> StopWhen<'static> {
    StopWhen {
        deadline: Some(Instant::now() + Duration::from_millis(ms)),
        ..StopWhen::default()
    }
}

#[test]
fn the_first_pass_looks_at_every_source_without_waiting() {
    let mut backend = Backend::new();
    let mut frontend = Script::new();
    frontend.end_at = Some(1);
    let started = Instant::now();
    let end = serve(&mut frontend, &mut backend, &within(5_000)).unwrap();
    assert_eq!(end, ServeEnd::Disconnected);
    assert!(frontend.first, "the frontend was told of the first pass");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the first pass waited"
    );
    assert_eq!(
        backend.idles, 1,
        "the backend is flushed when the frontend ends"
    );
}

#[test]
fn busy_passes_do_not_sleep_and_the_idle_loop_flushes_then_sleeps() {
    let mut backend = Backend::new();
    let mut frontend = Script::new();
    frontend.busy = 5;
    let end = serve(&mut frontend, &mut backend, &within(100)).unwrap();
    assert_eq!(end, ServeEnd::Deadline);
    // Five busy passes, one idle one that sleeps until the deadline, and
    // the pass at the deadline: no spinning.
    assert!(
        (7..=8).contains(&frontend.passes),
        "{} passes",
        frontend.passes
    );
    assert_eq!(
        &frontend.idles_seen[..6],
        &[0, 0, 0, 0, 0, 0],
        "busy passes do not flush"
    );
    assert!(backend.idles >= 1, "the idle loop flushed");
    assert_eq!(
        backend.host_events, 1,
        "the backend ran only on the first pass"
    );
    assert_eq!(backend.timeouts, frontend.passes, "timers run every pass");
}

#[test]
fn readiness_reaches_the_backend_and_the_frontend() {
    let mut backend = Backend::new();
    signal(&backend.host);
    let mut frontend = Script::new();
    // The first pass, then the one the guest's readiness starts.
    frontend.end_at = Some(2);
    signal(&frontend.guest);
    let started = Instant::now();
    let end = serve(&mut frontend, &mut backend, &within(5_000)).unwrap();
    assert_eq!(end, ServeEnd::Disconnected);
    assert!(started.elapsed() < Duration::from_secs(1), "the wait slept");
    assert_eq!(
        frontend.ready, 1,
        "the frontend's token went to the frontend"
    );
    // The first pass drained the host eventfd; nothing woke it after.
    assert_eq!(backend.host_events, 1);
}

#[test]
fn tcp_settled_waits_until_every_frame_is_written() {
    let mut backend = Backend::new();
    backend.settled = true;
    let mut frontend = Script::new();
    frontend.busy = 3;
    frontend.unflushed = 3;
    let stop = StopWhen {
        tcp_settled: true,
        ..within(5_000)
    };
    let end = serve(&mut frontend, &mut backend, &stop).unwrap();
    assert_eq!(end, ServeEnd::TcpSettled);
    assert_eq!(frontend.passes, 4);
}

#[test]
fn a_settled_backend_beats_the_deadline_of_the_same_pass() {
    let mut backend = Backend::new();
    backend.settled = true;
    let mut frontend = Script::new();
    let stop = StopWhen {
        tcp_settled: true,
        deadline: Some(Instant::now()),
        ..StopWhen::default()
    };
    assert_eq!(
        serve(&mut frontend, &mut backend, &stop).unwrap(),
        ServeEnd::TcpSettled
    );
}

/// Signals from an eventfd: each read takes one pending "signal".
struct FakeSignals(OwnedFd);

impl AsFd for FakeSignals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Signals for FakeSignals {
    fn read_signal(&self) -> io::Result<Option<i32>> {
        Ok(drain(&self.0).then_some(15))
    }
}

#[test]
fn a_pending_signal_ends_serving_before_any_pass() {
    let signals = FakeSignals(event());
    signal(&signals.0);
    let mut backend = Backend::new();
    backend.settled = true;
    let mut frontend = Script::new();
    let stop = StopWhen {
        signals: Some(&signals),
        tcp_settled: true,
        deadline: Some(Instant::now()),
        ..StopWhen::default()
    };
    let end = serve(&mut frontend, &mut backend, &stop).unwrap();
    assert_eq!(end, ServeEnd::Signal(15));
    assert_eq!(frontend.passes, 0);
}

#[test]
fn a_signal_during_the_wait_ends_serving() {
    let signals = FakeSignals(event());
    let mut backend = Backend::new();
    let mut frontend = Script::new();
    let stop = StopWhen {
        signals: Some(&signals),
        ..within(5_000)
    };
    let raiser = std::thread::spawn({
        let fd = signals.0.try_clone().unwrap();
        move || {
            std::thread::sleep(Duration::from_millis(50));
            signal(&fd);
        }
    });
    let end = serve(&mut frontend, &mut backend, &stop).unwrap();
    raiser.join().unwrap();
    assert_eq!(end, ServeEnd::Signal(15));
    assert_eq!(
        frontend.passes, 1,
        "one pass, then a sleep until the signal"
    );
}

#[test]
fn the_exit_of_the_watched_process_ends_serving() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pidfd = pidfd_open(i32::try_from(child.id()).unwrap()).unwrap();
    let mut backend = Backend::new();
    let mut frontend = Script::new();
    let stop = StopWhen {
        process_exit: Some(pidfd.as_fd()),
        ..within(10_000)
    };
    let end = serve(&mut frontend, &mut backend, &stop).unwrap();
    assert_eq!(end, ServeEnd::ProcessExited);
    assert!(child.wait().unwrap().success());
}
