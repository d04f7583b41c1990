//! One TCP flow, driven whole: the state machine, its host socket and the
//! epoll interest the socket is registered with, behind a handful of
//! entry points and one [`step`](TcpFlowDriver::step) that carries out
//! what the state machine decided.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use epoll_dispatch::Interest;
use flow_table::tcp::{
    Event, Phase, Segment, SegmentOutcome, SeqNum, TcpConfig, TcpConn, TcpStats, Transmit,
};

use crate::relay::{
    Executed, SocketReadiness, epoll_interest, fill_transmit_payload, on_readiness, run_socket_ops,
};
use crate::socket::HostSocket;

/// Segments one [`TcpFlowDriver::poll_transmit`] takes at most: the one
/// due, and after a failed peek the RST that failure owes.
const MAX_TRANSMITS_PER_POLL: usize = 2;

/// A change to the epoll registration of a flow's socket, for the caller's
/// poller to carry out (see [`TcpFlowDriver::step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Add the socket to the epoll set with this interest.
    Add(Interest),
    /// Change the interest the socket is registered with to this.
    Modify(Interest),
}

/// What one [`TcpFlowDriver::step`] did and left to its caller.
#[derive(Debug)]
#[must_use]
pub struct Step {
    /// What was carried out on the host socket.
    pub executed: Executed,
    /// Payload bytes written to the host since the previous step.
    pub bytes_to_host: u64,
    /// Payload bytes sent to the guest since the previous step.
    pub bytes_to_guest: u64,
    /// The flow's phase after the step.
    pub phase: Phase,
    /// When [`TcpFlowDriver::handle_timeout`] is due next.
    pub deadline: Option<Instant>,
}

/// One TCP flow: a [`TcpConn`] and the [`HostSocket`] it mirrors, and the
/// interest that socket is registered with. Nothing else holds either; the
/// event loop talks to the flow only through this type.
///
/// The loop feeds it guest segments ([`handle_guest_segment`]), readiness
/// ([`handle_readiness`]) and expired deadlines ([`handle_timeout`]); after
/// each batch it calls [`step`], and takes segments for the guest with
/// [`poll_transmit`], their payload peeked straight from the socket into
/// the caller's frame.
///
/// [`handle_guest_segment`]: Self::handle_guest_segment
/// [`handle_readiness`]: Self::handle_readiness
/// [`handle_timeout`]: Self::handle_timeout
/// [`step`]: Self::step
/// [`poll_transmit`]: Self::poll_transmit
#[derive(Debug)]
pub struct TcpFlowDriver {
    conn: TcpConn,
    socket: HostSocket,
    /// The interest the socket is registered with, if it is.
    registered: Option<Interest>,
    /// Stats already reported by [`step`](Self::step).
    reported: TcpStats,
}

impl TcpFlowDriver {
    /// A flow the guest opens with `syn`, whose host connection `socket`
    /// is under way ([`HostSocket::connect`]).
    #[must_use]
    pub fn for_guest_syn(
        syn: &Segment,
        isn: SeqNum,
        config: TcpConfig,
        socket: HostSocket,
        now: Instant,
    ) -> TcpFlowDriver {
        let conn = TcpConn::from_guest_syn(syn, isn, config, now);
        TcpFlowDriver::new(conn, socket)
    }

    /// A flow a host peer opened: `socket` is accepted and connected; the
    /// SYN to the guest starts the handshake on that side.
    #[must_use]
    pub fn for_host_accept(
        isn: SeqNum,
        config: TcpConfig,
        socket: HostSocket,
        now: Instant,
    ) -> TcpFlowDriver {
        let space = socket.send_space().unwrap_or(0);
        let conn = TcpConn::from_host_accept(isn, space, config, now);
        TcpFlowDriver::new(conn, socket)
    }

    /// Drives `conn` on `socket`, which is registered with no epoll set
    /// yet.
    #[must_use]
    pub fn new(conn: TcpConn, socket: HostSocket) -> TcpFlowDriver {
        TcpFlowDriver {
            conn,
            socket,
            registered: None,
            reported: TcpStats::default(),
        }
    }

    /// A segment from the guest; its payload is written to the host socket
    /// straight from `payload` when it is the next in sequence.
    pub fn handle_guest_segment(
        &mut self,
        now: Instant,
        seg: &Segment,
        payload: &[u8],
    ) -> SegmentOutcome {
        self.conn
            .handle_guest_segment(now, seg, payload, &mut self.socket)
    }

