//! The flow table: flows by key and by generational id, with deadlines.
//!
//! Flows live in a slab of slots. A [`FlowId`] names a slot and the
//! generation the slot had when the flow was inserted; freeing a slot bumps its
//! generation, so an id kept after its flow is removed (in an epoll token, say)
//! never reaches a newer flow in the same slot. A slot whose generation would
//! wrap is retired instead of reused.
//!
//! Lookup by key goes through a `HashMap` keyed by [`FlowKey`] with std's
//! randomly keyed SipHash: keys come from the guest, so an unkeyed hash would
//! let the guest choose collisions.
//!
//! Every operation by key or by id is O(1) (amortized, for the hash map);
//! deadlines are O(log n) amortized and never scan the flows.

use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

use crate::deadline::{Armed, DeadlineQueue};
use crate::key::{FlowKey, Protocol};

/// A flow's identity: a slot index and the slot's generation at insertion.
///
/// The index is always below [`FlowId::INDEX_LIMIT`] (2^24), so an id packs
/// into a 64-bit epoll token together with an 8-bit kind and the 32-bit
/// generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowId {
    index: u32,
    generation: u32,
}

impl FlowId {
    /// Number of index bits.
    pub const INDEX_BITS: u32 = 24;
    /// Every index is below this bound (2^24).
    pub const INDEX_LIMIT: u32 = 1 << Self::INDEX_BITS;

    /// Rebuilds an id from its parts (as unpacked from a token); `None` when
    /// `index` is not below [`INDEX_LIMIT`](Self::INDEX_LIMIT). An id rebuilt
    /// from stale parts is merely stale: the table answers `None` for it.
    #[must_use]
    pub const fn from_parts(index: u32, generation: u32) -> Option<Self> {
        if index < Self::INDEX_LIMIT {
            Some(Self { index, generation })
        } else {
            None
        }
    }

    /// The slot index, below 2^24.
    #[must_use]
    pub const fn index(self) -> u32 {
        self.index
    }

    /// The slot's generation when the flow was inserted.
    #[must_use]
    pub const fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Display for FlowId {
    /// `index:generation`, e.g. `12:3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.index, self.generation)
    }
}

/// Per-protocol limits on the number of flows.
///
/// The defaults, 65 536 TCP, 16 384 UDP and 1 024 ICMP echo flows, follow the
/// order of magnitude of passt's flow table (128 Ki flows in all) while keeping
/// a guest from exhausting the host's file descriptors through one protocol:
/// every flow holds one host socket. The total must stay below
/// [`FlowId::INDEX_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Maximum number of TCP flows.
    pub tcp: u32,
    /// Maximum number of UDP flows.
    pub udp: u32,
    /// Maximum number of ICMP echo flows (ICMP and ICMPv6 together).
    pub icmp: u32,
}

impl Limits {
    /// The default limits: 65 536 TCP, 16 384 UDP, 1 024 ICMP.
    pub const DEFAULT: Self = Self {
        tcp: 65_536,
        udp: 16_384,
        icmp: 1_024,
    };

    /// The limit for `protocol`.
    #[must_use]
    pub const fn get(&self, protocol: Protocol) -> u32 {
        match protocol {
            Protocol::Tcp => self.tcp,
            Protocol::Udp => self.udp,
            Protocol::Icmp => self.icmp,
        }
    }

    /// Limits for a process that may give `descriptors` file descriptors
    /// to flows (each open flow holds one host socket): the defaults'
    /// shares (64 : 16 : 1), each no larger than its default, adding up to
    /// at most `descriptors`. How many descriptors that is, is the caller's
    /// to say: this crate knows no process limits.
    #[must_use]
    pub fn for_fd_budget(descriptors: u64) -> Self {
        let d = Self::DEFAULT;
        let cap = descriptors.min(d.total());
        let share = |limit: u32| cap * u64::from(limit) / d.total();
        let tcp = share(d.tcp);
        let udp = share(d.udp);
        let icmp = cap - tcp - udp;
        let fit = |n: u64, limit: u32| u32::try_from(n).unwrap_or(limit).min(limit);
        Self {
            tcp: fit(tcp, d.tcp),
            udp: fit(udp, d.udp),
            icmp: fit(icmp, d.icmp),
        }
    }

