//! What the device needs from a network backend, and how it signals the
//! driver.

use std::cell::Cell;
use std::io;
use std::time::Instant;

use vmm_sys_util::eventfd::EventFd;

/// What a frame's virtio-net header says about its transport-layer (TCP,
/// UDP) checksum, in either direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// The checksums in the frame are what they are: a receiver verifies
    /// them.
    Complete,
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the field at `start + offset` holds
    /// only the pseudo-header sum, and the one's complement sum from
    /// `start` to the end of the frame, stored there, completes it. Both
    /// offsets count from the frame's first byte (the Ethernet header).
    /// Nothing has been computed, so there is nothing to verify.
    Partial {
        /// Where the summed region starts.
        start: u16,
        /// Where the checksum field is, from `start`.
        offset: u16,
    },
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the sender vouches for the checksum.
    Valid,
}

/// The frame interface the device drives: slipway's backend, a test peer,
/// or anything else that speaks Ethernet.
///
/// The device calls it on the thread that owns the backend, so no
/// implementation needs a lock.
pub trait FrameBackend {
    /// Takes one Ethernet frame from the guest. The slice is the device's
    /// own copy of guest memory, valid for the duration of the call.
    fn handle_guest_frame(&mut self, frame: &[u8], now: Instant);

    /// Writes the next frame for the guest into `buf` and returns its
    /// length, or `None` when nothing is due. The device calls this only
    /// when it holds a receive buffer for the frame, so a frame the guest
    /// has no room for stays in the backend.
    fn poll_guest_frame(&mut self, buf: &mut [u8], now: Instant) -> Option<usize>;

    /// Whether the backend takes checksum offload: frames from the guest
    /// whose checksum the driver left partial, passed on as they are, and
    /// frames for the guest whose checksum it leaves partial. When `false`
    /// (the default) the device completes every partial checksum itself and
    /// calls only [`handle_guest_frame`](Self::handle_guest_frame) and
    /// [`poll_guest_frame`](Self::poll_guest_frame); when `true` it calls
    /// the `_offloaded` methods, which such a backend must implement.
    fn offloads_checksums(&self) -> bool {
        false
    }

    /// Takes one frame from the guest with what its header said about the
    /// checksum; a [`Checksum::Partial`] region lies inside the frame.
    fn handle_guest_frame_offloaded(&mut self, frame: &[u8], checksum: Checksum, now: Instant) {
        let _ = checksum;
        self.handle_guest_frame(frame, now);
    }

    /// Writes the next frame for the guest into `buf`, as
    /// [`poll_guest_frame`](Self::poll_guest_frame), and says whether its
    /// checksum is left partial.
    fn poll_guest_frame_offloaded(
        &mut self,
        buf: &mut [u8],
        now: Instant,
    ) -> Option<(usize, Checksum)> {
        self.poll_guest_frame(buf, now)
            .map(|len| (len, Checksum::Complete))
    }
}

/// Tells the driver that a queue has new used buffers: an irqfd, a
/// vhost-user call eventfd, or an interrupt status register behind one.
pub trait Notifier {
    /// Signals used buffers on the queue this notifier belongs to.
    ///
    /// # Errors
    /// The signal could not be delivered.
    fn notify_used(&self) -> io::Result<()>;
}

impl Notifier for EventFd {
    fn notify_used(&self) -> io::Result<()> {
        self.write(1)
    }
}

impl<N: Notifier + ?Sized> Notifier for &N {
    fn notify_used(&self) -> io::Result<()> {
        (**self).notify_used()
    }
}

/// Remembers that the driver is due a notification, for a caller that
/// cannot lend its signal while the queue is borrowed: a vhost-user vring
/// keeps its queue and its call eventfd behind one lock, so the caller
/// passes this, and signals the vring afterwards when [`Self::take`] says so.
#[derive(Debug, Default)]
pub struct DeferredNotifier(Cell<bool>);

impl DeferredNotifier {
    /// Whether a notification came due since the last call; clears it.
    pub fn take(&self) -> bool {
        self.0.replace(false)
    }
}

impl Notifier for DeferredNotifier {
    fn notify_used(&self) -> io::Result<()> {
        self.0.set(true);
        Ok(())
    }
}
