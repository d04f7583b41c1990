//! A harness for frame-level tests of the backend on real host sockets:
//! a synthetic guest whose frames are built with `smoltcp::wire`
//! ([`frames`]), a pump that drives a [`Backend`] on real time
//! ([`Harness`]), a simple guest TCP endpoint for bulk transfers
//! ([`endpoint`]), and servers on 127.0.0.1 that the guest reaches through
//! the gateway address.
//!
//! Every loop is bounded in count and in time.

pub mod datagram;
pub mod endpoint;
pub mod frames;

use slipway::FrameBackend;
use slipway::Served;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nat_core::{Plan, Rules};
use rustix::net::{AddressFamily, SocketType, sockopt};
use slipway::{Backend, BackendConfig};

pub use endpoint::{GuestStats, GuestTcp, GuestWire, Impairments, State, TcpOpts};
pub use frames::{
    DNS_IP, Frame, GATEWAY_IP, GUEST_IP, GUEST_MAC, GuestSeg, Parsed, TcpView, gateway_mac, parse,
};

/// Longest a pump sleeps in one wait, so that callers' deadlines and
/// conditions are checked often enough.
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// Frames taken from the backend in one drain at most.
const MAX_DRAIN: usize = 4096;

/// Steps of one [`Harness::drive`] or collection at most.
const MAX_STEPS: usize = 20_000_000;

/// Host events plus expired deadlines a quiet backend may see in one
/// second after a scenario's traffic ends, and returns from its wait.
pub const QUIET_WAKEUPS: u64 = 5;

/// How long the scenario's last frames and timers may take to settle
/// before [`assert_backend_quiet`] starts counting.
const QUIET_SETTLE: Duration = Duration::from_millis(200);

/// The window [`assert_backend_quiet`] counts in.
const QUIET_WINDOW: Duration = Duration::from_secs(1);

/// How long a server waits for its connection, and for each read and write.
const SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// The guest's name for 127.0.0.1:`port` on the host: the gateway.
#[must_use]
pub fn via_gateway(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(GATEWAY_IP, port)
}

/// The backend's configuration with the default plan and rules.
#[must_use]
pub fn default_config() -> BackendConfig {
    BackendConfig::new(Plan::default(), Rules::default())
}

/// A backend and the frames it sent that no endpoint took.
pub struct Harness {
    /// The backend under test.
    pub backend: Backend,
    /// Frames for the guest no endpoint took, in order, until collected.
    pub stray: Vec<Frame>,
    buf: Vec<u8>,
}

impl Harness {
    /// A backend with the default configuration.
    #[must_use]
    pub fn new() -> Self {
        Self::with_config(default_config())
    }

    /// A backend with `config`.
    #[must_use]
    pub fn with_config(config: BackendConfig) -> Self {
        let frame_len = usize::from(config.plan.mtu()) + 14;
        let backend = Backend::new(config, Instant::now()).expect("backend starts");
        Self {
            backend,
            stray: Vec::new(),
            buf: vec![0u8; frame_len],
        }
    }

    /// Hands one frame from the guest to the backend.
    pub fn send(&mut self, frame: &[u8]) {
        self.backend.handle_guest_frame(frame, Instant::now());
    }

    /// The next frame the backend has for the guest now, without letting
    /// it look at its host sockets or timers first.
    pub fn poll_queued(&mut self) -> Option<Frame> {
        let len = self
            .backend
            .poll_guest_frame(&mut self.buf, Instant::now())?;
        Some(Frame(self.buf[..len].to_vec()))
    }

    /// Takes every frame the backend has now: segments of `ep` go to it,
    /// everything else to [`stray`](Self::stray). Returns the count.
    pub fn drain(&mut self, mut ep: Option<&mut GuestTcp>) -> usize {
        let Self {
            backend,
            stray,
            buf,
        } = self;
        let mut count = 0;
        for _ in 0..MAX_DRAIN {
            let now = Instant::now();
            let Some(len) = backend.poll_guest_frame(buf, now) else {
                break;
            };
            count += 1;
            let frame = &buf[..len];
            let taken = match (&mut ep, parse(frame)) {
                (Some(ep), Parsed::Tcp(view)) if ep.owns(&view) => {
                    ep.on_segment(&view, now, backend);
                    true
                }
                _ => false,
            };
            if !taken {
                stray.push(Frame(frame.to_vec()));
            }
        }
        count
    }

    /// One round of the event loop: host events, timers, then every frame
    /// for the guest into [`stray`](Self::stray); when there was none,
    /// waits for host readiness until `until` at most. Returns the count of
    /// frames.
    pub fn step(&mut self, until: Instant) -> usize {
        let now = Instant::now();
        self.backend.handle_host_events(now).expect("epoll");
        self.backend.handle_timeout(now);
        let count = self.drain(None);
        if count == 0 {
            let wake = until.min(now + IDLE_WAIT);
            self.backend.wait(Some(wake)).expect("epoll");
        }
        count
    }

