//! A simulated guest TCP endpoint, a simulated host socket and a lossy link
//! between the guest and the state machine, all on a virtual clock.
//!
//! Shared by the model-based test and the `lossy-transfer` example.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use flow_table::tcp::{
    CloseReason, Flags, HostError, Phase, Segment, SeqNum, SocketOp, TcpConfig, TcpConn, Transmit,
};

/// splitmix64: small, seedable, good enough for a simulation.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 1.0 < p
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Deterministic pseudo-random payload, so a misplaced byte is visible.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Who opens the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opener {
    /// The guest connects out (SYN from the guest).
    Guest,
    /// A host peer connects to a forwarded port (SYN from slipway).
    Host,
}

/// Every knob of one simulated transfer.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub opener: Opener,
    /// Bytes the guest sends to the host.
    pub up: usize,
    /// Bytes the host sends to the guest.
    pub down: usize,
    pub loss: f64,
    pub duplication: f64,
    /// Extra random delay of each segment, which reorders them.
    pub jitter: Duration,
    pub link_delay: Duration,
    pub guest_isn: u32,
    pub slipway_isn: u32,
    pub guest_mss: u16,
    pub guest_wscale: Option<u8>,
    pub guest_rcv_buf: usize,
    /// The guest keeps segments that arrive beyond a gap, as Linux does.
    pub guest_reassembly: bool,
    pub slipway_mss: u16,
    pub host_snd_buf: usize,
    pub host_rcv_buf: usize,
    /// How the host application drains what the guest sent.
    pub host_read_chunk: usize,
    /// How the host application fills what goes to the guest.
    pub host_write_chunk: usize,
    pub guest_read_chunk: usize,
    pub app_interval: Duration,
    pub connect_delay: Duration,
    /// Delay before the guest closes its side once everything is sent.
    pub guest_close_delay: Duration,
    /// Delay before the host peer closes its side once everything is written.
    pub host_close_delay: Duration,
    /// Give up after this much simulated time.
    pub time_limit: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            opener: Opener::Guest,
            up: 100_000,
            down: 100_000,
            loss: 0.0,
            duplication: 0.0,
            jitter: Duration::ZERO,
            link_delay: Duration::from_micros(50),
            guest_isn: u32::MAX - 1000,
            slipway_isn: u32::MAX - 10,
            guest_mss: 1460,
            guest_wscale: Some(7),
            guest_rcv_buf: 64 * 1024,
            guest_reassembly: true,
            slipway_mss: 1460,
            host_snd_buf: 16 * 1024,
            host_rcv_buf: 32 * 1024,
            host_read_chunk: 8 * 1024,
            host_write_chunk: 8 * 1024,
            guest_read_chunk: 8 * 1024,
            app_interval: Duration::from_micros(200),
            connect_delay: Duration::from_micros(300),
            guest_close_delay: Duration::ZERO,
            host_close_delay: Duration::ZERO,
            time_limit: Duration::from_secs(900),
        }
    }
}

/// A segment on the simulated link, payload included.
#[derive(Clone, Debug)]
struct Wire {
    seq: SeqNum,
    ack: Option<SeqNum>,
    flags: Flags,
    window: u16,
    mss: Option<u16>,
    wscale: Option<u8>,
    payload: Vec<u8>,
}

impl Wire {
    fn seq_len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.flags.syn) + u32::from(self.flags.fin)
    }
}

/// A one-way lossy link with delay, jitter and duplication.
struct Link {
    queue: Vec<(Instant, u64, Wire)>,
    order: u64,
    sent: u64,
    lost: u64,
    duplicated: u64,
}

impl Link {
    fn new() -> Self {
        Self {
            queue: Vec::new(),
            order: 0,
            sent: 0,
            lost: 0,
            duplicated: 0,
        }
    }

    fn send(&mut self, now: Instant, wire: Wire, cfg: &SimConfig, rng: &mut Rng) {
        self.sent += 1;
        if rng.chance(cfg.loss) {
            self.lost += 1;
            return;
        }
        let copies = if rng.chance(cfg.duplication) {
            self.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if cfg.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_nanos(rng.range(0, cfg.jitter.as_nanos() as u64))
            };
            self.order += 1;
            self.queue
                .push((now + cfg.link_delay + jitter, self.order, wire.clone()));
        }
    }

    fn next_time(&self) -> Option<Instant> {
        self.queue.iter().map(|(t, _, _)| *t).min()
    }

    fn pop_due(&mut self, now: Instant) -> Option<Wire> {
        let idx = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, (t, _, _))| *t <= now)
            .min_by_key(|(_, (t, o, _))| (*t, *o))
            .map(|(i, _)| i)?;
        Some(self.queue.swap_remove(idx).2)
    }
}

