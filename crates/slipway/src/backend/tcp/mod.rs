//! TCP flows: guest segments and host readiness into each flow's driver,
//! segments for the guest built in place with their payload peeked
//! straight from the host socket; the backend keeps only its own
//! bookkeeping (the flow's epoll token, the transmit and TIME-WAIT lists,
//! the half-open count, the counters).

mod time_wait;
mod wire;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::BorrowedFd;
use std::time::Instant;

use epoll_dispatch::{Poller, Token};
use flow_table::tcp::{Phase, Segment, rst_for_unknown};
use flow_table::{FlowId, FlowKey, InsertError, Protocol};
use nat_core::Verdict;
use relay_tcp::{HostSocket, Registration, SocketReadiness, TcpFlowDriver};

use self::wire::{GuestSegment, guest_segment, write_next_segment, write_rst};
use super::{Backend, Flow, KIND_TCP_FLOW};
use crate::fdlimit::is_fd_exhaustion;
use frontdesk::{ChecksumFill, TcpOptions, TcpSegment, tcp_headers_len};

/// The most payload of one segment to the guest when its frontend cuts
/// segments to the MSS (GSO): what fits an IPv4 total length behind IPv4 and
/// TCP headers without options.
const GSO_SEGMENT_LIMIT: u16 = u16::MAX - 40;

/// One TCP flow: its driver, and where the backend lists it.
#[derive(Debug)]
pub(crate) struct TcpFlow {
    driver: TcpFlowDriver,
    /// Queued in `tx_ready`.
    in_tx: bool,
    /// Listed in `time_wait`.
    in_time_wait: bool,
    /// Counted in the backend's half-open flows.
    half_open: bool,
    span: tracing::Span,
}

/// Guest-opened TCP flows now half-open, and their cap: a SYN backlog.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HalfOpen {
    count: u32,
    cap: u32,
}

impl HalfOpen {
    pub(crate) fn new(cap: u32) -> HalfOpen {
        HalfOpen { count: 0, cap }
    }

    fn is_full(self) -> bool {
        self.count >= self.cap
    }

    /// Counts a flow whose phase is now `phase` in or out; `counted` is
    /// whether it is counted, kept with the flow.
    fn follow(&mut self, counted: &mut bool, phase: Phase) {
        let half_open = is_half_open(phase);
        if half_open != *counted {
            *counted = half_open;
            self.count = if half_open {
                self.count.saturating_add(1)
            } else {
                self.count.saturating_sub(1)
            };
        }
    }

