//! The few socket calls `rustix` does not wrap, as safe functions over
//! borrowed file descriptors. Every `unsafe` block of the crate lives here.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `SO_PEEK_OFF` from `<asm-generic/socket.h>`; the value is the same on
/// every architecture this crate builds for except SPARC.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_PEEK_OFF: libc::c_int = 42;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_PEEK_OFF: libc::c_int = 0x0026;

/// `SIOCOUTQ` from `<linux/sockios.h>`: it is defined as `TIOCOUTQ`.
const SIOCOUTQ: libc::Ioctl = libc::TIOCOUTQ;

/// Sets `SO_PEEK_OFF`: the offset from the head of the receive queue at
/// which the next `MSG_PEEK` starts; `-1` turns the offset off.
pub(crate) fn set_peek_off(fd: BorrowedFd<'_>, offset: libc::c_int) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: `fd` is a live descriptor for the duration of the borrow, and
    // the option value points at a `c_int` that outlives the call, with
    // its exact size as the length.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEEK_OFF,
            (&raw const offset).cast::<libc::c_void>(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes in the send queue not yet acknowledged by the peer (`SIOCOUTQ`).
pub(crate) fn outq(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    // SAFETY: `fd` is live for the borrow; `SIOCOUTQ` writes one `c_int`
    // through the pointer, which points at a local of that type.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCOUTQ, &raw mut value) };
    if rc == 0 {
        Ok(usize::try_from(value).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Discards up to `len` bytes from the head of the receive queue without
/// copying them: `recv(fd, NULL, len, MSG_TRUNC | MSG_DONTWAIT)`.
///
/// Returns the count discarded, 0 at end of stream.
pub(crate) fn recv_discard(fd: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: `fd` is live for the borrow. With `MSG_TRUNC` on a TCP socket
    // the kernel discards the bytes instead of copying them, so it never
    // writes through the null buffer pointer.
    let rc = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}
