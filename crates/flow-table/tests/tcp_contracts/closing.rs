//! Closing after a timeout, long zero windows, small host send buffers
//! and an unanswered SYN-ACK.

use std::time::{Duration, Instant};

use flow_table::tcp::{
    CloseReason, Phase, Segment, SegmentOutcome, SeqNum, SocketOp, TcpConfig, TcpConn,
};

use crate::harness::{
    FIN, Flow, HostSock, SLIPWAY_ISN, bytes, config, guest_syn, is_pure_ack, ms, only,
};

/// After a retransmission timeout slipway's FIN is due again, but the guest
/// may have received the first copy: its segment acknowledging that FIN and
/// carrying its own FIN counts in full. Its FIN is acknowledged and the
/// flow closes, instead of the ACK being refused as one of unsent data and
/// the guest's FIN lost with it.
#[test]
fn guest_fin_that_acks_our_fin_after_a_timeout_is_taken() {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    flow.conn.handle_host_eof(flow.at(10));
    let fin = only(&flow.flush(10));
    assert!(fin.flags.fin);
    let rto = flow
        .next_timeout_ms()
        .expect("the FIN's retransmission timer");
    flow.timeout(rto);

    // The guest's answer to the first copy arrives before the second goes.
    flow.guest_ack = 1;
    let guest_fin = Segment {
        flags: FIN,
        ..flow.seg(0)
    };
    assert_eq!(
        flow.guest(rto + 1, guest_fin, &[]),
        SegmentOutcome::Accepted
    );
    let ack = only(&flow.flush(rto + 1));
    assert!(is_pure_ack(&ack), "{ack:?}");
    assert_eq!(ack.ack, Some(flow.g(1)), "the guest's FIN is acknowledged");
    assert_eq!(ack.seq, flow.s(1), "past our acknowledged FIN");
    assert_eq!(flow.host.ops, [SocketOp::ShutdownWrite, SocketOp::Close]);
    assert_eq!(flow.conn.phase(), Phase::TimeWait);
}

/// RFC 1122 §4.2.2.17: a receiver that keeps its window shut but answers
/// every zero-window probe is alive, and the connection stays open for as
/// long as it does, past the idle timeout (RFC 5382's 2 h 4 min); once the
/// window opens the data flows.
#[test]
fn zero_window_answered_probes_outlive_the_idle_timeout() {
    let cfg = config();
    let idle = ms(cfg.idle_timeout.expect("an idle timeout by default"));
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(cfg, syn, HostSock::with_space(10_000));
    flow.guest_window = 0;
    flow.ack(5, 0, 0);
    let data = bytes(3000, 30);
    flow.host_sends(10, &data);
    assert!(flow.flush(10).is_empty(), "nothing fits a shut window");

    let end = idle + 10 * 60_000;
    let mut probes = 0;
    for _ in 0..10_000 {
        let Some(at) = flow.next_timeout_ms() else {
            break;
        };
        if at > end {
            break;
        }
        flow.timeout(at);
        let sent = flow.flush(at);
        assert!(
            sent.iter().all(|s| !s.t.flags.rst),
            "reset at {at} ms ({:?}) after {probes} answered probes",
            flow.conn.close_reason()
        );
        for s in &sent {
            assert_eq!(s.payload.len(), 1, "a one-byte probe: {:?}", s.t);
            probes += 1;
            // Still no room: the guest answers with its shut window.
            flow.ack(at + 1, 0, 0);
        }
        flow.flush(at + 1);
    }
    assert!(probes > 10, "{probes} probes");
    assert_eq!(flow.conn.phase(), Phase::Established);

    flow.guest_window = 65535;
    flow.ack(end, 0, 0);
    let sent = flow.flush(end);
    let delivered: Vec<u8> = sent.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(sent.first().map(|s| s.t.seq), Some(flow.s(0)));
    assert_eq!(delivered, data, "the held bytes go once the window opens");
    flow.ack(end + 1, 0, 3000);
    flow.flush(end + 1);
    assert_eq!(flow.host.ops.last(), Some(&SocketOp::Consume(3000)));
    assert_eq!(flow.conn.phase(), Phase::Established);
}

