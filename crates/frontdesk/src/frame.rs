//! Classifying the Ethernet frames a guest sends.
//!
//! [`classify`] checks every header up to the transport layer (addresses,
//! lengths, checksums, fragmentation) and sorts the frame into what the
//! front desk answers itself (ARP, DHCPv4) and what goes on to the relays
//! (IPv4 and IPv6 datagrams). Whatever fails a check is a
//! [`Classified::Drop`], already counted.

use std::net::Ipv4Addr;

use nat_core::{Ipv4Plan, MacAddr, Plan};
use smoltcp::wire::{
    ArpPacket, ArpRepr, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, EthernetAddress, EthernetFrame,
    EthernetProtocol, IPV6_HEADER_LEN, Icmpv4Packet, Icmpv6Packet, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, UdpPacket,
};

use super::counters::{Counters, DropReason};
use super::reassembly::Ipv4Fragment;
use super::tcp::TcpSegment;

/// What a guest frame is, once every check has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classified<'a> {
    /// An Ethernet/IPv4 ARP message; [`handle_arp`](super::handle_arp)
    /// answers it.
    Arp(ArpRepr),
    /// A datagram from the DHCP client port to the DHCP server port, sent
    /// to the limited broadcast address, the network's broadcast address or
    /// the gateway; [`DhcpServer`](super::DhcpServer) answers it.
    Dhcpv4(Dhcpv4Message<'a>),
    /// An IPv4 datagram carrying TCP, UDP or ICMP, for the relays.
    Ipv4(Ipv4Datagram<'a>),
    /// A fragment of an IPv4 datagram carrying TCP, UDP or ICMP, for
    /// [`Reassembler`](super::Reassembler); the transport checks wait for
    /// the whole datagram.
    Ipv4Fragment(Ipv4Fragment<'a>),
    /// An IPv6 datagram, for the relays (and the NDP and DHCPv6 responders).
    Ipv6(Ipv6Datagram<'a>),
    /// The frame failed a check; the drop is already counted.
    Drop(DropReason),
}

/// A DHCPv4 message from the guest, with the addresses it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dhcpv4Message<'a> {
    /// The Ethernet source address (a unicast address).
    pub src_mac: EthernetAddress,
    /// The IPv4 source address (often 0.0.0.0).
    pub src_addr: Ipv4Addr,
    /// The IPv4 destination address.
    pub dst_addr: Ipv4Addr,
    /// The UDP payload: the BOOTP/DHCP message, not yet parsed.
    pub payload: &'a [u8],
}

/// Whether [`classify_with`] verifies transport-layer (TCP, UDP, ICMP)
/// checksums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TransportChecksums {
    /// Verify them; a wrong one is a [`DropReason::BadChecksum`] drop.
    #[default]
    Verify,
    /// Do not: the frontend vouches for them or says the guest's kernel
    /// left them partial for the "hardware" to complete (checksum offload),
    /// so there is nothing to verify. Every other check still applies.
    Offloaded,
}

/// The transport-layer content of a datagram whose checksum has been
/// verified (or offloaded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport<'a> {
    /// A TCP segment, its header read; both ports are non-zero.
    Tcp(TcpSegment<'a>),
    /// A UDP datagram; the destination port is non-zero.
    Udp {
        /// Source port (zero when the sender expects no reply).
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// The payload, as long as the UDP length field says.
        payload: &'a [u8],
    },
    /// An ICMP (over IPv4) or ICMPv6 (over IPv6) message.
    Icmp {
        /// The message type.
        msg_type: u8,
        /// The message code.
        code: u8,
        /// The whole message, header included.
        message: &'a [u8],
    },
    /// Another IPv6 upper-layer protocol (past any extension headers),
    /// passed through unchecked. IPv4 has no such variant: other IPv4
    /// protocols are dropped.
    Other {
        /// The upper-layer protocol.
        protocol: IpProtocol,
        /// The payload after the extension headers.
        payload: &'a [u8],
    },
}

/// An IPv4 datagram from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Datagram<'a> {
    /// The Ethernet source address (a unicast address).
    pub src_mac: EthernetAddress,
    /// The Ethernet destination address.
    pub dst_mac: EthernetAddress,
    /// The header fields.
    pub header: Ipv4Repr,
    /// The transport-layer content.
    pub transport: Transport<'a>,
    /// The whole datagram, header included, without Ethernet padding: what
    /// an ICMP error about it quotes.
    pub packet: &'a [u8],
}

