//! The connection: state, constructors, and the public `handle_*` / `poll_*`
//! surface. Guest input lives in `input.rs`, output in `output.rs`.

use std::collections::VecDeque;
use std::time::Instant;

use super::segment::{Interest, SocketOp, Transmit};
use super::seq::SeqNum;
use super::timers::{RtoEstimator, TcpConfig, earliest};

/// Where the connection is in its life, in RFC 9293's vocabulary, seen from
/// slipway's guest-facing side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The guest sent SYN; the host `connect()` is in progress.
    Connecting,
    /// A host peer connected to a forwarded port; SYN sent to the guest.
    SynSent,
    /// The host connection is up; SYN-ACK sent, waiting for the guest's ACK.
    SynReceived,
    /// Data flows both ways.
    Established,
    /// The guest sent FIN; the host side still sends.
    CloseWait,
    /// The host peer closed and slipway sent FIN; the guest still sends.
    FinWait,
    /// Both sides sent FIN; acknowledgments outstanding.
    Closing,
    /// Everything is done; the flow lingers to acknowledge a repeated FIN.
    TimeWait,
    /// The flow is over and may be freed.
    Closed,
}

/// Why a flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both sides closed and every byte was acknowledged.
    Normal,
    /// The host `connect()` failed (refused, unreachable, ...).
    ConnectFailed,
    /// The host `connect()` did not complete in time.
    ConnectTimeout,
    /// The guest never completed the handshake.
    HandshakeTimeout,
    /// The guest reset the connection.
    GuestReset,
    /// The host peer reset the connection.
    HostReset,
    /// The host socket failed.
    HostError,
    /// Retransmissions to the guest went unacknowledged.
    RetransmitLimit,
    /// No traffic for the idle timeout.
    IdleTimeout,
    /// The guest did not acknowledge slipway's FIN within the FIN timeout.
    FinTimeout,
}

/// Something observable happened to the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The phase changed.
    PhaseChanged {
        /// Old phase.
        from: Phase,
        /// New phase.
        to: Phase,
    },
    /// The flow ended.
    Closed(CloseReason),
}

/// Counters of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Payload bytes the host socket accepted from the guest.
    pub bytes_to_host: u64,
    /// Payload bytes sent to the guest for the first time.
    pub bytes_to_guest: u64,
    /// Payload bytes sent to the guest again.
    pub bytes_retransmitted: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
    /// Fast retransmissions after three duplicate ACKs.
    pub fast_retransmits: u64,
    /// Guest segments that started beyond the expected sequence number.
    pub out_of_order: u64,
    /// Guest segments whose bytes were all written already.
    pub duplicates: u64,
    /// Guest segments the host socket could not take in full.
    pub host_backpressure: u64,
    /// Guest segments dropped as unacceptable.
    pub dropped: u64,
    /// Zero-window probes sent to the guest.
    pub window_probes: u64,
}

/// The closing handshake of the host-to-guest direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FinState {
    /// The host peer has not closed, or bytes are still unacknowledged.
    None,
    /// The FIN is due (again).
    Pending,
    /// Sent, waiting for the guest's ACK.
    Sent,
    /// Sent, and due again after a retransmission timeout; the guest may
    /// have received and acknowledged the copy sent before.
    Resend,
    /// Acknowledged by the guest.
    Acked,
}

/// The internal state of the handshake and teardown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Connecting,
    SynSent,
    SynReceived,
    Established,
    TimeWait,
    Closed,
}

/// What the retransmission timer is armed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimerKind {
    Retransmit,
    Persist,
}

/// One TCP flow's sequence-mirroring state machine.
///
/// Guest-to-host bytes are written to the host socket straight from the
/// guest's segments and acknowledged only once the kernel took them.
/// Host-to-guest bytes stay in the host socket's receive queue until the
/// guest acknowledges them; segments to the guest name the range to peek.
///
/// Drive it with the `handle_*` methods, then drain [`poll_socket_op`],
/// [`poll_transmit`] and [`poll_event`], and sleep until [`poll_timeout`].
///
/// [`poll_socket_op`]: TcpConn::poll_socket_op
/// [`poll_transmit`]: TcpConn::poll_transmit
/// [`poll_event`]: TcpConn::poll_event
/// [`poll_timeout`]: TcpConn::poll_timeout
#[derive(Debug)]
pub struct TcpConn {
    pub(crate) config: TcpConfig,
    pub(crate) state: State,

