//! The flow table with 1, 100 and 10 000 flows: lookup by key, insert and
//! remove, and the deadline queue. The cost per operation must not grow
//! with the number of flows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use divan::{Bencher, black_box};
use flow_table::{FlowId, FlowKey, FlowTable, Protocol};

fn main() {
    common::run_nanosecond_benches();
}

const FLOWS: [usize; 3] = [1, 100, 10_000];

/// What the table holds per flow in the benches: about the size of a
/// backend's boxed flow handle and its bookkeeping.
type Value = [u64; 4];

/// The key of the `i`th flow: guest ports and destinations vary, as with a
/// guest opening connections to many servers.
fn key(i: usize) -> FlowKey {
    let guest_port = 10_000 + u16::try_from(i % 50_000).unwrap();
    let host = u32::try_from(i / 200).unwrap();
    let dest = Ipv4Addr::from(0xcb00_7100 | (host & 0xff));
    FlowKey::v4(
        Protocol::Tcp,
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 15), guest_port),
        SocketAddrV4::new(dest, 443 + u16::try_from(i % 200).unwrap()),
    )
}

fn table(flows: usize) -> (FlowTable<Value>, Vec<FlowId>) {
    let mut table = FlowTable::new();
    let ids = (0..flows)
        .map(|i| table.insert(key(i), [i as u64; 4]).unwrap())
        .collect();
    (table, ids)
}

/// Finds a flow by key, cycling through every flow of the table so that a
/// large table is not measured on one hot entry.
#[divan::bench(args = FLOWS)]
fn lookup_hit(bencher: Bencher<'_, '_>, flows: usize) {
    let (table, ids) = table(flows);
    let keys: Vec<FlowKey> = (0..flows).map(key).collect();
    assert_eq!(table.lookup(&keys[flows - 1]), Some(ids[flows - 1]));
    let mut next = 0;
    bencher.bench_local(|| {
        next = if next + 1 == flows { 0 } else { next + 1 };
        table.lookup(black_box(&keys[next]))
    });
}

/// Looks up a key that no flow has: the path of a guest SYN.
#[divan::bench(args = FLOWS)]
fn lookup_miss(bencher: Bencher<'_, '_>, flows: usize) {
    let (table, _) = table(flows);
    let absent = key(flows + 1);
    assert_eq!(table.lookup(&absent), None);
    bencher.bench_local(|| table.lookup(black_box(&absent)));
}

/// Inserts one flow into a table of `flows` flows and removes it again.
#[divan::bench(args = FLOWS)]
fn insert_remove(bencher: Bencher<'_, '_>, flows: usize) {
    let (mut table, _) = table(flows);
    let extra = key(flows + 1);
    bencher.bench_local(|| {
        let id = table.insert(black_box(extra), [0; 4]).unwrap();
        table.remove(id)
    });
    assert_eq!(table.len(), flows);
}

/// Moves one flow's deadline later, as every segment does with the
/// retransmission or idle timer, and asks for the earliest deadline, as the
/// event loop does before it sleeps; every flow has a deadline.
#[divan::bench(args = FLOWS)]
fn rearm_and_next_deadline(bencher: Bencher<'_, '_>, flows: usize) {
    let (mut table, ids) = table(flows);
    let start = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        table.set_deadline(*id, Some(start + Duration::from_millis(1000 + i as u64)));
    }
    let mut tick = 0u64;
    let mut next = 0;
    bencher.bench_local(|| {
        tick += 1;
        next = if next + 1 == flows { 0 } else { next + 1 };
        let at = start + Duration::from_secs(10) + Duration::from_nanos(tick);
        table.set_deadline(ids[next], Some(at));
        table.next_deadline()
    });
    assert!(table.deadline_queue_len() <= 3 * flows + 65);
}
