//! `relay-tcp` makes no protocol decisions: it carries out the operations
//! `flow-table`'s state machine asks for and reports what the kernel did,
//! and keeps no payload buffer of its own.
//!
//! It executes the TCP sequence-mirroring state machine of `flow-table`
//! against host sockets: connect, peek, consume, write, shutdown, reset.
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
//! - [`TcpFlowDriver`] is one flow: it owns the
//!   [`TcpConn`](flow_table::tcp::TcpConn), its [`HostSocket`] and the
//!   epoll interest the socket is registered with, takes guest segments,
//!   readiness and timeouts, carries out the state machine's decisions in
//!   one [`step`](TcpFlowDriver::step), and peeks each segment's payload
//!   for the guest straight into the caller's frame
//!   ([`poll_transmit`](TcpFlowDriver::poll_transmit)). Nothing else
//!   holds a flow's state machine or socket.
//! - [`fill_transmit_payload`] is that peek on its own: one segment's
//!   payload from a socket into a buffer.
//! - [`Listener`] accepts host connections on a forwarded port.
//!
//! An event loop drives a flow like this (errors elided):
//!
//! ```no_run
//! # use std::time::Instant;
//! # use epoll_dispatch::{Poller, Token};
//! # use flow_table::tcp::Segment;
//! # use relay_tcp::{Registration, SocketReadiness, TcpFlowDriver};
//! # fn step(flow: &mut TcpFlowDriver, poller: &Poller, token: Token, seg: &Segment,
//! #         payload: &[u8], readiness: Option<SocketReadiness>, frame: &mut [u8]) {
//! let now = Instant::now();
//! flow.handle_guest_segment(now, seg, payload);
//! if let Some(readiness) = readiness {
//!     let _ = flow.handle_readiness(readiness, now);
//! }
//! let step = flow.step(now, |fd, change| match change {
//!     Registration::Add(interest) => poller.register(fd, token, interest),
//!     Registration::Modify(interest) => poller.modify(fd, token, interest),
//! });
//! const HEADERS: usize = 54;
//! while let Some((transmit, len)) = flow.poll_transmit(now, frame, |_| Some(HEADERS)) {
//!     // build the headers of `transmit` in front of `frame[HEADERS..][..len]`
//! }
//! // sleep until readiness or step.deadline
//! # }
//! ```
#![cfg(target_os = "linux")]

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

mod driver;
mod listener;
mod peek;
mod relay;
mod socket;
mod sys;

pub use driver::{Registration, Step, TcpFlowDriver};
pub use listener::{DEFAULT_BACKLOG, ListenError, Listener};
pub use peek::{PeekMethod, peek_offset_supported};
pub use relay::{Closure, Executed, HostOp, OpError, SocketReadiness, fill_transmit_payload};
pub use socket::{HostSocket, SendRoom};
