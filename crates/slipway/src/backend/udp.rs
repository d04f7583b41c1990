//! UDP flows and inbound UDP forwards: datagrams from the guest to
//! connected host sockets, and host datagrams received straight into the
//! payload area of frames for the guest.

use std::net::SocketAddr;
use std::time::Instant;

use epoll_dispatch::{Interest, Readiness, Token};
use flow_table::{DatagramFlowState, FlowId, FlowKey, InsertError, Protocol};
use nat_core::Verdict;
use relay_udp_icmp::{SendOutcome, UdpFlowSocket};

use super::guest_error::{Quote, Quoted, Unreachable};
use super::{Backend, Flow, KIND_UDP_FLOW};
use crate::fdlimit::is_fd_exhaustion;
use frontdesk::{ChecksumFill, udp_headers_len, write_udp_headers_with};

/// Error-queue reports one readiness event reads at most; more wait for
/// the next event (the socket stays ready while any are queued).
pub(super) const ERRORS_PER_EVENT: usize = 16;

/// The receive buffer for datagrams from host sockets: the largest UDP
/// payload, and room in front of it for the headers of a frame.
const DATAGRAM_BUF: usize = 65536;

/// Where a UDP flow's datagrams go on the host.
#[derive(Debug)]
pub(crate) enum UdpTarget {
    /// A connected socket of the flow's own.
    Socket(UdpFlowSocket),
    /// A forwarded port's listener and the host peer that wrote to it.
    Listener { index: usize, peer: SocketAddr },
}

/// One UDP flow.
#[derive(Debug)]
pub(crate) struct UdpFlow {
    pub(crate) target: UdpTarget,
    pub(crate) state: DatagramFlowState,
    pub(crate) in_tx: bool,
}

/// An IP header and UDP header, of the flow's family, that stand for a
/// datagram the guest sent on flow `key`. Its length is unknown when the
/// error arrives: the quote says 8 bytes, which the guest's stack does not
/// check to find the socket.
fn synthetic_udp_quote(key: &FlowKey) -> Option<Quote> {
    let (remote, guest) = (key.dest(), key.guest());
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&guest.port().to_be_bytes());
    udp[2..4].copy_from_slice(&remote.port().to_be_bytes());
    udp[4..6].copy_from_slice(&8u16.to_be_bytes());
    Quote::new((guest.ip(), remote.ip()), Quoted::Udp, 8, udp)
}

impl Backend {
    /// Starts the DNS forwarder (if its upstream is reachable) and the
    /// inbound UDP listeners.
    pub(crate) fn start_udp(&mut self, rules: &nat_core::Rules) -> Result<(), super::BackendError> {
        self.open_dns_forwarder();
        self.listen_udp_forwards(rules)
    }

    /// A UDP datagram from the guest, `packet` the whole IPv4 or IPv6
    /// datagram, from `src` to `dst` (of its family).
    pub(crate) fn udp_from_guest(
        &mut self,
        packet: &[u8],
        (src, dst): (SocketAddr, SocketAddr),
        payload: &[u8],
        now: Instant,
    ) {
        let Some(key) = FlowKey::new(Protocol::Udp, src, dst) else {
            return;
        };
        if let Some(id) = self.flows.lookup(&key) {
            self.udp_send(id, payload, now);
            return;
        }
        let target = match self
            .nat
            .translate_outbound(nat_core::Protocol::Udp, src.ip(), dst)
        {
            Verdict::Connect(addr) => addr,
            Verdict::ForwardDns(_) => {
                self.dns_query(src, payload, now);
                return;
            }
            Verdict::AnswerLocally(_) => return,
            Verdict::Deny(reason) => {
                self.counters.denied += 1;
                tracing::debug!(%key, %reason, "UDP flow denied");
                self.queue_unreachable(packet, Unreachable::Prohibited);
                return;
            }
        };
        if self.flows.count(Protocol::Udp) >= self.flows.limits().udp {
            self.counters.flow_limit_drops += 1;
            self.queue_unreachable(packet, Unreachable::Prohibited);
            return;
        }
        let sock = match UdpFlowSocket::connect(target) {
            Ok(sock) => sock,
            Err(error) => {
                tracing::debug!(%key, %target, %error, "UDP connect failed");
                let code = if is_fd_exhaustion(&error) {
                    self.counters.fd_refusals += 1;
                    Unreachable::Prohibited
                } else {
                    Unreachable::NoRoute
                };
                self.queue_unreachable(packet, code);
                return;
            }
        };
        self.udp_insert(key, sock, payload, now);
    }