    /// Counts out a flow that goes.
    fn release(&mut self, counted: bool) {
        if counted {
            self.count = self.count.saturating_sub(1);
        }
    }
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

/// Carries out a flow driver's registration `change` on `poller`, under
/// the flow's `token` (none: the flow cannot have one, and stays out).
fn register(
    poller: &Poller,
    token: Option<Token>,
    fd: BorrowedFd<'_>,
    change: Registration,
) -> io::Result<()> {
    let Some(token) = token else {
        return Ok(());
    };
    match change {
        Registration::Add(interest) => poller.register(fd, token, interest),
        Registration::Modify(interest) => poller.modify(fd, token, interest),
    }
}

impl Backend {
    /// A TCP segment from the guest.
    pub(crate) fn tcp_from_guest(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        segment: &TcpSegment<'_>,
        now: Instant,
    ) {
        let Some(gs) = guest_segment(segment) else {
            tracing::debug!(%src, %dst, "unparsable TCP segment dropped");
            return;
        };
        let Some(key) = FlowKey::new(
            Protocol::Tcp,
            SocketAddr::new(src, gs.src_port),
            SocketAddr::new(dst, gs.dst_port),
        ) else {
            return;
        };
        let is_syn = gs.seg.flags.syn && gs.seg.ack.is_none() && !gs.seg.flags.rst;
        if is_syn {
            // A new connection on the 4-tuple of one lingering in
            // TIME-WAIT takes over from it (RFC 6191).
            self.end_time_wait(&key);
        }
        if let Some(id) = self.flows.lookup(&key) {
            if let Some(Flow::Tcp(flow)) = self.flows.get_mut(id) {
                let _entered = flow.span.clone().entered();
                flow.driver.handle_guest_segment(now, &gs.seg, gs.payload);
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
        let group = match (key.guest_addr(), key.dest_addr()) {
            (IpAddr::V4(guest), IpAddr::V4(dest)) => self.to_or_from_a_group(guest, dest),
            (IpAddr::V6(guest), IpAddr::V6(dest)) => {
                dest.is_multicast() || guest.is_multicast() || guest.is_unspecified()
            }
            _ => true,
        };
        if group {
            self.counters.tcp_group_drops += 1;
            tracing::debug!(%key, "segment to or from a group address dropped without an RST");
            return;
        }
        self.counters.rst_unknown += 1;
        let link = self.frontdesk.link_to_guest();
        let key = *key;
        self.queue_built(96, |buf| write_rst(buf, link, &key, &rst));
    }

    /// Where the guest's new flow `key` goes on the host, if anywhere.
    fn tcp_target(&mut self, key: &FlowKey) -> Option<SocketAddr> {
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
        }
    }

    fn tcp_open(&mut self, key: FlowKey, gs: &GuestSegment<'_>, now: Instant) {
        let Some(target) = self.tcp_target(&key) else {
            return self.tcp_reject(&key, &gs.seg, gs.payload.len());
        };
        if self.tcp_half_open.is_full() {
            // A full SYN backlog: dropped without an answer, as Linux drops
            // a SYN when its SYN queue is full (without syncookies). The
            // guest retransmits its SYN and gets in once a half-open flow
            // completes or times out, where an RST would fail a connection
            // to a port that is open.
            self.counters.syn_backlog_drops += 1;
            tracing::debug!(%key, half_open = self.tcp_half_open.count, "SYN dropped: backlog full");
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
        let config = self.tcp_config_for(&key);
        let flow = TcpFlowDriver::for_guest_syn(&gs.seg, isn, config, sock, now);
        self.tcp_insert(key, flow, now);
        self.counters.tcp_flows_opened += 1;
    }

    /// The TCP configuration of flow `key`: the MSS the guest is offered
    /// leaves room for its family's header.
    fn tcp_config_for(&self, key: &FlowKey) -> flow_table::tcp::TcpConfig {
        if key.guest().is_ipv4() {
            self.tcp_config_v4
        } else {
            self.tcp_config_v6
        }
    }

    fn tcp_insert(&mut self, key: FlowKey, driver: TcpFlowDriver, now: Instant) {
        let span = tracing::debug_span!("tcp", flow = tracing::field::Empty, %key);
        let flow = TcpFlow {
            driver,
            in_tx: false,
            in_time_wait: false,
            half_open: false,
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
            let Some((guest, seen_from)) =
                self.inbound_ends(nat_core::Protocol::Tcp, host_port, peer)
            else {
                let _ = sock.reset();
                continue;
            };
            let Some(key) = FlowKey::new(Protocol::Tcp, guest, seen_from) else {
                let _ = sock.reset();
                continue;
            };
            // The host peer reuses its port as soon as its own TIME-WAIT
            // allows (or at once, with `tcp_tw_reuse`); the entry slipway
            // keeps for the guest side must not refuse it.
            self.end_time_wait(&key);
            if self.flows.lookup(&key).is_some() || !self.tcp_room() {
                self.counters.flow_limit_drops += 1;
                let _ = sock.reset();
                continue;
            }
            let isn = self.isn.isn(key.guest(), key.dest(), now);
            let config = self.tcp_config_for(&key);
            let flow = TcpFlowDriver::for_host_accept(isn, config, sock, now);
            self.tcp_insert(key, flow, now);
            self.counters.tcp_flows_accepted += 1;
        }
    }

    /// Host readiness of a TCP flow's socket.
    pub(crate) fn tcp_readiness(&mut self, id: FlowId, readiness: SocketReadiness, now: Instant) {
        if let Some(Flow::Tcp(flow)) = self.flows.get_mut(id) {
            let _entered = flow.span.clone().entered();
            let done = flow.driver.handle_readiness(readiness, now);
            if let Some(failure) = done.failure {
                tracing::debug!(%failure, "host socket failed");
            }
        }
        self.tcp_after(id, now);
    }

    /// A TCP flow's deadline passed.
    pub(crate) fn tcp_timeout(&mut self, id: FlowId, now: Instant) {
        if let Some(Flow::Tcp(flow)) = self.flows.get_mut(id) {
            flow.driver.handle_timeout(now);
        }
        self.tcp_after(id, now);
    }

    /// After anything happened to a flow: step its driver (socket
    /// operations, epoll interest), count what moved, re-arm its deadline,
    /// queue its output.
    fn tcp_after(&mut self, id: FlowId, now: Instant) {
        let Some(Flow::Tcp(flow)) = self.flows.get_mut(id) else {
            return;
        };
        let _entered = flow.span.clone().entered();
        let (poller, token) = (&self.poller, token_of(id));
        let step = flow
            .driver
            .step(now, |fd, change| register(poller, token, fd, change));
        self.counters.tcp_bytes_to_host += step.bytes_to_host;
        self.counters.tcp_bytes_to_guest += step.bytes_to_guest;
        self.tcp_half_open.follow(&mut flow.half_open, step.phase);
        if !flow.in_tx {
            flow.in_tx = true;
            self.tx_ready.push_back(id);
        }
        self.flows.set_deadline(id, step.deadline);
        self.follow_time_wait(id, step.phase);
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
        let driver = &mut flow.driver;
        driver.set_gso_limit(gso.then_some(GSO_SEGMENT_LIMIT));
        // Segments are sized to the caller's buffer, never cut to it.
        let room = buf
            .len()
            .saturating_sub(tcp_headers_len(key.dest(), TcpOptions::default()));
        driver.set_payload_limit(Some(u16::try_from(room).unwrap_or(u16::MAX)));
        let len = write_next_segment(driver, buf, (link, fill), &key, now).map(|(len, payload)| {
            let mss = driver.guest_mss();
            (len, (payload > usize::from(mss)).then_some(mss))
        });
        // Sending arms timers (retransmission after the first segment in
        // flight, the FIN's): the table's deadline must follow, or a lost
        // ACK is never retransmitted.
        let deadline = driver.poll_timeout();
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
                (flow.driver.is_closed(), flow.half_open)
            }
            Some(Flow::Udp(_) | Flow::Icmp(_)) | None => (false, false),
        };
        if closed {
            self.tcp_half_open.release(half_open);
            self.flows.remove(id);
            self.counters.tcp_flows_closed += 1;
        }
    }

    /// Open TCP flows counted by phase (RFC 9293 names), for observers.
    #[must_use]
    pub fn tcp_flows_by_phase(&self) -> Vec<(Phase, u32)> {
        let mut counts: Vec<(Phase, u32)> = Vec::new();
        for (_, _, flow) in self.flows.iter() {
            let Flow::Tcp(flow) = flow else {
                continue;
            };
            let phase = flow.driver.phase();
            match counts.iter_mut().find(|(p, _)| *p == phase) {
                Some((_, n)) => *n += 1,
                None => counts.push((phase, 1)),
            }
        }
        counts
    }
}
