//! IP fragments on the guest's link, both ways.
//!
//! From the guest: the front desk reassembles IPv4 fragments (see
//! `frontdesk::Reassembler`); a whole datagram comes back here and goes the
//! way of any unfragmented frame.
//!
//! Toward the guest: a datagram longer than the guest's MTU goes out as
//! fragments of at most the MTU, in either family: offsets in 8-byte units,
//! more-fragments on all but the last, one identification per datagram from
//! a counter of the backend's. IPv4 repeats the header in each fragment with
//! the don't-fragment flag cleared (RFC 791); IPv6 repeats the fixed header
//! and inserts a fragment header after it (RFC 8200 section 4.5: the
//! builders write no extension headers, so the fixed header is the whole
//! unfragmentable part). The transport checksum is computed over the whole
//! datagram before it is cut, so it is complete in the first fragment, and
//! no fragment carries a partial checksum. Ready-made frames (DNS replies,
//! forwarded ports' datagrams, echo replies) are cut as they are queued. A
//! UDP flow's datagram is received whole into a buffer kept here when the
//! caller's frame buffer may be too small for it, and handed out one
//! fragment per poll; one datagram at most is pending.
//!
//! At the plan's largest MTU ([`nat_core::MTU_MAX`], 65520, the default)
//! every datagram goes whole, as the receive paths of tap and virtio-net
//! take the largest datagram of either family: cutting there would only
//! split off the last few bytes of the very largest.

use std::time::Instant;

use flow_table::FlowId;
use smoltcp::wire::{
    ETHERNET_HEADER_LEN, EthernetFrame, EthernetProtocol, IPV6_HEADER_LEN, IpProtocol, Ipv4Packet,
    Ipv6Packet,
};

use super::Backend;
use frontdesk::{ChecksumFill, LinkAddrs, Outcome, write_udp_headers_with};

/// The largest IPv4 datagram, header included.
const MAX_IPV4_LEN: usize = 65535;

/// The largest IPv6 datagram without jumbograms: the fixed header and a
/// payload of at most 65535 bytes.
const MAX_IPV6_LEN: usize = IPV6_HEADER_LEN + 65535;

/// The length of an IPv6 fragment header (RFC 8200 section 4.5).
const FRAGMENT_HEADER_LEN: usize = 8;

/// The largest frame of a UDP datagram of either family (no options, no
/// extension headers).
const MAX_UDP_FRAME: usize = ETHERNET_HEADER_LEN + MAX_IPV6_LEN;

/// The IP family of an Ethernet frame, by its ethertype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

fn family_of(frame: &[u8]) -> Option<Family> {
    match frame.get(12..14)? {
        [0x08, 0x00] => Some(Family::V4),
        [0x86, 0xdd] => Some(Family::V6),
        _ => None,
    }
}

impl Family {
    /// The largest datagram of this family a guest with link MTU `mtu`
    /// takes whole.
    fn limit(self, mtu: u16) -> usize {
        match (self, mtu >= nat_core::MTU_MAX) {
            (Family::V4, true) => MAX_IPV4_LEN,
            (Family::V6, true) => MAX_IPV6_LEN,
            (_, false) => usize::from(mtu),
        }
    }
}

/// Whether `frame` is an IPv4 fragment (more-fragments set or a non-zero
/// offset) or an IPv6 datagram with a fragment header: its checksum is
/// whole and may not be left partial.
pub(crate) fn is_fragment(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => Ipv4Packet::new_checked(eth.payload())
            .is_ok_and(|ip| ip.more_frags() || ip.frag_offset() != 0),
        EthernetProtocol::Ipv6 => Ipv6Packet::new_checked(eth.payload())
            .is_ok_and(|ip| ip.next_header() == IpProtocol::Ipv6Frag),
        _ => false,
    }
}

/// Whether `frame` holds an IP datagram longer than a guest with link MTU
/// `mtu` takes whole, so that it must go in fragments.
fn oversize(frame: &[u8], mtu: u16) -> bool {
    family_of(frame)
        .is_some_and(|family| frame.len().saturating_sub(ETHERNET_HEADER_LEN) > family.limit(mtu))
}

