//! `virtio-net-kvm` trusts nothing in guest memory and knows nothing about
//! host sockets or flows (its one socket, vhost-user's, carries only the
//! VMM's messages). Every transmit chain is copied out of guest memory
//! exactly once, into a buffer of fixed size, and every decision (header,
//! checksum, length) is made on that copy, never on a second read of memory
//! the guest can rewrite. Descriptor indices, loops, lengths and addresses
//! from the driver are bounded and checked: a bad chain costs the guest its
//! frame and a counter increment ([`NetCounters`]), never a panic, an
//! unbounded loop or an allocation the guest sizes. Frames go to and come
//! from a [`FrameBackend`].
//!
//! A virtio-net device (virtio 1.x) that bridges a guest's driver to a
//! network backend such as slipway's, with a virtio-mmio transport for KVM
//! VMMs.
//!
//! # Embedding
//!
//! The device core, [`NetDevice`], owns no queue and no memory: a transport
//! lends it guest memory (any [`vm_memory::GuestMemory`], e.g. a
//! `GuestMemoryMmap` or what a `GuestMemoryAtomic` loads), the
//! [`virtio_queue::Queue`] being served, the backend and a [`Notifier`] for
//! that queue on every call. The same core therefore serves the virtio-mmio
//! transport of an in-process VMM and a vhost-user backend, where the
//! frontend owns the queue layout and the notifier is the vring's call
//! eventfd. A VMM embeds it like this:
//!
//! 1. Create `NetDevice::new(NetConfig { mac, mtu, .. })`, and the queues.
//! 2. Let the driver negotiate: offer [`NetDevice::device_features`], accept
//!    with [`NetDevice::set_acked_features`] at `FEATURES_OK`, serve config
//!    reads from [`NetConfig::read`].
//! 3. On a transmit kick: [`NetDevice::handle_tx`]. On a receive kick and
//!    whenever the backend may have frames (its host descriptor became
//!    readable, a timer ran): [`NetDevice::handle_rx`]. Both return `true`
//!    when their per-call budget ran out and they want to be called again.
//! 4. All of it on the thread that owns the backend: the core takes the
//!    backend by `&mut`, so no lock is needed or possible.
//!
//! The transports:
//! - [`mmio::MmioTransport`]: the virtio-mmio (version 2) register file,
//!   owning the device, both queues, an eventfd per queue (what a driver's
//!   notify write signals, and what a VMM registers as an ioeventfd) and the
//!   interrupt (a status register plus an eventfd a VMM registers as an
//!   irqfd). `kvm::register_eventfds` (cargo feature `kvm`) is the crate's
//!   only KVM call. MMIO
//!   exits go to `read`/`write`; a VMM whose vCPUs run on other threads
//!   forwards them to the backend's thread.
//! - [`vhost_user::VhostUserFrontend`]: the vhost-user protocol and the
//!   vrings the VMM shares; the VMM owns the queue layout, and each vring's
//!   `Queue` and call eventfd are lent to [`NetDevice::handle_tx`] and
//!   [`NetDevice::handle_rx`]. It is a frontend of `epoll-dispatch`'s
//!   serving loop, for any backend that is a [`FrameBackend`] and
//!   `epoll_dispatch::serve::Served`.
//!
//! The KVM calls sit behind the `kvm` cargo feature (off by default).
//!
//! The backend trait is `guest-frame`'s [`FrameBackend`], the same one
//! slipway's `Backend` implements: the device drives any backend without an
//! adapter, and this crate never depends on slipway.
//!
//! Checksum offload: with `VIRTIO_NET_F_CSUM` a driver may leave TCP/UDP
//! checksums partial. The device completes them before the backend sees
//! the frame, unless the backend says it takes them as they are
//! ([`FrameBackend::offloads_checksums`]); then the frame goes to
//! [`FrameBackend::handle_guest_frame_offloaded`] with its
//! [`Checksum::Partial`] offsets, checked to lie inside the frame. Towards a
//! driver with `VIRTIO_NET_F_GUEST_CSUM`, such a backend may hand out frames
//! with partial checksums, which go out marked `NEEDS_CSUM`.
//!
//! Copies: a transmitted frame is copied once from guest memory into the
//! device's buffer and the backend writes it to a host socket from there;
//! a received frame is written by the backend into the device's buffer and
//! copied once into guest memory.

#![forbid(unsafe_code)]

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

mod backend;
mod chain;
mod config;
mod device;
mod header;
#[cfg(feature = "kvm")]
pub mod kvm;
pub mod mmio;
pub mod vhost_user;

pub use backend::{DeferredNotifier, Notifier};
pub use config::{
    CONFIG_SPACE_LEN, DEVICE_FEATURES, F_CSUM, F_EVENT_IDX, F_GUEST_CSUM, F_MAC, F_MRG_RXBUF,
    F_MTU, F_STATUS, F_VERSION_1, FeatureError, NetConfig, check_driver_features,
};
pub use device::{
    ChainFaults, NUM_QUEUES, NetCounters, NetDevice, RX_QUEUE, TX_QUEUE, TxHeaderDrops,
};
pub use guest_frame::{self, Checksum, FrameBackend, GuestFrame};
pub use header::{MAX_FRAME_LEN, NET_HDR_LEN};
pub use mmio::MmioTransport;
