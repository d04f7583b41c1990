//! Operation sequences against the TCP state machine: arbitrary guest
//! segments (any flags, sequence and acknowledgment numbers, windows,
//! options, payload lengths) interleaved with host socket events and clock
//! jumps. Nothing may panic or overflow, a peek never reaches beyond the
//! bytes reported queued, consumes never exceed them, and every drain loop
//! ends.
#![no_main]

use std::time::{Duration, Instant};

use flow_table::tcp::{Flags, HostError, Segment, SeqNum, SocketOp, TcpConfig, TcpConn};
use libfuzzer_sys::fuzz_target;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let Some(first) = input.u8() else { return };
    let t0 = Instant::now();
    let mut now = t0;
    let config = TcpConfig {
        mss: 1460,
        ..TcpConfig::default()
    };
    let isn = SeqNum::new(input.u32().unwrap_or(0));
    let guest_isn = SeqNum::new(input.u32().unwrap_or(0));
    let syn = Segment {
        seq: guest_isn,
        flags: Flags {
            syn: true,
            ..Flags::default()
        },
        window: 65535,
        mss: Some(1460),
        window_scale: (first & 1 == 1).then_some(first >> 4),
        ..Segment::default()
    };
    let mut conn = if first & 2 == 0 {
        TcpConn::from_guest_syn(&syn, isn, config, now)
    } else {
        TcpConn::from_host_accept(isn, 4096, config, now)
    };
    // The host socket: bytes queued toward the guest (relative to the
    // consumed head) and free send space.
    let mut queued: usize = 0;
    let payload = [0u8; 70_000];
    for _ in 0..10_000 {
        let Some(op) = input.u8() else { break };
        match op % 8 {
            0 | 1 => {
                let seq = guest_isn + input.u32().unwrap_or(0) % 200_000;
                let ack = input.u32().map(|a| isn + a % 200_000);
                let bits = input.u8().unwrap_or(0);
                let seg = Segment {
                    seq,
                    ack: ack.filter(|_| bits & 16 != 0),
                    flags: Flags {
                        syn: bits & 1 != 0,
                        fin: bits & 2 != 0,
                        rst: bits & 4 != 0,
                        psh: bits & 8 != 0,
                    },
                    window: input.u16().unwrap_or(0),
                    mss: None,
                    window_scale: None,
                };
                let len = usize::from(input.u16().unwrap_or(0)) % payload.len();
                let accept = usize::from(input.u16().unwrap_or(0));
                let mut writer = |d: &[u8]| -> Result<usize, HostError> {
                    if accept == 0xffff {
                        Err(HostError::Reset)
                    } else {
                        Ok(d.len().min(accept))
                    }
                };
                conn.handle_guest_segment(now, &seg, &payload[..len], &mut writer);
            }
            2 => {
                queued = queued.saturating_add(usize::from(input.u16().unwrap_or(0)));
                conn.handle_host_readable(now, queued);
            }
            3 => conn.handle_host_eof(now),
            4 => conn.handle_host_send_space(now, input.u32().unwrap_or(0) % (8 << 20)),
            5 => conn.handle_host_connected(now, u32::from(input.u16().unwrap_or(0))),
            6 => {
                now += Duration::from_millis(u64::from(input.u16().unwrap_or(0)) * 10);
                if let Some(at) = conn.poll_timeout() {
                    if at <= now {
                        conn.handle_timeout(now);
                    }
                }
            }
            _ => match input.u8().unwrap_or(0) % 3 {
                0 => conn.handle_host_reset(now),
                1 => conn.handle_host_error(now),
                _ => conn.handle_host_connect_failed(now),
            },
        }
        for _ in 0..100 {
            match conn.poll_socket_op() {
                Some(SocketOp::Consume(n)) => {
                    assert!(n <= queued, "consume {n} beyond {queued} queued");
                    queued -= n;
                    conn.handle_host_readable(now, queued);
                }
                Some(_) => {}
                None => break,
            }
        }
        let mut sent = 0;
        while let Some(t) = conn.poll_transmit(now) {
            if let Some(range) = t.payload {
                assert!(
                    range.offset + range.len <= queued,
                    "peek {range:?} beyond {queued}"
                );
            }
            sent += 1;
            assert!(sent < 100_000, "unbounded transmit loop");
        }
        while conn.poll_event().is_some() {}
        if conn.is_closed() {
            break;
        }
    }
});
