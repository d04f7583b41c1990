//! What a registration asks to hear about ([`Interest`]) and what an event
//! reports ([`Readiness`]).

use std::ops::BitOr;

use rustix::event::epoll::EventFlags;

/// How the kernel reports a readiness condition that persists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Trigger {
    /// Reported on every wait for as long as the condition holds (epoll's
    /// default). The caller narrows its [`Interest`] to stop hearing about a
    /// condition it cannot act on yet.
    #[default]
    Level,
    /// Reported once per change (`EPOLLET`); the caller must drain the fd
    /// until `EAGAIN` before it can expect another event.
    Edge,
}

/// The readiness conditions a registration asks for, and its [`Trigger`].
///
/// Combine with `|`: `Interest::READABLE | Interest::RDHUP`. Errors and
/// hang-ups (`EPOLLERR`, `EPOLLHUP`) are always reported by the kernel, even
/// with [`Interest::NONE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interest {
    readable: bool,
    writable: bool,
    read_hangup: bool,
    trigger: Trigger,
}

impl Interest {
    /// No condition: the fd stays registered but reports only errors and
    /// hang-ups.
    pub const NONE: Interest = Interest {
        readable: false,
        writable: false,
        read_hangup: false,
        trigger: Trigger::Level,
    };
    /// Data to read (`EPOLLIN`).
    pub const READABLE: Interest = Interest {
        readable: true,
        ..Self::NONE
    };
    /// Room to write (`EPOLLOUT`).
    pub const WRITABLE: Interest = Interest {
        writable: true,
        ..Self::NONE
    };
    /// The peer shut down its writing side (`EPOLLRDHUP`).
    pub const RDHUP: Interest = Interest {
        read_hangup: true,
        ..Self::NONE
    };

    /// The union of both interests; edge-triggered if either is.
    #[must_use]
    pub const fn add(self, other: Interest) -> Interest {
        Interest {
            readable: self.readable || other.readable,
            writable: self.writable || other.writable,
            read_hangup: self.read_hangup || other.read_hangup,
            trigger: match (self.trigger, other.trigger) {
                (Trigger::Level, Trigger::Level) => Trigger::Level,
                _ => Trigger::Edge,
            },
        }
    }

    /// These conditions without those of `other`; the trigger is kept.
    #[must_use]
    pub const fn remove(self, other: Interest) -> Interest {
        Interest {
            readable: self.readable && !other.readable,
            writable: self.writable && !other.writable,
            read_hangup: self.read_hangup && !other.read_hangup,
            trigger: self.trigger,
        }
    }

    /// The same conditions, reported with `trigger`.
    #[must_use]
    pub const fn with_trigger(self, trigger: Trigger) -> Interest {
        Interest { trigger, ..self }
    }

    /// The same conditions, edge-triggered.
    #[must_use]
    pub const fn edge_triggered(self) -> Interest {
        self.with_trigger(Trigger::Edge)
    }

    /// Whether `EPOLLIN` is asked for.
    #[must_use]
    pub const fn is_readable(self) -> bool {
        self.readable
    }

    /// Whether `EPOLLOUT` is asked for.
    #[must_use]
    pub const fn is_writable(self) -> bool {
        self.writable
    }

    /// Whether `EPOLLRDHUP` is asked for.
    #[must_use]
    pub const fn is_read_hangup(self) -> bool {
        self.read_hangup
    }

    /// How the conditions are reported.
    #[must_use]
    pub const fn trigger(self) -> Trigger {
        self.trigger
    }

    pub(crate) fn to_epoll(self) -> EventFlags {
        let mut flags = EventFlags::empty();
        if self.readable {
            flags |= EventFlags::IN;
        }
        if self.writable {
            flags |= EventFlags::OUT;
        }
        if self.read_hangup {
            flags |= EventFlags::RDHUP;
        }
        match self.trigger {
            Trigger::Level => {}
            Trigger::Edge => flags |= EventFlags::ET,
        }
        flags
    }
}

impl BitOr for Interest {
    type Output = Interest;

    fn bitor(self, rhs: Interest) -> Interest {
        self.add(rhs)
    }
}

/// The conditions one event reports for its fd.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Readiness(EventFlags);

impl Readiness {
    pub(crate) fn from_epoll(flags: EventFlags) -> Readiness {
        Readiness(flags)
    }

    /// Data (or end of file) can be read (`EPOLLIN`).
    #[must_use]
    pub fn is_readable(self) -> bool {
        self.0.contains(EventFlags::IN)
    }

    /// Data can be written (`EPOLLOUT`).
    #[must_use]
    pub fn is_writable(self) -> bool {
        self.0.contains(EventFlags::OUT)
    }

    /// Both directions are closed, or the fd hung up (`EPOLLHUP`).
    #[must_use]
    pub fn is_hangup(self) -> bool {
        self.0.contains(EventFlags::HUP)
    }

    /// An error is pending on the fd (`EPOLLERR`); for a socket, read it with
    /// `SO_ERROR` or the error queue.
    #[must_use]
    pub fn is_error(self) -> bool {
        self.0.contains(EventFlags::ERR)
    }

    /// The peer shut down its writing side (`EPOLLRDHUP`).
    #[must_use]
    pub fn is_read_hangup(self) -> bool {
        self.0.contains(EventFlags::RDHUP)
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("readable", &self.is_readable())
            .field("writable", &self.is_writable())
            .field("hangup", &self.is_hangup())
            .field("error", &self.is_error())
            .field("read_hangup", &self.is_read_hangup())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_sets_every_requested_flag() {
        let interest = Interest::READABLE | Interest::WRITABLE | Interest::RDHUP;
        assert_eq!(
            interest.to_epoll(),
            EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP
        );
        assert_eq!(interest.trigger(), Trigger::Level);
    }

    #[test]
    fn edge_trigger_adds_epollet_and_survives_union_and_removal() {
        let interest = Interest::READABLE.edge_triggered() | Interest::WRITABLE;
        assert_eq!(interest.trigger(), Trigger::Edge);
        let narrowed = interest.remove(Interest::READABLE);
        assert_eq!(narrowed.to_epoll(), EventFlags::OUT | EventFlags::ET);
    }

    #[test]
    fn removing_readable_leaves_the_rest() {
        let interest = (Interest::READABLE | Interest::RDHUP).remove(Interest::READABLE);
        assert!(!interest.is_readable());
        assert!(interest.is_read_hangup());
        assert_eq!(
            Interest::READABLE.remove(Interest::READABLE),
            Interest::NONE
        );
        assert_eq!(Interest::NONE.to_epoll(), EventFlags::empty());
    }

    #[test]
    fn readiness_decodes_each_flag() {
        let readiness = Readiness::from_epoll(EventFlags::IN | EventFlags::ERR);
        assert!(readiness.is_readable());
        assert!(readiness.is_error());
        assert!(!readiness.is_writable());
        assert!(!readiness.is_hangup());
        assert!(!readiness.is_read_hangup());
        let readiness =
            Readiness::from_epoll(EventFlags::OUT | EventFlags::HUP | EventFlags::RDHUP);
        assert!(readiness.is_writable() && readiness.is_hangup() && readiness.is_read_hangup());
    }
}