/// The guest's TCP endpoint: a small but honest TCP with go-back-N
/// retransmission, zero-window probes and in-order reception.
struct Guest {
    iss: SeqNum,
    data: Vec<u8>,
    // Offsets into `data`.
    snd_una: u64,
    snd_nxt: u64,
    snd_max: u64,
    syn_acked: bool,
    syn_due: bool,
    fin_due: bool,
    fin_sent: bool,
    fin_acked: bool,
    app_closed: bool,
    close_at: Option<Instant>,
    peer_wnd: u64,
    peer_wscale: u8,
    own_wscale: u8,
    mss: u16,
    irs: Option<SeqNum>,
    rcv_nxt: SeqNum,
    rcv_buffered: usize,
    rcv_cap: usize,
    received: Vec<u8>,
    /// Out-of-order segments by stream offset.
    ooo: std::collections::BTreeMap<u32, (Vec<u8>, bool)>,
    ooo_bytes: usize,
    peer_fin: bool,
    ack_due: bool,
    rto_base: Duration,
    backoff: u32,
    timer: Option<Instant>,
    force_one: bool,
    dup_acks: u32,
    got_rst: bool,
    violations: Vec<String>,
}

impl Guest {
    fn seq_at(&self, off: u64) -> SeqNum {
        self.iss + 1 + off as u32
    }

    fn window_field(&self) -> u16 {
        let free = self.rcv_cap.saturating_sub(self.rcv_buffered) as u64;
        (free >> self.own_wscale).min(65535) as u16
    }

    fn outstanding(&self) -> bool {
        !self.syn_acked || self.snd_nxt > self.snd_una || (self.fin_sent && !self.fin_acked)
    }

    fn arm(&mut self, now: Instant) {
        let rto = self.rto_base * (1 << self.backoff.min(6));
        self.timer = Some(now + rto);
    }

    fn on_segment(&mut self, now: Instant, w: &Wire, cfg: &SimConfig) {
        if w.flags.rst {
            // An RST that answers a late duplicate after both sides are
            // done is what a guest in TIME-WAIT may see; any other is a bug.
            if !self.done_with_link() {
                self.got_rst = true;
            }
            return;
        }
        if w.flags.syn {
            self.on_syn(now, w, cfg);
            return;
        }
        if self.irs.is_none() {
            return;
        }
        if let Some(ack) = w.ack {
            let pure = w.payload.is_empty() && !w.flags.fin;
            self.on_ack(now, ack, w.window, pure);
        }
        if w.payload.is_empty() && !w.flags.fin {
            return;
        }
        self.ack_due = true;
        if self.peer_fin {
            return;
        }
        if w.seq != self.rcv_nxt {
            self.hold_out_of_order(w, cfg);
            return;
        }
        self.accept_in_order(&w.payload, w.flags.fin);
        // Segments held out of order that now continue the stream.
        loop {
            let at = self.stream_offset(self.rcv_nxt);
            let Some(entry) = self.ooo.first_entry() else {
                break;
            };
            if *entry.key() > at {
                break;
            }
            if *entry.key() < at {
                // Overtaken by what arrived in order.
                let (_, (data, _)) = entry.remove_entry();
                self.ooo_bytes -= data.len();
                continue;
            }
            let (_, (data, fin)) = entry.remove_entry();
            self.ooo_bytes -= data.len();
            self.accept_in_order(&data, fin);
        }
    }

    fn accept_in_order(&mut self, payload: &[u8], fin: bool) {
        if self.peer_fin {
            return;
        }
        // Segments held beyond the gap were admitted only where they fit
        // behind the window, so they take no room from the in-order data.
        let room = self.rcv_cap - self.rcv_buffered;
        let take = payload.len().min(room);
        self.received.extend_from_slice(&payload[..take]);
        self.rcv_buffered += take;
        self.rcv_nxt = self.rcv_nxt + take as u32;
        if fin && take == payload.len() {
            self.peer_fin = true;
            self.rcv_nxt = self.rcv_nxt + 1;
        }
    }

