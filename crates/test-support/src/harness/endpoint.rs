//! A simple in-order guest TCP endpoint for transfers through the backend.
//!
//! It opens (or accepts) one connection, sends its data within the peer's
//! window, acknowledges every segment that arrives, keeps only in-order
//! bytes (hashing them, and keeping the first ones), and retransmits on its
//! own timer, on three duplicate ACKs and on a window update: slipway
//! keeps nothing the host socket did not take, so whatever was in flight
//! beyond an update is gone. It can lose, duplicate and reorder its own
//! data segments and drop its own ACKs, and it counts what it saw.

use slipway::FrameBackend;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use slipway::Backend;
use smoltcp::wire::TcpControl;

use super::frames::{GUEST_IP, GuestSeg, MAX_HEADERS, TcpView};
use super::{Fnv, Rng};

/// Where the endpoint's frames go: straight into a backend, or through a
/// frontend's transport (a stream socket).
pub trait GuestWire {
    /// Carries one frame from the guest.
    fn send_frame(&mut self, frame: &[u8], now: Instant);
}

impl GuestWire for Backend {
    fn send_frame(&mut self, frame: &[u8], now: Instant) {
        self.handle_guest_frame(frame, now);
    }
}

/// What the endpoint does wrong on purpose.
#[derive(Clone, Copy, Debug, Default)]
pub struct Impairments {
    /// Per mille of its data segments lost.
    pub loss: u32,
    /// Per mille of its data segments sent twice.
    pub duplicate: u32,
    /// Per mille of its data segments held back and sent after the next.
    pub reorder: u32,
    /// Drops every n-th ACK of received data (0: none).
    pub drop_every_nth_ack: u32,
    /// Drops at most this many ACKs in all.
    pub max_ack_drops: u32,
}

/// How the endpoint behaves.
#[derive(Clone, Copy, Debug)]
pub struct TcpOpts {
    /// The MSS it announces.
    pub mss: u16,
    /// The bytes it can take: its receive window, always fully open since
    /// it consumes at once.
    pub window: u32,
    /// The window scale it offers, if any.
    pub wscale: Option<u8>,
    /// Deliberate misbehaviour.
    pub impair: Impairments,
    /// Initial retransmission timeout.
    pub rto: Duration,
    /// Largest retransmission timeout after backoff.
    pub max_rto: Duration,
    /// Seed of the impairments.
    pub seed: u64,
    /// Segments sent per [`GuestTcp::transmit`] at most.
    pub max_burst: usize,
    /// Received bytes kept for inspection (all are hashed).
    pub keep: usize,
}

impl Default for TcpOpts {
    fn default() -> Self {
        Self {
            mss: 65480,
            window: 4 << 20,
            wscale: Some(7),
            impair: Impairments::default(),
            rto: Duration::from_millis(20),
            max_rto: Duration::from_millis(250),
            seed: 0x5eed,
            max_burst: 16,
            keep: 1 << 20,
        }
    }
}

/// What the endpoint saw and did.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestStats {
    /// SYN-ACKs (or SYNs, when accepting) received, repeats included.
    pub syns_received: u64,
    /// Data and FIN segments sent, retransmissions included.
    pub segments_sent: u64,
    /// Segments sent again from an offset already sent.
    pub retransmitted: u64,
    /// Times the sender went back to the first unacknowledged byte.
    pub go_backs: u64,
    /// Own data segments lost on purpose.
    pub lost: u64,
    /// Own data segments duplicated on purpose.
    pub duplicated: u64,
    /// Own data segments reordered on purpose.
    pub reordered: u64,
    /// Pure ACKs sent.
    pub acks_sent: u64,
    /// Own ACKs dropped on purpose.
    pub acks_dropped: u64,
    /// Segments received whose data (or FIN) had arrived before: the
    /// peer's retransmissions.
    pub dup_segments: u64,
    /// Segments received beyond a gap.
    pub out_of_order: u64,
    /// Segments received past the right edge of the advertised window.
    pub window_violations: u64,
    /// RSTs received.
    pub rsts: u64,
    /// RSTs received at exactly the expected sequence number.
    pub exact_rsts: u64,
    /// Segments sent with data and FIN together.
    pub fin_with_data: u64,
    /// ACKs received for bytes never sent.
    pub bad_acks: u64,
}

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// SYN sent, waiting for SYN-ACK.
    SynSent,
    /// SYN received and answered, waiting for the ACK.
    SynReceived,
    /// Synchronized.
    Established,
    /// Reset by the peer.
    Reset,
}

