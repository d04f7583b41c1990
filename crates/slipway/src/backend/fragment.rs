//! IPv4 fragments on the guest's link, both ways.
//!
//! From the guest: the front desk reassembles fragments (see
//! `frontdesk::Reassembler`); a whole datagram comes back here and goes the
//! way of any unfragmented frame.
//!
//! Toward the guest: a datagram whose IPv4 length exceeds the guest's MTU
//! goes out as fragments of at most the MTU (RFC 791: offsets in 8-byte
//! units, more-fragments on all but the last, one identification per
//! datagram from a counter of the backend's, the don't-fragment flag
//! cleared). The transport checksum is computed over the whole datagram
//! before it is cut, so it is complete in the first fragment, and no
//! fragment carries a partial checksum. Ready-made frames (DNS replies,
//! forwarded ports' datagrams, echo replies) are cut as they are queued. A
//! UDP flow's datagram is received whole into a buffer kept here when the
//! caller's frame buffer may be too small for it, and handed out one
//! fragment per poll; one datagram at most is pending.
//!
//! At the plan's largest MTU ([`nat_core::MTU_MAX`], 65520, the default)
//! every IPv4 datagram goes whole, as the receive paths of tap and virtio-net
//! take a 65535-byte datagram: cutting there would only split off the last
//! 15 bytes of the very largest.

use std::time::Instant;

use flow_table::FlowId;
use smoltcp::wire::{ETHERNET_HEADER_LEN, EthernetFrame, EthernetProtocol, Ipv4Packet};

use super::Backend;
use frontdesk::{LinkAddrs, Outcome, UDP_V4_HEADERS_LEN, write_udp_v4_headers};

/// The largest IPv4 datagram, header included.
const MAX_IPV4_LEN: usize = 65535;

/// The largest frame of a UDP datagram over IPv4 (no options).
const MAX_UDP_FRAME: usize = ETHERNET_HEADER_LEN + MAX_IPV4_LEN;

/// The largest IPv4 datagram a guest with link MTU `mtu` takes whole.
fn ipv4_limit(mtu: u16) -> usize {
    if mtu >= nat_core::MTU_MAX {
        MAX_IPV4_LEN
    } else {
        usize::from(mtu)
    }
}

/// Whether `frame` is an IPv4 fragment (more-fragments set or a non-zero
/// offset): its checksum is whole and may not be left partial.
pub(crate) fn is_fragment(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return false;
    }
    Ipv4Packet::new_checked(eth.payload()).is_ok_and(|ip| ip.more_frags() || ip.frag_offset() != 0)
}

/// The IPv4 length of `frame` when it is an IPv4 frame longer than
/// `limit`, so that it must go in fragments.
fn oversize(frame: &[u8], limit: usize) -> bool {
    frame.len().saturating_sub(ETHERNET_HEADER_LEN) > limit
        && frame.get(12..14) == Some(&[0x08, 0x00][..])
}

/// Writes into `buf` the fragment of `whole` (one Ethernet frame holding one
/// IPv4 datagram) whose data starts at payload offset `offset`, as a
/// datagram of at most `limit` bytes. Returns the fragment's frame length
/// and where the next fragment starts (`None` after the last), or `None`
/// when `whole` is no IPv4 datagram, `offset` is past it or `buf` is too
/// small. The header, options included, is repeated in each fragment (the
/// builders write none).
pub(crate) fn write_fragment(
    buf: &mut [u8],
    whole: &[u8],
    limit: usize,
    ident: u16,
    offset: usize,
) -> Option<(usize, Option<usize>)> {
    let ip = Ipv4Packet::new_checked(whole.get(ETHERNET_HEADER_LEN..)?).ok()?;
    let header_len = usize::from(ip.header_len());
    let payload = ip.payload();
    let rest = payload.get(offset..)?;
    // Every fragment but the last carries a multiple of 8 bytes.
    let room = limit.checked_sub(header_len)? & !7;
    if room == 0 || offset % 8 != 0 {
        return None;
    }
    let chunk = rest.len().min(room);
    let last = chunk == rest.len();
    let ip_len = header_len.checked_add(chunk)?;
    let frame_len = ETHERNET_HEADER_LEN.checked_add(ip_len)?;
    let frame = buf.get_mut(..frame_len)?;
    let headers = ETHERNET_HEADER_LEN.checked_add(header_len)?;
    frame[..headers].copy_from_slice(whole.get(..headers)?);
    frame[headers..].copy_from_slice(rest.get(..chunk)?);
    let mut packet = Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]);
    packet.set_total_len(u16::try_from(ip_len).ok()?);
    packet.set_ident(ident);
    packet.clear_flags();
    packet.set_more_frags(!last);
    packet.set_frag_offset(u16::try_from(offset).ok()?);
    packet.fill_checksum();
    let next = (!last).then(|| offset + chunk);
    Some((frame_len, next))
}

/// A UDP flow's datagram being handed out in fragments.
#[derive(Clone, Copy, Debug)]
struct Pending {
    owner: FlowId,
    /// Its frame's length in [`Fragmenter::whole`].
    len: usize,
    ident: u16,
    /// Where the next fragment's data starts.
    offset: usize,
}

