//! TCP flows: guest segments into the state machine, host readiness into
//! the relay, segments for the guest built in place with their payload
//! peeked straight from the host socket.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use epoll_dispatch::Token;
use flow_table::tcp::{
    Event, Flags, Phase, Segment, SeqNum, TcpConfig, TcpConn, TcpStats, Transmit, rst_for_unknown,
};
use flow_table::{FlowId, FlowKey, InsertError, Protocol};
use nat_core::Verdict;
use relay_tcp::{HostSocket, SocketReadiness};
use smoltcp::wire::TcpPacket;

use super::{Backend, Flow, KIND_TCP_FLOW};
use crate::fdlimit::is_fd_exhaustion;
use frontdesk::{
    ChecksumFill, LinkAddrs, TcpFlags, TcpOptions, TcpSegmentV4, tcp_v4_headers_len,
    write_tcp_v4_headers, write_tcp_v4_headers_with,
};

/// The most payload of one segment to the guest when its frontend cuts
/// segments to the MSS (GSO): what fits an IPv4 total length behind IPv4 and
/// TCP headers without options.
const GSO_SEGMENT_LIMIT: u16 = u16::MAX - 40;

/// One TCP flow: the state machine and its host socket.
#[derive(Debug)]
pub(crate) struct TcpFlow {
    conn: TcpConn,
    sock: HostSocket,
    /// The interest the socket is registered with, if it is.
    interest: Option<epoll_dispatch::Interest>,
    /// Queued in `tx_ready`.
    in_tx: bool,
    /// Listed in `time_wait`.
    in_time_wait: bool,
    /// Counted in the backend's half-open flows.
    half_open: bool,
    /// Stats already added to the backend's counters.
    reported: TcpStats,
    span: tracing::Span,
}

/// A parsed guest segment: the state machine's header and the payload.
struct GuestSegment<'a> {
    seg: Segment,
    payload: &'a [u8],
    src_port: u16,
    dst_port: u16,
}

/// Reads a guest segment the front desk has checked (length, checksum).
///
/// The header is taken as smoltcp's `TcpRepr::parse` takes it (ports
/// present, at most one of SYN, FIN and RST), but the options are read as
/// Linux reads them, since a guest is most often Linux and expects its
/// peer to agree: see [`parse_options`].
fn parse_segment(bytes: &[u8]) -> Option<GuestSegment<'_>> {
    let packet = TcpPacket::new_checked(bytes).ok()?;
    if packet.src_port() == 0 || packet.dst_port() == 0 {
        return None;
    }
    let (syn, fin, rst) = (packet.syn(), packet.fin(), packet.rst());
    if u8::from(syn) + u8::from(fin) + u8::from(rst) > 1 {
        return None;
    }
    let flags = Flags {
        syn,
        fin,
        rst,
        psh: packet.psh() && !(syn || fin || rst),
    };
    let seq = SeqNum::new(u32::from_ne_bytes(packet.seq_number().0.to_ne_bytes()));
    let ack = packet
        .ack()
        .then(|| SeqNum::new(u32::from_ne_bytes(packet.ack_number().0.to_ne_bytes())));
    let options = parse_options(packet.options(), syn);
    Some(GuestSegment {
        seg: Segment {
            seq,
            ack,
            flags,
            window: packet.window_len(),
            mss: options.mss,
            window_scale: options.window_scale,
        },
        payload: packet.payload(),
        src_port: packet.src_port(),
        dst_port: packet.dst_port(),
    })
}

/// The options of a guest segment the state machine uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct GuestOptions {
    mss: Option<u16>,
    window_scale: Option<u8>,
}

/// Reads TCP options as Linux's `tcp_parse_options` does: an option whose
/// length is below 2 or runs past the header ends the parsing, and the
/// options before it still count; the segment itself is kept. MSS (length
/// 4, not 0) and window scale (length 3, shift at most 14) count on a SYN
/// only; options of other lengths are skipped.
fn parse_options(mut options: &[u8], syn: bool) -> GuestOptions {
    const END: u8 = 0;
    const NOP: u8 = 1;
    const MSS: u8 = 2;
    const WINDOW_SCALE: u8 = 3;
    let mut found = GuestOptions::default();
    // Bounded: every turn takes at least one byte off the options.
    while let Some((&kind, rest)) = options.split_first() {
        match kind {
            END => break,
            NOP => options = rest,
            _ => {
                let Some(&len) = rest.first() else { break };
                let len = usize::from(len);
                if len < 2 || len > options.len() {
                    break;
                }
                match (kind, &options[2..len]) {
                    (MSS, &[hi, lo]) if syn && u16::from_be_bytes([hi, lo]) != 0 => {
                        found.mss = Some(u16::from_be_bytes([hi, lo]));
                    }
                    (WINDOW_SCALE, &[shift]) if syn => {
                        found.window_scale = Some(shift.min(TcpConfig::MAX_WINDOW_SCALE));
                    }
                    _ => {}
                }
                options = &options[len..];
            }
        }
    }
    found
}

