//! ICMP echo and ICMP errors to the guest: echo requests the gateway
//! answers itself or relays on ping sockets, their replies, and the
//! destination unreachables host sockets' error queues report about the
//! guest's datagrams.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use epoll_dispatch::{Interest, Readiness, Token};
use flow_table::{DatagramFlowState, FlowId, FlowKey, Protocol};
use relay_udp_icmp::{EchoOpenError, EchoSocket};

use super::guest_error::{Quote, Quoted, Unreachable};
use super::udp::ERRORS_PER_EVENT;
use super::{Backend, Flow, KIND_ICMP_FLOW};
use crate::fdlimit::is_fd_exhaustion;
use frontdesk::build_echo_reply;

/// How long an ICMP echo flow lives without traffic.
const ECHO_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// An echo request of the guest (ICMP or ICMPv6), its data aside.
#[derive(Clone, Copy, Debug)]
struct EchoRequest {
    pub(crate) guest: IpAddr,
    pub(crate) dst: IpAddr,
    pub(crate) ident: u16,
    pub(crate) seq: u16,
}

/// Why an echo request has no flow to go out on.
enum NoEchoFlow {
    /// Refused (flow limit, out of descriptors): the guest is told.
    Refused,
    /// Echo cannot be relayed from here, or its socket failed: the request
    /// goes unanswered, as a lost one would.
    Silent,
}

/// One ICMP echo flow (guest id and destination).
#[derive(Debug)]
pub(crate) struct IcmpFlow {
    pub(crate) sock: EchoSocket,
    pub(crate) state: DatagramFlowState,
}

impl Backend {
    /// An ICMP or ICMPv6 echo request from the guest, `packet` the whole
    /// datagram from `src` to `dst`: answered here when it goes to the
    /// gateway (host loopback always answers) or the DNS address, relayed
    /// on an echo socket to a host beyond, refused with an administratively
    /// prohibited when a rule denies it.
    pub(super) fn echo_from_guest(
        &mut self,
        packet: &[u8],
        (src, dst): (IpAddr, IpAddr),
        message: &[u8],
        now: Instant,
    ) {
        let verdict =
            self.nat
                .translate_outbound(nat_core::Protocol::Icmp, src, SocketAddr::new(dst, 0));
        let relay_to = match verdict {
            nat_core::Verdict::AnswerLocally(_) => None,
            nat_core::Verdict::Connect(addr) if addr.ip().is_loopback() => None,
            nat_core::Verdict::Connect(addr) => Some(addr.ip()),
            nat_core::Verdict::ForwardDns(_) => return,
            nat_core::Verdict::Deny(reason) => {
                self.counters.denied += 1;
                tracing::debug!(%reason, %dst, "echo request denied");
                self.queue_unreachable(packet, Unreachable::Prohibited);
                return;
            }
        };
        let (Some(head), Some(data)) = (message.get(4..8), message.get(8..)) else {
            return;
        };
        let ident = u16::from_be_bytes([head[0], head[1]]);
        let seq = u16::from_be_bytes([head[2], head[3]]);
        if let Some(target) = relay_to {
            let request = EchoRequest {
                guest: src,
                dst,
                ident,
                seq,
            };
            if !self.icmp_echo_relay(request, target, data, now) {
                self.queue_unreachable(packet, Unreachable::Prohibited);
            }
            return;
        }
        let link = self.frontdesk.link_to_guest();
        // Room for Ethernet, IP and ICMP headers in front of the data.
        let headers = if src.is_ipv4() { 64 } else { 96 };
        self.queue_built(headers + data.len(), |buf| {
            build_echo_reply(buf, link, (dst, src), ident, seq, data)
        });
    }

    /// An ICMP echo request to a host beyond slipway. Returns false when
    /// a new flow for it was refused (flow limit, out of descriptors), for
    /// the caller to tell the guest.
    fn icmp_echo_relay(
        &mut self,
        request: EchoRequest,
        target: IpAddr,
        data: &[u8],
        now: Instant,
    ) -> bool {
        let EchoRequest {
            guest: src,
            dst,
            ident,
            seq,
        } = request;
        let Some(key) = FlowKey::icmp_echo(src, ident, dst) else {
            return true;
        };
        let id = match self.flows.lookup(&key) {
            Some(id) => id,
            None => match self.icmp_open(key, target, ident, now) {
                Ok(id) => id,
                Err(NoEchoFlow::Refused) => return false,
                Err(NoEchoFlow::Silent) => return true,
            },
        };
        if let Some(Flow::Icmp(flow)) = self.flows.get_mut(id) {
            flow.state.touch(now);
            if let Err(error) = flow.sock.send_echo(seq, data) {
                tracing::debug!(%error, "echo send failed");
            }
            let deadline = flow.state.deadline();
            self.flows.set_deadline(id, Some(deadline));
        }
        true
    }