    // Guest to host (slipway receives).
    pub(crate) irs: SeqNum,
    pub(crate) rcv_nxt: SeqNum,
    /// Right edge of the window last advertised; never moves left.
    pub(crate) rcv_adv: SeqNum,
    pub(crate) rcv_wscale: u8,
    pub(crate) guest_offered_wscale: bool,
    pub(crate) host_send_space: u32,
    /// Free send space at which the host socket surely reports writable;
    /// `u32::MAX` until the relay says.
    pub(crate) host_writable_at: u32,
    pub(crate) guest_fin: bool,

    // Host to guest (slipway sends). Offsets count stream bytes from 0;
    // byte `k` has sequence number `iss + 1 + k`.
    pub(crate) iss: SeqNum,
    pub(crate) snd_una: u64,
    pub(crate) snd_nxt: u64,
    pub(crate) snd_max: u64,
    pub(crate) snd_wnd: u32,
    pub(crate) snd_wscale: u8,
    pub(crate) snd_mss: u16,
    /// The most payload a new data segment may carry when the frontend
    /// segments it for the guest (GSO); `None`: the guest's MSS.
    pub(crate) gso_limit: Option<u16>,
    /// The most payload any segment may carry: the room in the caller's
    /// buffer; `None`: no bound but the MSS or `gso_limit`.
    pub(crate) payload_limit: Option<u16>,
    pub(crate) snd_wl1: SeqNum,
    pub(crate) snd_wl2: SeqNum,
    /// Stream bytes known to have arrived from the host peer.
    pub(crate) host_total: u64,
    pub(crate) host_eof: bool,
    pub(crate) fin: FinState,
    /// Every copy of our FIN acknowledged the guest's FIN as well.
    pub(crate) fin_covers_guest_fin: bool,
    pub(crate) dup_acks: u8,
    /// Fast recovery lasts until everything sent before it is acknowledged.
    pub(crate) recover: Option<u64>,
    /// One segment from the first unacknowledged byte is due (RFC 6582).
    pub(crate) hole_pending: bool,
    pub(crate) rtt_sample: Option<(u64, Instant)>,

    // Socket operations owed to the relay.
    pub(crate) consume_owed: u64,
    pub(crate) consume_polled: u64,
    pub(crate) shutdown: Pending,
    pub(crate) terminal: Option<(SocketOp, Pending)>,

    // Timers.
    pub(crate) rto: RtoEstimator,
    pub(crate) retries: u32,
    pub(crate) timer: Option<(TimerKind, Instant)>,
    /// The host `connect()` (while connecting) or the guest's side of the
    /// handshake (SYN or SYN-ACK sent) must be done by then.
    pub(crate) setup_deadline: Option<Instant>,
    pub(crate) idle_deadline: Option<Instant>,
    pub(crate) close_deadline: Option<Instant>,
    pub(crate) last_activity: Instant,

    // Segments owed to the guest.
    pub(crate) syn_pending: bool,
    pub(crate) ack_pending: bool,
    pub(crate) probe_pending: bool,
    pub(crate) rst_pending: Option<Transmit>,

    pub(crate) events: VecDeque<Event>,
    pub(crate) close_reason: Option<CloseReason>,
    pub(crate) stats: TcpStats,
}

/// A one-shot operation: not needed, owed, or already handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pending {
    No,
    Owed,
    Done,
}

/// Keeps the event queue bounded: a caller that never drains it loses the
/// oldest events, never memory.
const MAX_EVENTS: usize = 16;

/// Default MSS when the guest's SYN carries none (RFC 9293 §3.7.1).
const DEFAULT_GUEST_MSS: u16 = 536;

impl TcpConn {
    /// A flow the guest opened with `syn`; the relay starts a non-blocking
    /// `connect()` to the destination and reports the outcome with
    /// [`handle_host_connected`](Self::handle_host_connected) or
    /// [`handle_host_connect_failed`](Self::handle_host_connect_failed).
    ///
    /// `isn` is slipway's initial sequence number, from the caller's secret
    /// source (RFC 6528).
    #[must_use]
    pub fn from_guest_syn(
        syn: &super::Segment,
        isn: SeqNum,
        config: TcpConfig,
        now: Instant,
    ) -> Self {
        let mut conn = Self::blank(config, isn, State::Connecting, now);
        conn.accept_guest_syn_options(syn);
        conn.irs = syn.seq;
        conn.rcv_nxt = syn.seq + 1;
        conn.rcv_adv = conn.rcv_nxt;
        conn.setup_deadline = Some(now + config.connect_timeout);
        conn
    }

