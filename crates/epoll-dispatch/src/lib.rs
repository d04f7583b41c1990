//! `epoll-dispatch` makes no protocol decisions, contains no `unsafe` code,
//! and never reads the clock on its callers' behalf except to bound a wait
//! by their deadline.
//!
//! Readiness dispatch for the slipway event loop: an epoll set, an eventfd
//! waker, packed tokens and a wait that sleeps until the next deadline.
//!
//! - [`Poller`] owns the epoll fd; [`Poller::register`], [`Poller::modify`]
//!   and [`Poller::unregister`] manage fds with an [`Interest`] and a
//!   [`Token`].
//! - [`Token`] packs a [`Kind`], a 24-bit flow index and a 32-bit generation
//!   into the epoll user data, so an event maps to a flow without a lookup
//!   table and a stale event is told apart by its generation.
//! - [`Poller::wait`] sleeps until an fd is ready or the caller's deadline
//!   passes, never on a fixed period: with no deadline and nothing ready it
//!   makes no wakeups. [`WaitStats`] counts the returns so a harness can
//!   report idle wakeups.
//! - [`Waker`] ends a wait from another thread through an eventfd.
//! - [`serve::serve`]: the one serving loop of every frontend, generic over
//!   the backend ([`serve::Served`]) and the frontend ([`serve::Frontend`]),
//!   with its stop sources ([`serve::StopWhen`]) and [`pidfd_open`].
//!
//! All system calls go through `rustix`.

#![cfg(target_os = "linux")]
#![forbid(unsafe_code)]

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

mod events;
mod interest;
mod pidfd;
mod poller;
pub mod serve;
mod token;
mod waker;

pub use events::{Events, Iter};
pub use interest::{Interest, Readiness, Trigger};
pub use pidfd::{pidfd_open, pidfd_send_signal};
pub use poller::{Poller, WaitStats};
pub use token::{Kind, Token};
pub use waker::Waker;
