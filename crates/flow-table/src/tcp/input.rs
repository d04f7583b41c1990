//! Segments from the guest: handshake, acknowledgments, data, FIN and RST.

use std::time::Instant;

use super::conn::{CloseReason, FinState, Pending, State, TcpConn, TimerKind};
use super::segment::{Flags, HostError, HostWriter, Segment, SocketOp, Transmit};

/// What became of a guest segment, for counters and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentOutcome {
    /// The segment was used (its ACK, its data or its flags).
    Accepted,
    /// The segment was not acceptable and only drew an ACK, or nothing.
    Dropped(DropReason),
}

/// Why a guest segment was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// It arrived before the handshake allowed it.
    NotSynchronized,
    /// A SYN on a synchronized flow (answered by a challenge ACK).
    UnexpectedSyn,
    /// An RST whose sequence number was not exactly the expected one.
    UnacceptableRst,
    /// The ACK field acknowledged bytes never sent.
    AckOfUnsentData,
    /// A segment without the ACK bit on a synchronized flow.
    NoAck,
    /// The flow is closed.
    Closed,
}

impl TcpConn {
    /// Handles one segment from the guest whose `payload` is borrowed from
    /// the guest's frame. In-order payload bytes are handed to `host` to be
    /// written to the host socket; only what it accepts is acknowledged.
    pub fn handle_guest_segment<W: HostWriter>(
        &mut self,
        now: Instant,
        seg: &Segment,
        payload: &[u8],
        host: &mut W,
    ) -> SegmentOutcome {
        let before = self.phase();
        let outcome = match self.state {
            State::Closed => SegmentOutcome::Dropped(DropReason::Closed),
            State::Connecting => self.on_segment_connecting(now, seg),
            State::SynSent => self.on_segment_syn_sent(now, seg),
            State::SynReceived | State::Established | State::TimeWait => {
                self.on_segment_synchronized(now, seg, payload, host)
            }
        };
        if let SegmentOutcome::Dropped(_) = outcome {
            self.stats.dropped += 1;
        }
        self.note_phase(before);
        outcome
    }

    fn on_segment_connecting(&mut self, now: Instant, seg: &Segment) -> SegmentOutcome {
        if seg.flags.rst {
            return self.on_rst(now, seg);
        }
        // A repeated SYN while the host connect is pending changes nothing:
        // the SYN-ACK goes out once the host connection is up.
        SegmentOutcome::Dropped(DropReason::NotSynchronized)
    }

    fn on_segment_syn_sent(&mut self, now: Instant, seg: &Segment) -> SegmentOutcome {
        let acks_our_syn = seg.ack == Some(self.iss + 1);
        if seg.flags.rst {
            if acks_our_syn {
                self.abort(now, CloseReason::GuestReset);
                return SegmentOutcome::Accepted;
            }
            return SegmentOutcome::Dropped(DropReason::UnacceptableRst);
        }
        if !(seg.flags.syn && acks_our_syn) {
            return SegmentOutcome::Dropped(DropReason::NotSynchronized);
        }
        self.accept_guest_syn_options(seg);
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq + 1;
        self.rcv_adv = self.rcv_nxt;
        self.snd_wl1 = seg.seq;
        self.snd_wl2 = self.iss + 1;
        self.syn_pending = false;
        self.establish(now);
        self.ack_pending = true;
        SegmentOutcome::Accepted
    }

    fn on_segment_synchronized<W: HostWriter>(
        &mut self,
        now: Instant,
        seg: &Segment,
        payload: &[u8],
        host: &mut W,
    ) -> SegmentOutcome {
        if seg.flags.rst {
            return self.on_rst(now, seg);
        }
        if seg.flags.syn {
            if self.state == State::SynReceived && seg.seq == self.irs {
                // The guest did not see our SYN-ACK: send it again.
                self.syn_pending = true;
                return SegmentOutcome::Accepted;
            }
            // RFC 5961 §4: a SYN on a synchronized flow draws a challenge ACK.
            self.ack_pending = self.state != State::SynReceived;
            return SegmentOutcome::Dropped(DropReason::UnexpectedSyn);
        }
        let Some(ack) = seg.ack else {
            return SegmentOutcome::Dropped(DropReason::NoAck);
        };
        if self.state == State::SynReceived {
            if ack != self.iss + 1 {
                // RFC 9293 §3.10.7.4: <SEQ=SEG.ACK><CTL=RST>, flow kept.
                let rst = Flags {
                    rst: true,
                    ..Flags::default()
                };
                self.rst_pending = Some(Transmit::bare(ack, None, rst, 0));
                return SegmentOutcome::Dropped(DropReason::AckOfUnsentData);
            }
            self.syn_pending = false;
            self.snd_wnd = u32::from(seg.window) << self.snd_wscale;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            self.establish(now);
        }
        if let Some(outcome) = self.on_ack(now, seg, ack, payload.len()) {
            return outcome;
        }
        // Any acceptable segment shows the guest is alive, an answer to a
        // zero-window probe included (RFC 1122 §4.2.2.17: a receiver that
        // answers probes keeps the connection open indefinitely).
        self.last_activity = now;
        self.on_data(now, seg, payload, host);
        SegmentOutcome::Accepted
    }