/// What the backend keeps to fragment datagrams toward the guest.
#[derive(Debug)]
pub(crate) struct Fragmenter {
    /// The largest IPv4 datagram the guest takes whole.
    limit: usize,
    next_ident: u16,
    /// A UDP flow's whole datagram, received here or copied here to be
    /// handed out in fragments; empty until first needed.
    whole: Vec<u8>,
    pending: Option<Pending>,
}

impl Fragmenter {
    /// For a guest whose link MTU is `mtu`.
    pub(crate) fn new(mtu: u16) -> Self {
        Self {
            limit: ipv4_limit(mtu),
            next_ident: 1,
            whole: Vec::new(),
            pending: None,
        }
    }

    fn ident(&mut self) -> u16 {
        let ident = self.next_ident;
        self.next_ident = self.next_ident.wrapping_add(1);
        ident
    }

    /// Whether a UDP flow's datagram must be received here rather than
    /// into the caller's buffer of `buf_len` bytes: it may be too large for
    /// that buffer and for the guest's MTU.
    pub(crate) fn receives_for(&self, buf_len: usize) -> bool {
        self.limit < MAX_IPV4_LEN && buf_len < MAX_UDP_FRAME
    }

    /// The buffer a UDP datagram is received into when
    /// [`receives_for`](Self::receives_for) says so, with room in front for
    /// its headers.
    pub(crate) fn receive_buffer(&mut self) -> &mut [u8] {
        self.whole.resize(MAX_UDP_FRAME, 0);
        &mut self.whole
    }
}

impl Backend {
    /// A datagram the front desk reassembled from the guest's fragments:
    /// once more through the front desk, as one unfragmented frame.
    pub(super) fn take_reassembled(&mut self, scratch: &mut [u8], now: Instant) {
        let Some(whole) = self.frontdesk.take_reassembled() else {
            return;
        };
        match self.frontdesk.handle_reassembled(&whole, scratch) {
            Outcome::Reply(len) => {
                if let Some(reply) = scratch.get(..len) {
                    self.queue_frame(reply.to_vec());
                }
            }
            Outcome::Ipv4(datagram) => self.handle_ipv4(&datagram, now),
            Outcome::Ipv6(_) | Outcome::Reassembled | Outcome::Consumed | Outcome::Dropped(_) => {}
        }
    }

    /// The IPv4 datagrams from the guest in reassembly.
    #[must_use]
    pub fn reassembly(&self) -> &frontdesk::Reassembler {
        self.frontdesk.reassembly()
    }

    /// Queues the fragments of `frame` when its datagram exceeds the
    /// guest's MTU and returns `None`; returns `frame` as it is otherwise.
    pub(super) fn queue_fragments(&mut self, frame: Vec<u8>) -> Option<Vec<u8>> {
        let limit = self.to_guest.limit;
        if !oversize(&frame, limit) {
            return Some(frame);
        }
        let ident = self.to_guest.ident();
        let mut offset = Some(0);
        // Bounded: each fragment carries at least 8 bytes.
        for _ in 0..=MAX_IPV4_LEN / 8 {
            let Some(at) = offset else { break };
            let mut fragment = vec![0u8; (ETHERNET_HEADER_LEN + limit).min(frame.len())];
            let Some((len, next)) = write_fragment(&mut fragment, &frame, limit, ident, at) else {
                tracing::debug!(len = frame.len(), "datagram for the guest could not be cut");
                self.counters.output_drops += 1;
                return None;
            };
            fragment.truncate(len);
            self.counters.fragments_to_guest += 1;
            self.queue_frame(fragment);
            offset = next;
        }
        None
    }

    /// The next fragment of UDP flow `id`'s datagram, written into `buf`,
    /// while one is pending. A datagram left pending by another flow (one
    /// that ended meanwhile) is given up.
    pub(super) fn poll_udp_fragment(&mut self, id: FlowId, buf: &mut [u8]) -> Option<usize> {
        let mut pending = self.to_guest.pending?;
        if pending.owner != id {
            self.to_guest.pending = None;
            self.counters.udp_drops += 1;
            return None;
        }
        let whole = self.to_guest.whole.get(..pending.len)?;
        let written = write_fragment(
            buf,
            whole,
            self.to_guest.limit,
            pending.ident,
            pending.offset,
        );
        let Some((len, next)) = written else {
            tracing::debug!(
                len = pending.len,
                "UDP datagram for the guest could not be cut"
            );
            self.to_guest.pending = None;
            self.counters.udp_drops += 1;
            return None;
        };
        self.to_guest.pending = next.map(|offset| {
            pending.offset = offset;
            pending
        });
        self.counters.fragments_to_guest += 1;
        Some(len)
    }

