//! The forwarder's sockets: a small pool of UDP sockets connected to the
//! upstream, each on an ephemeral port of its own, one picked at random for
//! each query.
//!
//! With one fixed source port, only the 16-bit transaction id stands
//! between the guest and an off-path spoofer who races the upstream's
//! answer. A reply is taken only when it arrives on the socket its query
//! left from, from the upstream's address and port (the kernel delivers
//! nothing else to a connected socket), with the id of a query pending on
//! that socket; so the spoofer must also guess the port, about 15 more bits
//! (Linux picks an autobound UDP port at random within
//! `ip_local_port_range`, 28 232 ports by default).
//!
//! Why [`POOL_SIZE`] sockets, each replaced after [`QUERIES_PER_SOCKET`]
//! queries or [`SOCKET_LIFETIME`]: a socket per query would cost a socket,
//! a bind and an epoll registration per query and up to a descriptor per
//! pending query (1024 by default) under a query flood; one socket per
//! forwarder is the fixed port this replaces. Eight sockets cost eight
//! descriptors, and each query's port is still unknown to an off-path
//! spoofer. Replacing sockets bounds how long a port that leaked (through
//! the spoofer's own queries, say) stays useful: at most 32 queries or 30
//! seconds. A replaced socket stays open only until its pending queries are
//! answered or time out, so the pool never holds more than twice
//! [`POOL_SIZE`] descriptors. Replacement happens when a query picks the
//! socket, never on a timer: an idle forwarder makes no wakeups.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::Timespec;
use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};

use super::pending::SocketId;
use crate::sys;

/// Sockets the pool keeps for new queries.
pub const POOL_SIZE: usize = 8;
/// Queries one socket sends before it is replaced.
pub const QUERIES_PER_SOCKET: u32 = 32;
/// How long one socket takes new queries, from its first, before it is replaced.
pub const SOCKET_LIFETIME: Duration = Duration::from_secs(30);

/// One connected socket of the pool.
#[derive(Debug)]
struct PoolSocket {
    id: SocketId,
    fd: OwnedFd,
    port: u16,
    sent: u32,
    /// When the socket took its first query; its lifetime runs from then.
    first_used: Option<Instant>,
    /// Queries sent from this socket still waiting for their reply.
    pending: usize,
}

impl PoolSocket {
    fn is_due(&self, now: Instant) -> bool {
        self.sent >= QUERIES_PER_SOCKET
            || self
                .first_used
                .is_some_and(|t| now.saturating_duration_since(t) >= SOCKET_LIFETIME)
    }
}

/// A place in the pool: the socket that takes new queries, and the one it
/// replaced while that still has queries pending.
#[derive(Debug, Default)]
struct Slot {
    current: Option<PoolSocket>,
    draining: Option<PoolSocket>,
}

/// The pool, with an epoll set of its sockets that the caller's poller
/// watches as one descriptor.
pub(crate) struct SocketPool {
    epoll: OwnedFd,
    upstream: SocketAddr,
    slots: Vec<Slot>,
    next_id: u64,
    /// Sockets the last look at the epoll set found readable, not yet read
    /// until empty.
    ready: VecDeque<SocketId>,
    events: Vec<epoll::Event>,
}