    /// The sum of the three limits.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.tcp as u64 + self.udp as u64 + self.icmp as u64
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Limits that a table cannot honour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// The limits add up to more flows than ids can index.
    #[error(
        "flow limits add up to {total} flows; the total must be below {}",
        FlowId::INDEX_LIMIT
    )]
    TotalTooLarge {
        /// The sum of the limits.
        total: u64,
    },
}

/// Why [`FlowTable::insert`] refused a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// A flow with this key exists already, under this id.
    #[error("flow {0} already has this key")]
    Exists(FlowId),
    /// The table holds as many flows of this protocol as its limits allow.
    #[error("{0} flow limit reached")]
    CapacityReached(Protocol),
    /// Every index below 2^24 is taken or retired. Reaching this needs on
    /// the order of 2^56 insertions, since a slot retires only after 2^32
    /// reuses.
    #[error("no flow index left below {}", FlowId::INDEX_LIMIT)]
    IndicesExhausted,
}

/// A flow in an occupied slot.
#[derive(Debug, Clone)]
struct Occupant<T> {
    key: FlowKey,
    value: T,
}

#[derive(Debug, Clone)]
enum SlotState<T> {
    Occupied(Occupant<T>),
    /// Free, linking to the next free slot; or retired, linking nowhere and
    /// on no list.
    Vacant {
        next_free: Option<u32>,
    },
}

#[derive(Debug, Clone)]
struct Slot<T> {
    generation: u32,
    /// The deadline this slot holds in the queue; `None` when vacant.
    armed: Option<Armed>,
    state: SlotState<T>,
}

/// Flows of type `T` by [`FlowKey`] and by [`FlowId`], with per-protocol
/// limits and one optional deadline per flow.
#[derive(Debug, Clone)]
pub struct FlowTable<T> {
    slots: Vec<Slot<T>>,
    by_key: HashMap<FlowKey, u32>,
    free_head: Option<u32>,
    counts: [u32; 3],
    limits: Limits,
    deadlines: DeadlineQueue<FlowId>,
}

impl<T> Default for FlowTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether the slab says `id` still holds `armed`.
fn holds<T>(slots: &[Slot<T>], id: FlowId, armed: Armed) -> bool {
    slots
        .get(id.index as usize)
        .is_some_and(|slot| slot.generation == id.generation && slot.armed == Some(armed))
}

impl<T> FlowTable<T> {
    /// An empty table with [`Limits::DEFAULT`].
    #[must_use]
    pub fn new() -> Self {
        Self::with_valid_limits(Limits::DEFAULT)
    }

    /// An empty table with `limits`.
    ///
    /// # Errors
    ///
    /// [`LimitsError::TotalTooLarge`] when the limits add up to
    /// [`FlowId::INDEX_LIMIT`] or more.
    pub fn with_limits(limits: Limits) -> Result<Self, LimitsError> {
        let total = limits.total();
        if total >= u64::from(FlowId::INDEX_LIMIT) {
            return Err(LimitsError::TotalTooLarge { total });
        }
        Ok(Self::with_valid_limits(limits))
    }

    fn with_valid_limits(limits: Limits) -> Self {
        Self {
            slots: Vec::new(),
            by_key: HashMap::new(),
            free_head: None,
            counts: [0; 3],
            limits,
            deadlines: DeadlineQueue::new(),
        }
    }

    /// The table's limits.
    #[must_use]
    pub const fn limits(&self) -> Limits {
        self.limits
    }

    /// Inserts a flow under `key`.
    ///
    /// # Errors
    ///
    /// [`InsertError::Exists`] when `key` has a flow already,
    /// [`InsertError::CapacityReached`] when the key's protocol is at its
    /// limit, [`InsertError::IndicesExhausted`] when no index is left. `value`
    /// is dropped on error; use [`insert_with`](Self::insert_with) to build it
    /// only on success.
    pub fn insert(&mut self, key: FlowKey, value: T) -> Result<FlowId, InsertError> {
        self.insert_with(key, |_| value)
    }

    /// Inserts a flow under `key`, building its value from its id once the
    /// table has room for it. Errors as for [`insert`](Self::insert); `make`
    /// is not called on error.
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub fn insert_with(
        &mut self,
        key: FlowKey,
        make: impl FnOnce(FlowId) -> T,
    ) -> Result<FlowId, InsertError> {
        if let Some(id) = self.lookup(&key) {
            return Err(InsertError::Exists(id));
        }
        let protocol = key.protocol();
        if self.counts[protocol.index()] >= self.limits.get(protocol) {
            return Err(InsertError::CapacityReached(protocol));
        }
        let index = self.take_free_index()?;
        let slot = &mut self.slots[index as usize];
        let id = FlowId {
            index,
            generation: slot.generation,
        };
        slot.state = SlotState::Occupied(Occupant {
            key,
            value: make(id),
        });
        self.by_key.insert(key, index);
        self.counts[protocol.index()] += 1;
        Ok(id)
    }

