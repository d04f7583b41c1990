//! A vhost-user-net device (`slipway vhost-user`): the VMM (QEMU,
//! cloud-hypervisor) keeps the virtio-net device model and hands this
//! process the guest's memory and the two virtqueues over a UNIX socket;
//! the device core ([`NetDevice`]) serves the queues, moving frames between
//! them and a backend.
//!
//! [`VhostUserFrontend`] is a frontend of `epoll-dispatch`'s serving loop
//! ([`epoll_dispatch::serve`]), for any backend that is both a
//! [`FrameBackend`] and [`Served`]: one thread does everything, one epoll
//! set holds the vhost-user socket, the kick eventfd of each vring, the
//! backend's descriptor and the stop sources, and the backend's deadlines
//! are the wait's timeout. The backend, the device core, the rings and the
//! guest memory are owned by this loop and lent by `&mut`; nothing is
//! shared with another thread, so nothing is locked.
//!
//! The vhost-user messages are handled here rather than by the
//! `vhost-user-backend` crate: QEMU's virtio-net enables its vrings with
//! `SET_VRING_ENABLE` before it sends `SET_FEATURES`, which that crate
//! refuses (the feature that allows the message is not acked yet), and
//! without `VHOST_USER_F_PROTOCOL_FEATURES` QEMU does not start vhost for
//! virtio-net at all. A ring's enable state is therefore kept apart from
//! its start (the kick descriptor) and from the features.
//!
//! The VMM is trusted to run the guest, not to behave, and nothing it
//! does may stop the loop or kill the process:
//! - Guest memory must be sealed against shrinking (`F_SEAL_SHRINK`, read
//!   with `F_GET_SEALS`): a file the VMM truncated under the mapping would
//!   turn the next access of the rings into SIGBUS. QEMU's
//!   `memory-backend-memfd` seals its memfd so by default (`seal=on`); an
//!   unsealed region (`memory-backend-file` on /dev/shm or hugetlbfs, a
//!   memfd made without seals) is refused with an error naming that
//!   backend, which ends the connection.
//! - The kick and call eventfds are made non-blocking when they arrive
//!   (on the file description the VMM shares, as QEMU's own are), and a
//!   kick with nothing to read is no kick: a descriptor replaced while a
//!   kick was pending cannot hold the loop in a read.
//! - Messages are assembled from non-blocking reads in the connection's
//!   buffer, and replies wait there for room: a VMM that stalls inside a
//!   message, or does not read its replies, leaves a partial message or a
//!   reply buffered (for as long as it takes; nothing times it out) while
//!   the rings, the backend and the stop sources are served.
//!
//! Invariant: as in the other frontends, every frame the guest transmits
//! goes to the backend and every frame the backend hands out is written
//! into the guest's receive buffers or kept in the device core until there
//! is room; no frame is dropped without a count.

mod protocol;
mod vring;

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::time::Instant;

use epoll_dispatch::serve::{
    Frontend, Pass, ServeEnd, Served, StopWhen, frontend_kind, frontend_token, note_indexed,
};
use epoll_dispatch::{Interest, Kind, Poller, Readiness, Token};
use vm_memory::GuestMemoryMmap;

use self::protocol::{Connection, F_PROTOCOL_FEATURES, Message, Received};
pub use self::vring::MAX_QUEUE_SIZE;
use self::vring::{MemoryTable, Vring};
use crate::{DEVICE_FEATURES, FrameBackend, NetConfig, NetCounters, NetDevice, RX_QUEUE, TX_QUEUE};

const TOKEN_LISTENER: Token = frontend_token(0);
const TOKEN_CONN: Token = frontend_token(1);
const KIND_KICK: Kind = frontend_kind(2);

/// Calls of a queue's handler per pass before the loop looks at its other
/// sources; a queue with work left is served again on the next pass.
const ROUNDS: usize = 8;

