//! Drives one real flow: a `TcpFlowDriver` (a `TcpConn` and its
//! `HostSocket`), talking to a simulated guest, with the socket's readiness from epoll and the flow's
//! deadlines from `poll_timeout()` on the real clock.

use std::fmt::Write as _;
use std::io;
use std::time::{Duration, Instant};

use epoll_dispatch::{Events, Poller};
use flow_table::tcp::{CloseReason, TcpStats};
use relay_tcp::{Closure, Registration, SocketReadiness, TcpFlowDriver};

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
    pub flow: TcpFlowDriver,
    poller: Poller,
    events: Events,
    frame: Vec<u8>,
    closed: Option<Closure>,
    consumed: u64,
    failures: Vec<String>,
}

impl Relay {
    /// Drives `flow`, its socket registered at once.
    pub fn new(flow: TcpFlowDriver) -> io::Result<Relay> {
        let mut relay = Relay {
            flow,
            poller: Poller::new()?,
            events: Events::with_capacity(8),
            frame: vec![0; 65536],
            closed: None,
            consumed: 0,
            failures: Vec::new(),
        };
        relay.step(Instant::now())?;
        Ok(relay)
    }

    /// Steps the flow, registering its socket with the harness's poller;
    /// a failed registration is an error of the test.
    pub fn step(&mut self, now: Instant) -> io::Result<()> {
        let poller = &self.poller;
        let mut registration = Ok(());
        let step = self.flow.step(now, |fd, change| {
            let result = match change {
                Registration::Add(interest) => poller.register(fd, SOCKET_TOKEN, interest),
                Registration::Modify(interest) => poller.modify(fd, SOCKET_TOKEN, interest),
            };
            if let Err(error) = &result {
                registration = Err(io::Error::new(error.kind(), error.to_string()));
            }
            result
        });
        self.record(step.executed);
        registration
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
            if self.flow.is_closed() && guest.done() {
                return Ok(self.report(start, iteration));
            }
            if guest.got_rst || self.flow.is_closed() {
                return Err(self.fail("the flow ended early", guest));
            }
            // Sending to the guest may have narrowed what the flow waits for.
            self.step(now).map_err(|e| e.to_string())?;
            let deadline = if busy {
                now
            } else {
                [self.flow.poll_timeout(), guest.deadline(), Some(end)]
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
            let _ = self
                .flow
                .handle_guest_segment(now, &seg, &guest.data[range]);
            busy = true;
        }
        self.step(now).map_err(|e| e.to_string())?;
        for _ in 0..100_000 {
            // A failed peek ends the flow: its RST comes next, and the
            // failure shows in the close reason.
            let Some((transmit, len)) = self.flow.poll_transmit(now, &mut self.frame, |_| Some(0))
            else {
                break;
            };
            guest.on_transmit(&transmit, &self.frame[..len]);
            busy = true;
        }
        guest.after_batch(now);
        Ok(busy)
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
            let executed = self.flow.handle_readiness(readiness, now);
            self.record(executed);
        }
        let now = Instant::now();
        if self.flow.poll_timeout().is_some_and(|at| at <= now) {
            self.flow.handle_timeout(now);
        }
        Ok(())
    }

    fn report(&self, start: Instant, iterations: u64) -> Report {
        Report {
            elapsed: start.elapsed(),
            iterations,
            waits: self.poller.stats().waits,
            stats: *self.flow.stats(),
            close_reason: self.flow.conn().close_reason(),
            closed: self.closed,
            consumed: self.consumed,
        }
    }

    fn fail(&self, what: &str, guest: &Guest) -> String {
        let mut text = format!("{what}\nsocket failures: {:?}\n", self.failures);
        let _ = writeln!(text, "flow: {:#?}", self.flow);
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
