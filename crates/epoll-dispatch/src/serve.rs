//! The one serving loop: it owns the poller, the stop sources and the next
//! deadline; a [`Frontend`] (a tap, a stream socket, a vhost-user
//! connection, a virtio-mmio device) moves frames between the guest and a
//! backend ([`Served`]) in each pass.
//!
//! A pass:
//! 1. ends serving if a signal or the watched process's exit was reported;
//! 2. lets the frontend take what the guest sent
//!    ([`Frontend::handle_input`]);
//! 3. runs the backend's ready host sockets (only when its descriptor was
//!    reported) and its timers due by now;
//! 4. lets the frontend hand the backend's frames to the guest
//!    ([`Frontend::handle_output`]);
//! 5. ends serving when the backend has settled ([`StopWhen::tcp_settled`])
//!    and every frame for the guest is written, or at the deadline;
//! 6. waits: while a side reports work left, the wait only collects
//!    readiness (it does not sleep); otherwise the backend flushes what it
//!    buffers ([`Served::handle_idle`]) and the loop sleeps until a source is
//!    ready or the earliest of the backend's, the frontend's and the stop's
//!    deadlines. The first pass looks at every source without waiting.
//!
//! The backend keeps its host sockets in an epoll set of its own, whose
//! descriptor sits in this loop's set (a nested epoll). That costs one
//! `epoll_pwait` on the inner set per wakeup for host sockets. Measured with
//! `perf stat -e raw_syscalls:sys_enter -p PID` on `slipway run` during
//! 2,000 one-byte TCP request/response round trips to a loopback echo
//! server that answers after 0.5 ms (so that every reply wakes the loop):
//! 16.0 system calls per round trip, of which 1.0 is the inner wait (6%),
//! taking about 5 µs under `perf trace`. With an immediate echo, most
//! replies arrive while the pass still runs and the count falls to about
//! 10.4, with almost no inner wait. The nesting is kept: it lets an embedder
//! drive a backend from any loop through one descriptor.
//!
//! Invariant: the loop makes no protocol decision and never spins. It knows
//! neither frames nor flows; it sleeps only in [`Poller::wait`], and a wait
//! that does not sleep happens only when a side said it has work left.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use crate::{Events, Interest, Kind, Poller, Readiness, Token};

/// The host side of a backend, as the loop drives it.
pub trait Served {
    /// A descriptor that turns readable when host sockets are ready.
    fn host_fd(&self) -> BorrowedFd<'_>;

    /// Handles whatever host sockets are ready, without blocking.
    ///
    /// # Errors
    /// The backend's own epoll set failed; serving ends with this error.
    fn handle_host_events(&mut self, now: Instant) -> io::Result<()>;

    /// Runs the timers due by `now`.
    fn handle_timeout(&mut self, now: Instant);

    /// When [`handle_timeout`](Self::handle_timeout) must run next.
    fn poll_timeout(&mut self) -> Option<Instant>;

    /// Whether no flow is left exchanging data, for
    /// [`StopWhen::tcp_settled`].
    fn is_settled(&self) -> bool {
        false
    }

    /// Called before the loop sleeps and when a frontend ends serving: the
    /// moment to flush buffered output such as a capture.
    fn handle_idle(&mut self) {}
}

/// The source of stop signals: a descriptor that turns readable when one
/// arrives, and the read that takes it (a signalfd).
pub trait Signals: AsFd {
    /// The next pending signal, or `None` when none is pending.
    ///
    /// # Errors
    /// The read failed; serving ends with this error.
    fn read_signal(&self) -> io::Result<Option<i32>>;
}

/// What ends serving; whichever comes first.
#[derive(Clone, Copy, Default)]
pub struct StopWhen<'a> {
    /// A process descriptor (pidfd): serving ends when that process exits.
    pub process_exit: Option<BorrowedFd<'a>>,
    /// Serving ends when one of this source's signals arrives.
    pub signals: Option<&'a dyn Signals>,
    /// Serving ends at this instant.
    pub deadline: Option<Instant>,
    /// Serving ends once the backend has settled ([`Served::is_settled`]:
    /// every TCP flow closed or in TIME-WAIT) and every frame for the guest
    /// is written.
    pub tcp_settled: bool,
}

