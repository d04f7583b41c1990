//! The handshake and what it negotiates: SYN-ACK only once the host
//! connect completes, retransmission and timeouts of the handshake, window
//! scaling and the MSS.

use std::time::{Duration, Instant};

use flow_table::tcp::{CloseReason, Phase, Segment, SeqNum, SocketOp, TcpConfig, TcpConn};

use crate::harness::{
    Flow, GUEST_ISN, HostSock, SLIPWAY_ISN, SYN, bytes, config, guest_syn, is_pure_ack, ms, only,
};

#[test]
fn syn_ack_is_sent_only_after_host_connect_completes() {
    let cfg = config();
    let syn = guest_syn(Some(1200), Some(7), 65535);
    let mut flow = Flow::connecting(cfg, syn, HostSock::with_space(20_000));
    assert_eq!(flow.conn.phase(), Phase::Connecting);
    assert!(flow.flush(0).is_empty());
    assert!(flow.flush(500).is_empty());

    flow.conn.handle_host_connected(flow.at(600), 20_000);
    let syn_ack = only(&flow.flush(600));
    assert!(syn_ack.flags.syn && !syn_ack.flags.rst && !syn_ack.flags.fin);
    assert_eq!(syn_ack.seq, SeqNum::new(SLIPWAY_ISN));
    assert_eq!(syn_ack.ack, Some(SeqNum::new(GUEST_ISN + 1)));
    assert_eq!(syn_ack.mss, Some(cfg.mss));
    assert_eq!(syn_ack.payload, None);
    assert_eq!(flow.conn.phase(), Phase::SynReceived);
    assert!(flow.flush(600).is_empty(), "the SYN-ACK goes once");
}

#[test]
fn refused_connect_answers_guest_with_rst_ack() {
    let syn = guest_syn(Some(1200), None, 65535);
    let mut flow = Flow::connecting(config(), syn, HostSock::with_space(20_000));
    flow.conn.handle_host_connect_failed(flow.at(3));
    let rst = only(&flow.flush(3));
    assert!(rst.flags.rst && !rst.flags.syn);
    assert_eq!(rst.ack, Some(SeqNum::new(GUEST_ISN + 1)));
    assert_eq!(rst.payload, None);
    assert_eq!(flow.host.ops, [SocketOp::Reset]);
    assert!(flow.conn.is_closed());
    assert_eq!(flow.conn.close_reason(), Some(CloseReason::ConnectFailed));
    assert_eq!(flow.conn.poll_timeout(), None);
    assert!(flow.flush(4).is_empty());
}

#[test]
fn connect_timeout_resets_the_flow() {
    let cfg = config();
    let syn = guest_syn(Some(1200), None, 65535);
    let mut flow = Flow::connecting(cfg, syn, HostSock::with_space(20_000));
    let deadline = ms(cfg.connect_timeout);
    assert_eq!(flow.next_timeout_ms(), Some(deadline));

    flow.timeout(deadline - 1);
    assert!(flow.flush(deadline - 1).is_empty());
    assert_eq!(flow.conn.phase(), Phase::Connecting);

    flow.timeout(deadline);
    let rst = only(&flow.flush(deadline));
    assert!(rst.flags.rst);
    assert_eq!(rst.ack, Some(SeqNum::new(GUEST_ISN + 1)));
    assert_eq!(flow.host.ops, [SocketOp::Reset]);
    assert_eq!(flow.conn.close_reason(), Some(CloseReason::ConnectTimeout));
}

#[test]
fn duplicate_syn_while_connecting_does_not_reset_the_flow() {
    let syn = guest_syn(Some(1200), None, 65535);
    let mut flow = Flow::connecting(config(), syn, HostSock::with_space(20_000));
    let deadline = flow.conn.poll_timeout();
    for ms in [1_000, 3_000, 7_000] {
        flow.guest(ms, syn, &[]);
        assert!(flow.flush(ms).is_empty());
        assert!(flow.host.ops.is_empty());
        assert_eq!(flow.conn.phase(), Phase::Connecting);
        assert_eq!(flow.conn.poll_timeout(), deadline);
    }
    let syn_ack = flow.connect(7_500);
    assert_eq!(syn_ack.ack, Some(flow.g(0)));
}

#[test]
fn duplicate_syn_after_syn_ack_resends_syn_ack() {
    let syn = guest_syn(Some(1200), Some(3), 65535);
    let (mut flow, first) = Flow::connected(config(), syn, HostSock::with_space(20_000));
    flow.guest(50, syn, &[]);
    let again = only(&flow.flush(50));
    assert_eq!(again, first);
    assert_eq!(flow.conn.phase(), Phase::SynReceived);
    flow.ack(60, 0, 0);
    assert_eq!(flow.conn.phase(), Phase::Established);
}

#[test]
fn syn_ack_is_retransmitted_until_the_handshake_times_out() {
    let cfg = TcpConfig {
        syn_retries: 2,
        ..config()
    };
    let syn = guest_syn(Some(1200), None, 65535);
    let (mut flow, first) = Flow::connected(cfg, syn, HostSock::with_space(20_000));
    let mut copies = 0;
    while let Some(at) = flow.next_timeout_ms() {
        flow.timeout(at);
        for sent in flow.flush(at) {
            if sent.t.flags.rst {
                assert_eq!(sent.t.ack, Some(flow.g(0)));
            } else {
                assert_eq!(sent.t, first);
                copies += 1;
            }
        }
        assert!(at < 60_000, "the handshake never times out");
    }
    assert_eq!(copies, 2);
    assert_eq!(
        flow.conn.close_reason(),
        Some(CloseReason::HandshakeTimeout)
    );
    assert_eq!(flow.host.ops, [SocketOp::Reset]);
}