/// Whether a flow in `phase` is half-open in the sense of a SYN backlog:
/// the guest's SYN is taken, its handshake not complete, a host socket held.
fn is_half_open(phase: Phase) -> bool {
    match phase {
        Phase::Connecting | Phase::SynReceived => true,
        Phase::SynSent
        | Phase::Established
        | Phase::CloseWait
        | Phase::FinWait
        | Phase::Closing
        | Phase::TimeWait
        | Phase::Closed => false,
    }
}

fn token_of(id: FlowId) -> Option<Token> {
    Token::new(KIND_TCP_FLOW, id.index(), id.generation())
}

fn v4_of(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(v4) => Some(v4),
        SocketAddr::V6(_) => None,
    }
}

/// Writes a segment for the guest into `buf`: payload first (peeked into
/// its place), then the headers in front of it.
fn write_segment(
    buf: &mut [u8],
    (link, fill): (LinkAddrs, ChecksumFill),
    key: &FlowKey,
    t: &Transmit,
    sock: &mut HostSocket,
) -> Result<Option<(usize, usize)>, std::io::Error> {
    let (Some(src), Some(dst)) = (v4_of(key.dest()), v4_of(key.guest())) else {
        return Ok(None);
    };
    let options = TcpOptions {
        mss: t.mss,
        window_scale: t.window_scale,
    };
    let headers = tcp_v4_headers_len(options);
    let Some(payload_area) = buf.get_mut(headers..) else {
        return Ok(None);
    };
    let payload_len = relay_tcp::fill_transmit_payload(sock, t, payload_area)?;
    let mut flags = TcpFlags::NONE;
    for (on, flag) in [
        (t.flags.syn, TcpFlags::SYN),
        (t.flags.fin, TcpFlags::FIN),
        (t.flags.rst, TcpFlags::RST),
        (t.flags.psh, TcpFlags::PSH),
        (t.ack.is_some(), TcpFlags::ACK),
    ] {
        if on {
            flags = flags | flag;
        }
    }
    let segment = TcpSegmentV4 {
        link,
        src,
        dst,
        seq: t.seq.get(),
        ack: t.ack.map_or(0, SeqNum::get),
        flags,
        window: t.window,
        options,
    };
    Ok(write_tcp_v4_headers_with(buf, &segment, payload_len, fill).map(|len| (len, payload_len)))
}

impl Backend {
    /// A TCP segment from the guest.
    pub(crate) fn tcp_from_guest(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        bytes: &[u8],
        now: Instant,
    ) {
        let Some(gs) = parse_segment(bytes) else {
            tracing::debug!(%src, %dst, "unparsable TCP segment dropped");
            return;
        };
        let key = FlowKey::v4(
            Protocol::Tcp,
            SocketAddrV4::new(src, gs.src_port),
            SocketAddrV4::new(dst, gs.dst_port),
        );
        let is_syn = gs.seg.flags.syn && gs.seg.ack.is_none() && !gs.seg.flags.rst;
        if is_syn {
            // A new connection on the 4-tuple of one lingering in
            // TIME-WAIT takes over from it (RFC 6191).
            self.end_time_wait(&key);
        }
        if let Some(id) = self.flows.lookup(&key) {
            if let Some(Flow::Tcp(flow)) = self.flows.get_mut(id) {
                let _entered = flow.span.clone().entered();
                flow.conn
                    .handle_guest_segment(now, &gs.seg, gs.payload, &mut flow.sock);
            }
            self.tcp_after(id, now);
            return;
        }
        if is_syn {
            self.tcp_open(key, &gs, now);
        } else {
            self.tcp_reject(&key, &gs.seg, gs.payload.len());
        }
    }

