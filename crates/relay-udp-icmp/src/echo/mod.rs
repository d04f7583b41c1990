//! ICMP and ICMPv6 echo over host sockets, one socket per (guest echo id,
//! destination) flow.
//!
//! A ping socket (`SOCK_DGRAM` with `IPPROTO_ICMP` or `IPPROTO_ICMPV6`) is
//! unprivileged where `net.ipv4.ping_group_range` allows the process's group.
//! The kernel replaces the echo identifier with the socket's own and
//! delivers only the replies that carry it, so every reply on the socket is
//! the flow's, and the relay puts the guest's identifier back.
//!
//! Where ping sockets are refused and the process has `CAP_NET_RAW`, a raw
//! socket does the same job: connected to the destination (so it hears only
//! that host), filtered to echo replies, sending requests with an
//! identifier unique to the flow and accepting only replies that carry it
//! and the sequence number of a request still outstanding. A raw IPv4
//! socket receives the IP header, which the relay skips, and leaves the ICMP
//! checksum to the sender.
//!
//! Requests are written with the header and the guest's payload as two
//! pieces of one `sendmsg`, and replies are read with the header apart, so
//! the payload goes to and from the caller's buffers without another copy.

mod packet;
mod probe;

use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvFlags, ReturnFlags, SendAncillaryBuffer, SendFlags,
    SocketType, ipproto,
};

use crate::counters::{Counters, DropReason};
use crate::icmp_error::IcmpErrorReport;
use crate::sys;
use crate::udp::{self, MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6, SendOutcome};
use packet::{ECHO_HEADER_LEN, EchoHeader, IPV4_MIN_HEADER_LEN};
pub use probe::{EchoAvailability, probe_echo};

/// `ICMP_FILTER` at `SOL_RAW`: a bit mask of ICMP types the raw socket
/// does not receive.
const ICMP_FILTER: libc::c_int = 1;
/// `ICMP6_FILTER` at `IPPROTO_ICMPV6`: 256 bits, a set bit blocks the type.
const ICMP6_FILTER: libc::c_int = 1;
/// Requests of a raw flow whose replies are still accepted.
const OUTSTANDING_LIMIT: usize = 64;
/// Where a raw IPv4 receive puts the IP header (when it has no options)
/// and the echo header.
const RAW_V4_PREFIX_LEN: usize = IPV4_MIN_HEADER_LEN + ECHO_HEADER_LEN;

/// The kind of host socket an echo flow uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EchoKind {
    /// An unprivileged ping socket.
    PingSocket,
    /// A raw socket (needs `CAP_NET_RAW`).
    Raw,
}

/// Why [`EchoSocket::open`] found no socket.
#[derive(Debug, thiserror::Error)]
pub enum EchoOpenError {
    /// Neither kind of socket is allowed; the caller logs the reason once.
    #[error("{0}")]
    Unavailable(EchoAvailability),
    /// Another host failure.
    #[error("cannot open an ICMP echo socket: {0}")]
    Io(#[from] io::Error),
}

/// An echo reply for the guest: the payload is the first `payload_len`
/// bytes of the buffer passed to [`EchoSocket::recv_reply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoReply {
    /// The host that answered.
    pub from: IpAddr,
    /// The guest's echo identifier, restored.
    pub guest_id: u16,
    /// The sequence number of the request answered.
    pub seq: u16,
    /// The length of the reply's payload (after the echo header).
    pub payload_len: usize,
}

/// An ICMP error about one of the flow's echo requests (host unreachable,
/// for instance), read from the socket's error queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoError {
    /// What the kernel reported.
    pub report: IcmpErrorReport,
    /// The echo header of the request the error is about as the guest sent
    /// it: its identifier, sequence number and checksum, for the quote of an
    /// ICMP error to the guest. `None` when the error quoted too little of
    /// the request to tell.
    pub request_header: Option<[u8; ECHO_HEADER_LEN]>,
    /// How much of the request (echo header and data) the error quotes: the
    /// whole request unless it was large.
    pub quoted_len: usize,
}

/// Room for the part of a failed request an ICMP error quotes: an error
/// quotes at most 576 bytes of IP datagram (RFC 1812 4.3.2.3), of which
/// this is the part past the quoted IP header.
const QUOTE_ROOM: usize = 576;

