//! Retransmission timeout estimation (RFC 6298) and the timeouts of a flow.

use std::time::{Duration, Instant};

/// Timeouts and limits of the TCP state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// The MSS slipway announces to the guest: the guest-side MTU minus the
    /// IP and TCP headers.
    pub mss: u16,
    /// The window scale slipway offers (0..=14).
    pub window_scale: u8,
    /// How long a host `connect()` may take before the guest gets an RST.
    pub connect_timeout: Duration,
    /// Retransmission timeout before any round-trip sample.
    pub initial_rto: Duration,
    /// Lower bound of the retransmission timeout.
    pub min_rto: Duration,
    /// Upper bound of the retransmission timeout after backoff.
    pub max_rto: Duration,
    /// Retransmissions of a SYN or SYN-ACK before the flow is reset.
    pub syn_retries: u32,
    /// How long the guest has to complete the handshake once slipway sent
    /// its SYN-ACK (or, for a host peer's connection, its SYN), however
    /// many retransmissions that leaves; then the flow is reset and its
    /// host socket closed. A half-open flow holds a host socket, so this
    /// bounds how long a guest that never answers keeps one. Linux gives
    /// up after about 63 s (5 SYN-ACK retransmissions); slipway's guest is
    /// one link away, so the default, 20 s, leaves room for four
    /// retransmissions (at 1, 3, 7 and 15 s) and no more.
    pub handshake_timeout: Duration,
    /// Consecutive retransmission timeouts before the flow is reset.
    pub max_retransmits: u32,
    /// A flow with no traffic either way for this long is reset. Guest
    /// keep-alives count as traffic.
    pub idle_timeout: Option<Duration>,
    /// Once slipway sent its FIN, the guest has this long to acknowledge it
    /// before the flow is reset, however the retransmissions back off.
    pub fin_timeout: Duration,
    /// How long a flow lingers after slipway acknowledged the guest's FIN as
    /// the last step, to acknowledge a retransmitted FIN again (2 MSL as
    /// Linux counts it). The host socket is closed already; a lingering flow
    /// holds only its table entry, which the owner may reclaim under
    /// pressure.
    pub time_wait: Duration,
}

impl TcpConfig {
    /// Largest window scale RFC 7323 allows.
    pub const MAX_WINDOW_SCALE: u8 = 14;

    /// The configuration for a guest link of the given MTU, IPv4 headers.
    #[must_use]
    pub fn for_mtu_v4(mtu: u16) -> Self {
        Self {
            mss: mtu.saturating_sub(40).max(536),
            ..Self::default()
        }
    }

    /// The configuration for a guest link of the given MTU, IPv6 headers.
    #[must_use]
    pub fn for_mtu_v6(mtu: u16) -> Self {
        Self {
            mss: mtu.saturating_sub(60).max(1220),
            ..Self::default()
        }
    }
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            mss: 65480,
            window_scale: 7,
            connect_timeout: Duration::from_secs(10),
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(60),
            syn_retries: 6,
            handshake_timeout: Duration::from_secs(20),
            max_retransmits: 12,
            // RFC 5382 REQ-5: at least 2 hours 4 minutes.
            idle_timeout: Some(Duration::from_secs(7440)),
            // Room for eight backed-off retransmissions of the FIN.
            fin_timeout: Duration::from_secs(300),
            time_wait: Duration::from_secs(60),
        }
    }
}

/// Smoothed round-trip time and the retransmission timeout of RFC 6298.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RtoEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    /// Backoff shift applied after consecutive timeouts.
    backoff: u32,
}

impl RtoEstimator {
    pub(crate) fn new(config: &TcpConfig) -> Self {
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: config.initial_rto,
            backoff: 0,
        }
    }

    /// The current timeout, backoff included.
    pub(crate) fn rto(&self, config: &TcpConfig) -> Duration {
        let factor = 1u32 << self.backoff.min(16);
        self.rto.saturating_mul(factor).min(config.max_rto)
    }

    /// Records a round-trip sample (never one of a retransmitted segment).
    pub(crate) fn sample(&mut self, rtt: Duration, config: &TcpConfig) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        let granularity = Duration::from_millis(1);
        self.rto =
            (srtt + (self.rttvar * 4).max(granularity)).clamp(config.min_rto, config.max_rto);
        self.backoff = 0;
    }

    /// Doubles the timeout after it expired.
    pub(crate) fn back_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// Forgets the backoff once new data is acknowledged.
    pub(crate) fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// The smoothed round-trip time, once there is a sample.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
}

/// The earliest of a set of optional deadlines.
pub(crate) fn earliest(deadlines: &[Option<Instant>]) -> Option<Instant> {
    deadlines.iter().flatten().min().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rto_follows_samples_and_stays_within_bounds() {
        let config = TcpConfig::default();
        let mut est = RtoEstimator::new(&config);
        assert_eq!(est.rto(&config), config.initial_rto);
        est.sample(Duration::from_micros(50), &config);
        assert_eq!(est.rto(&config), config.min_rto);
        est.sample(Duration::from_secs(100), &config);
        assert!(est.rto(&config) <= config.max_rto);
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let config = TcpConfig::default();
        let mut est = RtoEstimator::new(&config);
        est.back_off();
        assert_eq!(est.rto(&config), config.initial_rto * 2);
        for _ in 0..100 {
            est.back_off();
        }
        assert_eq!(est.rto(&config), config.max_rto);
        est.reset_backoff();
        assert_eq!(est.rto(&config), config.initial_rto);
    }

    #[test]
    fn mss_follows_the_mtu() {
        assert_eq!(TcpConfig::for_mtu_v4(1500).mss, 1460);
        assert_eq!(TcpConfig::for_mtu_v6(1500).mss, 1440);
        assert_eq!(TcpConfig::for_mtu_v4(65520).mss, 65480);
    }
}
