//! A simple in-order guest TCP endpoint, talking to a flow directly
//! (the link between them is a function call: lossless and in order, except
//! for the ACKs the guest is told to drop).

use std::ops::Range;
use std::time::{Duration, Instant};

use flow_table::tcp::{Flags, Segment, SeqNum, Transmit};

use super::Fnv;

/// Who opens the connection, and so when the guest closes its side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The guest connects out, sends its data, then closes.
    Client,
    /// A host peer connected to a forwarded port: the guest answers the SYN
    /// and closes once the peer has closed.
    Server,
}

/// The guest's knobs.
#[derive(Clone, Debug)]
pub struct GuestConfig {
    pub role: Role,
    pub isn: u32,
    pub mss: u16,
    /// The receive window the guest advertises; its application reads every
    /// byte at once, so the window never shrinks.
    pub window: u16,
    pub wscale: Option<u8>,
    /// Drop every Nth pure ACK instead of sending it.
    pub drop_ack_every: Option<u64>,
    /// How long the guest waits before sending again what slipway did not
    /// acknowledge (a stand-in for its retransmission timer).
    pub retry_after: Duration,
}

impl Default for GuestConfig {
    fn default() -> Self {
        Self {
            role: Role::Client,
            isn: u32::MAX - 5000,
            mss: 65480,
            window: 65535,
            wscale: Some(7),
            drop_ack_every: None,
            retry_after: Duration::from_millis(1),
        }
    }
}

/// The guest endpoint.
#[derive(Debug)]
pub struct Guest {
    cfg: GuestConfig,
    /// What the guest sends.
    pub data: Vec<u8>,
    iss: SeqNum,
    syn_due: bool,
    syn_acked: bool,
    snd_una: u64,
    snd_nxt: u64,
    fin_sent: bool,
    pub fin_acked: bool,
    /// Right edge of slipway's window, as a stream offset.
    peer_right: u64,
    peer_scale: u8,
    own_scale: u8,
    peer_mss: u16,
    retry_at: Option<Instant>,
    sent_in_batch: bool,
    irs: Option<SeqNum>,
    rcv_nxt: SeqNum,
    pub received: u64,
    pub hash: Fnv,
    pub peer_fin: bool,
    ack_due: bool,
    pub acks: u64,
    pub acks_dropped: u64,
    pub duplicates: u64,
    pub got_rst: bool,
    pub violations: Vec<String>,
}

impl Guest {
    pub fn new(cfg: GuestConfig, data: Vec<u8>) -> Guest {
        let iss = SeqNum::new(cfg.isn);
        Guest {
            syn_due: cfg.role == Role::Client,
            cfg,
            data,
            iss,
            syn_acked: false,
            snd_una: 0,
            snd_nxt: 0,
            fin_sent: false,
            fin_acked: false,
            peer_right: 0,
            peer_scale: 0,
            own_scale: 0,
            peer_mss: 536,
            retry_at: None,
            sent_in_batch: false,
            irs: None,
            rcv_nxt: SeqNum::new(0),
            received: 0,
            hash: Fnv::new(),
            peer_fin: false,
            ack_due: false,
            acks: 0,
            acks_dropped: 0,
            duplicates: 0,
            got_rst: false,
            violations: Vec::new(),
        }
    }

    /// The guest's first segment, a SYN, which creates the flow.
    pub fn syn(&mut self) -> Segment {
        self.syn_due = false;
        Segment {
            seq: self.iss,
            ack: None,
            flags: Flags {
                syn: true,
                ..Flags::default()
            },
            window: self.cfg.window,
            mss: Some(self.cfg.mss),
            window_scale: self.cfg.wscale,
        }
    }

    fn seq_at(&self, offset: u64) -> SeqNum {
        self.iss + 1 + (offset & u64::from(u32::MAX)) as u32
    }

    fn total(&self) -> u64 {
        self.data.len() as u64
    }

    fn window_field(&self) -> u16 {
        self.cfg.window
    }

    /// Both directions are closed and acknowledged.
    pub fn done(&self) -> bool {
        self.fin_acked && self.peer_fin
    }

    /// When the guest wants to run again, if it is waiting.
    pub fn deadline(&self) -> Option<Instant> {
        self.retry_at
    }

