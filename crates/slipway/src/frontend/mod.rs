//! Frontends: what carries the guest's frames to and from a [`Backend`].
//!
//! Every frontend runs in the one serving loop, [`serve`] (from
//! `epoll-dispatch`, re-exported with its [`StopWhen`] and [`ServeEnd`]):
//! the loop owns the poller, the stop sources and the next deadline, and
//! each frontend implements its `Frontend` trait. `Backend` is the loop's
//! backend (`Served`): it flushes its capture whenever the loop goes idle.
//!
//! - [`tap`]: a tap device in a network namespace (`slipway run`,
//!   `slipway attach`), served by [`serve_tap`].
//! - [`stream`]: QEMU's `-netdev stream` protocol on a UNIX stream socket
//!   (`slipway stream`), with the length-prefixed framing of [`framing`].
//!
//! The other two frontends of the loop live with the virtio device:
//! `virtio_net_kvm::vhost_user` (`slipway vhost-user`) and the reference
//! VMM's virtio-mmio device (`slipway_vmm::virtio_mmio`).
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

pub mod framing;
pub mod stream;
pub mod tap;

use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use epoll_dispatch::serve::Signals;
pub use epoll_dispatch::serve::{ServeEnd, StopWhen, serve};
pub use epoll_dispatch::{pidfd_open, pidfd_send_signal};
pub use stream::{AfterDisconnect, BindError, StreamCounters, StreamFrontend, StreamSocket};
pub use tap::{TapCounters, TapFrontend, serve_tap};

use crate::Backend;

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

impl Signals for SignalFd {
    fn read_signal(&self) -> io::Result<Option<i32>> {
        self.read()
    }
}

/// The loop drives the backend's host side; it flushes the capture
/// whenever it goes idle.
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
        ("hop limit spent drops", c.hop_limit_drops),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

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
