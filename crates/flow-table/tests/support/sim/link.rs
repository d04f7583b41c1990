//! The link between the guest and slipway: one lossy, duplicating,
//! reordering queue each way, on the virtual clock.

use std::time::{Duration, Instant};

use flow_table::tcp::{Flags, SeqNum, Transmit};

use super::{Rng, SimConfig};

/// A segment on the simulated link, payload included.
#[derive(Clone, Debug)]
pub struct Wire {
    pub seq: SeqNum,
    pub ack: Option<SeqNum>,
    pub flags: Flags,
    pub window: u16,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub payload: Vec<u8>,
}

/// A one-way lossy link with delay, jitter and duplication.
pub struct Link {
    pub queue: Vec<(Instant, u64, Wire)>,
    pub order: u64,
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
}

impl Link {
    pub fn new() -> Self {
        Self {
            queue: Vec::new(),
            order: 0,
            sent: 0,
            lost: 0,
            duplicated: 0,
        }
    }

    pub fn send(&mut self, now: Instant, wire: Wire, cfg: &SimConfig, rng: &mut Rng) {
        self.sent += 1;
        if rng.chance(cfg.loss) {
            self.lost += 1;
            return;
        }
        let copies = if rng.chance(cfg.duplication) {
            self.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if cfg.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_nanos(rng.range(0, cfg.jitter.as_nanos() as u64))
            };
            self.order += 1;
            self.queue
                .push((now + cfg.link_delay + jitter, self.order, wire.clone()));
        }
    }

    pub fn next_time(&self) -> Option<Instant> {
        self.queue.iter().map(|(t, _, _)| *t).min()
    }

    pub fn pop_due(&mut self, now: Instant) -> Option<Wire> {
        let idx = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, (t, _, _))| *t <= now)
            .min_by_key(|(_, (t, o, _))| (*t, *o))
            .map(|(i, _)| i)?;
        Some(self.queue.swap_remove(idx).2)
    }
}

pub fn wire_of(t: &Transmit, payload: Vec<u8>) -> Wire {
    Wire {
        seq: t.seq,
        ack: t.ack,
        flags: t.flags,
        window: t.window,
        mss: t.mss,
        wscale: t.window_scale,
        payload,
    }
}
