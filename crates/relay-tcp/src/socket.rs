//! [`HostSocket`]: the host side of one TCP flow, a non-blocking socket.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use flow_table::tcp::{HostError, HostWriter};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SendFlags, Shutdown, SocketFlags, SocketType, sockopt};

use crate::peek::{PeekMethod, Peeker};
use crate::sys;

/// How many `recv(MSG_TRUNC)` calls one [`HostSocket::consume`] makes at
/// most; one call takes the whole count unless a signal interrupts it.
const MAX_DISCARD_CALLS: usize = 8;

/// How many times a write is tried when signals interrupt it.
const MAX_SEND_TRIES: usize = 4;

/// The room in a host socket's send buffer, from
/// [`HostSocket::send_room`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendRoom {
    /// Free space now, as [`HostSocket::send_space`] counts it.
    pub free: u32,
    /// Free space (counted alike) at which the kernel surely reports the
    /// socket writable: waiting for writable readiness makes sense only
    /// for less room than this.
    pub writable_at: u32,
}

/// The host side of one TCP flow: an owned, non-blocking, close-on-exec TCP
/// socket with `TCP_NODELAY` set (the guest has segmented already) and
/// urgent data kept inline (`SO_OOBINLINE`).
///
/// The socket carries out what the flow's state machine asks for: peeks at
/// offsets of its receive queue, discards acknowledged bytes, writes guest
/// data (as the [`HostWriter`] of
/// [`TcpConn::handle_guest_segment`](flow_table::tcp::TcpConn::handle_guest_segment)),
/// shuts down its writing side, and closes with or without a reset. After
/// [`close`](Self::close) or [`reset`](Self::reset) the value stays as a
/// closed socket whose operations fail with `NotConnected`; dropping an open
/// one closes it gracefully.
#[derive(Debug)]
pub struct HostSocket {
    fd: Option<OwnedFd>,
    peeker: Peeker,
    /// A write since the last send-space measurement.
    wrote: bool,
    /// The kernel refused part of a write; cleared when the socket reports
    /// it is writable again.
    write_blocked: bool,
}

impl HostSocket {
    /// Starts a non-blocking `connect()` to `dst`.
    ///
    /// The connection completes in the background: wait for the socket to
    /// become writable, then read the outcome with
    /// [`take_connect_result`](Self::take_connect_result).
    ///
    /// # Errors
    /// The `socket()`, `setsockopt()` or `connect()` error, when the
    /// connection fails at once (`ENETUNREACH`, `EMFILE`, ...).
    pub fn connect(dst: SocketAddr) -> io::Result<HostSocket> {
        let family = match dst {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        };
        let fd = rustix::net::socket_with(
            family,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        configure(&fd)?;
        match rustix::net::connect(&fd, &dst) {
            // A signal does not stop a non-blocking connect: it goes on.
            Ok(()) | Err(Errno::INPROGRESS | Errno::INTR) => Ok(Self::from_fd(fd)),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Takes over a connected TCP socket, such as one from `accept()`; makes
    /// it non-blocking and sets `TCP_NODELAY` and `SO_OOBINLINE`.
    ///
    /// # Errors
    /// The `ioctl()` or `setsockopt()` error (`ENOTSOCK` for a non-socket).
    pub fn from_accepted(fd: OwnedFd) -> io::Result<HostSocket> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        configure(&fd)?;
        Ok(Self::from_fd(fd))
    }

    /// Wraps a non-blocking TCP socket whose options are set already.
    pub(crate) fn from_fd(fd: OwnedFd) -> HostSocket {
        HostSocket {
            fd: Some(fd),
            peeker: Peeker::new(),
            wrote: false,
            write_blocked: false,
        }
    }

    /// Uses `method` for every later peek. Sockets start with
    /// [`PeekMethod::PeekOffset`] where [`peek_offset_supported`] says the
    /// kernel has it; forcing [`PeekMethod::Prefix`] is for tests and
    /// benchmarks of the fallback.
    ///
    /// [`peek_offset_supported`]: crate::peek_offset_supported
    ///
    /// # Errors
    /// `Unsupported` for [`PeekMethod::PeekOffset`] on a kernel without it;
    /// the `setsockopt()` error; `NotConnected` once closed.
    pub fn with_peek_method(mut self, method: PeekMethod) -> io::Result<HostSocket> {
        let fd = open(self.fd.as_ref())?;
        self.peeker.set_method(fd, method)?;
        Ok(self)
    }

    /// How this socket peeks.
    #[must_use]
    pub fn peek_method(&self) -> PeekMethod {
        self.peeker.method()
    }

    /// The descriptor, for epoll registration; `None` once closed. Closing
    /// removes the descriptor from every epoll set it was in.
    #[must_use]
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }

    /// Whether the socket is still open.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.fd.is_some()
    }