impl std::fmt::Debug for StopWhen<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopWhen")
            .field("process_exit", &self.process_exit)
            .field("signals", &self.signals.map(|s| s.as_fd()))
            .field("deadline", &self.deadline)
            .field("tcp_settled", &self.tcp_settled)
            .finish()
    }
}

/// Why serving ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeEnd {
    /// The process of [`StopWhen::process_exit`] exited.
    ProcessExited,
    /// This signal arrived on [`StopWhen::signals`].
    Signal(i32),
    /// [`StopWhen::deadline`] passed.
    Deadline,
    /// [`StopWhen::tcp_settled`] held.
    TcpSettled,
    /// The frontend's peer (a stream client, a VMM, the VM itself) went
    /// away, and the frontend waits for no other.
    Disconnected,
}

/// What a frontend's half of a pass left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Nothing is left until a source turns ready.
    Idle,
    /// Work is left (a batch ran out): the next wait must not sleep.
    Busy,
    /// Serving ends.
    End(ServeEnd),
}

impl Pass {
    /// [`Pass::Busy`] when `more`, [`Pass::Idle`] otherwise.
    #[must_use]
    pub fn busy_if(more: bool) -> Self {
        if more { Self::Busy } else { Self::Idle }
    }
}

/// What carries the guest's frames: the loop lends it the poller (for its
/// own descriptors, under tokens of kinds from [`FIRST_FRONTEND_KIND`] on)
/// and the backend, twice a pass.
pub trait Frontend<B: ?Sized> {
    /// Adds the frontend's descriptors to a new poller.
    ///
    /// # Errors
    /// A registration failed; serving does not start.
    fn register(&mut self, poller: &Poller) -> io::Result<()>;

    /// Marks every source worth a look on the first pass, which does not
    /// wait.
    fn note_first_pass(&mut self);

    /// Notes what the last wait reported of one of the frontend's tokens.
    fn note_ready(&mut self, token: Token, readiness: Readiness);

    /// Takes what the guest sent to the backend, before the backend's host
    /// sockets and timers run at `now`.
    ///
    /// # Errors
    /// The frontend's own source failed beyond one connection; serving ends
    /// with this error.
    fn handle_input(&mut self, poller: &Poller, backend: &mut B, now: Instant) -> io::Result<Pass>;

    /// Hands the backend's frames to the guest, after its host sockets and
    /// timers ran at `now`.
    ///
    /// # Errors
    /// As [`handle_input`](Self::handle_input).
    fn handle_output(&mut self, poller: &Poller, backend: &mut B, now: Instant)
    -> io::Result<Pass>;

    /// Whether every frame for the guest that the frontend took from the
    /// backend is written.
    fn is_flushed(&self) -> bool;

    /// A deadline of the frontend's own (say, to listen again after a
    /// pause).
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

/// The first [`Kind`] a frontend's tokens may use; the loop's own sources
/// take the kinds below it.
pub const FIRST_FRONTEND_KIND: u8 = 4;

/// The token of a frontend's single source `n` (of kind
/// `FIRST_FRONTEND_KIND + n`).
///
/// # Panics
/// At compile time in a `const`, when the kind would overflow.
#[must_use]
pub const fn frontend_token(n: u8) -> Token {
    match Token::new(Kind(FIRST_FRONTEND_KIND + n), 0, 0) {
        Some(token) => token,
        None => panic!("index 0 fits in a token"),
    }
}

/// The kind of a frontend's indexed sources `n` (say, one per queue).
#[must_use]
pub const fn frontend_kind(n: u8) -> Kind {
    Kind(FIRST_FRONTEND_KIND + n)
}

const TOKEN_BACKEND: Token = loop_token(1);
const TOKEN_SIGNAL: Token = loop_token(2);
const TOKEN_PROCESS: Token = loop_token(3);

const fn loop_token(kind: u8) -> Token {
    match Token::new(Kind(kind), 0, 0) {
        Some(token) => token,
        None => panic!("index 0 fits in a token"),
    }
}

/// Whether the descriptor reported an error or a hang-up.
#[must_use]
pub fn is_failed(readiness: Readiness) -> bool {
    readiness.is_error() || readiness.is_hangup()
}

/// Marks `flags[i]` when `token` is of `kind` with index `i` (a queue's
/// eventfd); returns whether it was of `kind`.
pub fn note_indexed(flags: &mut [bool], token: Token, kind: Kind) -> bool {
    if token.kind() != kind {
        return false;
    }
    let index = usize::try_from(token.index()).ok();
    if let Some(flag) = index.and_then(|i| flags.get_mut(i)) {
        *flag = true;
    }
    true
}

/// The earlier of two optional deadlines.
#[must_use]
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Which of the loop's own sources the last wait reported.
#[derive(Clone, Copy, Debug, Default)]
struct Ready {
    backend: bool,
    signal: bool,
    process: bool,
}

impl Ready {
    /// Everything worth a look on the first pass, which does not wait.
    fn first(stop: &StopWhen<'_>) -> Self {
        Self {
            backend: true,
            signal: stop.signals.is_some(),
            process: false,
        }
    }