/// One guest TCP connection.
#[derive(Debug)]
pub struct GuestTcp {
    opts: TcpOpts,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    state: State,
    iss: u32,
    irs: u32,
    peer_mss: u16,
    peer_scale: u8,
    our_scale: u8,
    /// Both sides offered window scaling.
    scaling: bool,

    // Sending; offsets count from the byte after our SYN, and the FIN sits
    // at offset `data.len()`.
    data: Vec<u8>,
    closing: bool,
    snd_una: u64,
    snd_nxt: u64,
    snd_max: u64,
    peer_wnd: u64,
    dup_acks: u32,
    recover: Option<u64>,
    probe_due: bool,
    rto: Duration,
    timer: Option<Instant>,

    // Receiving; offsets count from the byte after the peer's SYN.
    rcv_nxt: u64,
    rcv_edge: u64,
    peer_fin: bool,
    received: Vec<u8>,
    received_len: u64,
    hash: Fnv,
    data_acks: u64,

    rng: Rng,
    held: Option<Vec<u8>>,
    tx: Vec<u8>,
    stats: GuestStats,
}

impl GuestTcp {
    /// An endpoint at guest port `local_port` for a connection to `remote`
    /// (as the guest names it), with initial sequence number `iss`.
    #[must_use]
    pub fn new(opts: TcpOpts, local_port: u16, remote: SocketAddrV4, iss: u32) -> Self {
        Self {
            opts,
            local: SocketAddrV4::new(GUEST_IP, local_port),
            remote,
            state: State::SynSent,
            iss,
            irs: 0,
            peer_mss: 536,
            peer_scale: 0,
            our_scale: 0,
            scaling: false,
            data: Vec::new(),
            closing: false,
            snd_una: 0,
            snd_nxt: 0,
            snd_max: 0,
            peer_wnd: 0,
            dup_acks: 0,
            recover: None,
            probe_due: false,
            rto: opts.rto,
            timer: None,
            rcv_nxt: 0,
            rcv_edge: 0,
            peer_fin: false,
            received: Vec::new(),
            received_len: 0,
            hash: Fnv::new(),
            data_acks: 0,
            rng: Rng::new(opts.seed),
            held: None,
            tx: vec![0u8; MAX_HEADERS + 65536],
            stats: GuestStats::default(),
        }
    }

    /// Sends the SYN.
    pub fn connect(&mut self, now: Instant, backend: &mut impl GuestWire) {
        self.state = State::SynSent;
        backend.send_frame(&self.syn_frame(), now);
        self.timer = Some(now + self.rto);
    }

    /// The SYN of this connection, to send again by hand.
    #[must_use]
    pub fn syn_frame(&self) -> Vec<u8> {
        let mut syn = GuestSeg::syn(self.local.port(), self.remote, self.iss, self.opts.wscale);
        syn.mss = Some(self.opts.mss);
        syn.window = self.syn_window();
        syn.frame(&[])
    }

    /// Answers `syn`, a SYN slipway sent for a host peer on a forwarded
    /// port, with a SYN-ACK.
    #[must_use]
    pub fn accept(
        opts: TcpOpts,
        syn: &TcpView<'_>,
        iss: u32,
        now: Instant,
        backend: &mut impl GuestWire,
    ) -> Self {
        let mut ep = Self::new(opts, syn.dst.port(), syn.src, iss);
        ep.state = State::SynReceived;
        ep.take_peer_syn(syn);
        ep.stats.syns_received += 1;
        ep.send_syn_ack(now, backend);
        ep.timer = Some(now + ep.rto);
        ep
    }

    /// Queues `bytes` to send after what is queued already.
    pub fn send(&mut self, bytes: &[u8]) {
        assert!(!self.closing, "send after close");
        self.data.extend_from_slice(bytes);
    }

    /// Queues `bytes`, taking the buffer when nothing is queued.
    pub fn send_vec(&mut self, bytes: Vec<u8>) {
        assert!(!self.closing, "send after close");
        if self.data.is_empty() {
            self.data = bytes;
        } else {
            self.data.extend_from_slice(&bytes);
        }
        assert!(self.data.len() < 1 << 31, "the stream stays within 2 GiB");
    }

    /// Sends a FIN after everything queued.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Whether `view` belongs to this connection.
    #[must_use]
    pub fn owns(&self, view: &TcpView<'_>) -> bool {
        view.src == self.remote && view.dst == self.local
    }

    /// The connection's state.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// The guest's port.
    #[must_use]
    pub fn local_port(&self) -> u16 {
        self.local.port()
    }

    /// Whether the peer acknowledged every byte queued so far.
    #[must_use]
    pub fn all_acked(&self) -> bool {
        self.state == State::Established && self.snd_una >= self.data.len() as u64
    }

