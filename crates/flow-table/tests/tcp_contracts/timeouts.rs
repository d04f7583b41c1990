//! Timeouts and interest: the idle timeout, keep-alive probes, the
//! readiness a flow asks for and its phase events.

use std::time::Duration;

use flow_table::tcp::{CloseReason, Event, Interest, Phase, Segment, SocketOp, TcpConfig};

use crate::harness::{
    FIN, Flow, HostSock, before, bytes, config, flow_with_guest_data, guest_syn, is_pure_ack, only,
};

#[test]
fn idle_timeout_resets_an_idle_flow() {
    let cfg = TcpConfig {
        idle_timeout: Some(Duration::from_secs(10)),
        ..config()
    };
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(cfg, syn, HostSock::with_space(10_000));
    assert_eq!(flow.next_timeout_ms(), Some(10_002));

    // Guest data at 5 s postpones it to 15 s.
    flow.data(5_000, 0, &bytes(100, 24));
    flow.flush(5_000);
    flow.timeout(10_002);
    assert!(flow.flush(10_002).is_empty());
    assert_eq!(flow.conn.phase(), Phase::Established);
    assert_eq!(flow.next_timeout_ms(), Some(15_000));

    flow.timeout(15_000);
    let rst = only(&flow.flush(15_000));
    assert!(rst.flags.rst);
    assert_eq!(rst.ack, Some(flow.g(100)));
    assert_eq!(flow.host.ops, [SocketOp::Reset]);
    assert_eq!(flow.conn.close_reason(), Some(CloseReason::IdleTimeout));
}

/// RFC 9293 §3.10.7.4: "If an incoming segment is not acceptable, an
/// acknowledgment should be sent in reply"; §3.8.4 keep-alives (SEG.SEQ =
/// SND.NXT-1, no data, as Linux and the BSDs send them) rely on exactly that
/// ACK, and an implementation "MUST be prepared to accept and respond to"
/// them. Unanswered, the guest kernel drops its own connection.
#[test]
fn guest_keepalive_probe_is_answered_with_an_ack() {
    let mut flow = flow_with_guest_data();
    let keepalive = Segment {
        seq: before(flow.g(100), 1),
        ..flow.seg(100)
    };
    // With one garbage octet (as Windows sends them) it is answered.
    flow.guest(4_000, keepalive, &[0]);
    assert_eq!(only(&flow.flush(4_000)).ack, Some(flow.g(100)));
    assert_eq!(flow.host.written.len(), 100);

    flow.guest(5_000, keepalive, &[]);
    let sent = flow.flush(5_000);
    assert_eq!(sent.len(), 1, "keep-alive answered with one ACK: {sent:?}");
    assert!(is_pure_ack(&sent[0].t));
    assert_eq!(sent[0].t.ack, Some(flow.g(100)));
    assert_eq!(sent[0].t.seq, flow.s(0));
}

#[test]
fn interest_narrows_when_nothing_can_progress() {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::connecting(config(), syn, HostSock::with_space(10_000));
    let both = |readable, writable| Interest { readable, writable };
    assert_eq!(
        flow.conn.interest(),
        both(false, true),
        "connect completion"
    );
    flow.connect(1);
    flow.ack(2, 0, 0);
    assert_eq!(flow.conn.interest(), both(true, false));

    flow.host_sends(10, &bytes(100, 25));
    assert_eq!(flow.conn.interest(), both(false, false), "bytes queued");
    flow.flush(10);
    assert_eq!(flow.conn.interest(), both(false, false), "bytes unacked");
    flow.ack(20, 0, 100);
    flow.flush(20);
    assert_eq!(flow.conn.interest(), both(true, false), "all acked");

    flow.set_space(30, 0);
    assert_eq!(
        flow.conn.interest(),
        both(true, true),
        "host send buffer full"
    );
    flow.set_space(40, 5000);
    flow.flush(40);
    assert_eq!(flow.conn.interest(), both(true, false));

    flow.conn.handle_host_eof(flow.at(50));
    assert_eq!(flow.conn.interest(), both(false, false), "after EOF");

    // After the guest's FIN nothing more goes to the host.
    flow.flush(50);
    flow.set_space(60, 0);
    let fin = Segment {
        flags: FIN,
        ..flow.seg(0)
    };
    flow.guest(60, fin, &[]);
    assert_eq!(flow.conn.interest(), both(false, false), "after guest FIN");

    flow.conn.handle_host_reset(flow.at(70));
    assert_eq!(flow.conn.interest(), Interest::default(), "closed");
}

fn phases(events: &[Event]) -> Vec<Phase> {
    let mut chain = Vec::new();
    for event in events {
        if let Event::PhaseChanged { from, to } = *event {
            if let Some(&last) = chain.last() {
                assert_eq!(from, last, "phase changes do not chain: {events:?}");
            } else {
                chain.push(from);
            }
            chain.push(to);
        }
    }
    chain
}

fn closed_events(events: &[Event]) -> Vec<CloseReason> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Closed(reason) => Some(*reason),
            Event::PhaseChanged { .. } => None,
        })
        .collect()
}

#[test]
fn phase_events_follow_the_lifecycle() {
    // The guest closes first.
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    let fin = Segment {
        flags: FIN,
        ..flow.seg(0)
    };
    flow.guest(10, fin, &[]);
    flow.flush(10);
    flow.conn.handle_host_eof(flow.at(20));
    assert!(only(&flow.flush(20)).flags.fin);
    flow.ack(30, 1, 1);
    flow.flush(30);
    use Phase::{
        CloseWait, Closed, Closing, Connecting, Established, FinWait, SynReceived, TimeWait,
    };
    assert_eq!(
        phases(&flow.events),
        [
            Connecting,
            SynReceived,
            Established,
            CloseWait,
            Closing,
            Closed
        ]
    );
    assert_eq!(closed_events(&flow.events), [CloseReason::Normal]);
    assert_eq!(flow.host.ops, [SocketOp::ShutdownWrite, SocketOp::Close]);

    // The host closes first.
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    flow.conn.handle_host_eof(flow.at(10));
    flow.flush(10);
    flow.guest_ack = 1;
    let fin = Segment {
        flags: FIN,
        ..flow.seg(0)
    };
    flow.guest(20, fin, &[]);
    flow.flush(20);
    let end = flow.next_timeout_ms().unwrap();
    flow.timeout(end);
    flow.flush(end);
    assert_eq!(
        phases(&flow.events),
        [
            Connecting,
            SynReceived,
            Established,
            FinWait,
            TimeWait,
            Closed
        ]
    );
    assert_eq!(closed_events(&flow.events), [CloseReason::Normal]);

    // The host refuses.
    let mut flow = Flow::connecting(config(), syn, HostSock::with_space(10_000));
    flow.conn.handle_host_connect_failed(flow.at(1));
    flow.flush(1);
    assert_eq!(phases(&flow.events), [Connecting, Closed]);
    assert_eq!(closed_events(&flow.events), [CloseReason::ConnectFailed]);
}
