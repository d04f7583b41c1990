//! DNS forwarding: guest queries over UDP to one upstream resolver.
//!
//! Each query leaves from a socket of a small pool, each socket on a random
//! port of its own ([`POOL_SIZE`] says why so many), and with a transaction
//! id of the forwarder's choosing, so
//! queries from different guest ports that happen to share an id never take
//! each other's replies; the reply gets the guest's id back before it is
//! returned. The forwarder sends the rewritten id and the rest of the query
//! from the guest's buffer in one `sendmsg`, without copying the query, and
//! restores the id in the caller's receive buffer in place.
//!
//! Which upstream to use is the caller's business: a configured address
//! (`nat_core::DnsUpstream::Configured`) or the host's resolver from
//! [`resolv_conf`]. TCP to port 53 belongs to the TCP relay.

pub(crate) mod pending;
mod pool;
pub mod resolv_conf;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags};

use crate::counters::{Counters, DropReason};
use crate::sys;
use crate::udp::{self, SendOutcome};
use pending::{PendingQueries, SocketId};
use pool::SocketPool;
pub use pool::{POOL_SIZE, QUERIES_PER_SOCKET, SOCKET_LIFETIME};

/// The DNS header: id, flags, four counts.
const DNS_HEADER_LEN: usize = 12;
/// The QR bit (set in responses) in the third header byte.
const QR_BIT: u8 = 0x80;
/// Datagrams one [`DnsForwarder::recv_reply`] reads at most.
const MAX_READS_PER_CALL: usize = 256;

/// Limits of a [`DnsForwarder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsForwarderConfig {
    /// Most queries waiting for a reply; a new query beyond it evicts the
    /// oldest. Kept between 1 and 32768.
    pub max_pending: usize,
    /// How long a query waits for its reply before it is forgotten.
    pub query_timeout: Duration,
}

impl Default for DnsForwarderConfig {
    fn default() -> Self {
        Self {
            max_pending: 1024,
            query_timeout: Duration::from_secs(5),
        }
    }
}

/// A reply ready for the guest: its bytes are the first `len` bytes of the
/// buffer passed to [`DnsForwarder::recv_reply`], with the guest's
/// transaction id restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsReply {
    /// The guest address and port the query came from, which the reply
    /// goes to (from the DNS address, port 53).
    pub guest: SocketAddr,
    /// The reply's length in bytes.
    pub len: usize,
}

/// Random transaction ids, drawn from the kernel in batches.
#[derive(Debug)]
struct IdSource {
    pool: [u16; 32],
    next: usize,
    fallback: u64,
}

impl IdSource {
    fn new() -> Self {
        // A per-process random seed, used only if getrandom fails.
        let fallback = RandomState::new().hash_one(0x5eed_u64) | 1;
        Self {
            pool: [0; 32],
            next: 32,
            fallback,
        }
    }

    fn next_id(&mut self) -> u16 {
        if self.next >= self.pool.len() {
            self.refill();
        }
        let id = self.pool.get(self.next).copied().unwrap_or(0);
        self.next += 1;
        id
    }

    fn refill(&mut self) {
        let mut bytes = [0u8; 64];
        let filled =
            rustix::rand::getrandom(&mut bytes[..], rustix::rand::GetRandomFlags::NONBLOCK);
        if !matches!(filled, Ok(n) if n == bytes.len()) {
            for chunk in bytes.chunks_exact_mut(8) {
                // xorshift64
                self.fallback ^= self.fallback << 13;
                self.fallback ^= self.fallback >> 7;
                self.fallback ^= self.fallback << 17;
                chunk.copy_from_slice(&self.fallback.to_ne_bytes());
            }
        }
        for (slot, pair) in self.pool.iter_mut().zip(bytes.chunks_exact(2)) {
            *slot = u16::from_ne_bytes([pair[0], pair[1]]);
        }
        self.next = 0;
    }
}

/// The guest's transaction id, if `query` is a DNS query at all.
fn query_id(query: &[u8]) -> Option<u16> {
    let header = query.get(..DNS_HEADER_LEN)?;
    (header[2] & QR_BIT == 0).then(|| u16::from_be_bytes([header[0], header[1]]))
}

