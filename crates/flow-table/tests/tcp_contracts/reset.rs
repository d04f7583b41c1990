//! RSTs from the guest (RFC 5961 checks) and the answer to a segment of
//! a flow that does not exist.

use flow_table::tcp::{
    CloseReason, Phase, Segment, SegmentOutcome, SeqNum, SocketOp, rst_for_unknown,
};

use crate::harness::{ACK, FIN, RST, SYN, before, flow_with_guest_data, is_pure_ack, only};

fn guest_rst(seq: SeqNum) -> Segment {
    Segment {
        seq,
        flags: RST,
        ..Segment::default()
    }
}

#[test]
fn guest_rst_with_exact_sequence_resets_host_socket() {
    let mut flow = flow_with_guest_data();
    let rst = guest_rst(flow.g(100));
    assert_eq!(flow.guest(20, rst, &[]), SegmentOutcome::Accepted);
    assert!(flow.flush(20).is_empty(), "an RST is never answered");
    assert_eq!(flow.host.ops, [SocketOp::Reset]);
    assert_eq!(flow.conn.close_reason(), Some(CloseReason::GuestReset));
}

#[test]
fn guest_rst_out_of_window_is_ignored() {
    let mut flow = flow_with_guest_data();
    let rcv_nxt = flow.g(100);
    for seq in [rcv_nxt + 9900, before(rcv_nxt, 1), rcv_nxt + (1 << 31)] {
        flow.guest(20, guest_rst(seq), &[]);
        assert!(flow.flush(20).is_empty(), "RST at {seq:?}");
        assert!(flow.host.ops.is_empty());
        assert_eq!(flow.conn.phase(), Phase::Established);
    }
}

#[test]
fn guest_rst_in_window_but_inexact_draws_challenge_ack() {
    let mut flow = flow_with_guest_data();
    let rcv_nxt = flow.g(100);
    for seq in [rcv_nxt + 1, rcv_nxt + 9899] {
        flow.guest(20, guest_rst(seq), &[]);
        let challenge = only(&flow.flush(20));
        assert!(is_pure_ack(&challenge), "{challenge:?}");
        assert_eq!(challenge.ack, Some(rcv_nxt));
        assert!(flow.host.ops.is_empty());
        assert_eq!(flow.conn.phase(), Phase::Established);
    }
}

#[test]
fn segment_for_unknown_flow_gets_rst() {
    // With ACK: the RST takes its sequence number from it, no ACK bit.
    let seg = Segment {
        seq: SeqNum::new(5),
        ack: Some(SeqNum::new(777)),
        ..Segment::default()
    };
    let rst = rst_for_unknown(&seg, 10).unwrap();
    assert!(rst.flags.rst && !rst.flags.syn);
    assert_eq!((rst.seq, rst.ack), (SeqNum::new(777), None));
    assert_eq!(rst.payload, None);

    // Without ACK: sequence 0, acknowledging all the segment occupies.
    for (flags, len, seq, ack) in [
        (SYN, 0, 100, 101),
        (FIN, 10, 100, 111),
        (ACK, 10, 100, 110),
        (SYN, 0, u32::MAX, 0),
    ] {
        let seg = Segment {
            seq: SeqNum::new(seq),
            flags,
            ..Segment::default()
        };
        let rst = rst_for_unknown(&seg, len).unwrap();
        assert!(rst.flags.rst && !rst.flags.syn && !rst.flags.fin);
        assert_eq!((rst.seq, rst.ack), (SeqNum::new(0), Some(SeqNum::new(ack))));
    }

    let rst_in = Segment {
        ack: Some(SeqNum::new(9)),
        ..guest_rst(SeqNum::new(5))
    };
    assert_eq!(
        rst_for_unknown(&rst_in, 0),
        None,
        "an RST is never answered"
    );
}
