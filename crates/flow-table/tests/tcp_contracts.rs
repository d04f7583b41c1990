//! Contract tests of the TCP sequence-mirroring state machine: one
//! deterministic scenario per behaviour, driving `TcpConn` with hand-built
//! guest segments and a simulated host socket on a virtual clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use flow_table::tcp::{
    CloseReason, Event, Flags, HostError, HostWriter, Interest, PeekRange, Phase, Segment,
    SegmentOutcome, SeqNum, SocketOp, TcpConfig, TcpConn, Transmit, rst_for_unknown,
};

const GUEST_ISN: u32 = 1_000_000;
const SLIPWAY_ISN: u32 = 7_000_000;

const ACK: Flags = Flags {
    syn: false,
    fin: false,
    rst: false,
    psh: false,
};
const SYN: Flags = Flags { syn: true, ..ACK };
const FIN: Flags = Flags { fin: true, ..ACK };
const RST: Flags = Flags { rst: true, ..ACK };

// ----- the host socket -----

/// The host socket as the relay sees it: a send buffer that takes what fits
/// and a receive queue that segments to the guest peek into.
#[derive(Debug, Default)]
struct HostSock {
    /// Free space of the send buffer; a write takes at most this much.
    space: usize,
    /// Every byte written toward the host peer, in order.
    written: Vec<u8>,
    /// The receive queue: bytes from the host peer not consumed yet.
    queue: VecDeque<u8>,
    /// Every byte the host peer sent, from stream offset 0.
    from_peer: Vec<u8>,
    /// Socket operations carried out, in order.
    ops: Vec<SocketOp>,
    /// How many bytes had been written when `ShutdownWrite` was carried out.
    shutdown_after: Option<usize>,
    /// The error every write fails with, if set.
    fail: Option<HostError>,
}

impl HostSock {
    fn with_space(space: usize) -> Self {
        Self {
            space,
            ..Self::default()
        }
    }

    fn peek(&self, range: PeekRange) -> Vec<u8> {
        assert!(
            range.offset + range.len <= self.queue.len(),
            "peek {range:?} beyond the {} queued bytes",
            self.queue.len()
        );
        self.queue
            .range(range.offset..range.offset + range.len)
            .copied()
            .collect()
    }
}

impl HostWriter for HostSock {
    fn write(&mut self, data: &[u8]) -> Result<usize, HostError> {
        if let Some(err) = self.fail {
            return Err(err);
        }
        let n = data.len().min(self.space);
        self.written.extend_from_slice(&data[..n]);
        self.space -= n;
        Ok(n)
    }
}

// ----- the flow under test -----

/// A segment slipway sent to the guest, with its peeked payload.
#[derive(Debug)]
struct Sent {
    t: Transmit,
    payload: Vec<u8>,
}

/// One connection, its host socket and the virtual clock's origin.
struct Flow {
    conn: TcpConn,
    host: HostSock,
    t0: Instant,
    guest_isn: SeqNum,
    slipway_isn: SeqNum,
    /// Window field of the guest's segments.
    guest_window: u16,
    /// Slipway stream offset the guest's segments acknowledge.
    guest_ack: u32,
    events: Vec<Event>,
}

impl Flow {
    /// The guest sent `syn` at time 0; the host connect is in progress.
    fn connecting(config: TcpConfig, syn: Segment, host: HostSock) -> Self {
        Self::connecting_with_isn(config, syn, host, SeqNum::new(SLIPWAY_ISN))
    }

    fn connecting_with_isn(
        config: TcpConfig,
        syn: Segment,
        host: HostSock,
        slipway_isn: SeqNum,
    ) -> Self {
        let t0 = Instant::now();
        Self {
            conn: TcpConn::from_guest_syn(&syn, slipway_isn, config, t0),
            host,
            t0,
            guest_isn: syn.seq,
            slipway_isn,
            guest_window: syn.window,
            guest_ack: 0,
            events: Vec::new(),
        }
    }

    /// The host connect completes at 1 ms; returns the SYN-ACK.
    fn connected(config: TcpConfig, syn: Segment, host: HostSock) -> (Self, Transmit) {
        let mut flow = Self::connecting(config, syn, host);
        let syn_ack = flow.connect(1);
        (flow, syn_ack)
    }

    fn connect(&mut self, ms: u64) -> Transmit {
        let space = u32::try_from(self.host.space).unwrap();
        self.conn.handle_host_connected(self.at(ms), space);
        let sent = self.flush(ms);
        assert_eq!(sent.len(), 1, "one SYN-ACK: {sent:?}");
        assert!(sent[0].t.flags.syn, "{sent:?}");
        sent[0].t
    }