    /// A real stack keeps segments beyond a gap (up to its buffer); the
    /// simulation does so when configured, and drops them otherwise.
    fn hold_out_of_order(&mut self, w: &Wire, cfg: &SimConfig) {
        if !cfg.guest_reassembly || !w.seq.gt(self.rcv_nxt) || w.payload.is_empty() {
            return;
        }
        let ahead = w.seq.since(self.rcv_nxt) as usize;
        let room = self.rcv_cap - self.rcv_buffered;
        if ahead + w.payload.len() > room
            || self.ooo_bytes + w.payload.len() > room
            || self.ooo.contains_key(&self.stream_offset(w.seq))
        {
            return;
        }
        self.ooo_bytes += w.payload.len();
        self.ooo
            .insert(self.stream_offset(w.seq), (w.payload.clone(), w.flags.fin));
    }

    /// Position in the received stream, which never wraps in a simulation.
    fn stream_offset(&self, seq: SeqNum) -> u32 {
        seq.since(self.irs.unwrap_or(SeqNum::new(0)) + 1)
    }

    fn on_syn(&mut self, now: Instant, w: &Wire, cfg: &SimConfig) {
        let expects_syn_ack = cfg.opener == Opener::Guest;
        if expects_syn_ack && w.ack != Some(self.iss + 1) {
            self.violations.push(format!("SYN-ACK acks {:?}", w.ack));
            return;
        }
        if expects_syn_ack && cfg.guest_wscale.is_none() && w.wscale.is_some() {
            self.violations
                .push("window scale option sent to a guest that offered none".into());
        }
        if self.irs.is_none() {
            self.irs = Some(w.seq);
            self.rcv_nxt = w.seq + 1;
            self.mss = cfg.guest_mss.min(w.mss.unwrap_or(536));
            match (cfg.guest_wscale, w.wscale) {
                (Some(own), Some(peer)) => {
                    self.own_wscale = own;
                    self.peer_wscale = peer;
                }
                _ => {
                    self.own_wscale = 0;
                    self.peer_wscale = 0;
                }
            }
        }
        if expects_syn_ack && self.syn_acked {
            // A duplicate SYN-ACK: acknowledge it again, nothing more.
            self.ack_due = true;
        } else if expects_syn_ack {
            self.syn_acked = true;
            self.peer_wnd = u64::from(w.window);
            self.backoff = 0;
            self.timer = None;
            self.ack_due = true;
        } else {
            // Passive open: (re)send our SYN-ACK.
            self.syn_due = true;
        }
        let _ = now;
    }

    fn on_ack(&mut self, now: Instant, ack: SeqNum, window: u16, pure: bool) {
        if !self.syn_acked {
            if ack == self.iss + 1 {
                self.syn_acked = true;
                self.backoff = 0;
                self.timer = None;
            } else {
                return;
            }
        }
        self.peer_wnd = u64::from(window) << self.peer_wscale;
        let una = self.seq_at(self.snd_una);
        let max_ack = self.seq_at(self.snd_max.max(self.snd_una)) + u32::from(self.fin_sent);
        if ack.gt(una) && ack.le(max_ack) {
            let acked = u64::from(ack.since(una));
            let data = acked.min(self.data.len() as u64 - self.snd_una);
            self.snd_una += data;
            if self.snd_nxt < self.snd_una {
                self.snd_nxt = self.snd_una;
            }
            if self.fin_sent && acked > data {
                self.fin_acked = true;
            }
            self.backoff = 0;
            self.dup_acks = 0;
            self.timer = None;
            if self.outstanding() {
                self.arm(now);
            }
        } else if ack == una && pure && self.snd_nxt > self.snd_una {
            // Three duplicate ACKs: go back to the first unacknowledged byte.
            self.dup_acks += 1;
            if self.dup_acks == 3 {
                self.snd_nxt = self.snd_una;
            }
        } else if ack.gt(max_ack) {
            self.violations.push(format!(
                "ACK {ack} beyond anything the guest sent ({max_ack})"
            ));
        }
    }

    fn on_timer(&mut self, now: Instant) {
        self.timer = None;
        self.backoff += 1;
        if !self.syn_acked {
            self.syn_due = true;
        } else {
            self.snd_nxt = self.snd_una;
            if self.fin_sent && !self.fin_acked {
                self.fin_due = true;
            }
            self.force_one = true;
        }
        self.arm(now);
    }

