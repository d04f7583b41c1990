//! Segments to the guest and the expiry of timers.

use std::time::Instant;

use super::conn::{CloseReason, FinState, State, TcpConn, TimerKind};
use super::segment::{Flags, PeekRange, SocketOp, Transmit};

const ACK: Flags = Flags {
    syn: false,
    fin: false,
    rst: false,
    psh: false,
};

impl TcpConn {
    /// The next segment for the guest, if one is due. Data segments name the
    /// range of the host receive queue to peek as payload.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(rst) = self.rst_pending.take() {
            return Some(rst);
        }
        match self.state {
            State::Connecting | State::Closed => None,
            State::SynSent | State::SynReceived => self.transmit_syn(),
            State::Established | State::TimeWait => self
                .transmit_hole()
                .or_else(|| self.transmit_data(now))
                .or_else(|| self.transmit_fin(now))
                .or_else(|| self.transmit_probe(now))
                .or_else(|| self.transmit_ack()),
        }
    }

    fn transmit_syn(&mut self) -> Option<Transmit> {
        if !self.syn_pending {
            return None;
        }
        self.syn_pending = false;
        let syn_ack = self.state == State::SynReceived;
        // The window of a SYN is never scaled (RFC 7323 §2.2).
        let window = u16::try_from(self.host_send_space).unwrap_or(u16::MAX);
        self.rcv_adv = self.rcv_nxt + u32::from(window);
        Some(Transmit {
            seq: self.iss,
            ack: syn_ack.then_some(self.rcv_nxt),
            flags: Flags { syn: true, ..ACK },
            window,
            mss: Some(self.config.mss),
            window_scale: self
                .guest_offered_wscale
                .then_some(self.config.window_scale),
            payload: None,
        })
    }

    /// The segment at the first unacknowledged byte, once, in fast recovery.
    fn transmit_hole(&mut self) -> Option<Transmit> {
        if !self.hole_pending || self.consume_owed > 0 {
            return None;
        }
        self.hole_pending = false;
        let outstanding = self.snd_max.min(self.host_total) - self.snd_una;
        let most = self.snd_mss.min(self.payload_limit.unwrap_or(u16::MAX));
        let len = outstanding.min(u64::from(most));
        if len == 0 || self.snd_una >= self.snd_nxt {
            return None;
        }
        self.stats.bytes_retransmitted += len;
        let window = self.advertise_window();
        self.ack_pending = false;
        Some(Transmit {
            payload: Some(PeekRange {
                offset: usize::try_from(self.snd_una - self.consume_polled).ok()?,
                len: usize::try_from(len).ok()?,
            }),
            ..Transmit::bare(self.seq_at(self.snd_una), Some(self.rcv_nxt), ACK, window)
        })
    }

    fn transmit_data(&mut self, now: Instant) -> Option<Transmit> {
        if self.consume_owed > 0 || self.fin != FinState::None {
            return None;
        }
        let unsent = self.host_total.saturating_sub(self.snd_nxt);
        if unsent == 0 {
            return None;
        }
        let in_flight = self.snd_nxt - self.snd_una;
        let usable = u64::from(self.snd_wnd).saturating_sub(in_flight);
        let most = self.snd_mss.max(self.gso_limit.unwrap_or(0));
        let full = self.snd_mss.min(self.payload_limit.unwrap_or(u16::MAX));
        let len = unsent
            .min(usable)
            .min(u64::from(most.min(self.payload_limit.unwrap_or(u16::MAX))));
        if len == 0 {
            return None;
        }
        // Avoid silly small segments while an ACK will open the window.
        if len < u64::from(full) && len < unsent && in_flight > 0 {
            return None;
        }
        let offset = self.snd_nxt - self.consume_polled;
        let seq = self.seq_at(self.snd_nxt);
        let fresh_from = self.snd_nxt.max(self.snd_max);
        let end = self.snd_nxt + len;
        if end > self.snd_max {
            self.stats.bytes_to_guest += end - fresh_from;
            if self.rtt_sample.is_none() && self.snd_nxt >= self.snd_max {
                self.rtt_sample = Some((end, now));
            }
        }
        self.stats.bytes_retransmitted += self.snd_max.min(end).saturating_sub(self.snd_nxt);
        self.snd_nxt = end;
        self.snd_max = self.snd_max.max(end);
        if !matches!(self.timer, Some((TimerKind::Retransmit, _))) {
            self.arm_retransmit(now);
        }
        let window = self.advertise_window();
        self.ack_pending = false;
        Some(Transmit {
            seq,
            ack: Some(self.rcv_nxt),
            flags: Flags {
                psh: len == unsent,
                ..ACK
            },
            window,
            mss: None,
            window_scale: None,
            payload: Some(PeekRange {
                offset: usize::try_from(offset).ok()?,
                len: usize::try_from(len).ok()?,
            }),
        })
    }

    fn transmit_fin(&mut self, now: Instant) -> Option<Transmit> {
        if !matches!(self.fin, FinState::Pending | FinState::Resend) {
            return None;
        }
        self.fin = FinState::Sent;
        if self.close_deadline.is_none() {
            // First transmission: does it acknowledge the guest's FIN too?
            self.fin_covers_guest_fin = self.guest_fin;
            self.close_deadline = Some(now + self.config.fin_timeout);
        }
        let seq = self.seq_at(self.host_total);
        self.arm_retransmit(now);
        let window = self.advertise_window();
        self.ack_pending = false;
        Some(Transmit::bare(
            seq,
            Some(self.rcv_nxt),
            Flags { fin: true, ..ACK },
            window,
        ))
    }

    fn transmit_probe(&mut self, _now: Instant) -> Option<Transmit> {
        if !self.probe_pending || self.consume_owed > 0 {
            return None;
        }
        self.probe_pending = false;
        if self.host_total <= self.snd_nxt || self.snd_wnd != 0 || self.payload_limit == Some(0) {
            return None;
        }
        // One byte beyond the shut window: the guest answers with its
        // current window, and takes the byte if it has room.
        self.snd_max = self.snd_max.max(self.snd_nxt + 1);
        self.stats.window_probes += 1;
        let window = self.advertise_window();
        self.ack_pending = false;
        Some(Transmit {
            payload: Some(PeekRange {
                offset: usize::try_from(self.snd_nxt - self.consume_polled).ok()?,
                len: 1,
            }),
            ..Transmit::bare(self.seq_at(self.snd_nxt), Some(self.rcv_nxt), ACK, window)
        })
    }

    fn transmit_ack(&mut self) -> Option<Transmit> {
        if !self.ack_pending {
            return None;
        }
        self.ack_pending = false;
        let window = self.advertise_window();
        let seq = match self.fin {
            FinState::Sent | FinState::Acked => self.seq_at(self.host_total) + 1,
            FinState::None | FinState::Pending | FinState::Resend => self.seq_at(self.snd_nxt),
        };
        Some(Transmit::bare(seq, Some(self.rcv_nxt), ACK, window))
    }

    /// The window field for the next segment: the host send buffer's free
    /// space, rounded down to the scale unit so the guest is never promised
    /// room the kernel lacks, except that the right edge already promised
    /// never moves left (RFC 9293 §3.8.6).
    fn advertise_window(&mut self) -> u16 {
        let scale = self.rcv_wscale;
        let max = u32::from(u16::MAX) << scale;
        let offered = if self.guest_fin {
            0
        } else {
            self.host_send_space.min(max)
        };
        let promised = if self.rcv_adv.gt(self.rcv_nxt) {
            self.rcv_adv.since(self.rcv_nxt).min(max)
        } else {
            0
        };
        let unit = 1u32 << scale;
        let field = (offered >> scale)
            .max(promised.div_ceil(unit))
            .min(u32::from(u16::MAX));
        let right = self.rcv_nxt + (field << scale);
        self.rcv_adv = self.rcv_adv.max(right);
        u16::try_from(field).unwrap_or(u16::MAX)
    }

    /// Runs the timers that have expired by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let before = self.phase();
        if self.setup_deadline.is_some_and(|at| at <= now) {
            self.setup_deadline = None;
            let reason = match self.state {
                State::Connecting => CloseReason::ConnectTimeout,
                State::SynSent
                | State::SynReceived
                | State::Established
                | State::TimeWait
                | State::Closed => CloseReason::HandshakeTimeout,
            };
            self.abort(now, reason);
        }
        if self.close_deadline.is_some_and(|at| at <= now) {
            self.close_deadline = None;
            if self.state == State::TimeWait {
                self.finish(CloseReason::Normal, SocketOp::Close);
            } else {
                self.abort(now, CloseReason::FinTimeout);
            }
        }
        if let Some(at) = self.idle_deadline.filter(|at| *at <= now) {
            let _ = at;
            match self.config.idle_timeout {
                Some(idle) if self.last_activity + idle > now => {
                    self.idle_deadline = Some(self.last_activity + idle);
                }
                _ => self.abort(now, CloseReason::IdleTimeout),
            }
        }
        if let Some((kind, at)) = self.timer {
            if at <= now {
                self.timer = None;
                match kind {
                    TimerKind::Retransmit => self.on_retransmit_timeout(now),
                    TimerKind::Persist => self.on_persist_timeout(now),
                }
            }
        }
        self.note_phase(before);
    }

    fn on_retransmit_timeout(&mut self, now: Instant) {
        if self.state == State::Established && self.snd_wnd == 0 && self.fin == FinState::None {
            // The guest shrank its window to zero under bytes in flight:
            // probe it rather than count toward the retransmit limit
            // (RFC 9293 §3.8.6, MUST-35/36).
            self.rto.back_off();
            self.rtt_sample = None;
            self.snd_nxt = self.snd_una;
            self.recover = None;
            self.hole_pending = false;
            self.probe_pending = true;
            self.timer = Some((TimerKind::Persist, now + self.rto.rto(&self.config)));
            return;
        }
        let limit = match self.state {
            State::SynSent | State::SynReceived => self.config.syn_retries,
            _ => self.config.max_retransmits,
        };
        if self.retries >= limit {
            let reason = match self.state {
                State::SynSent | State::SynReceived => CloseReason::HandshakeTimeout,
                _ => CloseReason::RetransmitLimit,
            };
            self.abort(now, reason);
            return;
        }
        self.retries += 1;
        self.stats.timeouts += 1;
        self.rto.back_off();
        self.rtt_sample = None;
        match self.state {
            State::SynSent | State::SynReceived => self.syn_pending = true,
            State::Established => {
                // Go back: everything unacknowledged is peeked again.
                self.snd_nxt = self.snd_una;
                self.recover = None;
                self.hole_pending = false;
                self.dup_acks = 0;
                if self.fin == FinState::Sent {
                    self.fin = FinState::Resend;
                }
            }
            State::Connecting | State::TimeWait | State::Closed => return,
        }
        let outstanding = self.snd_max > self.snd_una
            || matches!(
                self.fin,
                FinState::Pending | FinState::Sent | FinState::Resend
            )
            || self.syn_pending;
        if outstanding {
            self.arm_retransmit(now);
        }
    }

    fn on_persist_timeout(&mut self, now: Instant) {
        self.rto.back_off();
        self.probe_pending = true;
        self.timer = Some((TimerKind::Persist, now + self.rto.rto(&self.config)));
    }
}
