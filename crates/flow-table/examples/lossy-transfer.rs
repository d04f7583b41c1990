//! One TCP flow through slipway's sequence-mirroring state machine, data
//! both ways over a link that loses packets, with everything but
//! `flow_table` written out in this file: a small guest TCP on one end of
//! the link, a host socket and its peer application on the other, and the
//! loop a relay runs between them. The clock is virtual, so the run takes
//! milliseconds and is the same every time for the same seed.
//!
//! ```text
//! cargo run -p flow-table --example lossy-transfer -- [--bytes N] [--loss P] [--seed S]
//! ```
//!
//! Exits non-zero unless every byte arrived, once and in order, in both
//! directions and the flow closed normally.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use flow_table::tcp::{
    CloseReason, HostError, HostWriter, Segment, SeqNum, SocketOp, TcpConfig, TcpConn,
};

const MSS: u16 = 1460;
const LINK_DELAY: Duration = Duration::from_millis(1);
const GUEST_RTO: Duration = Duration::from_millis(200);
/// The host socket's buffers; its peer reads as soon as bytes arrive.
const HOST_BUF: usize = 64 * 1024;

/// One direction of the link: loses a share of the segments and delivers
/// the rest, in order, after a fixed delay.
struct Link {
    in_flight: VecDeque<(Instant, Segment, Vec<u8>)>,
    loss: f64,
    rng: u64,
    sent: u64,
    lost: u64,
}

impl Link {
    fn new(loss: f64, seed: u64) -> Self {
        let rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let in_flight = VecDeque::new();
        Self {
            in_flight,
            loss,
            rng,
            sent: 0,
            lost: 0,
        }
    }

    fn send(&mut self, now: Instant, seg: Segment, payload: Vec<u8>) {
        self.sent += 1;
        // xorshift64: a uniform draw in [0, 1).
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let draw = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        if draw < self.loss {
            self.lost += 1;
        } else {
            self.in_flight.push_back((now + LINK_DELAY, seg, payload));
        }
    }

    fn recv(&mut self, now: Instant) -> Option<(Segment, Vec<u8>)> {
        if self.in_flight.front()?.0 > now {
            return None;
        }
        let (_, seg, payload) = self.in_flight.pop_front()?;
        Some((seg, payload))
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.front().map(|(at, _, _)| *at)
    }
}

/// The guest's TCP, reduced to what one transfer needs: an active open,
/// in-order reception, go-back-N retransmission on a fixed timeout, and a
/// FIN once everything is sent.
#[derive(Default)]
struct Guest {
    isn: SeqNum,
    data: Vec<u8>,
    /// Bytes of `data` sent (back to `acked` on a timeout) and acknowledged.
    sent: usize,
    acked: usize,
    syn_sent: bool,
    fin_sent: bool,
    fin_acked: bool,
    peer_window: usize,
    /// Set by the SYN-ACK.
    rcv_nxt: Option<SeqNum>,
    received: Vec<u8>,
    peer_fin: bool,
    ack_due: bool,
    rto_at: Option<Instant>,
}

impl Guest {
    fn on_segment(&mut self, now: Instant, seg: &Segment, payload: &[u8]) {
        if seg.flags.syn && self.rcv_nxt.is_none() {
            self.rcv_nxt = Some(seg.seq + 1);
            self.rto_at = None;
        }
        let Some(rcv_nxt) = self.rcv_nxt else { return };
        if let Some(ack) = seg.ack {
            self.on_ack(now, ack, seg.window);
        }
        if seg.seq_len(payload.len()) == 0 {
            return;
        }
        // Every segment that takes sequence space is acknowledged, a
        // duplicate too: its first ACK may have been lost.
        self.ack_due = true;
        if seg.seq == rcv_nxt && !seg.flags.syn && !self.peer_fin {
            self.received.extend_from_slice(payload);
            let next = rcv_nxt + payload.len() as u32;
            self.peer_fin = seg.flags.fin;
            self.rcv_nxt = Some(next + u32::from(seg.flags.fin));
        }
    }

    fn on_ack(&mut self, now: Instant, ack: SeqNum, window: u16) {
        self.peer_window = usize::from(window);
        // Bytes acknowledged; the FIN counts as one more.
        let n = ack.since(self.isn + 1) as usize;
        if n > self.acked && n <= self.data.len() + 1 {
            self.acked = n.min(self.data.len());
            self.sent = self.sent.max(self.acked);
            self.fin_acked = n > self.data.len();
            let outstanding = self.acked < self.sent || (self.fin_sent && !self.fin_acked);
            self.rto_at = outstanding.then_some(now + GUEST_RTO);
        }
    }