    fn poll(&mut self, now: Instant, cfg: &SimConfig) -> Option<Wire> {
        if self.syn_due {
            self.syn_due = false;
            if self.timer.is_none() {
                self.arm(now);
            }
            let passive = cfg.opener == Opener::Host;
            return Some(Wire {
                seq: self.iss,
                ack: passive.then_some(self.rcv_nxt),
                flags: Flags {
                    syn: true,
                    ..Flags::default()
                },
                window: self.window_field().max(1),
                mss: Some(cfg.guest_mss),
                wscale: cfg.guest_wscale,
                payload: Vec::new(),
            });
        }
        if !self.syn_acked || self.irs.is_none() {
            return None;
        }
        let len = self.data.len() as u64;
        if self.snd_nxt < len && !self.fin_sent {
            let wnd_end = self.snd_una + self.peer_wnd;
            let mut n = (len - self.snd_nxt).min(u64::from(self.mss));
            n = n.min(wnd_end.saturating_sub(self.snd_nxt));
            if n == 0 && self.force_one {
                n = 1;
            }
            if n > 0 {
                self.force_one = false;
                let start = self.snd_nxt;
                self.snd_nxt += n;
                self.snd_max = self.snd_max.max(self.snd_nxt);
                let fin = self.app_closed && self.snd_nxt == len;
                if fin {
                    self.fin_sent = true;
                }
                if self.timer.is_none() {
                    self.arm(now);
                }
                self.ack_due = false;
                return Some(Wire {
                    seq: self.seq_at(start),
                    ack: Some(self.rcv_nxt),
                    flags: Flags {
                        fin,
                        ..Flags::default()
                    },
                    window: self.window_field(),
                    mss: None,
                    wscale: None,
                    payload: self.data[start as usize..(start + n) as usize].to_vec(),
                });
            }
            if self.timer.is_none() {
                // Shut window: the timer doubles as the persist timer.
                self.arm(now);
            }
        }
        let all_sent = self.snd_nxt == len;
        if self.app_closed && all_sent && (!self.fin_sent || self.fin_due) {
            self.fin_sent = true;
            self.fin_due = false;
            if self.timer.is_none() {
                self.arm(now);
            }
            self.ack_due = false;
            return Some(Wire {
                seq: self.seq_at(len),
                ack: Some(self.rcv_nxt),
                flags: Flags {
                    fin: true,
                    ..Flags::default()
                },
                window: self.window_field(),
                mss: None,
                wscale: None,
                payload: Vec::new(),
            });
        }
        if self.ack_due {
            self.ack_due = false;
            let seq = if self.fin_sent {
                self.seq_at(len) + 1
            } else {
                self.seq_at(self.snd_nxt)
            };
            return Some(Wire {
                seq,
                ack: Some(self.rcv_nxt),
                flags: Flags::default(),
                window: self.window_field(),
                mss: None,
                wscale: None,
                payload: Vec::new(),
            });
        }
        None
    }

    fn app_tick(&mut self, now: Instant, cfg: &SimConfig) {
        if self.rcv_buffered > 0 {
            let before = self.window_field();
            self.rcv_buffered -= self.rcv_buffered.min(cfg.guest_read_chunk);
            let after = self.window_field();
            let mss_units = u64::from(self.mss) >> self.own_wscale;
            // Like Linux, no window update once the peer's FIN arrived.
            if u64::from(before) < mss_units.max(1) && after > before && !self.peer_fin {
                self.ack_due = true;
            }
        }
        if !self.app_closed && self.snd_una == self.data.len() as u64 && self.syn_acked {
            match self.close_at {
                None => self.close_at = Some(now + cfg.guest_close_delay),
                Some(at) if at <= now => self.app_closed = true,
                Some(_) => {}
            }
        }
    }

    fn app_busy(&self) -> bool {
        self.rcv_buffered > 0 || (!self.app_closed && self.syn_acked)
    }

    fn done_with_link(&self) -> bool {
        self.fin_acked && self.peer_fin
    }

    fn done(&self) -> bool {
        self.fin_acked && self.peer_fin && self.rcv_buffered == 0
    }
}

/// The host side: a socket with bounded buffers and the peer application.
struct Host {
    /// Guest-to-host bytes in the send buffer, not yet read by the peer.
    snd_queue: usize,
    snd_cap: usize,
    delivered: Vec<u8>,
    shutdown_seen: bool,
    peer_saw_eof: bool,
    /// Host-to-guest bytes in the receive queue, unconsumed.
    rcv_queue: VecDeque<u8>,
    rcv_cap: usize,
    to_send: Vec<u8>,
    written: usize,
    peer_closed: bool,
    close_at: Option<Instant>,
    closed: bool,
    reset: bool,
    shutdowns: u32,
    eof_reported: bool,
}

