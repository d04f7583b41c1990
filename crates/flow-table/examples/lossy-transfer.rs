//! Drives the TCP sequence-mirroring state machine through a transfer in
//! both directions over a lossy, duplicating, reordering simulated link, and
//! prints what happened.
//!
//! ```text
//! cargo run --release -p flow-table --example lossy-transfer -- [--bytes N] [--loss P] [--seed S]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/sim.rs"]
mod sim;

use std::process::ExitCode;
use std::time::Duration;

use sim::{Opener, SimConfig};

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn parse_args() -> Result<SimConfig, String> {
    let mut cfg = SimConfig {
        up: 4 << 20,
        down: 4 << 20,
        loss: 0.05,
        duplication: 0.02,
        jitter: Duration::from_micros(200),
        guest_mss: 1460,
        slipway_mss: 1460,
        guest_rcv_buf: 256 * 1024,
        host_snd_buf: 128 * 1024,
        host_rcv_buf: 128 * 1024,
        host_read_chunk: 64 * 1024,
        host_write_chunk: 64 * 1024,
        guest_read_chunk: 64 * 1024,
        opener: Opener::Guest,
        ..SimConfig::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--bytes" => {
                let n = value("--bytes")?;
                let n: usize = n
                    .parse()
                    .map_err(|_| format!("--bytes: not a number: {n}"))?;
                cfg.up = n;
                cfg.down = n;
            }
            "--loss" => {
                let p = value("--loss")?;
                cfg.loss = p
                    .parse()
                    .ok()
                    .filter(|p| (0.0..0.5).contains(p))
                    .ok_or_else(|| format!("--loss: expected a probability below 0.5, got {p}"))?;
            }
            "--seed" => {
                let s = value("--seed")?;
                cfg.seed = s
                    .parse()
                    .map_err(|_| format!("--seed: not a number: {s}"))?;
            }
            other => {
                return Err(format!(
                    "unknown option {other}; accepted: --bytes N, --loss P, --seed S"
                ));
            }
        }
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    let cfg = match parse_args() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("lossy-transfer: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "guest <-> slipway TCP state machine <-> simulated host socket\n\
         {} bytes each way, {:.0}% loss, {:.0}% duplication, up to {:?} reordering jitter\n",
        cfg.up,
        cfg.loss * 100.0,
        cfg.duplication * 100.0,
        cfg.jitter
    );
    let up = sim::payload(cfg.seed, cfg.up);
    let down = sim::payload(cfg.seed.wrapping_add(1), cfg.down);
    match sim::run(&cfg) {
        Ok(report) => {
            println!("{report}\n");
            println!(
                "guest -> host   {} bytes, fnv1a {:016x}, delivered exactly once and in order",
                up.len(),
                fnv1a(&up)
            );
            println!(
                "host -> guest   {} bytes, fnv1a {:016x}, delivered exactly once and in order",
                down.len(),
                fnv1a(&down)
            );
            println!("both half-closes completed; the flow closed normally");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("transfer FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
