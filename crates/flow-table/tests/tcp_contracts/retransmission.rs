//! Acknowledgments, retransmission and the guest's window: ACKs consume
//! host bytes, peeks stay within the window, a zero window is probed, RTO
//! with backoff, fast retransmit, sequence wrap, the retransmit limit.

use flow_table::tcp::{CloseReason, PeekRange, Phase, Segment, SeqNum, SocketOp, TcpConfig};

use crate::harness::{Flow, HostSock, Sent, bytes, config, guest_syn, only};

#[test]
fn guest_ack_consumes_host_bytes() {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    flow.host_sends(10, &bytes(3000, 15));
    let offsets: Vec<Option<PeekRange>> = flow.flush(10).iter().map(|s| s.t.payload).collect();
    let peek = |offset, len| Some(PeekRange { offset, len });
    assert_eq!(offsets, [peek(0, 1000), peek(1000, 1000), peek(2000, 1000)]);
    assert!(flow.host.ops.is_empty(), "nothing consumed before an ACK");

    flow.ack(20, 0, 1000);
    assert!(flow.flush(20).is_empty());
    assert_eq!(flow.host.ops, [SocketOp::Consume(1000)]);

    // Offsets count from the queue head once 1000 bytes are gone.
    flow.host_sends(30, &bytes(1500, 16));
    let sent = flow.flush(30);
    let seqs: Vec<(SeqNum, Option<PeekRange>)> =
        sent.iter().map(|s| (s.t.seq, s.t.payload)).collect();
    assert_eq!(
        seqs,
        [
            (flow.s(3000), peek(2000, 1000)),
            (flow.s(4000), peek(3000, 500))
        ]
    );

    flow.ack(40, 0, 4500);
    flow.flush(40);
    assert_eq!(
        flow.host.ops,
        [SocketOp::Consume(1000), SocketOp::Consume(3500)]
    );
    assert!(flow.host.queue.is_empty());
}

/// Asserts no segment in `sent` reaches past `ack + window`.
fn assert_within_window(flow: &Flow, sent: &[Sent], ack: u32, window: u32) {
    for s in sent {
        let end = s.t.seq.since(flow.s(0)) + u32::try_from(s.payload.len()).unwrap();
        assert!(
            end <= ack + window,
            "{:?} ends at {end}, beyond {ack} + {window}",
            s.t
        );
    }
}

#[test]
fn peeks_stay_within_guest_window() {
    let syn = guest_syn(Some(1000), None, 2500);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    flow.host_sends(10, &bytes(10_000, 17));
    let sent = flow.flush(10);
    assert_within_window(&flow, &sent, 0, 2500);
    assert_eq!(sent.len(), 2);

    flow.ack(20, 0, 1000);
    let sent = flow.flush(20);
    assert_within_window(&flow, &sent, 1000, 2500);
    assert_eq!(sent.len(), 1);

    // The guest's window shuts with nothing in flight: the persist timer.
    flow.guest_window = 0;
    flow.ack(30, 0, 3000);
    assert!(flow.flush(30).is_empty());
    let first = flow.next_timeout_ms().unwrap();
    assert!(first > 30);
    flow.timeout(first);
    let probe = only(&flow.flush(first));
    assert_eq!(probe.seq, flow.s(3000));
    assert_eq!(probe.payload.map(|p| p.len), Some(1));
    assert_eq!(flow.conn.stats().window_probes, 1);

    // Unanswered but for the same zero window: probes back off.
    flow.ack(first + 1, 0, 3000);
    assert!(flow.flush(first + 1).is_empty());
    let second = flow.next_timeout_ms().unwrap();
    assert_eq!(second - first, 2 * (first - 30));
    flow.timeout(second);
    assert_eq!(only(&flow.flush(second)).seq, flow.s(3000));

    flow.guest_window = 2500;
    flow.ack(second + 10, 0, 3000);
    let sent = flow.flush(second + 10);
    assert!(!sent.is_empty());
    assert_eq!(sent[0].t.seq, flow.s(3000));
    assert_within_window(&flow, &sent, 3000, 2500);
}

/// RFC 9293 §3.8.6: a sender "MUST be robust against window shrinking"
/// (MUST-34), "SHOULD NOT time out the connection if data beyond the right
/// window edge is not acknowledged" (SHLD-17), and "If the window shrinks
/// to zero, the TCP implementation MUST probe it" (MUST-35); and §3.8.6.1:
/// as long as the receiver answers the probes the connection stays open
/// (MUST-36).
#[test]
fn window_shrunk_to_zero_is_probed_not_timed_out() {
    let cfg = TcpConfig {
        max_retransmits: 3,
        idle_timeout: None,
        ..config()
    };
    let syn = guest_syn(Some(1000), None, 3000);
    let mut flow = Flow::established(cfg, syn, HostSock::with_space(10_000));
    flow.host_sends(10, &bytes(3000, 18));
    assert_eq!(flow.flush(10).len(), 3);

    // The guest takes 1000 bytes and shuts its window on the other 2000.
    flow.guest_window = 0;
    flow.ack(20, 0, 1000);
    flow.flush(20);

    let mut probes = 0;
    for _ in 0..8 {
        let Some(at) = flow.next_timeout_ms() else {
            break;
        };
        flow.timeout(at);
        let sent = flow.flush(at);
        if sent.iter().any(|s| s.t.flags.rst) {
            break;
        }
        probes += sent.len();
        // A live guest answers every probe with its still-shut window.
        for _ in &sent {
            flow.ack(at + 1, 0, 1000);
        }
        flow.flush(at + 1);
    }
    assert!(
        !flow.conn.is_closed(),
        "closed ({:?}) after {probes} probes while the guest answered every one",
        flow.conn.close_reason()
    );
    assert!(probes > 0);
}