    /// Answers a segment that opens no flow with an RST (RFC 9293 §3.10.7.1).
    /// Nothing answers a segment to or from a group address.
    fn tcp_reject(&mut self, key: &FlowKey, seg: &Segment, payload_len: usize) {
        let Some(rst) = rst_for_unknown(seg, payload_len) else {
            return;
        };
        if let (SocketAddr::V4(guest), SocketAddr::V4(dest)) = (key.guest(), key.dest())
            && self.to_or_from_a_group(*guest.ip(), *dest.ip())
        {
            self.counters.tcp_group_drops += 1;
            tracing::debug!(%key, "segment to or from a group address dropped without an RST");
            return;
        }
        self.counters.rst_unknown += 1;
        let link = self.frontdesk.link_to_guest();
        let key = *key;
        self.queue_built(64, |buf| {
            let mut none = None::<HostSocket>;
            write_segment_without_socket(buf, link, &key, &rst, &mut none)
        });
    }

    fn tcp_open(&mut self, key: FlowKey, gs: &GuestSegment<'_>, now: Instant) {
        let target =
            match self
                .nat
                .translate_outbound(nat_core::Protocol::Tcp, key.guest_addr(), key.dest())
            {
                Verdict::Connect(addr) => Some(addr),
                Verdict::ForwardDns(upstream) => self.dns_target(upstream),
                Verdict::AnswerLocally(_) => None,
                Verdict::Deny(reason) => {
                    self.counters.denied += 1;
                    tracing::debug!(%key, %reason, "TCP flow denied");
                    None
                }
            };
        let Some(target) = target else {
            return self.tcp_reject(&key, &gs.seg, gs.payload.len());
        };
        if self.tcp_half_open.0 >= self.tcp_half_open.1 {
            // A full SYN backlog: dropped without an answer, as Linux drops
            // a SYN when its SYN queue is full (without syncookies). The
            // guest retransmits its SYN and gets in once a half-open flow
            // completes or times out, where an RST would fail a connection
            // to a port that is open.
            self.counters.syn_backlog_drops += 1;
            tracing::debug!(%key, half_open = self.tcp_half_open.0, "SYN dropped: backlog full");
            return;
        }
        if !self.syn_bucket.try_take(now) {
            // Dropped silently: the guest retransmits its SYN later.
            self.counters.syn_rate_drops += 1;
            return;
        }
        if !self.tcp_room() {
            self.counters.flow_limit_drops += 1;
            return self.tcp_reject(&key, &gs.seg, gs.payload.len());
        }
        let sock = match HostSocket::connect(target) {
            Ok(sock) => sock,
            Err(error) => {
                if is_fd_exhaustion(&error) {
                    self.counters.fd_refusals += 1;
                }
                tracing::debug!(%key, %target, %error, "connect failed at once");
                return self.tcp_reject(&key, &gs.seg, gs.payload.len());
            }
        };
        let isn = self.isn.isn(key.guest(), key.dest(), now);
        let conn = TcpConn::from_guest_syn(&gs.seg, isn, self.tcp_config_v4, now);
        self.tcp_insert(key, conn, sock, now);
        self.counters.tcp_flows_opened += 1;
    }

    fn tcp_insert(&mut self, key: FlowKey, conn: TcpConn, sock: HostSocket, now: Instant) {
        let span = tracing::debug_span!("tcp", flow = tracing::field::Empty, %key);
        let flow = TcpFlow {
            conn,
            sock,
            interest: None,
            in_tx: false,
            in_time_wait: false,
            half_open: false,
            reported: TcpStats::default(),
            span,
        };
        match self.flows.insert(key, Flow::Tcp(Box::new(flow))) {
            Ok(id) => {
                if let Some(Flow::Tcp(flow)) = self.flows.get_mut(id) {
                    flow.span.record("flow", tracing::field::display(id));
                }
                self.tcp_after(id, now);
            }
            Err(InsertError::Exists(_)) => {}
            Err(InsertError::CapacityReached(_) | InsertError::IndicesExhausted) => {
                self.counters.flow_limit_drops += 1;
            }
        }
    }

