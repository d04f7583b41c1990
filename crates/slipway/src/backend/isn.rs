//! Initial sequence numbers for slipway's side of each TCP flow (RFC 6528):
//! a keyed hash of the connection's addresses plus a clock that advances
//! every 4 µs, so numbers are unpredictable to an off-path party and move
//! forward for a reused 4-tuple.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::SocketAddr;
use std::time::Instant;

use flow_table::tcp::SeqNum;

/// The source of initial sequence numbers for one backend.
#[derive(Debug)]
pub(crate) struct IsnSource {
    secret: RandomState,
    epoch: Instant,
}

impl IsnSource {
    /// A source with a fresh random key.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            secret: RandomState::new(),
            epoch: now,
        }
    }

    /// The ISN for a flow between `guest` and `remote` at `now`.
    pub(crate) fn isn(&self, guest: SocketAddr, remote: SocketAddr, now: Instant) -> SeqNum {
        let mut hasher = self.secret.build_hasher();
        hasher.write(guest.to_string().as_bytes());
        hasher.write_u8(0);
        hasher.write(remote.to_string().as_bytes());
        // The 4 µs clock of RFC 793, modulo the sequence space.
        let ticks = now.saturating_duration_since(self.epoch).as_micros() / 4;
        let clock = (ticks & u128::from(u32::MAX)) as u32;
        let hash = (hasher.finish() & u64::from(u32::MAX)) as u32;
        SeqNum::new(hash.wrapping_add(clock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn isn_differs_per_tuple_and_advances_with_time() {
        let t0 = Instant::now();
        let src = IsnSource::new(t0);
        let g: SocketAddr = "10.0.2.15:40000".parse().unwrap_or_else(|_| unreachable!());
        let r1: SocketAddr = "127.0.0.1:80".parse().unwrap_or_else(|_| unreachable!());
        let r2: SocketAddr = "127.0.0.1:81".parse().unwrap_or_else(|_| unreachable!());
        assert_ne!(src.isn(g, r1, t0), src.isn(g, r2, t0));
        let later = src.isn(g, r1, t0 + Duration::from_millis(4));
        assert_eq!(later.since(src.isn(g, r1, t0)), 1000);
    }
}
