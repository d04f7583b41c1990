//! The relay's part: runs `TcpConn` between the simulated guest and host
//! socket, carries out its decisions, and checks every invariant as the
//! transfer goes.

use std::time::Instant;

use flow_table::tcp::{CloseReason, HostError, Segment, SeqNum, SocketOp, TcpConfig, TcpConn};

use super::guest::Guest;
use super::host::Host;
use super::link::{Link, Wire, wire_of};
use super::{Opener, Report, Rng, SimConfig, payload};

pub struct Sim<'a> {
    pub cfg: &'a SimConfig,
    pub rng: Rng,
    pub now: Instant,
    pub start: Instant,
    pub conn: Option<TcpConn>,
    pub conn_created: bool,
    pub connect_at: Option<Instant>,
    pub guest: Guest,
    pub host: Host,
    pub to_guest: Link,
    pub to_slipway: Link,
    pub next_app_tick: Instant,
    pub checked_up: usize,
    pub checked_down: usize,
    pub report: Report,
}

impl<'a> Sim<'a> {
    pub fn new(cfg: &'a SimConfig) -> Self {
        // The one clock read: a base for the virtual clock.
        let start = Instant::now();
        let up = payload(cfg.seed, cfg.up);
        let down = payload(cfg.seed.wrapping_add(1), cfg.down);
        let guest = Guest::new(cfg, up);
        let host = Host::new(cfg, down);
        let mut sim = Self {
            cfg,
            rng: Rng::new(cfg.seed),
            now: start,
            start,
            conn: None,
            conn_created: false,
            connect_at: None,
            guest,
            host,
            to_guest: Link::new(),
            to_slipway: Link::new(),
            next_app_tick: start,
            checked_up: 0,
            checked_down: 0,
            report: Report::default(),
        };
        if cfg.opener == Opener::Host {
            let tcp = sim.tcp_config();
            sim.conn = Some(TcpConn::from_host_accept(
                SeqNum::new(cfg.slipway_isn),
                sim.host.space(),
                tcp,
                start,
            ));
            sim.conn_created = true;
        }
        sim
    }

    pub fn tcp_config(&self) -> TcpConfig {
        TcpConfig {
            mss: self.cfg.slipway_mss,
            ..TcpConfig::default()
        }
    }

    pub fn run(&mut self) -> Result<(), String> {
        let mut stalled = 0u32;
        let mut last_now = self.now;
        loop {
            self.report.iterations += 1;
            if self.now == last_now {
                stalled += 1;
                if stalled > 20_000 {
                    return Err(self.fail("busy loop: no progress of the clock"));
                }
            } else {
                stalled = 0;
                last_now = self.now;
            }
            if self.now - self.start > self.cfg.time_limit {
                return Err(self.fail("time limit reached"));
            }
            self.deliver()?;
            self.run_timers();
            self.readiness();
            self.drain()?;
            self.check()?;
            if self.finished() {
                return self.verify();
            }
            match self.next_event() {
                Some(t) => self.now = self.now.max(t),
                None => return Err(self.fail("deadlock: nothing left to happen")),
            }
        }
    }

    pub fn fail(&self, what: &str) -> String {
        let conn = self.conn.as_ref().map(|c| {
            format!(
                "next timeout in {:?}\n{c:#?}",
                c.poll_timeout()
                    .map(|t| t.saturating_duration_since(self.now))
            )
        });
        format!(
            "{what} at {:?} (flow closed: {:?}, timeouts {}, fast retransmits {})\nconfig: {:?}\nguest sent {}/{} acked {} fin_sent {} fin_acked {} peer_fin {} received {}/{}\nhost delivered {}/{} written {}/{} peer_closed {} eof_seen {} rcv_queue {}\nconn: {}",
            self.now - self.start,
            self.report.close_reason,
            self.report.timeouts,
            self.report.fast_retransmits,
            self.cfg,
            self.guest.snd_nxt,
            self.guest.data.len(),
            self.guest.snd_una,
            self.guest.fin_sent,
            self.guest.fin_acked,
            self.guest.peer_fin,
            self.guest.received.len(),
            self.cfg.down,
            self.host.delivered.len(),
            self.cfg.up,
            self.host.written,
            self.cfg.down,
            self.host.peer_closed,
            self.host.peer_saw_eof,
            self.host.rcv_queue.len(),
            conn.unwrap_or_else(|| "none".into()),
        )
    }

    pub fn deliver(&mut self) -> Result<(), String> {
        for _ in 0..100_000 {
            let mut progressed = false;
            if let Some(w) = self.to_guest.pop_due(self.now) {
                self.guest.on_segment(self.now, &w, self.cfg);
                progressed = true;
            }
            if let Some(w) = self.to_slipway.pop_due(self.now) {
                self.deliver_to_conn(&w)?;
                progressed = true;
            }
            if !progressed {
                return Ok(());
            }
        }
        Err(self.fail("unbounded delivery"))
    }