    /// Lists the guest's new flow `key` on its connected `sock` and sends
    /// its first datagram.
    fn udp_insert(&mut self, key: FlowKey, sock: UdpFlowSocket, payload: &[u8], now: Instant) {
        let flow = UdpFlow {
            target: UdpTarget::Socket(sock),
            state: DatagramFlowState::with_default_timeout(now),
            in_tx: false,
        };
        match self.flows.insert(key, Flow::Udp(flow)) {
            Ok(id) => {
                if let Some(Flow::Udp(UdpFlow {
                    target: UdpTarget::Socket(sock),
                    ..
                })) = self.flows.get(id)
                {
                    if let Some(token) = Token::new(KIND_UDP_FLOW, id.index(), id.generation()) {
                        if let Err(error) = self.poller.register(sock, token, Interest::READABLE) {
                            tracing::warn!(%error, "epoll registration failed");
                        }
                    }
                }
                self.counters.udp_flows_opened += 1;
                self.udp_send(id, payload, now);
            }
            Err(InsertError::Exists(_)) => {}
            Err(InsertError::CapacityReached(_) | InsertError::IndicesExhausted) => {
                self.counters.flow_limit_drops += 1;
            }
        }
    }

    fn udp_send(&mut self, id: FlowId, payload: &[u8], now: Instant) {
        let Some(Flow::Udp(flow)) = self.flows.get_mut(id) else {
            return;
        };
        flow.state.touch(now);
        let result = match &mut flow.target {
            UdpTarget::Socket(sock) => sock.send(payload),
            UdpTarget::Listener { index, peer } => match self.udp_listeners.get_mut(*index) {
                Some(listener) => listener.send_to(payload, *peer),
                None => return,
            },
        };
        match result {
            Ok(SendOutcome::Sent(n)) => self.counters.udp_bytes_to_host += n as u64,
            Ok(SendOutcome::Dropped(reason)) => {
                tracing::debug!(?reason, "UDP datagram dropped");
                self.counters.udp_drops += 1;
            }
            Err(error) => {
                tracing::debug!(%error, "UDP send failed");
                self.counters.udp_drops += 1;
            }
        }
        let deadline = flow.state.deadline();
        self.flows.set_deadline(id, Some(deadline));
    }

    /// Readiness of a UDP flow's socket: errors become ICMP errors to the
    /// guest now; datagrams wait in the socket until `poll_guest_frame`
    /// receives them into frames.
    pub(crate) fn udp_readiness(&mut self, id: FlowId, readable: bool, error: bool) {
        let Some(key) = self.flows.key(id).copied() else {
            return;
        };
        if error {
            for _ in 0..ERRORS_PER_EVENT {
                let (report, target) = match self.flows.get_mut(id) {
                    Some(Flow::Udp(UdpFlow {
                        target: UdpTarget::Socket(sock),
                        ..
                    })) => (sock.recv_error(), sock.peer_addr().ip()),
                    _ => break,
                };
                let Ok(Some(report)) = report else {
                    break;
                };
                self.counters.host_icmp_errors += 1;
                if let Some(quote) = synthetic_udp_quote(&key) {
                    self.queue_host_icmp_error(&report, key.dest_addr(), target, &quote);
                }
            }
        }
        if readable {
            self.mark_tx(id);
        }
    }

