//! Peeking at an offset into a TCP receive queue, with `SO_PEEK_OFF` where
//! the kernel has it for TCP (Linux 6.9 and later) and without it elsewhere.

use std::cell::RefCell;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::OnceLock;

use rustix::net::{AddressFamily, RecvAncillaryBuffer, RecvFlags, SocketFlags, SocketType};

use crate::sys;

/// How a [`HostSocket`](crate::HostSocket) reads bytes at an offset of its
/// receive queue without removing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeekMethod {
    /// `SO_PEEK_OFF` places the peek at the offset: the kernel copies only
    /// the bytes asked for, straight into the caller's buffers.
    PeekOffset,
    /// Without `SO_PEEK_OFF` every peek starts at the head of the queue: the
    /// bytes before the offset land in a per-thread scratch buffer (the
    /// first entry of the scatter list), the rest straight in the caller's
    /// buffers. The kernel copies `offset + len` bytes per peek, so sending
    /// a window of `W` bytes in segments of `M` costs about `W²/2M` bytes of
    /// copying, and the scratch buffer grows to the largest offset peeked.
    Prefix,
}

/// Whether this kernel supports `SO_PEEK_OFF` on TCP sockets.
///
/// Probed once per process, on a throwaway socket, the first time it is
/// asked; the answer is logged at `debug` level.
#[must_use]
pub fn peek_offset_supported() -> bool {
    static PROBE: OnceLock<bool> = OnceLock::new();
    *PROBE.get_or_init(probe_peek_offset)
}

fn probe_peek_offset() -> bool {
    let socket = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    );
    let outcome = socket
        .map_err(io::Error::from)
        .and_then(|fd| sys::set_peek_off(fd.as_fd(), 0));
    match outcome {
        Ok(()) => {
            tracing::debug!(supported = true, "SO_PEEK_OFF probe on a TCP socket");
            true
        }
        Err(error) => {
            tracing::debug!(
                supported = false,
                %error,
                "SO_PEEK_OFF probe on a TCP socket; peeking copies the skipped prefix"
            );
            false
        }
    }
}

thread_local! {
    /// Where the [`PeekMethod::Prefix`] fallback lets the skipped bytes land.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The peek state of one socket.
#[derive(Debug)]
pub(crate) struct Peeker {
    method: PeekMethod,
    /// The kernel's `SO_PEEK_OFF` as last set or moved, when known. The
    /// kernel advances it by the bytes each peek returns and moves it back
    /// by the bytes each read removes, so sequential peeks need no
    /// `setsockopt`.
    kernel_offset: Option<usize>,
}

impl Peeker {
    pub(crate) fn new() -> Peeker {
        let method = if peek_offset_supported() {
            PeekMethod::PeekOffset
        } else {
            PeekMethod::Prefix
        };
        Peeker {
            method,
            kernel_offset: None,
        }
    }

    pub(crate) fn method(&self) -> PeekMethod {
        self.method
    }

    /// Switches to `method` on the socket `fd`.
    pub(crate) fn set_method(&mut self, fd: BorrowedFd<'_>, method: PeekMethod) -> io::Result<()> {
        match method {
            PeekMethod::PeekOffset if !peek_offset_supported() => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this kernel has no SO_PEEK_OFF for TCP sockets",
                ));
            }
            PeekMethod::PeekOffset => {}
            // A peek offset left enabled would move plain peeks off the head.
            PeekMethod::Prefix if peek_offset_supported() => sys::set_peek_off(fd, -1)?,
            PeekMethod::Prefix => {}
        }
        self.method = method;
        self.kernel_offset = None;
        Ok(())
    }

    /// Records that `n` bytes left the head of the receive queue.
    pub(crate) fn consumed(&mut self, n: usize) {
        self.kernel_offset = self.kernel_offset.map(|at| at.saturating_sub(n));
    }

    /// Peeks at `offset` into `buf`.
    pub(crate) fn peek(
        &mut self,
        fd: BorrowedFd<'_>,
        offset: usize,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        match self.method {
            PeekMethod::PeekOffset => {
                self.seek(fd, offset)?;
                let result = rustix::net::recv(fd, buf, RecvFlags::PEEK | RecvFlags::DONTWAIT);
                self.advance(offset, result.map(|(n, _)| n))
            }
            PeekMethod::Prefix => {
                let mut bufs = [IoSliceMut::new(buf)];
                peek_prefix(fd, offset, &mut bufs)
            }
        }
    }

    /// Peeks at `offset` into `bufs`, in order.
    pub(crate) fn peek_vectored(
        &mut self,
        fd: BorrowedFd<'_>,
        offset: usize,
        bufs: &mut [IoSliceMut<'_>],
    ) -> io::Result<usize> {
        match self.method {
            PeekMethod::PeekOffset => {
                self.seek(fd, offset)?;
                let result = recv_peek(fd, bufs);
                self.advance(offset, result)
            }
            PeekMethod::Prefix => peek_prefix(fd, offset, bufs),
        }
    }

    /// Sets the kernel's peek offset unless it is there already.
    fn seek(&mut self, fd: BorrowedFd<'_>, offset: usize) -> io::Result<()> {
        if self.kernel_offset == Some(offset) {
            return Ok(());
        }
        let value = libc::c_int::try_from(offset).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("peek offset {offset} is beyond SO_PEEK_OFF's range"),
            )
        })?;
        self.kernel_offset = None;
        sys::set_peek_off(fd, value)?;
        self.kernel_offset = Some(offset);
        Ok(())
    }

    /// Follows the kernel, which moved its peek offset by the bytes peeked.
    fn advance(&mut self, offset: usize, result: rustix::io::Result<usize>) -> io::Result<usize> {
        match result {
            Ok(n) => {
                self.kernel_offset = offset.checked_add(n);
                Ok(n)
            }
            Err(errno) => {
                // A peek that returned nothing left the offset where it was.
                if !matches!(errno, rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) {
                    self.kernel_offset = None;
                }
                Err(errno.into())
            }
        }
    }
}

/// One non-blocking `recvmsg(MSG_PEEK)` into `bufs`.
fn recv_peek(fd: BorrowedFd<'_>, bufs: &mut [IoSliceMut<'_>]) -> rustix::io::Result<usize> {
    let mut control = RecvAncillaryBuffer::default();
    rustix::net::recvmsg(
        fd,
        bufs,
        &mut control,
        RecvFlags::PEEK | RecvFlags::DONTWAIT,
    )
    .map(|msg| msg.bytes)
}

/// Peeks from the head of the queue with the first `offset` bytes going to
/// the scratch buffer and the rest to `bufs`: one system call, and no copy
/// in user space.
fn peek_prefix(
    fd: BorrowedFd<'_>,
    offset: usize,
    bufs: &mut [IoSliceMut<'_>],
) -> io::Result<usize> {
    SCRATCH.with_borrow_mut(|scratch| {
        if scratch.len() < offset {
            scratch.resize(offset, 0);
        }
        let mut iov = Vec::with_capacity(bufs.len() + 1);
        iov.push(IoSliceMut::new(&mut scratch[..offset]));
        iov.extend(bufs.iter_mut().map(|buf| IoSliceMut::new(buf)));
        let n = recv_peek(fd, &mut iov)?;
        if n == 0 {
            // End of stream with nothing queued, as a peek at the head says.
            Ok(0)
        } else if n > offset || offset == 0 {
            Ok(n - offset)
        } else {
            // The queue ends at or before the offset. Without a peek offset
            // this cannot be told apart from end of stream there.
            Err(io::ErrorKind::WouldBlock.into())
        }
    })
}