    /// Runs the backend until a frame for the guest matches `pred` or
    /// `timeout` passes, and returns every frame that came (the match
    /// last).
    pub fn collect_until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Frame) -> bool,
    ) -> Vec<Frame> {
        let deadline = Instant::now() + timeout;
        let mut checked = 0;
        for _ in 0..MAX_STEPS {
            if let Some(at) = self.stray[checked..].iter().position(&mut pred) {
                let rest = self.stray.split_off(checked + at + 1);
                return std::mem::replace(&mut self.stray, rest);
            }
            checked = self.stray.len();
            if Instant::now() >= deadline {
                break;
            }
            self.step(deadline);
        }
        std::mem::take(&mut self.stray)
    }

    /// Asserts that the backend has gone quiet after a scenario (see
    /// [`assert_backend_quiet`]). Frames that come meanwhile go to
    /// [`stray`](Self::stray).
    pub fn assert_quiet(&mut self, what: &str) {
        let frames = assert_backend_quiet(&mut self.backend, what);
        self.stray.extend(frames);
    }

    /// Runs the backend for `duration` and returns every frame that came.
    pub fn collect_for(&mut self, duration: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + duration;
        for _ in 0..MAX_STEPS {
            if Instant::now() >= deadline {
                break;
            }
            self.step(deadline);
        }
        std::mem::take(&mut self.stray)
    }

    /// Runs the backend and `ep` together until `done` or `timeout`;
    /// returns whether `done` became true. Frames of other flows go to
    /// [`stray`](Self::stray).
    pub fn drive(
        &mut self,
        ep: &mut GuestTcp,
        timeout: Duration,
        mut done: impl FnMut(&GuestTcp, &Backend) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        for _ in 0..MAX_STEPS {
            if done(ep, &self.backend) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            ep.on_timer(now, &mut self.backend);
            let sent = ep.transmit(now, &mut self.backend);
            self.backend.handle_host_events(now).expect("epoll");
            self.backend.handle_timeout(now);
            let got = self.drain(Some(ep));
            if sent == 0 && got == 0 {
                let mut wake = deadline.min(now + IDLE_WAIT);
                if let Some(at) = ep.next_timeout() {
                    wake = wake.min(at);
                }
                self.backend.wait(Some(wake)).expect("epoll");
            }
        }
        false
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// What a backend did in one window of [`run_like_a_frontend`].
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopUse {
    /// Returns from its wait before the window's end: a host socket was
    /// ready or a deadline came.
    pub wakeups: u64,
    /// Host readiness events handled.
    pub host_events: u64,
    /// Flow deadlines that expired and ran.
    pub timers: u64,
    /// Frames it had for the guest.
    pub frames: u64,
}

/// Runs `backend` for `window` as a frontend's loop does (take its frames
/// for the guest, then wait for host readiness until its next deadline)
/// and counts what woke it. A deadline that stays in the past, or a socket
/// that stays ready for an interest nothing satisfies, makes the loop
/// return from its wait at once, over and over: that is what `wakeups`
/// counts. Frames go to `frames`.
pub fn run_like_a_frontend(
    backend: &mut Backend,
    window: Duration,
    frames: &mut Vec<Frame>,
) -> LoopUse {
    let before = backend.counters().clone();
    let mut buf = vec![0u8; 65536 + 14];
    let mut used = LoopUse::default();
    let deadline = Instant::now() + window;
    for _ in 0..MAX_STEPS {
        for _ in 0..MAX_DRAIN {
            let Some(len) = backend.poll_guest_frame(&mut buf, Instant::now()) else {
                break;
            };
            used.frames += 1;
            frames.push(Frame(buf[..len].to_vec()));
        }
        if Instant::now() >= deadline {
            break;
        }
        // Waits until the earlier of `deadline` and the backend's own next
        // deadline, then handles what is ready and what expired.
        backend.wait(Some(deadline)).expect("epoll");
        if Instant::now() < deadline {
            used.wakeups += 1;
        }
    }
    let after = backend.counters();
    used.host_events = after.host_events - before.host_events;
    used.timers = after.timers_fired - before.timers_fired;
    used
}

/// Asserts that `backend` has gone quiet after a scenario: once its last
/// frames and timers have settled, over one second of a frontend's loop
/// ([`run_like_a_frontend`]) it handles at most [`QUIET_WAKEUPS`] host
/// events and expired deadlines together, and returns from its wait at
/// most as often. A flow whose socket stays ready for an interest nothing
/// will satisfy, a timer that keeps firing or a deadline that stays in the
/// past fails here. Returns the frames that came meanwhile.
pub fn assert_backend_quiet(backend: &mut Backend, what: &str) -> Vec<Frame> {
    let mut frames = Vec::new();
    let _ = run_like_a_frontend(backend, QUIET_SETTLE, &mut frames);
    let used = run_like_a_frontend(backend, QUIET_WINDOW, &mut frames);
    let LoopUse {
        wakeups,
        host_events,
        timers,
        frames: sent,
    } = used;
    assert!(
        host_events + timers <= QUIET_WAKEUPS && wakeups <= QUIET_WAKEUPS,
        "{what}: the backend did not go quiet: in 1 s after the traffic ended it woke \
         {wakeups} times for {host_events} host events and {timers} timers, and sent {sent} \
         frames to the guest (at most {QUIET_WAKEUPS} wakeups, events and timers allowed); \
         counters: {:?}",
        backend.counters()
    );
    frames
}

/// A listener on 127.0.0.1 with an ephemeral port.
#[must_use]
pub fn listen() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// A listener on 127.0.0.1 with an ephemeral port, the given `backlog`,
/// and `SO_RCVBUF` set before `listen()` so that accepted connections
/// start with it.
#[must_use]
pub fn listen_with(rcvbuf: Option<usize>, backlog: i32) -> TcpListener {
    let fd: OwnedFd =
        rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    if let Some(size) = rcvbuf {
        sockopt::set_socket_recv_buffer_size(&fd, size).expect("SO_RCVBUF");
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    rustix::net::bind(&fd, &addr).expect("bind");
    rustix::net::listen(&fd, backlog).expect("listen");
    TcpListener::from(fd)
}

/// A port on 127.0.0.1 that nothing listens on (it was free a moment ago).
#[must_use]
pub fn free_port() -> u16 {
    listen().local_addr().expect("local address").port()
}

/// Closes `stream` with an RST (`SO_LINGER` 0).
pub fn reset(stream: TcpStream) {
    sockopt::set_socket_linger(&stream, Some(Duration::ZERO)).expect("SO_LINGER");
    drop(stream);
}

/// A server thread that accepts one connection and serves it.
pub struct Server<T> {
    /// The port on 127.0.0.1.
    pub port: u16,
    accepted: mpsc::Receiver<Instant>,
    handle: thread::JoinHandle<Option<T>>,
}

/// Accepts one connection on `listener` in a thread (waiting
/// `SERVER_TIMEOUT` at most) and runs `serve` on it, with read and write
/// timeouts of `SERVER_TIMEOUT`.
pub fn serve<T, F>(listener: TcpListener, serve: F) -> Server<T>
where
    T: Send + 'static,
    F: FnOnce(TcpStream) -> T + Send + 'static,
{
    let port = listener.local_addr().expect("local address").port();
    let (tx, accepted) = mpsc::channel();
    let handle = thread::spawn(move || {
        let stream = accept_within(&listener, SERVER_TIMEOUT)?;
        let _ = tx.send(Instant::now());
        stream.set_nonblocking(false).expect("blocking");
        stream
            .set_read_timeout(Some(SERVER_TIMEOUT))
            .expect("timeout");
        stream
            .set_write_timeout(Some(SERVER_TIMEOUT))
            .expect("timeout");
        Some(serve(stream))
    });
    Server {
        port,
        accepted,
        handle,
    }
}

/// Accepts one connection within `timeout`.
pub fn accept_within(listener: &TcpListener, timeout: Duration) -> Option<TcpStream> {
    listener.set_nonblocking(true).expect("non-blocking");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => return Some(stream),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(1));
            }
            Err(error) => panic!("accept: {error}"),
        }
    }
    None
}