    fn establish(&mut self, now: Instant) {
        self.state = State::Established;
        self.setup_deadline = None;
        self.timer = None;
        self.retries = 0;
        self.rto.reset_backoff();
        self.last_activity = now;
        self.idle_deadline = self.config.idle_timeout.map(|idle| now + idle);
        // The host peer may have closed before the handshake finished.
        self.maybe_queue_fin();
    }

    fn on_rst(&mut self, now: Instant, seg: &Segment) -> SegmentOutcome {
        if seg.seq == self.rcv_nxt {
            self.abort(now, CloseReason::GuestReset);
            return SegmentOutcome::Accepted;
        }
        // RFC 5961 §3: an in-window RST that is not exact gets a challenge ACK.
        if matches!(self.state, State::Established | State::TimeWait)
            && seg
                .seq
                .in_window(self.rcv_nxt, self.rcv_adv.since(self.rcv_nxt).max(1))
        {
            self.ack_pending = true;
        }
        SegmentOutcome::Dropped(DropReason::UnacceptableRst)
    }

    /// Processes the acknowledgment and window fields. Returns an outcome
    /// when the segment must go no further.
    fn on_ack(
        &mut self,
        now: Instant,
        seg: &Segment,
        ack: super::SeqNum,
        payload_len: usize,
    ) -> Option<SegmentOutcome> {
        let una = self.seq_at(self.snd_una);
        // A FIN due again after a timeout was sent before: the guest may
        // acknowledge that copy.
        let fin_sent = matches!(
            self.fin,
            FinState::Sent | FinState::Resend | FinState::Acked
        );
        let sendable = (self.snd_max - self.snd_una) + u64::from(fin_sent);
        if ack.gt(una) && u64::from(ack.since(una)) > sendable {
            // RFC 9293 §3.10.7.4: ACK of something not yet sent.
            self.ack_pending = true;
            return Some(SegmentOutcome::Dropped(DropReason::AckOfUnsentData));
        }
        let window = u32::from(seg.window) << self.snd_wscale;
        // Only a segment at least as new as the last window update moves it.
        let newer = self.snd_wl1.lt(seg.seq) || (self.snd_wl1 == seg.seq && self.snd_wl2.le(ack));
        let window_changed = newer && window != self.snd_wnd;
        if ack.gt(una) {
            self.on_new_ack(now, u64::from(ack.since(una)));
        } else if ack == una
            && payload_len == 0
            && !seg.flags.fin
            && !window_changed
            && self.snd_max > self.snd_una
        {
            self.on_duplicate_ack();
        }
        if newer {
            self.snd_wnd = window;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
        }
        self.update_persist(now);
        None
    }

    fn on_new_ack(&mut self, now: Instant, acked: u64) {
        let data = acked.min(self.snd_max - self.snd_una);
        self.snd_una += data;
        self.consume_owed += data;
        self.snd_nxt = self.snd_nxt.max(self.snd_una);
        self.dup_acks = 0;
        self.retries = 0;
        match self.recover {
            // A partial ACK in recovery: the next hole is at the new head.
            Some(recover) if self.snd_una < recover => self.hole_pending = true,
            Some(_) => {
                self.recover = None;
                self.hole_pending = false;
            }
            None => {}
        }
        self.rto.reset_backoff();
        self.last_activity = now;
        if let Some((end, sent_at)) = self.rtt_sample {
            if self.snd_una >= end {
                self.rto
                    .sample(now.saturating_duration_since(sent_at), &self.config);
                self.rtt_sample = None;
            }
        }
        if acked > data && matches!(self.fin, FinState::Sent | FinState::Resend) {
            self.fin = FinState::Acked;
            self.close_deadline = None;
            self.on_our_fin_acked(now);
        }
        let outstanding =
            self.snd_max > self.snd_una || matches!(self.fin, FinState::Sent | FinState::Resend);
        if outstanding {
            self.arm_retransmit(now);
        } else if matches!(self.timer, Some((TimerKind::Retransmit, _))) {
            self.timer = None;
        }
        self.maybe_queue_fin();
    }

