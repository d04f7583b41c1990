//! Model-based property tests: `FlowTable` against a `HashMap` reference
//! under random sequences of inserts, removals, lookups, stale-id accesses
//! and deadline operations on a virtual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use flow_table::key::{FlowKey, Protocol};
use flow_table::table::{FlowId, FlowTable, InsertError, Limits};
use proptest::prelude::*;

const LIMITS: Limits = Limits {
    tcp: 3,
    udp: 2,
    icmp: 1,
};

/// 24 keys: 3 protocols x 2 IP versions x 4 guest ports.
fn key_space(choice: u8) -> FlowKey {
    let protocol = Protocol::ALL[usize::from(choice % 3)];
    let port = 1000 + u16::from((choice / 3) % 4);
    let (guest, dest): (IpAddr, IpAddr) = if (choice / 12) % 2 == 0 {
        (
            Ipv4Addr::new(10, 0, 2, 15).into(),
            Ipv4Addr::new(192, 0, 2, 1).into(),
        )
    } else {
        (
            Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0x15).into(),
            Ipv6Addr::LOCALHOST.into(),
        )
    };
    FlowKey::new(
        protocol,
        SocketAddr::new(guest, port),
        SocketAddr::new(dest, 80),
    )
    .unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    Insert { key: u8, value: u32 },
    Remove { id: usize },
    Lookup { key: u8 },
    Get { id: usize },
    GetMut { id: usize, value: u32 },
    SetDeadline { id: usize, after_ms: Option<u8> },
    Advance { ms: u8 },
    PopExpired,
    NextDeadline,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), any::<u32>()).prop_map(|(key, value)| Op::Insert { key, value }),
        2 => any::<usize>().prop_map(|id| Op::Remove { id }),
        2 => any::<u8>().prop_map(|key| Op::Lookup { key }),
        2 => any::<usize>().prop_map(|id| Op::Get { id }),
        1 => (any::<usize>(), any::<u32>()).prop_map(|(id, value)| Op::GetMut { id, value }),
        4 => (any::<usize>(), proptest::option::weighted(0.8, 0u8..50))
            .prop_map(|(id, after_ms)| Op::SetDeadline { id, after_ms }),
        2 => (0u8..30).prop_map(|ms| Op::Advance { ms }),
        3 => Just(Op::PopExpired),
        1 => Just(Op::NextDeadline),
    ]
}

#[derive(Debug, Clone, Copy)]
struct ModelFlow {
    id: FlowId,
    value: u32,
    /// The deadline and the order in which it was set.
    deadline: Option<(Instant, u64)>,
}

struct Harness {
    table: FlowTable<u32>,
    flows: HashMap<FlowKey, ModelFlow>,
    /// Every id the table ever issued, live or stale.
    issued: Vec<FlowId>,
    now: Instant,
    next_seq: u64,
}

impl Harness {
    fn new() -> Self {
        Self {
            table: FlowTable::with_limits(LIMITS).unwrap(),
            flows: HashMap::new(),
            issued: Vec::new(),
            now: Instant::now(),
            next_seq: 0,
        }
    }

    fn pick(&self, choice: usize) -> Option<FlowId> {
        if self.issued.is_empty() {
            None
        } else {
            Some(self.issued[choice % self.issued.len()])
        }
    }