    /// Accepts the connections waiting on forwarded listener `index`.
    pub(crate) fn tcp_accept(&mut self, index: usize, now: Instant) {
        for _ in 0..64 {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            let host_port = listener.local_addr().port();
            let (mut sock, peer) = match listener.accept() {
                Ok(Some(accepted)) => accepted,
                Ok(None) => return,
                Err(error) => {
                    // The connection stays queued and the listener readable:
                    // out of descriptors (EMFILE), accepting again at once
                    // fails again, so the listener rests first.
                    tracing::debug!(%error, "accept failed; listener paused");
                    self.pause_listener(index, now);
                    return;
                }
            };
            self.listener_accepted(index);
            let family = nat_core::IpFamily::V4;
            let guest =
                self.nat
                    .translate_inbound(nat_core::Protocol::Tcp, family, host_port, None);
            let (Some(SocketAddr::V4(guest)), Some(seen_from)) =
                (guest, self.guest_view_of_peer(peer))
            else {
                let _ = sock.reset();
                continue;
            };
            let key = FlowKey::v4(Protocol::Tcp, guest, seen_from);
            // The host peer reuses its port as soon as its own TIME-WAIT
            // allows (or at once, with `tcp_tw_reuse`); the entry slipway
            // keeps for the guest side must not refuse it.
            self.end_time_wait(&key);
            if self.flows.lookup(&key).is_some() || !self.tcp_room() {
                self.counters.flow_limit_drops += 1;
                let _ = sock.reset();
                continue;
            }
            let space = sock.send_space().unwrap_or(0);
            let isn = self.isn.isn(key.guest(), key.dest(), now);
            let conn = TcpConn::from_host_accept(isn, space, self.tcp_config_v4, now);
            self.tcp_insert(key, conn, sock, now);
            self.counters.tcp_flows_accepted += 1;
        }
    }

    /// True when one more TCP flow fits, after reclaiming the oldest flow
    /// in TIME-WAIT if the limit is reached (RFC 6191 lets a new connection
    /// take over from TIME-WAIT; here the old one's socket is closed
    /// already and only its entry lingers).
    fn tcp_room(&mut self) -> bool {
        let limit = self.flows.limits().tcp;
        // Bounded: each turn removes a listed id.
        while self.flows.count(Protocol::Tcp) >= limit {
            let Some(id) = self.time_wait.pop_front() else {
                return false;
            };
            self.remove_if_time_wait(id);
        }
        true
    }

    /// Removes the flow of `key` if it only lingers in TIME-WAIT: its
    /// socket is closed already, and a new connection on the same 4-tuple
    /// replaces it. The guest side accepts that: slipway lingers only when
    /// it closed first, so the guest has forgotten the old connection.
    fn end_time_wait(&mut self, key: &FlowKey) {
        if let Some(id) = self.flows.lookup(key) {
            self.remove_if_time_wait(id);
        }
    }

    /// Removes flow `id` if it is a TCP flow lingering in TIME-WAIT.
    fn remove_if_time_wait(&mut self, id: FlowId) {
        let lingering = matches!(
            self.flows.get(id),
            Some(Flow::Tcp(flow)) if flow.conn.phase() == flow_table::tcp::Phase::TimeWait
        );
        if lingering && self.flows.remove(id).is_some() {
            self.counters.tcp_flows_closed += 1;
            self.counters.time_wait_reclaimed += 1;
        }
    }

    /// Drops ids of flows that left TIME-WAIT from the front of the list:
    /// every flow lingers equally long, so the oldest leave first and the
    /// list stays about as long as the flows really lingering.
    fn prune_time_wait(&mut self) {
        while let Some(&id) = self.time_wait.front() {
            let lingering = matches!(
                self.flows.get(id),
                Some(Flow::Tcp(flow)) if flow.conn.phase() == flow_table::tcp::Phase::TimeWait
            );
            if lingering {
                break;
            }
            self.time_wait.pop_front();
        }
    }

    /// Host readiness of a TCP flow's socket.
    pub(crate) fn tcp_readiness(&mut self, id: FlowId, readiness: SocketReadiness, now: Instant) {
        if let Some(Flow::Tcp(flow)) = self.flows.get_mut(id) {
            let _entered = flow.span.clone().entered();
            let done = relay_tcp::on_readiness(&mut flow.conn, &mut flow.sock, readiness, now);
            if let Some(failure) = done.failure {
                tracing::debug!(%failure, "host socket failed");
            }
        }
        self.tcp_after(id, now);
    }

    /// A TCP flow's deadline passed.
    pub(crate) fn tcp_timeout(&mut self, id: FlowId, now: Instant) {
        if let Some(Flow::Tcp(flow)) = self.flows.get_mut(id) {
            flow.conn.handle_timeout(now);
        }
        self.tcp_after(id, now);
    }

