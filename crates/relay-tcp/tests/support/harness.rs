//! Drives one real flow: a `TcpConn` and its `HostSocket`, talking to a
//! simulated guest, with the socket's readiness from epoll and the flow's
//! deadlines from `poll_timeout()` on the real clock.

use std::fmt::Write as _;
use std::io;
use std::time::{Duration, Instant};

use epoll_dispatch::{Events, Interest, Poller};
use flow_table::tcp::{CloseReason, TcpConn, TcpStats};
use relay_tcp::{Closure, HostSocket, SocketReadiness};

use super::SOCKET_TOKEN;
use super::guest::Guest;

/// Loop iterations one drive makes at most, on top of its time limit.
const MAX_ITERATIONS: u64 = 50_000_000;

/// What one drive did.
#[derive(Debug)]
pub struct Report {
    pub elapsed: Duration,
    pub iterations: u64,
    pub waits: u64,
    pub stats: TcpStats,
    pub close_reason: Option<CloseReason>,
    pub closed: Option<Closure>,
    pub consumed: u64,
}

/// A flow under test.
pub struct Relay {
    pub conn: TcpConn,
    pub sock: HostSocket,
    poller: Poller,
    events: Events,
    registered: Option<Interest>,
    frame: Vec<u8>,
    closed: Option<Closure>,
    consumed: u64,
    failures: Vec<String>,
}

impl Relay {
    pub fn new(conn: TcpConn, sock: HostSocket) -> io::Result<Relay> {
        let poller = Poller::new()?;
        let interest = relay_tcp::epoll_interest(&conn);
        if let Some(fd) = sock.fd() {
            poller.register(fd, SOCKET_TOKEN, interest)?;
        }
        Ok(Relay {
            conn,
            sock,
            poller,
            events: Events::with_capacity(8),
            registered: Some(interest),
            frame: vec![0; 65536],
            closed: None,
            consumed: 0,
            failures: Vec::new(),
        })
    }

    fn record(&mut self, executed: relay_tcp::Executed) {
        self.consumed += executed.consumed as u64;
        self.closed = self.closed.or(executed.closed);
        if let Some(failure) = executed.failure {
            self.failures.push(failure.to_string());
        }
    }

    /// Runs until the flow is closed and the guest is done, or `limit`.
    pub fn drive(&mut self, guest: &mut Guest, limit: Duration) -> Result<Report, String> {
        let start = Instant::now();
        let end = start + limit;
        for iteration in 0..MAX_ITERATIONS {
            let now = Instant::now();
            if now > end {
                return Err(self.fail("time limit reached", guest));
            }
            guest.on_timer(now);
            let busy = self.exchange(guest, now)?;
            if let Some(violation) = guest.violations.first() {
                return Err(self.fail(violation, guest));
            }
            if self.conn.is_closed() && guest.done() {
                return Ok(self.report(start, iteration));
            }
            if guest.got_rst || self.conn.is_closed() {
                return Err(self.fail("the flow ended early", guest));
            }
            self.update_interest().map_err(|e| e.to_string())?;
            let deadline = if busy {
                now
            } else {
                [self.conn.poll_timeout(), guest.deadline(), Some(end)]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(end)
            };
            self.wait_and_dispatch(deadline)?;
        }
        Err(self.fail("iteration limit reached", guest))
    }

    /// Guest segments in, socket operations, segments out to the guest.
    /// True if anything moved.
    fn exchange(&mut self, guest: &mut Guest, now: Instant) -> Result<bool, String> {
        let mut busy = false;
        for _ in 0..10_000 {
            let Some((seg, range)) = guest.poll() else {
                break;
            };
            self.conn
                .handle_guest_segment(now, &seg, &guest.data[range], &mut self.sock);
            busy = true;
        }
        let executed = relay_tcp::run_socket_ops(&mut self.conn, &mut self.sock, now);
        self.record(executed);
        for _ in 0..100_000 {
            let Some(transmit) = self.conn.poll_transmit(now) else {
                break;
            };
            let len = relay_tcp::fill_transmit_payload(&mut self.sock, &transmit, &mut self.frame)
                .map_err(|e| format!("peek for {transmit:?}: {e}"))?;
            guest.on_transmit(&transmit, &self.frame[..len]);
            busy = true;
        }
        guest.after_batch(now);
        while self.conn.poll_event().is_some() {}
        Ok(busy)
    }

    fn update_interest(&mut self) -> io::Result<()> {
        let Some(fd) = self.sock.fd() else {
            // Closing the socket took it out of the epoll set.
            self.registered = None;
            return Ok(());
        };
        let wanted = relay_tcp::epoll_interest(&self.conn);
        if self.registered != Some(wanted) {
            self.poller.modify(fd, SOCKET_TOKEN, wanted)?;
            self.registered = Some(wanted);
        }
        Ok(())
    }

    fn wait_and_dispatch(&mut self, deadline: Instant) -> Result<(), String> {
        self.poller
            .wait(&mut self.events, Some(deadline))
            .map_err(|e| e.to_string())?;
        let ready: Vec<SocketReadiness> = self
            .events
            .iter()
            .filter(|(token, _)| *token == SOCKET_TOKEN)
            .map(|(_, readiness)| readiness.into())
            .collect();
        for readiness in ready {
            let now = Instant::now();
            let executed = relay_tcp::on_readiness(&mut self.conn, &mut self.sock, readiness, now);
            self.record(executed);
        }
        let now = Instant::now();
        if self.conn.poll_timeout().is_some_and(|at| at <= now) {
            self.conn.handle_timeout(now);
        }
        Ok(())
    }

    fn report(&self, start: Instant, iterations: u64) -> Report {
        Report {
            elapsed: start.elapsed(),
            iterations,
            waits: self.poller.stats().waits,
            stats: *self.conn.stats(),
            close_reason: self.conn.close_reason(),
            closed: self.closed,
            consumed: self.consumed,
        }
    }

    fn fail(&self, what: &str, guest: &Guest) -> String {
        let mut text = format!("{what}\nsocket failures: {:?}\n", self.failures);
        let _ = writeln!(text, "conn: {:#?}", self.conn);
        let _ = writeln!(
            text,
            "guest: received {} fin_acked {} peer_fin {} acks {} dropped {} rst {}",
            guest.received,
            guest.fin_acked,
            guest.peer_fin,
            guest.acks,
            guest.acks_dropped,
            guest.got_rst
        );
        text
    }
}