    /// Whether the peer acknowledged our FIN.
    #[must_use]
    pub fn fin_acked(&self) -> bool {
        self.closing && self.snd_una > self.data.len() as u64
    }

    /// Whether the peer's FIN arrived (in order).
    #[must_use]
    pub fn peer_fin(&self) -> bool {
        self.peer_fin
    }

    /// The first received bytes, up to [`TcpOpts::keep`].
    #[must_use]
    pub fn received(&self) -> &[u8] {
        &self.received
    }

    /// How many bytes arrived in order.
    #[must_use]
    pub fn received_len(&self) -> u64 {
        self.received_len
    }

    /// The FNV-1a hash of every byte that arrived in order.
    #[must_use]
    pub fn received_hash(&self) -> u64 {
        self.hash.finish()
    }

    /// What the endpoint saw and did.
    #[must_use]
    pub fn stats(&self) -> &GuestStats {
        &self.stats
    }

    /// The window scale in effect for the peer's window field.
    #[must_use]
    pub fn peer_scale(&self) -> u8 {
        self.peer_scale
    }

    /// When [`on_timer`](Self::on_timer) must run next.
    #[must_use]
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timer
    }

    fn seq_at(&self, offset: u64) -> u32 {
        self.iss.wrapping_add(1).wrapping_add(offset as u32)
    }

    fn peer_seq_at(&self, offset: u64) -> u32 {
        self.irs.wrapping_add(1).wrapping_add(offset as u32)
    }

    fn syn_window(&self) -> u16 {
        u16::try_from(self.opts.window).unwrap_or(u16::MAX)
    }

    fn window_field(&self) -> u16 {
        u16::try_from(self.opts.window >> self.our_scale).unwrap_or(u16::MAX)
    }

    /// Records the right edge of the window a segment about to be sent
    /// advertises.
    fn advertise(&mut self) {
        let edge = self.rcv_nxt + (u64::from(self.window_field()) << self.our_scale);
        self.rcv_edge = self.rcv_edge.max(edge);
    }

    fn take_peer_syn(&mut self, syn: &TcpView<'_>) {
        self.irs = syn.seq;
        self.rcv_nxt = 0;
        self.rcv_edge = u64::from(self.syn_window());
        self.peer_mss = syn.mss.unwrap_or(536);
        (self.scaling, self.peer_scale, self.our_scale) = match (syn.wscale, self.opts.wscale) {
            (Some(peer), Some(ours)) => (true, peer, ours),
            _ => (false, 0, 0),
        };
        // The window of a SYN is never scaled.
        self.peer_wnd = u64::from(syn.window);
    }

    fn send_syn_ack(&mut self, now: Instant, backend: &mut impl GuestWire) {
        let seg = GuestSeg {
            src_port: self.local.port(),
            dst: self.remote,
            seq: self.iss,
            ack: Some(self.peer_seq_at(0)),
            control: TcpControl::Syn,
            window: self.syn_window(),
            mss: Some(self.opts.mss),
            wscale: self.opts.wscale.filter(|_| self.scaling),
        };
        backend.send_frame(seg.write(&mut self.tx, &[]), now);
    }

    /// Takes one segment of this connection.
    pub fn on_segment(&mut self, view: &TcpView<'_>, now: Instant, backend: &mut impl GuestWire) {
        if view.rst {
            self.stats.rsts += 1;
            let exact = match self.state {
                State::SynSent => view.ack == Some(self.iss.wrapping_add(1)),
                _ => view.seq == self.peer_seq_at(self.rcv_nxt),
            };
            if exact {
                self.stats.exact_rsts += 1;
                self.state = State::Reset;
                self.timer = None;
            }
            return;
        }
        match self.state {
            State::Reset => return,
            State::SynSent => return self.on_syn_ack(view, now, backend),
            State::SynReceived => {
                if view.syn {
                    self.stats.syns_received += 1;
                    return self.send_syn_ack(now, backend);
                }
                if view.ack != Some(self.iss.wrapping_add(1)) {
                    return;
                }
                self.state = State::Established;
                self.timer = None;
                self.peer_wnd = u64::from(view.window) << self.peer_scale;
            }
            State::Established => {
                if view.syn {
                    self.stats.syns_received += 1;
                    return self.send_ack(now, backend, false);
                }
            }
        }
        self.on_ack(view, now);
        self.on_data(view, now, backend);
    }

    fn on_syn_ack(&mut self, view: &TcpView<'_>, now: Instant, backend: &mut impl GuestWire) {
        if !(view.syn && view.ack == Some(self.iss.wrapping_add(1))) {
            return;
        }
        self.stats.syns_received += 1;
        self.take_peer_syn(view);
        self.state = State::Established;
        self.timer = None;
        self.rto = self.opts.rto;
        self.send_ack(now, backend, false);
    }

    fn on_ack(&mut self, view: &TcpView<'_>, now: Instant) {
        let Some(ack) = view.ack else { return };
        let offset = u64::from(ack.wrapping_sub(self.iss.wrapping_add(1)));
        if offset >= 1 << 31 {
            // Before our SYN: an old segment.
            return;
        }
        let window = u64::from(view.window) << self.peer_scale;
        if offset > self.snd_max {
            self.stats.bad_acks += 1;
            return;
        }
        if offset > self.snd_una {
            self.snd_una = offset;
            self.snd_nxt = self.snd_nxt.max(offset);
            self.dup_acks = 0;
            self.rto = self.opts.rto;
            if let Some(recover) = self.recover {
                if offset >= recover {
                    self.recover = None;
                } else {
                    // A partial ACK: the next hole is at the new head.
                    self.go_back();
                }
            }
            self.timer = (self.snd_max > self.snd_una).then(|| now + self.rto);
        } else if offset == self.snd_una
            && view.payload.is_empty()
            && !view.fin
            && self.snd_max > self.snd_una
        {
            if window > self.peer_wnd {
                // A window update: slipway dropped what its host socket
                // could not take, so everything in flight is gone.
                self.go_back();
            } else if window == self.peer_wnd {
                self.dup_acks += 1;
                if self.dup_acks == 3 && self.recover.is_none() {
                    self.recover = Some(self.snd_max);
                    self.go_back();
                }
            }
        }
        self.peer_wnd = window;
    }

    fn go_back(&mut self) {
        if self.snd_nxt > self.snd_una {
            self.snd_nxt = self.snd_una;
            self.stats.go_backs += 1;
        }
    }

    fn on_data(&mut self, view: &TcpView<'_>, now: Instant, backend: &mut impl GuestWire) {
        if view.payload.is_empty() && !view.fin {
            return;
        }
        let expected = self.peer_seq_at(self.rcv_nxt);
        let diff = view.seq.wrapping_sub(expected) as i32;
        if diff > 0 {
            self.stats.out_of_order += 1;
            return self.send_ack(now, backend, false);
        }
        let skip = diff.unsigned_abs() as usize;
        let len = view.payload.len();
        if skip > len || (skip == len && (!view.fin || self.peer_fin)) {
            self.stats.dup_segments += 1;
            return self.send_ack(now, backend, false);
        }
        if skip > 0 {
            self.stats.dup_segments += 1;
        }
        let fresh = &view.payload[skip..];
        if !fresh.is_empty() {
            if self.rcv_nxt + fresh.len() as u64 > self.rcv_edge {
                self.stats.window_violations += 1;
            }
            self.hash.update(fresh);
            let room = self.opts.keep.saturating_sub(self.received.len());
            self.received
                .extend_from_slice(&fresh[..fresh.len().min(room)]);
            self.rcv_nxt += fresh.len() as u64;
            self.received_len += fresh.len() as u64;
        }
        let droppable = !view.fin && !fresh.is_empty();
        if view.fin {
            self.peer_fin = true;
            self.rcv_nxt += 1;
        }
        self.send_ack(now, backend, droppable);
    }

    fn send_ack(&mut self, now: Instant, backend: &mut impl GuestWire, droppable: bool) {
        let impair = self.opts.impair;
        if droppable && impair.drop_every_nth_ack > 0 {
            self.data_acks += 1;
            if self.data_acks % u64::from(impair.drop_every_nth_ack) == 0
                && self.stats.acks_dropped < u64::from(impair.max_ack_drops)
            {
                self.stats.acks_dropped += 1;
                return;
            }
        }
        self.advertise();
        let seg = GuestSeg {
            src_port: self.local.port(),
            dst: self.remote,
            seq: self.seq_at(self.snd_nxt),
            ack: Some(self.peer_seq_at(self.rcv_nxt)),
            control: TcpControl::None,
            window: self.window_field(),
            mss: None,
            wscale: None,
        };
        self.stats.acks_sent += 1;
        backend.send_frame(seg.write(&mut self.tx, &[]), now);
    }

    /// Runs the retransmission timer.
    pub fn on_timer(&mut self, now: Instant, backend: &mut impl GuestWire) {
        let Some(at) = self.timer else { return };
        if now < at {
            return;
        }
        self.rto = (self.rto * 2).min(self.opts.max_rto);
        self.timer = Some(now + self.rto);
        match self.state {
            State::SynSent => {
                self.stats.retransmitted += 1;
                backend.send_frame(&self.syn_frame(), now);
            }
            State::SynReceived => {
                self.stats.retransmitted += 1;
                self.send_syn_ack(now, backend);
            }
            State::Established if self.snd_max > self.snd_una => {
                self.recover = None;
                self.dup_acks = 0;
                self.go_back();
            }
            State::Established if self.snd_nxt < self.data.len() as u64 && self.peer_wnd == 0 => {
                self.probe_due = true;
            }
            State::Established | State::Reset => self.timer = None,
        }
    }

    /// Sends what the peer's window allows, up to [`TcpOpts::max_burst`]
    /// segments, and returns how many went out.
    pub fn transmit(&mut self, now: Instant, backend: &mut impl GuestWire) -> usize {
        if self.state != State::Established {
            return 0;
        }
        let end = self.data.len() as u64;
        let mut sent = 0;
        for _ in 0..self.opts.max_burst {
            let window = self.peer_wnd.max(u64::from(self.probe_due));
            let window_end = self.snd_una + window;
            if self.snd_nxt < end {
                if self.snd_nxt >= window_end {
                    break;
                }
                let len = (window_end - self.snd_nxt)
                    .min(end - self.snd_nxt)
                    .min(u64::from(self.peer_mss));
                let fin = self.closing && self.snd_nxt + len == end;
                self.send_data(self.snd_nxt, len as usize, fin, now, backend);
                self.snd_nxt += len + u64::from(fin);
                self.probe_due = false;
            } else if self.closing && self.snd_nxt == end {
                self.send_fin(now, backend);
                self.snd_nxt += 1;
            } else {
                break;
            }
            self.snd_max = self.snd_max.max(self.snd_nxt);
            if self.timer.is_none() {
                self.timer = Some(now + self.rto);
            }
            sent += 1;
        }
        if sent == 0 && self.snd_nxt < end && self.timer.is_none() {
            // The window is shut: probe it later.
            self.timer = Some(now + self.rto);
        }
        if let Some(held) = self.held.take() {
            backend.send_frame(&held, now);
        }
        sent
    }

    fn send_data(
        &mut self,
        offset: u64,
        len: usize,
        fin: bool,
        now: Instant,
        backend: &mut impl GuestWire,
    ) {
        let start = usize::try_from(offset).expect("offset fits");
        let control = if fin {
            TcpControl::Fin
        } else if start + len == self.data.len() {
            TcpControl::Psh
        } else {
            TcpControl::None
        };
        let seg = GuestSeg {
            src_port: self.local.port(),
            dst: self.remote,
            seq: self.seq_at(offset),
            ack: Some(self.peer_seq_at(self.rcv_nxt)),
            control,
            window: self.window_field(),
            mss: None,
            wscale: None,
        };
        self.stats.segments_sent += 1;
        if offset < self.snd_max {
            self.stats.retransmitted += 1;
        }
        if fin && len > 0 {
            self.stats.fin_with_data += 1;
        }
        let impair = self.opts.impair;
        let roll = self.rng.per_mille();
        if roll < impair.loss {
            self.stats.lost += 1;
            return;
        }
        let duplicate = roll < impair.loss + impair.duplicate;
        let reorder = !duplicate
            && self.held.is_none()
            && roll < impair.loss + impair.duplicate + impair.reorder;
        self.advertise();
        let frame = seg.write(&mut self.tx, &self.data[start..start + len]);
        if reorder {
            self.held = Some(frame.to_vec());
            self.stats.reordered += 1;
            return;
        }
        backend.send_frame(frame, now);
        if duplicate {
            backend.send_frame(frame, now);
            self.stats.duplicated += 1;
        }
        if let Some(held) = self.held.take() {
            backend.send_frame(&held, now);
        }
    }

    fn send_fin(&mut self, now: Instant, backend: &mut impl GuestWire) {
        let end = self.data.len() as u64;
        self.stats.segments_sent += 1;
        if end < self.snd_max {
            self.stats.retransmitted += 1;
        }
        self.advertise();
        let seg = GuestSeg {
            src_port: self.local.port(),
            dst: self.remote,
            seq: self.seq_at(end),
            ack: Some(self.peer_seq_at(self.rcv_nxt)),
            control: TcpControl::Fin,
            window: self.window_field(),
            mss: None,
            wscale: None,
        };
        backend.send_frame(seg.write(&mut self.tx, &[]), now);
    }
}
