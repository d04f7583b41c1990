//! Idle expiry of datagram flows (UDP, ICMP echo): pure arithmetic on
//! instants the caller reads.

use std::time::{Duration, Instant};

/// How long a UDP flow lives without a datagram in either direction (as in
/// passt).
pub const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(180);

/// The longest idle timeout [`DatagramFlowState`] keeps; longer ones are
/// shortened to it so a deadline never overflows [`Instant`].
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// When a datagram flow (UDP, ICMP echo) was last active and how long it
/// may stay idle.
///
/// The backend calls [`DatagramFlowState::touch`] on every datagram either
/// way and arms the flow table's deadline with
/// [`DatagramFlowState::deadline`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatagramFlowState {
    last_activity: Instant,
    idle_timeout: Duration,
}

impl DatagramFlowState {
    /// A flow that opens at `now` and expires after `idle_timeout` without
    /// traffic (at most [`MAX_IDLE_TIMEOUT`]).
    #[must_use]
    pub fn new(now: Instant, idle_timeout: Duration) -> Self {
        Self {
            last_activity: now,
            idle_timeout: idle_timeout.min(MAX_IDLE_TIMEOUT),
        }
    }

    /// A flow that opens at `now` with [`DEFAULT_UDP_IDLE_TIMEOUT`].
    #[must_use]
    pub fn with_default_timeout(now: Instant) -> Self {
        Self::new(now, DEFAULT_UDP_IDLE_TIMEOUT)
    }

    /// Records traffic at `now`. An instant earlier than the last activity
    /// changes nothing, so the deadline never moves back.
    pub fn touch(&mut self, now: Instant) {
        self.last_activity = self.last_activity.max(now);
    }

    /// The instant of the last datagram either way.
    #[must_use]
    pub fn last_activity(&self) -> Instant {
        self.last_activity
    }

    /// The idle timeout in force.
    #[must_use]
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// When the flow expires unless it sees traffic first.
    #[must_use]
    pub fn deadline(&self) -> Instant {
        self.last_activity
            .checked_add(self.idle_timeout)
            .unwrap_or(self.last_activity)
    }

    /// Whether the flow has been idle for its whole timeout at `now`.
    #[must_use]
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.deadline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_flow_expires_after_its_timeout() {
        let t0 = Instant::now();
        let s = DatagramFlowState::new(t0, Duration::from_secs(30));
        assert_eq!(s.deadline(), t0 + Duration::from_secs(30));
        assert!(!s.is_expired(t0 + Duration::from_secs(29)));
        assert!(s.is_expired(t0 + Duration::from_secs(30)));
    }

    #[test]
    fn traffic_pushes_the_deadline_forward_never_back() {
        let t0 = Instant::now();
        let mut s = DatagramFlowState::with_default_timeout(t0);
        assert_eq!(s.deadline(), t0 + Duration::from_secs(180));
        s.touch(t0 + Duration::from_secs(100));
        assert_eq!(s.deadline(), t0 + Duration::from_secs(280));
        assert!(!s.is_expired(t0 + Duration::from_secs(200)));
        s.touch(t0 + Duration::from_secs(50));
        assert_eq!(s.last_activity(), t0 + Duration::from_secs(100));
        assert!(s.is_expired(t0 + Duration::from_secs(280)));
    }

    #[test]
    fn huge_timeouts_are_capped() {
        let t0 = Instant::now();
        let s = DatagramFlowState::new(t0, Duration::MAX);
        assert_eq!(s.idle_timeout(), MAX_IDLE_TIMEOUT);
        assert_eq!(s.deadline(), t0 + MAX_IDLE_TIMEOUT);
    }

    #[test]
    fn zero_timeout_expires_at_once() {
        let t0 = Instant::now();
        let s = DatagramFlowState::new(t0, Duration::ZERO);
        assert!(s.is_expired(t0));
    }
}
