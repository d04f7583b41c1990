//! The backend: one thread owns the front desk, the flow table, the epoll set
//! and every host socket, and turns guest frames into host socket operations
//! and host readiness into guest frames.
//!
//! Embedders drive it through [`NetworkBackend`] (with [`FrameBackend`]): frames from the guest go in
//! as borrowed slices, frames to the guest come out into buffers the caller
//! supplies, and the caller sleeps on [`Served::host_fd`] until
//! [`Served::poll_timeout`].
//!
//! Checksum offload is the frontend's choice, frame by frame: a frame handed
//! in with [`FrameBackend::handle_guest_frame_offloaded`] and a partial or
//! vouched-for [`Checksum`] has its transport checksum left unverified (all
//! else is checked as always), and a frame taken with
//! [`FrameBackend::poll_guest_frame_offloaded`] may come with its TCP or
//! UDP checksum partial, which the frontend passes on as such. The plain
//! methods verify and fill every checksum.

mod dns;
mod fragment;
mod icmp;
mod ipv6;
mod isn;
mod ratelimit;
mod tcp;
mod udp;

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use epoll_dispatch::{Events, Kind, Poller, Token};
use flow_table::tcp::{Phase, TcpConfig};
use flow_table::{FlowId, FlowTable, IpVersion, Limits};
use nat_core::{DnsUpstream, Nat, Plan, Rules};
use relay_tcp::Listener;
use smoltcp::wire::Icmpv4DstUnreachable;

pub use epoll_dispatch::serve::Served;
pub use guest_frame::{Checksum, FrameBackend, GuestFrame};

use frontdesk::{
    ChecksumFill, DhcpConfig, FrontDesk, Icmpv4Error, L4_START_V4, L4_START_V6, Outcome,
    RouterConfig, TCP_CHECKSUM_OFFSET, Transport, TransportChecksums, UDP_CHECKSUM_OFFSET,
    build_icmp_v4_error,
};

use self::icmp::IcmpFlow;
use self::isn::IsnSource;
use self::ratelimit::TokenBucket;
use self::tcp::{HalfOpen, TcpFlow};
use self::udp::UdpFlow;

/// Everything a backend is built from.
#[derive(Clone, Debug)]
pub struct BackendConfig {
    /// The addresses the guest sees.
    pub plan: Plan,
    /// Loopback mapping, deny lists, port forwards, DNS upstream.
    pub rules: Rules,
    /// Flow limits per protocol.
    pub limits: Limits,
    /// New TCP flows the guest may open per second (0: unlimited).
    pub new_tcp_per_second: u32,
    /// Half-open TCP flows the guest may hold at once, like a SYN backlog:
    /// flows whose host connect is under way or whose SYN-ACK the guest
    /// has not acknowledged yet, each holding a host socket. A guest SYN
    /// beyond it is dropped silently and counted
    /// ([`BackendCounters::syn_backlog_drops`]). Default 256, a quarter of
    /// the usual soft limit of 1024 descriptors.
    pub max_half_open_tcp: u32,
    /// How long the guest has to acknowledge a SYN-ACK before its
    /// half-open flow is reset and the host socket closed (default 20 s;
    /// see `TcpConfig::handshake_timeout`).
    pub tcp_handshake_timeout: std::time::Duration,
    /// DHCP lease.
    pub dhcp: DhcpConfig,
    /// What IPv6 router advertisements say beyond the plan: the DHCPv6
    /// mode (their M and O flags; default O only) and the search domain
    /// (default none).
    pub router: RouterConfig,
    /// Where DNS goes when the rules name no upstream: the host resolver,
    /// usually the first `nameserver` of `/etc/resolv.conf`.
    pub host_resolver: Option<SocketAddr>,
}

impl BackendConfig {
    /// The defaults of the address plan with the given rules.
    #[must_use]
    pub fn new(plan: Plan, rules: Rules) -> Self {
        Self {
            plan,
            rules,
            limits: Limits::default(),
            new_tcp_per_second: 10_000,
            max_half_open_tcp: 256,
            tcp_handshake_timeout: TcpConfig::default().handshake_timeout,
            dhcp: DhcpConfig::default(),
            router: RouterConfig::default(),
            host_resolver: None,
        }
    }
}