    /// The guest's ACK of the SYN-ACK arrives at 2 ms.
    fn established(config: TcpConfig, syn: Segment, host: HostSock) -> Self {
        let (mut flow, _) = Self::connected(config, syn, host);
        flow.ack(2, 0, 0);
        assert!(flow.flush(2).is_empty());
        assert_eq!(flow.conn.phase(), Phase::Established);
        flow
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Guest stream byte `n`.
    fn g(&self, n: u32) -> SeqNum {
        self.guest_isn + 1 + n
    }

    /// Slipway stream byte `n`.
    fn s(&self, n: u32) -> SeqNum {
        self.slipway_isn + 1 + n
    }

    /// A guest segment at guest offset `seq` with the guest's current ACK.
    fn seg(&self, seq: u32) -> Segment {
        Segment {
            seq: self.g(seq),
            ack: Some(self.s(self.guest_ack)),
            flags: ACK,
            window: self.guest_window,
            mss: None,
            window_scale: None,
        }
    }

    fn guest(&mut self, ms: u64, seg: Segment, payload: &[u8]) -> SegmentOutcome {
        let now = self.at(ms);
        self.conn
            .handle_guest_segment(now, &seg, payload, &mut self.host)
    }

    /// Guest data at guest offset `seq`.
    fn data(&mut self, ms: u64, seq: u32, payload: &[u8]) -> SegmentOutcome {
        let seg = self.seg(seq);
        self.guest(ms, seg, payload)
    }

    /// A pure ACK from the guest at guest offset `seq` of slipway offset `ack`.
    fn ack(&mut self, ms: u64, seq: u32, ack: u32) -> SegmentOutcome {
        self.guest_ack = ack;
        let seg = self.seg(seq);
        self.guest(ms, seg, &[])
    }

    /// The host peer sends `data`; the relay reports the receive queue.
    fn host_sends(&mut self, ms: u64, data: &[u8]) {
        self.host.queue.extend(data);
        self.host.from_peer.extend_from_slice(data);
        let now = self.at(ms);
        self.conn.handle_host_readable(now, self.host.queue.len());
    }

    fn set_space(&mut self, ms: u64, space: usize) {
        self.host.space = space;
        let now = self.at(ms);
        self.conn
            .handle_host_send_space(now, u32::try_from(space).unwrap());
    }

    fn timeout(&mut self, ms: u64) {
        let now = self.at(ms);
        self.conn.handle_timeout(now);
    }

    fn next_timeout_ms(&self) -> Option<u64> {
        self.conn.poll_timeout().map(|at| {
            let d = at.duration_since(self.t0);
            assert_eq!(d.subsec_nanos() % 1_000_000, 0, "deadline {d:?} off the ms");
            u64::try_from(d.as_millis()).unwrap()
        })
    }

    /// Carries out the socket operations, then takes every segment due (and
    /// checks each payload is the host peer's bytes at its sequence number).
    fn flush(&mut self, ms: u64) -> Vec<Sent> {
        let now = self.at(ms);
        for _ in 0..100 {
            let Some(op) = self.conn.poll_socket_op() else {
                break;
            };
            self.host.ops.push(op);
            match op {
                SocketOp::Consume(n) => {
                    assert!(n <= self.host.queue.len(), "consume {n} beyond the queue");
                    self.host.queue.drain(..n);
                    self.conn.handle_host_readable(now, self.host.queue.len());
                }
                SocketOp::ShutdownWrite => self.host.shutdown_after = Some(self.host.written.len()),
                SocketOp::Close | SocketOp::Reset => {}
            }
        }
        let mut sent = Vec::new();
        while let Some(t) = self.conn.poll_transmit(now) {
            assert!(sent.len() < 10_000, "poll_transmit does not run dry");
            let payload = t.payload.map_or_else(Vec::new, |r| self.host.peek(r));
            if !payload.is_empty() {
                let off = t.seq.since(self.s(0)) as usize;
                assert_eq!(
                    payload,
                    self.host.from_peer[off..off + payload.len()],
                    "payload of {t:?} is not the host peer's bytes at offset {off}"
                );
            }
            sent.push(Sent { t, payload });
        }
        self.events
            .extend(std::iter::from_fn(|| self.conn.poll_event()));
        sent
    }
}

fn config() -> TcpConfig {
    TcpConfig {
        mss: 1460,
        ..TcpConfig::default()
    }
}

fn guest_syn(mss: Option<u16>, window_scale: Option<u8>, window: u16) -> Segment {
    Segment {
        seq: SeqNum::new(GUEST_ISN),
        ack: None,
        flags: SYN,
        window,
        mss,
        window_scale,
    }
}

/// Deterministic bytes where a misplaced byte shows.
fn bytes(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((u32::try_from(i).unwrap().wrapping_mul(2_654_435_761) ^ seed) >> 24) as u8)
        .collect()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap()
}

/// `seq - n` on the sequence circle.
fn before(seq: SeqNum, n: u32) -> SeqNum {
    SeqNum::new(seq.get().wrapping_sub(n))
}

fn only(sent: &[Sent]) -> Transmit {
    assert_eq!(sent.len(), 1, "exactly one segment: {sent:?}");
    sent[0].t
}

fn is_pure_ack(t: &Transmit) -> bool {
    !t.flags.syn && !t.flags.fin && !t.flags.rst && t.ack.is_some() && t.payload.is_none()
}

// ----- handshake -----

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

// ----- windows and MSS -----

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

// ----- guest to host -----

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

// ----- host to guest -----

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

// ----- RST -----

/// A flow where the guest sent 100 bytes and slipway advertised 9900 more.
fn flow_with_guest_data() -> Flow {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    flow.data(10, 0, &bytes(100, 14));
    let ack = only(&flow.flush(10));
    assert_eq!(ack.window, 9900);
    flow
}

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

// ----- acknowledgments, retransmission, windows of the guest -----

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

// ----- timeouts and interest -----

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

// ----- closing after a timeout, long zero windows -----

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
