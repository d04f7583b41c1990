//! A deadline queue that yields the earliest deadline without scanning flows.
//!
//! [`DeadlineQueue`] is a min-heap of armings with lazy invalidation: the
//! owner of a deadline (a flow table slot) stores the [`Armed`] value that
//! [`DeadlineQueue::arm`] returns, and a heap entry counts only while its owner
//! still holds that exact value. Re-arming or disarming leaves the old entry in
//! the heap as a stale entry; stale entries are skipped when they reach the
//! top, and the heap is compacted when they outnumber live ones by
//! `2 * live + 64`, so a flow that re-arms on every packet cannot grow it
//! without bound.
//!
//! The queue does not store who holds which arming: every method that may
//! drop stale entries takes an `is_current(key, armed)` predicate that answers
//! "does the owner named by `key` still hold `armed`?". The predicate must hold
//! for exactly the armings that owners still hold, and each owner holds at most
//! one: disarm (or pop) the previous arming before arming again.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

/// Stale entries tolerated beyond twice the live ones before compaction.
const STALE_SLACK: usize = 64;

/// One arming of a deadline: the instant and a sequence number unique within
/// its queue, so re-arming at the same instant is still a different arming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Armed {
    at: Instant,
    seq: u64,
}

impl Armed {
    /// When the deadline expires.
    #[must_use]
    pub const fn at(&self) -> Instant {
        self.at
    }
}

/// A heap entry; ordered by instant, then by arming order.
#[derive(Debug, Clone, Copy)]
struct Entry<K> {
    armed: Armed,
    key: K,
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, other: &Self) -> bool {
        self.armed == other.armed
    }
}

impl<K> Eq for Entry<K> {}

impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Entry<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.armed.at, self.armed.seq).cmp(&(other.armed.at, other.armed.seq))
    }
}

/// A min-heap of deadlines keyed by `K` (for the flow table, a
/// [`FlowId`](crate::table::FlowId)), with lazy invalidation.
///
/// Deadlines with equal instants come out in the order they were armed.
#[derive(Debug, Clone)]
pub struct DeadlineQueue<K> {
    heap: BinaryHeap<Reverse<Entry<K>>>,
    /// Armings that owners still hold; each has exactly one heap entry.
    live: usize,
    next_seq: u64,
}

