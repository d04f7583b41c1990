//! IPv6 frames a guest sends, extension headers included, built with
//! `smoltcp::wire`.

use std::net::Ipv6Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetProtocol, IPV6_HEADER_LEN, IpAddress, IpProtocol, Ipv6Packet,
    Ipv6Repr, UDP_HEADER_LEN, UdpPacket, UdpRepr,
};

use crate::guest::ethernet;
use crate::{gateway_mac, guest_mac};

/// The guest's link-local address (EUI-64 of its MAC).
pub(crate) const GUEST_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);
/// The router's link-local address in the default plan.
pub(crate) const ROUTER_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// The default plan's IPv6 DNS address.
pub(crate) const DNS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 3);
/// The default stateful address.
pub(crate) const GUEST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0x15);

/// The Ethernet address an IPv6 destination is sent to: 33:33 and the
/// low 32 bits for multicast, the gateway otherwise.
pub(crate) fn dst_mac_of(dst: Ipv6Addr) -> EthernetAddress {
    if dst.is_multicast() {
        let o = dst.octets();
        EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
    } else {
        gateway_mac()
    }
}

/// One extension header: its type and its body after the two-byte
/// next-header and length fields, padded to a multiple of 8 bytes.
#[derive(Clone, Debug)]
pub(crate) struct Ext {
    pub(crate) kind: IpProtocol,
    pub(crate) body: Vec<u8>,
}

impl Ext {
    /// A destination options header of 8 bytes (a PadN option).
    pub(crate) fn dest_opts() -> Self {
        Self {
            kind: IpProtocol::Ipv6Opts,
            body: vec![1, 4, 0, 0, 0, 0],
        }
    }

    /// An empty hop-by-hop header (a PadN option).
    pub(crate) fn hop_by_hop() -> Self {
        Self {
            kind: IpProtocol::HopByHop,
            body: vec![1, 4, 0, 0, 0, 0],
        }
    }

    /// A type-0-free routing header with no segments left (16 bytes).
    pub(crate) fn routing() -> Self {
        Self {
            kind: IpProtocol::Ipv6Route,
            body: vec![4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        }
    }

    fn len(&self) -> usize {
        (2 + self.body.len()).div_ceil(8) * 8
    }
}

/// A UDP datagram from `src` to `dst`, behind the extension headers
/// `exts`, with a correct checksum.
pub(crate) fn ipv6_udp(
    (src, dst): (Ipv6Addr, Ipv6Addr),
    exts: &[Ext],
    (src_port, dst_port): (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = UDP_HEADER_LEN + payload.len();
    let ext_len: usize = exts.iter().map(Ext::len).sum();
    let first = exts.first().map_or(IpProtocol::Udp, |e| e.kind);
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: first,
        payload_len: ext_len + udp_len,
        hop_limit: 255,
    };
    ethernet(
        guest_mac(),
        dst_mac_of(dst),
        EthernetProtocol::Ipv6,
        IPV6_HEADER_LEN + ext_len + udp_len,
        |p| {
            let mut packet = Ipv6Packet::new_unchecked(p);
            ip.emit(&mut packet);
            let rest = packet.payload_mut();
            let mut at = 0;
            for (i, ext) in exts.iter().enumerate() {
                let next = exts.get(i + 1).map_or(IpProtocol::Udp, |e| e.kind);
                rest[at] = next.into();
                rest[at + 1] = u8::try_from(ext.len() / 8 - 1).unwrap();
                rest[at + 2..at + 2 + ext.body.len()].copy_from_slice(&ext.body);
                at += ext.len();
            }
            let repr = UdpRepr { src_port, dst_port };
            repr.emit(
                &mut UdpPacket::new_unchecked(&mut rest[at..]),
                &IpAddress::Ipv6(src),
                &IpAddress::Ipv6(dst),
                payload.len(),
                |buf| buf.copy_from_slice(payload),
                &ChecksumCapabilities::default(),
            );
        },
    )
}
