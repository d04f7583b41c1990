//! The guest's TCP endpoint, as a real stack would behave on the other end
//! of the link.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flow_table::tcp::{Flags, SeqNum};

use super::link::Wire;
use super::{Opener, SimConfig};

/// The guest's TCP endpoint: a small but honest TCP with go-back-N
/// retransmission, zero-window probes and in-order reception.
pub struct Guest {
    pub iss: SeqNum,
    pub data: Vec<u8>,
    // Offsets into `data`.
    pub snd_una: u64,
    pub snd_nxt: u64,
    pub snd_max: u64,
    pub syn_acked: bool,
    pub syn_due: bool,
    pub fin_due: bool,
    pub fin_sent: bool,
    pub fin_acked: bool,
    pub app_closed: bool,
    pub close_at: Option<Instant>,
    pub peer_wnd: u64,
    pub peer_wscale: u8,
    pub own_wscale: u8,
    pub mss: u16,
    pub irs: Option<SeqNum>,
    pub rcv_nxt: SeqNum,
    pub rcv_buffered: usize,
    pub rcv_cap: usize,
    pub received: Vec<u8>,
    /// Out-of-order segments by stream offset.
    pub ooo: BTreeMap<u32, (Vec<u8>, bool)>,
    pub ooo_bytes: usize,
    pub peer_fin: bool,
    pub ack_due: bool,
    pub rto_base: Duration,
    pub backoff: u32,
    pub timer: Option<Instant>,
    pub force_one: bool,
    pub dup_acks: u32,
    pub got_rst: bool,
    pub violations: Vec<String>,
}

impl Guest {
    /// A guest that sends `data` and is yet to open or accept the connection.
    pub fn new(cfg: &SimConfig, data: Vec<u8>) -> Self {
        Self {
            iss: SeqNum::new(cfg.guest_isn),
            data,
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
            ooo: BTreeMap::new(),
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
        }
    }

    pub fn seq_at(&self, off: u64) -> SeqNum {
        self.iss + 1 + off as u32
    }

    pub fn window_field(&self) -> u16 {
        let free = self.rcv_cap.saturating_sub(self.rcv_buffered) as u64;
        (free >> self.own_wscale).min(65535) as u16
    }

    pub fn outstanding(&self) -> bool {
        !self.syn_acked || self.snd_nxt > self.snd_una || (self.fin_sent && !self.fin_acked)
    }

    pub fn arm(&mut self, now: Instant) {
        let rto = self.rto_base * (1 << self.backoff.min(6));
        self.timer = Some(now + rto);
    }

    pub fn on_segment(&mut self, now: Instant, w: &Wire, cfg: &SimConfig) {
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

    pub fn accept_in_order(&mut self, payload: &[u8], fin: bool) {
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
    pub fn hold_out_of_order(&mut self, w: &Wire, cfg: &SimConfig) {
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
    pub fn stream_offset(&self, seq: SeqNum) -> u32 {
        seq.since(self.irs.unwrap_or(SeqNum::new(0)) + 1)
    }

    pub fn on_syn(&mut self, now: Instant, w: &Wire, cfg: &SimConfig) {
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

    pub fn on_ack(&mut self, now: Instant, ack: SeqNum, window: u16, pure: bool) {
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

    pub fn on_timer(&mut self, now: Instant) {
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

    /// The next segment the guest sends, if any: its SYN (or SYN-ACK), data
    /// within the peer's window, its FIN, or an ACK.
    pub fn poll(&mut self, now: Instant, cfg: &SimConfig) -> Option<Wire> {
        if self.syn_due {
            return Some(self.poll_syn(now, cfg));
        }
        if !self.syn_acked || self.irs.is_none() {
            return None;
        }
        let len = self.data.len() as u64;
        if self.snd_nxt < len && !self.fin_sent {
            if let Some(w) = self.poll_data(now, len) {
                return Some(w);
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
            let fin = Flags {
                fin: true,
                ..Flags::default()
            };
            return Some(self.segment(self.seq_at(len), fin, Vec::new()));
        }
        if self.ack_due {
            self.ack_due = false;
            let seq = if self.fin_sent {
                self.seq_at(len) + 1
            } else {
                self.seq_at(self.snd_nxt)
            };
            return Some(self.segment(seq, Flags::default(), Vec::new()));
        }
        None
    }

    /// The SYN of an active open, or the SYN-ACK of a passive one.
    fn poll_syn(&mut self, now: Instant, cfg: &SimConfig) -> Wire {
        self.syn_due = false;
        if self.timer.is_none() {
            self.arm(now);
        }
        let passive = cfg.opener == Opener::Host;
        Wire {
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
        }
    }

    /// Data from `snd_nxt` up to the MSS and the peer's window (one byte
    /// into a shut window when a probe is due); the FIN rides on the last
    /// segment once the application has closed.
    fn poll_data(&mut self, now: Instant, len: u64) -> Option<Wire> {
        let wnd_end = self.snd_una + self.peer_wnd;
        let mut n = (len - self.snd_nxt).min(u64::from(self.mss));
        n = n.min(wnd_end.saturating_sub(self.snd_nxt));
        if n == 0 && self.force_one {
            n = 1;
        }
        if n == 0 {
            if self.timer.is_none() {
                // Shut window: the timer doubles as the persist timer.
                self.arm(now);
            }
            return None;
        }
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
        let flags = Flags {
            fin,
            ..Flags::default()
        };
        let payload = self.data[start as usize..(start + n) as usize].to_vec();
        Some(self.segment(self.seq_at(start), flags, payload))
    }

    /// A segment after the handshake: no options, the current ACK and window.
    fn segment(&self, seq: SeqNum, flags: Flags, payload: Vec<u8>) -> Wire {
        Wire {
            seq,
            ack: Some(self.rcv_nxt),
            flags,
            window: self.window_field(),
            mss: None,
            wscale: None,
            payload,
        }
    }

    pub fn app_tick(&mut self, now: Instant, cfg: &SimConfig) {
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

    pub fn app_busy(&self) -> bool {
        self.rcv_buffered > 0 || (!self.app_closed && self.syn_acked)
    }

    pub fn done_with_link(&self) -> bool {
        self.fin_acked && self.peer_fin
    }

    pub fn done(&self) -> bool {
        self.fin_acked && self.peer_fin && self.rcv_buffered == 0
    }
}