    /// Finishes the frame of a UDP flow's datagram of `payload_len` bytes,
    /// received at `UDP_V4_HEADERS_LEN` into the fragmenter's buffer (when
    /// `received_here`) or into `buf`: the whole frame in `buf` when it fits
    /// the guest's MTU (checksum as `fill` says), its first fragment
    /// otherwise, the rest pending for the next polls.
    pub(super) fn finish_udp_frame(
        &mut self,
        id: FlowId,
        buf: &mut [u8],
        received_here: bool,
        (link, from, to): (LinkAddrs, std::net::SocketAddr, std::net::SocketAddr),
        payload_len: usize,
        fill: frontdesk::ChecksumFill,
    ) -> Option<usize> {
        let headers_len = frontdesk::udp_headers_len(from);
        let frame_len = headers_len.checked_add(payload_len)?;
        let ip_len = frame_len - ETHERNET_HEADER_LEN;
        if ip_len <= self.to_guest.limit {
            if received_here {
                let payload = self.to_guest.whole.get(headers_len..frame_len)?;
                let Some(area) = buf.get_mut(headers_len..frame_len) else {
                    // The caller's buffer is smaller than the guest's MTU.
                    self.counters.udp_drops += 1;
                    return None;
                };
                area.copy_from_slice(payload);
            }
            return frontdesk::write_udp_headers_with(buf, link, from, to, payload_len, fill);
        }
        // Only IPv4 datagrams are cut into fragments here; an IPv6 one
        // larger than the guest's MTU is dropped, as a router drops it.
        let (std::net::SocketAddr::V4(from), std::net::SocketAddr::V4(to)) = (from, to) else {
            self.counters.udp_drops += 1;
            return None;
        };
        if !received_here {
            let payload = buf.get(UDP_V4_HEADERS_LEN..frame_len)?;
            let whole = self.to_guest.receive_buffer();
            whole
                .get_mut(UDP_V4_HEADERS_LEN..frame_len)?
                .copy_from_slice(payload);
        }
        write_udp_v4_headers(self.to_guest.receive_buffer(), link, from, to, payload_len)?;
        let ident = self.to_guest.ident();
        self.to_guest.pending = Some(Pending {
            owner: id,
            len: frame_len,
            ident,
            offset: 0,
        });
        self.poll_udp_fragment(id, buf)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use frontdesk::build_udp_v4;
    use smoltcp::wire::{IpAddress, UdpPacket};
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn link() -> LinkAddrs {
        LinkAddrs::to_guest(&nat_core::Plan::default())
    }

    /// Cuts `whole` with [`write_fragment`] and returns the fragments.
    fn cut(whole: &[u8], limit: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut offset = Some(0);
        while let Some(at) = offset {
            let mut buf = vec![0u8; 65600];
            let (len, next) = write_fragment(&mut buf, whole, limit, 77, at).unwrap();
            buf.truncate(len);
            out.push(buf);
            offset = next;
        }
        out
    }

    #[test]
    fn a_20000_byte_datagram_is_cut_into_fragments_of_at_most_the_mtu() {
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 2), 5000);
        let to = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 15), 6000);
        let payload: Vec<u8> = (0..20000u32).map(|i| (i * 7) as u8).collect();
        let mut whole = vec![0u8; 20042];
        let len = build_udp_v4(&mut whole, link(), from, to, &payload).unwrap();
        assert_eq!(len, 20042);
        let fragments = cut(&whole, 1500);
        assert_eq!(fragments.len(), 14);
        let mut data = Vec::new();
        for (i, frame) in fragments.iter().enumerate() {
            assert!(frame.len() <= 1514);
            let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(ip.ident(), 77);
            assert!(!ip.dont_frag());
            assert_eq!(ip.more_frags(), i + 1 < fragments.len());
            assert_eq!(usize::from(ip.frag_offset()), data.len());
            assert!(is_fragment(frame));
            data.extend_from_slice(ip.payload());
        }
        let udp = UdpPacket::new_checked(&data[..]).unwrap();
        assert!(udp.verify_checksum(&IpAddress::Ipv4(*from.ip()), &IpAddress::Ipv4(*to.ip())));
        assert_eq!(udp.payload(), &payload[..]);
        assert!(!is_fragment(&whole));
    }

    #[test]
    fn the_largest_mtu_takes_the_largest_datagram_whole() {
        assert_eq!(ipv4_limit(nat_core::MTU_MAX), 65535);
        assert_eq!(ipv4_limit(1500), 1500);
        let frame = vec![0u8; 14 + 65535];
        let mut ipv4 = frame.clone();
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert!(!oversize(&ipv4, ipv4_limit(nat_core::MTU_MAX)));
        assert!(oversize(&ipv4, 1500));
        assert!(!oversize(&frame, 1500), "only IPv4 is cut");
    }

    #[test]
    fn the_smallest_mtu_still_cuts() {
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 2), 5000);
        let to = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 15), 6000);
        let payload = vec![3u8; 65507];
        let mut whole = vec![0u8; 65549];
        build_udp_v4(&mut whole, link(), from, to, &payload).unwrap();
        let fragments = cut(&whole, usize::from(nat_core::MTU_MIN));
        assert_eq!(fragments.len(), 65515usize.div_ceil(48));
        assert!(fragments.iter().all(|f| f.len() <= 14 + 68));
    }
}