#[test]
fn rto_retransmits_from_acknowledged_offset_with_backoff() {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    flow.host_sends(10, &bytes(3000, 19));
    assert_eq!(flow.flush(10).len(), 3);
    flow.ack(20, 0, 1000);
    flow.flush(20);

    let first = flow.next_timeout_ms().unwrap();
    let rto = first - 20;
    flow.timeout(first);
    let sent = flow.flush(first);
    assert_eq!(sent[0].t.seq, flow.s(1000), "from SND.UNA again");
    assert_eq!(
        sent[0].t.payload,
        Some(PeekRange {
            offset: 0,
            len: 1000
        })
    );

    let second = flow.next_timeout_ms().unwrap();
    assert_eq!(second - first, 2 * rto);
    flow.timeout(second);
    assert_eq!(flow.flush(second)[0].t.seq, flow.s(1000));
    let third = flow.next_timeout_ms().unwrap();
    assert_eq!(third - second, 4 * rto);
    assert_eq!(flow.conn.stats().timeouts, 2);
}

#[test]
fn three_duplicate_acks_trigger_fast_retransmit() {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    flow.host_sends(10, &bytes(5000, 20));
    assert_eq!(flow.flush(10).len(), 5);
    flow.ack(20, 0, 1000);
    assert!(flow.flush(20).is_empty());

    for ms in [21, 22] {
        flow.ack(ms, 0, 1000);
        assert!(
            flow.flush(ms).is_empty(),
            "no retransmission before the third"
        );
    }
    flow.ack(23, 0, 1000);
    let again = only(&flow.flush(23));
    assert_eq!(again.seq, flow.s(1000));
    assert_eq!(
        again.payload,
        Some(PeekRange {
            offset: 0,
            len: 1000
        })
    );
    assert_eq!(flow.conn.stats().fast_retransmits, 1);
    assert_eq!(flow.conn.stats().timeouts, 0);
}

#[test]
fn sequence_numbers_wrap() {
    let syn = Segment {
        seq: SeqNum::new(u32::MAX - 2),
        ..guest_syn(Some(1000), None, 65535)
    };
    let mut flow = Flow::connecting_with_isn(
        config(),
        syn,
        HostSock::with_space(100_000),
        SeqNum::new(u32::MAX - 1),
    );
    flow.connect(1);
    flow.ack(2, 0, 0);
    assert_eq!(flow.conn.phase(), Phase::Established);

    let up = bytes(3000, 21);
    let mut acks = Vec::new();
    for (i, chunk) in (0u32..).zip(up.chunks(1000)) {
        let ms = 10 + u64::from(i);
        flow.data(ms, i * 1000, chunk);
        acks.push(only(&flow.flush(ms)).ack.unwrap().get());
    }
    assert_eq!(flow.host.written, up);
    assert_eq!(acks, [998, 1998, 2998], "guest bytes from u32::MAX - 1 on");

    flow.host_sends(20, &bytes(3000, 22));
    let seqs: Vec<u32> = flow.flush(20).iter().map(|s| s.t.seq.get()).collect();
    assert_eq!(seqs, [u32::MAX, 999, 1999]);
    flow.ack(30, 3000, 3000);
    flow.flush(30);
    assert_eq!(flow.host.ops, [SocketOp::Consume(3000)]);
    assert!(flow.conn.interest().readable);
}

#[test]
fn retransmit_limit_resets_the_flow() {
    let cfg = TcpConfig {
        max_retransmits: 3,
        idle_timeout: None,
        ..config()
    };
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(cfg, syn, HostSock::with_space(10_000));
    flow.host_sends(10, &bytes(1000, 23));
    assert_eq!(flow.flush(10).len(), 1);

    let mut retransmissions = 0;
    let mut rst = None;
    while let Some(at) = flow.next_timeout_ms() {
        flow.timeout(at);
        for sent in flow.flush(at) {
            if sent.t.flags.rst {
                rst = Some(sent.t);
            } else {
                assert_eq!(sent.t.seq, flow.s(0));
                retransmissions += 1;
            }
        }
        assert!(at < 3_600_000, "never gives up");
    }
    assert_eq!(retransmissions, 3);
    let rst = rst.expect("an RST to the guest");
    assert_eq!((rst.seq, rst.ack), (flow.s(1000), Some(flow.g(0))));
    assert_eq!(flow.host.ops, [SocketOp::Reset]);
    assert_eq!(flow.conn.close_reason(), Some(CloseReason::RetransmitLimit));
}
