//! `relay-udp-icmp` makes no policy decisions (`nat-core` has already said
//! where each datagram may go) and never sees a frame.
//!
//! UDP flows on connected host sockets, DNS forwarding, ICMP echo on ping or
//! raw sockets, and ICMP errors read from `IP_RECVERR`.
//!
//! The relay works with payloads and addresses, never with frames: the
//! backend parses the guest's frames, hands the payload and the addresses
//! over, and builds frames around what comes back. Every socket is
//! non-blocking and close-on-exec, and implements [`AsFd`](std::os::fd::AsFd)
//! so the backend can register it with its poller; nothing here waits or
//! reads the clock (time arrives as `now: Instant`).
//!
//! # Map
//!
//! - [`UdpFlowSocket`]: one connected socket per (guest address and port,
//!   destination) flow, with ICMP errors from its error queue
//!   ([`IcmpErrorReport`]); its idle deadline is `flow-table`'s
//!   `DatagramFlowState`.
//! - [`UdpListener`]: a bound socket for an inbound UDP port forward.
//! - [`DnsForwarder`]: guest queries to one upstream resolver from a small
//!   pool of sockets on random ports, with transaction ids rewritten and
//!   restored; [`resolv_conf`] finds the host's resolver.
//! - [`EchoSocket`]: ICMP and ICMPv6 echo over a ping socket, or a raw
//!   socket where ping sockets are refused; [`probe_echo`] tells which works
//!   and, when neither does, why ([`EchoAvailability`]).
//! - [`Counters`]: datagrams and bytes each way and drops by
//!   [`DropReason`], kept by each socket and summed by the backend.
//!
//! # Readiness
//!
//! A socket whose error queue holds a report is signalled by `EPOLLERR`,
//! which epoll always reports: on that event the backend reads
//! `recv_error()` until it returns `None` (a [`DnsForwarder`] is an epoll
//! set of its sockets, readable for their errors as for their replies, which
//! `recv_reply` reads). The asynchronous error a report
//! leaves on the socket never fails a later `send` or `recv`; the report in
//! the error queue is the only place it shows.
#![cfg(target_os = "linux")]

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

mod counters;
pub mod dns;
pub mod echo;
mod icmp_error;
mod sys;
mod udp;

pub use counters::{Counters, DropReason, Traffic};
pub use dns::{DnsForwarder, DnsForwarderConfig, DnsReply, resolv_conf};
pub use echo::{
    EchoAvailability, EchoError, EchoKind, EchoOpenError, EchoReply, EchoSocket, probe_echo,
};
pub use icmp_error::{ErrorOrigin, IcmpErrorReport};
pub use udp::{MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6, SendOutcome, UdpFlowSocket, UdpListener};