    /// Pops an index off the free list, or grows the slab.
    fn take_free_index(&mut self) -> Result<u32, InsertError> {
        if let Some(index) = self.free_head {
            // The free list links only vacant slots; were a link broken, the
            // list would end there and the slab would grow instead.
            self.free_head = None;
            if let Some(Slot {
                state: SlotState::Vacant { next_free },
                ..
            }) = self.slots.get(index as usize)
            {
                self.free_head = *next_free;
                return Ok(index);
            }
        }
        let index = u32::try_from(self.slots.len())
            .ok()
            .filter(|&index| index < FlowId::INDEX_LIMIT)
            .ok_or(InsertError::IndicesExhausted)?;
        self.slots.push(Slot {
            generation: 0,
            armed: None,
            state: SlotState::Vacant { next_free: None },
        });
        Ok(index)
    }

    /// The id of the flow with `key`.
    #[must_use]
    pub fn lookup(&self, key: &FlowKey) -> Option<FlowId> {
        let &index = self.by_key.get(key)?;
        let slot = self.slots.get(index as usize)?;
        Some(FlowId {
            index,
            generation: slot.generation,
        })
    }

    fn occupant(&self, id: FlowId) -> Option<&Occupant<T>> {
        let slot = self.slots.get(id.index as usize)?;
        match &slot.state {
            SlotState::Occupied(occupant) if slot.generation == id.generation => Some(occupant),
            SlotState::Occupied(_) | SlotState::Vacant { .. } => None,
        }
    }

    /// Whether `id` names a flow in the table (is not stale).
    #[must_use]
    pub fn contains(&self, id: FlowId) -> bool {
        self.occupant(id).is_some()
    }

    /// The value of flow `id`; `None` when `id` is stale.
    #[must_use]
    pub fn get(&self, id: FlowId) -> Option<&T> {
        self.occupant(id).map(|occupant| &occupant.value)
    }

    /// The value of flow `id`, mutably; `None` when `id` is stale.
    #[must_use]
    pub fn get_mut(&mut self, id: FlowId) -> Option<&mut T> {
        let slot = self.slots.get_mut(id.index as usize)?;
        match &mut slot.state {
            SlotState::Occupied(occupant) if slot.generation == id.generation => {
                Some(&mut occupant.value)
            }
            SlotState::Occupied(_) | SlotState::Vacant { .. } => None,
        }
    }

    /// The key of flow `id`; `None` when `id` is stale.
    #[must_use]
    pub fn key(&self, id: FlowId) -> Option<&FlowKey> {
        self.occupant(id).map(|occupant| &occupant.key)
    }

    /// Removes flow `id`, returning its key and value; `None` when `id` is
    /// stale. The flow's deadline goes with it, and `id` is stale from now on.
    pub fn remove(&mut self, id: FlowId) -> Option<(FlowKey, T)> {
        self.occupant(id)?;
        let slot = self.slots.get_mut(id.index as usize)?;
        let armed = slot.armed.take();
        // A slot at the last generation is retired: it stays vacant and off
        // the free list, so no id it ever had can reach a newer flow.
        let retire = slot.generation == u32::MAX;
        if !retire {
            slot.generation += 1;
        }
        let next_free = if retire { None } else { self.free_head };
        let state = std::mem::replace(&mut slot.state, SlotState::Vacant { next_free });
        let SlotState::Occupied(Occupant { key, value }) = state else {
            return None;
        };
        if !retire {
            self.free_head = Some(id.index);
        }
        self.by_key.remove(&key);
        let count = &mut self.counts[key.protocol().index()];
        *count = count.saturating_sub(1);
        if let Some(armed) = armed {
            let slots = &self.slots;
            self.deadlines
                .disarm(armed, |id, armed| holds(slots, id, armed));
        }
        Some((key, value))
    }

    /// The number of flows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether the table holds no flow.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The number of flows of `protocol`.
    #[must_use]
    pub const fn count(&self, protocol: Protocol) -> u32 {
        self.counts[protocol.index()]
    }