/// Forwards guest DNS queries to one upstream over a pool of connected,
/// non-blocking UDP sockets (see [`POOL_SIZE`]) and matches the replies to
/// the queries.
///
/// The forwarder is one descriptor to its caller ([`AsFd`]): an epoll set
/// of the pool's sockets, readable when any of them is.
#[derive(Debug)]
pub struct DnsForwarder {
    pool: SocketPool,
    upstream: SocketAddr,
    pending: PendingQueries,
    ids: IdSource,
    counters: Counters,
}

impl DnsForwarder {
    /// Opens the pool's sockets, each of `upstream`'s family and connected
    /// to `upstream`. Fails when not even one can be (no route to the
    /// upstream, say).
    pub fn new(upstream: SocketAddr, config: DnsForwarderConfig) -> io::Result<Self> {
        Ok(Self {
            pool: SocketPool::new(upstream)?,
            upstream,
            pending: PendingQueries::new(config.max_pending, config.query_timeout),
            ids: IdSource::new(),
            counters: Counters::default(),
        })
    }

    /// The resolver queries go to.
    #[must_use]
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Forwards the guest's `query`, sent from `guest`, upstream from a
    /// socket of the pool picked at random. A malformed query (shorter than
    /// a DNS header, or a response), one too large for the upstream's family
    /// and a full send buffer are counted drops; an `Err` is a host failure.
    pub fn forward_query(
        &mut self,
        guest: SocketAddr,
        query: &[u8],
        now: Instant,
    ) -> io::Result<SendOutcome> {
        self.handle_timeouts(now);
        let Some(guest_id) = query_id(query) else {
            return Ok(self.drop_query(DropReason::MalformedQuery, guest, query.len()));
        };
        if query.len() > udp::max_payload(self.upstream) {
            return Ok(self.drop_query(DropReason::Oversize, guest, query.len()));
        }
        let pick = self.ids.next_id();
        let socket = self.pool.socket_for_query(pick, now)?;
        let ids = &mut self.ids;
        let upstream_id = self.pending.free_id(&mut || ids.next_id());
        let id_bytes = upstream_id.to_be_bytes();
        let rest = query.get(2..).unwrap_or(&[]);
        let Some(fd) = self.pool.fd(socket) else {
            return Err(io::Error::other("DNS socket vanished"));
        };
        let counters = &mut self.counters;
        let sent = sys::send_retrying(&mut || counters.record_icmp_error(), || {
            rustix::net::sendmsg(
                fd,
                &[IoSlice::new(&id_bytes), IoSlice::new(rest)],
                &mut SendAncillaryBuffer::default(),
                SendFlags::empty(),
            )
        })?;
        let Some(n) = sent else {
            return Ok(self.drop_query(DropReason::WouldBlock, guest, query.len()));
        };
        self.pool.record_sent(socket);
        if let Some(old) = self
            .pending
            .insert(upstream_id, (guest, guest_id), socket, now)
        {
            self.pool.release(old.socket);
            self.counters.record_drop(DropReason::Evicted);
            tracing::debug!(guest = %old.guest, id = old.guest_id, "DNS query evicted");
        }
        self.counters.record_to_host(n);
        tracing::trace!(%guest, guest_id, upstream_id, socket = socket.0, "DNS query forwarded");
        Ok(SendOutcome::Sent(n))
    }

    /// Reads the next reply from upstream into `buf` and returns the guest
    /// it belongs to, or `None` when no reply is waiting. Replies that are
    /// malformed, truncated by a short `buf`, match no pending query or
    /// arrive on another socket than their query left from are dropped and
    /// counted. Queries past their timeout at `now` are forgotten first.
    pub fn recv_reply(&mut self, buf: &mut [u8], now: Instant) -> io::Result<Option<DnsReply>> {
        self.handle_timeouts(now);
        // Bounded: the rest waits for the next readiness of the pool.
        for _ in 0..MAX_READS_PER_CALL {
            let Some(socket) = self.pool.next_ready()? else {
                return Ok(None);
            };
            let Some(fd) = self.pool.fd(socket) else {
                self.pool.drained(socket);
                continue;
            };
            let counters = &mut self.counters;
            let got = sys::recv_retrying(&mut || counters.record_icmp_error(), || {
                rustix::net::recv(fd, &mut *buf, RecvFlags::TRUNC)
            });
            let (len, full_len) = match got {
                Ok(Some(got)) => got,
                Ok(None) => {
                    self.pool.drained(socket);
                    continue;
                }
                Err(error) => {
                    // One socket's failure leaves the others readable.
                    tracing::debug!(%error, socket = socket.0, "DNS receive failed");
                    self.pool.drained(socket);
                    continue;
                }
            };
            let Some(reply) = buf.get_mut(..len) else {
                continue;
            };
            if let Some(reply) = self.match_reply(socket, reply, full_len) {
                return Ok(Some(reply));
            }
        }
        Ok(None)
    }