/// Writes into `buf` the fragment of `whole` (one Ethernet frame holding one
/// IPv4 or IPv6 datagram) whose data starts at payload offset `offset`, as
/// a datagram of at most `limit` bytes. Returns the fragment's frame length
/// and where the next fragment starts (`None` after the last), or `None`
/// when `whole` is no IP datagram, `offset` is past it or `buf` is too
/// small. An IPv4 header, options included, is repeated in each fragment;
/// an IPv6 fixed header is repeated with a fragment header after it.
pub(crate) fn write_fragment(
    buf: &mut [u8],
    whole: &[u8],
    limit: usize,
    ident: u32,
    offset: usize,
) -> Option<(usize, Option<usize>)> {
    let ip = whole.get(ETHERNET_HEADER_LEN..)?;
    let (header_len, inserted, payload) = match family_of(whole)? {
        Family::V4 => {
            let ip = Ipv4Packet::new_checked(ip).ok()?;
            let header_len = usize::from(ip.header_len());
            (header_len, 0, ip.payload())
        }
        Family::V6 => {
            let ip = Ipv6Packet::new_checked(ip).ok()?;
            (IPV6_HEADER_LEN, FRAGMENT_HEADER_LEN, ip.payload())
        }
    };
    let rest = payload.get(offset..)?;
    // Every fragment but the last carries a multiple of 8 bytes.
    let room = limit.checked_sub(header_len + inserted)? & !7;
    if room == 0 || offset % 8 != 0 {
        return None;
    }
    let chunk = rest.len().min(room);
    let last = chunk == rest.len();
    let ip_len = header_len.checked_add(inserted)?.checked_add(chunk)?;
    let frame_len = ETHERNET_HEADER_LEN.checked_add(ip_len)?;
    let frame = buf.get_mut(..frame_len)?;
    let headers = ETHERNET_HEADER_LEN.checked_add(header_len)?;
    frame[..headers].copy_from_slice(whole.get(..headers)?);
    frame[headers + inserted..].copy_from_slice(rest.get(..chunk)?);
    let fragment = Fragment {
        ident,
        offset,
        more: !last,
    };
    fragment.write_header(&mut frame[ETHERNET_HEADER_LEN..], ip_len)?;
    let next = (!last).then(|| offset + chunk);
    Some((frame_len, next))
}

/// Where one fragment sits in its datagram.
#[derive(Clone, Copy, Debug)]
struct Fragment {
    ident: u32,
    offset: usize,
    more: bool,
}

impl Fragment {
    /// Turns the header copied to the front of `ip` (a datagram of `ip_len`
    /// bytes) into this fragment's header.
    fn write_header(self, ip: &mut [u8], ip_len: usize) -> Option<()> {
        let offset = u16::try_from(self.offset).ok()?;
        if ip.first()? >> 4 == 4 {
            let mut packet = Ipv4Packet::new_unchecked(ip);
            packet.set_total_len(u16::try_from(ip_len).ok()?);
            // IPv4 identifications are 16 bits wide: the counter's low half.
            let [_, _, hi, lo] = self.ident.to_be_bytes();
            packet.set_ident(u16::from_be_bytes([hi, lo]));
            packet.clear_flags();
            packet.set_more_frags(self.more);
            packet.set_frag_offset(offset);
            packet.fill_checksum();
            return Some(());
        }
        let upper = *ip.get(6)?;
        let payload_len = u16::try_from(ip_len.checked_sub(IPV6_HEADER_LEN)?).ok()?;
        let header = ip.get_mut(IPV6_HEADER_LEN..IPV6_HEADER_LEN + FRAGMENT_HEADER_LEN)?;
        header[0] = upper;
        header[1] = 0;
        // The offset in 8-byte units fills the top 13 bits; M is the lowest.
        header[2..4].copy_from_slice(&(offset | u16::from(self.more)).to_be_bytes());
        header[4..8].copy_from_slice(&self.ident.to_be_bytes());
        let mut packet = Ipv6Packet::new_unchecked(ip);
        packet.set_next_header(IpProtocol::Ipv6Frag);
        packet.set_payload_len(payload_len);
        Some(())
    }
}

/// A UDP flow's datagram being handed out in fragments.
#[derive(Clone, Copy, Debug)]
struct Pending {
    owner: FlowId,
    /// Its frame's length in [`Fragmenter::whole`].
    len: usize,
    ident: u32,
    /// Where the next fragment's data starts.
    offset: usize,
}

/// What the backend keeps to fragment datagrams toward the guest.
#[derive(Debug)]
pub(crate) struct Fragmenter {
    /// The guest's link MTU.
    mtu: u16,
    next_ident: u32,
    /// A UDP flow's whole datagram, received here or copied here to be
    /// handed out in fragments; empty until first needed.
    whole: Vec<u8>,
    pending: Option<Pending>,
}

impl Fragmenter {
    /// For a guest whose link MTU is `mtu`.
    pub(crate) fn new(mtu: u16) -> Self {
        Self {
            mtu,
            next_ident: 1,
            whole: Vec::new(),
            pending: None,
        }
    }

    fn ident(&mut self) -> u32 {
        let ident = self.next_ident;
        self.next_ident = self.next_ident.wrapping_add(1);
        ident
    }