impl SocketPool {
    /// Opens [`POOL_SIZE`] sockets connected to `upstream`. Fails when the
    /// first cannot be opened (no route to the upstream, say).
    pub(crate) fn new(upstream: SocketAddr) -> io::Result<Self> {
        let mut pool = Self {
            epoll: epoll::create(CreateFlags::CLOEXEC)?,
            upstream,
            slots: (0..POOL_SIZE).map(|_| Slot::default()).collect(),
            next_id: 0,
            ready: VecDeque::with_capacity(2 * POOL_SIZE),
            events: Vec::with_capacity(2 * POOL_SIZE),
        };
        for index in 0..POOL_SIZE {
            match pool.open() {
                Ok(socket) => pool.slots[index].current = Some(socket),
                // A later query fills the slot.
                Err(error) if index > 0 => {
                    tracing::debug!(%error, "DNS socket not opened");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(pool)
    }

    fn open(&mut self) -> io::Result<PoolSocket> {
        let fd = sys::udp_socket(self.upstream.is_ipv6())?;
        // Connecting binds the socket to an ephemeral port the kernel picks
        // at random.
        rustix::net::connect(&fd, &self.upstream)?;
        let port = rustix::net::getsockname(&fd)
            .ok()
            .and_then(|a| SocketAddr::try_from(a).ok())
            .map_or(0, |a| a.port());
        let id = SocketId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        epoll::add(&self.epoll, &fd, EventData::new_u64(id.0), EventFlags::IN)?;
        tracing::trace!(port, socket = id.0, "DNS socket opened");
        Ok(PoolSocket {
            id,
            fd,
            port,
            sent: 0,
            first_used: None,
            pending: 0,
        })
    }

    /// The socket a new query leaves from: the one in slot `pick` (modulo
    /// the pool's size), replaced first when it is due, or the next usable
    /// one when that slot has none.
    pub(crate) fn socket_for_query(&mut self, pick: u16, now: Instant) -> io::Result<SocketId> {
        let start = usize::from(pick) % POOL_SIZE;
        let mut last_error = None;
        for k in 0..POOL_SIZE {
            let index = (start + k) % POOL_SIZE;
            match self.refresh_slot(index, now) {
                Ok(Some(id)) => return Ok(id),
                Ok(None) => {}
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no DNS socket could be opened")))
    }

    /// Replaces slot `index`'s socket if it is due and the slot's previous
    /// socket has drained (or opens one if the slot has none); returns the
    /// socket that takes the query.
    fn refresh_slot(&mut self, index: usize, now: Instant) -> io::Result<Option<SocketId>> {
        let Some(slot) = self.slots.get(index) else {
            return Ok(None);
        };
        let replace = match &slot.current {
            None => true,
            Some(current) => current.is_due(now) && slot.draining.is_none(),
        };
        if replace {
            let fresh = match self.open() {
                Ok(fresh) => fresh,
                Err(error) => {
                    // A due socket serves on until a new one can be opened.
                    let current = self.slots[index].current.as_mut().map(|s| {
                        s.first_used.get_or_insert(now);
                        s.id
                    });
                    tracing::debug!(%error, "DNS socket not replaced");
                    return current.map(Some).ok_or(error);
                }
            };
            let slot = &mut self.slots[index];
            if let Some(old) = slot.current.replace(fresh) {
                tracing::trace!(port = old.port, sent = old.sent, "DNS socket replaced");
                if old.pending > 0 {
                    slot.draining = Some(old);
                } else {
                    let _ = epoll::delete(&self.epoll, &old.fd);
                }
            }
        }
        let current = self.slots[index].current.as_mut();
        Ok(current.map(|s| {
            s.first_used.get_or_insert(now);
            s.id
        }))
    }

    fn find_mut(&mut self, id: SocketId) -> Option<(&mut PoolSocket, bool)> {
        self.slots.iter_mut().find_map(|slot| {
            if let Some(s) = slot.current.as_mut().filter(|s| s.id == id) {
                Some((s, false))
            } else {
                slot.draining
                    .as_mut()
                    .filter(|s| s.id == id)
                    .map(|s| (s, true))
            }
        })
    }

    /// The descriptor of socket `id`, if it is still open.
    pub(crate) fn fd(&self, id: SocketId) -> Option<BorrowedFd<'_>> {
        self.slots.iter().find_map(|slot| {
            [&slot.current, &slot.draining]
                .into_iter()
                .flatten()
                .find(|s| s.id == id)
                .map(|s| s.fd.as_fd())
        })
    }

    /// Socket `id` sent a query that now waits for its reply.
    pub(crate) fn record_sent(&mut self, id: SocketId) {
        if let Some((socket, _)) = self.find_mut(id) {
            socket.sent = socket.sent.saturating_add(1);
            socket.pending = socket.pending.saturating_add(1);
        }
    }

    /// A query of socket `id` was answered, timed out or was evicted. A
    /// replaced socket with nothing left pending is closed.
    pub(crate) fn release(&mut self, id: SocketId) {
        let Some((socket, draining)) = self.find_mut(id) else {
            return;
        };
        socket.pending = socket.pending.saturating_sub(1);
        if !draining || socket.pending > 0 {
            return;
        }
        for slot in &mut self.slots {
            if slot.draining.as_ref().is_some_and(|s| s.id == id) {
                if let Some(old) = slot.draining.take() {
                    let _ = epoll::delete(&self.epoll, &old.fd);
                    tracing::trace!(port = old.port, "drained DNS socket closed");
                }
            }
        }
    }

    /// A socket that has datagrams (or an error) waiting, if any. The same
    /// socket comes back until [`SocketPool::drained`] says it is empty.
    pub(crate) fn next_ready(&mut self) -> io::Result<Option<SocketId>> {
        if self.ready.is_empty() {
            self.events.clear();
            let zero = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            match epoll::wait(&self.epoll, spare_capacity(&mut self.events), Some(&zero)) {
                Ok(_) => {}
                Err(e) if e == rustix::io::Errno::INTR => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            self.ready
                .extend(self.events.iter().map(|e| SocketId(e.data.u64())));
        }
        Ok(self.ready.front().copied())
    }

    /// Socket `id` has nothing more to read for now.
    pub(crate) fn drained(&mut self, id: SocketId) {
        if self.ready.front() == Some(&id) {
            self.ready.pop_front();
        }
    }

    /// How many sockets are open: at most twice [`POOL_SIZE`].
    pub(crate) fn open_sockets(&self) -> usize {
        self.slots
            .iter()
            .map(|s| usize::from(s.current.is_some()) + usize::from(s.draining.is_some()))
            .sum()
    }

    /// The local ports of the open sockets.
    pub(crate) fn local_ports(&self) -> Vec<u16> {
        self.slots
            .iter()
            .flat_map(|s| [&s.current, &s.draining])
            .flatten()
            .map(|s| s.port)
            .collect()
    }
}

impl std::fmt::Debug for SocketPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketPool")
            .field("upstream", &self.upstream)
            .field("slots", &self.slots)
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl AsFd for SocketPool {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}