    /// Matches one datagram that came to `socket` to its query and restores
    /// the guest's id in place; `None` (counted) when it cannot be relayed.
    /// Only a reply on the query's own socket may answer (and so end) it.
    fn match_reply(
        &mut self,
        socket: SocketId,
        reply: &mut [u8],
        full_len: usize,
    ) -> Option<DnsReply> {
        let id = reply.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let query_socket = id.and_then(|id| self.pending.get(id)).map(|q| q.socket);
        if full_len > reply.len() {
            // The query is answered even if the answer cannot be relayed;
            // the guest retries.
            if let Some(id) = id.filter(|_| query_socket == Some(socket)) {
                self.take(id);
            }
            self.drop_reply(DropReason::Truncated, full_len);
            return None;
        }
        let is_response = reply
            .get(..DNS_HEADER_LEN)
            .is_some_and(|h| h[2] & QR_BIT != 0);
        let Some(upstream_id) = id.filter(|_| is_response) else {
            self.drop_reply(DropReason::MalformedReply, full_len);
            return None;
        };
        match query_socket {
            None => {
                self.drop_reply(DropReason::UnmatchedReply, full_len);
                return None;
            }
            Some(s) if s != socket => {
                self.drop_reply(DropReason::WrongSocket, full_len);
                return None;
            }
            Some(_) => {}
        }
        let query = self.take(upstream_id)?;
        reply[..2].copy_from_slice(&query.guest_id.to_be_bytes());
        self.counters.record_to_guest(reply.len());
        Some(DnsReply {
            guest: query.guest,
            len: reply.len(),
        })
    }

    fn take(&mut self, upstream_id: u16) -> Option<pending::PendingQuery> {
        let query = self.pending.take(upstream_id)?;
        self.pool.release(query.socket);
        Some(query)
    }

    /// Forgets the queries whose timeout has passed at `now` (counted as
    /// [`DropReason::TimedOut`]); returns how many.
    pub fn handle_timeouts(&mut self, now: Instant) -> usize {
        let pool = &mut self.pool;
        let expired = self.pending.expire(now, |q| pool.release(q.socket));
        for _ in 0..expired {
            self.counters.record_drop(DropReason::TimedOut);
        }
        if expired > 0 {
            tracing::debug!(expired, "DNS queries timed out");
        }
        expired
    }

    /// When the oldest pending query times out, for the event loop's wait.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.next_deadline()
    }

    /// How many queries wait for a reply.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// How many sockets the pool holds open: at most twice [`POOL_SIZE`]
    /// (replaced sockets stay until their queries are answered or time out).
    #[must_use]
    pub fn open_sockets(&self) -> usize {
        self.pool.open_sockets()
    }

    /// The local ports of the pool's open sockets.
    #[must_use]
    pub fn local_ports(&self) -> Vec<u16> {
        self.pool.local_ports()
    }

    /// The forwarder's counters.
    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn drop_query(&mut self, reason: DropReason, guest: SocketAddr, len: usize) -> SendOutcome {
        self.counters.record_drop(reason);
        tracing::debug!(%reason, %guest, len, "DNS query dropped");
        SendOutcome::Dropped(reason)
    }

    fn drop_reply(&mut self, reason: DropReason, len: usize) {
        self.counters.record_drop(reason);
        tracing::debug!(%reason, upstream = %self.upstream, len, "DNS reply dropped");
    }
}

impl AsFd for DnsForwarder {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pool.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_id_needs_a_header_and_a_clear_qr_bit() {
        let mut q = [0u8; 12];
        q[0] = 0xab;
        q[1] = 0xcd;
        assert_eq!(query_id(&q), Some(0xabcd));
        assert_eq!(query_id(&q[..11]), None);
        assert_eq!(query_id(&[]), None);
        q[2] = QR_BIT;
        assert_eq!(query_id(&q), None);
    }

    #[test]
    fn ids_are_spread_over_the_space() {
        let mut ids = IdSource::new();
        let drawn: std::collections::HashSet<u16> = (0..200).map(|_| ids.next_id()).collect();
        // 200 draws from 65536 values: collisions are rare, a constant is a bug.
        assert!(drawn.len() > 150);
    }
}