    /// What epoll reported for the socket, with the socket operations owed
    /// before and after carried out.
    pub fn handle_readiness(&mut self, readiness: SocketReadiness, now: Instant) -> Executed {
        on_readiness(&mut self.conn, &mut self.socket, readiness, now)
    }

    /// The flow's deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
    }

    /// Carries out the socket operations the state machine owes and brings
    /// the socket's epoll registration in line with what the flow waits for:
    /// `register` gets the socket and the change (none when the interest is
    /// as registered, or the socket is closed and so in no epoll set). A
    /// registration that fails ends the flow as a host error.
    ///
    /// Call it after every batch of input and before
    /// [`poll_transmit`](Self::poll_transmit). State transitions are logged
    /// as `tracing` events.
    pub fn step(
        &mut self,
        now: Instant,
        register: impl FnOnce(BorrowedFd<'_>, Registration) -> io::Result<()>,
    ) -> Step {
        let executed = run_socket_ops(&mut self.conn, &mut self.socket, now);
        if let Some(failure) = &executed.failure {
            tracing::debug!(%failure, "host socket failed");
        }
        self.log_events();
        let stats = *self.conn.stats();
        let bytes_to_host = stats.bytes_to_host - self.reported.bytes_to_host;
        let bytes_to_guest = stats.bytes_to_guest - self.reported.bytes_to_guest;
        self.reported = stats;
        self.update_registration(now, register);
        Step {
            executed,
            bytes_to_host,
            bytes_to_guest,
            phase: self.conn.phase(),
            deadline: self.conn.poll_timeout(),
        }
    }

    fn log_events(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::PhaseChanged { from, to } => tracing::debug!(?from, ?to, "phase"),
                Event::Closed(reason) => tracing::debug!(?reason, "closed"),
            }
        }
    }

    fn update_registration(
        &mut self,
        now: Instant,
        register: impl FnOnce(BorrowedFd<'_>, Registration) -> io::Result<()>,
    ) {
        let Some(fd) = self.socket.fd() else {
            // Closing the socket took it out of every epoll set.
            self.registered = None;
            return;
        };
        let wanted = epoll_interest(&self.conn);
        let change = match self.registered {
            None => Registration::Add(wanted),
            Some(current) if current != wanted => Registration::Modify(wanted),
            Some(_) => return,
        };
        match register(fd, change) {
            Ok(()) => self.registered = Some(wanted),
            Err(error) => {
                tracing::warn!(%error, "epoll registration failed");
                self.conn.handle_host_error(now);
            }
        }
    }

    /// The next segment for the guest, if one is due, with its payload
    /// peeked from the socket into `buf` at the offset `headroom` gives for
    /// it (the room its headers take in front); returns the segment and
    /// the payload's length, for the caller to write the headers around.
    ///
    /// A segment `headroom` refuses (`None`) or whose payload area lies
    /// past `buf` is dropped, as a link drops a frame it cannot carry. A
    /// failed peek ends the flow as a host error; the RST it owes is the
    /// segment returned then.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        mut headroom: impl FnMut(&Transmit) -> Option<usize>,
    ) -> Option<(Transmit, usize)> {
        for _ in 0..MAX_TRANSMITS_PER_POLL {
            let transmit = self.conn.poll_transmit(now)?;
            let area = buf.get_mut(headroom(&transmit)?..)?;
            match fill_transmit_payload(&mut self.socket, &transmit, area) {
                Ok(len) => return Some((transmit, len)),
                Err(error) => {
                    tracing::debug!(%error, "peek failed");
                    self.conn.handle_host_error(now);
                    let _ = run_socket_ops(&mut self.conn, &mut self.socket, now);
                }
            }
        }
        None
    }

    /// Lets a data segment carry up to `limit` payload bytes, more than the
    /// guest's MSS, for a frontend that cuts it up (GSO); `None` holds
    /// segments to the MSS.
    pub fn set_gso_limit(&mut self, limit: Option<u16>) {
        self.conn.set_gso_limit(limit);
    }

    /// Keeps every segment's payload, new or retransmitted, within `limit`
    /// bytes (the room the caller's frame has behind the headers), below
    /// the MSS if need be; `None` lifts the bound.
    pub fn set_payload_limit(&mut self, limit: Option<u16>) {
        self.conn.set_payload_limit(limit);
    }

    /// The guest's MSS as negotiated: what segments are cut to.
    #[must_use]
    pub fn guest_mss(&self) -> u16 {
        self.conn.guest_mss()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout()
    }

    /// The flow's phase, in RFC 9293's names.
    #[must_use]
    pub fn phase(&self) -> Phase {
        self.conn.phase()
    }

    /// Both sides are closed and nothing is left to send: the flow can go.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// The flow's counters.
    #[must_use]
    pub fn stats(&self) -> &TcpStats {
        self.conn.stats()
    }

    /// The state machine, to inspect (its close reason, its timers).
    #[must_use]
    pub fn conn(&self) -> &TcpConn {
        &self.conn
    }

    /// The host socket, to inspect (its addresses, its descriptor).
    #[must_use]
    pub fn socket(&self) -> &HostSocket {
        &self.socket
    }

    /// The interest the socket is registered with, if it is.
    #[must_use]
    pub fn registered(&self) -> Option<Interest> {
        self.registered
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    use epoll_dispatch::{Events, Kind, Poller, Token};
    use flow_table::tcp::{CloseReason, Flags};

    use super::*;
    use crate::relay::Closure;

    /// The longest any single wait in these tests may take.
    const WAIT_LIMIT: Duration = Duration::from_secs(10);

    const TOKEN: Token = match Token::new(Kind(1), 0, 0) {
        Some(token) => token,
        None => Token::WAKER,
    };

    const GUEST_ISN: u32 = 1000;

    /// Bytes in front of each payload, as a frame's headers would take.
    const HEADROOM: usize = 54;

    /// A flow, the poller its socket registers with, and every
    /// registration change its steps asked for.
    struct Harness {
        flow: TcpFlowDriver,
        poller: Poller,
        events: Events,
        changes: Vec<Registration>,
    }

    impl Harness {
        /// A guest-opened flow whose connect to `dst` is under way.
        fn guest_opened(dst: SocketAddr) -> Harness {
            let syn = Segment {
                seq: SeqNum::new(GUEST_ISN),
                flags: Flags {
                    syn: true,
                    ..Flags::default()
                },
                window: 65535,
                mss: Some(1460),
                window_scale: Some(7),
                ..Segment::default()
            };
            let socket = HostSocket::connect(dst).unwrap();
            let now = Instant::now();
            let flow = TcpFlowDriver::for_guest_syn(
                &syn,
                SeqNum::new(5),
                TcpConfig::default(),
                socket,
                now,
            );
            Harness {
                flow,
                poller: Poller::new().unwrap(),
                events: Events::with_capacity(4),
                changes: Vec::new(),
            }
        }

        fn step(&mut self) -> Step {
            let (poller, changes) = (&self.poller, &mut self.changes);
            self.flow.step(Instant::now(), |fd, change| {
                changes.push(change);
                match change {
                    Registration::Add(interest) => poller.register(fd, TOKEN, interest),
                    Registration::Modify(interest) => poller.modify(fd, TOKEN, interest),
                }
            })
        }

        /// Waits for the socket's next readiness and hands it to the flow.
        fn wait_and_handle(&mut self) -> Executed {
            let end = Instant::now() + WAIT_LIMIT;
            let ready = self.poller.wait(&mut self.events, Some(end)).unwrap();
            assert_eq!(ready, 1, "the socket reported ready in time");
            let (_, readiness) = self.events.iter().next().unwrap();
            self.flow.handle_readiness(readiness.into(), Instant::now())
        }

        /// Segments for the guest until none is due: each with its payload.
        fn transmits(&mut self) -> Vec<(Transmit, Vec<u8>)> {
            let mut buf = vec![0u8; 65536];
            let mut out = Vec::new();
            for _ in 0..64 {
                let Some((t, len)) = self
                    .flow
                    .poll_transmit(Instant::now(), &mut buf, |_| Some(HEADROOM))
                else {
                    break;
                };
                out.push((t, buf[HEADROOM..HEADROOM + len].to_vec()));
            }
            out
        }

        /// Connects, answers the SYN-ACK: an established flow and its peer.
        fn established() -> (Harness, TcpStream) {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            let mut harness = Harness::guest_opened(listener.local_addr().unwrap());
            let _ = harness.step();
            let _ = harness.wait_and_handle();
            let _ = harness.step();
            let syn_ack = harness.transmits()[0].0;
            assert!(syn_ack.flags.syn);
            let ack = Segment {
                seq: SeqNum::new(GUEST_ISN + 1),
                ack: Some(syn_ack.seq + 1),
                window: 65535,
                ..Segment::default()
            };
            let _ = harness.flow.handle_guest_segment(Instant::now(), &ack, &[]);
            let _ = harness.step();
            assert_eq!(harness.flow.phase(), Phase::Established);
            let (peer, _) = listener.accept().unwrap();
            peer.set_read_timeout(Some(WAIT_LIMIT)).unwrap();
            (harness, peer)
        }
    }

    /// A loopback port with no listener: bound, then closed again.
    fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.local_addr().unwrap()
    }

    #[test]
    fn step_adds_a_connecting_socket_for_writable_and_widens_it_once_connected() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut harness = Harness::guest_opened(listener.local_addr().unwrap());
        let step = harness.step();
        assert_eq!(step.phase, Phase::Connecting);
        assert!(step.deadline.is_some(), "the connect has a timeout");
        assert_eq!(harness.changes, [Registration::Add(Interest::WRITABLE)]);
        assert_eq!(harness.flow.registered(), Some(Interest::WRITABLE));
        let _ = harness.wait_and_handle();
        let step = harness.step();
        assert_eq!(step.phase, Phase::SynReceived);
        let readable = Interest::READABLE | Interest::RDHUP;
        assert_eq!(harness.changes[1..], [Registration::Modify(readable)]);
        let syn_ack = harness.transmits();
        assert_eq!(syn_ack.len(), 1);
        assert!(syn_ack[0].0.flags.syn && syn_ack[0].0.ack.is_some());
    }

    #[test]
    fn step_leaves_an_unchanged_registration_alone() {
        let (mut harness, _peer) = Harness::established();
        let before = harness.changes.len();
        for _ in 0..3 {
            let _ = harness.step();
        }
        assert_eq!(harness.changes.len(), before, "no change, no epoll call");
    }

    #[test]
    fn guest_payload_reaches_the_host_and_its_bytes_are_reported_once() {
        let (mut harness, mut peer) = Harness::established();
        let data = Segment {
            seq: SeqNum::new(GUEST_ISN + 1),
            ack: Some(SeqNum::new(6)),
            window: 65535,
            ..Segment::default()
        };
        let _ = harness
            .flow
            .handle_guest_segment(Instant::now(), &data, b"hello");
        let step = harness.step();
        assert_eq!((step.bytes_to_host, step.bytes_to_guest), (5, 0));
        assert_eq!(harness.step().bytes_to_host, 0, "counted once");
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        let ack = harness
            .transmits()
            .into_iter()
            .find(|(t, _)| t.ack.is_some());
        assert_eq!(
            ack.and_then(|(t, _)| t.ack),
            Some(SeqNum::new(GUEST_ISN + 6)),
            "the guest's bytes are acknowledged once the kernel took them"
        );
    }

    #[test]
    fn host_bytes_are_peeked_into_the_frame_behind_the_headroom() {
        let (mut harness, mut peer) = Harness::established();
        peer.write_all(b"world").unwrap();
        let _ = harness.wait_and_handle();
        let _ = harness.step();
        let sent = harness.transmits();
        let payloads: Vec<&[u8]> = sent.iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(payloads, [b"world".as_slice()]);
        assert_eq!(harness.step().bytes_to_guest, 5);
        assert_eq!(
            harness.flow.socket().queued().unwrap(),
            5,
            "peeked, not consumed, until the guest acknowledges"
        );
    }

    #[test]
    fn a_failed_registration_resets_the_flow() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut harness = Harness::guest_opened(listener.local_addr().unwrap());
        let now = Instant::now();
        let _ = harness
            .flow
            .step(now, |_, _| Err(io::ErrorKind::Other.into()));
        assert_eq!(harness.flow.registered(), None);
        assert_eq!(
            harness.flow.conn().close_reason(),
            Some(CloseReason::HostError)
        );
        let step = harness.step();
        assert_eq!(step.executed.closed, Some(Closure::Reset));
        assert!(
            harness.changes.is_empty(),
            "a closed socket is in no epoll set"
        );
    }

    #[test]
    fn a_refused_connect_closes_the_socket_and_resets_the_guest() {
        let mut harness = Harness::guest_opened(closed_port());
        let _ = harness.step();
        let executed = harness.wait_and_handle();
        assert_eq!(executed.closed, Some(Closure::Reset));
        let step = harness.step();
        assert_eq!(step.phase, Phase::Closed);
        assert_eq!(harness.flow.registered(), None);
        assert!(harness.flow.socket().fd().is_none());
        let sent = harness.transmits();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].0.flags.rst);
        assert!(harness.flow.is_closed());
    }

    #[test]
    fn a_segment_whose_headroom_is_refused_is_dropped() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut harness = Harness::guest_opened(listener.local_addr().unwrap());
        let _ = harness.step();
        let _ = harness.wait_and_handle();
        let _ = harness.step();
        let mut buf = [0u8; 64];
        let polled = harness
            .flow
            .poll_transmit(Instant::now(), &mut buf, |_| None);
        assert!(polled.is_none());
    }
}
