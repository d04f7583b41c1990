//! The eventfd through which other threads end a wait.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{EventfdFlags, eventfd};
use rustix::io::Errno;

/// Ends the owning [`Poller`]'s current or next wait, from any thread.
///
/// Obtained from [`Poller::waker`] and shared as an `Arc<Waker>`. Wakes that
/// arrive before the poller drains the eventfd coalesce into one event under
/// [`Token::WAKER`]; none is lost, since a wake after the drain makes the
/// eventfd readable again.
///
/// [`Poller`]: crate::Poller
/// [`Poller::waker`]: crate::Poller::waker
/// [`Token::WAKER`]: crate::Token::WAKER
#[derive(Debug)]
pub struct Waker {
    eventfd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Waker> {
        let eventfd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Waker { eventfd })
    }

    /// Makes the poller's wait return with a [`Token::WAKER`] event.
    ///
    /// Never blocks. If the poller has been dropped, the wake goes nowhere.
    ///
    /// [`Token::WAKER`]: crate::Token::WAKER
    pub fn wake(&self) {
        loop {
            match rustix::io::write(&self.eventfd, &1u64.to_ne_bytes()) {
                // `AGAIN` means the counter is saturated: the eventfd is
                // readable already, which is all a wake needs.
                Ok(_) | Err(Errno::AGAIN) => return,
                Err(Errno::INTR) => {}
                Err(error) => {
                    // Writing 8 bytes to our own eventfd has no other failure;
                    // should one appear, the poller's caller still wakes at its
                    // next deadline.
                    tracing::warn!(%error, "eventfd write failed");
                    return;
                }
            }
        }
    }

    /// Resets the eventfd counter so the waker stops being readable.
    pub(crate) fn drain(&self) {
        let mut counter = [0u8; 8];
        loop {
            match rustix::io::read(&self.eventfd, &mut counter) {
                Ok(_) | Err(Errno::AGAIN) => return,
                Err(Errno::INTR) => {}
                Err(error) => {
                    tracing::warn!(%error, "eventfd read failed");
                    return;
                }
            }
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.eventfd.as_fd()
    }
}