/// An IPv6 datagram from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Datagram<'a> {
    /// The Ethernet source address (a unicast address).
    pub src_mac: EthernetAddress,
    /// The Ethernet destination address.
    pub dst_mac: EthernetAddress,
    /// The fixed header's fields.
    pub header: Ipv6Repr,
    /// The transport-layer content (after any extension headers).
    pub transport: Transport<'a>,
    /// Where the upper-layer header starts in `packet`: past the fixed
    /// header and any extension headers.
    pub transport_offset: usize,
    /// The whole datagram, fixed header included, without Ethernet padding.
    pub packet: &'a [u8],
}

/// The smoltcp form of a MAC address from the plan.
#[must_use]
pub fn ethernet_address(mac: MacAddr) -> EthernetAddress {
    EthernetAddress(mac.0)
}

/// Classifies one frame from the guest and counts it in `counters`, with
/// its drop reason if it is dropped.
///
/// The destination MAC address must be the gateway's or the broadcast
/// address (or, for IPv6, an IPv6 multicast address `33:33:…`); the source
/// MAC address must be unicast. IPv4 datagrams must have a valid header and
/// header checksum and a non-zero TTL; TCP, UDP and ICMP checksums are
/// verified (a UDP checksum of zero is accepted over IPv4 only). An IPv4
/// fragment passes the header checks and comes out as
/// [`Classified::Ipv4Fragment`], to be reassembled; IPv6 fragments are
/// dropped.
pub fn classify<'a>(frame: &'a [u8], plan: &Plan, counters: &mut Counters) -> Classified<'a> {
    classify_with(frame, plan, TransportChecksums::Verify, counters)
}

/// [`classify`], verifying transport checksums or not as `checksums` says;
/// every other check is the same.
pub fn classify_with<'a>(
    frame: &'a [u8],
    plan: &Plan,
    checksums: TransportChecksums,
    counters: &mut Counters,
) -> Classified<'a> {
    counters.record_frame(frame.len());
    if checksums == TransportChecksums::Offloaded {
        counters.record_offloaded_checksum();
    }
    let verify = checksums == TransportChecksums::Verify;
    match classify_frame(frame, plan, verify) {
        Ok(classified) => classified,
        Err(reason) => {
            counters.record_drop(reason);
            Classified::Drop(reason)
        }
    }
}

pub(super) fn classify_frame<'a>(
    frame: &'a [u8],
    plan: &Plan,
    verify: bool,
) -> Result<Classified<'a>, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Malformed)?;
    let (src_mac, dst_mac, ethertype) = (eth.src_addr(), eth.dst_addr(), eth.ethertype());
    if !src_mac.is_unicast() || src_mac.0 == [0; 6] {
        return Err(DropReason::BadSourceMac);
    }
    let ipv6_multicast =
        ethertype == EthernetProtocol::Ipv6 && dst_mac.0.starts_with(&[0x33, 0x33]);
    if dst_mac != ethernet_address(plan.gateway_mac()) && !dst_mac.is_broadcast() && !ipv6_multicast
    {
        return Err(DropReason::NotForUs);
    }
    let payload = eth.payload();
    match ethertype {
        EthernetProtocol::Arp => {
            plan.ipv4().ok_or(DropReason::FamilyDisabled)?;
            let packet = ArpPacket::new_checked(payload).map_err(|_| DropReason::Malformed)?;
            let repr = ArpRepr::parse(&packet).map_err(|_| DropReason::Malformed)?;
            Ok(Classified::Arp(repr))
        }
        EthernetProtocol::Ipv4 => {
            let v4 = plan.ipv4().ok_or(DropReason::FamilyDisabled)?;
            classify_ipv4(payload, v4, (src_mac, dst_mac), verify)
        }
        EthernetProtocol::Ipv6 => {
            plan.ipv6().ok_or(DropReason::FamilyDisabled)?;
            classify_ipv6(payload, (src_mac, dst_mac), verify).map(Classified::Ipv6)
        }
        EthernetProtocol::Unknown(_) => Err(DropReason::UnsupportedEtherType),
    }
}

