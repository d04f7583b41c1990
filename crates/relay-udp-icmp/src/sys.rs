//! The few system calls `rustix` does not cover, and the socket plumbing the
//! relays share: raw socket options, reads of the error queue, interface
//! names, and the handling of asynchronous errors on `send` and `recv`.
//!
//! Every `unsafe` block of the crate is in this module.

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto};

use crate::icmp_error::{self, IcmpErrorReport};

/// Room for the control messages of one error-queue read: a
/// `sock_extended_err` and a `sockaddr_in6` under a `cmsghdr`, twice over.
const ERRQUEUE_CONTROL_LEN: usize = 256;
/// `sizeof(struct sockaddr_storage)`.
const SOCKADDR_STORAGE_LEN: usize = 128;
/// How many times `recv` retries after an asynchronous error; each try
/// consumes one pending error, so this bounds a burst of them.
const SOFT_ERROR_RETRIES: usize = 8;

/// Opens a non-blocking, close-on-exec socket.
pub(crate) fn socket(
    family: AddressFamily,
    kind: SocketType,
    protocol: rustix::net::Protocol,
) -> io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(
        family,
        kind,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        Some(protocol),
    )?;
    Ok(fd)
}

/// Opens a non-blocking, close-on-exec UDP socket of the family of `v6`.
pub(crate) fn udp_socket(v6: bool) -> io::Result<OwnedFd> {
    let family = if v6 {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    socket(family, SocketType::DGRAM, ipproto::UDP)
}

/// Asks the kernel to queue ICMP errors on the socket's error queue
/// (`IP_RECVERR` or `IPV6_RECVERR`).
pub(crate) fn enable_recverr(fd: BorrowedFd<'_>, v6: bool) -> io::Result<()> {
    if v6 {
        set_option(fd, libc::SOL_IPV6, libc::IPV6_RECVERR, &1i32.to_ne_bytes())
    } else {
        set_option(fd, libc::SOL_IP, libc::IP_RECVERR, &1i32.to_ne_bytes())
    }
}

/// `setsockopt` with the option's value as bytes in host order.
pub(crate) fn set_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &[u8],
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(value.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `fd` is a live descriptor borrowed for the duration of the
    // call, and `value` points to `len` readable bytes that the kernel copies
    // before `setsockopt` returns; it keeps no pointer to them.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads one report from the socket's error queue (`MSG_ERRQUEUE`), or
/// `None` when the queue is empty. The start of the failed datagram's
/// payload as the error quotes it (for UDP the payload, for ICMP the echo
/// header and data) is copied into `quoted`, and the report comes with the
/// number of bytes copied; an empty `quoted` discards it.
pub(crate) fn recv_error_queue(
    fd: BorrowedFd<'_>,
    quoted: &mut [u8],
) -> io::Result<Option<(IcmpErrorReport, usize)>> {
    loop {
        let mut control = [0u8; ERRQUEUE_CONTROL_LEN];
        let mut name = [0u8; SOCKADDR_STORAGE_LEN];
        let mut iov = libc::iovec {
            iov_base: quoted.as_mut_ptr().cast(),
            iov_len: quoted.len(),
        };
        // SAFETY: `msghdr` is plain old data (pointers and lengths) for
        // which all-zero bytes are a valid value: no name, no buffers.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = name.as_mut_ptr().cast();
        msg.msg_namelen = SOCKADDR_STORAGE_LEN as libc::socklen_t;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = ERRQUEUE_CONTROL_LEN as _;
        // SAFETY: every pointer in `msg` refers to a buffer that outlives
        // the call, with the length the kernel is told: `name` (128 bytes),
        // `control` (256 bytes) and one `iovec` of `quoted` (borrowed
        // mutably for the whole function). The kernel writes only within
        // those lengths.
        let rc = unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &raw mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => return Ok(None),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(err),
            }
        }
        let name_len = usize::try_from(msg.msg_namelen).unwrap_or(0);
        let destination = name
            .get(..name_len.min(SOCKADDR_STORAGE_LEN))
            .and_then(icmp_error::parse_sockaddr);
        // `msg_controllen` is a `size_t` on glibc and a `socklen_t` on musl.
        #[allow(clippy::useless_conversion)]
        let control_len = usize::try_from(msg.msg_controllen).unwrap_or(0);
        let control = control
            .get(..control_len.min(ERRQUEUE_CONTROL_LEN))
            .unwrap_or(&[]);
        // A message with no report of ours (e.g. a timestamp) is consumed and
        // skipped; the next one may be an error.
        if let Some(report) = ControlMessages::new(control)
            .find_map(|(level, kind, data)| icmp_error::decode(level, kind, data, destination))
        {
            // `recvmsg` returns the bytes copied, at most `quoted.len()`.
            let copied = usize::try_from(rc).unwrap_or(0).min(quoted.len());
            return Ok(Some((report, copied)));
        }
    }
}