    /// The outcome of a non-blocking [`connect`](Self::connect), once the
    /// socket has reported writable (or an error or hang-up).
    ///
    /// # Errors
    /// The connection's error from `SO_ERROR` (`ECONNREFUSED`,
    /// `ETIMEDOUT`, `EHOSTUNREACH`, ...); `WouldBlock` while the connection
    /// is still in progress; `NotConnected` once closed.
    pub fn take_connect_result(&mut self) -> io::Result<()> {
        let fd = open(self.fd.as_ref())?;
        sockopt::socket_error(fd)??;
        match rustix::net::getpeername(fd) {
            Ok(_) => Ok(()),
            Err(Errno::NOTCONN) => Err(io::ErrorKind::WouldBlock.into()),
            Err(errno) => Err(errno.into()),
        }
    }

    /// The pending socket error (`SO_ERROR`), which reading clears; `None`
    /// when there is none.
    ///
    /// # Errors
    /// The `getsockopt()` error; `NotConnected` once closed.
    pub fn take_error(&mut self) -> io::Result<Option<io::Error>> {
        let fd = open(self.fd.as_ref())?;
        Ok(sockopt::socket_error(fd)?.err().map(io::Error::from))
    }

    /// Bytes in the receive queue (`SIOCINQ`), the end-of-stream mark not
    /// counted.
    ///
    /// # Errors
    /// The `ioctl()` error; `NotConnected` once closed.
    pub fn queued(&self) -> io::Result<usize> {
        let fd = open(self.fd.as_ref())?;
        let queued = rustix::io::ioctl_fionread(fd)?;
        Ok(usize::try_from(queued).unwrap_or(usize::MAX))
    }

    /// Free space of the send buffer: `SO_SNDBUF` minus the bytes in the
    /// send queue (`SIOCOUTQ`) minus an eighth of `SO_SNDBUF`, saturating
    /// at 0 and at `u32::MAX`.
    ///
    /// `SO_SNDBUF` counts the kernel's per-buffer overhead too, so the raw
    /// difference exceeds what a write takes at once; the eighth held back
    /// keeps the window promised to the guest close to what the kernel
    /// accepts, and the state machine's backpressure (the guest retransmits
    /// what was not acknowledged) covers the rest.
    ///
    /// # Errors
    /// The `getsockopt()` or `ioctl()` error; `NotConnected` once closed.
    pub fn send_space(&self) -> io::Result<u32> {
        self.send_room().map(|room| room.free)
    }

    /// The free space of the send buffer as [`send_space`](Self::send_space)
    /// counts it, and the free space at which the socket surely reports
    /// writable, from one `getsockopt()` and one `ioctl()`.
    ///
    /// Linux reports a TCP socket writable (`EPOLLOUT`) while the memory
    /// its send queue holds is at most two thirds of `SO_SNDBUF`
    /// (`sk_stream_wspace() >= sk_stream_min_wspace()`); that memory is at
    /// least the bytes `SIOCOUTQ` counts, so by then at least seven eighths
    /// less two thirds of `SO_SNDBUF` (5/24) is free as counted here.
    ///
    /// # Errors
    /// The `getsockopt()` or `ioctl()` error; `NotConnected` once closed.
    pub fn send_room(&self) -> io::Result<SendRoom> {
        let fd = open(self.fd.as_ref())?;
        let sndbuf = sockopt::socket_send_buffer_size(fd)?;
        let queued = sys::outq(fd)?;
        let usable = sndbuf.saturating_sub(sndbuf / 8);
        let free = usable.saturating_sub(queued);
        // The largest queue the kernel still reports writable, rounded up.
        let writable_queue = (sndbuf.saturating_mul(2) / 3).saturating_add(1);
        let writable_at = usable.saturating_sub(writable_queue);
        Ok(SendRoom {
            free: u32::try_from(free).unwrap_or(u32::MAX),
            writable_at: u32::try_from(writable_at).unwrap_or(u32::MAX),
        })
    }

    /// Copies receive-queue bytes from `offset` (counted from the head)
    /// into `buf` without removing them, and returns the count.
    ///
    /// # Errors
    /// `WouldBlock` when nothing is queued at `offset` yet; the `recv()`
    /// error; `NotConnected` once closed. `Ok(0)` is end of stream.
    pub fn peek(&mut self, offset: usize, buf: &mut [u8]) -> io::Result<usize> {
        let fd = open(self.fd.as_ref())?;
        self.peeker.peek(fd, offset, buf)
    }

