//! The host side: the socket slipway relays to, with bounded buffers, and
//! the peer application that reads and writes it.

use std::collections::VecDeque;
use std::time::Instant;

use super::SimConfig;

/// The host side: a socket with bounded buffers and the peer application.
pub struct Host {
    /// Guest-to-host bytes in the send buffer, not yet read by the peer.
    pub snd_queue: usize,
    pub snd_cap: usize,
    pub delivered: Vec<u8>,
    pub shutdown_seen: bool,
    pub peer_saw_eof: bool,
    /// Host-to-guest bytes in the receive queue, unconsumed.
    pub rcv_queue: VecDeque<u8>,
    pub rcv_cap: usize,
    pub to_send: Vec<u8>,
    pub written: usize,
    pub peer_closed: bool,
    pub close_at: Option<Instant>,
    pub closed: bool,
    pub reset: bool,
    pub shutdowns: u32,
    pub eof_reported: bool,
}

impl Host {
    /// A connected socket whose peer application will send `to_send`.
    pub fn new(cfg: &SimConfig, to_send: Vec<u8>) -> Self {
        Self {
            snd_queue: 0,
            snd_cap: cfg.host_snd_buf,
            delivered: Vec::new(),
            shutdown_seen: false,
            peer_saw_eof: false,
            rcv_queue: VecDeque::new(),
            rcv_cap: cfg.host_rcv_buf,
            to_send,
            written: 0,
            peer_closed: false,
            close_at: None,
            closed: false,
            reset: false,
            shutdowns: 0,
            eof_reported: false,
        }
    }

    pub fn space(&self) -> u32 {
        (self.snd_cap - self.snd_queue) as u32
    }

    pub fn app_tick(&mut self, now: Instant, cfg: &SimConfig) {
        let n = self.snd_queue.min(cfg.host_read_chunk);
        self.snd_queue -= n;
        if self.snd_queue == 0 && self.shutdown_seen {
            self.peer_saw_eof = true;
        }
        if self.written < self.to_send.len() {
            let room = self.rcv_cap - self.rcv_queue.len();
            let n = room
                .min(cfg.host_write_chunk)
                .min(self.to_send.len() - self.written);
            self.rcv_queue
                .extend(&self.to_send[self.written..self.written + n]);
            self.written += n;
        } else if !self.peer_closed {
            match self.close_at {
                None => self.close_at = Some(now + cfg.host_close_delay),
                Some(at) if at <= now => self.peer_closed = true,
                Some(_) => {}
            }
        }
    }

    pub fn app_busy(&self) -> bool {
        self.snd_queue > 0 || !self.peer_closed || (self.shutdown_seen && !self.peer_saw_eof)
    }
}