    /// A flow a host peer opened on a forwarded port: slipway sends SYN to
    /// the guest.
    #[must_use]
    pub fn from_host_accept(
        isn: SeqNum,
        host_send_space: u32,
        config: TcpConfig,
        now: Instant,
    ) -> Self {
        let mut conn = Self::blank(config, isn, State::SynSent, now);
        conn.host_send_space = host_send_space;
        conn.syn_pending = true;
        conn.guest_offered_wscale = true;
        conn.setup_deadline = Some(now + config.handshake_timeout);
        conn.arm_retransmit(now);
        conn
    }

    fn blank(config: TcpConfig, isn: SeqNum, state: State, now: Instant) -> Self {
        let config = TcpConfig {
            window_scale: config.window_scale.min(TcpConfig::MAX_WINDOW_SCALE),
            ..config
        };
        Self {
            config,
            state,
            irs: SeqNum::default(),
            rcv_nxt: SeqNum::default(),
            rcv_adv: SeqNum::default(),
            rcv_wscale: 0,
            guest_offered_wscale: false,
            host_send_space: 0,
            host_writable_at: u32::MAX,
            guest_fin: false,
            iss: isn,
            snd_una: 0,
            snd_nxt: 0,
            snd_max: 0,
            snd_wnd: 0,
            snd_wscale: 0,
            snd_mss: DEFAULT_GUEST_MSS.min(config.mss),
            gso_limit: None,
            payload_limit: None,
            snd_wl1: SeqNum::default(),
            snd_wl2: SeqNum::default(),
            host_total: 0,
            host_eof: false,
            fin: FinState::None,
            fin_covers_guest_fin: false,
            dup_acks: 0,
            recover: None,
            hole_pending: false,
            rtt_sample: None,
            consume_owed: 0,
            consume_polled: 0,
            shutdown: Pending::No,
            terminal: None,
            rto: RtoEstimator::new(&config),
            retries: 0,
            timer: None,
            setup_deadline: None,
            idle_deadline: None,
            close_deadline: None,
            last_activity: now,
            syn_pending: false,
            ack_pending: false,
            probe_pending: false,
            rst_pending: None,
            events: VecDeque::new(),
            close_reason: None,
            stats: TcpStats::default(),
        }
    }

