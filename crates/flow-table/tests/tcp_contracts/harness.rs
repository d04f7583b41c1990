//! The flow under test: one `TcpConn`, the host socket it writes to and
//! peeks from, and the guest side built by hand, on a virtual clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use flow_table::tcp::{
    Event, Flags, HostError, HostWriter, PeekRange, Phase, Segment, SegmentOutcome, SeqNum,
    SocketOp, TcpConfig, TcpConn, Transmit,
};

pub const GUEST_ISN: u32 = 1_000_000;
pub const SLIPWAY_ISN: u32 = 7_000_000;

pub const ACK: Flags = Flags {
    syn: false,
    fin: false,
    rst: false,
    psh: false,
};
pub const SYN: Flags = Flags { syn: true, ..ACK };
pub const FIN: Flags = Flags { fin: true, ..ACK };
pub const RST: Flags = Flags { rst: true, ..ACK };

// ----- the host socket -----

/// The host socket as the relay sees it: a send buffer that takes what fits
/// and a receive queue that segments to the guest peek into.
#[derive(Debug, Default)]
pub struct HostSock {
    /// Free space of the send buffer; a write takes at most this much.
    pub space: usize,
    /// Every byte written toward the host peer, in order.
    pub written: Vec<u8>,
    /// The receive queue: bytes from the host peer not consumed yet.
    pub queue: VecDeque<u8>,
    /// Every byte the host peer sent, from stream offset 0.
    pub from_peer: Vec<u8>,
    /// Socket operations carried out, in order.
    pub ops: Vec<SocketOp>,
    /// How many bytes had been written when `ShutdownWrite` was carried out.
    pub shutdown_after: Option<usize>,
    /// The error every write fails with, if set.
    pub fail: Option<HostError>,
}

impl HostSock {
    pub fn with_space(space: usize) -> Self {
        Self {
            space,
            ..Self::default()
        }
    }