/// A vhost-user-net device on a listening socket, for one VMM at a time.
#[derive(Debug)]
pub struct VhostUserFrontend {
    listener: UnixListener,
    conn: Option<Connection>,
    /// The connection is watched for room to send a reply rather than for
    /// messages.
    conn_sending: bool,
    device: NetDevice,
    memory: Option<(GuestMemoryMmap, MemoryTable)>,
    vrings: [Vring; 2],
    /// What the last wait reported, for the next pass.
    ready: Ready,
    /// The transmit ring has work left.
    tx_more: bool,
    /// The receive ring has work left: frames for the guest wait.
    rx_more: bool,
}

impl VhostUserFrontend {
    /// A device that tells the guest `config` (where the VMM asks), served
    /// to the first VMM that connects to `listener` (made non-blocking).
    ///
    /// # Errors
    /// The listener cannot be made non-blocking, or an eventfd cannot be
    /// created.
    pub fn new(listener: UnixListener, config: NetConfig) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            conn: None,
            conn_sending: false,
            device: NetDevice::new(config),
            memory: None,
            vrings: [Vring::new()?, Vring::new()?],
            ready: Ready::default(),
            tx_more: false,
            rx_more: false,
        })
    }

    /// Whether to offload TCP and UDP checksums to the guest where its
    /// driver negotiated it (on by default): partial checksums from the
    /// guest (`VIRTIO_NET_F_CSUM`) reach the backend unverified, and frames
    /// to it (`VIRTIO_NET_F_GUEST_CSUM`) carry partial ones. Off, or while
    /// the backend takes no offload (it writes a capture), every checksum is
    /// whole.
    pub fn set_checksum_offload(&mut self, on: bool) {
        self.device.set_checksum_offload(on);
    }

    /// The device core's counters.
    #[must_use]
    pub fn counters(&self) -> &NetCounters {
        self.device.counters()
    }

    /// Serves the guest until the VMM disconnects or `stop` says so.
    ///
    /// # Errors
    /// The epoll set, the backend's epoll set or the signalfd failed. A
    /// frontend's bad message ends its connection, which ends serving.
    pub fn serve<B>(&mut self, backend: &mut B, stop: &StopWhen<'_>) -> io::Result<ServeEnd>
    where
        B: FrameBackend + Served + ?Sized,
    {
        epoll_dispatch::serve::serve(self, backend, stop)
    }

    /// One pass of [`serve`](Self::serve) that never waits, for a caller
    /// that drives the connection itself (the fuzz target writes a
    /// message sequence into a connected socket, then calls this): takes a
    /// waiting VMM's connection, handles every message that has arrived,
    /// drains the kicks, runs the backend's host events and timers at
    /// `now`, and serves both rings once. Returns the end of serving once
    /// the connection has ended (as `serve` would), `None` otherwise.
    ///
    /// # Errors
    /// As [`serve`](Self::serve): an epoll set failed.
    pub fn serve_pass<B>(&mut self, backend: &mut B, now: Instant) -> io::Result<Option<ServeEnd>>
    where
        B: FrameBackend + Served + ?Sized,
    {
        // Nothing waits on this epoll set; it takes the registrations the
        // message handlers make (the listener, the connection, the kicks).
        let poller = Poller::new()?;
        if self.conn.is_none() {
            poller.register(&self.listener, TOKEN_LISTENER, Interest::READABLE)?;
            self.accept(&poller)?;
        }
        if let Some(end) = self.handle_messages(&poller) {
            return Ok(Some(end));
        }
        if let Err(error) = self.drain_kicks([true, true]) {
            tracing::debug!(%error, "vhost-user connection ended");
            return Ok(Some(ServeEnd::Disconnected));
        }
        backend.handle_host_events(now)?;
        backend.handle_timeout(now);
        self.serve_queues(true, backend, now);
        Ok(None)
    }

    /// Serves the transmit ring if `tx` says it has work, then the receive
    /// ring; returns whether each has work left.
    fn serve_queues<B: FrameBackend + ?Sized>(
        &mut self,
        tx: bool,
        backend: &mut B,
        now: Instant,
    ) -> (bool, bool) {
        let tx_more = tx && self.serve_queue(TX_QUEUE, backend, now);
        let rx_more = self.serve_queue(RX_QUEUE, backend, now);
        (tx_more, rx_more)
    }

    /// Reads the kick eventfds the last wait reported, which does not
    /// wait: each is non-blocking since it arrived, and one replaced since
    /// the wait may have nothing to read.
    fn drain_kicks(&self, kicks: [bool; 2]) -> io::Result<()> {
        for (index, (vring, kicked)) in self.vrings.iter().zip(kicks).enumerate() {
            if kicked {
                vring
                    .drain_kick()
                    .map_err(|e| io::Error::new(e.kind(), format!("vring {index}: {e}")))?;
            }
        }
        Ok(())
    }

    /// Takes a waiting VMM's connection.
    fn accept(&mut self, poller: &Poller) -> io::Result<()> {
        let listener = &self.listener;
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                poller.register(&stream, TOKEN_CONN, Interest::READABLE)?;
                // One frontend at a time: others wait in the backlog and
                // are refused when the process exits.
                poller.unregister(listener)?;
                tracing::info!("vhost-user frontend connected");
                self.conn = Some(Connection::new(stream));
                self.conn_sending = false;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(error) => {
                tracing::warn!(%error, "cannot accept a connection");
                Ok(())
            }
        }
    }

    /// Handles every message that has arrived; returns the end of serving
    /// when the connection ends.
    fn handle_messages(&mut self, poller: &Poller) -> Option<ServeEnd> {
        let result = self.receive_messages(poller);
        let result = result.and_then(|closed| {
            self.watch_conn(poller)?;
            Ok(closed)
        });
        match result {
            Ok(false) => None,
            Ok(true) => {
                tracing::info!("the vhost-user frontend disconnected");
                Some(ServeEnd::Disconnected)
            }
            Err(error) => {
                tracing::warn!(%error, "vhost-user connection ended");
                Some(ServeEnd::Disconnected)
            }
        }
    }

    /// Sends what waits of a reply, then handles the messages that have
    /// arrived whole; returns whether the frontend closed the connection.
    fn receive_messages(&mut self, poller: &Poller) -> io::Result<bool> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        conn.flush()?;
        // Bounded: each message is at least a header the frontend sent;
        // the connection stays readable for the next pass if more came.
        for _ in 0..64 {
            let Some(conn) = self.conn.as_mut() else {
                return Ok(false);
            };
            match conn.receive()? {
                Received::Message(message) => self.handle_message(message, poller)?,
                Received::Empty => return Ok(false),
                Received::Closed => return Ok(true),
            }
        }
        Ok(false)
    }

    /// Watches the connection for room to send while a reply waits (its
    /// messages are not read meanwhile, so it is not watched for them),
    /// for messages otherwise.
    fn watch_conn(&mut self, poller: &Poller) -> io::Result<()> {
        let Some(conn) = &self.conn else {
            return Ok(());
        };
        let sending = conn.is_sending();
        if sending != self.conn_sending {
            let interest = if sending {
                Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            poller.modify(conn.stream(), TOKEN_CONN, interest)?;
            self.conn_sending = sending;
        }
        Ok(())
    }

    fn handle_message(&mut self, message: Message, poller: &Poller) -> io::Result<()> {
        tracing::debug!(
            request = message.request,
            len = message.payload.len(),
            "vhost-user message"
        );
        match message.request {
            protocol::GET_FEATURES => self.reply(
                &message,
                &(DEVICE_FEATURES | F_PROTOCOL_FEATURES).to_ne_bytes(),
            ),
            protocol::SET_FEATURES => self.set_features(message.u64_at(0)?),
            protocol::GET_PROTOCOL_FEATURES => self.reply(&message, &0u64.to_ne_bytes()),
            protocol::GET_QUEUE_NUM => self.reply(&message, &2u64.to_ne_bytes()),
            protocol::SET_OWNER | protocol::SET_PROTOCOL_FEATURES | protocol::SEND_RARP => Ok(()),
            protocol::RESET_OWNER => {
                self.reset(poller);
                Ok(())
            }
            protocol::SET_MEM_TABLE => {
                let (memory, table) = vring::map_memory(&message)?;
                self.memory = Some((memory, table));
                Ok(())
            }
            protocol::SET_VRING_NUM => {
                let (vring, num) = self.vring_state(&message)?;
                vring.set_size(num)
            }
            protocol::SET_VRING_ADDR => {
                let table = self.memory.as_ref().map(|(_, table)| table);
                let index = message.u32_at(0)?;
                let vring = vring_mut(&mut self.vrings, index)?;
                vring.set_addresses(&message, table)
            }
            protocol::SET_VRING_BASE => {
                let (vring, num) = self.vring_state(&message)?;
                vring.set_base(num)
            }
            protocol::GET_VRING_BASE => {
                let index = message.u32_at(0)?;
                let vring = vring_mut(&mut self.vrings, index)?;
                let base = vring.stop(poller);
                // Once both rings stop, the receive chains the device core
                // holds and its waiting frame belong to a driver that is
                // going away.
                if self.vrings.iter().all(|vring| !vring.is_started()) {
                    self.device.reset();
                }
                let mut payload = index.to_ne_bytes().to_vec();
                payload.extend_from_slice(&u32::from(base).to_ne_bytes());
                self.reply(&message, &payload)
            }
            protocol::SET_VRING_KICK | protocol::SET_VRING_CALL | protocol::SET_VRING_ERR => {
                self.set_vring_fd(message, poller)
            }
            protocol::SET_VRING_ENABLE => {
                let (vring, num) = self.vring_state(&message)?;
                vring.set_enabled(num != 0);
                Ok(())
            }
            other => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("vhost-user request {other} is not supported"),
            )),
        }
    }

    fn reply(&mut self, message: &Message, payload: &[u8]) -> io::Result<()> {
        match &mut self.conn {
            Some(conn) => conn.reply(message.request, payload),
            None => Ok(()),
        }
    }

    /// The ring and number of a `vhost_vring_state` payload.
    fn vring_state(&mut self, message: &Message) -> io::Result<(&mut Vring, u32)> {
        let index = message.u32_at(0)?;
        let num = message.u32_at(4)?;
        Ok((vring_mut(&mut self.vrings, index)?, num))
    }

    fn set_features(&mut self, features: u64) -> io::Result<()> {
        let virtio = features & !F_PROTOCOL_FEATURES;
        tracing::debug!(features = format_args!("{virtio:#x}"), "features acked");
        // The VMM sets the features each time it starts the device: what
        // the device core kept belongs to the rings of before. While the
        // rings run (the VMM toggles logging for a migration) it keeps
        // the receive chains it holds.
        if self.vrings.iter().all(|vring| !vring.is_started()) {
            self.device.reset();
        }
        self.device
            .set_acked_features(virtio)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if features & F_PROTOCOL_FEATURES == 0 {
            for vring in &mut self.vrings {
                vring.set_enabled(true);
            }
        }
        Ok(())
    }

    fn set_vring_fd(&mut self, mut message: Message, poller: &Poller) -> io::Result<()> {
        let value = message.u64_at(0)?;
        let index = u32::try_from(value & 0xff).unwrap_or(u32::MAX);
        let fd = if value & protocol::VRING_NOFD == 0 {
            let fd: Option<OwnedFd> = message.fds.pop();
            let fd = fd.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "vring descriptor missing")
            })?;
            // An eventfd the VMM made blocking would stop the loop in a
            // read with nothing to read. The VMM shares the file
            // description, as QEMU's own eventfds (EFD_NONBLOCK) already
            // are; its kernel side (ioeventfd, irqfd) is not affected.
            rustix::io::ioctl_fionbio(&fd, true)?;
            Some(fd)
        } else {
            None
        };
        let vring = vring_mut(&mut self.vrings, index)?;
        match message.request {
            protocol::SET_VRING_KICK => {
                let token = Token::new(KIND_KICK, index, 0)
                    .ok_or_else(|| io::Error::other("vring index out of range"))?;
                vring.start(fd, poller, token)
            }
            protocol::SET_VRING_CALL => {
                vring.set_call(fd);
                Ok(())
            }
            // Errors are not reported; the descriptor is closed.
            _ => Ok(()),
        }
    }

    /// Forgets the rings, the memory and the features, as `RESET_OWNER`
    /// asks.
    fn reset(&mut self, poller: &Poller) {
        for vring in &mut self.vrings {
            vring.stop(poller);
            vring.set_call(None);
            vring.set_enabled(false);
        }
        self.memory = None;
        self.device.reset();
    }

    /// Runs the device core on ring `index` for up to [`ROUNDS`] calls;
    /// returns whether work is left.
    fn serve_queue<B: FrameBackend + ?Sized>(
        &mut self,
        index: u16,
        backend: &mut B,
        now: Instant,
    ) -> bool {
        let Some((memory, _)) = &self.memory else {
            return false;
        };
        let Some(vring) = self.vrings.get_mut(usize::from(index)) else {
            return false;
        };
        let Some((queue, call)) = vring.running() else {
            return false;
        };
        let mut more = false;
        for _ in 0..ROUNDS {
            more = if index == TX_QUEUE {
                self.device.handle_tx(memory, queue, backend, call, now)
            } else {
                self.device.handle_rx(memory, queue, backend, call, now)
            };
            if !more {
                break;
            }
        }
        more
    }
}