impl Host {
    fn space(&self) -> u32 {
        (self.snd_cap - self.snd_queue) as u32
    }

    fn app_tick(&mut self, now: Instant, cfg: &SimConfig) {
        let n = self.snd_queue.min(cfg.host_read_chunk);
        self.snd_queue -= n;
        if self.snd_queue == 0 && self.shutdown_seen {
            self.peer_saw_eof = true;
        }
        if self.written < self.to_send.len() {
            let room = self.rcv_cap - self.rcv_queue.len();
            let n = room
                .min(cfg.host_write_chunk)
                .min(self.to_send.len() - self.written);
            self.rcv_queue
                .extend(&self.to_send[self.written..self.written + n]);
            self.written += n;
        } else if !self.peer_closed {
            match self.close_at {
                None => self.close_at = Some(now + cfg.host_close_delay),
                Some(at) if at <= now => self.peer_closed = true,
                Some(_) => {}
            }
        }
    }

    fn app_busy(&self) -> bool {
        self.snd_queue > 0 || !self.peer_closed || (self.shutdown_seen && !self.peer_saw_eof)
    }
}

/// What a simulated transfer did.
#[derive(Debug, Default)]
pub struct Report {
    pub simulated: Duration,
    pub iterations: u64,
    pub segments_to_guest: u64,
    pub segments_to_slipway: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub timeouts: u64,
    pub fast_retransmits: u64,
    pub bytes_retransmitted: u64,
    pub out_of_order: u64,
    pub host_backpressure: u64,
    pub close_reason: Option<CloseReason>,
    pub phases: Vec<Phase>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulated time       {:?}", self.simulated)?;
        writeln!(
            f,
            "segments             {} to the guest, {} from it",
            self.segments_to_guest, self.segments_to_slipway
        )?;
        writeln!(
            f,
            "link                 {} lost, {} duplicated",
            self.lost, self.duplicated
        )?;
        writeln!(
            f,
            "slipway recovery     {} timeouts, {} fast retransmits, {} bytes peeked again",
            self.timeouts, self.fast_retransmits, self.bytes_retransmitted
        )?;
        writeln!(
            f,
            "guest segments       {} out of order (never written), {} cut short by a full host buffer",
            self.out_of_order, self.host_backpressure
        )?;
        writeln!(f, "phases               {:?}", self.phases)?;
        write!(f, "closed               {:?}", self.close_reason)
    }
}

/// Runs one transfer to completion and checks every invariant.
///
/// # Errors
/// A description of the first invariant that broke.
pub fn run(cfg: &SimConfig) -> Result<Report, String> {
    let mut sim = Sim::new(cfg);
    sim.run()?;
    Ok(sim.report)
}

struct Sim<'a> {
    cfg: &'a SimConfig,
    rng: Rng,
    now: Instant,
    start: Instant,
    conn: Option<TcpConn>,
    conn_created: bool,
    connect_at: Option<Instant>,
    guest: Guest,
    host: Host,
    to_guest: Link,
    to_slipway: Link,
    next_app_tick: Instant,
    checked_up: usize,
    checked_down: usize,
    report: Report,
}

impl<'a> Sim<'a> {
    fn new(cfg: &'a SimConfig) -> Self {
        // The one clock read: a base for the virtual clock.
        let start = Instant::now();
        let up = payload(cfg.seed, cfg.up);
        let down = payload(cfg.seed.wrapping_add(1), cfg.down);
        let guest = Guest {
            iss: SeqNum::new(cfg.guest_isn),
            data: up,
            snd_una: 0,
            snd_nxt: 0,
            snd_max: 0,
            syn_acked: false,
            syn_due: cfg.opener == Opener::Guest,
            fin_due: false,
            fin_sent: false,
            fin_acked: false,
            app_closed: false,
            close_at: None,
            peer_wnd: 0,
            peer_wscale: 0,
            own_wscale: 0,
            mss: cfg.guest_mss,
            irs: None,
            rcv_nxt: SeqNum::new(0),
            rcv_buffered: 0,
            rcv_cap: cfg.guest_rcv_buf,
            received: Vec::new(),
            ooo: std::collections::BTreeMap::new(),
            ooo_bytes: 0,
            peer_fin: false,
            ack_due: false,
            rto_base: Duration::from_millis(200),
            backoff: 0,
            timer: None,
            force_one: false,
            dup_acks: 0,
            got_rst: false,
            violations: Vec::new(),
        };
        let host = Host {
            snd_queue: 0,
            snd_cap: cfg.host_snd_buf,
            delivered: Vec::new(),
            shutdown_seen: false,
            peer_saw_eof: false,
            rcv_queue: VecDeque::new(),
            rcv_cap: cfg.host_rcv_buf,
            to_send: down,
            written: 0,
            peer_closed: false,
            close_at: None,
            closed: false,
            reset: false,
            shutdowns: 0,
            eof_reported: false,
        };
        let mut sim = Self {
            cfg,
            rng: Rng::new(cfg.seed),
            now: start,
            start,
            conn: None,
            conn_created: false,
            connect_at: None,
            guest,
            host,
            to_guest: Link::new(),
            to_slipway: Link::new(),
            next_app_tick: start,
            checked_up: 0,
            checked_down: 0,
            report: Report::default(),
        };
        if cfg.opener == Opener::Host {
            let tcp = sim.tcp_config();
            sim.conn = Some(TcpConn::from_host_accept(
                SeqNum::new(cfg.slipway_isn),
                sim.host.space(),
                tcp,
                start,
            ));
            sim.conn_created = true;
        }
        sim
    }