    /// Queues flow `id` for `poll_guest_frame`.
    pub(crate) fn mark_tx(&mut self, id: FlowId) {
        let flag = match self.flows.get_mut(id) {
            Some(Flow::Udp(flow)) => &mut flow.in_tx,
            Some(Flow::Tcp(_) | Flow::Icmp(_)) | None => return,
        };
        if !*flag {
            *flag = true;
            self.tx_ready.push_back(id);
        }
    }

    /// The next datagram of UDP flow `id`, received straight into `buf`.
    pub(crate) fn udp_poll_frame(
        &mut self,
        id: FlowId,
        buf: &mut [u8],
        fill: ChecksumFill,
        now: Instant,
    ) -> Option<usize> {
        // A datagram larger than the guest's MTU goes out one fragment per poll.
        if let Some(len) = self.poll_udp_fragment(id, buf) {
            return Some(len);
        }
        let link = self.frontdesk.link_to_guest();
        let key = *self.flows.key(id)?;
        let (from, to) = (key.dest(), key.guest());
        let Some(Flow::Udp(flow)) = self.flows.get_mut(id) else {
            return None;
        };
        let UdpTarget::Socket(sock) = &mut flow.target else {
            return None;
        };
        let received_here = self.to_guest.receives_for(buf.len());
        let into = if received_here {
            self.to_guest.receive_buffer()
        } else {
            &mut *buf
        };
        let area = into.get_mut(udp_headers_len(from)..)?;
        // A datagram longer than the caller's buffer is dropped, not cut.
        let truncated = sock.counters().drops(relay_udp_icmp::DropReason::Truncated);
        let received = sock.recv(area);
        let truncated = sock.counters().drops(relay_udp_icmp::DropReason::Truncated) - truncated;
        self.counters.udp_drops += truncated;
        match received {
            Ok(Some(n)) => {
                flow.state.touch(now);
                self.counters.udp_bytes_to_guest += n as u64;
                let deadline = flow.state.deadline();
                self.flows.set_deadline(id, Some(deadline));
                self.finish_udp_frame(id, buf, received_here, (link, from, to), n, fill)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::debug!(%error, "UDP receive failed");
                None
            }
        }
    }

    /// Takes flow `id` off the transmit queue.
    pub(crate) fn udp_tx_done(&mut self, id: FlowId) {
        if let Some(Flow::Udp(flow)) = self.flows.get_mut(id) {
            flow.in_tx = false;
        }
    }

    /// Lends `f` the receive buffer for datagrams from host sockets (the
    /// largest datagram), allocated on first use and kept, rather than
    /// allocated and zeroed on every readiness event.
    pub(super) fn with_datagram_buf(&mut self, f: impl FnOnce(&mut Self, &mut [u8])) {
        let mut buf = std::mem::take(&mut self.datagram_buf);
        buf.resize(DATAGRAM_BUF, 0);
        f(self, &mut buf);
        self.datagram_buf = buf;
    }

    /// Readiness of forwarded UDP port `index`: errors first, then
    /// datagrams.
    pub(crate) fn udp_listener_readiness(
        &mut self,
        index: usize,
        readiness: Readiness,
        now: Instant,
    ) {
        if readiness.is_error() {
            self.udp_listener_errors(index);
        }
        if readiness.is_readable() {
            self.udp_listener_readable(index, now);
        }
    }

    /// Drains forwarded UDP port `index`'s error queue: ICMP errors about
    /// replies the guest sent through it (a host peer that has gone answers
    /// port unreachable). Each is counted; one about a peer that is still a
    /// flow of this port goes to the guest as an error about that flow.
    fn udp_listener_errors(&mut self, index: usize) {
        for _ in 0..ERRORS_PER_EVENT {
            let Some(listener) = self.udp_listeners.get_mut(index) else {
                return;
            };
            let host_port = listener.local_addr().port();
            let Ok(Some(report)) = listener.recv_error() else {
                return;
            };
            self.counters.host_icmp_errors += 1;
            let Some(peer) = report.destination else {
                continue;
            };
            let Some((key, _, _)) = self.udp_forward_key(host_port, peer) else {
                continue;
            };
            let is_this_peer = self.flows.lookup(&key).is_some_and(|id| {
                matches!(
                    self.flows.get(id),
                    Some(Flow::Udp(UdpFlow {
                        target: UdpTarget::Listener { index: i, peer: p },
                        ..
                    })) if *i == index && *p == peer
                )
            });
            if let (true, Some(quote)) = (is_this_peer, synthetic_udp_quote(&key)) {
                self.queue_host_icmp_error(&report, key.dest_addr(), peer.ip(), &quote);
            }
        }
    }