    /// After anything happened to a flow: carry out its socket operations,
    /// narrow its epoll interest, re-arm its deadline, queue its output.
    fn tcp_after(&mut self, id: FlowId, now: Instant) {
        let Some(Flow::Tcp(flow)) = self.flows.get_mut(id) else {
            return;
        };
        let _entered = flow.span.clone().entered();
        let done = relay_tcp::run_socket_ops(&mut flow.conn, &mut flow.sock, now);
        if let Some(failure) = done.failure {
            tracing::debug!(%failure, "host socket failed");
        }
        while let Some(event) = flow.conn.poll_event() {
            match event {
                Event::PhaseChanged { from, to } => {
                    tracing::debug!(?from, ?to, "phase");
                }
                Event::Closed(reason) => tracing::debug!(?reason, "closed"),
            }
        }
        let half_open = is_half_open(flow.conn.phase());
        if half_open != flow.half_open {
            flow.half_open = half_open;
            let count = &mut self.tcp_half_open.0;
            *count = if half_open {
                count.saturating_add(1)
            } else {
                count.saturating_sub(1)
            };
        }
        let stats = *flow.conn.stats();
        self.counters.tcp_bytes_to_host += stats.bytes_to_host - flow.reported.bytes_to_host;
        self.counters.tcp_bytes_to_guest += stats.bytes_to_guest - flow.reported.bytes_to_guest;
        flow.reported = stats;
        let wanted = relay_tcp::epoll_interest(&flow.conn);
        if let (Some(fd), Some(token)) = (flow.sock.fd(), token_of(id)) {
            let result = match flow.interest {
                None => self.poller.register(fd, token, wanted),
                Some(current) if current != wanted => self.poller.modify(fd, token, wanted),
                Some(_) => Ok(()),
            };
            match result {
                Ok(()) => flow.interest = Some(wanted),
                Err(error) => {
                    tracing::warn!(%error, "epoll registration failed");
                    flow.conn.handle_host_error(now);
                }
            }
        } else {
            flow.interest = None;
        }
        if !flow.in_time_wait && flow.conn.phase() == flow_table::tcp::Phase::TimeWait {
            flow.in_time_wait = true;
            self.time_wait.push_back(id);
        }
        let deadline = flow.conn.poll_timeout();
        if !flow.in_tx {
            flow.in_tx = true;
            self.tx_ready.push_back(id);
        }
        self.flows.set_deadline(id, deadline);
        self.prune_time_wait();
    }

    /// The next frame of flow `id` for the guest, if it has one.
    ///
    /// With `gso`, a data segment may carry more than the guest's MSS;
    /// then the MSS to cut it to comes with the length.
    pub(crate) fn tcp_poll_frame(
        &mut self,
        id: FlowId,
        buf: &mut [u8],
        (fill, gso): (ChecksumFill, bool),
        now: Instant,
    ) -> Option<(usize, Option<u16>)> {
        let link = self.frontdesk.link_to_guest();
        let key = *self.flows.key(id)?;
        let Some(Flow::Tcp(flow)) = self.flows.get_mut(id) else {
            return None;
        };
        flow.conn.set_gso_limit(gso.then_some(GSO_SEGMENT_LIMIT));
        // Segments are sized to the caller's buffer, never cut to it.
        let room = buf
            .len()
            .saturating_sub(tcp_v4_headers_len(TcpOptions::default()));
        flow.conn
            .set_payload_limit(Some(u16::try_from(room).unwrap_or(u16::MAX)));
        let len = next_segment(flow, buf, (link, fill), &key, now).map(|(len, payload)| {
            let mss = flow.conn.guest_mss();
            (len, (payload > usize::from(mss)).then_some(mss))
        });
        // Sending arms timers (retransmission after the first segment in
        // flight, the FIN's): the table's deadline must follow, or a lost
        // ACK is never retransmitted.
        let deadline = flow.conn.poll_timeout();
        if self.flows.deadline(id) != deadline {
            self.flows.set_deadline(id, deadline);
        }
        len
    }

