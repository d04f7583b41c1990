//! The glue that runs a [`TcpConn`] against its [`HostSocket`]: carries out
//! the socket operations the state machine asks for and reports the
//! socket's readiness back to it.
//!
//! The order the state machine's contract needs is built in: every polled
//! [`SocketOp::Consume`] is carried out before the receive queue is
//! measured, and the queue is measured before end of stream is reported.

use std::fmt;
use std::io;
use std::time::Instant;

use flow_table::tcp::{Phase, SocketOp, TcpConn, Transmit};

use crate::peek::PeekMethod;
use crate::socket::HostSocket;

/// Socket operations one call carries out at most. A flow owes at most a
/// consume, a shutdown and a terminal operation at a time (plus a reset after
/// a failure), so the bound is never reached by a working state machine.
const MAX_OPS_PER_CALL: usize = 16;

/// Peeks one payload takes at most: one, a second after a stop at an
/// urgent mark (Linux keeps one mark at a time), and room for signals.
const MAX_PEEKS_PER_PAYLOAD: usize = 4;

/// What a host socket reported ready, decoded from an epoll event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketReadiness {
    /// Data or end of stream can be read (`EPOLLIN`).
    pub readable: bool,
    /// Data can be written (`EPOLLOUT`); also how a non-blocking
    /// `connect()` reports completion.
    pub writable: bool,
    /// The peer shut down its writing side (`EPOLLRDHUP`).
    pub read_hangup: bool,
    /// Both directions are shut down, or the connection is gone
    /// (`EPOLLHUP`).
    pub hangup: bool,
    /// An error is pending (`EPOLLERR`).
    pub error: bool,
}

impl From<epoll_dispatch::Readiness> for SocketReadiness {
    fn from(readiness: epoll_dispatch::Readiness) -> SocketReadiness {
        SocketReadiness {
            readable: readiness.is_readable(),
            writable: readiness.is_writable(),
            read_hangup: readiness.is_read_hangup(),
            hangup: readiness.is_hangup(),
            error: readiness.is_error(),
        }
    }
}

/// How the host socket was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Closure {
    /// Gracefully ([`SocketOp::Close`]).
    Close,
    /// With an RST to the host peer ([`SocketOp::Reset`]).
    Reset,
}

/// A step on the host socket, named in [`OpError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostOp {
    /// Discarding acknowledged bytes (`recv(MSG_TRUNC)`).
    Consume,
    /// Closing the writing side (`shutdown(SHUT_WR)`).
    ShutdownWrite,
    /// Closing with `SO_LINGER` 0.
    Reset,
    /// Measuring the receive queue (`SIOCINQ`).
    MeasureQueue,
    /// Measuring the send buffer's free space (`SO_SNDBUF`, `SIOCOUTQ`).
    MeasureSendSpace,
    /// Reading the outcome of `connect()` (`SO_ERROR`).
    Connect,
    /// Reading a pending socket error (`SO_ERROR`).
    SocketError,
}

impl fmt::Display for HostOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostOp::Consume => "consume",
            HostOp::ShutdownWrite => "shutdown(SHUT_WR)",
            HostOp::Reset => "reset",
            HostOp::MeasureQueue => "SIOCINQ",
            HostOp::MeasureSendSpace => "send space",
            HostOp::Connect => "connect",
            HostOp::SocketError => "SO_ERROR",
        })
    }
}

/// A step on the host socket failed. The failure has been reported to the
/// state machine already, which ends the flow.
#[derive(Debug, thiserror::Error)]
#[error("host socket {op} failed: {source}")]
pub struct OpError {
    /// The step that failed.
    pub op: HostOp,
    /// The system error.
    #[source]
    pub source: io::Error,
}

/// What one call carried out on the host socket.
#[derive(Debug, Default)]
#[must_use]
pub struct Executed {
    /// Acknowledged bytes discarded from the receive queue.
    pub consumed: usize,
    /// The writing side was shut down.
    pub shut_down: bool,
    /// The socket was closed, and how; its descriptor has left every epoll
    /// set.
    pub closed: Option<Closure>,
    /// The first step that failed, already reported to the state machine.
    pub failure: Option<OpError>,
}

impl Executed {
    fn merge(&mut self, later: Executed) {
        self.consumed += later.consumed;
        self.shut_down |= later.shut_down;
        self.closed = self.closed.or(later.closed);
        if self.failure.is_none() {
            self.failure = later.failure;
        }
    }