    fn live(&self, id: FlowId) -> Option<(FlowKey, ModelFlow)> {
        self.flows
            .iter()
            .find(|(_, flow)| flow.id == id)
            .map(|(key, flow)| (*key, *flow))
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Insert { key, value } => self.insert(key_space(key), value),
            Op::Remove { id } => {
                let Some(id) = self.pick(id) else { return };
                let expected = self.live(id);
                let removed = self.table.remove(id);
                match expected {
                    Some((key, flow)) => {
                        assert_eq!(removed, Some((key, flow.value)));
                        self.flows.remove(&key);
                    }
                    None => assert_eq!(removed, None, "stale id {id} removed something"),
                }
            }
            Op::Lookup { key } => {
                let key = key_space(key);
                assert_eq!(self.table.lookup(&key), self.flows.get(&key).map(|f| f.id));
            }
            Op::Get { id } => {
                let Some(id) = self.pick(id) else { return };
                let expected = self.live(id);
                assert_eq!(self.table.get(id).copied(), expected.map(|(_, f)| f.value));
                assert_eq!(self.table.key(id).copied(), expected.map(|(k, _)| k));
            }
            Op::GetMut { id, value } => {
                let Some(id) = self.pick(id) else { return };
                match self.live(id) {
                    Some((key, _)) => {
                        *self.table.get_mut(id).unwrap() = value;
                        self.flows.get_mut(&key).unwrap().value = value;
                    }
                    None => assert!(self.table.get_mut(id).is_none()),
                }
            }
            Op::SetDeadline { id, after_ms } => {
                let Some(id) = self.pick(id) else { return };
                let at = after_ms.map(|ms| self.now + Duration::from_millis(ms.into()));
                let accepted = self.table.set_deadline(id, at);
                match self.live(id) {
                    Some((key, _)) => {
                        assert!(accepted);
                        let seq = self.next_seq;
                        self.next_seq += 1;
                        self.flows.get_mut(&key).unwrap().deadline = at.map(|at| (at, seq));
                    }
                    None => assert!(!accepted, "stale id {id} accepted a deadline"),
                }
            }
            Op::Advance { ms } => self.now += Duration::from_millis(ms.into()),
            Op::PopExpired => self.pop_expired(),
            Op::NextDeadline => {
                let expected = self.flows.values().filter_map(|f| f.deadline).min();
                assert_eq!(self.table.next_deadline(), expected.map(|(at, _)| at));
            }
        }
    }

    fn insert(&mut self, key: FlowKey, value: u32) {
        let result = self.table.insert(key, value);
        if let Some(existing) = self.flows.get(&key) {
            assert_eq!(result, Err(InsertError::Exists(existing.id)));
            return;
        }
        let protocol = key.protocol();
        let count = self
            .flows
            .keys()
            .filter(|k| k.protocol() == protocol)
            .count();
        if count >= LIMITS.get(protocol) as usize {
            assert_eq!(result, Err(InsertError::CapacityReached(protocol)));
            return;
        }
        let id = result.unwrap();
        assert!(!self.issued.contains(&id), "id {id} issued twice");
        self.issued.push(id);
        self.flows.insert(
            key,
            ModelFlow {
                id,
                value,
                deadline: None,
            },
        );
    }

    fn pop_expired(&mut self) {
        let now = self.now;
        let expected = self
            .flows
            .iter()
            .filter_map(|(key, f)| f.deadline.filter(|(at, _)| *at <= now).map(|d| (d, *key)))
            .min();
        let popped = self.table.pop_expired(now);
        match expected {
            Some((_, key)) => {
                let flow = self.flows.get_mut(&key).unwrap();
                assert_eq!(popped, Some(flow.id));
                flow.deadline = None;
            }
            None => assert_eq!(popped, None),
        }
    }

    fn check_invariants(&self) {
        assert_eq!(self.table.len(), self.flows.len());
        for protocol in Protocol::ALL {
            let count = self.table.count(protocol);
            let model = self
                .flows
                .keys()
                .filter(|k| k.protocol() == protocol)
                .count();
            assert_eq!(count as usize, model);
            assert!(count <= LIMITS.get(protocol));
        }
        let live: HashSet<FlowId> = self.flows.values().map(|f| f.id).collect();
        for (key, flow) in &self.flows {
            assert_eq!(self.table.lookup(key), Some(flow.id));
            assert_eq!(self.table.key(flow.id), Some(key));
            assert_eq!(self.table.get(flow.id), Some(&flow.value));
            assert_eq!(
                self.table.deadline(flow.id),
                flow.deadline.map(|(at, _)| at)
            );
        }
        for id in self.issued.iter().filter(|id| !live.contains(id)) {
            assert!(!self.table.contains(*id));
            assert_eq!(self.table.get(*id), None);
            assert_eq!(self.table.key(*id), None);
            assert_eq!(self.table.deadline(*id), None);
        }
        let listed: HashSet<FlowId> = self.table.iter().map(|(id, _, _)| id).collect();
        assert_eq!(listed, live);
        let armed = self.flows.values().filter(|f| f.deadline.is_some()).count();
        assert!(self.table.deadline_queue_len() <= 3 * armed + 100);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn table_agrees_with_hashmap_model(ops in proptest::collection::vec(op(), 1..300)) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.apply(op);
            harness.check_invariants();
        }
        // Drain: every armed flow pops exactly once, in deadline order.
        harness.now += Duration::from_secs(1);
        let armed = harness.flows.values().filter(|f| f.deadline.is_some()).count();
        for _ in 0..armed {
            harness.pop_expired();
        }
        prop_assert_eq!(harness.table.pop_expired(harness.now), None);
        prop_assert_eq!(harness.table.next_deadline(), None);
    }

    #[test]
    fn rearming_keeps_deadline_queue_bounded(
        rearms in proptest::collection::vec((0usize..32, 0u16..1000, any::<bool>()), 1..2000),
    ) {
        let t0 = Instant::now();
        let mut table = FlowTable::new();
        let ids: Vec<FlowId> = (0..32u16)
            .map(|port| {
                let guest = SocketAddr::from(([10, 0, 2, 15], 2000 + port));
                let dest = SocketAddr::from(([192, 0, 2, 1], 80));
                table.insert(FlowKey::new(Protocol::Tcp, guest, dest).unwrap(), ()).unwrap()
            })
            .collect();
        let mut armed = HashSet::new();
        for (flow, ms, clear) in rearms {
            let at = (!clear).then(|| t0 + Duration::from_millis(ms.into()));
            prop_assert!(table.set_deadline(ids[flow], at));
            if clear { armed.remove(&flow); } else { armed.insert(flow); }
            prop_assert!(table.deadline_queue_len() <= 3 * armed.len() + 100);
        }
        let mut popped = Vec::new();
        while let Some(id) = table.pop_expired(t0 + Duration::from_secs(2)) {
            popped.push(id);
        }
        prop_assert_eq!(popped.len(), armed.len());
        let deadlines: Vec<_> = popped.iter().map(|id| table.deadline(*id)).collect();
        prop_assert!(deadlines.iter().all(Option::is_none));
    }
}