    fn tcp_config(&self) -> TcpConfig {
        TcpConfig {
            mss: self.cfg.slipway_mss,
            ..TcpConfig::default()
        }
    }

    fn run(&mut self) -> Result<(), String> {
        let mut stalled = 0u32;
        let mut last_now = self.now;
        loop {
            self.report.iterations += 1;
            if self.now == last_now {
                stalled += 1;
                if stalled > 20_000 {
                    return Err(self.fail("busy loop: no progress of the clock"));
                }
            } else {
                stalled = 0;
                last_now = self.now;
            }
            if self.now - self.start > self.cfg.time_limit {
                return Err(self.fail("time limit reached"));
            }
            self.deliver()?;
            self.run_timers();
            self.readiness();
            self.drain()?;
            self.check()?;
            if self.finished() {
                return self.verify();
            }
            match self.next_event() {
                Some(t) => self.now = self.now.max(t),
                None => return Err(self.fail("deadlock: nothing left to happen")),
            }
        }
    }

    fn fail(&self, what: &str) -> String {
        let conn = self.conn.as_ref().map(|c| {
            format!(
                "next timeout in {:?}\n{c:#?}",
                c.poll_timeout()
                    .map(|t| t.saturating_duration_since(self.now))
            )
        });
        format!(
            "{what} at {:?} (flow closed: {:?}, timeouts {}, fast retransmits {})\nconfig: {:?}\nguest sent {}/{} acked {} fin_sent {} fin_acked {} peer_fin {} received {}/{}\nhost delivered {}/{} written {}/{} peer_closed {} eof_seen {} rcv_queue {}\nconn: {}",
            self.now - self.start,
            self.report.close_reason,
            self.report.timeouts,
            self.report.fast_retransmits,
            self.cfg,
            self.guest.snd_nxt,
            self.guest.data.len(),
            self.guest.snd_una,
            self.guest.fin_sent,
            self.guest.fin_acked,
            self.guest.peer_fin,
            self.guest.received.len(),
            self.cfg.down,
            self.host.delivered.len(),
            self.cfg.up,
            self.host.written,
            self.cfg.down,
            self.host.peer_closed,
            self.host.peer_saw_eof,
            self.host.rcv_queue.len(),
            conn.unwrap_or_else(|| "none".into()),
        )
    }

    fn deliver(&mut self) -> Result<(), String> {
        for _ in 0..100_000 {
            let mut progressed = false;
            if let Some(w) = self.to_guest.pop_due(self.now) {
                self.guest.on_segment(self.now, &w, self.cfg);
                progressed = true;
            }
            if let Some(w) = self.to_slipway.pop_due(self.now) {
                self.deliver_to_conn(&w)?;
                progressed = true;
            }
            if !progressed {
                return Ok(());
            }
        }
        Err(self.fail("unbounded delivery"))
    }