    pub fn on_timer(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
        }
    }

    /// The next segment the guest sends, with the range of `data` it
    /// carries; dropped ACKs are counted and skipped.
    pub fn poll(&mut self) -> Option<(Segment, Range<usize>)> {
        if self.syn_due {
            return Some((self.syn_ack(), 0..0));
        }
        if !self.syn_acked || self.irs.is_none() {
            return None;
        }
        if let Some(data) = self.poll_data() {
            return Some(data);
        }
        if let Some(fin) = self.poll_fin() {
            return Some((fin, 0..0));
        }
        if !self.ack_due {
            return None;
        }
        self.ack_due = false;
        self.acks += 1;
        if self.cfg.drop_ack_every.is_some_and(|n| self.acks % n == 0) {
            self.acks_dropped += 1;
            return None;
        }
        let seq = self.seq_at(self.snd_nxt) + u32::from(self.fin_sent);
        Some((self.segment(seq, Flags::default()), 0..0))
    }

    fn segment(&self, seq: SeqNum, flags: Flags) -> Segment {
        Segment {
            seq,
            ack: Some(self.rcv_nxt),
            flags,
            window: self.window_field(),
            mss: None,
            window_scale: None,
        }
    }

    fn syn_ack(&mut self) -> Segment {
        self.syn_due = false;
        let mut seg = self.syn();
        seg.ack = Some(self.rcv_nxt);
        seg
    }

    fn poll_data(&mut self) -> Option<(Segment, Range<usize>)> {
        if self.retry_at.is_some() || self.fin_sent || self.snd_nxt >= self.total() {
            return None;
        }
        let room = self.peer_right.saturating_sub(self.snd_nxt);
        let len = (self.total() - self.snd_nxt)
            .min(room)
            .min(u64::from(self.peer_mss));
        if len == 0 {
            return None;
        }
        let start = self.snd_nxt;
        self.snd_nxt += len;
        self.sent_in_batch = true;
        self.ack_due = false;
        let seg = self.segment(self.seq_at(start), Flags::default());
        Some((seg, start as usize..(start + len) as usize))
    }

    fn poll_fin(&mut self) -> Option<Segment> {
        let closing = match self.cfg.role {
            Role::Client => true,
            Role::Server => self.peer_fin,
        };
        if !closing || self.fin_sent || self.retry_at.is_some() || self.snd_una < self.total() {
            return None;
        }
        self.fin_sent = true;
        self.sent_in_batch = true;
        self.ack_due = false;
        let fin = Flags {
            fin: true,
            ..Flags::default()
        };
        Some(self.segment(self.seq_at(self.total()), fin))
    }

    /// A segment from slipway, with its peeked payload.
    pub fn on_transmit(&mut self, t: &Transmit, payload: &[u8]) {
        if t.flags.rst {
            self.got_rst = true;
            return;
        }
        if t.flags.syn {
            self.on_syn(t);
            return;
        }
        if self.irs.is_none() {
            return;
        }
        if let Some(ack) = t.ack {
            self.on_ack(ack, t.window);
        }
        if !payload.is_empty() || t.flags.fin {
            self.on_data(t, payload);
        }
    }

    fn on_syn(&mut self, t: &Transmit) {
        if self.cfg.role == Role::Client && t.ack != Some(self.iss + 1) {
            self.violations
                .push(format!("SYN-ACK acknowledges {:?}", t.ack));
            return;
        }
        self.irs = Some(t.seq);
        self.rcv_nxt = t.seq + 1;
        self.peer_mss = t.mss.unwrap_or(536).min(self.cfg.mss);
        (self.peer_scale, self.own_scale) = match (self.cfg.wscale, t.window_scale) {
            (Some(own), Some(peer)) => (peer, own),
            _ => (0, 0),
        };
        // The window of a SYN is never scaled.
        self.peer_right = u64::from(t.window);
        match self.cfg.role {
            Role::Client => {
                self.syn_acked = true;
                self.ack_due = true;
            }
            Role::Server => self.syn_due = true,
        }
    }

    fn on_ack(&mut self, ack: SeqNum, window: u16) {
        if !self.syn_acked {
            if ack != self.iss + 1 {
                return;
            }
            self.syn_acked = true;
        }
        let una = self.seq_at(self.snd_una);
        if ack.gt(una) {
            let acked = u64::from(ack.since(una));
            let data = acked.min(self.total() - self.snd_una);
            self.snd_una += data;
            self.snd_nxt = self.snd_nxt.max(self.snd_una);
            if self.fin_sent && acked > data {
                self.fin_acked = true;
            }
        }
        let current = self.seq_at(self.snd_una) + u32::from(self.fin_acked);
        if ack == current {
            let right = self.snd_una + (u64::from(window) << self.peer_scale);
            if right > self.peer_right {
                // A window update ends the wait for slipway to take more.
                self.retry_at = None;
            }
            self.peer_right = right.max(self.peer_right);
        }
    }

    fn on_data(&mut self, t: &Transmit, payload: &[u8]) {
        self.ack_due = true;
        let window_end = self.rcv_nxt + (u32::from(self.cfg.window) << self.own_scale);
        if (t.seq + payload.len() as u32).gt(window_end) {
            self.violations
                .push(format!("segment at {} beyond the guest's window", t.seq));
        }
        let skip = if t.seq.le(self.rcv_nxt) {
            self.rcv_nxt.since(t.seq) as usize
        } else {
            self.violations
                .push(format!("segment at {} leaves a gap", t.seq));
            return;
        };
        if skip > 0 {
            self.duplicates += 1;
        }
        if let Some(fresh) = payload.get(skip..) {
            self.hash.update(fresh);
            self.received += fresh.len() as u64;
            self.rcv_nxt = self.rcv_nxt + fresh.len() as u32;
        }
        if t.flags.fin && !self.peer_fin && t.seq + payload.len() as u32 == self.rcv_nxt {
            self.peer_fin = true;
            self.rcv_nxt = self.rcv_nxt + 1;
        }
    }

    /// Ends a batch: what slipway did not acknowledge of what the guest sent
    /// in it was refused (the link loses nothing), so the guest goes back
    /// and sends it again after its retry delay.
    pub fn after_batch(&mut self, now: Instant) {
        if !std::mem::take(&mut self.sent_in_batch) {
            return;
        }
        let fin_unacked = self.fin_sent && !self.fin_acked;
        if self.snd_nxt > self.snd_una || fin_unacked {
            self.snd_nxt = self.snd_una;
            self.fin_sent = false;
            self.retry_at = Some(now + self.cfg.retry_after);
        }
    }
}
