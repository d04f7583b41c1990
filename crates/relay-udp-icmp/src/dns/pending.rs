//! The bounded table of DNS queries sent upstream and not yet answered,
//! keyed by the transaction id the forwarder gave each one. Pure: the caller
//! supplies `now` and the candidate ids.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The largest table: half the id space, so a free id is always found fast.
pub(crate) const MAX_PENDING_LIMIT: usize = 32_768;
/// Random candidates tried before a scan for a free id.
const CANDIDATE_TRIES: usize = 16;

/// One socket of the forwarder's pool, by a number never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SocketId(pub(crate) u64);

/// A guest's query waiting for its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PendingQuery {
    /// Where the guest sent the query from.
    pub(crate) guest: SocketAddr,
    /// The transaction id the guest chose, restored on the reply.
    pub(crate) guest_id: u16,
    /// The socket the query left from, the only one its reply may come to.
    pub(crate) socket: SocketId,
    deadline: Instant,
    serial: u64,
}

/// Pending queries, oldest first in `order`. Every query has one entry in
/// `order`; an entry whose query was answered stays until it reaches the
/// front (or a compaction), and is told apart by its serial. The front of
/// `order` is always a live query.
#[derive(Debug)]
pub(crate) struct PendingQueries {
    by_id: HashMap<u16, PendingQuery>,
    order: VecDeque<(u16, u64)>,
    max: usize,
    timeout: Duration,
    next_serial: u64,
}

impl PendingQueries {
    pub(crate) fn new(max: usize, timeout: Duration) -> Self {
        let max = max.clamp(1, MAX_PENDING_LIMIT);
        Self {
            by_id: HashMap::with_capacity(max.min(1024)),
            order: VecDeque::with_capacity(max.min(1024)),
            max,
            timeout,
            next_serial: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// An id no pending query uses: the first free one among a few random
    /// candidates, else the first free one after a candidate.
    pub(crate) fn free_id(&self, candidate: &mut dyn FnMut() -> u16) -> u16 {
        for _ in 0..CANDIDATE_TRIES {
            let id = candidate();
            if !self.by_id.contains_key(&id) {
                return id;
            }
        }
        let start = candidate();
        (0..=u16::MAX)
            .map(|k| start.wrapping_add(k))
            .find(|id| !self.by_id.contains_key(id))
            .unwrap_or(start)
    }

    /// Records a query sent upstream from `socket` with `upstream_id`. When
    /// the table is full, the oldest query is evicted and returned; so is a
    /// query that had the same id.
    pub(crate) fn insert(
        &mut self,
        upstream_id: u16,
        (guest, guest_id): (SocketAddr, u16),
        socket: SocketId,
        now: Instant,
    ) -> Option<PendingQuery> {
        let mut evicted = None;
        if !self.by_id.contains_key(&upstream_id) && self.by_id.len() >= self.max {
            evicted = self.pop_oldest();
        }
        let serial = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1);
        let deadline = now.checked_add(self.timeout).unwrap_or(now);
        let query = PendingQuery {
            guest,
            guest_id,
            socket,
            deadline,
            serial,
        };
        if let Some(replaced) = self.by_id.insert(upstream_id, query) {
            evicted = Some(replaced);
        }
        self.order.push_back((upstream_id, serial));
        self.prune_front();
        self.compact();
        evicted
    }

    /// The query sent with `upstream_id`, left in the table.
    pub(crate) fn get(&self, upstream_id: u16) -> Option<&PendingQuery> {
        self.by_id.get(&upstream_id)
    }

    /// Removes and returns the query sent with `upstream_id`.
    pub(crate) fn take(&mut self, upstream_id: u16) -> Option<PendingQuery> {
        let query = self.by_id.remove(&upstream_id)?;
        self.prune_front();
        Some(query)
    }

    /// Removes every query whose deadline is at or before `now`, handing
    /// each to `on_expired`; returns how many.
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        mut on_expired: impl FnMut(&PendingQuery),
    ) -> usize {
        let mut expired = 0;
        while let Some(&(id, _)) = self.order.front() {
            match self.by_id.get(&id) {
                Some(q) if q.deadline <= now => {
                    if let Some(q) = self.by_id.remove(&id) {
                        on_expired(&q);
                    }
                    self.order.pop_front();
                    self.prune_front();
                    expired += 1;
                }
                _ => break,
            }
        }
        expired
    }