    fn deliver_to_conn(&mut self, w: &Wire) -> Result<(), String> {
        let seg = Segment {
            seq: w.seq,
            ack: w.ack,
            flags: w.flags,
            window: w.window,
            mss: w.mss,
            window_scale: w.wscale,
        };
        if self.conn.is_none() {
            if w.flags.syn && w.ack.is_none() && !self.conn_created {
                let tcp = self.tcp_config();
                self.conn = Some(TcpConn::from_guest_syn(
                    &seg,
                    SeqNum::new(self.cfg.slipway_isn),
                    tcp,
                    self.now,
                ));
                self.conn_created = true;
                self.connect_at = Some(self.now + self.cfg.connect_delay);
                return Ok(());
            }
            if let Some(rst) = flow_table::tcp::rst_for_unknown(&seg, w.payload.len()) {
                self.to_guest
                    .send(self.now, wire_of(&rst, Vec::new()), self.cfg, &mut self.rng);
            }
            return Ok(());
        }
        let host = &mut self.host;
        let now = self.now;
        let conn = self.conn.as_mut().unwrap();
        let mut writer = |data: &[u8]| -> Result<usize, HostError> {
            if host.reset {
                return Err(HostError::Reset);
            }
            if host.shutdown_seen {
                return Err(HostError::Failed);
            }
            let n = data.len().min(host.snd_cap - host.snd_queue);
            host.delivered.extend_from_slice(&data[..n]);
            host.snd_queue += n;
            Ok(n)
        };
        conn.handle_guest_segment(now, &seg, &w.payload, &mut writer);
        // The relay measures the send buffer once per batch of segments.
        let space = self.host.space();
        self.conn
            .as_mut()
            .unwrap()
            .handle_host_send_space(now, space);
        Ok(())
    }

    fn run_timers(&mut self) {
        let now = self.now;
        if self.connect_at.is_some_and(|t| t <= now) {
            self.connect_at = None;
            let space = self.host.space();
            if let Some(conn) = self.conn.as_mut() {
                conn.handle_host_connected(now, space);
            }
        }
        if let Some(conn) = self.conn.as_mut() {
            if conn.poll_timeout().is_some_and(|t| t <= now) {
                conn.handle_timeout(now);
            }
        }
        if self.guest.timer.is_some_and(|t| t <= now) {
            self.guest.on_timer(now);
        }
        if self.next_app_tick <= now {
            self.guest.app_tick(now, self.cfg);
            self.host.app_tick(now, self.cfg);
            self.next_app_tick = now + self.cfg.app_interval;
        }
    }

    /// Level-triggered readiness, as epoll reports it for the interest the
    /// flow asks for.
    fn readiness(&mut self) {
        let now = self.now;
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if self.connect_at.is_some() || self.host.closed {
            return;
        }
        let interest = conn.interest();
        let eof = self.host.peer_closed && self.host.written == self.host.to_send.len();
        if interest.readable && (!self.host.rcv_queue.is_empty() || eof) {
            conn.handle_host_readable(now, self.host.rcv_queue.len());
            if eof {
                conn.handle_host_eof(now);
                self.host.eof_reported = true;
            }
        }
        // Linux reports a TCP socket writable once a third of its send
        // buffer is free (sk_stream_is_writeable).
        let writable = self.host.space() as usize >= (self.host.snd_cap / 3).max(1);
        if interest.writable && writable {
            conn.handle_host_send_space(now, self.host.space());
        }
    }

    fn drain(&mut self) -> Result<(), String> {
        let now = self.now;
        if let Some(conn) = self.conn.as_mut() {
            for _ in 0..1_000 {
                let Some(op) = conn.poll_socket_op() else {
                    break;
                };
                match op {
                    SocketOp::Consume(n) => {
                        if n > self.host.rcv_queue.len() {
                            return Err(format!("consume {n} beyond the queue"));
                        }
                        self.host.rcv_queue.drain(..n);
                        conn.handle_host_readable(now, self.host.rcv_queue.len());
                        let eof =
                            self.host.peer_closed && self.host.written == self.host.to_send.len();
                        if eof {
                            conn.handle_host_eof(now);
                            self.host.eof_reported = true;
                        }
                    }
                    SocketOp::ShutdownWrite => {
                        self.host.shutdowns += 1;
                        self.host.shutdown_seen = true;
                    }
                    SocketOp::Close => self.host.closed = true,
                    SocketOp::Reset => {
                        self.host.closed = true;
                        self.host.reset = true;
                    }
                }
            }
            for _ in 0..100_000 {
                let Some(t) = conn.poll_transmit(now) else {
                    break;
                };
                let payload = match t.payload {
                    Some(range) => {
                        if range.offset + range.len > self.host.rcv_queue.len() {
                            return Err(format!(
                                "peek {range:?} beyond the {} queued bytes",
                                self.host.rcv_queue.len()
                            ));
                        }
                        self.host
                            .rcv_queue
                            .range(range.offset..range.offset + range.len)
                            .copied()
                            .collect()
                    }
                    None => Vec::new(),
                };
                if t.flags.syn
                    && self.cfg.opener == Opener::Guest
                    && self.cfg.guest_wscale.is_none()
                    && t.window_scale.is_some()
                {
                    return Err("window scale offered to a guest that sent none".into());
                }
                self.report.segments_to_guest += 1;
                self.to_guest
                    .send(now, wire_of(&t, payload), self.cfg, &mut self.rng);
            }
            while let Some(event) = conn.poll_event() {
                if let flow_table::tcp::Event::PhaseChanged { to, .. } = event {
                    self.report.phases.push(to);
                }
            }
            let stats = *conn.stats();
            self.report.timeouts = stats.timeouts;
            self.report.fast_retransmits = stats.fast_retransmits;
            self.report.bytes_retransmitted = stats.bytes_retransmitted;
            self.report.out_of_order = stats.out_of_order;
            self.report.host_backpressure = stats.host_backpressure;
            if conn.is_closed() {
                self.report.close_reason = conn.close_reason();
                self.conn = None;
            }
        }
        for _ in 0..100_000 {
            let Some(w) = self.guest.poll(now, self.cfg) else {
                break;
            };
            self.report.segments_to_slipway += 1;
            self.to_slipway.send(now, w, self.cfg, &mut self.rng);
        }
        self.report.lost = self.to_guest.lost + self.to_slipway.lost;
        self.report.duplicated = self.to_guest.duplicated + self.to_slipway.duplicated;
        Ok(())
    }

