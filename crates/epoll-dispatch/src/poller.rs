//! The epoll set and the deadline-bounded wait.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::Timespec;
use rustix::event::epoll::{self, CreateFlags, EventData};
use rustix::io::Errno;

use crate::{Events, Interest, Kind, Token, Waker};

/// Counters of what [`Poller::wait`] has done, for reporting idle wakeups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitStats {
    /// Calls to [`Poller::wait`] that returned `Ok`.
    pub waits: u64,
    /// Of those, the ones that reported no event (the deadline passed).
    pub empty_wakeups: u64,
    /// Of those, the ones that reported a [`Waker`] event.
    pub waker_wakeups: u64,
    /// `epoll_wait` system calls made, including the retries below. With no
    /// signals and no timeout longer than `i32::MAX` ms this equals `waits`.
    pub syscalls: u64,
    /// Retries after a signal interrupted the system call (`EINTR`).
    pub interrupted: u64,
    /// Retries after the kernel timed out before the caller's deadline, which
    /// happens only when the deadline is beyond the longest epoll timeout.
    pub early_timeouts: u64,
}

/// An epoll set, the waker registered in it, and wait statistics.
///
/// One thread owns the poller and is the only caller of [`Poller::wait`];
/// other threads reach it through [`Poller::waker`]. The epoll fd is closed
/// when the poller drops; registered fds are not (the caller owns them, and
/// the kernel removes an fd from the set when its last reference closes).
#[derive(Debug)]
pub struct Poller {
    epoll: OwnedFd,
    waker: Arc<Waker>,
    stats: WaitStats,
}

impl Poller {
    /// Creates an epoll set (close-on-exec) with its waker registered under
    /// [`Token::WAKER`].
    ///
    /// # Errors
    ///
    /// The `epoll_create1`, `eventfd2` or `epoll_ctl` error, e.g. `EMFILE`.
    pub fn new() -> io::Result<Poller> {
        let epoll = epoll::create(CreateFlags::CLOEXEC)?;
        let waker = Waker::new()?;
        epoll::add(
            &epoll,
            waker.fd(),
            EventData::new_u64(Token::WAKER.to_u64()),
            Interest::READABLE.to_epoll(),
        )?;
        Ok(Poller {
            epoll,
            waker: Arc::new(waker),
            stats: WaitStats::default(),
        })
    }

    /// Adds `fd` to the set: waits report `token` when `interest` holds.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `token` has the reserved kind [`Kind::WAKER`];
    /// otherwise the `epoll_ctl` error (`EEXIST` if `fd` is already
    /// registered, `EPERM` for a regular file).
    pub fn register(&self, fd: impl AsFd, token: Token, interest: Interest) -> io::Result<()> {
        check_not_reserved(token)?;
        epoll::add(
            &self.epoll,
            fd,
            EventData::new_u64(token.to_u64()),
            interest.to_epoll(),
        )?;
        Ok(())
    }

    /// Replaces the token and interest of a registered `fd`.
    ///
    /// Narrowing the interest is how a level-triggered caller stops hearing
    /// about a condition it cannot act on yet (readable data the guest has no
    /// window for), so that waits do not spin.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `token` has the reserved kind [`Kind::WAKER`];
    /// otherwise the `epoll_ctl` error (`ENOENT` if `fd` is not registered).
    pub fn modify(&self, fd: impl AsFd, token: Token, interest: Interest) -> io::Result<()> {
        check_not_reserved(token)?;
        epoll::modify(
            &self.epoll,
            fd,
            EventData::new_u64(token.to_u64()),
            interest.to_epoll(),
        )?;
        Ok(())
    }

    /// Removes `fd` from the set.
    ///
    /// # Errors
    ///
    /// The `epoll_ctl` error (`ENOENT` if `fd` is not registered).
    pub fn unregister(&self, fd: impl AsFd) -> io::Result<()> {
        epoll::delete(&self.epoll, fd)?;
        Ok(())
    }

    /// A handle that ends this poller's wait from any thread.
    #[must_use]
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// What the waits so far have done.
    #[must_use]
    pub fn stats(&self) -> WaitStats {
        self.stats
    }