    fn note_failure(&mut self, op: HostOp, source: io::Error) {
        tracing::debug!(%op, error = %source, "host socket step failed");
        if self.failure.is_none() {
            self.failure = Some(OpError { op, source });
        }
    }
}

/// Carries out every socket operation `conn` owes, in order, and reports
/// the results back: after a [`SocketOp::Consume`] the receive queue is
/// measured again and reported with
/// [`TcpConn::handle_host_readable`]. When guest data was written since the
/// last call, the send space is measured and reported with
/// [`TcpConn::handle_host_send_space`] (as 0 while the kernel refuses
/// writes), after the room at which the socket turns writable with
/// [`TcpConn::handle_host_send_buffer`].
///
/// Call it after every batch of guest segments and before taking segments
/// from [`TcpConn::poll_transmit`], whose payload offsets assume it. A
/// failing step is reported to `conn` (`ECONNRESET` and `EPIPE` as a host
/// reset, anything else as a host error) and the reset it then owes is
/// carried out in the same call.
pub(crate) fn run_socket_ops(conn: &mut TcpConn, sock: &mut HostSocket, now: Instant) -> Executed {
    let mut done = Executed::default();
    for _ in 0..MAX_OPS_PER_CALL {
        let Some(op) = conn.poll_socket_op() else {
            break;
        };
        execute(conn, sock, op, now, &mut done);
    }
    if sock.take_wrote() && sock.is_open() {
        if sock.write_blocked() {
            conn.handle_host_send_space(now, 0);
        } else {
            report_send_room(conn, sock, now, &mut done);
        }
        // A failure above owes a reset.
        for _ in 0..MAX_OPS_PER_CALL {
            let Some(op) = conn.poll_socket_op() else {
                break;
            };
            execute(conn, sock, op, now, &mut done);
        }
    }
    done
}

fn execute(
    conn: &mut TcpConn,
    sock: &mut HostSocket,
    op: SocketOp,
    now: Instant,
    done: &mut Executed,
) {
    if !sock.is_open() {
        // Closed already: nothing is left to carry out.
        return;
    }
    match op {
        SocketOp::Consume(n) => consume(conn, sock, n, now, done),
        SocketOp::ShutdownWrite => match sock.shutdown_write() {
            Ok(()) => done.shut_down = true,
            Err(error) => fail(conn, now, done, HostOp::ShutdownWrite, error),
        },
        SocketOp::Close => {
            sock.close();
            done.closed = Some(Closure::Close);
        }
        SocketOp::Reset => {
            if let Err(error) = sock.reset() {
                done.note_failure(HostOp::Reset, error);
            }
            done.closed = Some(Closure::Reset);
        }
    }
}

fn consume(conn: &mut TcpConn, sock: &mut HostSocket, n: usize, now: Instant, done: &mut Executed) {
    match sock.consume(n) {
        Ok(count) => {
            done.consumed += count;
            if count < n {
                let error = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("discarded {count} of {n} acknowledged bytes"),
                );
                return fail(conn, now, done, HostOp::Consume, error);
            }
        }
        Err(error) => return fail(conn, now, done, HostOp::Consume, error),
    }
    report_queue(conn, sock, now, done);
}

/// Measures the send buffer and reports its room: where the socket turns
/// writable first, then the free space.
fn report_send_room(conn: &mut TcpConn, sock: &HostSocket, now: Instant, done: &mut Executed) {
    match sock.send_room() {
        Ok(room) => {
            conn.handle_host_send_buffer(now, room.writable_at);
            conn.handle_host_send_space(now, room.free);
        }
        Err(error) => fail(conn, now, done, HostOp::MeasureSendSpace, error),
    }
}

/// Measures the receive queue and reports it; true if that worked.
fn report_queue(conn: &mut TcpConn, sock: &HostSocket, now: Instant, done: &mut Executed) -> bool {
    match sock.queued() {
        Ok(queued) => {
            conn.handle_host_readable(now, queued);
            true
        }
        Err(error) => {
            fail(conn, now, done, HostOp::MeasureQueue, error);
            false
        }
    }
}

/// Reports a failed step to `conn`, which then owes a reset.
fn fail(conn: &mut TcpConn, now: Instant, done: &mut Executed, op: HostOp, error: io::Error) {
    if is_reset(&error) {
        conn.handle_host_reset(now);
    } else {
        conn.handle_host_error(now);
    }
    done.note_failure(op, error);
}

fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// Reports what epoll said about the host socket to `conn`, with the
/// socket operations owed before and after carried out
/// ([`run_socket_ops`]).
///
/// - While connecting: writable, error or hang-up end the `connect()`;
///   its outcome goes to [`TcpConn::handle_host_connected`] (with the
///   send space) or [`TcpConn::handle_host_connect_failed`].
/// - An error: the pending `SO_ERROR` goes to
///   [`TcpConn::handle_host_reset`] (`ECONNRESET`, `EPIPE`) or
///   [`TcpConn::handle_host_error`].
/// - Readable or a hang-up: the receive queue goes to
///   [`TcpConn::handle_host_readable`]; then a hang-up goes to
///   [`TcpConn::handle_host_eof`].
/// - Writable: the send buffer's room goes to
///   [`TcpConn::handle_host_send_buffer`] and
///   [`TcpConn::handle_host_send_space`].
pub(crate) fn on_readiness(
    conn: &mut TcpConn,
    sock: &mut HostSocket,
    readiness: SocketReadiness,
    now: Instant,
) -> Executed {
    let mut done = run_socket_ops(conn, sock, now);
    if sock.is_open() {
        if conn.phase() == Phase::Connecting {
            on_connect_readiness(conn, sock, readiness, now, &mut done);
        } else {
            on_stream_readiness(conn, sock, readiness, now, &mut done);
        }
        done.merge(run_socket_ops(conn, sock, now));
    }
    done
}

fn on_connect_readiness(
    conn: &mut TcpConn,
    sock: &mut HostSocket,
    readiness: SocketReadiness,
    now: Instant,
    done: &mut Executed,
) {
    if !(readiness.writable || readiness.error || readiness.hangup) {
        return;
    }
    match sock.take_connect_result().and_then(|()| sock.send_room()) {
        Ok(room) => {
            conn.handle_host_send_buffer(now, room.writable_at);
            conn.handle_host_connected(now, room.free);
        }
        // Not done yet: the next readiness tells.
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
        Err(error) => {
            conn.handle_host_connect_failed(now);
            done.note_failure(HostOp::Connect, error);
        }
    }
}

fn on_stream_readiness(
    conn: &mut TcpConn,
    sock: &mut HostSocket,
    readiness: SocketReadiness,
    now: Instant,
    done: &mut Executed,
) {
    if readiness.error {
        match sock.take_error() {
            Ok(None) => {}
            Ok(Some(error)) | Err(error) => {
                return fail(conn, now, done, HostOp::SocketError, error);
            }
        }
    }
    let hangup = readiness.read_hangup || readiness.hangup;
    if readiness.readable || hangup {
        // Everything the peer sent before its FIN is queued by the time the
        // hang-up shows, so the count is complete before end of stream.
        if !report_queue(conn, sock, now, done) {
            return;
        }
        if hangup {
            conn.handle_host_eof(now);
        }
    }
    if readiness.writable {
        sock.clear_write_blocked();
        report_send_room(conn, sock, now, done);
    }
}

/// The epoll interest for `conn`'s host socket: readable (with
/// `EPOLLRDHUP`) when the flow takes new bytes from the host, writable when
/// it waits for send space or for `connect()` to complete.
///
/// Level-triggered, so a condition the flow cannot act on yet is silenced
/// by narrowing the interest. With nothing wanted the registration is
/// edge-triggered: the kernel reports errors and hang-ups regardless, and a
/// hang-up persists (both directions shut while the guest still has bytes
/// to acknowledge), so edge-triggering reports it once instead of on every
/// wait.
#[must_use]
pub(crate) fn epoll_interest(conn: &TcpConn) -> epoll_dispatch::Interest {
    use epoll_dispatch::Interest;
    let wanted = conn.interest();
    let mut interest = Interest::NONE;
    if wanted.readable {
        interest = interest | Interest::READABLE | Interest::RDHUP;
    }
    if wanted.writable {
        interest = interest | Interest::WRITABLE;
    }
    if interest == Interest::NONE {
        interest.edge_triggered()
    } else {
        interest
    }
}

