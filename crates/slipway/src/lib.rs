//! slipway: a user-mode network stack for virtual machines and sandboxes.
//!
//! This crate composes the layers into the backend: the Ethernet front desk
//! (ARP, DHCP, the DNS address), dispatch to the relays, the
//! `NetworkBackend` trait for embedders, the pcap capture, and the tap and
//! stream frontends of the serving loop ([`serve`], from `epoll-dispatch`).
//!
//! Invariant: the backend is owned by one thread; no mutex sits on the path of
//! a frame.

pub mod backend;
pub mod capture;
pub mod fdlimit;
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