    /// Removes flow `id` once it is closed and has sent everything; else
    /// takes it off the transmit queue.
    pub(crate) fn tcp_reap(&mut self, id: FlowId) {
        let (closed, half_open) = match self.flows.get_mut(id) {
            Some(Flow::Tcp(flow)) => {
                flow.in_tx = false;
                (flow.conn.is_closed(), flow.half_open)
            }
            Some(Flow::Udp(_) | Flow::Icmp(_)) | None => (false, false),
        };
        if closed {
            if half_open {
                self.tcp_half_open.0 = self.tcp_half_open.0.saturating_sub(1);
            }
            self.flows.remove(id);
            self.counters.tcp_flows_closed += 1;
        }
    }
}

/// Writes the next segment of `flow` into `buf`, if one is due.
fn next_segment(
    flow: &mut TcpFlow,
    buf: &mut [u8],
    link: (LinkAddrs, ChecksumFill),
    key: &FlowKey,
    now: Instant,
) -> Option<(usize, usize)> {
    // Bounded: a failed peek ends the flow, whose RST is the next try.
    for _ in 0..2 {
        let t = flow.conn.poll_transmit(now)?;
        match write_segment(buf, link, key, &t, &mut flow.sock) {
            Ok(Some(written)) => return Some(written),
            Ok(None) => return None,
            Err(error) => {
                tracing::debug!(%key, %error, "peek failed");
                flow.conn.handle_host_error(now);
                let _ = relay_tcp::run_socket_ops(&mut flow.conn, &mut flow.sock, now);
            }
        }
    }
    None
}

/// [`write_segment`] for segments that carry no payload and belong to no
/// socket (RSTs for unknown flows).
fn write_segment_without_socket(
    buf: &mut [u8],
    link: LinkAddrs,
    key: &FlowKey,
    t: &Transmit,
    _none: &mut Option<HostSocket>,
) -> Option<usize> {
    let (src, dst) = (v4_of(key.dest())?, v4_of(key.guest())?);
    let mut flags = TcpFlags::RST;
    if t.ack.is_some() {
        flags = flags | TcpFlags::ACK;
    }
    let segment = TcpSegmentV4 {
        link,
        src,
        dst,
        seq: t.seq.get(),
        ack: t.ack.map_or(0, SeqNum::get),
        flags,
        window: 0,
        options: TcpOptions::default(),
    };
    write_tcp_v4_headers(buf, &segment, 0)
}

impl Backend {
    /// Open TCP flows counted by phase (RFC 9293 names), for observers.
    #[must_use]
    pub fn tcp_flows_by_phase(&self) -> Vec<(flow_table::tcp::Phase, u32)> {
        let mut counts: Vec<(flow_table::tcp::Phase, u32)> = Vec::new();
        for (_, _, flow) in self.flows.iter() {
            let Flow::Tcp(flow) = flow else {
                continue;
            };
            let phase = flow.conn.phase();
            match counts.iter_mut().find(|(p, _)| *p == phase) {
                Some((_, n)) => *n += 1,
                None => counts.push((phase, 1)),
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::{GuestOptions, parse_options};

    fn found(mss: Option<u16>, window_scale: Option<u8>) -> GuestOptions {
        GuestOptions { mss, window_scale }
    }

    #[test]
    fn options_before_a_bad_length_count_and_parsing_stops_there() {
        // MSS, then a zero-length option, then a window scale never read.
        let options = [2, 4, 0x05, 0xb4, 8, 0, 3, 3, 7];
        assert_eq!(parse_options(&options, true), found(Some(1460), None));
        // Length 1 and a length past the end stop alike.
        assert_eq!(parse_options(&[3, 3, 7, 8, 1], true), found(None, Some(7)));
        assert_eq!(
            parse_options(&[1, 3, 3, 9, 8, 40], true),
            found(None, Some(9))
        );
        // A kind with no length byte left.
        assert_eq!(parse_options(&[1, 1, 5], true), found(None, None));
    }

    #[test]
    fn mss_and_window_scale_count_on_syn_only_with_their_lengths() {
        let options = [2, 4, 0x05, 0xb4, 1, 3, 3, 20, 0];
        assert_eq!(parse_options(&options, true), found(Some(1460), Some(14)));
        assert_eq!(parse_options(&options, false), found(None, None));
        // Wrong lengths and MSS 0 are skipped; what follows still counts.
        let odd = [2, 3, 9, 2, 4, 0, 0, 3, 4, 7, 0, 2, 4, 0x02, 0x18];
        assert_eq!(parse_options(&odd, true), found(Some(536), None));
    }
}
