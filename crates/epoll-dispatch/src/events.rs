//! The buffer a wait fills with ready tokens.

use rustix::event::epoll;

use crate::{Readiness, Token};

/// A reusable buffer of readiness events, filled by [`Poller::wait`].
///
/// A wait reports at most [`Events::capacity`] events; fds left unreported
/// stay ready (level-triggered) and come back on the next wait.
///
/// [`Poller::wait`]: crate::Poller::wait
pub struct Events {
    list: Vec<epoll::Event>,
}

impl Events {
    /// A buffer for at least `capacity` events per wait (at least one).
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Events {
        Events {
            list: Vec::with_capacity(capacity.max(1)),
        }
    }

    /// The most events one wait can report.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.list.capacity()
    }

    /// How many events the last wait reported.
    #[must_use]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the last wait reported no event.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether the last wait was ended by a [`Waker`]; its event appears in
    /// [`Events::iter`] under [`Token::WAKER`] too.
    ///
    /// [`Waker`]: crate::Waker
    #[must_use]
    pub fn woken(&self) -> bool {
        self.iter().any(|(token, _)| token == Token::WAKER)
    }

    /// The events of the last wait, in the kernel's order.
    #[must_use]
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            inner: self.list.iter(),
        }
    }

    /// Forgets the events of the last wait.
    pub fn clear(&mut self) {
        self.list.clear();
    }

    pub(crate) fn list_mut(&mut self) -> &mut Vec<epoll::Event> {
        &mut self.list
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = (Token, Readiness);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// An iterator over the `(Token, Readiness)` pairs of an [`Events`] buffer.
#[derive(Clone)]
pub struct Iter<'a> {
    inner: std::slice::Iter<'a, epoll::Event>,
}

impl Iterator for Iter<'_> {
    type Item = (Token, Readiness);

    fn next(&mut self) -> Option<(Token, Readiness)> {
        self.inner.next().map(|event| {
            // Copy the fields out: the kernel's layout is packed on x86_64, so
            // they cannot be borrowed in place.
            let flags = event.flags;
            let data = event.data;
            (Token::from_u64(data.u64()), Readiness::from_epoll(flags))
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl std::fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter")
            .field("remaining", &self.inner.len())
            .finish()
    }
}