    pub fn peek(&self, range: PeekRange) -> Vec<u8> {
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
pub struct Sent {
    pub t: Transmit,
    pub payload: Vec<u8>,
}

/// One connection, its host socket and the virtual clock's origin.
pub struct Flow {
    pub conn: TcpConn,
    pub host: HostSock,
    pub t0: Instant,
    pub guest_isn: SeqNum,
    pub slipway_isn: SeqNum,
    /// Window field of the guest's segments.
    pub guest_window: u16,
    /// Slipway stream offset the guest's segments acknowledge.
    pub guest_ack: u32,
    pub events: Vec<Event>,
}

impl Flow {
    /// The guest sent `syn` at time 0; the host connect is in progress.
    pub fn connecting(config: TcpConfig, syn: Segment, host: HostSock) -> Self {
        Self::connecting_with_isn(config, syn, host, SeqNum::new(SLIPWAY_ISN))
    }

    pub fn connecting_with_isn(
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
    pub fn connected(config: TcpConfig, syn: Segment, host: HostSock) -> (Self, Transmit) {
        let mut flow = Self::connecting(config, syn, host);
        let syn_ack = flow.connect(1);
        (flow, syn_ack)
    }

    pub fn connect(&mut self, ms: u64) -> Transmit {
        let space = u32::try_from(self.host.space).unwrap();
        self.conn.handle_host_connected(self.at(ms), space);
        let sent = self.flush(ms);
        assert_eq!(sent.len(), 1, "one SYN-ACK: {sent:?}");
        assert!(sent[0].t.flags.syn, "{sent:?}");
        sent[0].t
    }

    /// The guest's ACK of the SYN-ACK arrives at 2 ms.
    pub fn established(config: TcpConfig, syn: Segment, host: HostSock) -> Self {
        let (mut flow, _) = Self::connected(config, syn, host);
        flow.ack(2, 0, 0);
        assert!(flow.flush(2).is_empty());
        assert_eq!(flow.conn.phase(), Phase::Established);
        flow
    }

    pub fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Guest stream byte `n`.
    pub fn g(&self, n: u32) -> SeqNum {
        self.guest_isn + 1 + n
    }

    /// Slipway stream byte `n`.
    pub fn s(&self, n: u32) -> SeqNum {
        self.slipway_isn + 1 + n
    }

    /// A guest segment at guest offset `seq` with the guest's current ACK.
    pub fn seg(&self, seq: u32) -> Segment {
        Segment {
            seq: self.g(seq),
            ack: Some(self.s(self.guest_ack)),
            flags: ACK,
            window: self.guest_window,
            mss: None,
            window_scale: None,
        }
    }

    pub fn guest(&mut self, ms: u64, seg: Segment, payload: &[u8]) -> SegmentOutcome {
        let now = self.at(ms);
        self.conn
            .handle_guest_segment(now, &seg, payload, &mut self.host)
    }

    /// Guest data at guest offset `seq`.
    pub fn data(&mut self, ms: u64, seq: u32, payload: &[u8]) -> SegmentOutcome {
        let seg = self.seg(seq);
        self.guest(ms, seg, payload)
    }

    /// A pure ACK from the guest at guest offset `seq` of slipway offset `ack`.
    pub fn ack(&mut self, ms: u64, seq: u32, ack: u32) -> SegmentOutcome {
        self.guest_ack = ack;
        let seg = self.seg(seq);
        self.guest(ms, seg, &[])
    }

    /// The host peer sends `data`; the relay reports the receive queue.
    pub fn host_sends(&mut self, ms: u64, data: &[u8]) {
        self.host.queue.extend(data);
        self.host.from_peer.extend_from_slice(data);
        let now = self.at(ms);
        self.conn.handle_host_readable(now, self.host.queue.len());
    }

    pub fn set_space(&mut self, ms: u64, space: usize) {
        self.host.space = space;
        let now = self.at(ms);
        self.conn
            .handle_host_send_space(now, u32::try_from(space).unwrap());
    }

    pub fn timeout(&mut self, ms: u64) {
        let now = self.at(ms);
        self.conn.handle_timeout(now);
    }

    pub fn next_timeout_ms(&self) -> Option<u64> {
        self.conn.poll_timeout().map(|at| {
            let d = at.duration_since(self.t0);
            assert_eq!(d.subsec_nanos() % 1_000_000, 0, "deadline {d:?} off the ms");
            u64::try_from(d.as_millis()).unwrap()
        })
    }

    /// Carries out the socket operations, then takes every segment due (and
    /// checks each payload is the host peer's bytes at its sequence number).
    pub fn flush(&mut self, ms: u64) -> Vec<Sent> {
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

pub fn config() -> TcpConfig {
    TcpConfig {
        mss: 1460,
        ..TcpConfig::default()
    }
}

pub fn guest_syn(mss: Option<u16>, window_scale: Option<u8>, window: u16) -> Segment {
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
pub fn bytes(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((u32::try_from(i).unwrap().wrapping_mul(2_654_435_761) ^ seed) >> 24) as u8)
        .collect()
}

pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap()
}

/// `seq - n` on the sequence circle.
pub fn before(seq: SeqNum, n: u32) -> SeqNum {
    SeqNum::new(seq.get().wrapping_sub(n))
}

pub fn only(sent: &[Sent]) -> Transmit {
    assert_eq!(sent.len(), 1, "exactly one segment: {sent:?}");
    sent[0].t
}

pub fn is_pure_ack(t: &Transmit) -> bool {
    !t.flags.syn && !t.flags.fin && !t.flags.rst && t.ack.is_some() && t.payload.is_none()
}

/// A flow where the guest sent 100 bytes and slipway advertised 9900 more.
pub fn flow_with_guest_data() -> Flow {
    let syn = guest_syn(Some(1000), None, 65535);
    let mut flow = Flow::established(config(), syn, HostSock::with_space(10_000));
    flow.data(10, 0, &bytes(100, 14));
    let ack = only(&flow.flush(10));
    assert_eq!(ack.window, 9900);
    flow
}
