//! Executes the TCP sequence-mirroring state machine of `flow-table` against
//! host sockets: connect, peek, consume, write, shutdown, reset.
//!
//! Invariant: `relay-tcp` makes no protocol decisions; it carries out the
//! operations the state machine asks for and reports what the kernel did.
//!
//! - [`HostSocket`] owns the non-blocking host socket of one flow: a
//!   non-blocking [`connect`](HostSocket::connect), peeks at offsets of the
//!   receive queue ([`peek`](HostSocket::peek),
//!   [`peek_vectored`](HostSocket::peek_vectored)) with `SO_PEEK_OFF` where
//!   the kernel has it ([`peek_offset_supported`]), discards acknowledged
//!   bytes without copying them ([`consume`](HostSocket::consume)), measures
//!   its send buffer ([`send_room`](HostSocket::send_room): the free space
//!   and the room at which the kernel reports it writable), and is
//!   the [`HostWriter`](flow_table::tcp::HostWriter) guest data is written
//!   through.
//! - [`run_socket_ops`] carries out what a
//!   [`TcpConn`](flow_table::tcp::TcpConn) owes its socket;
//!   [`on_readiness`] reports an epoll event to it; [`epoll_interest`] is
//!   the registration it needs; [`fill_transmit_payload`] peeks a segment's
//!   payload into a frame.
//! - [`Listener`] accepts host connections on a forwarded port.
//!
//! An event loop drives a flow like this (errors elided):
//!
//! ```no_run
//! # use std::time::Instant;
//! # use flow_table::tcp::{Segment, TcpConn};
//! # use relay_tcp::{HostSocket, SocketReadiness};
//! # fn step(conn: &mut TcpConn, sock: &mut HostSocket, seg: &Segment, payload: &[u8],
//! #         readiness: Option<SocketReadiness>, frame: &mut [u8]) -> std::io::Result<()> {
//! let now = Instant::now();
//! conn.handle_guest_segment(now, seg, payload, sock);
//! let _ = relay_tcp::run_socket_ops(conn, sock, now);
//! if let Some(readiness) = readiness {
//!     let _ = relay_tcp::on_readiness(conn, sock, readiness, now);
//! }
//! while let Some(transmit) = conn.poll_transmit(now) {
//!     let len = relay_tcp::fill_transmit_payload(sock, &transmit, frame)?;
//!     // build the headers of `transmit` around `frame[..len]` and send it
//! }
//! // re-register with relay_tcp::epoll_interest(conn) if it changed,
//! // and sleep until readiness or conn.poll_timeout()
//! # Ok(())
//! # }
//! ```
#![cfg(target_os = "linux")]

mod listener;
mod peek;
mod relay;
mod socket;
mod sys;

pub use listener::{DEFAULT_BACKLOG, ListenError, Listener};
pub use peek::{PeekMethod, peek_offset_supported};
pub use relay::{
    Closure, Executed, HostOp, OpError, SocketReadiness, epoll_interest, fill_transmit_payload,
    on_readiness, run_socket_ops,
};
pub use socket::{HostSocket, SendRoom};
