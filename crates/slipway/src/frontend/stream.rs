//! The stream frontend: QEMU's `-netdev stream` protocol on a UNIX stream
//! socket (length-prefixed frames, see [`framing`](super::framing)), served
//! by the serving loop, which sleeps in one epoll set until the client's socket is
//! readable (or writable, while frames wait), a new client knocks, the
//! backend's host sockets are ready, a stop source fires, or the backend's
//! next deadline comes.
//!
//! One client at a time: while one is connected, every further connection
//! is accepted and closed at once (the client sees end-of-file) and
//! counted. When the client disconnects, serving ends
//! ([`ServeEnd::Disconnected`]) unless [`AfterDisconnect::Listen`] says to
//! wait for the next one.
//!
//! Hostile input: a length prefix over
//! [`MAX_WIRE_FRAME`](super::framing::MAX_WIRE_FRAME) leaves nothing to
//! resynchronise on, so it closes the connection, counted and logged; it
//! is the only frame that does. A frame longer than the MTU allows (but
//! within that bound), and one too short for an Ethernet header (0 to 13
//! bytes), is skipped and counted, and the connection stays up.
//!
//! Invariant: the loop never blocks on the client and never queues without
//! bound. Frames the client has not taken stay in the fixed-size
//! [`Outbox`]; while it is full, no frame is taken from the backend
//! (backpressure) and the loop waits for `EPOLLOUT`. The frontend drops a
//! frame for the guest only when its client disconnects, and counts it.
//! The client's frames are read even while its socket is full, so a guest
//! that writes before it reads cannot deadlock with slipway: TCP data then
//! waits in the host sockets, and the front desk's replies in the
//! backend's bounded queue, whose overflow the backend counts.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use epoll_dispatch::serve::{Frontend, Pass, frontend_token, is_failed};
use epoll_dispatch::{Interest, Poller, Readiness, Token};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SendFlags, SocketType};
use thiserror::Error;

use super::framing::{Decoded, FrameDecoder, FramingError, Outbox};
use super::{ServeEnd, StopWhen};
use crate::{Backend, FrameBackend};

/// Reads from the client per pass of the loop, so that host traffic is not
/// starved by a guest that sends without pause.
const READ_BATCH: usize = 16;

/// Frames handed to the backend per pass, so that the replies to them are
/// written before more come.
const FRAME_BATCH: usize = 256;

/// Frames taken from the backend per pass of the loop before it looks at
/// its other sources again; the next wait then does not sleep.
const WRITE_BATCH: usize = 256;

/// Connections accepted per wakeup of the listener.
const ACCEPT_BATCH: usize = 8;

const TOKEN_LISTENER: Token = frontend_token(0);
const TOKEN_CLIENT: Token = frontend_token(1);

/// What the stream frontend does when its client disconnects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AfterDisconnect {
    /// Serving ends (the default of `slipway stream`).
    #[default]
    Exit,
    /// The frontend waits for the next client (`--keep-listening`).
    Listen,
}

/// Why the socket could not be bound.
#[derive(Debug, Error)]
pub enum BindError {
    /// Another process listens on the path.
    #[error("{}: another process is listening on this socket", path.display())]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the path.
    #[error("{}: the file exists and is not a socket", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The system call failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A listening UNIX stream socket bound at a path; the socket file is
/// removed when this is dropped (if it is still the one bound).
#[derive(Debug)]
pub struct StreamSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file, to remove only our own.
    file: (u64, u64),
}

impl StreamSocket {
    /// Binds and listens on `path`, non-blocking. A socket file already at
    /// `path` that nobody listens on (left by a process that was killed) is
    /// replaced, as passt does.
    ///
    /// # Errors
    /// A process listens on `path`, a file that is not a socket is there,
    /// or `bind`/`listen` failed.
    pub fn bind(path: &Path) -> Result<Self, BindError> {
        let io_error = |source| BindError::Io {
            path: path.to_owned(),
            source,
        };
        let listener = match UnixListener::bind(path) {
            Ok(listener) => listener,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                replace_stale(path)?;
                UnixListener::bind(path).map_err(io_error)?
            }
            Err(e) => return Err(io_error(e)),
        };
        listener.set_nonblocking(true).map_err(io_error)?;
        let meta = std::fs::metadata(path).map_err(io_error)?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            file: (meta.dev(), meta.ino()),
        })
    }

    /// The socket's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second handle on the listening socket, for a server that accepts
    /// on its own (the vhost-user daemon).
    ///
    /// # Errors
    /// `dup` failed.
    pub fn try_clone_listener(&self) -> io::Result<UnixListener> {
        self.listener.try_clone()
    }
}

