//! What the relay's sockets did: traffic each way and drops by reason.

use std::fmt;

/// Why a datagram, query or reply was dropped instead of relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The host socket's send buffer was full (`EAGAIN`).
    WouldBlock,
    /// The payload is larger than the largest datagram of its family.
    Oversize,
    /// A received datagram did not fit the caller's buffer.
    Truncated,
    /// A guest DNS query shorter than a DNS header, or with the response
    /// bit set.
    MalformedQuery,
    /// A reply (DNS or ICMP echo) too short or of the wrong kind.
    MalformedReply,
    /// A reply that matches no pending query or outstanding echo request.
    UnmatchedReply,
    /// A pending DNS query pushed out of a full table by a newer one.
    Evicted,
    /// A pending DNS query with no reply before its timeout.
    TimedOut,
    /// An ICMP echo reply whose checksum is wrong.
    BadChecksum,
    /// A DNS reply with the id of a pending query that came to another of
    /// the forwarder's sockets than the query left from: what an off-path
    /// spoofer who guessed the id but not the port sends.
    WrongSocket,
}

impl DropReason {
    /// Every reason, in declaration order.
    pub const ALL: [DropReason; 10] = [
        DropReason::WouldBlock,
        DropReason::Oversize,
        DropReason::Truncated,
        DropReason::MalformedQuery,
        DropReason::MalformedReply,
        DropReason::UnmatchedReply,
        DropReason::Evicted,
        DropReason::TimedOut,
        DropReason::BadChecksum,
        DropReason::WrongSocket,
    ];

    const fn index(self) -> usize {
        match self {
            DropReason::WouldBlock => 0,
            DropReason::Oversize => 1,
            DropReason::Truncated => 2,
            DropReason::MalformedQuery => 3,
            DropReason::MalformedReply => 4,
            DropReason::UnmatchedReply => 5,
            DropReason::Evicted => 6,
            DropReason::TimedOut => 7,
            DropReason::BadChecksum => 8,
            DropReason::WrongSocket => 9,
        }
    }

    /// A short snake-case name for logs and counter listings.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::WouldBlock => "would_block",
            DropReason::Oversize => "oversize",
            DropReason::Truncated => "truncated",
            DropReason::MalformedQuery => "malformed_query",
            DropReason::MalformedReply => "malformed_reply",
            DropReason::UnmatchedReply => "unmatched_reply",
            DropReason::Evicted => "evicted",
            DropReason::TimedOut => "timed_out",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::WrongSocket => "wrong_socket",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Datagrams and payload bytes in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams (or echo requests and replies) relayed.
    pub datagrams: u64,
    /// Payload bytes relayed, without any header.
    pub bytes: u64,
}

impl Traffic {
    fn record(&mut self, bytes: usize) {
        self.datagrams = self.datagrams.saturating_add(1);
        self.bytes = self
            .bytes
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
    }
}

/// Counters of one socket, or the sum of many ([`Counters::merge`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Guest to host: what the relay wrote to host sockets.
    pub to_host: Traffic,
    /// Host to guest: what the relay read from host sockets for the guest.
    pub to_guest: Traffic,
    /// ICMP errors and other asynchronous socket errors read from error
    /// queues or met on `send`/`recv`.
    pub icmp_errors: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl Counters {
    /// Drops for one reason.
    #[must_use]
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Drops for every reason together.
    #[must_use]
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().fold(0, |a, b| a.saturating_add(*b))
    }

    /// Each reason with its count, in [`DropReason::ALL`] order.
    pub fn drops_by_reason(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.drops(*r)))
    }

    /// Adds `other` into `self`, e.g. a closing flow's counters into the
    /// backend's totals.
    pub fn merge(&mut self, other: &Counters) {
        self.to_host.datagrams = self
            .to_host
            .datagrams
            .saturating_add(other.to_host.datagrams);
        self.to_host.bytes = self.to_host.bytes.saturating_add(other.to_host.bytes);
        self.to_guest.datagrams = self
            .to_guest
            .datagrams
            .saturating_add(other.to_guest.datagrams);
        self.to_guest.bytes = self.to_guest.bytes.saturating_add(other.to_guest.bytes);
        self.icmp_errors = self.icmp_errors.saturating_add(other.icmp_errors);
        for (mine, theirs) in self.drops.iter_mut().zip(other.drops.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    pub(crate) fn record_to_host(&mut self, bytes: usize) {
        self.to_host.record(bytes);
    }

    pub(crate) fn record_to_guest(&mut self, bytes: usize) {
        self.to_guest.record(bytes);
    }

    pub(crate) fn record_icmp_error(&mut self) {
        self.icmp_errors = self.icmp_errors.saturating_add(1);
    }

    pub(crate) fn record_drop(&mut self, reason: DropReason) {
        let slot = &mut self.drops[reason.index()];
        *slot = slot.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot() {
        let mut c = Counters::default();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            c.record_drop(*r);
        }
        assert!(c.drops_by_reason().all(|(_, n)| n == 1));
        assert_eq!(c.total_drops(), DropReason::ALL.len() as u64);
    }

    #[test]
    fn merge_adds_every_field() {
        let mut a = Counters::default();
        a.record_to_host(10);
        a.record_drop(DropReason::Evicted);
        let mut b = Counters::default();
        b.record_to_host(5);
        b.record_to_guest(7);
        b.record_icmp_error();
        b.record_drop(DropReason::Evicted);
        a.merge(&b);
        assert_eq!(
            a.to_host,
            Traffic {
                datagrams: 2,
                bytes: 15
            }
        );
        assert_eq!(
            a.to_guest,
            Traffic {
                datagrams: 1,
                bytes: 7
            }
        );
        assert_eq!(a.icmp_errors, 1);
        assert_eq!(a.drops(DropReason::Evicted), 2);
    }
}