    /// Every flow, in slot order. O(slots): for diagnostics and shutdown,
    /// not the data path.
    pub fn iter(&self) -> impl Iterator<Item = (FlowId, &FlowKey, &T)> + '_ {
        self.slots
            .iter()
            .zip(0u32..)
            .filter_map(|(slot, index)| match &slot.state {
                SlotState::Occupied(occupant) => Some((
                    FlowId {
                        index,
                        generation: slot.generation,
                    },
                    &occupant.key,
                    &occupant.value,
                )),
                SlotState::Vacant { .. } => None,
            })
    }

    /// Every flow with its value mutable, in slot order. O(slots).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (FlowId, &FlowKey, &mut T)> + '_ {
        self.slots
            .iter_mut()
            .zip(0u32..)
            .filter_map(|(slot, index)| match &mut slot.state {
                SlotState::Occupied(occupant) => Some((
                    FlowId {
                        index,
                        generation: slot.generation,
                    },
                    &occupant.key,
                    &mut occupant.value,
                )),
                SlotState::Vacant { .. } => None,
            })
    }

    /// Sets (`Some`) or clears (`None`) the deadline of flow `id`, replacing
    /// any previous one. Returns `false`, changing nothing, when `id` is stale.
    pub fn set_deadline(&mut self, id: FlowId, at: Option<Instant>) -> bool {
        if !self.contains(id) {
            return false;
        }
        let Some(slot) = self.slots.get_mut(id.index as usize) else {
            return false;
        };
        if let Some(previous) = slot.armed.take() {
            let slots = &self.slots;
            self.deadlines
                .disarm(previous, |id, armed| holds(slots, id, armed));
        }
        if let Some(at) = at {
            let slots = &self.slots;
            let armed = self
                .deadlines
                .arm(id, at, |id, armed| holds(slots, id, armed));
            if let Some(slot) = self.slots.get_mut(id.index as usize) {
                slot.armed = Some(armed);
            }
        }
        true
    }

    /// The deadline of flow `id`, if it has one; `None` too when `id` is stale.
    #[must_use]
    pub fn deadline(&self, id: FlowId) -> Option<Instant> {
        self.occupant(id)?;
        let slot = self.slots.get(id.index as usize)?;
        slot.armed.map(|armed| armed.at())
    }

    /// The earliest deadline of any flow. Amortized O(log n): discards stale
    /// queue entries on top, never scans the flows.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        let slots = &self.slots;
        self.deadlines
            .next_deadline(|id, armed| holds(slots, id, armed))
    }

    /// A flow whose deadline is at or before `now`, earliest first (equal
    /// deadlines in the order they were set), with its deadline cleared; call
    /// until `None`. Each `set_deadline` yields the flow at most once, and a
    /// removed flow never comes out.
    pub fn pop_expired(&mut self, now: Instant) -> Option<FlowId> {
        let slots = &self.slots;
        let (id, _) = self
            .deadlines
            .pop_expired(now, |id, armed| holds(slots, id, armed))?;
        if let Some(slot) = self.slots.get_mut(id.index as usize) {
            slot.armed = None;
        }
        Some(id)
    }

    /// The number of deadline queue entries, stale ones included. Diagnostic:
    /// stays within `3 * (flows with a deadline) + 65` after `set_deadline`
    /// and `remove`.
    #[must_use]
    pub fn deadline_queue_len(&self) -> usize {
        self.deadlines.heap_len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;

    #[test]
    fn limits_for_an_fd_budget_fit_it_and_keep_the_defaults_shares() {
        assert_eq!(Limits::for_fd_budget(u64::MAX), Limits::DEFAULT);
        assert_eq!(
            Limits::for_fd_budget(Limits::DEFAULT.total()),
            Limits::DEFAULT
        );
        for budget in [0, 1, 81, 960, 1024 - 64, 65_472, 100_000] {
            let limits = Limits::for_fd_budget(budget);
            assert!(limits.total() <= budget, "{budget}: {limits:?}");
            assert!(limits.tcp <= Limits::DEFAULT.tcp && limits.udp <= Limits::DEFAULT.udp);
            assert!(limits.icmp <= Limits::DEFAULT.icmp);
        }
        let limits = Limits::for_fd_budget(960);
        assert_eq!((limits.tcp, limits.udp, limits.icmp), (758, 189, 13));
    }

    fn key(protocol: Protocol, port: u16) -> FlowKey {
        let guest: SocketAddr = SocketAddr::from(([10, 0, 2, 15], port));
        let dest: SocketAddr = SocketAddr::from(([192, 0, 2, 1], 80));
        FlowKey::new(protocol, guest, dest).unwrap()
    }

    #[test]
    fn stale_id_never_reaches_newer_flow() {
        let mut table = FlowTable::new();
        let old = table.insert(key(Protocol::Tcp, 1), "old").unwrap();
        table.remove(old).unwrap();
        let new = table.insert(key(Protocol::Tcp, 2), "new").unwrap();
        assert_eq!(new.index(), old.index(), "the slot is reused");
        assert_ne!(new.generation(), old.generation());
        assert_eq!(table.get(old), None);
        assert_eq!(table.key(old), None);
        assert!(!table.set_deadline(old, Some(Instant::now())));
        assert_eq!(table.deadline(new), None);
        assert_eq!(table.remove(old), None);
        assert_eq!(table.get(new), Some(&"new"));
    }

    #[test]
    fn slot_whose_generation_would_wrap_is_retired() {
        let mut table = FlowTable::new();
        let first = table.insert(key(Protocol::Udp, 1), ()).unwrap();
        table.slots[first.index() as usize].generation = u32::MAX;
        let last = table.lookup(&key(Protocol::Udp, 1)).unwrap();
        assert_eq!(last.generation(), u32::MAX);
        table.remove(last).unwrap();
        let next = table.insert(key(Protocol::Udp, 2), ()).unwrap();
        assert_ne!(next.index(), last.index(), "the wrapped slot is not reused");
        assert_eq!(table.get(first), None);
        assert_eq!(table.get(last), None);
        assert_eq!(table.iter().count(), 1);
    }

    #[test]
    fn duplicate_key_is_refused_with_existing_id() {
        let mut table = FlowTable::new();
        let id = table.insert(key(Protocol::Tcp, 1), 1).unwrap();
        assert_eq!(
            table.insert(key(Protocol::Tcp, 1), 2),
            Err(InsertError::Exists(id))
        );
        assert_eq!(table.get(id), Some(&1));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn per_protocol_limit_refuses_only_that_protocol() {
        let limits = Limits {
            tcp: 2,
            udp: 1,
            icmp: 0,
        };
        let mut table = FlowTable::with_limits(limits).unwrap();
        table.insert(key(Protocol::Tcp, 1), ()).unwrap();
        let second = table.insert(key(Protocol::Tcp, 2), ()).unwrap();
        assert_eq!(
            table.insert(key(Protocol::Tcp, 3), ()),
            Err(InsertError::CapacityReached(Protocol::Tcp))
        );
        assert_eq!(
            table.insert(key(Protocol::Icmp, 3), ()),
            Err(InsertError::CapacityReached(Protocol::Icmp))
        );
        table.insert(key(Protocol::Udp, 3), ()).unwrap();
        assert_eq!(table.count(Protocol::Tcp), 2);
        table.remove(second).unwrap();
        table.insert(key(Protocol::Tcp, 3), ()).unwrap();
    }

    #[test]
    fn limits_at_index_space_are_refused() {
        let too_many = Limits {
            tcp: FlowId::INDEX_LIMIT - 1,
            udp: 1,
            icmp: 0,
        };
        assert!(FlowTable::<()>::with_limits(too_many).is_err());
        let ok = Limits {
            tcp: FlowId::INDEX_LIMIT - 2,
            udp: 1,
            icmp: 0,
        };
        assert!(FlowTable::<()>::with_limits(ok).is_ok());
        assert!(Limits::DEFAULT.total() < u64::from(FlowId::INDEX_LIMIT));
    }

    #[test]
    fn insert_with_passes_the_new_id() {
        let mut table = FlowTable::new();
        let id = table.insert_with(key(Protocol::Tcp, 1), |id| id).unwrap();
        assert_eq!(table.get(id), Some(&id));
        let mut called = false;
        let refused = table.insert_with(key(Protocol::Tcp, 1), |id| {
            called = true;
            id
        });
        assert_eq!(refused, Err(InsertError::Exists(id)));
        assert!(!called);
    }

    #[test]
    fn removed_flow_deadline_never_pops() {
        let t0 = Instant::now();
        let mut table = FlowTable::new();
        let a = table.insert(key(Protocol::Tcp, 1), ()).unwrap();
        let b = table.insert(key(Protocol::Tcp, 2), ()).unwrap();
        assert!(table.set_deadline(a, Some(t0)));
        assert!(table.set_deadline(b, Some(t0 + Duration::from_secs(1))));
        table.remove(a).unwrap();
        // The slot is reused by a flow without a deadline.
        let c = table.insert(key(Protocol::Tcp, 3), ()).unwrap();
        assert_eq!(c.index(), a.index());
        assert_eq!(table.next_deadline(), Some(t0 + Duration::from_secs(1)));
        let later = t0 + Duration::from_secs(5);
        assert_eq!(table.pop_expired(later), Some(b));
        assert_eq!(table.pop_expired(later), None);
        assert_eq!(table.deadline(b), None);
        assert_eq!(table.next_deadline(), None);
    }

    #[test]
    fn flow_id_parts_round_trip_below_index_limit() {
        let id = FlowId::from_parts(FlowId::INDEX_LIMIT - 1, 7).unwrap();
        assert_eq!((id.index(), id.generation()), (FlowId::INDEX_LIMIT - 1, 7));
        assert_eq!(FlowId::from_parts(FlowId::INDEX_LIMIT, 0), None);
        assert_eq!(id.to_string(), "16777215:7");
    }

    /// Bytes of one `HashMap<FlowKey, u32>` bucket: the entry and its control
    /// byte. Hashbrown keeps at most 7/8 of its buckets full and doubles when
    /// full, so a flow costs between 8/7 and 16/7 buckets.
    const MAP_BUCKET_BYTES: usize = std::mem::size_of::<(FlowKey, u32)>() + 1;

    fn slot_bytes<T>() -> usize {
        std::mem::size_of::<Slot<T>>()
    }

    #[test]
    fn user_space_bytes_per_flow() {
        let key_bytes = std::mem::size_of::<FlowKey>();
        let slot = slot_bytes::<()>();
        let heap_entry = DeadlineQueue::<FlowId>::ENTRY_BYTES;
        // A full-ish table: every flow in the slab, the map and one heap entry.
        let nominal = slot + MAP_BUCKET_BYTES * 8 / 7 + heap_entry;
        // Just after growth: slab and map at double size, heap at its
        // stale-entry bound of three entries per armed flow.
        let worst = 2 * slot + MAP_BUCKET_BYTES * 16 / 7 + 2 * 3 * heap_entry;
        println!(
            "FlowTable<()>: key {key_bytes} B, slot {slot} B (key inside), map bucket \
             {MAP_BUCKET_BYTES} B, heap entry {heap_entry} B; per flow nominal {nominal} B, \
             worst after growth {worst} B"
        );

        // Measured: 100 000 armed flows, capacities as allocated.
        let t0 = Instant::now();
        let limits = Limits {
            tcp: 100_000,
            udp: 0,
            icmp: 0,
        };
        let mut table = FlowTable::with_limits(limits).unwrap();
        for port in 0..100_000u32 {
            let guest = SocketAddr::from(([10, 0, (port >> 16) as u8, 15], port as u16));
            let dest = SocketAddr::from(([192, 0, 2, 1], 80));
            let id = table
                .insert(FlowKey::new(Protocol::Tcp, guest, dest).unwrap(), ())
                .unwrap();
            table.set_deadline(id, Some(t0 + Duration::from_millis(port.into())));
        }
        let buckets = (table.by_key.capacity() * 8 / 7).next_power_of_two();
        let measured = table.slots.capacity() * slot
            + buckets * MAP_BUCKET_BYTES
            + table.deadlines.heap_capacity() * heap_entry;
        let per_flow = measured / table.len();
        println!("measured with 100000 armed flows: {per_flow} B per flow");
        for (name, size) in [
            ("u64", slot_bytes::<u64>()),
            ("[u8; 128]", slot_bytes::<[u8; 128]>()),
        ] {
            println!(
                "FlowTable<{name}>: slot {size} B; a value of type T adds \
                 size_of::<T>() to the slot, rounded up to the slot's alignment"
            );
        }
        assert_eq!(key_bytes, 38);
        assert!(slot <= 72, "slot of FlowTable<()> is {slot} B");
        assert!(nominal <= 160, "nominal {nominal} B per flow");
        assert!(worst <= 512, "worst {worst} B per flow");
        assert!(per_flow <= 320, "measured {per_flow} B per flow");
    }
}