/// Removes the socket file at `path` if nobody listens on it.
fn replace_stale(path: &Path) -> Result<(), BindError> {
    let io_error = |source| BindError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io_error)?;
    if !meta.file_type().is_socket() {
        return Err(BindError::NotASocket {
            path: path.to_owned(),
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(BindError::InUse {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing a stale socket file");
            std::fs::remove_file(path).map_err(io_error)
        }
        Err(e) => Err(io_error(e)),
    }
}

impl Drop for StreamSocket {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.file);
        if !ours {
            return;
        }
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::debug!(%error, path = %self.path.display(), "cannot remove the socket");
        }
    }
}

/// Takes ownership of descriptor `raw`, which must be a connected UNIX
/// stream socket (a parent passed it, as `--fd`), and makes it
/// non-blocking.
///
/// # Errors
/// `raw` is not an open descriptor, or not a UNIX stream socket (it is
/// closed then).
pub fn adopt_connected_fd(raw: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the descriptor flags of any number; it
    // fails with EBADF for a number that is not open.
    if raw < 0 || unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {raw} is not open"),
        ));
    }
    // SAFETY: `raw` is open (checked above), and the command line hands it
    // to slipway: nothing else in this process owns it, and it is adopted
    // once.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let domain = rustix::net::sockopt::socket_domain(&fd);
    let kind = rustix::net::sockopt::socket_type(&fd);
    if domain != Ok(AddressFamily::UNIX) || kind != Ok(SocketType::STREAM) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {raw} is not a UNIX stream socket"),
        ));
    }
    rustix::io::ioctl_fionbio(&fd, true)?;
    Ok(fd)
}

/// What the stream frontend moved and refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamCounters {
    /// Clients served.
    pub connections: u64,
    /// Connections closed at once because a client was already connected.
    pub connections_refused: u64,
    /// `accept()` failures other than `EAGAIN`/`EINTR` (say `EMFILE`).
    pub accept_errors: u64,
    /// Frames read from the client.
    pub frames_from_guest: u64,
    /// Their bytes, without the length prefixes.
    pub bytes_from_guest: u64,
    /// Frames the client's socket took whole.
    pub frames_to_guest: u64,
    /// Their bytes, without the length prefixes.
    pub bytes_to_guest: u64,
    /// Times the client's socket was full (`EAGAIN`) and the loop waited.
    pub write_waits: u64,
    /// Frames longer than the MTU allows, skipped.
    pub oversized_frames: u64,
    /// Frames too short for an Ethernet header (0 to 13 bytes), skipped.
    pub short_frames: u64,
    /// Length prefixes over the protocol's bound; each closed the
    /// connection.
    pub bad_lengths: u64,
    /// Frames for a client that disconnected before it took them.
    pub frames_lost: u64,
}

impl StreamCounters {
    /// Each counter with its name, for [`stats_report`](super::stats_report).
    #[must_use]
    pub fn lines(&self) -> [(&'static str, u64); 12] {
        [
            ("clients", self.connections),
            ("clients refused", self.connections_refused),
            ("accept errors", self.accept_errors),
            ("frames from guest", self.frames_from_guest),
            ("bytes from guest", self.bytes_from_guest),
            ("frames to guest", self.frames_to_guest),
            ("bytes to guest", self.bytes_to_guest),
            ("socket write waits", self.write_waits),
            ("oversized frames dropped", self.oversized_frames),
            ("short frames dropped", self.short_frames),
            ("bad lengths (closed)", self.bad_lengths),
            ("frames lost at disconnect", self.frames_lost),
        ]
    }
}

/// Why a client's connection ended.
#[derive(Debug)]
enum Closed {
    /// The client closed it.
    Eof,
    /// A read or write failed (`ECONNRESET`, `EPIPE`, ...).
    Io(Errno),
    /// The client sent a length prefix that cannot start a frame.
    Framing(FramingError),
}

/// Which of the frontend's sources the last wait reported.
#[derive(Clone, Copy, Debug, Default)]
struct Ready {
    listener: bool,
    client_read: bool,
    client_write: bool,
}

/// The stream side of the loop: the listening socket (if any), the client,
/// the framing buffers and the counters. It outlives one
/// [`serve`](Self::serve) call, so the client and its queued frames survive
/// a return for a deadline.
#[derive(Debug)]
pub struct StreamFrontend {
    listener: Option<StreamSocket>,
    client: Option<OwnedFd>,
    decoder: FrameDecoder,
    outbox: Outbox,
    /// The client's socket was full at the last write.
    blocked: bool,
    /// What the client is registered for in the current poller.
    interest: Option<Interest>,
    after_disconnect: AfterDisconnect,
    counters: StreamCounters,
    /// What the last wait reported, noted for the next pass.
    ready: Ready,
    /// What the current pass looks at.
    pass: Ready,
    /// Input from the client is perhaps left: the next pass reads on.
    input_left: bool,
    /// The listener is left out of the poller after `accept()` failed
    /// (say `EMFILE`), so that a connection it cannot take does not wake
    /// the loop on every pass; it is put back at this deadline, or when
    /// the client leaves.
    accept_paused: Option<Instant>,
    /// The next pause after a failed `accept()`: 100 ms, doubling to 1 s
    /// while it keeps failing.
    accept_delay: Duration,
}

/// The first pause of the listener after a failed `accept()`.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(100);

/// The longest pause of the listener while `accept()` keeps failing.
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

impl StreamFrontend {
    /// A frontend that accepts its clients on `socket`, for frames of up
    /// to `max_frame` bytes (the MTU plus the Ethernet header).
    #[must_use]
    pub fn listen(socket: StreamSocket, max_frame: usize, after: AfterDisconnect) -> Self {
        Self::new(Some(socket), None, max_frame, after)
    }