#[test]
fn host_opened_flow_sends_syn_and_establishes_on_syn_ack() {
    let t0 = Instant::now();
    let cfg = config();
    let isn = SeqNum::new(SLIPWAY_ISN);
    let mut conn = TcpConn::from_host_accept(isn, 100_000, cfg, t0);
    let syn = conn.poll_transmit(t0).unwrap();
    assert!(syn.flags.syn && syn.ack.is_none());
    assert_eq!(syn.seq, isn);
    assert_eq!(syn.mss, Some(cfg.mss));
    assert_eq!(syn.window_scale, Some(cfg.window_scale));
    assert_eq!(syn.window, 65535, "SYN windows are never scaled");

    let syn_ack = Segment {
        seq: SeqNum::new(GUEST_ISN),
        ack: Some(isn + 1),
        flags: SYN,
        window: 65535,
        mss: Some(1000),
        window_scale: None,
    };
    let now = t0 + Duration::from_millis(5);
    let mut host = HostSock::with_space(100_000);
    conn.handle_guest_segment(now, &syn_ack, &[], &mut host);
    assert_eq!(conn.phase(), Phase::Established);
    let ack = conn.poll_transmit(now).unwrap();
    assert!(is_pure_ack(&ack));
    assert_eq!(ack.seq, isn + 1);
    assert_eq!(ack.ack, Some(SeqNum::new(GUEST_ISN + 1)));
    assert_eq!(ack.window, 65535, "no scaling once the guest declined it");
}

#[test]
fn no_window_scale_option_when_guest_offered_none() {
    let cfg = TcpConfig {
        window_scale: 7,
        ..config()
    };
    let syn = guest_syn(Some(1000), None, 3000);
    let (mut flow, syn_ack) = Flow::connected(cfg, syn, HostSock::with_space(1_000_000));
    assert_eq!(syn_ack.window_scale, None);
    assert_eq!(syn_ack.window, 65535);
    flow.ack(2, 0, 0);

    flow.data(10, 0, &bytes(1000, 1));
    let ack = only(&flow.flush(10));
    assert_eq!(ack.ack, Some(flow.g(1000)));
    assert_eq!(ack.window, 65535, "unscaled, the window is capped");

    // Nor is the guest's window scaled: 3000 bytes in flight, no more.
    flow.host_sends(20, &bytes(10_000, 2));
    let in_flight: usize = flow.flush(20).iter().map(|s| s.payload.len()).sum();
    assert_eq!(in_flight, 3000);
}

#[test]
fn window_scale_offered_back_when_guest_offered_one() {
    let cfg = TcpConfig {
        window_scale: 7,
        ..config()
    };
    // The guest's window field of 1000 means 4000 bytes once scaled by 2.
    let syn = guest_syn(Some(1000), Some(2), 1000);
    let (mut flow, syn_ack) = Flow::connected(cfg, syn, HostSock::with_space(1_000_000));
    assert_eq!(syn_ack.window_scale, Some(7));
    assert_eq!(syn_ack.window, 65535, "SYN windows are never scaled");
    flow.ack(2, 0, 0);

    flow.data(10, 0, &bytes(1000, 1));
    let ack = only(&flow.flush(10));
    let space = 1_000_000 - 1000;
    let scaled = u32::from(ack.window) << 7;
    // Rounded down to the scale unit: never more room than the host has.
    assert!(
        scaled <= space && scaled + 128 > space,
        "window {} << 7 for {space} bytes of space",
        ack.window
    );

    flow.host_sends(20, &bytes(10_000, 2));
    let in_flight: usize = flow.flush(20).iter().map(|s| s.payload.len()).sum();
    assert_eq!(in_flight, 4000);
}

#[test]
fn guest_mss_bounds_segments_to_guest() {
    // (guest MSS option, largest segment): slipway's own MSS is 1460, and
    // a SYN without the option means 536.
    for (guest_mss, largest) in [(Some(700), 700), (Some(9000), 1460), (None, 536)] {
        let syn = guest_syn(guest_mss, None, 65535);
        let mut flow = Flow::established(config(), syn, HostSock::with_space(20_000));
        flow.host_sends(10, &bytes(5000, 3));
        let sent = flow.flush(10);
        let lens: Vec<usize> = sent.iter().map(|s| s.payload.len()).collect();
        assert!(
            lens.iter().all(|&n| n <= largest),
            "{guest_mss:?}: {lens:?}"
        );
        assert_eq!(lens.iter().max(), Some(&largest), "{guest_mss:?}: {lens:?}");
        assert_eq!(lens.iter().sum::<usize>(), 5000);
    }
}

#[test]
fn with_a_gso_limit_data_segments_grow_past_the_mss_and_say_what_to_cut_to() {
    let syn = guest_syn(Some(1460), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(200_000));
    flow.conn.set_gso_limit(Some(16_000));
    assert_eq!(flow.conn.guest_mss(), 1460);
    flow.host_sends(10, &bytes(40_000, 4));
    let lens: Vec<usize> = flow.flush(10).iter().map(|s| s.payload.len()).collect();
    assert_eq!(lens.iter().max(), Some(&16_000), "{lens:?}");
    assert_eq!(lens.iter().sum::<usize>(), 40_000);
    flow.conn.set_gso_limit(None);
    flow.host_sends(20, &bytes(5000, 5));
    let lens: Vec<usize> = flow.flush(20).iter().map(|s| s.payload.len()).collect();
    assert!(lens.iter().all(|&n| n <= 1460), "{lens:?}");
}