impl<K: Copy> Default for DeadlineQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy> DeadlineQueue<K> {
    /// An empty queue.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            live: 0,
            next_seq: 0,
        }
    }

    /// Arms a deadline at `at` for the owner named by `key`, which must hold
    /// no other arming (disarm it first). The owner stores the returned
    /// [`Armed`]; `is_current` must not yet report it as held.
    pub fn arm(&mut self, key: K, at: Instant, is_current: impl FnMut(K, Armed) -> bool) -> Armed {
        self.compact_if_needed(is_current);
        let armed = Armed {
            at,
            seq: self.next_seq,
        };
        // A u64 incremented once per arming does not wrap in practice; were it
        // to, only the FIFO order among equal instants would change.
        self.next_seq = self.next_seq.wrapping_add(1);
        self.heap.push(Reverse(Entry { armed, key }));
        self.live += 1;
        armed
    }

    /// Records that an owner dropped `armed` (it re-arms, clears its deadline
    /// or goes away); its heap entry is now stale. `is_current` must no longer
    /// report `armed` as held.
    pub fn disarm(&mut self, armed: Armed, is_current: impl FnMut(K, Armed) -> bool) {
        let _ = armed;
        self.live = self.live.saturating_sub(1);
        if self.live == 0 {
            // Every entry is stale; entries are `Copy`, so this is cheap.
            self.heap.clear();
        } else {
            self.compact_if_needed(is_current);
        }
    }

    /// The earliest held deadline, discarding stale entries on top.
    pub fn next_deadline(
        &mut self,
        mut is_current: impl FnMut(K, Armed) -> bool,
    ) -> Option<Instant> {
        self.discard_stale_top(&mut is_current);
        self.heap.peek().map(|Reverse(entry)| entry.armed.at)
    }

    /// The held arming with the earliest deadline, if that deadline is at or
    /// before `now`. The returned arming is no longer live: the owner must
    /// forget it (without calling [`disarm`](Self::disarm)).
    pub fn pop_expired(
        &mut self,
        now: Instant,
        mut is_current: impl FnMut(K, Armed) -> bool,
    ) -> Option<(K, Armed)> {
        self.discard_stale_top(&mut is_current);
        let Reverse(top) = self.heap.peek()?;
        if top.armed.at > now {
            return None;
        }
        let Reverse(entry) = self.heap.pop()?;
        self.live = self.live.saturating_sub(1);
        Some((entry.key, entry.armed))
    }

    /// The number of armings owners still hold.
    #[must_use]
    pub const fn live(&self) -> usize {
        self.live
    }

    /// The number of heap entries, stale ones included; stays at most
    /// `3 * live + 65` after each `arm` or `disarm`.
    #[must_use]
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }

    /// Bytes of one heap entry.
    #[cfg(test)]
    pub(crate) const ENTRY_BYTES: usize = std::mem::size_of::<Reverse<Entry<K>>>();

    /// Heap entries allocated for.
    #[cfg(test)]
    pub(crate) fn heap_capacity(&self) -> usize {
        self.heap.capacity()
    }

    fn discard_stale_top(&mut self, is_current: &mut impl FnMut(K, Armed) -> bool) {
        while let Some(Reverse(top)) = self.heap.peek() {
            if is_current(top.key, top.armed) {
                return;
            }
            self.heap.pop();
        }
    }

    fn compact_if_needed(&mut self, mut is_current: impl FnMut(K, Armed) -> bool) {
        let stale = self.heap.len().saturating_sub(self.live);
        if stale > self.live.saturating_mul(2).saturating_add(STALE_SLACK) {
            self.heap
                .retain(|Reverse(entry)| is_current(entry.key, entry.armed));
            // The predicate is the truth; resynchronise in case an owner broke
            // the one-arming-each contract.
            self.live = self.heap.len();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::time::Duration;

    /// Owners `0..n`, each holding at most one arming.
    struct Owners {
        queue: DeadlineQueue<usize>,
        held: Vec<Option<Armed>>,
    }

    impl Owners {
        fn new(n: usize) -> Self {
            Self {
                queue: DeadlineQueue::new(),
                held: vec![None; n],
            }
        }

        fn set(&mut self, owner: usize, at: Option<Instant>) {
            if let Some(previous) = self.held[owner].take() {
                let held = &self.held;
                self.queue.disarm(previous, |k, a| held[k] == Some(a));
            }
            if let Some(at) = at {
                let held = &self.held;
                let armed = self.queue.arm(owner, at, |k, a| held[k] == Some(a));
                self.held[owner] = Some(armed);
            }
        }

        fn next(&mut self) -> Option<Instant> {
            let held = &self.held;
            self.queue.next_deadline(|k, a| held[k] == Some(a))
        }

        fn pop(&mut self, now: Instant) -> Option<usize> {
            let held = &self.held;
            let (owner, armed) = self.queue.pop_expired(now, |k, a| held[k] == Some(a))?;
            assert_eq!(self.held[owner], Some(armed));
            self.held[owner] = None;
            Some(owner)
        }
    }

    #[test]
    fn deadlines_pop_in_order_and_equal_instants_in_arming_order() {
        let t0 = Instant::now();
        let mut o = Owners::new(4);
        o.set(0, Some(t0 + Duration::from_secs(3)));
        o.set(1, Some(t0 + Duration::from_secs(1)));
        o.set(2, Some(t0 + Duration::from_secs(3)));
        o.set(3, Some(t0 + Duration::from_secs(2)));
        assert_eq!(o.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(o.pop(t0), None);
        let now = t0 + Duration::from_secs(10);
        let order: Vec<_> = std::iter::from_fn(|| o.pop(now)).collect();
        assert_eq!(order, [1, 3, 0, 2]);
        assert_eq!(o.next(), None);
    }

    #[test]
    fn rearmed_deadline_pops_once_at_its_new_instant() {
        let t0 = Instant::now();
        let mut o = Owners::new(1);
        o.set(0, Some(t0 + Duration::from_secs(1)));
        o.set(0, Some(t0 + Duration::from_secs(5)));
        o.set(0, Some(t0 + Duration::from_secs(1)));
        o.set(0, Some(t0 + Duration::from_secs(5)));
        assert_eq!(o.next(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(o.pop(t0 + Duration::from_secs(4)), None);
        assert_eq!(o.pop(t0 + Duration::from_secs(5)), Some(0));
        assert_eq!(o.pop(t0 + Duration::from_secs(9)), None);
        assert_eq!(o.next(), None);
    }

    #[test]
    fn cleared_deadline_never_pops() {
        let t0 = Instant::now();
        let mut o = Owners::new(2);
        o.set(0, Some(t0));
        o.set(1, Some(t0 + Duration::from_secs(1)));
        o.set(0, None);
        assert_eq!(o.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(o.pop(t0 + Duration::from_secs(2)), Some(1));
        assert_eq!(o.pop(t0 + Duration::from_secs(2)), None);
    }

    #[test]
    fn heap_stays_bounded_under_constant_rearming() {
        let t0 = Instant::now();
        let mut o = Owners::new(10);
        for i in 0..100_000u64 {
            let owner = usize::try_from(i % 10).unwrap();
            o.set(owner, Some(t0 + Duration::from_millis(i % 7)));
            let live = o.queue.live();
            assert!(o.queue.heap_len() <= 3 * live + STALE_SLACK + 1);
        }
        assert_eq!(o.queue.live(), 10);
    }
}