fn classify_ipv4<'a>(
    bytes: &'a [u8],
    v4: &Ipv4Plan,
    (src_mac, dst_mac): (EthernetAddress, EthernetAddress),
    verify: bool,
) -> Result<Classified<'a>, DropReason> {
    let packet = Ipv4Packet::new_checked(bytes).map_err(|_| DropReason::Malformed)?;
    if packet.version() != 4 {
        return Err(DropReason::Malformed);
    }
    if !packet.verify_checksum() {
        return Err(DropReason::BadChecksum);
    }
    if packet.hop_limit() == 0 {
        return Err(DropReason::TtlExpired);
    }
    if packet.more_frags() || packet.frag_offset() != 0 {
        return ipv4_fragment(bytes, &packet, (src_mac, dst_mac)).map(Classified::Ipv4Fragment);
    }
    // Built from the fields already checked, rather than by
    // `Ipv4Repr::parse`, which would verify the checksum a second time.
    let header = Ipv4Repr {
        src_addr: packet.src_addr(),
        dst_addr: packet.dst_addr(),
        next_header: packet.next_header(),
        payload_len: usize::from(packet.total_len())
            .checked_sub(usize::from(packet.header_len()))
            .ok_or(DropReason::Malformed)?,
        hop_limit: packet.hop_limit(),
    };
    let whole = bytes
        .get(..usize::from(packet.total_len()))
        .ok_or(DropReason::Malformed)?;
    let (src, dst) = (header.src_addr, header.dst_addr);
    let (src_ip, dst_ip) = (IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
    let payload = packet.payload();
    let transport = match header.next_header {
        IpProtocol::Tcp => check_tcp(payload, &src_ip, &dst_ip, verify)?,
        IpProtocol::Udp => {
            let transport = check_udp(payload, &src_ip, &dst_ip, verify)?;
            match transport {
                Transport::Udp {
                    src_port: DHCP_CLIENT_PORT,
                    dst_port: DHCP_SERVER_PORT,
                    payload,
                } if is_dhcp_server_address(v4, dst) => {
                    return Ok(Classified::Dhcpv4(Dhcpv4Message {
                        src_mac,
                        src_addr: src,
                        dst_addr: dst,
                        payload,
                    }));
                }
                other => other,
            }
        }
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(payload).map_err(|_| DropReason::Malformed)?;
            if verify && !icmp.verify_checksum() {
                return Err(DropReason::BadChecksum);
            }
            Transport::Icmp {
                msg_type: icmp.msg_type().into(),
                code: icmp.msg_code(),
                message: payload,
            }
        }
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    Ok(Classified::Ipv4(Ipv4Datagram {
        src_mac,
        dst_mac,
        header,
        transport,
        packet: whole,
    }))
}

/// A fragment whose header has passed the checks, for reassembly.
fn ipv4_fragment<'a>(
    bytes: &'a [u8],
    packet: &Ipv4Packet<&'a [u8]>,
    (src_mac, dst_mac): (EthernetAddress, EthernetAddress),
) -> Result<Ipv4Fragment<'a>, DropReason> {
    let protocol = packet.next_header();
    if !matches!(
        protocol,
        IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Icmp
    ) {
        return Err(DropReason::UnsupportedProtocol);
    }
    let header_len = usize::from(packet.header_len());
    let total_len = usize::from(packet.total_len());
    let header = bytes.get(..header_len).ok_or(DropReason::Malformed)?;
    let data = bytes
        .get(header_len..total_len)
        .ok_or(DropReason::Malformed)?;
    Ok(Ipv4Fragment {
        src_mac,
        dst_mac,
        src_addr: packet.src_addr(),
        dst_addr: packet.dst_addr(),
        protocol,
        ident: packet.ident(),
        offset: usize::from(packet.frag_offset()),
        more_frags: packet.more_frags(),
        header,
        data,
    })
}

/// The addresses a DHCP client sends to: the limited broadcast address
/// while it has no lease, the server (the gateway) when it renews.
fn is_dhcp_server_address(v4: &Ipv4Plan, dst: Ipv4Addr) -> bool {
    dst == Ipv4Addr::BROADCAST || dst == v4.broadcast() || dst == v4.gateway()
}

/// At most this many IPv6 extension headers are walked; a longer chain is
/// dropped ([`DropReason::ExtensionHeaderLimit`]).
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// The Jumbo Payload option of a hop-by-hop header (RFC 2675).
const OPT_JUMBO_PAYLOAD: u8 = 0xc2;
/// The one-byte Pad1 option of hop-by-hop and destination options headers.
const OPT_PAD1: u8 = 0;