/// A guest whose MSS is larger than the host send buffer ever frees (guest
/// MTU 65520 to a host peer with MSS 1460, whose socket's buffer stays
/// small) must not find the window shut for good: writable interest is on
/// only below the room at which the socket reports writable, where the
/// kernel's event is still to come, and the reopened window is announced.
#[test]
fn window_waits_for_writable_only_below_the_room_the_socket_reports_writable_at() {
    let cfg = TcpConfig::default();
    let syn = guest_syn(Some(65480), None, 65535);
    let mut flow = Flow::established(cfg, syn, HostSock::with_space(60_480));
    assert!(
        flow.conn.interest().writable,
        "without word from the relay a window below one segment waits"
    );
    // A 69120-byte buffer reports writable with 5/24 of it free.
    flow.conn.handle_host_send_buffer(flow.at(3), 14_400);
    assert!(
        !flow.conn.interest().writable,
        "60480 bytes free is as writable as this socket gets"
    );
    assert!(
        is_pure_ack(&only(&flow.flush(3))),
        "the window counts as open again: announced"
    );

    flow.data(10, 0, &bytes(50_000, 31));
    let ack = only(&flow.flush(10));
    assert_eq!(ack.window, 10_480);
    assert!(
        flow.conn.interest().writable,
        "10480 bytes: not writable yet"
    );

    flow.set_space(20, 14_400);
    let update = only(&flow.flush(20));
    assert!(is_pure_ack(&update));
    assert_eq!(update.window, 14_400);
    assert!(!flow.conn.interest().writable);
}

/// A half-open flow holds a host socket: a guest that never acknowledges
/// the SYN-ACK has the handshake timeout to do so, whatever retransmissions
/// are left, and then the flow is reset and its socket closed.
#[test]
fn unanswered_syn_ack_is_reset_at_the_handshake_timeout() {
    let cfg = TcpConfig {
        handshake_timeout: Duration::from_secs(5),
        ..config()
    };
    assert_eq!(
        TcpConfig::default().handshake_timeout,
        Duration::from_secs(20)
    );
    let syn = guest_syn(Some(1200), None, 65535);
    let (mut flow, first) = Flow::connected(cfg, syn, HostSock::with_space(20_000));
    let mut copies = 0;
    let mut end = None;
    while let Some(at) = flow.next_timeout_ms() {
        flow.timeout(at);
        for sent in flow.flush(at) {
            if sent.t.flags.rst {
                end = Some(at);
            } else {
                assert_eq!(sent.t, first);
                copies += 1;
            }
        }
        assert!(at <= 60_000, "the handshake never times out");
    }
    assert_eq!(end, Some(5_001), "5 s after the SYN-ACK");
    assert_eq!(copies, 2, "retransmitted at 1 and 3 s");
    assert_eq!(
        flow.conn.close_reason(),
        Some(CloseReason::HandshakeTimeout)
    );
    assert_eq!(flow.host.ops, [SocketOp::Reset]);

    // A flow a host peer opened waits as long for the guest's SYN-ACK.
    let t0 = Instant::now();
    let mut conn = TcpConn::from_host_accept(SeqNum::new(SLIPWAY_ISN), 20_000, cfg, t0);
    let mut at = t0;
    for _ in 0..100 {
        let Some(next) = conn.poll_timeout() else {
            break;
        };
        at = next;
        conn.handle_timeout(at);
        while conn.poll_transmit(at).is_some() {}
    }
    assert_eq!(conn.close_reason(), Some(CloseReason::HandshakeTimeout));
    assert_eq!(at.duration_since(t0), Duration::from_secs(5));
}