    /// Like [`peek`](Self::peek), filling `bufs` in order in one system
    /// call: a backend peeks straight into the payload areas of several
    /// outgoing frames.
    ///
    /// # Errors
    /// As for [`peek`](Self::peek).
    pub fn peek_vectored(
        &mut self,
        offset: usize,
        bufs: &mut [IoSliceMut<'_>],
    ) -> io::Result<usize> {
        let fd = open(self.fd.as_ref())?;
        self.peeker.peek_vectored(fd, offset, bufs)
    }

    /// Discards `n` bytes from the head of the receive queue without copying
    /// them (`recv(MSG_TRUNC)`), and returns the count discarded, which is
    /// less than `n` only if the queue held fewer bytes.
    ///
    /// # Errors
    /// The `recv()` error; `NotConnected` once closed.
    pub fn consume(&mut self, n: usize) -> io::Result<usize> {
        let fd = open(self.fd.as_ref())?;
        let mut done = 0;
        for _ in 0..MAX_DISCARD_CALLS {
            if done == n {
                break;
            }
            match sys::recv_discard(fd, n - done) {
                Ok(0) => break,
                Ok(count) => {
                    done += count.min(n - done);
                    self.peeker.consumed(count);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(done)
    }

    /// Closes the writing side (`shutdown(SHUT_WR)`): the host peer reads
    /// end of stream once it has read everything sent before.
    ///
    /// # Errors
    /// The `shutdown()` error (`ENOTCONN` after a reset); `NotConnected`
    /// once closed.
    pub fn shutdown_write(&self) -> io::Result<()> {
        let fd = open(self.fd.as_ref())?;
        rustix::net::shutdown(fd, Shutdown::Write)?;
        Ok(())
    }

    /// Closes the socket gracefully: unsent data still goes out, then FIN.
    /// Does nothing once closed.
    pub fn close(&mut self) {
        self.fd = None;
    }

    /// Closes the socket with `SO_LINGER` set to zero, so the host peer
    /// receives an RST. Does nothing once closed.
    ///
    /// # Errors
    /// The `setsockopt()` error; the socket is closed (gracefully) anyway.
    pub fn reset(&mut self) -> io::Result<()> {
        match self.fd.take() {
            Some(fd) => sockopt::set_socket_linger(&fd, Some(Duration::ZERO)).map_err(Into::into),
            None => Ok(()),
        }
    }

    /// The local address of the socket.
    ///
    /// # Errors
    /// The `getsockname()` error; `NotConnected` once closed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        let fd = open(self.fd.as_ref())?;
        inet_addr(rustix::net::getsockname(fd)?)
    }

    /// The address of the host peer.
    ///
    /// # Errors
    /// The `getpeername()` error (`ENOTCONN` before the connection is up);
    /// `NotConnected` once closed.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        let fd = open(self.fd.as_ref())?;
        match rustix::net::getpeername(fd)? {
            Some(addr) => inet_addr(addr),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Whether a write happened since the last call; for deciding when to
    /// measure the send space again.
    pub(crate) fn take_wrote(&mut self) -> bool {
        std::mem::take(&mut self.wrote)
    }

    /// Whether the kernel refused part of a write since the socket last
    /// reported writable.
    pub(crate) fn write_blocked(&self) -> bool {
        self.write_blocked
    }

    /// The socket reported writable: the kernel takes writes again.
    pub(crate) fn clear_write_blocked(&mut self) {
        self.write_blocked = false;
    }
}

impl HostWriter for HostSocket {
    /// Sends with `MSG_DONTWAIT | MSG_NOSIGNAL`. A full send buffer
    /// (`EAGAIN`) is `Ok(0)`; `ECONNRESET` and `EPIPE` are
    /// [`HostError::Reset`], any other error [`HostError::Failed`].
    fn write(&mut self, data: &[u8]) -> Result<usize, HostError> {
        let Some(fd) = self.fd.as_ref() else {
            return Err(HostError::Failed);
        };
        if data.is_empty() {
            return Ok(0);
        }
        self.wrote = true;
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        let mut sent = 0;
        // `MSG_DONTWAIT` sends do not sleep, so a signal rarely interrupts
        // one; a few tries are plenty, after which the guest retransmits.
        for _ in 0..MAX_SEND_TRIES {
            match rustix::net::send(fd, data, flags) {
                Err(Errno::INTR) => {}
                Ok(n) => {
                    sent = n;
                    break;
                }
                Err(Errno::AGAIN) => break,
                Err(Errno::CONNRESET | Errno::PIPE) => return Err(HostError::Reset),
                Err(errno) => {
                    tracing::debug!(error = %io::Error::from(errno), "host socket write failed");
                    return Err(HostError::Failed);
                }
            }
        }
        if sent < data.len() {
            self.write_blocked = true;
        }
        Ok(sent)
    }
}

/// Sets the options every host socket has: `TCP_NODELAY` (the guest has
/// segmented already) and `SO_OOBINLINE`. Without the latter Linux takes a
/// host peer's urgent byte out of the stream and `SIOCINQ` counts only up
/// to it, so the flow would never learn of the bytes behind it; inline, the
/// byte is one more byte of the stream, as the guest's socket (which gets
/// no urgent pointer) sees it.
pub(crate) fn configure(fd: &OwnedFd) -> io::Result<()> {
    sockopt::set_tcp_nodelay(fd, true)?;
    sockopt::set_socket_oobinline(fd, true)?;
    Ok(())
}

/// The descriptor of a socket that is still open.
fn open(fd: Option<&OwnedFd>) -> io::Result<BorrowedFd<'_>> {
    fd.map(AsFd::as_fd)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "host socket is closed"))
}

/// An IPv4 or IPv6 socket address from the kernel's form.
pub(crate) fn inet_addr(addr: rustix::net::SocketAddrAny) -> io::Result<SocketAddr> {
    SocketAddr::try_from(addr).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "socket address is neither IPv4 nor IPv6",
        )
    })
}