    pub fn deliver_to_conn(&mut self, w: &Wire) -> Result<(), String> {
        let seg = Segment {
            seq: w.seq,
            ack: w.ack,
            flags: w.flags,
            window: w.window,
            mss: w.mss,
            window_scale: w.wscale,
        };
        if self.conn.is_none() {
            if w.flags.syn && w.ack.is_none() && !self.conn_created {
                let tcp = self.tcp_config();
                self.conn = Some(TcpConn::from_guest_syn(
                    &seg,
                    SeqNum::new(self.cfg.slipway_isn),
                    tcp,
                    self.now,
                ));
                self.conn_created = true;
                self.connect_at = Some(self.now + self.cfg.connect_delay);
                return Ok(());
            }
            if let Some(rst) = flow_table::tcp::rst_for_unknown(&seg, w.payload.len()) {
                self.to_guest
                    .send(self.now, wire_of(&rst, Vec::new()), self.cfg, &mut self.rng);
            }
            return Ok(());
        }
        let host = &mut self.host;
        let now = self.now;
        let conn = self.conn.as_mut().unwrap();
        let mut writer = |data: &[u8]| -> Result<usize, HostError> {
            if host.reset {
                return Err(HostError::Reset);
            }
            if host.shutdown_seen {
                return Err(HostError::Failed);
            }
            let n = data.len().min(host.snd_cap - host.snd_queue);
            host.delivered.extend_from_slice(&data[..n]);
            host.snd_queue += n;
            Ok(n)
        };
        conn.handle_guest_segment(now, &seg, &w.payload, &mut writer);
        // The relay measures the send buffer once per batch of segments.
        let space = self.host.space();
        self.conn
            .as_mut()
            .unwrap()
            .handle_host_send_space(now, space);
        Ok(())
    }

    pub fn run_timers(&mut self) {
        let now = self.now;
        if self.connect_at.is_some_and(|t| t <= now) {
            self.connect_at = None;
            let space = self.host.space();
            if let Some(conn) = self.conn.as_mut() {
                conn.handle_host_connected(now, space);
            }
        }
        if let Some(conn) = self.conn.as_mut() {
            if conn.poll_timeout().is_some_and(|t| t <= now) {
                conn.handle_timeout(now);
            }
        }
        if self.guest.timer.is_some_and(|t| t <= now) {
            self.guest.on_timer(now);
        }
        if self.next_app_tick <= now {
            self.guest.app_tick(now, self.cfg);
            self.host.app_tick(now, self.cfg);
            self.next_app_tick = now + self.cfg.app_interval;
        }
    }

    /// Level-triggered readiness, as epoll reports it for the interest the
    /// flow asks for.
    pub fn readiness(&mut self) {
        let now = self.now;
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if self.connect_at.is_some() || self.host.closed {
            return;
        }
        let interest = conn.interest();
        let eof = self.host.peer_closed && self.host.written == self.host.to_send.len();
        if interest.readable && (!self.host.rcv_queue.is_empty() || eof) {
            conn.handle_host_readable(now, self.host.rcv_queue.len());
            if eof {
                conn.handle_host_eof(now);
                self.host.eof_reported = true;
            }
        }
        // Linux reports a TCP socket writable once a third of its send
        // buffer is free (sk_stream_is_writeable).
        let writable = self.host.space() as usize >= (self.host.snd_cap / 3).max(1);
        if interest.writable && writable {
            conn.handle_host_send_space(now, self.host.space());
        }
    }

    /// Carries out what the flow decided (socket operations, segments to the
    /// guest), then sends what the guest has to send.
    pub fn drain(&mut self) -> Result<(), String> {
        let now = self.now;
        if let Some(mut conn) = self.conn.take() {
            self.carry_out_socket_ops(&mut conn)?;
            self.transmit_to_guest(&mut conn)?;
            self.record(&mut conn);
            if conn.is_closed() {
                self.report.close_reason = conn.close_reason();
            } else {
                self.conn = Some(conn);
            }
        }
        for _ in 0..100_000 {
            let Some(w) = self.guest.poll(now, self.cfg) else {
                break;
            };
            self.report.segments_to_slipway += 1;
            self.to_slipway.send(now, w, self.cfg, &mut self.rng);
        }
        self.report.lost = self.to_guest.lost + self.to_slipway.lost;
        self.report.duplicated = self.to_guest.duplicated + self.to_slipway.duplicated;
        Ok(())
    }

    fn carry_out_socket_ops(&mut self, conn: &mut TcpConn) -> Result<(), String> {
        let now = self.now;
        for _ in 0..1_000 {
            let Some(op) = conn.poll_socket_op() else {
                break;
            };
            match op {
                SocketOp::Consume(n) => {
                    if n > self.host.rcv_queue.len() {
                        return Err(format!("consume {n} beyond the queue"));
                    }
                    self.host.rcv_queue.drain(..n);
                    conn.handle_host_readable(now, self.host.rcv_queue.len());
                    let eof = self.host.peer_closed && self.host.written == self.host.to_send.len();
                    if eof {
                        conn.handle_host_eof(now);
                        self.host.eof_reported = true;
                    }
                }
                SocketOp::ShutdownWrite => {
                    self.host.shutdowns += 1;
                    self.host.shutdown_seen = true;
                }
                SocketOp::Close => self.host.closed = true,
                SocketOp::Reset => {
                    self.host.closed = true;
                    self.host.reset = true;
                }
            }
        }
        Ok(())
    }