    /// A frontend for one client already connected on `client` (a
    /// non-blocking stream socket); serving ends when it disconnects.
    #[must_use]
    pub fn connected(client: OwnedFd, max_frame: usize) -> Self {
        Self::new(None, Some(client), max_frame, AfterDisconnect::Exit)
    }

    fn new(
        listener: Option<StreamSocket>,
        client: Option<OwnedFd>,
        max_frame: usize,
        after_disconnect: AfterDisconnect,
    ) -> Self {
        let connections = u64::from(client.is_some());
        Self {
            listener,
            client,
            decoder: FrameDecoder::new(max_frame),
            outbox: Outbox::new(max_frame),
            blocked: false,
            interest: None,
            after_disconnect,
            counters: StreamCounters {
                connections,
                ..StreamCounters::default()
            },
            ready: Ready::default(),
            pass: Ready::default(),
            input_left: false,
            accept_paused: None,
            accept_delay: ACCEPT_PAUSE_MIN,
        }
    }

    /// What the frontend has moved so far.
    #[must_use]
    pub fn counters(&self) -> &StreamCounters {
        &self.counters
    }

    /// Moves frames until `stop` or until the client disconnects (and
    /// [`AfterDisconnect::Exit`] holds, or there is no listening socket):
    /// frames from the client go to the backend (and its capture); frames
    /// from the backend go to the client.
    ///
    /// # Errors
    /// The epoll set, the backend's epoll set or the signalfd failed. A
    /// client's failure only ends that client.
    pub fn serve(&mut self, backend: &mut Backend, stop: &StopWhen<'_>) -> io::Result<ServeEnd> {
        super::serve(self, backend, stop)
    }

    /// Adds the listening socket and the client to `poller`.
    fn register_sources(&mut self, poller: &Poller) -> io::Result<()> {
        if let Some(socket) = &self.listener {
            let interest = match self.accept_paused {
                Some(_) => Interest::NONE,
                None => Interest::READABLE,
            };
            poller.register(&socket.listener, TOKEN_LISTENER, interest)?;
        }
        self.interest = None;
        if let Some(client) = &self.client {
            poller.register(client, TOKEN_CLIENT, Interest::READABLE)?;
            self.interest = Some(Interest::READABLE);
        }
        Ok(())
    }