/// Which of the frontend's sources the last wait reported.
#[derive(Clone, Copy, Debug, Default)]
struct Ready {
    listener: bool,
    conn: bool,
    /// Per vring: its kick eventfd.
    kicks: [bool; 2],
}

impl<B: FrameBackend + Served + ?Sized> Frontend<B> for VhostUserFrontend {
    fn register(&mut self, poller: &Poller) -> io::Result<()> {
        poller.register(&self.listener, TOKEN_LISTENER, Interest::READABLE)
    }

    fn note_first_pass(&mut self) {
        self.ready = Ready {
            listener: true,
            ..Ready::default()
        };
        self.tx_more = false;
        self.rx_more = false;
    }

    fn note_ready(&mut self, token: Token, _readiness: Readiness) {
        match token {
            TOKEN_LISTENER => self.ready.listener = true,
            TOKEN_CONN => self.ready.conn = true,
            _ => {
                note_indexed(&mut self.ready.kicks, token, KIND_KICK);
            }
        }
    }

    fn handle_input(
        &mut self,
        poller: &Poller,
        _backend: &mut B,
        _now: Instant,
    ) -> io::Result<Pass> {
        let ready = std::mem::take(&mut self.ready);
        if ready.listener && self.conn.is_none() {
            self.accept(poller)?;
        }
        if ready.conn {
            if let Some(end) = self.handle_messages(poller) {
                return Ok(Pass::End(end));
            }
            // A ring may have started with chains already queued.
            self.tx_more = true;
        }
        if let Err(error) = self.drain_kicks(ready.kicks) {
            tracing::warn!(%error, "vhost-user connection ended");
            return Ok(Pass::End(ServeEnd::Disconnected));
        }
        self.tx_more |= ready.kicks[usize::from(TX_QUEUE)];
        Ok(Pass::Idle)
    }

    fn handle_output(
        &mut self,
        _poller: &Poller,
        backend: &mut B,
        now: Instant,
    ) -> io::Result<Pass> {
        let (tx_left, rx_more) = self.serve_queues(self.tx_more, backend, now);
        self.tx_more = tx_left;
        self.rx_more = rx_more;
        Ok(Pass::busy_if(tx_left || rx_more))
    }

    fn is_flushed(&self) -> bool {
        !self.rx_more
    }
}

fn vring_mut(vrings: &mut [Vring; 2], index: u32) -> io::Result<&mut Vring> {
    usize::try_from(index)
        .ok()
        .and_then(|i| vrings.get_mut(i))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("vring {index}: the device has two"),
            )
        })
}