fn classify_ipv6(
    bytes: &[u8],
    (src_mac, dst_mac): (EthernetAddress, EthernetAddress),
    verify: bool,
) -> Result<Ipv6Datagram<'_>, DropReason> {
    let packet = Ipv6Packet::new_checked(bytes).map_err(|_| DropReason::Malformed)?;
    let header = Ipv6Repr::parse(&packet).map_err(|_| DropReason::Malformed)?;
    if header.hop_limit == 0 {
        return Err(DropReason::TtlExpired);
    }
    let whole = bytes
        .get(..packet.total_len())
        .ok_or(DropReason::Malformed)?;
    let (src_ip, dst_ip) = (
        IpAddress::Ipv6(header.src_addr),
        IpAddress::Ipv6(header.dst_addr),
    );
    // A jumbogram's payload length is zero (RFC 2675): its hop-by-hop
    // header lies past the payload the fixed header announces.
    let unannounced = bytes.get(IPV6_HEADER_LEN..).unwrap_or_default();
    if header.payload_len == 0
        && header.next_header == IpProtocol::HopByHop
        && hop_by_hop_body(unannounced).is_some_and(has_jumbo_option)
    {
        return Err(DropReason::Jumbogram);
    }
    let (protocol, offset) = walk_extension_headers(header.next_header, packet.payload())?;
    let payload = packet
        .payload()
        .get(offset..)
        .ok_or(DropReason::Malformed)?;
    // smoltcp's checksum verifiers take the pseudo-header's length from
    // the slice, which starts past the extension headers.
    let transport = match protocol {
        IpProtocol::Tcp => check_tcp(payload, &src_ip, &dst_ip, verify)?,
        IpProtocol::Udp => {
            // IPv6 has no "no checksum" UDP (RFC 8200, section 8.1).
            let zero = UdpPacket::new_checked(payload).is_ok_and(|udp| udp.checksum() == 0);
            if zero {
                return Err(DropReason::BadChecksum);
            }
            check_udp(payload, &src_ip, &dst_ip, verify)?
        }
        IpProtocol::Icmpv6 => {
            let icmp = Icmpv6Packet::new_checked(payload).map_err(|_| DropReason::Malformed)?;
            if verify && !icmp.verify_checksum(&header.src_addr, &header.dst_addr) {
                return Err(DropReason::BadChecksum);
            }
            Transport::Icmp {
                msg_type: icmp.msg_type().into(),
                code: icmp.msg_code(),
                message: payload,
            }
        }
        protocol => Transport::Other { protocol, payload },
    };
    Ok(Ipv6Datagram {
        src_mac,
        dst_mac,
        header,
        transport,
        transport_offset: IPV6_HEADER_LEN + offset,
        packet: whole,
    })
}

/// Walks the extension headers at the start of `payload` (whose first
/// header is `next`): the upper-layer protocol and its offset in `payload`.
///
/// Hop-by-hop options (only first, as RFC 8200 requires), routing and
/// destination options headers are stepped over, and so is the fragment
/// header of an atomic fragment (offset 0, no more fragments: a whole
/// datagram, RFC 8200 section 4.5 and RFC 6946); a real fragment, a jumbo
/// payload option, a header past the end or more than
/// [`MAX_EXTENSION_HEADERS`] headers drop the packet. Each turn of the loop
/// moves at least 8 bytes into the packet and the turns are bounded, so no
/// chain makes it loop long.
pub(crate) fn walk_extension_headers(
    mut next: IpProtocol,
    payload: &[u8],
) -> Result<(IpProtocol, usize), DropReason> {
    let mut offset = 0;
    for index in 0..=MAX_EXTENSION_HEADERS {
        match next {
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {}
            IpProtocol::Ipv6Frag => {
                if !is_atomic_fragment(payload.get(offset..).unwrap_or_default())? {
                    return Err(DropReason::Fragment);
                }
            }
            upper => return Ok((upper, offset)),
        }
        if index == MAX_EXTENSION_HEADERS {
            break;
        }
        if next == IpProtocol::HopByHop && index != 0 {
            return Err(DropReason::Malformed);
        }
        let fixed = payload
            .get(offset..offset + 2)
            .ok_or(DropReason::Malformed)?;
        let (following, ext_len) = (fixed[0], fixed[1]);
        // A fragment header is 8 bytes; its second byte is reserved.
        let len = if next == IpProtocol::Ipv6Frag {
            8
        } else {
            (usize::from(ext_len) + 1) * 8
        };
        let body = payload
            .get(offset + 2..offset + len)
            .ok_or(DropReason::Malformed)?;
        if next == IpProtocol::HopByHop && has_jumbo_option(body) {
            return Err(DropReason::Jumbogram);
        }
        next = IpProtocol::from(following);
        offset += len;
    }
    Err(DropReason::ExtensionHeaderLimit)
}