    fn on_duplicate_ack(&mut self) {
        self.dup_acks = self.dup_acks.saturating_add(1);
        // Early retransmit (RFC 5827): with fewer than four segments in
        // flight, three duplicate ACKs can never come; one fewer than the
        // segments in flight is enough.
        let mss = u64::from(self.snd_mss.max(1));
        let segments = (self.snd_max - self.snd_una).div_ceil(mss);
        let threshold = if segments < 4 {
            u8::try_from(segments.saturating_sub(1).max(1)).unwrap_or(3)
        } else {
            3
        };
        if self.dup_acks == threshold && self.recover.is_none() {
            // Fast retransmit: peek the first unacknowledged segment again
            // and stay in recovery until everything sent so far is acked.
            self.recover = Some(self.snd_max);
            self.hole_pending = true;
            self.rtt_sample = None;
            self.stats.fast_retransmits += 1;
        }
    }

    fn on_our_fin_acked(&mut self, now: Instant) {
        if !self.guest_fin {
            // Half-closed toward the guest: it may go on sending for as long
            // as it likes, within the idle timeout.
            return;
        }
        if self.fin_covers_guest_fin {
            // The guest saw our FIN, which acknowledged its own: done.
            self.finish(CloseReason::Normal, SocketOp::Close);
        } else {
            // Our ACK of the guest's FIN went separately and may be lost.
            self.enter_time_wait(now);
        }
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.timer = None;
        self.idle_deadline = None;
        self.close_deadline = Some(now + self.config.time_wait);
        if self.terminal.is_none() {
            self.terminal = Some((SocketOp::Close, Pending::Owed));
        }
    }

    /// Writes the in-order part of the payload and takes the guest's FIN.
    fn on_data<W: HostWriter>(
        &mut self,
        now: Instant,
        seg: &Segment,
        payload: &[u8],
        host: &mut W,
    ) {
        if payload.is_empty() && !seg.flags.fin {
            if seg.seq != self.rcv_nxt {
                // Unacceptable, such as a keep-alive at RCV.NXT - 1: answer
                // with an ACK (RFC 9293 §3.10.7.4, §3.8.4); it is traffic.
                self.ack_pending = true;
                self.last_activity = now;
            }
            return;
        }
        if self.guest_fin {
            // A repeated FIN or data after it: acknowledge again.
            self.ack_pending = true;
            return;
        }
        if seg.seq.gt(self.rcv_nxt) {
            // A gap: never write out of order; the duplicate ACK asks the
            // guest to fill it.
            self.stats.out_of_order += 1;
            self.ack_pending = true;
            return;
        }
        let skip = self.rcv_nxt.since(seg.seq) as usize;
        if skip > payload.len() {
            self.stats.duplicates += 1;
            self.ack_pending = true;
            return;
        }
        let fresh = &payload[skip..];
        self.ack_pending = true;
        let mut complete = true;
        if !fresh.is_empty() {
            let allowed = (self.rcv_adv.since(self.rcv_nxt) as usize).max(1);
            let offered = &fresh[..fresh.len().min(allowed)];
            let written = match host.write(offered) {
                Ok(n) => n.min(offered.len()),
                Err(HostError::Reset) => return self.abort(now, CloseReason::HostReset),
                Err(HostError::Failed) => return self.abort(now, CloseReason::HostError),
            };
            self.rcv_nxt = self.rcv_nxt + written as u32;
            self.stats.bytes_to_host += written as u64;
            self.host_send_space = self.host_send_space.saturating_sub(written as u32);
            if written > 0 {
                self.last_activity = now;
            }
            complete = written == fresh.len();
            if !complete {
                self.stats.host_backpressure += 1;
            }
        } else if !seg.flags.fin {
            self.stats.duplicates += 1;
        }
        if seg.flags.fin && complete {
            self.on_guest_fin(now);
        }
    }

    fn on_guest_fin(&mut self, now: Instant) {
        self.guest_fin = true;
        self.rcv_nxt = self.rcv_nxt + 1;
        self.shutdown = Pending::Owed;
        self.last_activity = now;
        match self.fin {
            // The guest's FIN is the last one: linger to acknowledge it
            // again should our ACK be lost.
            FinState::Acked => self.enter_time_wait(now),
            FinState::None | FinState::Pending | FinState::Sent | FinState::Resend => {}
        }
    }

    /// Arms the persist timer while the guest's window is shut and bytes
    /// wait; cancels it once the window opens.
    pub(crate) fn update_persist(&mut self, now: Instant) {
        let unsent = self.host_total > self.snd_nxt;
        let nothing_in_flight = self.snd_nxt == self.snd_una;
        let shut = self.snd_wnd == 0;
        match self.timer {
            Some((TimerKind::Persist, _)) if !(shut && unsent) => self.timer = None,
            None if shut && unsent && nothing_in_flight && self.state == State::Established => {
                self.timer = Some((TimerKind::Persist, now + self.rto.rto(&self.config)));
            }
            _ => {}
        }
    }
}