    /// Opens the echo flow `key` to `target` for the guest's identifier
    /// `ident`, registered for its replies and errors.
    fn icmp_open(
        &mut self,
        key: FlowKey,
        target: IpAddr,
        ident: u16,
        now: Instant,
    ) -> Result<FlowId, NoEchoFlow> {
        if self.flows.count(Protocol::Icmp) >= self.flows.limits().icmp {
            self.counters.flow_limit_drops += 1;
            return Err(NoEchoFlow::Refused);
        }
        let sock = match EchoSocket::open(target, ident) {
            Ok(sock) => sock,
            Err(EchoOpenError::Unavailable(why)) => {
                if !self.echo_warned {
                    self.echo_warned = true;
                    tracing::warn!(reason = %why.reason(), "ICMP echo is not available to this process");
                }
                return Err(NoEchoFlow::Silent);
            }
            Err(EchoOpenError::Io(error)) if is_fd_exhaustion(&error) => {
                self.counters.fd_refusals += 1;
                return Err(NoEchoFlow::Refused);
            }
            Err(error) => {
                tracing::debug!(%error, "echo socket failed");
                return Err(NoEchoFlow::Silent);
            }
        };
        let flow = IcmpFlow {
            sock,
            state: DatagramFlowState::new(now, ECHO_IDLE_TIMEOUT),
        };
        let Ok(id) = self.flows.insert(key, Flow::Icmp(flow)) else {
            self.counters.flow_limit_drops += 1;
            return Err(NoEchoFlow::Refused);
        };
        if let (Some(Flow::Icmp(flow)), Some(token)) = (
            self.flows.get(id),
            Token::new(KIND_ICMP_FLOW, id.index(), id.generation()),
        ) {
            if let Err(error) = self.poller.register(&flow.sock, token, Interest::READABLE) {
                tracing::warn!(%error, "epoll registration failed");
            }
        }
        Ok(id)
    }

    /// Readiness of echo flow `id`: ICMP errors about its requests, then
    /// its replies.
    pub(crate) fn icmp_readiness(&mut self, id: FlowId, readiness: Readiness, now: Instant) {
        if readiness.is_error() {
            self.icmp_errors(id);
        }
        if readiness.is_readable() {
            self.with_datagram_buf(|backend, buf| backend.icmp_read(id, buf, now));
        }
    }

    /// Drains echo flow `id`'s error queue: each ICMP or ICMPv6 error about
    /// one of its requests (address unreachable, time exceeded, packet too
    /// big) goes to the guest quoting that request as the guest sent it.
    fn icmp_errors(&mut self, id: FlowId) {
        let Some(key) = self.flows.key(id).copied() else {
            return;
        };
        let (guest, remote) = (key.guest_addr(), key.dest_addr());
        for _ in 0..ERRORS_PER_EVENT {
            let Some(Flow::Icmp(flow)) = self.flows.get_mut(id) else {
                return;
            };
            let target = flow.sock.destination();
            let Ok(Some(error)) = flow.sock.recv_error() else {
                return;
            };
            self.counters.host_icmp_errors += 1;
            let Some(header) = error.request_header else {
                continue;
            };
            let ends = (guest, remote);
            if let Some(quote) = Quote::new(ends, Quoted::Echo, error.quoted_len, header) {
                self.queue_host_icmp_error(&error.report, remote, target, &quote);
            }
        }
    }

    /// [`Self::icmp_readiness`] with the receive buffer lent.
    fn icmp_read(&mut self, id: FlowId, buf: &mut [u8], now: Instant) {
        let Some(key) = self.flows.key(id).copied() else {
            return;
        };
        let (guest, remote) = (key.guest_addr(), key.dest_addr());
        let link = self.frontdesk.link_to_guest();
        for _ in 0..64 {
            let Some(Flow::Icmp(flow)) = self.flows.get_mut(id) else {
                return;
            };
            let reply = match flow.sock.recv_reply(buf) {
                Ok(Some(reply)) => reply,
                Ok(None) | Err(_) => return,
            };
            flow.state.touch(now);
            let data = &buf[..reply.payload_len];
            let mut frame = vec![0u8; 96 + data.len()];
            let (ident, seq) = (reply.guest_id, reply.seq);
            let built = build_echo_reply(&mut frame, link, (remote, guest), ident, seq, data);
            if let Some(len) = built {
                frame.truncate(len);
                self.queue_frame(frame);
            }
        }
    }
}
