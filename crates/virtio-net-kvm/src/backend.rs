//! How the device signals the driver.

use std::cell::Cell;
use std::io;

use vmm_sys_util::eventfd::EventFd;

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
