//! Guest to host: only in-order bytes are written, each once, the guest
//! is acknowledged only for what the host socket accepted, and the window
//! follows the host send space.

use flow_table::tcp::{Phase, Segment, SegmentOutcome, SocketOp};

use crate::harness::{FIN, Flow, HostSock, bytes, config, guest_syn, is_pure_ack, only};

#[test]
fn in_order_guest_data_is_written_and_acked_only_for_accepted_bytes() {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    let data = bytes(1000, 4);
    flow.host.space = 300;
    assert_eq!(flow.data(10, 0, &data), SegmentOutcome::Accepted);
    assert_eq!(flow.host.written, data[..300]);
    let ack = only(&flow.flush(10));
    assert!(is_pure_ack(&ack));
    assert_eq!(ack.ack, Some(flow.g(300)), "only the accepted prefix");

    flow.host.space = 10_000;
    flow.data(20, 300, &data[300..]);
    assert_eq!(flow.host.written, data);
    assert_eq!(only(&flow.flush(20)).ack, Some(flow.g(1000)));
    assert_eq!(flow.conn.stats().bytes_to_host, 1000);
    assert_eq!(flow.conn.stats().host_backpressure, 1);
}

#[test]
fn out_of_order_guest_segment_is_never_written() {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    let data = bytes(1000, 5);
    for ms in [10, 11] {
        flow.data(ms, 500, &data[500..]);
        assert!(flow.host.written.is_empty());
        let dup = only(&flow.flush(ms));
        assert!(is_pure_ack(&dup));
        assert_eq!(dup.ack, Some(flow.g(0)));
    }
    flow.data(20, 0, &data[..500]);
    assert_eq!(flow.host.written, data[..500]);
    assert_eq!(only(&flow.flush(20)).ack, Some(flow.g(500)));
    // Nothing was kept from beyond the gap: the guest sends it again.
    flow.data(30, 500, &data[500..]);
    assert_eq!(flow.host.written, data);
    assert_eq!(flow.conn.stats().out_of_order, 2);
}

#[test]
fn retransmitted_guest_bytes_are_never_written_twice() {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    let data = bytes(1000, 6);
    flow.data(10, 0, &data[..600]);
    assert_eq!(only(&flow.flush(10)).ack, Some(flow.g(600)));

    // Overlaps 300 written bytes: only the new tail goes to the host.
    flow.data(20, 300, &data[300..900]);
    assert_eq!(flow.host.written, data[..900]);
    assert_eq!(only(&flow.flush(20)).ack, Some(flow.g(900)));

    // Entirely old: nothing written, the ACK is repeated.
    flow.data(30, 0, &data[..600]);
    assert_eq!(flow.host.written, data[..900]);
    assert_eq!(only(&flow.flush(30)).ack, Some(flow.g(900)));

    flow.data(40, 0, &data);
    assert_eq!(flow.host.written, data);
    assert_eq!(flow.conn.stats().bytes_to_host, 1000);
}

#[test]
fn advertised_window_follows_host_send_space() {
    let syn = guest_syn(Some(1000), None, 65535);
    let (mut flow, syn_ack) = Flow::connected(config(), syn, HostSock::with_space(4000));
    assert_eq!(syn_ack.window, 4000);
    flow.ack(2, 0, 0);

    let data = bytes(5000, 7);
    flow.data(10, 0, &data[..1000]);
    assert_eq!(only(&flow.flush(10)).window, 3000);

    // The host peer drains its side: the next segment's window shows it.
    flow.set_space(20, 4000);
    assert!(flow.flush(20).is_empty(), "the window was open already");
    for (i, window) in [(1, 3000), (2, 2000), (3, 1000), (4, 0)] {
        let ms = 30 + u64::from(i);
        let at = i as usize * 1000;
        flow.data(ms, i * 1000, &data[at..at + 1000]);
        let ack = only(&flow.flush(ms));
        assert_eq!(ack.window, window);
        assert_eq!(ack.ack, Some(flow.g((i + 1) * 1000)));
    }
    assert_eq!(flow.host.written, data);

    flow.set_space(40, 0);
    assert!(flow.conn.interest().writable);
    assert!(flow.flush(40).is_empty());

    flow.set_space(50, 6000);
    let update = only(&flow.flush(50));
    assert!(is_pure_ack(&update));
    assert_eq!(update.ack, Some(flow.g(5000)));
    assert_eq!(update.window, 6000);
    assert!(!flow.conn.interest().writable);
}

/// The relay measures send space only on writable readiness and after
/// writes, so once the window slipway advertised is shut, returning space
/// must either be announced at once or keep writable interest; anything else
/// leaves the guest waiting for its own persist timer.
#[test]
fn shut_window_is_reopened_by_any_returning_space() {
    let syn = guest_syn(Some(1460), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(1000));
    flow.data(10, 0, &bytes(1000, 7));
    assert_eq!(only(&flow.flush(10)).window, 0);
    flow.set_space(10, 0);
    assert!(flow.conn.interest().writable);

    flow.set_space(20, 500);
    let update = flow.flush(20);
    assert!(
        !update.is_empty() || flow.conn.interest().writable,
        "window 0 advertised, no update for 500 bytes of space, and no \
         writable interest left to learn of more: {:?}",
        flow.conn.interest()
    );
    if let [update] = update.as_slice() {
        assert!(is_pure_ack(&update.t));
        assert_eq!(update.t.window, 500);
    }
}

/// A guest that avoids the silly window syndrome sends nothing into a
/// window smaller than a segment. Such a window must count as shut: the flow
/// keeps writable interest and announces the window once a segment fits, or
/// the guest stalls until its persist timer (seconds, then backing off).
#[test]
fn window_below_one_segment_waits_for_writable_and_is_announced() {
    let syn = guest_syn(Some(1460), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(3000));
    flow.data(10, 0, &bytes(1460, 7));
    flow.data(10, 1460, &bytes(1460, 8));
    assert_eq!(only(&flow.flush(10)).window, 80);
    assert!(
        flow.conn.interest().writable,
        "80 bytes of space is below one 1460-byte segment"
    );

    flow.set_space(20, 64_000);
    let update = only(&flow.flush(20));
    assert!(is_pure_ack(&update));
    assert_eq!(update.window, 64_000);
    assert!(!flow.conn.interest().writable);
}

#[test]
fn fin_carrying_data_writes_data_then_shuts_down_write() {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    let data = bytes(500, 8);

    // The host takes only part: the FIN waits for the rest.
    flow.host.space = 200;
    let fin = Segment {
        flags: FIN,
        ..flow.seg(0)
    };
    flow.guest(10, fin, &data);
    assert_eq!(only(&flow.flush(10)).ack, Some(flow.g(200)));
    assert_eq!(flow.host.shutdown_after, None);
    assert_eq!(flow.conn.phase(), Phase::Established);

    flow.host.space = 10_000;
    let fin = Segment {
        flags: FIN,
        ..flow.seg(200)
    };
    flow.guest(20, fin, &data[200..]);
    let ack = only(&flow.flush(20));
    assert_eq!(ack.ack, Some(flow.g(501)), "data and FIN");
    assert_eq!(flow.host.written, data);
    assert_eq!(flow.host.ops, [SocketOp::ShutdownWrite]);
    assert_eq!(flow.host.shutdown_after, Some(500));
    assert_eq!(flow.conn.phase(), Phase::CloseWait);
}