    /// Takes MSS and window scale from a SYN (or SYN-ACK) of the guest.
    pub(crate) fn accept_guest_syn_options(&mut self, syn: &super::Segment) {
        let mss = syn.mss.unwrap_or(DEFAULT_GUEST_MSS).max(64);
        self.snd_mss = mss.min(self.config.mss);
        self.snd_wnd = u32::from(syn.window);
        match syn.window_scale {
            Some(scale) => {
                self.guest_offered_wscale = true;
                self.snd_wscale = scale.min(TcpConfig::MAX_WINDOW_SCALE);
                self.rcv_wscale = self.config.window_scale;
            }
            None => {
                self.guest_offered_wscale = false;
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
    }

    /// The host `connect()` completed; `send_space` is the free space of the
    /// host socket's send buffer.
    pub fn handle_host_connected(&mut self, now: Instant, send_space: u32) {
        if self.state != State::Connecting {
            return;
        }
        let before = self.phase();
        self.host_send_space = send_space;
        self.state = State::SynReceived;
        self.setup_deadline = Some(now + self.config.handshake_timeout);
        self.syn_pending = true;
        self.retries = 0;
        self.arm_retransmit(now);
        self.last_activity = now;
        self.note_phase(before);
    }

    /// The host `connect()` failed: the guest gets an RST.
    pub fn handle_host_connect_failed(&mut self, now: Instant) {
        if self.state == State::Connecting {
            self.abort(now, CloseReason::ConnectFailed);
        }
    }

    /// The host socket's receive queue holds `queued` bytes, counted after
    /// every [`SocketOp::Consume`] polled so far was carried out.
    pub fn handle_host_readable(&mut self, now: Instant, queued: usize) {
        let total = self
            .consume_polled
            .saturating_add(u64::try_from(queued).unwrap_or(u64::MAX));
        if total > self.host_total && !self.host_eof {
            self.host_total = total;
            self.last_activity = now;
            self.update_persist(now);
        }
    }

    /// The host peer closed its sending side; every byte it sent has been
    /// reported through [`handle_host_readable`](Self::handle_host_readable).
    pub fn handle_host_eof(&mut self, now: Instant) {
        if self.host_eof || matches!(self.state, State::Closed | State::Connecting) {
            return;
        }
        let before = self.phase();
        self.host_eof = true;
        self.last_activity = now;
        self.maybe_queue_fin();
        self.note_phase(before);
    }

    /// The host socket's send buffer has `space` bytes free.
    pub fn handle_host_send_space(&mut self, _now: Instant, space: u32) {
        let was_closed = self.window_closed();
        self.host_send_space = space;
        self.note_window_reopened(was_closed);
    }

    /// The host socket reports writable readiness at the latest once
    /// `writable_at` bytes of its send buffer are free, counted as
    /// [`handle_host_send_space`](Self::handle_host_send_space) counts
    /// them. A window waits for writable readiness only below that: the
    /// kernel reports a TCP socket writable while a third of its buffer is
    /// free, so a small buffer may never free a whole segment of a guest
    /// with a large MSS, and an interest in an event that is already true
    /// wakes the loop on every wait.
    pub fn handle_host_send_buffer(&mut self, _now: Instant, writable_at: u32) {
        let was_closed = self.window_closed();
        self.host_writable_at = writable_at;
        self.note_window_reopened(was_closed);
    }

    /// A window that counted as shut and no longer does is announced.
    fn note_window_reopened(&mut self, was_closed: bool) {
        if was_closed && !self.window_closed() && self.state == State::Established {
            self.ack_pending = true;
        }
    }

    /// The host peer reset the connection.
    pub fn handle_host_reset(&mut self, now: Instant) {
        self.abort(now, CloseReason::HostReset);
    }

    /// The host socket failed.
    pub fn handle_host_error(&mut self, now: Instant) {
        self.abort(now, CloseReason::HostError);
    }

    /// The next operation for the relay to carry out on the host socket.
    ///
    /// Carry out every operation before taking segments from
    /// [`poll_transmit`](Self::poll_transmit): payload offsets assume it.
    /// After a [`SocketOp::Consume`], report the receive queue again with
    /// [`handle_host_readable`](Self::handle_host_readable).
    pub fn poll_socket_op(&mut self) -> Option<SocketOp> {
        let resetting = matches!(self.terminal, Some((SocketOp::Reset, _)));
        if self.consume_owed > 0 && !resetting {
            let n = usize::try_from(self.consume_owed).unwrap_or(usize::MAX);
            self.consume_owed -= n as u64;
            self.consume_polled += n as u64;
            return Some(SocketOp::Consume(n));
        }
        if self.shutdown == Pending::Owed && !resetting {
            self.shutdown = Pending::Done;
            return Some(SocketOp::ShutdownWrite);
        }
        if let Some((op, Pending::Owed)) = self.terminal {
            self.terminal = Some((op, Pending::Done));
            return Some(op);
        }
        None
    }

    /// The next observable event, for tracing and counters.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        earliest(&[
            self.timer.map(|(_, at)| at),
            self.setup_deadline,
            self.idle_deadline,
            self.close_deadline,
        ])
    }

    /// The readiness of the host socket this flow can use now.
    #[must_use]
    pub fn interest(&self) -> Interest {
        match self.state {
            State::Connecting => Interest {
                readable: false,
                writable: true,
            },
            State::Closed | State::TimeWait => Interest::default(),
            State::SynSent | State::SynReceived | State::Established => Interest {
                readable: !self.host_eof && self.host_total == self.snd_una,
                writable: !self.guest_fin && self.window_closed(),
            },
        }
    }

    /// The current phase.
    #[must_use]
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Connecting => Phase::Connecting,
            State::SynSent => Phase::SynSent,
            State::SynReceived => Phase::SynReceived,
            State::TimeWait => Phase::TimeWait,
            State::Closed => Phase::Closed,
            State::Established => {
                let host_closed = self.fin != FinState::None;
                match (self.guest_fin, host_closed) {
                    (false, false) => Phase::Established,
                    (true, false) => Phase::CloseWait,
                    (false, true) => Phase::FinWait,
                    (true, true) => Phase::Closing,
                }
            }
        }
    }

    /// True once the flow is over and can be removed from the table (after
    /// its socket operations have been polled).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Why the flow ended, once it has.
    #[must_use]
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// The counters of this flow.
    #[must_use]
    pub fn stats(&self) -> &TcpStats {
        &self.stats
    }

    /// Lets the data segments [`poll_transmit`](Self::poll_transmit) makes
    /// from now on carry up to `limit` payload bytes, more than the guest's
    /// MSS, for a frontend that cuts them into MSS-sized segments on the
    /// way (generic segmentation offload); `None` (the default) keeps every
    /// segment within the MSS. Retransmissions of a hole stay within it.
    pub fn set_gso_limit(&mut self, limit: Option<u16>) {
        self.gso_limit = limit;
    }

    /// Keeps the payload of every segment
    /// [`poll_transmit`](Self::poll_transmit) makes from now on, new or
    /// retransmitted, within `limit` bytes (the room a caller's frame
    /// buffer has behind the headers), below the MSS if need be; `None`
    /// (the default) lifts the bound. A limit of 0 holds data back.
    pub fn set_payload_limit(&mut self, limit: Option<u16>) {
        self.payload_limit = limit;
    }

    /// The guest's MSS as negotiated: what segments are cut to.
    #[must_use]
    pub fn guest_mss(&self) -> u16 {
        self.snd_mss
    }

    /// The smoothed round-trip time to the guest, once measured.
    #[must_use]
    pub fn smoothed_rtt(&self) -> Option<std::time::Duration> {
        self.rto.srtt()
    }

    // ----- shared helpers -----

    /// The sequence number of stream byte `offset`.
    pub(crate) fn seq_at(&self, offset: u64) -> SeqNum {
        // Sequence space wraps every 2^32 bytes, so the low bits are exact.
        self.iss + 1 + (offset & u64::from(u32::MAX)) as u32
    }

    /// True while the host send buffer has less room than one segment (or
    /// one unit of the scaled window, if larger), or than the room at which
    /// the socket surely reports writable, if that is less. A guest that
    /// avoids the silly window syndrome sends nothing into less than a
    /// segment, so the flow must then ask for writable readiness and
    /// announce the reopened window itself, or both sides wait forever.
    /// The bound keeps the wait to what the socket can reach: a
    /// level-triggered writable interest is on only while the kernel does
    /// not yet report it, so it never fires on every wait. Between the two
    /// (a guest MSS larger than the buffer ever frees) the window is
    /// announced as it is, and the guest's own override timer of the silly
    /// window avoidance (its zero-window probe) sends into it.
    pub(crate) fn window_closed(&self) -> bool {
        let segment = (1u32 << self.rcv_wscale).max(u32::from(self.snd_mss));
        self.host_send_space < segment.min(self.host_writable_at).max(1)
    }

    pub(crate) fn arm_retransmit(&mut self, now: Instant) {
        self.timer = Some((TimerKind::Retransmit, now + self.rto.rto(&self.config)));
    }

    /// Records the phase change since `before`, if any.
    pub(crate) fn note_phase(&mut self, before: Phase) {
        let after = self.phase();
        if before != after {
            self.push_event(Event::PhaseChanged {
                from: before,
                to: after,
            });
            if after == Phase::Closed {
                if let Some(reason) = self.close_reason {
                    self.push_event(Event::Closed(reason));
                }
            }
        }
    }

    pub(crate) fn push_event(&mut self, event: Event) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Queues the FIN once the host closed and the guest acknowledged every
    /// byte before it.
    pub(crate) fn maybe_queue_fin(&mut self) {
        if self.state == State::Established
            && self.host_eof
            && self.fin == FinState::None
            && self.snd_una == self.host_total
        {
            self.fin = FinState::Pending;
        }
    }

    /// Ends the flow with an RST to the guest and a reset of the host socket.
    pub(crate) fn abort(&mut self, _now: Instant, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        let before = self.phase();
        let rst = super::segment::Flags {
            rst: true,
            ..Default::default()
        };
        let (seq, ack) = match self.state {
            // The guest's SYN is answered; its ACK makes the RST acceptable.
            State::Connecting => (SeqNum::new(0), Some(self.rcv_nxt)),
            State::SynSent => (self.iss + 1, None),
            // SND.NXT, counting a FIN already sent (RFC 9293 §3.10.4).
            _ => match self.fin {
                FinState::Sent | FinState::Resend | FinState::Acked => {
                    (self.seq_at(self.host_total) + 1, Some(self.rcv_nxt))
                }
                FinState::None | FinState::Pending => {
                    (self.seq_at(self.snd_max), Some(self.rcv_nxt))
                }
            },
        };
        let guest_already_gone = reason == CloseReason::GuestReset;
        if !guest_already_gone {
            self.rst_pending = Some(Transmit::bare(seq, ack, rst, 0));
        }
        self.finish(reason, SocketOp::Reset);
        self.note_phase(before);
    }

    /// Moves to `Closed` and owes the relay the final socket operation.
    pub(crate) fn finish(&mut self, reason: CloseReason, op: SocketOp) {
        if self.terminal.is_none() {
            self.terminal = Some((op, Pending::Owed));
        }
        self.state = State::Closed;
        self.timer = None;
        self.setup_deadline = None;
        self.idle_deadline = None;
        self.close_deadline = None;
        self.syn_pending = false;
        self.ack_pending = false;
        self.probe_pending = false;
        if self.close_reason.is_none() {
            // Reported by `note_phase`, after the change of phase.
            self.close_reason = Some(reason);
        }
    }
}