    /// The earliest deadline of a pending query.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let &(id, _) = self.order.front()?;
        self.by_id.get(&id).map(|q| q.deadline)
    }

    fn pop_oldest(&mut self) -> Option<PendingQuery> {
        let (id, _) = self.order.pop_front()?;
        let query = self.by_id.remove(&id);
        self.prune_front();
        query
    }

    fn is_live(&self, (id, serial): (u16, u64)) -> bool {
        self.by_id.get(&id).is_some_and(|q| q.serial == serial)
    }

    fn prune_front(&mut self) {
        while let Some(&entry) = self.order.front() {
            if self.is_live(entry) {
                break;
            }
            self.order.pop_front();
        }
    }

    /// Drops answered entries from the middle of `order` once they
    /// outnumber the live ones, so `order` stays within twice the table.
    fn compact(&mut self) {
        if self.order.len() > self.max.saturating_mul(2).saturating_add(64) {
            let by_id = &self.by_id;
            self.order
                .retain(|(id, serial)| by_id.get(id).is_some_and(|q| q.serial == *serial));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    const S: SocketId = SocketId(0);

    fn guest(port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 15), port))
    }

    #[test]
    fn reply_takes_its_query_once() {
        let t0 = Instant::now();
        let mut p = PendingQueries::new(4, Duration::from_secs(5));
        assert!(p.insert(100, (guest(1000), 0x1234), S, t0).is_none());
        let q = p.take(100);
        assert_eq!(
            q.map(|q| (q.guest, q.guest_id)),
            Some((guest(1000), 0x1234))
        );
        assert!(p.take(100).is_none());
        assert_eq!(p.len(), 0);
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn full_table_evicts_the_oldest() {
        let t0 = Instant::now();
        let mut p = PendingQueries::new(2, Duration::from_secs(5));
        p.insert(1, (guest(1), 11), S, t0);
        p.insert(2, (guest(2), 22), S, t0 + Duration::from_secs(1));
        let evicted = p.insert(3, (guest(3), 33), S, t0 + Duration::from_secs(2));
        assert_eq!(evicted.map(|q| q.guest_id), Some(11));
        assert_eq!(p.len(), 2);
        assert!(p.take(1).is_none());
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(6)));
    }

    #[test]
    fn queries_time_out_in_order() {
        let t0 = Instant::now();
        let mut p = PendingQueries::new(8, Duration::from_secs(5));
        p.insert(1, (guest(1), 1), S, t0);
        p.insert(2, (guest(2), 2), S, t0 + Duration::from_secs(1));
        p.insert(3, (guest(3), 3), S, t0 + Duration::from_secs(2));
        p.take(2);
        assert_eq!(p.expire(t0 + Duration::from_millis(4999), |_| {}), 0);
        assert_eq!(p.expire(t0 + Duration::from_secs(6), |_| {}), 1);
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(7)));
        assert_eq!(p.expire(t0 + Duration::from_secs(60), |_| {}), 1);
        assert_eq!(p.len(), 0);
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn free_id_avoids_ids_in_use() {
        let t0 = Instant::now();
        let mut p = PendingQueries::new(8, Duration::from_secs(5));
        p.insert(7, (guest(1), 1), S, t0);
        p.insert(8, (guest(1), 1), S, t0);
        // A source stuck on used ids falls through to the scan.
        assert_eq!(p.free_id(&mut || 7), 9);
        let mut seq = [7u16, 8, 42].into_iter();
        assert_eq!(p.free_id(&mut || seq.next().unwrap_or(0)), 42);
    }

    #[test]
    fn order_stays_bounded_under_answered_queries() {
        let t0 = Instant::now();
        let mut p = PendingQueries::new(4, Duration::from_secs(5));
        p.insert(0, (guest(1), 0), S, t0);
        for i in 1..10_000u16 {
            p.insert(i, (guest(1), i), S, t0);
            p.take(i);
        }
        assert!(p.order.len() <= 4 * 2 + 64 + 1);
        assert_eq!(p.len(), 1);
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn reinserting_an_id_replaces_its_query() {
        let t0 = Instant::now();
        let mut p = PendingQueries::new(1, Duration::from_secs(5));
        p.insert(5, (guest(1), 1), S, t0);
        let replaced = p.insert(5, (guest(2), 2), S, t0);
        assert_eq!(replaced.map(|q| q.guest_id), Some(1));
        assert_eq!(p.len(), 1);
        assert_eq!(p.take(5).map(|q| q.guest_id), Some(2));
        assert_eq!(p.next_deadline(), None);
    }
}
