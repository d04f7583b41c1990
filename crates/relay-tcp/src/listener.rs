//! [`Listener`]: a listening socket of an inbound port forward.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};

use crate::socket::{HostSocket, inet_addr};

/// The backlog of [`Listener::bind`], as the kernel caps it anyway
/// (`net.core.somaxconn`).
pub const DEFAULT_BACKLOG: i32 = 4096;

/// How many pending connections one [`Listener::accept`] call passes over
/// when they were aborted before being accepted.
const MAX_ABORTED_SKIPS: usize = 16;

/// Setting up a listening socket failed; the message names the address.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {step} failed: {source}")]
pub struct ListenError {
    /// The address the listener was to be bound to.
    pub addr: SocketAddr,
    /// The step that failed: `socket`, `setsockopt`, `bind` or `listen`.
    pub step: &'static str,
    /// The system error.
    #[source]
    pub source: io::Error,
}

/// A non-blocking, close-on-exec TCP listening socket for an inbound port
/// forward. An IPv6 listener is IPv6 only (`IPV6_V6ONLY`), so the IPv4 and
/// IPv6 forwards of a port are separate listeners.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    addr: SocketAddr,
}

impl Listener {
    /// Binds `addr` with `SO_REUSEADDR` and listens with
    /// [`DEFAULT_BACKLOG`]. Port 0 picks a free port; see
    /// [`local_addr`](Self::local_addr).
    ///
    /// # Errors
    /// [`ListenError`] naming `addr`, the step and the system error
    /// (`EADDRINUSE`, `EACCES` for a privileged port, ...).
    pub fn bind(addr: SocketAddr) -> Result<Listener, ListenError> {
        Self::bind_with_backlog(addr, DEFAULT_BACKLOG)
    }

    /// Like [`bind`](Self::bind), with an explicit backlog.
    ///
    /// # Errors
    /// As for [`bind`](Self::bind).
    pub fn bind_with_backlog(addr: SocketAddr, backlog: i32) -> Result<Listener, ListenError> {
        let fail = |step: &'static str| {
            move |errno: Errno| ListenError {
                addr,
                step,
                source: errno.into(),
            }
        };
        let family = match addr {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        };
        let fd = rustix::net::socket_with(
            family,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .map_err(fail("socket"))?;
        sockopt::set_socket_reuseaddr(&fd, true).map_err(fail("setsockopt"))?;
        if addr.is_ipv6() {
            sockopt::set_ipv6_v6only(&fd, true).map_err(fail("setsockopt"))?;
        }
        rustix::net::bind(&fd, &addr).map_err(fail("bind"))?;
        rustix::net::listen(&fd, backlog).map_err(fail("listen"))?;
        let bound = rustix::net::getsockname(&fd)
            .map_err(io::Error::from)
            .and_then(inet_addr)
            .map_err(|source| ListenError {
                addr,
                step: "getsockname",
                source,
            })?;
        Ok(Listener { fd, addr: bound })
    }

    /// The address the listener is bound to, with the port the kernel
    /// picked when it was bound to port 0.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The descriptor, for epoll registration (readable: a connection is
    /// waiting).
    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Accepts one pending connection (`accept4`, non-blocking and
    /// close-on-exec) as a [`HostSocket`] with the peer's address; `None`
    /// when no connection is waiting.
    ///
    /// # Errors
    /// The `accept4()` error (`EMFILE`, `ENFILE`, `ENOBUFS`, ...) or the
    /// error setting `TCP_NODELAY` on the new socket.
    pub fn accept(&self) -> io::Result<Option<(HostSocket, SocketAddr)>> {
        for _ in 0..MAX_ABORTED_SKIPS {
            let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
            match rustix::net::acceptfrom_with(&self.fd, flags) {
                Ok((fd, peer)) => {
                    let peer = peer
                        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
                        .and_then(inet_addr)?;
                    crate::socket::configure(&fd)?;
                    return Ok(Some((HostSocket::from_fd(fd), peer)));
                }
                Err(Errno::AGAIN) => return Ok(None),
                // The peer gave up before the accept; try the next one.
                Err(Errno::CONNABORTED | Errno::INTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(None)
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