    fn on_timeout(&mut self) {
        self.rto_at = None;
        self.syn_sent &= self.rcv_nxt.is_some();
        self.sent = self.acked;
        self.fin_sent &= self.fin_acked;
    }

    /// The next segment to send: the SYN, data within the peer's window, the
    /// FIN, or an ACK.
    fn poll(&mut self, now: Instant) -> Option<(Segment, Vec<u8>)> {
        let mut seg = Segment {
            seq: self.isn,
            window: u16::MAX,
            ..Segment::default()
        };
        let Some(rcv_nxt) = self.rcv_nxt else {
            if self.syn_sent {
                return None;
            }
            self.syn_sent = true;
            self.rto_at = Some(now + GUEST_RTO);
            seg.flags.syn = true;
            seg.mss = Some(MSS);
            return Some((seg, Vec::new()));
        };
        let start = self.sent;
        let room = self.peer_window.saturating_sub(self.sent - self.acked);
        let len = (self.data.len() - start).min(usize::from(MSS)).min(room);
        let payload = if len > 0 {
            self.sent += len;
            self.data[start..self.sent].to_vec()
        } else if start == self.data.len() && !self.fin_sent {
            self.fin_sent = true;
            seg.flags.fin = true;
            Vec::new()
        } else if self.ack_due {
            Vec::new()
        } else {
            return None;
        };
        if !payload.is_empty() || seg.flags.fin {
            self.rto_at.get_or_insert(now + GUEST_RTO);
        }
        self.ack_due = false;
        let after_fin = self.fin_sent && !seg.flags.fin;
        seg.seq = self.isn + 1 + start as u32 + u32::from(after_fin);
        seg.ack = Some(rcv_nxt);
        Some((seg, payload))
    }
}

/// The host socket slipway relays to, and the peer application behind it,
/// which reads everything it is sent at once and writes its reply as the
/// receive buffer has room, then closes.
#[derive(Default)]
struct HostSocket {
    received: Vec<u8>,
    reply: Vec<u8>,
    written: usize,
    /// The receive queue: written by the peer, not yet consumed by slipway.
    queue: VecDeque<u8>,
    shut_down: bool,
    closed: bool,
}

impl HostWriter for HostSocket {
    fn write(&mut self, data: &[u8]) -> Result<usize, HostError> {
        self.received.extend_from_slice(data);
        Ok(data.len())
    }
}

impl HostSocket {
    /// The peer writes what fits, and the relay reports the queue (and the
    /// peer's close once all of its reply is queued).
    fn peer_writes(&mut self, conn: &mut TcpConn, now: Instant) {
        let n = (HOST_BUF - self.queue.len()).min(self.reply.len() - self.written);
        let to = self.written + n;
        self.queue.extend(&self.reply[self.written..to]);
        self.written = to;
        conn.handle_host_readable(now, self.queue.len());
        if self.written == self.reply.len() {
            conn.handle_host_eof(now);
        }
    }
}

/// What the relay does after every event: carry out the flow's socket
/// operations, then send its segments, payloads peeked from the queue.
fn relay(conn: &mut TcpConn, host: &mut HostSocket, link: &mut Link, now: Instant) {
    while let Some(op) = conn.poll_socket_op() {
        match op {
            SocketOp::Consume(n) => {
                host.queue.drain(..n);
                host.peer_writes(conn, now);
            }
            SocketOp::ShutdownWrite => host.shut_down = true,
            SocketOp::Close | SocketOp::Reset => host.closed = true,
        }
    }
    while let Some(t) = conn.poll_transmit(now) {
        let payload = match t.payload {
            Some(p) => host
                .queue
                .range(p.offset..p.offset + p.len)
                .copied()
                .collect(),
            None => Vec::new(),
        };
        let seg = Segment {
            seq: t.seq,
            ack: t.ack,
            flags: t.flags,
            window: t.window,
            mss: t.mss,
            window_scale: t.window_scale,
        };
        link.send(now, seg, payload);
    }
}

/// slipway's side of a guest SYN: a flow whose host `connect()` succeeds at
/// once, and the host peer's first bytes.
fn accept(syn: &Segment, host: &mut HostSocket, seed: u64, now: Instant) -> TcpConn {
    let isn = SeqNum::new(seed as u32);
    let mut conn = TcpConn::from_guest_syn(syn, isn, TcpConfig::for_mtu_v4(1500), now);
    conn.handle_host_connected(now, HOST_BUF as u32);
    host.peer_writes(&mut conn, now);
    conn
}

