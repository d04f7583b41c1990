//! Frontends: what carries the guest's frames to and from a [`Backend`].
//!
//! - [`tap`]: a tap device in a network namespace (`slipway run`,
//!   `slipway attach`), served by [`serve_tap`] on one thread.
//! - [`stream`]: QEMU's `-netdev stream` protocol on a UNIX stream socket
//!   (`slipway stream`), with the length-prefixed framing of [`framing`].
//! - [`vhost_user`]: a vhost-user-net backend (`slipway vhost-user`): the
//!   VMM shares the guest's memory and virtqueues over a UNIX socket, and
//!   `virtio-net-kvm`'s device core serves them on the same one thread.
//! - The stop sources a frontend loop waits on besides its frames: a
//!   [`SignalFd`] for SIGINT and SIGTERM, and a process descriptor
//!   ([`pidfd_open`]) that turns readable when a process exits.
//! - [`stats_report`]: the counters `slipway --stats` prints.
//!
//! Invariant: a frontend moves frames and waits; it makes no protocol
//! decision. Every frame it reads goes to the backend, and every frame the
//! backend hands out is written or kept until it can be, never dropped
//! without a count.
//!
//! [`Backend`]: crate::Backend

/// The parts the serving loops share, for the reference VMM's virtio-mmio
/// frontend (in `slipway-vmm`) while it keeps a loop of its own. Not an
/// API: it goes when the frontends share one loop.
#[doc(hidden)]
pub mod loop_parts {
    pub use super::{
        Captured, CommonReady, FIRST_OWN_KIND, flush_pcap, next_wait, note_indexed,
        register_common, stop_after_pass, token,
    };
}

pub mod framing;
pub mod stream;
pub mod tap;
pub mod vhost_user;

use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use epoll_dispatch::{Interest, Kind, Poller, Readiness, Token};
use flow_table::tcp::Phase;
pub use stream::{AfterDisconnect, BindError, StreamCounters, StreamFrontend, StreamSocket};
pub use tap::{TapCounters, TapFrontend, serve_tap};

use crate::{Backend, FrameBackend, NetworkBackend};
use frontdesk::PcapWriter;

/// What ends a frontend's `serve`; whichever comes first.
#[derive(Clone, Copy, Debug, Default)]
pub struct StopWhen<'a> {
    /// A process descriptor (pidfd): serving ends when that process exits.
    pub process_exit: Option<BorrowedFd<'a>>,
    /// Serving ends when one of this descriptor's signals arrives.
    pub signals: Option<&'a SignalFd>,
    /// Serving ends at this instant.
    pub deadline: Option<Instant>,
    /// Serving ends once no TCP flow is left exchanging data (every one is
    /// closed or in TIME-WAIT) and every frame for the guest is written.
    pub tcp_settled: bool,
}

/// Why a frontend's `serve` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeEnd {
    /// The process of [`StopWhen::process_exit`] exited.
    ProcessExited,
    /// This signal arrived on [`StopWhen::signals`].
    Signal(libc::c_int),
    /// [`StopWhen::deadline`] passed.
    Deadline,
    /// [`StopWhen::tcp_settled`] held.
    TcpSettled,
    /// The stream frontend's client disconnected, and the frontend waits
    /// for no other.
    Disconnected,
}

