//! A simulated guest TCP endpoint, a simulated host socket and a lossy link
//! between the guest and the state machine, all on a virtual clock.
//!
//! [`link`] carries segments with loss, duplication and jitter; [`guest`]
//! is the guest's TCP; [`host`] is the host socket and its peer application;
//! [`driver`] runs the state machine between them as a relay would and
//! checks every invariant as it goes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod driver;
mod guest;
mod host;
mod link;

use std::fmt;
use std::time::Duration;

use flow_table::tcp::{CloseReason, Phase};

/// splitmix64: small, seedable, good enough for a simulation.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 1.0 < p
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Deterministic pseudo-random payload, so a misplaced byte is visible.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Who opens the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opener {
    /// The guest connects out (SYN from the guest).
    Guest,
    /// A host peer connects to a forwarded port (SYN from slipway).
    Host,
}

/// Every knob of one simulated transfer.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub opener: Opener,
    /// Bytes the guest sends to the host.
    pub up: usize,
    /// Bytes the host sends to the guest.
    pub down: usize,
    pub loss: f64,
    pub duplication: f64,
    /// Extra random delay of each segment, which reorders them.
    pub jitter: Duration,
    pub link_delay: Duration,
    pub guest_isn: u32,
    pub slipway_isn: u32,
    pub guest_mss: u16,
    pub guest_wscale: Option<u8>,
    pub guest_rcv_buf: usize,
    /// The guest keeps segments that arrive beyond a gap, as Linux does.
    pub guest_reassembly: bool,
    pub slipway_mss: u16,
    pub host_snd_buf: usize,
    pub host_rcv_buf: usize,
    /// How the host application drains what the guest sent.
    pub host_read_chunk: usize,
    /// How the host application fills what goes to the guest.
    pub host_write_chunk: usize,
    pub guest_read_chunk: usize,
    pub app_interval: Duration,
    pub connect_delay: Duration,
    /// Delay before the guest closes its side once everything is sent.
    pub guest_close_delay: Duration,
    /// Delay before the host peer closes its side once everything is written.
    pub host_close_delay: Duration,
    /// Give up after this much simulated time.
    pub time_limit: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            opener: Opener::Guest,
            up: 100_000,
            down: 100_000,
            loss: 0.0,
            duplication: 0.0,
            jitter: Duration::ZERO,
            link_delay: Duration::from_micros(50),
            guest_isn: u32::MAX - 1000,
            slipway_isn: u32::MAX - 10,
            guest_mss: 1460,
            guest_wscale: Some(7),
            guest_rcv_buf: 64 * 1024,
            guest_reassembly: true,
            slipway_mss: 1460,
            host_snd_buf: 16 * 1024,
            host_rcv_buf: 32 * 1024,
            host_read_chunk: 8 * 1024,
            host_write_chunk: 8 * 1024,
            guest_read_chunk: 8 * 1024,
            app_interval: Duration::from_micros(200),
            connect_delay: Duration::from_micros(300),
            guest_close_delay: Duration::ZERO,
            host_close_delay: Duration::ZERO,
            time_limit: Duration::from_secs(900),
        }
    }
}

/// What a simulated transfer did.
#[derive(Debug, Default)]
pub struct Report {
    pub simulated: Duration,
    pub iterations: u64,
    pub segments_to_guest: u64,
    pub segments_to_slipway: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub timeouts: u64,
    pub fast_retransmits: u64,
    pub bytes_retransmitted: u64,
    pub out_of_order: u64,
    pub host_backpressure: u64,
    pub close_reason: Option<CloseReason>,
    pub phases: Vec<Phase>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulated time       {:?}", self.simulated)?;
        writeln!(
            f,
            "segments             {} to the guest, {} from it",
            self.segments_to_guest, self.segments_to_slipway
        )?;
        writeln!(
            f,
            "link                 {} lost, {} duplicated",
            self.lost, self.duplicated
        )?;
        writeln!(
            f,
            "slipway recovery     {} timeouts, {} fast retransmits, {} bytes peeked again",
            self.timeouts, self.fast_retransmits, self.bytes_retransmitted
        )?;
        writeln!(
            f,
            "guest segments       {} out of order (never written), {} cut short by a full host buffer",
            self.out_of_order, self.host_backpressure
        )?;
        writeln!(f, "phases               {:?}", self.phases)?;
        write!(f, "closed               {:?}", self.close_reason)
    }
}

/// Runs one transfer to completion and checks every invariant.
///
/// # Errors
/// A description of the first invariant that broke.
pub fn run(cfg: &SimConfig) -> Result<Report, String> {
    let mut sim = driver::Sim::new(cfg);
    sim.run()?;
    Ok(sim.report)
}