/// Runs the transfer on a virtual clock until the flow closes.
fn transfer(guest: &mut Guest, host: &mut HostSocket, loss: f64, seed: u64) -> Result<(), String> {
    let mut now = Instant::now();
    let (mut up, mut down) = (Link::new(loss, seed), Link::new(loss, seed.wrapping_add(1)));
    let mut conn: Option<TcpConn> = None;
    for _ in 0..10_000_000 {
        while let Some((seg, payload)) = down.recv(now) {
            guest.on_segment(now, &seg, &payload);
        }
        if guest.rto_at.is_some_and(|at| at <= now) {
            guest.on_timeout();
        }
        while let Some((seg, payload)) = guest.poll(now) {
            up.send(now, seg, payload);
        }
        while let Some((seg, payload)) = up.recv(now) {
            match conn.as_mut() {
                Some(c) => _ = c.handle_guest_segment(now, &seg, &payload, host),
                None if seg.flags.syn => conn = Some(accept(&seg, host, seed, now)),
                None => {}
            }
        }
        if let Some(c) = conn.as_mut() {
            // The peer has read what was written: the send buffer is empty again.
            c.handle_host_send_space(now, HOST_BUF as u32);
            if c.poll_timeout().is_some_and(|at| at <= now) {
                c.handle_timeout(now);
            }
            relay(c, host, &mut down, now);
            if c.is_closed() {
                let (s, (us, ul), (ds, dl)) =
                    (c.stats(), (up.sent, up.lost), (down.sent, down.lost));
                println!("guest -> slipway: {us} segments, {ul} lost; back: {ds}, {dl} lost");
                println!(
                    "slipway: {} timeouts, {} fast retransmits",
                    s.timeouts, s.fast_retransmits
                );
                return match c.close_reason() {
                    Some(CloseReason::Normal) => Ok(()),
                    other => Err(format!("the flow closed with {other:?}")),
                };
            }
        }
        let timeout = conn.as_ref().and_then(TcpConn::poll_timeout);
        let next = [
            up.next_arrival(),
            down.next_arrival(),
            guest.rto_at,
            timeout,
        ];
        now = next
            .into_iter()
            .flatten()
            .min()
            .ok_or("deadlock: nothing left to happen")?;
    }
    Err("no end after ten million steps".into())
}

/// Deterministic bytes, so a misplaced byte shows.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mix = 0x9e37_79b9_7f4a_7c15 ^ seed;
    (0..len as u64)
        .map(|i| (i.wrapping_mul(mix) >> 56) as u8)
        .collect()
}

fn parse_args() -> Result<(usize, f64, u64), String> {
    let (mut bytes, mut loss, mut seed) = (1 << 20, 0.05, 1);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let bad = format!("{arg}: not a number: {value}");
        match arg.as_str() {
            "--bytes" => bytes = value.parse().map_err(|_| bad)?,
            "--loss" => loss = value.parse().map_err(|_| bad)?,
            "--seed" => seed = value.parse().map_err(|_| bad)?,
            _ => {
                return Err(format!(
                    "unknown option {arg}; accepted: --bytes N, --loss P, --seed S"
                ));
            }
        }
    }
    if !(0.0..0.5).contains(&loss) {
        return Err(format!(
            "--loss: expected a probability below 0.5, got {loss}"
        ));
    }
    Ok((bytes, loss, seed))
}

fn main() -> ExitCode {
    let (bytes, loss, seed) = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("lossy-transfer: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{bytes} bytes each way through slipway's TCP state machine, {:.0}% loss",
        loss * 100.0
    );
    let mut guest = Guest {
        isn: SeqNum::new(u32::MAX - 1000),
        data: pattern(bytes, seed),
        ..Guest::default()
    };
    let mut host = HostSocket {
        reply: pattern(bytes, seed.wrapping_add(1)),
        ..HostSocket::default()
    };
    let result = transfer(&mut guest, &mut host, loss, seed).and_then(|()| {
        let up = host.received == guest.data && host.shut_down && host.closed;
        let down = guest.received == host.reply && guest.peer_fin;
        match (up, down) {
            (true, true) => Ok(()),
            (false, _) => Err("the host did not get the guest's bytes once, in order, then EOF"),
            (_, false) => Err("the guest did not get the host's bytes once, in order, then FIN"),
        }
        .map_err(String::from)
    });
    match result {
        Ok(()) => {
            println!("every byte arrived once and in order, both ways; the flow closed normally");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lossy-transfer FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