/// Why a backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The rules do not fit the plan.
    #[error("invalid rules: {0}")]
    Rules(#[from] nat_core::RulesError),
    /// The flow limits are too large.
    #[error("invalid flow limits: {0}")]
    Limits(#[from] flow_table::LimitsError),
    /// A port forward could not listen.
    #[error("port forward: {0}")]
    Listen(#[from] relay_tcp::ListenError),
    /// The epoll set, or a UDP forward's listener, could not be made.
    #[error("host sockets: {0}")]
    Io(#[from] io::Error),
}

/// The interface for a VMM or frontend that embeds slipway: the frame
/// boundary ([`FrameBackend`], shared with `virtio-net-kvm`'s device) and
/// the host side a serving loop waits on ([`Served`], shared with
/// `epoll-dispatch`'s loop). Every type that is both is one; [`Backend`] is.
///
/// `poll_guest_frame`'s buffer should hold the longest frame of the link:
/// the MTU plus the Ethernet header (64 KiB plus headers with
/// [`Backend::set_gso_to_guest`]). A frame is never cut to fit a shorter
/// buffer: TCP segments are sized to the buffer, and a frame that cannot be
/// (a datagram, an ICMP or front-desk reply) is dropped and counted in
/// [`BackendCounters::buffer_too_small_drops`] (UDP datagrams in
/// [`BackendCounters::udp_drops`]), as a link drops a frame over its MTU.
/// With [`Backend::set_gso_to_guest`],
/// [`poll_guest_frame_offloaded`](FrameBackend::poll_guest_frame_offloaded)
/// may hand out a TCP segment larger than the guest's MSS, for the caller to
/// pass on as a GSO frame.
pub trait NetworkBackend: FrameBackend + Served {}

impl<B: FrameBackend + Served + ?Sized> NetworkBackend for B {}

/// Counters of the whole backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendCounters {
    /// TCP flows opened by the guest.
    pub tcp_flows_opened: u64,
    /// TCP flows opened by host peers on forwarded ports.
    pub tcp_flows_accepted: u64,
    /// TCP flows that ended, by any reason.
    pub tcp_flows_closed: u64,
    /// Payload bytes guest → host, TCP.
    pub tcp_bytes_to_host: u64,
    /// Payload bytes host → guest, TCP.
    pub tcp_bytes_to_guest: u64,
    /// New flows refused by a deny rule or policy, before any socket.
    pub denied: u64,
    /// New flows refused because a protocol's flow limit was reached; a
    /// guest's SYN gets an RST, its UDP datagram or echo request an ICMP
    /// destination unreachable, administratively prohibited.
    pub flow_limit_drops: u64,
    /// New flows refused because the process or the system is out of
    /// file descriptors (`EMFILE`, `ENFILE`): a guest's TCP SYN is
    /// answered with an RST, a UDP datagram or echo request with an ICMP
    /// destination unreachable, communication administratively
    /// prohibited (code 13: slipway refuses, as for a deny rule; not port
    /// unreachable, which would say nothing listens there).
    pub fd_refusals: u64,
    /// Times a forwarded port's listener stopped accepting for a while
    /// after `accept()` failed (say with `EMFILE`): 100 ms, doubling to
    /// 1 s, or until a flow closes, rather than failing again at once.
    pub accept_pauses: u64,
    /// TCP flows in TIME-WAIT reclaimed to make room for new ones.
    pub time_wait_reclaimed: u64,
    /// SYNs refused by the rate limit on new TCP flows.
    pub syn_rate_drops: u64,
    /// Guest SYNs dropped (silently, as by a full SYN backlog) because
    /// [`BackendConfig::max_half_open_tcp`] half-open flows exist.
    pub syn_backlog_drops: u64,
    /// RSTs sent for segments of unknown flows.
    pub rst_unknown: u64,
    /// Frames for the guest dropped because the output queue was full
    /// ([`MAX_QUEUED_BYTES`] or 4096 frames).
    pub output_drops: u64,
    /// Frames for the guest dropped because they did not fit the buffer
    /// the frontend polled with (never cut to fit).
    pub buffer_too_small_drops: u64,
    /// Frames sent to the guest.
    pub frames_to_guest: u64,
    /// Frames sent to the guest with their TCP or UDP checksum left
    /// partial for the frontend (checksum offload).
    pub partial_checksums_to_guest: u64,
    /// TCP segments sent to the guest larger than its MSS, for the
    /// frontend to cut up (GSO).
    pub gso_frames_to_guest: u64,
    /// IPv4 fragments sent to the guest, of datagrams larger than its MTU.
    pub fragments_to_guest: u64,
    /// UDP flows opened by the guest.
    pub udp_flows_opened: u64,
    /// Payload bytes guest → host, UDP.
    pub udp_bytes_to_host: u64,
    /// Payload bytes host → guest, UDP.
    pub udp_bytes_to_guest: u64,
    /// UDP datagrams dropped (full socket buffer, oversize, send error).
    pub udp_drops: u64,
    /// ICMP errors from the host translated for the guest.
    pub icmp_errors_to_guest: u64,
    /// ICMP errors read from host sockets' error queues (UDP flows,
    /// forwarded UDP ports, ICMP echo), whether or not one went to the
    /// guest.
    pub host_icmp_errors: u64,
    /// ICMP errors not sent to the guest because the datagram they were
    /// about went to a broadcast or multicast address, or came from an
    /// address that is not unicast (RFC 1122 3.2.2).
    pub icmp_errors_suppressed: u64,
    /// TCP segments to a broadcast or multicast address, or from an
    /// address that is not unicast, dropped without the RST an unknown
    /// flow gets (RFC 1122 4.2.3.10).
    pub tcp_group_drops: u64,
    /// UDP and ICMP flows freed after their idle timeout.
    pub datagram_flows_expired: u64,
    /// DNS queries forwarded to the upstream resolver.
    pub dns_queries: u64,
    /// DNS queries dropped (no upstream, malformed, full).
    pub dns_drops: u64,
    /// Host readiness events handled. With
    /// [`timers_fired`](Self::timers_fired), what the loop was woken for:
    /// once traffic ends both stop growing, and a flow that keeps either
    /// moving while nothing happens is a loop that spins.
    pub host_events: u64,
    /// Flow deadlines that expired and ran.
    pub timers_fired: u64,
}

/// Kinds of epoll token.
pub(crate) const KIND_TCP_FLOW: Kind = Kind(1);
pub(crate) const KIND_TCP_LISTENER: Kind = Kind(2);
pub(crate) const KIND_UDP_FLOW: Kind = Kind(3);
pub(crate) const KIND_UDP_LISTENER: Kind = Kind(4);
pub(crate) const KIND_DNS: Kind = Kind(5);
pub(crate) const KIND_ICMP_FLOW: Kind = Kind(6);

/// Room for an ICMP error frame: headers, ICMP header and a quote of an IP
/// header with options plus 8 bytes.
pub(crate) const ICMP_ERROR_FRAME_CAP: usize = 14 + 20 + 8 + 60 + 8;

/// The first pause of a listener whose `accept()` failed.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(100);

/// The longest pause of a listener whose `accept()` keeps failing.
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

/// Frames queued for the guest outside the flows' own output, at most:
/// a bound on the per-frame bookkeeping of many small frames.
const MAX_QUEUED_FRAMES: usize = 4096;

/// Bytes of the frames queued for the guest outside the flows' own output,
/// at most (see [`Backend::queued_bytes`]). A burst of the front desk's
/// replies is small: 4096 ARP replies take 168 KiB, as many DHCP replies
/// 1.4 MiB, ICMP errors under 128 bytes each. What fills the rest is
/// datagram output that has no socket to wait in (echo replies of the
/// gateway, DNS replies, datagrams of forwarded UDP ports): 64 of the
/// largest, enough to ride out a guest that is slow to post receive
/// buffers, and a guest that posts none costs no more than this.
pub const MAX_QUEUED_BYTES: usize = 4 << 20;

/// The pause of one forwarded listener after a failed `accept()`.
#[derive(Clone, Copy, Debug)]
struct AcceptBackoff {
    /// Paused (out of the epoll set) until then.
    until: Option<Instant>,
    /// The length of the next pause.
    next_delay: Duration,
    /// Flows open when it paused: one fewer frees a descriptor.
    flows_at_pause: usize,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self {
            until: None,
            next_delay: ACCEPT_PAUSE_MIN,
            flows_at_pause: 0,
        }
    }
}

/// A flow of the table.
#[derive(Debug)]
pub(crate) enum Flow {
    Tcp(Box<TcpFlow>),
    Udp(UdpFlow),
    Icmp(IcmpFlow),
}

/// slipway's user-mode network stack for one guest.
#[derive(Debug)]
pub struct Backend {
    nat: Nat,
    frontdesk: FrontDesk,
    flows: FlowTable<Flow>,
    poller: Poller,
    events: Events,
    isn: IsnSource,
    syn_bucket: TokenBucket,
    tcp_config_v4: TcpConfig,
    tcp_config_v6: TcpConfig,
    /// Guest-opened TCP flows now half-open, and their cap.
    tcp_half_open: HalfOpen,
    dns_upstream: Option<SocketAddr>,
    listeners: Vec<Listener>,
    /// Per listener of `listeners`: its pause after a failed `accept()`.
    accept_backoff: Vec<AcceptBackoff>,
    udp_listeners: Vec<relay_udp_icmp::UdpListener>,
    dns: Option<relay_udp_icmp::DnsForwarder>,
    /// The one warning that ICMP echo cannot be relayed has been given.
    echo_warned: bool,
    /// Whether the warning about an unreachable DNS upstream was given.
    dns_warned: bool,
    /// Ready-made frames for the guest (ARP, DHCP, ICMP, RSTs).
    queued: VecDeque<Vec<u8>>,
    /// The bytes of the frames in `queued`.
    queued_bytes: usize,
    /// Flows that may have segments for the guest.
    tx_ready: VecDeque<FlowId>,
    /// TCP flows that entered TIME-WAIT, oldest first: reclaimed when the
    /// TCP flow limit is reached (their host sockets are closed already).
    time_wait: VecDeque<FlowId>,
    /// Reply buffer of the front desk.
    scratch: Vec<u8>,
    /// The receive buffer for host datagrams, DNS replies and
    /// echo replies (see `with_datagram_buf`); empty until first used.
    datagram_buf: Vec<u8>,
    /// TCP segments polled with `poll_guest_frame_offloaded` may be larger
    /// than the guest's MSS.
    gso_to_guest: bool,
    /// Datagrams larger than the guest's MTU, cut into fragments.
    to_guest: fragment::Fragmenter,
    counters: BackendCounters,
    /// The pcap capture of the guest's frames, if one is written.
    pub(crate) capture: Option<crate::capture::Capture>,
}

impl Backend {
    /// A backend for `config`, listening on its forwarded TCP ports.
    ///
    /// # Errors
    /// Invalid rules or limits, a port that cannot be bound, no epoll.
    pub fn new(config: BackendConfig, now: Instant) -> Result<Self, BackendError> {
        let nat = Nat::new(config.plan, config.rules.clone())?;
        let flows = FlowTable::with_limits(config.limits)?;
        let poller = Poller::new()?;
        let mtu = config.plan.mtu();
        let mut frontdesk = FrontDesk::new(config.plan, config.dhcp);
        frontdesk.set_router_config(config.router.clone());
        if let Some(v4) = config.plan.ipv4() {
            frontdesk.serve_v4(v4.gateway());
            frontdesk.serve_v4(v4.dns());
        }
        let dns_upstream = match config.rules.dns_upstream {
            Some(addr) => Some(addr),
            None => config.host_resolver,
        };
        let mut backend = Self {
            nat,
            frontdesk,
            flows,
            poller,
            events: Events::with_capacity(256),
            isn: IsnSource::new(now),
            syn_bucket: TokenBucket::new(config.new_tcp_per_second, now),
            tcp_config_v4: TcpConfig {
                handshake_timeout: config.tcp_handshake_timeout,
                ..TcpConfig::for_mtu_v4(mtu)
            },
            tcp_config_v6: TcpConfig {
                handshake_timeout: config.tcp_handshake_timeout,
                ..TcpConfig::for_mtu_v6(mtu)
            },
            tcp_half_open: HalfOpen::new(config.max_half_open_tcp),
            dns_upstream,
            listeners: Vec::new(),
            accept_backoff: Vec::new(),
            udp_listeners: Vec::new(),
            dns: None,
            echo_warned: false,
            dns_warned: false,
            queued: VecDeque::new(),
            queued_bytes: 0,
            tx_ready: VecDeque::new(),
            time_wait: VecDeque::new(),
            scratch: vec![0u8; 1514],
            datagram_buf: Vec::new(),
            gso_to_guest: false,
            capture: None,
            to_guest: fragment::Fragmenter::new(mtu),
            counters: BackendCounters::default(),
        };
        backend.listen_tcp_forwards(&config.rules)?;
        backend.start_udp(&config.rules)?;
        Ok(backend)
    }

    /// Lets TCP segments that [`FrameBackend::poll_guest_frame_offloaded`]
    /// hands out carry up to 64 KiB, whatever the guest's MSS, for a
    /// frontend that passes them on as GSO frames its guest cuts up (a tap
    /// with TSO). Off by default; [`FrameBackend::poll_guest_frame`]
    /// never does.
    pub fn set_gso_to_guest(&mut self, on: bool) {
        self.gso_to_guest = on;
    }

    /// The counters of the backend.
    #[must_use]
    pub fn counters(&self) -> &BackendCounters {
        &self.counters
    }

    /// The front desk's counters: frames, bytes, drops by reason.
    #[must_use]
    pub fn frame_counters(&self) -> &frontdesk::Counters {
        self.frontdesk.counters()
    }

    /// Flows open now, per protocol.
    #[must_use]
    pub fn open_flows(&self, protocol: flow_table::Protocol) -> u32 {
        self.flows.count(protocol)
    }

    /// The host addresses of the forwarded TCP listeners.
    #[must_use]
    pub fn tcp_listeners(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(Listener::local_addr).collect()
    }

    /// Blocks until a host socket is ready or `deadline` passes, then
    /// handles what is ready. A ready-made step for simple loops.
    ///
    /// # Errors
    /// The epoll set failed.
    pub fn wait(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        let deadline = match (deadline, self.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.poller.wait(&mut self.events, deadline)?;
        let now = Instant::now();
        self.dispatch_events(now);
        self.handle_timeout(now);
        Ok(())
    }

    fn listen_tcp_forwards(&mut self, rules: &Rules) -> Result<(), BackendError> {
        for forward in rules.tcp_forwards.iter() {
            let bind = forward.bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let listener = Listener::bind(SocketAddr::new(bind, forward.host_port))?;
            let index = u32::try_from(self.listeners.len()).unwrap_or(u32::MAX);
            if let Some(token) = Token::new(KIND_TCP_LISTENER, index, 0) {
                self.poller
                    .register(listener.fd(), token, epoll_dispatch::Interest::READABLE)?;
            }
            self.listeners.push(listener);
            self.accept_backoff.push(AcceptBackoff::default());
        }
        Ok(())
    }

    /// Takes forwarded listener `index` out of the epoll set after its
    /// `accept()` failed, until a deadline (100 ms, doubling to 1 s while
    /// it keeps failing) or until a flow closes: a connection it could not
    /// take keeps it readable, and accepting again at once would spin.
    pub(crate) fn pause_listener(&mut self, index: usize, now: Instant) {
        let (Some(listener), Some(backoff)) = (
            self.listeners.get(index),
            self.accept_backoff.get_mut(index),
        ) else {
            return;
        };
        if backoff.until.is_some() {
            return;
        }
        if let Err(error) = self.poller.unregister(listener.fd()) {
            tracing::warn!(%error, "cannot pause a listener");
            return;
        }
        let delay = backoff.next_delay;
        backoff.until = Some(now + delay);
        backoff.next_delay = (delay * 2).min(ACCEPT_PAUSE_MAX);
        backoff.flows_at_pause = self.flows.len();
        self.counters.accept_pauses += 1;
        tracing::debug!(
            ?delay,
            port = listener.local_addr().port(),
            "listener paused"
        );
    }

    /// Notes that listener `index` accepted: its next pause is short again.
    pub(crate) fn listener_accepted(&mut self, index: usize) {
        if let Some(backoff) = self.accept_backoff.get_mut(index) {
            backoff.next_delay = ACCEPT_PAUSE_MIN;
        }
    }

    /// Puts paused listeners back whose pause is over or since whose pause
    /// a flow closed (freeing a descriptor).
    fn resume_listeners(&mut self, now: Instant) {
        let open = self.flows.len();
        for (index, backoff) in self.accept_backoff.iter_mut().enumerate() {
            let Some(until) = backoff.until else {
                continue;
            };
            if now < until && open >= backoff.flows_at_pause {
                continue;
            }
            let (Some(listener), Some(token)) = (
                self.listeners.get(index),
                u32::try_from(index)
                    .ok()
                    .and_then(|i| Token::new(KIND_TCP_LISTENER, i, 0)),
            ) else {
                continue;
            };
            match self
                .poller
                .register(listener.fd(), token, epoll_dispatch::Interest::READABLE)
            {
                Ok(()) => backoff.until = None,
                Err(error) => tracing::warn!(%error, "cannot resume a listener"),
            }
        }
    }

    /// The end of the earliest listener pause.
    fn accept_resume_deadline(&self) -> Option<Instant> {
        self.accept_backoff.iter().filter_map(|b| b.until).min()
    }

    fn dispatch_events(&mut self, now: Instant) {
        let ready: Vec<_> = self.events.iter().collect();
        self.counters.host_events += ready.len() as u64;
        for (token, readiness) in ready {
            match token.kind() {
                KIND_TCP_FLOW => {
                    if let Some(id) = FlowId::from_parts(token.index(), token.generation()) {
                        self.tcp_readiness(id, readiness.into(), now);
                    }
                }
                KIND_TCP_LISTENER => self.tcp_accept(token.index() as usize, now),
                KIND_UDP_FLOW => {
                    if let Some(id) = FlowId::from_parts(token.index(), token.generation()) {
                        self.udp_readiness(id, readiness.is_readable(), readiness.is_error());
                    }
                }
                KIND_UDP_LISTENER => {
                    self.udp_listener_readiness(token.index() as usize, readiness, now);
                }
                KIND_DNS => self.dns_readable(now),
                KIND_ICMP_FLOW => {
                    if let Some(id) = FlowId::from_parts(token.index(), token.generation()) {
                        self.icmp_readiness(id, readiness, now);
                    }
                }
                _ => {}
            }
        }
        self.resume_listeners(now);
    }

    /// Bytes of the ready-made frames waiting for the guest (ARP, DHCP,
    /// ICMP, RSTs, datagrams without a socket to wait in); at most
    /// [`MAX_QUEUED_BYTES`].
    #[must_use]
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Whether a frame of `len` bytes fits the output queue; counts a drop
    /// when it does not.
    fn queue_has_room(&mut self, len: usize) -> bool {
        let fits = self.queued.len() < MAX_QUEUED_FRAMES
            && self.queued_bytes.saturating_add(len) <= MAX_QUEUED_BYTES;
        if !fits {
            self.counters.output_drops += 1;
            tracing::debug!(
                len,
                queued = self.queued_bytes,
                "output queue full; frame for the guest dropped"
            );
        }
        fits
    }

    /// Queues a ready-made frame for the guest.
    pub(crate) fn queue_frame(&mut self, frame: Vec<u8>) {
        let Some(frame) = self.queue_fragments(frame) else {
            return;
        };
        if !self.queue_has_room(frame.len()) {
            return;
        }
        self.queued_bytes += frame.len();
        self.queued.push_back(frame);
    }

    /// Builds a frame of at most `cap` bytes with `build` and queues it;
    /// nothing is allocated when it could not be queued.
    pub(crate) fn queue_built(
        &mut self,
        cap: usize,
        build: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) {
        if !self.queue_has_room(cap) {
            return;
        }
        let mut buf = vec![0u8; cap];
        if let Some(len) = build(&mut buf) {
            buf.truncate(len);
            self.queue_frame(buf);
        }
    }

    fn handle_ipv4(&mut self, datagram: &frontdesk::Ipv4Datagram<'_>, now: Instant) {
        let ends = (
            IpAddr::V4(datagram.header.src_addr),
            IpAddr::V4(datagram.header.dst_addr),
        );
        // ICMP echo request: type 8 (RFC 792).
        self.handle_transport(datagram.packet, ends, datagram.transport, 8, now);
    }

    /// The transport content of a guest's IPv4 or IPv6 datagram `packet`
    /// from `src` to `dst`, to the relay of its protocol; `echo_request` is
    /// the family's ICMP echo request type.
    pub(super) fn handle_transport(
        &mut self,
        packet: &[u8],
        (src, dst): (IpAddr, IpAddr),
        transport: Transport<'_>,
        echo_request: u8,
        now: Instant,
    ) {
        match transport {
            Transport::Tcp(segment) => self.tcp_from_guest(src, dst, &segment, now),
            Transport::Udp {
                src_port,
                dst_port,
                payload,
            } => {
                let ends = (
                    SocketAddr::new(src, src_port),
                    SocketAddr::new(dst, dst_port),
                );
                self.udp_from_guest(packet, ends, payload, now);
            }
            Transport::Icmp {
                msg_type,
                code: 0,
                message,
            } if msg_type == echo_request => {
                self.echo_from_guest(packet, (src, dst), message, now);
            }
            Transport::Icmp { .. } | Transport::Other { .. } => {
                tracing::trace!(%src, %dst, "datagram not relayed");
            }
        }
    }

    /// An ICMP destination unreachable to the guest about `offending`,
    /// unless [`Self::icmp_error_allowed`] forbids one.
    pub(crate) fn queue_icmp_unreachable(&mut self, offending: &[u8], code: Icmpv4DstUnreachable) {
        let addr = |at: usize| {
            let b = offending.get(at..at + 4)?;
            Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        };
        let (Some(src), Some(dst)) = (addr(12), addr(16)) else {
            return;
        };
        if !self.icmp_error_allowed(src, dst) {
            return;
        }
        let link = self.frontdesk.link_to_guest();
        let Some(gateway) = self.frontdesk.plan().ipv4().map(|v4| v4.gateway()) else {
            return;
        };
        self.queue_built(ICMP_ERROR_FRAME_CAP, |buf| {
            build_icmp_v4_error(
                buf,
                link,
                gateway,
                Icmpv4Error::DstUnreachable(code),
                offending,
            )
        });
    }

    /// Whether the guest may get an ICMP error about its datagram from
    /// `src` to `dst`: the one check every ICMP error to the guest passes.
    /// Never about a datagram to a group address (see
    /// [`to_or_from_a_group`](Self::to_or_from_a_group)), as RFC 1122
    /// 3.2.2 says. A refusal is counted.
    pub(crate) fn icmp_error_allowed(&mut self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.to_or_from_a_group(src, dst) {
            self.counters.icmp_errors_suppressed += 1;
            tracing::debug!(%src, %dst, "no ICMP error about a datagram to or from a group address");
            return false;
        }
        true
    }

    /// True for a datagram to a broadcast address (255.255.255.255, or the
    /// plan's network's first or last address) or a multicast one, or from
    /// a source that does not name a single host (unspecified, loopback,
    /// broadcast, multicast or class E). Nothing answers such a datagram
    /// with an error: no ICMP error (RFC 1122 3.2.2), no TCP reset (RFC
    /// 1122 4.2.3.10, a SYN to a group address is silently discarded).
    pub(crate) fn to_or_from_a_group(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let network = self.frontdesk.plan().ipv4().map(|v4| v4.network());
        let subnet_broadcast =
            |a: Ipv4Addr| network.is_some_and(|n| a == n.network() || a == n.last());
        let dst_is_group = dst.is_broadcast() || dst.is_multicast() || subnet_broadcast(dst);
        let src_not_a_host = src.is_unspecified()
            || src.is_loopback()
            || src.is_multicast()
            || src.octets()[0] >= 240
            || subnet_broadcast(src);
        dst_is_group || src_not_a_host
    }

    /// The host address DNS traffic goes to.
    pub(crate) fn dns_target(&self, upstream: DnsUpstream) -> Option<SocketAddr> {
        match upstream {
            DnsUpstream::Configured(addr) => Some(addr),
            DnsUpstream::HostResolver => self.dns_upstream,
        }
    }

    /// What the guest sees as the source of a host peer `peer`: the gateway
    /// for host loopback, the peer itself otherwise.
    pub(crate) fn guest_view_of_peer(&self, peer: SocketAddr) -> Option<SocketAddrV4> {
        let v4 = self.frontdesk.plan().ipv4()?;
        match peer.ip() {
            IpAddr::V4(ip) if ip.is_loopback() || ip.is_unspecified() => {
                Some(SocketAddrV4::new(v4.gateway(), peer.port()))
            }
            IpAddr::V4(ip) => Some(SocketAddrV4::new(ip, peer.port())),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(ip) if !ip.is_loopback() => Some(SocketAddrV4::new(ip, peer.port())),
                _ => Some(SocketAddrV4::new(v4.gateway(), peer.port())),
            },
        }
    }
}

impl Backend {
    fn take_guest_frame(&mut self, frame: &[u8], checksums: TransportChecksums, now: Instant) {
        // One scratch buffer for the front desk's replies (ARP, DHCP, NDP): a
        // TCP segment, the common case, allocates nothing.
        let mut scratch = std::mem::take(&mut self.scratch);
        match self
            .frontdesk
            .handle_frame_with(frame, checksums, now, &mut scratch)
        {
            Outcome::Reply(len) => {
                let reply = scratch.get(..len).map(<[u8]>::to_vec);
                if let Some(reply) = reply {
                    self.queue_frame(reply);
                }
            }
            Outcome::Ipv4(datagram) => self.handle_ipv4(&datagram, now),
            Outcome::Reassembled => self.take_reassembled(&mut scratch, now),
            Outcome::Ipv6(datagram) => self.handle_ipv6(&datagram, now),
            Outcome::Consumed | Outcome::Dropped(_) => {}
        }
        self.scratch = scratch;
    }

    /// Queues the frames the front desk sends of its own accord (router
    /// advertisements).
    fn queue_front_desk_frames(&mut self) {
        let mut scratch = std::mem::take(&mut self.scratch);
        // Bounded: the front desk holds at most one such frame at a time.
        for _ in 0..4 {
            let Some(len) = self.frontdesk.poll_transmit(&mut scratch) else {
                break;
            };
            if let Some(frame) = scratch.get(..len).map(<[u8]>::to_vec) {
                self.queue_frame(frame);
            }
        }
        self.scratch = scratch;
    }

    /// The next frame for the guest, its TCP or UDP checksum written as
    /// `fill` says (queued frames always carry whole checksums).
    fn next_guest_frame(
        &mut self,
        buf: &mut [u8],
        fill: ChecksumFill,
        now: Instant,
    ) -> Option<GuestFrame> {
        // Bounded: each turn takes a frame off the queue.
        while let Some(frame) = self.queued.pop_front() {
            self.queued_bytes -= frame.len();
            let Some(dst) = buf.get_mut(..frame.len()) else {
                // Cut to fit, it would carry a wrong IP length.
                self.counters.buffer_too_small_drops += 1;
                tracing::debug!(
                    len = frame.len(),
                    buf = buf.len(),
                    "frame for the guest longer than the buffer; dropped"
                );
                continue;
            };
            dst.copy_from_slice(&frame);
            self.counters.frames_to_guest += 1;
            return Some(GuestFrame {
                len: frame.len(),
                checksum: Checksum::Complete,
                gso_mss: None,
            });
        }
        // Segments the frontend cuts up need partial checksums.
        let gso = self.gso_to_guest && fill == ChecksumFill::Partial;
        // Bounded: each flow leaves the queue once it has nothing to send.
        for _ in 0..self.tx_ready.len().saturating_add(1) {
            let id = *self.tx_ready.front()?;
            let is_udp = matches!(self.flows.get(id), Some(Flow::Udp(_)));
            let version = self.flows.key(id).map(flow_table::FlowKey::ip_version);
            let frame = if is_udp {
                self.udp_poll_frame(id, buf, fill, now)
                    .map(|len| (len, None))
            } else {
                self.tcp_poll_frame(id, buf, (fill, gso), now)
            };
            if let Some((len, gso_mss)) = frame {
                self.counters.frames_to_guest += 1;
                let checksum = match fill {
                    ChecksumFill::Complete => Checksum::Complete,
                    // A fragment's checksum covers the whole datagram.
                    ChecksumFill::Partial if is_udp && fragment::is_fragment(&buf[..len]) => {
                        Checksum::Complete
                    }
                    ChecksumFill::Partial => {
                        self.counters.partial_checksums_to_guest += 1;
                        partial_checksum(version, is_udp)
                    }
                };
                if gso_mss.is_some() {
                    self.counters.gso_frames_to_guest += 1;
                }
                return Some(GuestFrame {
                    len,
                    checksum,
                    gso_mss,
                });
            }
            self.tx_ready.pop_front();
            if is_udp {
                self.udp_tx_done(id);
            } else {
                self.tcp_reap(id);
            }
        }
        None
    }
}

/// Where the partial checksum of a flow's frame lies: past the IP header of
/// the flow's version (the builders write neither IPv4 options nor IPv6
/// extension headers), at the TCP or UDP checksum field.
fn partial_checksum(version: Option<IpVersion>, is_udp: bool) -> Checksum {
    let start = match version {
        Some(IpVersion::V6) => L4_START_V6,
        Some(IpVersion::V4) | None => L4_START_V4,
    };
    let offset = if is_udp {
        UDP_CHECKSUM_OFFSET
    } else {
        TCP_CHECKSUM_OFFSET
    };
    Checksum::Partial { start, offset }
}

impl FrameBackend for Backend {
    fn handle_guest_frame(&mut self, frame: &[u8], now: Instant) {
        self.capture_frame(frame);
        self.take_guest_frame(frame, TransportChecksums::Verify, now);
    }

    fn handle_guest_frame_offloaded(&mut self, frame: &[u8], checksum: Checksum, now: Instant) {
        self.capture_frame(frame);
        let checksums = match checksum {
            Checksum::Complete => TransportChecksums::Verify,
            Checksum::Partial { .. } | Checksum::Valid => TransportChecksums::Offloaded,
        };
        self.take_guest_frame(frame, checksums, now);
    }

    fn poll_guest_frame(&mut self, buf: &mut [u8], now: Instant) -> Option<usize> {
        let len = self.next_guest_frame(buf, ChecksumFill::Complete, now)?.len;
        if let Some(frame) = buf.get(..len) {
            self.capture_frame(frame);
        }
        Some(len)
    }

    /// Offload is taken except while a capture is written, so that the
    /// capture holds whole checksums.
    fn offloads_checksums(&self) -> bool {
        self.capture.is_none()
    }

    fn poll_guest_frame_offloaded(&mut self, buf: &mut [u8], now: Instant) -> Option<GuestFrame> {
        // A caller that offloads regardless still gets whole checksums
        // while a capture is written.
        let fill = if self.capture.is_some() {
            ChecksumFill::Complete
        } else {
            ChecksumFill::Partial
        };
        let frame = self.next_guest_frame(buf, fill, now)?;
        if let Some(bytes) = buf.get(..frame.len) {
            self.capture_frame(bytes);
        }
        Some(frame)
    }
}

impl Served for Backend {
    fn handle_host_events(&mut self, now: Instant) -> io::Result<()> {
        self.poller.wait(&mut self.events, Some(now))?;
        self.dispatch_events(now);
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        // Bounded by the number of flows: each expired deadline pops once.
        for _ in 0..self.flows.len().saturating_add(1) {
            let Some(id) = self.flows.pop_expired(now) else {
                break;
            };
            self.counters.timers_fired += 1;
            match self.flows.get(id) {
                Some(Flow::Tcp(_)) => self.tcp_timeout(id, now),
                Some(Flow::Udp(_) | Flow::Icmp(_)) => self.datagram_timeout(id, now),
                None => {}
            }
        }
        if let Some(dns) = self.dns.as_mut() {
            dns.handle_timeouts(now);
        }
        self.resume_listeners(now);
        self.frontdesk.handle_timeout(now);
        self.queue_front_desk_frames();
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        let dns = self
            .dns
            .as_ref()
            .and_then(relay_udp_icmp::DnsForwarder::next_deadline);
        // Datagrams in reassembly time out too.
        [
            self.flows.next_deadline(),
            dns,
            self.accept_resume_deadline(),
            self.frontdesk.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn host_fd(&self) -> BorrowedFd<'_> {
        self.poller.as_fd()
    }

    /// Every TCP flow is closed or only lingering in TIME-WAIT.
    fn is_settled(&self) -> bool {
        self.tcp_flows_by_phase()
            .iter()
            .all(|(phase, _)| matches!(phase, Phase::TimeWait | Phase::Closed))
    }

    fn handle_idle(&mut self) {
        self.flush_capture();
    }
}