/// Iterates over the control messages in a buffer filled by `recvmsg`,
/// following the kernel's `cmsghdr` layout and `CMSG_ALIGN` (alignment to
/// `size_t`) without pointer arithmetic.
struct ControlMessages<'a> {
    rest: &'a [u8],
}

impl<'a> ControlMessages<'a> {
    const ALIGN: usize = mem::size_of::<usize>();
    const HEADER: usize = mem::size_of::<libc::cmsghdr>();

    fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }

    fn align(len: usize) -> usize {
        len.div_ceil(Self::ALIGN).saturating_mul(Self::ALIGN)
    }
}

impl<'a> Iterator for ControlMessages<'a> {
    type Item = (i32, i32, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let header = self.rest.get(..Self::HEADER)?;
        let (len_bytes, rest) = header.split_at(Self::ALIGN);
        let mut len_arr = [0u8; mem::size_of::<usize>()];
        len_arr.copy_from_slice(len_bytes);
        let cmsg_len = usize::from_ne_bytes(len_arr);
        let level = i32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let kind = i32::from_ne_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let data_start = Self::align(Self::HEADER);
        let data = self.rest.get(data_start..cmsg_len)?;
        let next = Self::align(cmsg_len).min(self.rest.len());
        self.rest = self.rest.get(next..).unwrap_or(&[]);
        Some((level, kind, data))
    }
}

/// The interface index of `name`, for an IPv6 scope given by name.
pub(crate) fn interface_index(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: `name` is a NUL-terminated string that lives across the call;
    // `if_nametoindex` only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Whether `err` is an asynchronous error a previous ICMP message left on
/// the socket (`sk_err`), which the next `send` or `recv` reports once and
/// clears. The report itself waits in the error queue.
pub(crate) fn is_async_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EPROTO
                | libc::ETIMEDOUT
                | libc::EMSGSIZE
                | libc::ENOPROTOOPT
        )
    )
}

/// Runs a send: an asynchronous error left by an earlier ICMP message is
/// consumed by the first try, so one retry sends the datagram; a synchronous
/// error fails the retry too and is returned. `Ok(None)` is `EAGAIN`.
pub(crate) fn send_retrying(
    on_async: &mut dyn FnMut(),
    mut op: impl FnMut() -> rustix::io::Result<usize>,
) -> io::Result<Option<usize>> {
    let mut retried = false;
    loop {
        match op() {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e == rustix::io::Errno::INTR => {}
            Err(e) if e == rustix::io::Errno::AGAIN => return Ok(None),
            Err(e) => {
                let err = io::Error::from(e);
                if retried || !is_async_error(&err) {
                    return Err(err);
                }
                on_async();
                retried = true;
            }
        }
    }
}

/// Runs a receive, skipping the asynchronous errors an ICMP message leaves
/// (the report stays in the error queue). `Ok(None)` is `EAGAIN`.
pub(crate) fn recv_retrying<T>(
    on_async: &mut dyn FnMut(),
    mut op: impl FnMut() -> rustix::io::Result<T>,
) -> io::Result<Option<T>> {
    let mut tries = 0;
    loop {
        match op() {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e == rustix::io::Errno::INTR => {}
            Err(e) if e == rustix::io::Errno::AGAIN => return Ok(None),
            Err(e) => {
                let err = io::Error::from(e);
                if tries >= SOFT_ERROR_RETRIES || !is_async_error(&err) {
                    return Err(err);
                }
                on_async();
                tries += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let header = mem::size_of::<libc::cmsghdr>();
        let len = header + data.len();
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.resize(ControlMessages::align(header), 0);
        v.extend_from_slice(data);
        v.resize(ControlMessages::align(len), 0);
        v
    }

    #[test]
    fn control_messages_walk_aligned_headers() {
        let mut buf = cmsg(1, 2, &[9, 9, 9]);
        buf.extend(cmsg(3, 4, &[7; 20]));
        let all: Vec<_> = ControlMessages::new(&buf).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], (1, 2, &[9u8, 9, 9][..]));
        assert_eq!(all[1].0, 3);
        assert_eq!(all[1].2.len(), 20);
    }

    #[test]
    fn control_messages_stop_on_a_length_past_the_end() {
        let mut buf = cmsg(1, 2, &[1, 2, 3, 4]);
        buf[0] = 200;
        assert_eq!(ControlMessages::new(&buf).count(), 0);
        assert_eq!(ControlMessages::new(&buf[..3]).count(), 0);
    }

    #[test]
    fn loopback_has_an_interface_index() {
        assert!(interface_index("lo").is_some());
        assert_eq!(interface_index("no-such-if0"), None);
        assert_eq!(interface_index("bad\0name"), None);
    }
}