/// Whether the fragment header at the start of `header` says its datagram
/// is whole: offset 0 and no more fragments.
fn is_atomic_fragment(header: &[u8]) -> Result<bool, DropReason> {
    let field = header.get(2..4).ok_or(DropReason::Malformed)?;
    let offset_and_more = u16::from_be_bytes([field[0], field[1]]) & 0xfff9;
    Ok(offset_and_more == 0)
}

/// The options of the hop-by-hop header at the start of `bytes`, if it is
/// all there.
fn hop_by_hop_body(bytes: &[u8]) -> Option<&[u8]> {
    let len = (usize::from(*bytes.get(1)?) + 1) * 8;
    bytes.get(2..len)
}

/// Whether the options of a hop-by-hop header hold a jumbo payload option.
/// The walk ends at the body's end; each step moves at least one byte.
fn has_jumbo_option(mut options: &[u8]) -> bool {
    while let Some((&kind, rest)) = options.split_first() {
        if kind == OPT_JUMBO_PAYLOAD {
            return true;
        }
        if kind == OPT_PAD1 {
            options = rest;
            continue;
        }
        let Some((&len, rest)) = rest.split_first() else {
            return false;
        };
        options = rest.get(usize::from(len)..).unwrap_or(&[]);
    }
    false
}

fn check_tcp<'a>(
    segment: &'a [u8],
    src: &IpAddress,
    dst: &IpAddress,
    verify: bool,
) -> Result<Transport<'a>, DropReason> {
    let tcp = TcpPacket::new_checked(segment).map_err(|_| DropReason::Malformed)?;
    if verify && !tcp.verify_checksum(src, dst) {
        return Err(DropReason::BadChecksum);
    }
    if tcp.src_port() == 0 || tcp.dst_port() == 0 {
        return Err(DropReason::Malformed);
    }
    Ok(Transport::Tcp(TcpSegment::read(&tcp)))
}

fn check_udp<'a>(
    datagram: &'a [u8],
    src: &IpAddress,
    dst: &IpAddress,
    verify: bool,
) -> Result<Transport<'a>, DropReason> {
    let udp = UdpPacket::new_checked(datagram).map_err(|_| DropReason::Malformed)?;
    if udp.dst_port() == 0 {
        return Err(DropReason::Malformed);
    }
    // A zero checksum means "none" and verifies.
    if verify && !udp.verify_checksum(src, dst) {
        return Err(DropReason::BadChecksum);
    }
    Ok(Transport::Udp {
        src_port: udp.src_port(),
        dst_port: udp.dst_port(),
        payload: udp.payload(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumbo_option_is_found_among_padding() {
        assert!(has_jumbo_option(&[
            0,
            1,
            0,
            OPT_JUMBO_PAYLOAD,
            4,
            0,
            0,
            0,
            0
        ]));
        assert!(!has_jumbo_option(&[1, 4, 0, 0, 0, 0]));
        // An option length past the end ends the walk.
        assert!(!has_jumbo_option(&[1, 200]));
        assert!(!has_jumbo_option(&[5]));
    }

    #[test]
    fn walk_of_a_chain_past_the_bound_stops() {
        // Ten destination options headers of 8 bytes each, then UDP.
        let mut payload = Vec::new();
        for i in 0..10 {
            let next = if i == 9 { 17 } else { 60 };
            payload.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(
            walk_extension_headers(IpProtocol::Ipv6Opts, &payload),
            Err(DropReason::ExtensionHeaderLimit)
        );
        assert_eq!(
            walk_extension_headers(IpProtocol::Ipv6Opts, &payload[16..]),
            Ok((IpProtocol::Udp, 64))
        );
        assert_eq!(
            walk_extension_headers(IpProtocol::Udp, &[]),
            Ok((IpProtocol::Udp, 0))
        );
        assert_eq!(
            walk_extension_headers(IpProtocol::Ipv6Route, &[6]),
            Err(DropReason::Malformed)
        );
    }
}
