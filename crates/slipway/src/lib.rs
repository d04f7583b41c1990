//! The `slipway` library holds no KVM, VMM or command-line code, and no
//! mutex sits on the path of a frame: one thread owns a backend, its epoll
//! set and every host socket.
//!
//! slipway: a user-mode network stack for virtual machines and sandboxes.
//!
//! This crate composes the layers into the backend: the Ethernet front desk
//! (ARP, DHCP, the DNS address), dispatch to the relays, the pcap capture,
//! and the tap and stream frontends of the serving loop ([`serve`], from
//! `epoll-dispatch`).
//!
//! - [`Backend`] (from a [`BackendConfig`]): the stack for one guest.
//! - [`FrameBackend`] (from `guest-frame`, shared with `virtio-net-kvm`'s
//!   device) is the frame boundary; [`NetworkBackend`] adds the host side
//!   a loop waits on ([`Served`], from `epoll-dispatch`: [`Served::host_fd`],
//!   [`Served::poll_timeout`]). An embedder with its own event loop needs
//!   nothing else.
//! - [`frontend`]: the tap and stream frontends and their serving loop, for
//!   programs that let slipway run the loop; [`netns`]: the namespace and
//!   tap device `slipway run` serves.

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

pub mod backend;
pub mod capture;
pub mod fdlimit;
#[cfg(test)]
mod fixtures;
pub mod frontend;
pub mod netns;

pub use backend::{
    Backend, BackendConfig, BackendCounters, BackendError, Checksum, FrameBackend, GuestFrame,
    NetworkBackend, Served,
};
/// The one serving loop every frontend runs in, and what an embedder needs
/// to write a frontend of its own.
pub use epoll_dispatch::serve;
/// The front desk the backend answers the link with; its types appear in
/// [`BackendConfig`] and the counters.
pub use frontdesk;
pub use guest_frame;

pub use fdlimit::{FD_RESERVE, FdBudget, fd_budget};