#[test]
fn deadline_queue_stays_bounded_after_many_rearms() {
    let t0 = Instant::now();
    let mut table = FlowTable::new();
    let ids: Vec<FlowId> = (0..100u16)
        .map(|port| {
            let guest = SocketAddr::from(([10, 0, 2, 15], 3000 + port));
            let dest = SocketAddr::from(([192, 0, 2, 1], 443));
            table
                .insert(FlowKey::new(Protocol::Udp, guest, dest).unwrap(), port)
                .unwrap()
        })
        .collect();
    // Every packet re-arms its flow's idle deadline a little later.
    for packet in 0..200_000u64 {
        let id = ids[(packet % 100) as usize];
        assert!(table.set_deadline(id, Some(t0 + Duration::from_micros(packet))));
        assert!(table.deadline_queue_len() <= 3 * 100 + 100);
    }
    // Half the flows go away; their entries do not linger beyond the bound.
    for id in ids.iter().step_by(2) {
        table.remove(*id).unwrap();
        assert!(table.deadline_queue_len() <= 3 * table.len() + 100);
    }
    let mut popped = 0;
    let mut last = None;
    while let Some(id) = table.pop_expired(t0 + Duration::from_secs(1)) {
        let deadline_order = table.get(id).copied();
        assert!(deadline_order.is_some(), "a removed flow popped");
        assert!(last < deadline_order, "deadlines pop in order");
        last = deadline_order;
        popped += 1;
    }
    assert_eq!(popped, 50);
    assert_eq!(table.next_deadline(), None);
}
