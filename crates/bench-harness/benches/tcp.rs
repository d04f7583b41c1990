//! The TCP state machine alone (flow-table's sequence mirroring), against a
//! fake host socket that takes every byte: one in-order guest data segment
//! in, the ACK for it out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use divan::{Bencher, black_box};
use flow_table::tcp::{Flags, HostError, Phase, Segment, SeqNum, TcpConfig, TcpConn};

fn main() {
    common::run_nanosecond_benches();
}

/// Free space the fake host socket reports after every write.
const SEND_SPACE: u32 = 4 << 20;

const GUEST_ISN: u32 = 7_000;
const OUR_ISN: u32 = 90_000;

/// A flow through the handshake: guest SYN, host connect, SYN-ACK, ACK.
fn established(now: Instant) -> TcpConn {
    let syn = Segment {
        seq: SeqNum::new(GUEST_ISN),
        ack: None,
        flags: Flags {
            syn: true,
            ..Flags::default()
        },
        window: 65_535,
        mss: Some(1460),
        window_scale: Some(7),
    };
    let config = TcpConfig::for_mtu_v4(1500);
    let mut conn = TcpConn::from_guest_syn(&syn, SeqNum::new(OUR_ISN), config, now);
    conn.handle_host_connected(now, SEND_SPACE);
    let syn_ack = conn.poll_transmit(now).expect("a SYN-ACK");
    assert!(syn_ack.flags.syn);
    let ack = Segment {
        seq: SeqNum::new(GUEST_ISN + 1),
        ack: Some(SeqNum::new(OUR_ISN + 1)),
        window: 65_535,
        ..Segment::default()
    };
    let mut refuse = |_: &[u8]| -> Result<usize, HostError> { Ok(0) };
    conn.handle_guest_segment(now, &ack, &[], &mut refuse);
    assert_eq!(conn.phase(), Phase::Established);
    conn
}

/// Everything the state machine has for the relay after a segment: segments
/// for the guest, socket operations, events. Returns the last ACK number.
fn drain(conn: &mut TcpConn, now: Instant) -> Option<SeqNum> {
    let mut acked = None;
    for _ in 0..8 {
        match conn.poll_transmit(now) {
            Some(t) => acked = t.ack,
            None => break,
        }
    }
    for _ in 0..8 {
        if conn.poll_socket_op().is_none() {
            break;
        }
    }
    for _ in 0..8 {
        if conn.poll_event().is_none() {
            break;
        }
    }
    acked
}

/// One in-order segment of `payload` bytes from the guest: written to the
/// (fake) host socket, acknowledged to the guest.
#[divan::bench(args = [64, 1460])]
fn guest_data_segment(bencher: Bencher<'_, '_>, payload: usize) {
    let start = Instant::now();
    let mut conn = established(start);
    let data = vec![0x5a; payload];
    let mut written = 0u64;
    let mut host = |bytes: &[u8]| -> Result<usize, HostError> {
        written += bytes.len() as u64;
        Ok(bytes.len())
    };
    let len = u32::try_from(payload).unwrap();
    let mut seq = SeqNum::new(GUEST_ISN + 1);
    let mut tick = 0u64;
    let mut segments = 0u64;
    bencher.bench_local(|| {
        tick += 1;
        let now = start + Duration::from_nanos(tick * 1000);
        let seg = Segment {
            seq,
            ack: Some(SeqNum::new(OUR_ISN + 1)),
            flags: Flags {
                psh: true,
                ..Flags::default()
            },
            window: 65_535,
            ..Segment::default()
        };
        conn.handle_guest_segment(now, black_box(&seg), &data, &mut host);
        conn.handle_host_send_space(now, SEND_SPACE);
        seq = seq + len;
        segments += 1;
        drain(&mut conn, now)
    });
    assert_eq!(conn.phase(), Phase::Established);
    assert_eq!(
        written,
        segments * u64::from(len),
        "every segment was written"
    );
}