/// Other flows' errors [`EchoSocket::recv_error`] skips in one call at
/// most.
const MAX_SKIPPED_ERRORS: usize = 64;

/// Opens an unconnected echo socket of either kind.
fn open_socket(v6: bool, kind: EchoKind) -> io::Result<OwnedFd> {
    let family = if v6 {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let protocol = if v6 { ipproto::ICMPV6 } else { ipproto::ICMP };
    let ty = match kind {
        EchoKind::PingSocket => SocketType::DGRAM,
        EchoKind::Raw => SocketType::RAW,
    };
    sys::socket(family, ty, protocol)
}

/// Lets only echo replies through to a raw socket.
fn filter_echo_replies(fd: BorrowedFd<'_>, v6: bool) -> io::Result<()> {
    if v6 {
        let mut blocked = [u32::MAX; 8];
        let reply = usize::from(packet::ICMPV6_ECHO_REPLY);
        blocked[reply / 32] &= !(1 << (reply % 32));
        let bytes: Vec<u8> = blocked.iter().flat_map(|w| w.to_ne_bytes()).collect();
        sys::set_option(fd, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &bytes)
    } else {
        let blocked: u32 = !(1 << packet::ICMP_ECHO_REPLY);
        sys::set_option(fd, libc::SOL_RAW, ICMP_FILTER, &blocked.to_ne_bytes())
    }
}

/// An identifier for a raw flow's requests, unique among this process's
/// raw flows until 65536 of them have opened.
fn next_raw_id() -> u16 {
    static BASE: OnceLock<u16> = OnceLock::new();
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = *BASE.get_or_init(|| {
        let [a, b, ..] = RandomState::new().hash_one(0x1c3b_u64).to_ne_bytes();
        u16::from_ne_bytes([a, b])
    });
    base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The host socket of one ICMP or ICMPv6 echo flow: the guest's echo
/// identifier towards one destination.
#[derive(Debug)]
pub struct EchoSocket {
    fd: OwnedFd,
    kind: EchoKind,
    dst: IpAddr,
    guest_id: u16,
    /// The identifier on the wire: the ping socket's, or the one chosen for
    /// the raw flow.
    wire_id: u16,
    /// Sequence numbers of a raw flow's requests not yet answered.
    outstanding: VecDeque<u16>,
    counters: Counters,
}

impl EchoSocket {
    /// Opens a ping socket to `dst` for the guest's echo identifier
    /// `guest_id`, or a raw socket when ping sockets are refused. When
    /// neither is allowed the error says why ([`EchoOpenError::Unavailable`]).
    pub fn open(dst: IpAddr, guest_id: u16) -> Result<Self, EchoOpenError> {
        let ping = match Self::open_kind(dst, guest_id, EchoKind::PingSocket) {
            Ok(socket) => return Ok(socket),
            Err(e) if probe::is_refusal(&e) => e,
            Err(e) => return Err(EchoOpenError::Io(e)),
        };
        match Self::open_kind(dst, guest_id, EchoKind::Raw) {
            Ok(socket) => Ok(socket),
            Err(raw) if probe::is_refusal(&raw) => Err(EchoOpenError::Unavailable(
                EchoAvailability::refused(&ping, Some(&raw), false),
            )),
            Err(raw) => Err(EchoOpenError::Io(raw)),
        }
    }

    /// Opens a socket of the given kind (as [`probe_echo`] found) to `dst`
    /// for the guest's echo identifier `guest_id`.
    pub fn open_kind(dst: IpAddr, guest_id: u16, kind: EchoKind) -> io::Result<Self> {
        let v6 = dst.is_ipv6();
        let fd = open_socket(v6, kind)?;
        if kind == EchoKind::Raw {
            filter_echo_replies(fd.as_fd(), v6)?;
        }
        sys::enable_recverr(fd.as_fd(), v6)?;
        rustix::net::connect(&fd, &SocketAddr::new(dst, 0))?;
        let wire_id = match kind {
            // Connecting bound the ping socket to its identifier.
            EchoKind::PingSocket => SocketAddr::try_from(rustix::net::getsockname(&fd)?)
                .map(|a| a.port())
                .unwrap_or(0),
            EchoKind::Raw => next_raw_id(),
        };
        Ok(Self {
            fd,
            kind,
            dst,
            guest_id,
            wire_id,
            outstanding: VecDeque::with_capacity(OUTSTANDING_LIMIT),
            counters: Counters::default(),
        })
    }

    /// The kind of socket in use.
    #[must_use]
    pub fn kind(&self) -> EchoKind {
        self.kind
    }

    /// The host the requests go to.
    #[must_use]
    pub fn destination(&self) -> IpAddr {
        self.dst
    }

    /// The guest's echo identifier, which every reply carries back.
    #[must_use]
    pub fn guest_id(&self) -> u16 {
        self.guest_id
    }

    /// The identifier the requests carry on the host's network.
    #[must_use]
    pub fn wire_id(&self) -> u16 {
        self.wire_id
    }

    fn is_v6(&self) -> bool {
        self.dst.is_ipv6()
    }

    /// Sends an echo request with the guest's sequence number and payload.
    /// A full send buffer and an oversized payload are counted drops.
    pub fn send_echo(&mut self, seq: u16, payload: &[u8]) -> io::Result<SendOutcome> {
        let v6 = self.is_v6();
        let limit = if v6 {
            MAX_UDP_PAYLOAD_V6
        } else {
            MAX_UDP_PAYLOAD_V4
        };
        if payload.len() > limit {
            return Ok(self.drop_echo(DropReason::Oversize, payload.len()));
        }
        let mut header = packet::request_header(v6, self.wire_id, seq);
        if self.kind == EchoKind::Raw && !v6 {
            packet::fill_checksum(&mut header, payload);
        }
        let sent = sys::send_retrying(&mut || {}, || {
            rustix::net::sendmsg(
                &self.fd,
                &[IoSlice::new(&header), IoSlice::new(payload)],
                &mut SendAncillaryBuffer::default(),
                SendFlags::empty(),
            )
        })?;
        if sent.is_none() {
            return Ok(self.drop_echo(DropReason::WouldBlock, payload.len()));
        }
        if self.kind == EchoKind::Raw {
            if self.outstanding.len() >= OUTSTANDING_LIMIT {
                self.outstanding.pop_front();
            }
            self.outstanding.push_back(seq);
        }
        self.counters.record_to_host(payload.len());
        Ok(SendOutcome::Sent(payload.len()))
    }

    /// Receives the next echo reply of this flow, its payload into `buf`, or
    /// `None` when none is waiting. Replies that are malformed, larger than
    /// `buf` or (on a raw socket) not this flow's are dropped and counted.
    pub fn recv_reply(&mut self, buf: &mut [u8]) -> io::Result<Option<EchoReply>> {
        loop {
            let mut prefix = [0u8; RAW_V4_PREFIX_LEN];
            let prefix_len = if self.kind == EchoKind::Raw && !self.is_v6() {
                RAW_V4_PREFIX_LEN
            } else {
                ECHO_HEADER_LEN
            };
            let got = sys::recv_retrying(&mut || {}, || {
                let mut iov = [
                    IoSliceMut::new(&mut prefix[..prefix_len]),
                    IoSliceMut::new(&mut *buf),
                ];
                rustix::net::recvmsg(
                    &self.fd,
                    &mut iov,
                    &mut RecvAncillaryBuffer::default(),
                    RecvFlags::TRUNC,
                )
            })?;
            let Some(msg) = got else {
                return Ok(None);
            };
            if msg.flags.contains(ReturnFlags::TRUNC) {
                self.drop_echo(DropReason::Truncated, msg.bytes);
                continue;
            }
            let from = msg
                .address
                .and_then(|a| SocketAddr::try_from(a).ok())
                .map_or(self.dst, |a| a.ip());
            match self.accept(&prefix[..prefix_len], buf, msg.bytes) {
                Ok((header, payload_len)) => {
                    self.counters.record_to_guest(payload_len);
                    return Ok(Some(EchoReply {
                        from,
                        guest_id: self.guest_id,
                        seq: header.seq,
                        payload_len,
                    }));
                }
                Err(reason) => {
                    self.drop_echo(reason, msg.bytes);
                }
            }
        }
    }

    /// Checks a received message of `len` bytes, split between `prefix` and
    /// `buf`; leaves the payload at the start of `buf` and returns the echo
    /// header and the payload's length.
    fn accept(
        &mut self,
        prefix: &[u8],
        buf: &mut [u8],
        len: usize,
    ) -> Result<(EchoHeader, usize), DropReason> {
        let (header_bytes, payload_len) = if prefix.len() == RAW_V4_PREFIX_LEN {
            let (h, n) = locate_raw_v4(prefix, buf, len).ok_or(DropReason::MalformedReply)?;
            let payload = buf.get(..n).ok_or(DropReason::MalformedReply)?;
            if packet::checksum(&h, payload) != 0 {
                return Err(DropReason::BadChecksum);
            }
            (h, n)
        } else {
            let payload_len = len
                .checked_sub(ECHO_HEADER_LEN)
                .ok_or(DropReason::MalformedReply)?;
            let mut h = [0u8; ECHO_HEADER_LEN];
            h.copy_from_slice(
                prefix
                    .get(..ECHO_HEADER_LEN)
                    .ok_or(DropReason::MalformedReply)?,
            );
            (h, payload_len)
        };
        let header = EchoHeader::parse(&header_bytes);
        if !header.is_reply(self.is_v6()) {
            return Err(DropReason::MalformedReply);
        }
        if self.kind == EchoKind::Raw {
            let pos = self
                .outstanding
                .iter()
                .position(|s| *s == header.seq)
                .filter(|_| header.id == self.wire_id)
                .ok_or(DropReason::UnmatchedReply)?;
            self.outstanding.remove(pos);
        }
        Ok((header, payload_len))
    }

    /// Reads one ICMP error (e.g. host unreachable) about this flow's
    /// requests from the socket's error queue, or `None` when it is empty.
    /// A raw socket also hears the errors about other raw flows' requests to
    /// the same host; those are consumed, counted
    /// ([`DropReason::UnmatchedReply`]) and skipped.
    pub fn recv_error(&mut self) -> io::Result<Option<EchoError>> {
        // Each pass consumes one report; the rest wait for the next call.
        for _ in 0..MAX_SKIPPED_ERRORS {
            let mut quoted = [0u8; QUOTE_ROOM];
            let got = udp::recv_error_counted(self.fd.as_fd(), &mut quoted, &mut self.counters)?;
            let Some((report, quoted_len)) = got else {
                return Ok(None);
            };
            let header = quoted
                .get(..ECHO_HEADER_LEN)
                .filter(|_| quoted_len >= ECHO_HEADER_LEN)
                .and_then(|h| <[u8; ECHO_HEADER_LEN]>::try_from(h).ok());
            let parsed = header.map(|h| EchoHeader::parse(&h));
            if self.kind == EchoKind::Raw && parsed.is_some_and(|h| h.id != self.wire_id) {
                self.counters.record_drop(DropReason::UnmatchedReply);
                continue;
            }
            let request_header = header
                .filter(|_| parsed.is_some_and(|h| h.is_request(self.is_v6())))
                .map(|h| self.as_guest_sent(h));
            return Ok(Some(EchoError {
                report,
                request_header,
                quoted_len,
            }));
        }
        Ok(None)
    }

    /// A request header as it went out (the wire identifier) turned back
    /// into the one the guest sent: its identifier, and the checksum
    /// adjusted for it.
    fn as_guest_sent(&self, mut header: [u8; ECHO_HEADER_LEN]) -> [u8; ECHO_HEADER_LEN] {
        let sum = u16::from_be_bytes([header[2], header[3]]);
        let sum = packet::checksum_replace(sum, self.wire_id, self.guest_id);
        header[2..4].copy_from_slice(&sum.to_be_bytes());
        header[4..6].copy_from_slice(&self.guest_id.to_be_bytes());
        header
    }

    /// This flow's counters.
    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn drop_echo(&mut self, reason: DropReason, len: usize) -> SendOutcome {
        self.counters.record_drop(reason);
        tracing::debug!(%reason, dst = %self.dst, guest_id = self.guest_id, len, "ICMP echo dropped");
        SendOutcome::Dropped(reason)
    }
}

impl AsFd for EchoSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Finds the echo header in a raw IPv4 receive of `len` bytes that filled
/// `prefix` (IP header and echo header when the IP header has no options)
/// and then `buf`. When the IP header has options, the echo header lies
/// further on and the payload is moved to the start of `buf`.
fn locate_raw_v4(
    prefix: &[u8],
    buf: &mut [u8],
    len: usize,
) -> Option<([u8; ECHO_HEADER_LEN], usize)> {
    let ihl = packet::ipv4_header_len(*prefix.first()?)?;
    let payload_len = len.checked_sub(ihl)?.checked_sub(ECHO_HEADER_LEN)?;
    let byte_at = |i: usize| -> Option<u8> {
        match i.checked_sub(prefix.len()) {
            None => prefix.get(i).copied(),
            Some(j) => buf.get(j).copied(),
        }
    };
    let mut header = [0u8; ECHO_HEADER_LEN];
    for (k, slot) in header.iter_mut().enumerate() {
        *slot = byte_at(ihl + k)?;
    }
    let shift = ihl - IPV4_MIN_HEADER_LEN;
    if shift > 0 {
        let end = shift.checked_add(payload_len)?;
        buf.get(shift..end)?;
        buf.copy_within(shift..end, 0);
    }
    Some((header, payload_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_v4(options: usize, payload: &[u8]) -> Vec<u8> {
        let ihl = 20 + options;
        let mut p = vec![0u8; ihl];
        p[0] = 0x40 | u8::try_from(ihl / 4).unwrap_or(5);
        let mut h = [0, 0, 0, 0, 0x12, 0x34, 0, 9];
        let sum = packet::checksum(&h, payload);
        h[2..4].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(&h);
        p.extend_from_slice(payload);
        p
    }

    fn split(packet: &[u8]) -> ([u8; RAW_V4_PREFIX_LEN], Vec<u8>) {
        let mut prefix = [0u8; RAW_V4_PREFIX_LEN];
        prefix.copy_from_slice(&packet[..RAW_V4_PREFIX_LEN]);
        let mut buf = packet[RAW_V4_PREFIX_LEN..].to_vec();
        buf.resize(200, 0xee);
        (prefix, buf)
    }

    #[test]
    fn raw_v4_without_options() {
        let pkt = raw_v4(0, b"hello");
        let (prefix, mut buf) = split(&pkt);
        let (h, n) = locate_raw_v4(&prefix, &mut buf, pkt.len()).unwrap_or(([0; 8], 0));
        assert_eq!(n, 5);
        assert_eq!(&buf[..5], b"hello");
        let h = EchoHeader::parse(&h);
        assert_eq!((h.id, h.seq), (0x1234, 9));
        assert!(h.is_reply(false));
    }

    #[test]
    fn raw_v4_with_options_moves_the_payload() {
        for options in [4, 8, 12, 40] {
            let pkt = raw_v4(options, b"payload bytes");
            let (prefix, mut buf) = split(&pkt);
            let got = locate_raw_v4(&prefix, &mut buf, pkt.len());
            let (h, n) = got.unwrap_or(([0; 8], 0));
            assert_eq!(n, 13, "options {options}");
            assert_eq!(&buf[..13], b"payload bytes");
            assert_eq!(packet::checksum(&h, &buf[..n]), 0);
        }
    }

    #[test]
    fn raw_v4_too_short_or_not_ipv4() {
        let pkt = raw_v4(0, b"");
        let (prefix, mut buf) = split(&pkt);
        assert!(locate_raw_v4(&prefix, &mut buf, 27).is_none());
        let mut bad = prefix;
        bad[0] = 0x65;
        assert!(locate_raw_v4(&bad, &mut buf, 28).is_none());
        // Options claimed but the message ends inside them.
        let mut opts = prefix;
        opts[0] = 0x4f;
        assert!(locate_raw_v4(&opts, &mut buf, 40).is_none());
    }

    #[test]
    fn raw_ids_differ_between_flows() {
        let a = next_raw_id();
        let b = next_raw_id();
        assert_ne!(a, b);
    }
}