    /// Waits for the client's socket to turn writable only while bytes for
    /// it are kept.
    fn update_interest(&mut self, poller: &Poller) -> io::Result<()> {
        let Some(client) = &self.client else {
            return Ok(());
        };
        let wanted = if self.blocked {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if self.interest != Some(wanted) {
            poller.modify(client, TOKEN_CLIENT, wanted)?;
            self.interest = Some(wanted);
        }
        Ok(())
    }

    /// Ends the client's connection; returns how serving ends if it does
    /// (no listening socket, or [`AfterDisconnect::Exit`]).
    fn end_client(&mut self, poller: &Poller, reason: &Closed) -> Option<ServeEnd> {
        self.disconnect(poller, reason);
        if self.listener.is_some() && self.after_disconnect == AfterDisconnect::Listen {
            return None;
        }
        Some(ServeEnd::Disconnected)
    }

    /// Accepts waiting connections: the first becomes the client when there
    /// is none; every other one is closed at once. Returns whether a client
    /// was taken.
    fn accept(&mut self, poller: &Poller, now: Instant) -> io::Result<bool> {
        let Some(socket) = &self.listener else {
            return Ok(false);
        };
        let mut taken = false;
        for _ in 0..ACCEPT_BATCH {
            let stream = match socket.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // The connection waits at the listener, which stays
                    // readable: accepting again at once would spin.
                    self.counters.accept_errors += 1;
                    let delay = self.accept_delay;
                    tracing::warn!(%error, ?delay, "cannot accept a connection; trying again later");
                    poller.modify(&socket.listener, TOKEN_LISTENER, Interest::NONE)?;
                    self.accept_paused = Some(now + delay);
                    self.accept_delay = (delay * 2).min(ACCEPT_PAUSE_MAX);
                    break;
                }
            };
            if self.client.is_some() {
                self.counters.connections_refused += 1;
                tracing::warn!("refused a second client: one guest is already connected");
                continue;
            }
            if let Err(error) = stream.set_nonblocking(true) {
                tracing::warn!(%error, "cannot make the client's socket non-blocking; closed");
                continue;
            }
            self.accept_delay = ACCEPT_PAUSE_MIN;
            let client = OwnedFd::from(stream);
            poller.register(&client, TOKEN_CLIENT, Interest::READABLE)?;
            self.client = Some(client);
            self.interest = Some(Interest::READABLE);
            self.counters.connections += 1;
            tracing::info!("guest connected");
            taken = true;
        }
        Ok(taken)
    }

    /// Hands the client's whole frames to the backend, reading when none
    /// is left, until the socket is empty, [`READ_BATCH`] reads are done or
    /// [`FRAME_BATCH`] frames are handed. Returns whether input is perhaps
    /// left (the next pass must not wait for readiness), or why the
    /// connection ended.
    fn read_frames(&mut self, backend: &mut Backend, now: Instant) -> Result<bool, Closed> {
        let Some(client) = self.client.as_ref().map(AsFd::as_fd) else {
            return Ok(false);
        };
        let mut handed = 0;
        for _ in 0..READ_BATCH {
            // Bounded: each frame consumes at least one byte of the buffer.
            loop {
                if handed == FRAME_BATCH {
                    return Ok(true);
                }
                match self.decoder.next_frame() {
                    Ok(Some(Decoded::Frame(frame))) => {
                        handed += 1;
                        self.counters.frames_from_guest += 1;
                        self.counters.bytes_from_guest += frame.len() as u64;
                        backend.handle_guest_frame(frame, now);
                    }
                    Ok(Some(Decoded::Oversized(len))) => {
                        self.counters.oversized_frames += 1;
                        tracing::debug!(len, "frame longer than the MTU allows; dropped");
                    }
                    Ok(Some(Decoded::TooShort(len))) => {
                        self.counters.short_frames += 1;
                        tracing::debug!(len, "frame shorter than an Ethernet header; dropped");
                    }
                    Ok(None) => break,
                    Err(error) => {
                        self.counters.bad_lengths += 1;
                        return Err(Closed::Framing(error));
                    }
                }
            }
            match rustix::io::read(client, self.decoder.space()) {
                Ok(0) => return Err(Closed::Eof),
                Ok(n) => self.decoder.filled(n),
                Err(Errno::AGAIN) => return Ok(false),
                Err(Errno::INTR) => {}
                Err(e) => return Err(Closed::Io(e)),
            }
        }
        Ok(true)
    }

    /// Takes frames from the backend while the outbox has room, and writes
    /// the outbox, until the backend has none, the socket is full (the
    /// bytes are kept), or [`WRITE_BATCH`] frames are taken. Returns
    /// whether the batch ran out with frames perhaps left.
    fn write_frames(&mut self, backend: &mut Backend, now: Instant) -> Result<bool, Closed> {
        let Some(client) = self.client.as_ref().map(AsFd::as_fd) else {
            return Ok(false);
        };
        let mut taken = 0;
        let mut backend_empty = false;
        // Bounded: each pass sends at least one byte or returns.
        for _ in 0..2 * WRITE_BATCH {
            while taken < WRITE_BATCH && self.outbox.has_room() {
                let polled = self
                    .outbox
                    .push_with(|buf| backend.poll_guest_frame(buf, now));
                if polled.is_none() {
                    backend_empty = true;
                    break;
                }
                taken += 1;
            }
            if self.outbox.is_empty() {
                self.blocked = false;
                return Ok(!backend_empty);
            }
            match send_once(client, self.outbox.pending()) {
                Ok(n) => {
                    let sent = self.outbox.consume(n);
                    self.counters.frames_to_guest += sent.frames;
                    self.counters.bytes_to_guest += sent.bytes;
                    self.blocked = false;
                }
                Err(Errno::AGAIN) => {
                    self.counters.write_waits += 1;
                    self.blocked = true;
                    tracing::trace!("client's socket full; waiting for it to drain");
                    return Ok(false);
                }
                Err(e) => return Err(Closed::Io(e)),
            }
        }
        Ok(true)
    }