impl<T> Server<T> {
    /// Where the guest reaches the server.
    #[must_use]
    pub fn guest_addr(&self) -> SocketAddrV4 {
        via_gateway(self.port)
    }

    /// When the server accepted its connection, if it did within `timeout`.
    pub fn accepted_within(&self, timeout: Duration) -> Option<Instant> {
        self.accepted.recv_timeout(timeout).ok()
    }

    /// Waits for the server to finish and returns what it returned, or
    /// `None` if no connection came.
    pub fn join(self) -> Option<T> {
        self.handle.join().expect("server thread panicked")
    }
}

/// 64-bit FNV-1a.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Fnv {
    /// The offset basis.
    #[must_use]
    pub fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    /// Hashes `bytes` in.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    /// The hash so far.
    #[must_use]
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

/// The FNV-1a hash of `bytes`.
#[must_use]
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.update(bytes);
    h.finish()
}

/// xorshift64: cheap, reproducible randomness for payloads and
/// impairments.
#[derive(Clone, Copy, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced, as xorshift needs a bit set).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in 0..1000.
    pub fn per_mille(&mut self) -> u32 {
        (self.next_u64() % 1000) as u32
    }
}

/// `len` reproducible pseudo-random bytes.
#[must_use]
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// The number the next descriptor would get: the lowest free one. A soft
/// limit of that number leaves none (the limit bounds descriptor numbers).
pub fn lowest_free_fd() -> u64 {
    use std::os::fd::AsRawFd;
    let probe = std::fs::File::open("/dev/null").unwrap();
    u64::try_from(probe.as_raw_fd()).unwrap()
}

/// The soft limit of open files set back to this when dropped.
pub struct RestoreLimit(pub rustix::process::Rlimit);

impl Drop for RestoreLimit {
    fn drop(&mut self) {
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, self.0);
    }
}
