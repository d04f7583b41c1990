//! Host to guest and the close: the guest's half-close, the host EOF
//! turned into a FIN once every byte is acknowledged, TIME-WAIT, and host
//! resets and errors turned into an RST.

use flow_table::tcp::{CloseReason, HostError, Phase, Segment, SeqNum, SocketOp};

use crate::harness::{FIN, Flow, HostSock, bytes, config, guest_syn, is_pure_ack, ms, only};

#[test]
fn guest_half_close_keeps_host_to_guest_data_flowing() {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    let fin = Segment {
        flags: FIN,
        ..flow.seg(0)
    };
    flow.guest(10, fin, &[]);
    assert_eq!(only(&flow.flush(10)).ack, Some(flow.g(1)));
    assert_eq!(flow.host.ops, [SocketOp::ShutdownWrite]);
    assert_eq!(flow.conn.phase(), Phase::CloseWait);

    flow.host_sends(20, &bytes(3000, 9));
    let sent = flow.flush(20);
    let seqs: Vec<SeqNum> = sent.iter().map(|s| s.t.seq).collect();
    assert_eq!(seqs, [flow.s(0), flow.s(1000), flow.s(2000)]);
    assert!(sent.iter().all(|s| s.t.ack == Some(flow.g(1))));

    flow.ack(30, 1, 3000);
    flow.flush(30);
    assert_eq!(
        flow.host.ops,
        [SocketOp::ShutdownWrite, SocketOp::Consume(3000)]
    );

    flow.host_sends(40, &bytes(500, 9));
    let more = only(&flow.flush(40));
    assert_eq!(more.seq, flow.s(3000));
    assert_eq!(more.payload.map(|p| p.len), Some(500));
    assert_eq!(flow.conn.phase(), Phase::CloseWait);
}

#[test]
fn host_eof_sends_fin_only_after_all_data_acked() {
    let cfg = config();
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(cfg, syn, HostSock::with_space(10_000));
    flow.host_sends(10, &bytes(2000, 10));
    flow.conn.handle_host_eof(flow.at(10));
    let sent = flow.flush(10);
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|s| !s.t.flags.fin));

    flow.ack(20, 0, 1000);
    assert!(flow.flush(20).iter().all(|s| !s.t.flags.fin));

    flow.ack(30, 0, 2000);
    let fin = only(&flow.flush(30));
    assert!(fin.flags.fin && fin.payload.is_none());
    assert_eq!(fin.seq, flow.s(2000));
    assert_eq!(fin.ack, Some(flow.g(0)));
    assert_eq!(flow.conn.phase(), Phase::FinWait);

    // The guest acknowledges our FIN and sends its own.
    flow.guest_ack = 2001;
    let guest_fin = Segment {
        flags: FIN,
        ..flow.seg(0)
    };
    flow.guest(40, guest_fin, &[]);
    let last = only(&flow.flush(40));
    assert!(is_pure_ack(&last));
    assert_eq!(last.seq, flow.s(2001));
    assert_eq!(last.ack, Some(flow.g(1)));
    assert_eq!(
        flow.host.ops,
        [
            SocketOp::Consume(1000),
            SocketOp::Consume(1000),
            SocketOp::ShutdownWrite,
            SocketOp::Close
        ]
    );
    assert_eq!(flow.conn.phase(), Phase::TimeWait);

    let end = 40 + ms(cfg.time_wait);
    assert_eq!(flow.next_timeout_ms(), Some(end));
    flow.timeout(end);
    assert!(flow.flush(end).is_empty(), "no RST after a clean close");
    assert_eq!(flow.conn.close_reason(), Some(CloseReason::Normal));
}

#[test]
fn time_wait_acknowledges_a_repeated_guest_fin() {
    let cfg = config();
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(cfg, syn, HostSock::with_space(10_000));
    flow.conn.handle_host_eof(flow.at(10));
    assert!(only(&flow.flush(10)).flags.fin);
    flow.guest_ack = 1;
    let guest_fin = Segment {
        flags: FIN,
        ..flow.seg(0)
    };
    flow.guest(20, guest_fin, &[]);
    assert_eq!(only(&flow.flush(20)).ack, Some(flow.g(1)));
    assert_eq!(flow.conn.phase(), Phase::TimeWait);

    // Our ACK was lost: the guest's FIN comes again and is answered again.
    flow.guest(1_000, guest_fin, &[]);
    let again = only(&flow.flush(1_000));
    assert!(is_pure_ack(&again));
    assert_eq!((again.seq, again.ack), (flow.s(1), Some(flow.g(1))));
    assert_eq!(flow.conn.phase(), Phase::TimeWait);
    assert_eq!(flow.host.ops, [SocketOp::ShutdownWrite, SocketOp::Close]);
}

#[test]
fn host_reset_sends_rst_to_guest() {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    flow.data(5, 0, &bytes(100, 11));
    flow.host_sends(10, &bytes(1000, 11));
    assert_eq!(flow.flush(10).len(), 1);

    flow.conn.handle_host_reset(flow.at(20));
    let rst = only(&flow.flush(20));
    assert!(rst.flags.rst && rst.payload.is_none());
    assert_eq!(rst.seq, flow.s(1000), "SND.NXT");
    assert_eq!(rst.ack, Some(flow.g(100)));
    // The relay closes the dead socket; how it closes it no longer matters.
    assert_eq!(flow.host.ops, [SocketOp::Reset]);
    assert!(flow.conn.is_closed());
    assert_eq!(flow.conn.close_reason(), Some(CloseReason::HostReset));

    flow.data(30, 100, &bytes(10, 11));
    assert!(flow.flush(30).is_empty());
    assert_eq!(flow.host.written.len(), 100);
}

#[test]
fn host_write_error_resets_the_flow() {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    flow.host.fail = Some(HostError::Failed);
    flow.data(10, 0, &bytes(100, 12));
    let rst = only(&flow.flush(10));
    assert!(rst.flags.rst);
    assert_eq!(rst.ack, Some(flow.g(0)), "nothing was written");
    assert_eq!(flow.host.ops, [SocketOp::Reset]);
    assert_eq!(flow.conn.close_reason(), Some(CloseReason::HostError));
}

/// RFC 9293 §3.10.4 (ABORT in FIN-WAIT-1/2, CLOSING...): the RST carries
/// SND.NXT, which counts our FIN. A guest that received the FIN has
/// RCV.NXT one past it and drops an RST one before it as out of window
/// (§3.10.7.4), so it never learns the host peer is gone.
#[test]
fn host_reset_after_our_fin_sends_rst_past_the_fin() {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    flow.conn.handle_host_eof(flow.at(10));
    let fin = only(&flow.flush(10));
    assert!(fin.flags.fin);
    assert_eq!(fin.seq, flow.s(0));
    flow.ack(20, 0, 1);
    assert_eq!(flow.conn.phase(), Phase::FinWait);
    flow.data(30, 0, &bytes(100, 13));
    flow.flush(30);

    flow.conn.handle_host_reset(flow.at(40));
    let rst = only(&flow.flush(40));
    assert!(rst.flags.rst);
    assert_eq!(rst.ack, Some(flow.g(100)));
    assert_eq!(
        rst.seq,
        flow.s(1),
        "RST at {:?}, the guest's RCV.NXT is {:?} (past our acknowledged FIN)",
        rst.seq,
        flow.s(1)
    );
}