    /// The flow of host peer `peer` on forwarded UDP port `host_port`, the
    /// guest's address of it, and the address the guest sees it from.
    fn udp_forward_key(
        &self,
        host_port: u16,
        peer: SocketAddr,
    ) -> Option<(FlowKey, SocketAddr, SocketAddr)> {
        let (guest, seen_from) = self.inbound_ends(nat_core::Protocol::Udp, host_port, peer)?;
        let key = FlowKey::new(Protocol::Udp, guest, seen_from)?;
        Some((key, guest, seen_from))
    }

    /// Datagrams from host peers on forwarded UDP port `index`.
    pub(crate) fn udp_listener_readable(&mut self, index: usize, now: Instant) {
        self.with_datagram_buf(|backend, buf| backend.udp_listener_read(index, buf, now));
    }

    /// [`Self::udp_listener_readable`] with the receive buffer lent.
    fn udp_listener_read(&mut self, index: usize, buf: &mut [u8], now: Instant) {
        for _ in 0..64 {
            let Some(listener) = self.udp_listeners.get_mut(index) else {
                return;
            };
            let host_port = listener.local_addr().port();
            let (n, peer) = match listener.recv_from(buf) {
                Ok(Some(got)) => got,
                Ok(None) | Err(_) => return,
            };
            let Some((key, guest, seen_from)) = self.udp_forward_key(host_port, peer) else {
                continue;
            };
            let id = match self.flows.lookup(&key) {
                Some(id) => id,
                None => {
                    let flow = UdpFlow {
                        target: UdpTarget::Listener { index, peer },
                        state: DatagramFlowState::with_default_timeout(now),
                        in_tx: false,
                    };
                    match self.flows.insert(key, Flow::Udp(flow)) {
                        Ok(id) => id,
                        Err(_) => {
                            self.counters.flow_limit_drops += 1;
                            continue;
                        }
                    }
                }
            };
            if let Some(Flow::Udp(flow)) = self.flows.get_mut(id) {
                flow.state.touch(now);
                let deadline = flow.state.deadline();
                self.flows.set_deadline(id, Some(deadline));
            }
            self.counters.udp_bytes_to_guest += n as u64;
            let link = self.frontdesk.link_to_guest();
            let headers = udp_headers_len(seen_from);
            let mut frame = vec![0u8; headers + n];
            frame[headers..].copy_from_slice(&buf[..n]);
            let fill = ChecksumFill::Complete;
            if let Some(len) = write_udp_headers_with(&mut frame, link, seen_from, guest, n, fill) {
                frame.truncate(len);
                self.queue_frame(frame);
            }
        }
    }

    /// A UDP or ICMP flow's deadline: expire it when idle.
    pub(crate) fn datagram_timeout(&mut self, id: FlowId, now: Instant) {
        let expired = match self.flows.get(id) {
            Some(Flow::Udp(flow)) => flow
                .state
                .is_expired(now)
                .then_some(())
                .ok_or(flow.state.deadline()),
            Some(Flow::Icmp(flow)) => flow
                .state
                .is_expired(now)
                .then_some(())
                .ok_or(flow.state.deadline()),
            Some(Flow::Tcp(_)) | None => return,
        };
        match expired {
            Ok(()) => {
                if let Some((key, _)) = self.flows.remove(id) {
                    tracing::debug!(%key, "idle datagram flow expired");
                    self.counters.datagram_flows_expired += 1;
                }
            }
            Err(deadline) => {
                self.flows.set_deadline(id, Some(deadline));
            }
        }
    }
}