/// Peeks the payload `transmit` names into `buf` and returns its length
/// (0 for a segment without payload).
///
/// A peek that copied bytes stops short at a host peer's urgent mark (the
/// urgent byte stays inline, `SO_OOBINLINE`), so a short peek is continued
/// from where it stopped. On a kernel without `SO_PEEK_OFF`
/// ([`PeekMethod::Prefix`]) every peek starts at the head of the queue and
/// cannot pass a mark beyond it: the payload then comes out short, even
/// empty, and the guest gets the rest as a retransmission once it has
/// acknowledged the bytes before the mark.
///
/// # Errors
/// `InvalidInput` when `buf` is shorter than the payload; `UnexpectedEof`
/// when the receive queue holds fewer bytes at the offset than the state
/// machine counted (treat as a host error); the peek's own error.
pub fn fill_transmit_payload(
    sock: &mut HostSocket,
    transmit: &Transmit,
    buf: &mut [u8],
) -> io::Result<usize> {
    let Some(range) = transmit.payload else {
        return Ok(0);
    };
    let available = buf.len();
    let dst = buf.get_mut(..range.len).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{available}-byte buffer for a {}-byte payload", range.len),
        )
    })?;
    let mut peeked = 0;
    for _ in 0..MAX_PEEKS_PER_PAYLOAD {
        let Some(rest) = dst.get_mut(peeked..).filter(|rest| !rest.is_empty()) else {
            break;
        };
        let Some(offset) = range.offset.checked_add(peeked) else {
            break;
        };
        match sock.peek(offset, rest) {
            Ok(0) => break,
            Ok(n) => peeked += n.min(rest.len()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error)
                if error.kind() == io::ErrorKind::WouldBlock
                    && sock.peek_method() == PeekMethod::Prefix =>
            {
                break;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock && peeked > 0 => break,
            Err(error) => return Err(error),
        }
    }
    if peeked < range.len && sock.peek_method() == PeekMethod::PeekOffset {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "peeked {peeked} of {} bytes at queue offset {}",
                range.len, range.offset
            ),
        ));
    }
    Ok(peeked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use epoll_dispatch::{Interest, Trigger};
    use flow_table::tcp::{Flags, Segment, SeqNum, TcpConfig};

    fn connecting_flow(now: Instant) -> TcpConn {
        let syn = Segment {
            seq: SeqNum::new(1000),
            flags: Flags {
                syn: true,
                ..Flags::default()
            },
            window: 65535,
            mss: Some(1460),
            window_scale: Some(7),
            ..Segment::default()
        };
        TcpConn::from_guest_syn(&syn, SeqNum::new(5), TcpConfig::default(), now)
    }

    #[test]
    fn connecting_flow_waits_for_writable_only() {
        let conn = connecting_flow(Instant::now());
        assert_eq!(epoll_interest(&conn), Interest::WRITABLE);
    }

    #[test]
    fn connected_flow_reads_with_read_hangup() {
        let now = Instant::now();
        let mut conn = connecting_flow(now);
        conn.handle_host_connected(now, 65536);
        let interest = epoll_interest(&conn);
        assert_eq!(interest, Interest::READABLE | Interest::RDHUP);
        assert_eq!(interest.trigger(), Trigger::Level);
    }

    #[test]
    fn full_send_buffer_adds_writable() {
        let now = Instant::now();
        let mut conn = connecting_flow(now);
        conn.handle_host_connected(now, 0);
        assert_eq!(
            epoll_interest(&conn),
            Interest::READABLE | Interest::RDHUP | Interest::WRITABLE
        );
    }

    #[test]
    fn nothing_wanted_is_edge_triggered() {
        let now = Instant::now();
        let mut conn = connecting_flow(now);
        conn.handle_host_connected(now, 65536);
        conn.handle_host_eof(now);
        let interest = epoll_interest(&conn);
        assert_eq!(interest, Interest::NONE.edge_triggered());
        assert!(!interest.is_readable() && !interest.is_writable());
    }

    #[test]
    fn resets_and_broken_pipes_are_host_resets() {
        assert!(is_reset(&io::ErrorKind::ConnectionReset.into()));
        assert!(is_reset(&io::ErrorKind::BrokenPipe.into()));
        assert!(!is_reset(&io::ErrorKind::TimedOut.into()));
    }

    #[test]
    fn merged_results_keep_the_first_failure() {
        let mut done = Executed {
            consumed: 10,
            ..Executed::default()
        };
        done.note_failure(HostOp::Consume, io::ErrorKind::UnexpectedEof.into());
        let later = Executed {
            consumed: 5,
            shut_down: true,
            closed: Some(Closure::Reset),
            failure: Some(OpError {
                op: HostOp::Reset,
                source: io::ErrorKind::Other.into(),
            }),
        };
        done.merge(later);
        assert_eq!(done.consumed, 15);
        assert!(done.shut_down);
        assert_eq!(done.closed, Some(Closure::Reset));
        assert_eq!(done.failure.map(|f| f.op), Some(HostOp::Consume));
    }
}