    /// Notes `readiness` if `token` is one of the loop's; returns whether
    /// it was.
    fn note(&mut self, token: Token, readiness: Readiness) -> bool {
        let any = readiness.is_readable() || is_failed(readiness);
        match token {
            TOKEN_BACKEND => self.backend |= any,
            TOKEN_SIGNAL => self.signal |= any,
            TOKEN_PROCESS => self.process |= any,
            _ => return false,
        }
        true
    }

    /// The end a stop source reported, if any.
    fn stopped(self, stop: &StopWhen<'_>) -> io::Result<Option<ServeEnd>> {
        let signal = match stop.signals {
            Some(signals) if self.signal => signals.read_signal()?,
            _ => None,
        };
        if let Some(signal) = signal {
            tracing::debug!(signal, "signal received");
            return Ok(Some(ServeEnd::Signal(signal)));
        }
        if self.process {
            tracing::debug!("process exited");
            return Ok(Some(ServeEnd::ProcessExited));
        }
        Ok(None)
    }
}

/// Serves `frontend` and `backend` until `stop` or the frontend ends it.
///
/// # Errors
/// The epoll set, the backend's host side, the signal source or the
/// frontend failed.
pub fn serve<B, F>(frontend: &mut F, backend: &mut B, stop: &StopWhen<'_>) -> io::Result<ServeEnd>
where
    B: Served + ?Sized,
    F: Frontend<B> + ?Sized,
{
    let mut poller = Poller::new()?;
    let mut events = Events::with_capacity(8);
    poller.register(backend.host_fd(), TOKEN_BACKEND, Interest::READABLE)?;
    if let Some(signals) = stop.signals {
        poller.register(signals.as_fd(), TOKEN_SIGNAL, Interest::READABLE)?;
    }
    if let Some(process) = stop.process_exit {
        poller.register(process, TOKEN_PROCESS, Interest::READABLE)?;
    }
    frontend.register(&poller)?;
    frontend.note_first_pass();
    let mut ready = Ready::first(stop);
    loop {
        if let Some(end) = ready.stopped(stop)? {
            return Ok(end);
        }
        let now = Instant::now();
        let input = frontend.handle_input(&poller, backend, now)?;
        if let Pass::End(end) = input {
            backend.handle_idle();
            return Ok(end);
        }
        if ready.backend {
            backend.handle_host_events(now)?;
        }
        backend.handle_timeout(now);
        let output = frontend.handle_output(&poller, backend, now)?;
        if let Pass::End(end) = output {
            backend.handle_idle();
            return Ok(end);
        }
        let flushed = frontend.is_flushed();
        if stop.tcp_settled && flushed && backend.is_settled() {
            return Ok(ServeEnd::TcpSettled);
        }
        if stop.deadline.is_some_and(|deadline| now >= deadline) {
            return Ok(ServeEnd::Deadline);
        }
        let deadline = if input == Pass::Busy || output == Pass::Busy {
            Some(now)
        } else {
            backend.handle_idle();
            earliest(backend.poll_timeout(), stop.deadline)
        };
        let deadline = earliest(deadline, frontend.poll_timeout());
        poller.wait(&mut events, deadline)?;
        ready = Ready::default();
        for (token, readiness) in &events {
            if !ready.note(token, readiness) {
                frontend.note_ready(token, readiness);
            }
        }
    }
}