    /// Sleeps until a registered fd is ready, the waker fires, or `deadline`
    /// passes; `None` sleeps until an fd or the waker is ready, with no
    /// periodic wakeup. Fills `events` and returns how many it holds.
    ///
    /// A return with zero events happens only at or after `deadline`: the
    /// timeout is rounded up to the next millisecond, and a signal (`EINTR`)
    /// or a kernel timeout shorter than the deadline leads to another wait
    /// with the timeout recomputed. A deadline already past polls without
    /// sleeping. A waker event is reported under [`Token::WAKER`], and the
    /// eventfd is drained before this returns so it does not stay readable.
    ///
    /// # Errors
    ///
    /// The `epoll_wait` error other than `EINTR`; `events` is then empty.
    pub fn wait(&mut self, events: &mut Events, deadline: Option<Instant>) -> io::Result<usize> {
        let list = events.list_mut();
        loop {
            list.clear();
            let timeout = deadline.map(|deadline| timeout_until(deadline, Instant::now()));
            self.stats.syscalls += 1;
            match epoll::wait(&self.epoll, spare_capacity(list), timeout.as_ref()) {
                Ok(_) => {}
                Err(Errno::INTR) => {
                    self.stats.interrupted += 1;
                    tracing::trace!("epoll wait interrupted by a signal; retrying");
                    continue;
                }
                Err(error) => return Err(error.into()),
            }
            match deadline {
                Some(deadline) if list.is_empty() && Instant::now() < deadline => {
                    self.stats.early_timeouts += 1;
                    tracing::trace!("epoll wait timed out before the deadline; retrying");
                }
                _ => break,
            }
        }
        self.stats.waits += 1;
        if events.is_empty() {
            self.stats.empty_wakeups += 1;
        } else if events.woken() {
            self.stats.waker_wakeups += 1;
            self.waker.drain();
        }
        Ok(events.len())
    }
}

fn check_not_reserved(token: Token) -> io::Result<()> {
    if token.kind() == Kind::WAKER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "token kind Kind::WAKER is reserved for the poller's waker",
        ));
    }
    Ok(())
}

/// The longest timeout `epoll_wait` takes, in milliseconds (about 24.8 days).
const MAX_TIMEOUT_MS: u32 = i32::MAX.unsigned_abs();

/// The epoll timeout that ends no earlier than `deadline`: the time left,
/// rounded up to whole milliseconds (so a wait never ends just short of the
/// deadline and spins), at most [`MAX_TIMEOUT_MS`].
fn timeout_until(deadline: Instant, now: Instant) -> Timespec {
    let left = deadline.saturating_duration_since(now);
    let millis = left
        .as_nanos()
        .div_ceil(Duration::from_millis(1).as_nanos());
    let millis = u32::try_from(millis).map_or(MAX_TIMEOUT_MS, |ms| ms.min(MAX_TIMEOUT_MS));
    // Whole milliseconds, so that rustix's own rounding to milliseconds keeps
    // the value exactly; below 1000 ms the nanoseconds fit in an i32.
    let sub_second_nanos = i32::try_from((millis % 1000) * 1_000_000).unwrap_or(0);
    Timespec {
        tv_sec: i64::from(millis / 1000),
        tv_nsec: sub_second_nanos.into(),
    }
}

/// The epoll descriptor itself, for an embedder's own loop: it polls
/// readable when any registered fd is ready.
impl AsFd for Poller {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(timespec: Timespec) -> i64 {
        timespec.tv_sec * 1000 + timespec.tv_nsec / 1_000_000
    }

    #[test]
    fn timeout_rounds_up_to_the_next_millisecond() {
        let now = Instant::now();
        let cases = [
            (Duration::ZERO, 0),
            (Duration::from_nanos(1), 1),
            (Duration::from_micros(999), 1),
            (Duration::from_millis(1), 1),
            (Duration::from_nanos(1_000_001), 2),
            (Duration::from_millis(1500), 1500),
            (Duration::from_nanos(2_999_999_999), 3000),
        ];
        for (left, expected) in cases {
            let timeout = timeout_until(now + left, now);
            assert_eq!(millis(timeout), expected, "for {left:?}");
            assert_eq!(timeout.tv_nsec % 1_000_000, 0);
        }
    }

    #[test]
    fn past_deadline_polls_without_sleeping() {
        let now = Instant::now();
        let deadline = now;
        let later = now + Duration::from_secs(1);
        assert_eq!(millis(timeout_until(deadline, later)), 0);
    }

    #[test]
    fn far_deadline_is_clamped_to_the_longest_epoll_timeout() {
        let now = Instant::now();
        let timeout = timeout_until(now + Duration::from_secs(60 * 86_400), now);
        assert_eq!(millis(timeout), i64::from(i32::MAX));
    }

    #[test]
    fn reserved_kind_is_rejected() -> io::Result<()> {
        let poller = Poller::new()?;
        let (a, _b) = std::os::unix::net::UnixStream::pair()?;
        let error = poller.register(&a, Token::WAKER, Interest::READABLE);
        assert_eq!(
            error.map_err(|e| e.kind()),
            Err(io::ErrorKind::InvalidInput)
        );
        Ok(())
    }
}