    fn check(&mut self) -> Result<(), String> {
        if let Some(v) = self.guest.violations.first() {
            return Err(self.fail(v));
        }
        if self.guest.got_rst {
            return Err(self.fail("the guest received an RST"));
        }
        if self.host.reset {
            return Err(self.fail("the host socket was reset"));
        }
        if self.host.shutdowns > 1 {
            return Err(self.fail("shutdown(SHUT_WR) twice"));
        }
        // Each byte is compared once, as it arrives.
        let (up, got) = (&self.guest.data, &self.host.delivered);
        let from = self.checked_up;
        if got.len() > up.len() || got[from..] != up[from..got.len()] {
            return Err(self.fail("host received bytes out of order or twice"));
        }
        let (down, got) = (&self.host.to_send, &self.guest.received);
        let from = self.checked_down;
        if got.len() > down.len() || got[from..] != down[from..got.len()] {
            return Err(self.fail("guest received bytes out of order or twice"));
        }
        self.checked_up = self.host.delivered.len();
        self.checked_down = self.guest.received.len();
        Ok(())
    }

    fn finished(&self) -> bool {
        self.conn.is_none()
            && self.conn_created
            && self.guest.done()
            && self.host.peer_saw_eof
            && self.to_guest.queue.is_empty()
    }

    fn verify(&mut self) -> Result<(), String> {
        self.report.simulated = self.now - self.start;
        if self.report.close_reason != Some(CloseReason::Normal) {
            return Err(self.fail(&format!("closed with {:?}", self.report.close_reason)));
        }
        if self.host.delivered != self.guest.data || self.guest.received != self.host.to_send {
            return Err(self.fail("transfer incomplete"));
        }
        if !self.host.closed {
            return Err(self.fail("host socket never closed"));
        }
        // Bounded work: a handful of loop turns per segment or timer, never
        // a spin.
        let segments = self.report.segments_to_guest + self.report.segments_to_slipway;
        let ticks = self.report.simulated.as_micros() as u64
            / self.cfg.app_interval.as_micros().max(1) as u64;
        let budget = 10 * segments + 4 * ticks + 10_000;
        if self.report.iterations > budget {
            return Err(self.fail(&format!(
                "{} loop turns for {segments} segments and {ticks} ticks",
                self.report.iterations
            )));
        }
        Ok(())
    }

    fn next_event(&self) -> Option<Instant> {
        let app = (self.guest.app_busy() || self.host.app_busy()).then_some(self.next_app_tick);
        [
            self.to_guest.next_time(),
            self.to_slipway.next_time(),
            self.conn.as_ref().and_then(TcpConn::poll_timeout),
            self.guest.timer,
            self.connect_at,
            app,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

fn wire_of(t: &Transmit, payload: Vec<u8>) -> Wire {
    Wire {
        seq: t.seq,
        ack: t.ack,
        flags: t.flags,
        window: t.window,
        mss: t.mss,
        wscale: t.window_scale,
        payload,
    }
}