    /// Every segment due, its payload peeked from the host receive queue.
    fn transmit_to_guest(&mut self, conn: &mut TcpConn) -> Result<(), String> {
        let now = self.now;
        for _ in 0..100_000 {
            let Some(t) = conn.poll_transmit(now) else {
                break;
            };
            let payload = match t.payload {
                Some(range) => {
                    if range.offset + range.len > self.host.rcv_queue.len() {
                        return Err(format!(
                            "peek {range:?} beyond the {} queued bytes",
                            self.host.rcv_queue.len()
                        ));
                    }
                    self.host
                        .rcv_queue
                        .range(range.offset..range.offset + range.len)
                        .copied()
                        .collect()
                }
                None => Vec::new(),
            };
            if t.flags.syn
                && self.cfg.opener == Opener::Guest
                && self.cfg.guest_wscale.is_none()
                && t.window_scale.is_some()
            {
                return Err("window scale offered to a guest that sent none".into());
            }
            self.report.segments_to_guest += 1;
            self.to_guest
                .send(now, wire_of(&t, payload), self.cfg, &mut self.rng);
        }
        Ok(())
    }

    /// The flow's phase changes and counters, for the report.
    fn record(&mut self, conn: &mut TcpConn) {
        while let Some(event) = conn.poll_event() {
            if let flow_table::tcp::Event::PhaseChanged { to, .. } = event {
                self.report.phases.push(to);
            }
        }
        let stats = *conn.stats();
        self.report.timeouts = stats.timeouts;
        self.report.fast_retransmits = stats.fast_retransmits;
        self.report.bytes_retransmitted = stats.bytes_retransmitted;
        self.report.out_of_order = stats.out_of_order;
        self.report.host_backpressure = stats.host_backpressure;
    }

    pub fn check(&mut self) -> Result<(), String> {
        if let Some(v) = self.guest.violations.first() {
            return Err(self.fail(v));
        }
        if self.guest.got_rst {
            return Err(self.fail("the guest received an RST"));
        }
        if self.host.reset {
            return Err(self.fail("the host socket was reset"));
        }
        if self.host.shutdowns > 1 {
            return Err(self.fail("shutdown(SHUT_WR) twice"));
        }
        // Each byte is compared once, as it arrives.
        let (up, got) = (&self.guest.data, &self.host.delivered);
        let from = self.checked_up;
        if got.len() > up.len() || got[from..] != up[from..got.len()] {
            return Err(self.fail("host received bytes out of order or twice"));
        }
        let (down, got) = (&self.host.to_send, &self.guest.received);
        let from = self.checked_down;
        if got.len() > down.len() || got[from..] != down[from..got.len()] {
            return Err(self.fail("guest received bytes out of order or twice"));
        }
        self.checked_up = self.host.delivered.len();
        self.checked_down = self.guest.received.len();
        Ok(())
    }

    pub fn finished(&self) -> bool {
        self.conn.is_none()
            && self.conn_created
            && self.guest.done()
            && self.host.peer_saw_eof
            && self.to_guest.queue.is_empty()
    }

    pub fn verify(&mut self) -> Result<(), String> {
        self.report.simulated = self.now - self.start;
        if self.report.close_reason != Some(CloseReason::Normal) {
            return Err(self.fail(&format!("closed with {:?}", self.report.close_reason)));
        }
        if self.host.delivered != self.guest.data || self.guest.received != self.host.to_send {
            return Err(self.fail("transfer incomplete"));
        }
        if !self.host.closed {
            return Err(self.fail("host socket never closed"));
        }
        // Bounded work: a handful of loop turns per segment or timer, never
        // a spin.
        let segments = self.report.segments_to_guest + self.report.segments_to_slipway;
        let ticks = self.report.simulated.as_micros() as u64
            / self.cfg.app_interval.as_micros().max(1) as u64;
        let budget = 10 * segments + 4 * ticks + 10_000;
        if self.report.iterations > budget {
            return Err(self.fail(&format!(
                "{} loop turns for {segments} segments and {ticks} ticks",
                self.report.iterations
            )));
        }
        Ok(())
    }

    pub fn next_event(&self) -> Option<Instant> {
        let app = (self.guest.app_busy() || self.host.app_busy()).then_some(self.next_app_tick);
        [
            self.to_guest.next_time(),
            self.to_slipway.next_time(),
            self.conn.as_ref().and_then(TcpConn::poll_timeout),
            self.guest.timer,
            self.connect_at,
            app,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