/// A signalfd: the signals it was made for are blocked in the calling
/// thread and read from this descriptor instead of interrupting it.
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// Blocks `signals` in the calling thread and opens a non-blocking
    /// signalfd for them.
    ///
    /// Call it on the main thread before other threads start, or the kernel
    /// may deliver a process-directed signal to a thread that does not block
    /// it. The signals stay blocked after the descriptor closes (a pending
    /// one would otherwise fire at that moment); children inherit the mask,
    /// so spawn them first.
    ///
    /// # Errors
    /// An invalid signal number, or the `sigprocmask` / `signalfd` error.
    pub fn new(signals: &[libc::c_int]) -> io::Result<Self> {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `sigemptyset` initializes the set it is pointed at.
        if unsafe { libc::sigemptyset(set.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: initialized by `sigemptyset` above.
        let mut set = unsafe { set.assume_init() };
        for &signal in signals {
            // SAFETY: `set` is an initialized signal set; an invalid number
            // is reported through the return value.
            if unsafe { libc::sigaddset(&raw mut set, signal) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: `set` is initialized; the old mask is not asked for.
        let rc =
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let flags = libc::SFD_NONBLOCK | libc::SFD_CLOEXEC;
        // SAFETY: `set` is initialized; -1 asks for a new descriptor.
        let raw = unsafe { libc::signalfd(-1, &raw const set, flags) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `signalfd` returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd })
    }

    /// The next pending signal, or `None` when none is pending.
    ///
    /// # Errors
    /// The `read` error other than `EAGAIN`.
    pub fn read(&self) -> io::Result<Option<libc::c_int>> {
        // A `struct signalfd_siginfo` is 128 bytes; the signal number is its
        // first field, a native-endian u32.
        let mut info = [0u8; 128];
        loop {
            match rustix::io::read(&self.fd, &mut info) {
                Ok(n) if n >= 4 => {
                    let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
                    return Ok(libc::c_int::try_from(signo).ok());
                }
                Ok(_) | Err(rustix::io::Errno::AGAIN) => return Ok(None),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for SignalFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

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
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: libc::c_int) -> io::Result<()> {
    let signal = rustix::process::Signal::from_named_raw(signal)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unknown signal"))?;
    Ok(rustix::process::pidfd_send_signal(pidfd, signal)?)
}

/// The token of a frontend's single source of kind `kind`.
#[doc(hidden)]
pub const fn token(kind: u8) -> Token {
    match Token::new(Kind(kind), 0, 0) {
        Some(token) => token,
        None => panic!("index 0 fits in a token"),
    }
}

/// The tokens of the sources every frontend waits on; a frontend's own
/// sources take kinds from [`FIRST_OWN_KIND`] on.
#[doc(hidden)]
pub const TOKEN_BACKEND: Token = token(1);
#[doc(hidden)]
pub const TOKEN_SIGNAL: Token = token(2);
#[doc(hidden)]
pub const TOKEN_PROCESS: Token = token(3);
#[doc(hidden)]
pub const FIRST_OWN_KIND: u8 = 4;

/// Registers the backend's descriptor and the stop sources of `stop`.
#[doc(hidden)]
pub fn register_common(poller: &Poller, backend: &Backend, stop: &StopWhen<'_>) -> io::Result<()> {
    poller.register(backend.host_fd(), TOKEN_BACKEND, Interest::READABLE)?;
    if let Some(signals) = stop.signals {
        poller.register(signals, TOKEN_SIGNAL, Interest::READABLE)?;
    }
    if let Some(process) = stop.process_exit {
        poller.register(process, TOKEN_PROCESS, Interest::READABLE)?;
    }
    Ok(())
}

/// Which of the common sources the last wait reported.
#[derive(Clone, Copy, Debug, Default)]
#[doc(hidden)]
pub struct CommonReady {
    pub backend: bool,
    pub signal: bool,
    pub process: bool,
}

impl CommonReady {
    /// Everything worth a look on the first pass, which does not wait.
    pub fn first(stop: &StopWhen<'_>) -> Self {
        Self {
            backend: true,
            signal: stop.signals.is_some(),
            process: false,
        }
    }

    /// Notes `readiness` if `token` is a common source's; returns whether
    /// it was.
    pub fn note(&mut self, token: Token, readiness: Readiness) -> bool {
        let any = readiness.is_readable() || is_failed(readiness);
        match token {
            TOKEN_BACKEND => self.backend |= any,
            TOKEN_SIGNAL => self.signal |= any,
            TOKEN_PROCESS => self.process |= any,
            _ => return false,
        }
        true
    }

    /// The end of serving a stop source reported, if any.
    ///
    /// # Errors
    /// Reading the signalfd failed.
    pub fn stopped(self, stop: &StopWhen<'_>) -> io::Result<Option<ServeEnd>> {
        let signal = match stop.signals {
            Some(signals) if self.signal => signals.read()?,
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

/// The end of serving after a pass at `now`, if `stop` asks for it:
/// `flushed` says that every frame for the guest is written.
#[doc(hidden)]
pub fn stop_after_pass(
    stop: &StopWhen<'_>,
    backend: &Backend,
    now: Instant,
    flushed: bool,
) -> Option<ServeEnd> {
    if stop.tcp_settled && flushed && tcp_settled(backend) {
        return Some(ServeEnd::TcpSettled);
    }
    if stop.deadline.is_some_and(|deadline| now >= deadline) {
        return Some(ServeEnd::Deadline);
    }
    None
}

/// Whether the descriptor reported an error or a hang-up.
#[doc(hidden)]
pub fn is_failed(readiness: Readiness) -> bool {
    readiness.is_error() || readiness.is_hangup()
}

/// Appends `frame` to the capture, stopping the capture at its first error.
#[doc(hidden)]
pub fn record<W: Write>(pcap: &mut Option<&mut PcapWriter<W>>, failed: &mut bool, frame: &[u8]) {
    if *failed {
        return;
    }
    let Some(writer) = pcap.as_mut() else { return };
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    if let Err(error) = writer.write_frame(timestamp, frame) {
        tracing::warn!(%error, "pcap capture failed; capture stopped");
        *failed = true;
    }
}

/// Whether every TCP flow is closed or only lingering in TIME-WAIT.
fn tcp_settled(backend: &Backend) -> bool {
    backend
        .tcp_flows_by_phase()
        .iter()
        .all(|(phase, _)| matches!(phase, Phase::TimeWait | Phase::Closed))
}

/// The earlier of two optional deadlines.
#[doc(hidden)]
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The deadline of a serving loop's next wait: `now` while a source has
/// work left (the wait then only collects readiness); otherwise, with the
/// capture flushed while the loop is idle, the backend's next deadline or
/// the stop's, whichever comes first.
#[doc(hidden)]
pub fn next_wait<W: Write>(
    busy: bool,
    now: Instant,
    backend: &mut Backend,
    stop: &StopWhen<'_>,
    pcap: &mut Option<&mut PcapWriter<W>>,
    pcap_failed: &mut bool,
) -> Option<Instant> {
    if busy {
        return Some(now);
    }
    flush_pcap(pcap, pcap_failed);
    earliest(backend.poll_timeout(), stop.deadline)
}

/// Flushes the capture, stopping it at its first error.
#[doc(hidden)]
pub fn flush_pcap<W: Write>(pcap: &mut Option<&mut PcapWriter<W>>, failed: &mut bool) {
    if *failed {
        return;
    }
    let Some(writer) = pcap.as_mut() else { return };
    if let Err(error) = writer.flush() {
        tracing::warn!(%error, "pcap capture failed; capture stopped");
        *failed = true;
    }
}

/// The counters of `backend` and of a frontend (its named counters, as
/// [`TapCounters::lines`] gives them), one per line, for `--stats`. Zero
/// drop reasons are left out.
#[must_use]
pub fn stats_report(backend: &Backend, frontend: &[(&str, u64)]) -> String {
    let mut out = String::new();
    let frames = backend.frame_counters();
    let c = backend.counters();
    let mut line = |name: &str, value: u64| {
        let _ = writeln!(out, "  {name:<26} {value}");
    };
    for &(name, value) in frontend {
        line(name, value);
    }
    line("frames seen by front desk", frames.frames());
    line("guest frames dropped", frames.total_drops());
    line("datagrams reassembled", frames.reassembled());
    for (reason, count) in frames.iter().filter(|(_, n)| *n > 0) {
        line(&format!("  dropped: {reason}"), count);
    }
    let counters = [
        ("tcp flows opened", c.tcp_flows_opened),
        ("tcp flows accepted", c.tcp_flows_accepted),
        ("tcp flows closed", c.tcp_flows_closed),
        ("tcp bytes to host", c.tcp_bytes_to_host),
        ("tcp bytes to guest", c.tcp_bytes_to_guest),
        ("udp flows opened", c.udp_flows_opened),
        ("udp bytes to host", c.udp_bytes_to_host),
        ("udp bytes to guest", c.udp_bytes_to_guest),
        ("udp drops", c.udp_drops),
        ("dns queries", c.dns_queries),
        ("dns drops", c.dns_drops),
        ("icmp errors to guest", c.icmp_errors_to_guest),
        ("icmp errors from host", c.host_icmp_errors),
        ("icmp errors suppressed", c.icmp_errors_suppressed),
        ("tcp segments to group addresses dropped", c.tcp_group_drops),
        ("datagram flows expired", c.datagram_flows_expired),
        ("denied", c.denied),
        ("flow limit drops", c.flow_limit_drops),
        ("out of descriptors drops", c.fd_refusals),
        ("listener accept pauses", c.accept_pauses),
        ("syn rate drops", c.syn_rate_drops),
        ("syn backlog drops", c.syn_backlog_drops),
        ("rst for unknown flows", c.rst_unknown),
        ("output queue drops", c.output_drops),
        ("buffer too small drops", c.buffer_too_small_drops),
        ("fragments to guest", c.fragments_to_guest),
    ];
    for (name, value) in counters {
        line(name, value);
    }
    for protocol in flow_table::Protocol::ALL {
        let name = format!("open {protocol:?} flows").to_lowercase();
        line(&name, u64::from(backend.open_flows(protocol)));
    }
    for (phase, count) in backend.tcp_flows_by_phase() {
        line(&format!("  tcp {phase:?}"), u64::from(count));
    }
    out
}

/// A virtio-net device core's counters as `--stats` lines (vhost-user,
/// virtio-mmio).
#[must_use]
pub fn device_counter_lines(counters: &virtio_net_kvm::NetCounters) -> [(&'static str, u64); 10] {
    [
        ("frames from guest", counters.tx_frames),
        ("bytes from guest", counters.tx_bytes),
        ("frames to guest", counters.rx_frames),
        ("bytes to guest", counters.rx_bytes),
        ("waits for rx buffers", counters.rx_waits_for_buffers),
        ("frames too big for rx", counters.rx_too_big),
        ("bad avail index", counters.bad_avail_index),
        ("used ring errors", counters.used_ring_errors),
        ("partial csums from guest", counters.tx_partial_checksums),
        ("partial csums to guest", counters.rx_partial_checksums),
    ]
}

/// Marks `flags[i]` when `token` is of `kind` with index `i` (a queue's
/// eventfd); returns whether it was of `kind`.
#[doc(hidden)]
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

/// The backend as a virtio-net device core sees it, capturing every frame
/// that passes; it takes checksum offload only when asked to and when no
/// capture is written, so a capture holds whole checksums.
#[doc(hidden)]
pub struct Captured<'a, W: Write> {
    pub backend: &'a mut Backend,
    pub pcap: Option<&'a mut PcapWriter<W>>,
    pub failed: &'a mut bool,
    pub offload: bool,
}

impl<W: Write> FrameBackend for Captured<'_, W> {
    fn handle_guest_frame(&mut self, frame: &[u8], now: Instant) {
        record(&mut self.pcap, self.failed, frame);
        self.backend.handle_guest_frame(frame, now);
    }

    fn poll_guest_frame(&mut self, buf: &mut [u8], now: Instant) -> Option<usize> {
        let len = self.backend.poll_guest_frame(buf, now)?;
        if let Some(frame) = buf.get(..len) {
            record(&mut self.pcap, self.failed, frame);
        }
        Some(len)
    }

    fn offloads_checksums(&self) -> bool {
        self.offload && self.pcap.is_none()
    }

    fn handle_guest_frame_offloaded(
        &mut self,
        frame: &[u8],
        checksum: virtio_net_kvm::Checksum,
        now: Instant,
    ) {
        self.backend
            .handle_guest_frame_offloaded(frame, checksum, now);
    }

    fn poll_guest_frame_offloaded(
        &mut self,
        buf: &mut [u8],
        now: Instant,
    ) -> Option<crate::GuestFrame> {
        self.backend.poll_guest_frame_offloaded(buf, now)
    }
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

    #[test]
    fn stats_report_lists_counters() {
        let config =
            crate::BackendConfig::new(nat_core::Plan::default(), nat_core::Rules::default());
        let backend = Backend::new(config, std::time::Instant::now()).unwrap();
        let report = stats_report(&backend, &TapCounters::default().lines());
        assert!(report.contains("frames from guest"));
        assert!(report.contains("tcp flows opened"));
        assert!(report.contains("open tcp flows"));
    }
}
