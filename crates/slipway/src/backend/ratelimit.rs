//! A token bucket for the rate of new TCP flows the guest may open.

use std::time::{Duration, Instant};

/// Allows `rate` events per second with bursts up to `rate`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: u32,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket; `rate` 0 means unlimited.
    pub(crate) fn new(rate: u32, now: Instant) -> Self {
        Self {
            rate,
            tokens: f64::from(rate),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now.max(self.last);
        let rate = f64::from(self.rate);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * rate).min(rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a token is available again.
    #[allow(dead_code)]
    pub(crate) fn wait(&self) -> Duration {
        if self.rate == 0 || self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / f64::from(self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_rate_and_refills() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, t0);
        let granted = (0..20).filter(|_| bucket.try_take(t0)).count();
        assert_eq!(granted, 10);
        assert!(bucket.try_take(t0 + Duration::from_millis(100)));
        assert!(!bucket.try_take(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0, t0);
        assert!((0..1000).all(|_| bucket.try_take(t0)));
    }
}