    /// Puts the listener back into `poller` after a pause.
    fn resume_accepting(&mut self, poller: &Poller) {
        let (Some(_), Some(socket)) = (self.accept_paused, &self.listener) else {
            return;
        };
        match poller.modify(&socket.listener, TOKEN_LISTENER, Interest::READABLE) {
            Ok(()) => self.accept_paused = None,
            Err(error) => {
                tracing::warn!(%error, "cannot listen again");
                self.accept_paused = Some(Instant::now() + ACCEPT_PAUSE_MAX);
            }
        }
    }

    /// Ends the client's connection, counting the frames it did not take.
    fn disconnect(&mut self, poller: &Poller, reason: &Closed) {
        let Some(client) = self.client.take() else {
            return;
        };
        if let Err(error) = poller.unregister(&client) {
            tracing::debug!(%error, "cannot unregister the client");
        }
        self.interest = None;
        // Its descriptor is free now.
        self.resume_accepting(poller);
        let lost = self.outbox.queued_frames();
        self.counters.frames_lost += lost;
        self.outbox.clear();
        self.decoder.clear();
        self.blocked = false;
        match reason {
            Closed::Eof => tracing::info!(lost, "guest disconnected"),
            Closed::Io(error) => tracing::warn!(%error, lost, "guest connection failed; closed"),
            Closed::Framing(error) => tracing::warn!(
                %error,
                lost,
                "guest sent a length prefix that cannot start a frame; connection closed"
            ),
        }
    }
}

impl Frontend<Backend> for StreamFrontend {
    fn register(&mut self, poller: &Poller) -> io::Result<()> {
        self.register_sources(poller)
    }

    fn note_first_pass(&mut self) {
        self.ready = Ready {
            listener: true,
            client_read: true,
            client_write: true,
        };
        self.input_left = false;
    }

    fn note_ready(&mut self, token: Token, readiness: Readiness) {
        let failed = is_failed(readiness);
        match token {
            TOKEN_LISTENER => self.ready.listener |= readiness.is_readable() || failed,
            TOKEN_CLIENT => {
                self.ready.client_read |= readiness.is_readable() || failed;
                self.ready.client_write |= readiness.is_writable() || failed;
            }
            _ => {}
        }
    }

    /// The client first: one that has just left makes room for the one
    /// knocking, rather than that one being refused.
    fn handle_input(
        &mut self,
        poller: &Poller,
        backend: &mut Backend,
        now: Instant,
    ) -> io::Result<Pass> {
        let mut ready = std::mem::take(&mut self.ready);
        ready.client_read |= std::mem::take(&mut self.input_left);
        let mut input_left = false;
        if ready.client_read || ready.listener {
            match self.read_frames(backend, now) {
                Ok(left) => input_left = left,
                Err(reason) => {
                    if let Some(end) = self.end_client(poller, &reason) {
                        return Ok(Pass::End(end));
                    }
                }
            }
        }
        if self.accept_paused.is_some_and(|until| now >= until) {
            self.resume_accepting(poller);
            ready.listener = true;
        }
        if ready.listener && self.accept(poller, now)? {
            input_left = true;
        }
        self.pass = ready;
        self.input_left = input_left;
        Ok(Pass::busy_if(input_left))
    }

    fn handle_output(
        &mut self,
        poller: &Poller,
        backend: &mut Backend,
        now: Instant,
    ) -> io::Result<Pass> {
        let mut more = false;
        if self.pass.client_write || !self.blocked {
            match self.write_frames(backend, now) {
                Ok(again) => more = again,
                Err(reason) => {
                    if let Some(end) = self.end_client(poller, &reason) {
                        return Ok(Pass::End(end));
                    }
                }
            }
        }
        self.update_interest(poller)?;
        Ok(Pass::busy_if(more))
    }

    fn is_flushed(&self) -> bool {
        self.outbox.is_empty()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.accept_paused
    }
}

/// One `send` without `SIGPIPE`, retrying on `EINTR`.
fn send_once(fd: BorrowedFd<'_>, bytes: &[u8]) -> Result<usize, Errno> {
    loop {
        match rustix::net::send(fd, bytes, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
            Err(Errno::INTR) => {}
            other => return other,
        }
    }
}