    /// Whether a UDP flow's datagram must be received here rather than
    /// into the caller's buffer of `buf_len` bytes: it may be too large for
    /// that buffer and for the guest's MTU.
    pub(crate) fn receives_for(&self, buf_len: usize) -> bool {
        self.mtu < nat_core::MTU_MAX && buf_len < MAX_UDP_FRAME
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
        let mtu = self.to_guest.mtu;
        let Some(family) = family_of(&frame).filter(|_| oversize(&frame, mtu)) else {
            return Some(frame);
        };
        let limit = family.limit(mtu);
        let ident = self.to_guest.ident();
        let mut offset = Some(0);
        // Bounded: each fragment carries at least 8 bytes.
        for _ in 0..=MAX_IPV6_LEN / 8 {
            let Some(at) = offset else { break };
            let mut fragment = vec![0u8; ETHERNET_HEADER_LEN + limit];
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
        let limit = family_of(whole)?.limit(self.to_guest.mtu);
        let written = write_fragment(buf, whole, limit, pending.ident, pending.offset);
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
    /// received after room for its headers into the fragmenter's buffer
    /// (when `received_here`) or into `buf`: the whole frame in `buf` when it
    /// fits the guest's MTU (checksum as `fill` says), its first fragment
    /// otherwise, the rest pending for the next polls.
    pub(super) fn finish_udp_frame(
        &mut self,
        id: FlowId,
        buf: &mut [u8],
        received_here: bool,
        (link, from, to): (LinkAddrs, std::net::SocketAddr, std::net::SocketAddr),
        payload_len: usize,
        fill: ChecksumFill,
    ) -> Option<usize> {
        let headers_len = frontdesk::udp_headers_len(from);
        let frame_len = headers_len.checked_add(payload_len)?;
        let ip_len = frame_len - ETHERNET_HEADER_LEN;
        let family = if from.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        };
        if ip_len <= family.limit(self.to_guest.mtu) {
            if received_here {
                let payload = self.to_guest.whole.get(headers_len..frame_len)?;
                let Some(area) = buf.get_mut(headers_len..frame_len) else {
                    // The caller's buffer is smaller than the guest's MTU.
                    self.counters.udp_drops += 1;
                    return None;
                };
                area.copy_from_slice(payload);
            }
            return write_udp_headers_with(buf, link, from, to, payload_len, fill);
        }
        if !received_here {
            let payload = buf.get(headers_len..frame_len)?;
            let whole = self.to_guest.receive_buffer();
            whole
                .get_mut(headers_len..frame_len)?
                .copy_from_slice(payload);
        }
        let whole = self.to_guest.receive_buffer();
        write_udp_headers_with(whole, link, from, to, payload_len, ChecksumFill::Complete)?;
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
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

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
        assert_eq!(Family::V4.limit(nat_core::MTU_MAX), 65535);
        assert_eq!(Family::V6.limit(nat_core::MTU_MAX), 65575);
        assert_eq!(Family::V4.limit(1500), 1500);
        assert_eq!(Family::V6.limit(1500), 1500);
        let frame = vec![0u8; 14 + 65535];
        let mut ipv4 = frame.clone();
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert!(!oversize(&ipv4, nat_core::MTU_MAX));
        assert!(oversize(&ipv4, 1500));
        let mut ipv6 = vec![0u8; 14 + 65575];
        ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert!(!oversize(&ipv6, nat_core::MTU_MAX));
        assert!(oversize(&ipv6, 1500));
        assert!(!oversize(&frame, 1500), "only IP is cut");
    }

    #[test]
    fn an_ipv6_datagram_is_cut_with_fragment_headers() {
        let from: SocketAddr = "[fd00::2]:5000".parse().unwrap();
        let to: SocketAddr = "[fd00::15]:6000".parse().unwrap();
        let payload: Vec<u8> = (0..20000u32).map(|i| (i * 13) as u8).collect();
        let mut whole = vec![0u8; 62 + payload.len()];
        let len = frontdesk::build_udp(&mut whole, link(), from, to, &payload).unwrap();
        assert_eq!(len, whole.len());
        let fragments = cut(&whole, 1500);
        // 1448 bytes of data per fragment: 1500 less 40 and 8, in 8s.
        assert_eq!(fragments.len(), 20008usize.div_ceil(1448));
        let mut data = Vec::new();
        for (i, frame) in fragments.iter().enumerate() {
            assert!(frame.len() <= 1514);
            assert!(is_fragment(frame));
            let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
            assert_eq!(ip.next_header(), IpProtocol::Ipv6Frag);
            assert_eq!(usize::from(ip.payload_len()), frame.len() - 54);
            let fh = ip.payload();
            assert_eq!(fh[0], 17, "the fragment header names UDP");
            let off_m = u16::from_be_bytes([fh[2], fh[3]]);
            assert_eq!(
                usize::from(off_m & !7),
                data.len(),
                "offset in 8-byte units"
            );
            assert_eq!(off_m & 1 == 1, i + 1 < fragments.len());
            assert_eq!(u32::from_be_bytes([fh[4], fh[5], fh[6], fh[7]]), 77);
            data.extend_from_slice(&fh[8..]);
        }
        let udp = UdpPacket::new_checked(&data[..]).unwrap();
        let (src, dst) = (IpAddress::from(from.ip()), IpAddress::from(to.ip()));
        assert!(udp.verify_checksum(&src, &dst));
        assert_eq!(udp.payload(), &payload[..]);
        assert!(!is_fragment(&whole));
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
