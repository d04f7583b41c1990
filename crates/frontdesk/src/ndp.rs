//! Neighbour discovery (RFC 4861) for slipway's own IPv6 addresses.
//!
//! The front desk answers neighbour solicitations for the gateway, the DNS
//! address and the router's link-local address, always with the gateway's
//! MAC address, and router solicitations with a router advertisement
//! ([`super::ra`]). It never answers for any other address, the guest's
//! own included, nor a duplicate address detection probe: a guest probing
//! for a duplicate must hear nothing. It learns nothing from the guest's
//! advertisements and ignores its redirects. Every message is validated
//! first as RFC 4861 sections 6.1.1, 7.1.1 and 7.1.2 say.

use std::net::Ipv6Addr;

use nat_core::{Ipv6Plan, Plan};
use smoltcp::wire::{
    ETHERNET_HEADER_LEN, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr,
    IPV6_HEADER_LEN, Icmpv6Packet, IpProtocol, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr,
};

use super::Handled;
use super::counters::{Counters, DropReason};
use super::frame::{Ipv6Datagram, Transport, ethernet_address};
use super::ra::{ALL_NODES, ALL_NODES_MAC, RouterConfig, write_router_advertisement};

/// The hop limit of every neighbour discovery message: one that arrives
/// with less crossed a router and is not from the link.
pub const NDP_HOP_LIMIT: u8 = 255;

/// ICMPv6 message types of neighbour discovery.
pub(crate) const ROUTER_SOLICIT: u8 = 133;
const ROUTER_ADVERT: u8 = 134;
const NEIGHBOR_SOLICIT: u8 = 135;
const NEIGHBOR_ADVERT: u8 = 136;
const REDIRECT: u8 = 137;

/// The source link-layer address option's type.
const OPTION_SOURCE_LLA: u8 = 1;

/// Whether `msg_type` is an ICMPv6 neighbour discovery message.
#[must_use]
pub fn is_ndp(msg_type: u8) -> bool {
    (ROUTER_SOLICIT..=REDIRECT).contains(&msg_type)
}

/// Answers a neighbour discovery message from the guest, writing the reply
/// frame into `out`; `None` when `datagram` is no neighbour discovery
/// message (it goes on to the relays).
///
/// A neighbour solicitation for one of slipway's addresses gets a
/// solicited neighbour advertisement, a router solicitation a router
/// advertisement (unicast to its sender, or to all nodes when it has no
/// address yet). Everything else is counted as a drop: invalid messages,
/// solicitations for other addresses, duplicate address detection probes,
/// and the guest's advertisements and redirects.
pub fn handle_ndp(
    datagram: &Ipv6Datagram<'_>,
    plan: &Plan,
    config: &RouterConfig,
    out: &mut [u8],
    counters: &mut Counters,
) -> Option<Handled> {
    let Transport::Icmp {
        msg_type, message, ..
    } = datagram.transport
    else {
        return None;
    };
    if !is_ndp(msg_type) {
        return None;
    }
    let answer = answer(datagram, message, plan, config, out).map(Some);
    Some(Handled::counted(answer, counters))
}

fn answer(
    datagram: &Ipv6Datagram<'_>,
    message: &[u8],
    plan: &Plan,
    config: &RouterConfig,
    out: &mut [u8],
) -> Result<usize, DropReason> {
    let v6 = plan.ipv6().ok_or(DropReason::FamilyDisabled)?;
    let (src, dst) = (datagram.header.src_addr, datagram.header.dst_addr);
    let packet = validate(datagram, message)?;
    let has_source_lla = options(&packet)?;
    if src.is_multicast() {
        return Err(DropReason::NdpInvalid);
    }
    match packet.msg_type().into() {
        ROUTER_SOLICIT => {
            if src.is_unspecified() && has_source_lla {
                return Err(DropReason::NdpInvalid);
            }
            let to = if src.is_unspecified() {
                (ALL_NODES_MAC, ALL_NODES)
            } else {
                (datagram.src_mac, src)
            };
            write_router_advertisement(plan, v6, config, to, out)
        }
        NEIGHBOR_SOLICIT => {
            let target = packet.target_addr();
            if target.is_multicast() {
                return Err(DropReason::NdpInvalid);
            }
            if src.is_unspecified() {
                // RFC 4861 section 7.1.1: a probe goes to the target's
                // solicited-node group and carries no source address.
                if dst != solicited_node(target) || has_source_lla {
                    return Err(DropReason::NdpInvalid);
                }
                return Err(DropReason::NdpDadProbe);
            }
            if !answers_for(v6, target) {
                return Err(DropReason::NdpNotServed);
            }
            write_neighbor_advertisement(plan, target, (datagram.src_mac, src), out)
        }
        NEIGHBOR_ADVERT => {
            let solicited = packet
                .neighbor_flags()
                .contains(NdiscNeighborFlags::SOLICITED);
            if packet.target_addr().is_multicast() || (dst.is_multicast() && solicited) {
                return Err(DropReason::NdpInvalid);
            }
            Err(DropReason::NdpIgnored)
        }
        // The guest is no router, and slipway's router takes no advice.
        ROUTER_ADVERT | REDIRECT => Err(DropReason::NdpIgnored),
        _ => Err(DropReason::Malformed),
    }
}

/// The checks every neighbour discovery message passes (RFC 4861, sections
/// 6.1.1, 7.1.1, 7.1.2 and 8.1), the options aside.
fn validate<'a>(
    datagram: &Ipv6Datagram<'_>,
    message: &'a [u8],
) -> Result<Icmpv6Packet<&'a [u8]>, DropReason> {
    if datagram.header.hop_limit != NDP_HOP_LIMIT {
        return Err(DropReason::NdpInvalid);
    }
    // Checks the length each message type's fixed part needs.
    let packet = Icmpv6Packet::new_checked(message).map_err(|_| DropReason::NdpInvalid)?;
    // Verified here whatever the frontend said about offload: a guest's
    // kernel completes ICMPv6 checksums itself.
    if !packet.verify_checksum(&datagram.header.src_addr, &datagram.header.dst_addr) {
        return Err(DropReason::BadChecksum);
    }
    if packet.msg_code() != 0 {
        return Err(DropReason::NdpInvalid);
    }
    Ok(packet)
}

/// Walks the options after the fixed part: every one must have a non-zero
/// length and end inside the message. Whether a source link-layer address
/// option is among them.
fn options(packet: &Icmpv6Packet<&[u8]>) -> Result<bool, DropReason> {
    let mut rest = packet.payload();
    let mut has_source_lla = false;
    // Bounded: each turn takes at least 8 bytes off `rest`.
    while let [kind, len, ..] = *rest {
        let len = usize::from(len) * 8;
        if len == 0 {
            return Err(DropReason::NdpInvalid);
        }
        rest = rest.get(len..).ok_or(DropReason::NdpInvalid)?;
        has_source_lla |= kind == OPTION_SOURCE_LLA;
    }
    if rest.is_empty() {
        Ok(has_source_lla)
    } else {
        // A single byte left: no option fits.
        Err(DropReason::NdpInvalid)
    }
}

/// The solicited-node multicast address of `addr` (RFC 4291, section
/// 2.7.1).
#[must_use]
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let low = addr.to_bits() & 0x00ff_ffff;
    Ipv6Addr::from_bits(0xff02_0000_0000_0000_0000_0001_ff00_0000 | low)
}

/// Whether the front desk answers neighbour solicitations for `addr`.
fn answers_for(v6: &Ipv6Plan, addr: Ipv6Addr) -> bool {
    addr == v6.gateway() || addr == v6.gateway_link_local() || addr == v6.dns()
}

/// Writes a solicited neighbour advertisement for `target` to `to`.
fn write_neighbor_advertisement(
    plan: &Plan,
    target: Ipv6Addr,
    (dst_mac, dst): (EthernetAddress, Ipv6Addr),
    out: &mut [u8],
) -> Result<usize, DropReason> {
    let gateway_mac = ethernet_address(plan.gateway_mac());
    let repr = NdiscRepr::NeighborAdvert {
        flags: NdiscNeighborFlags::ROUTER
            | NdiscNeighborFlags::SOLICITED
            | NdiscNeighborFlags::OVERRIDE,
        target_addr: target,
        lladdr: Some(gateway_mac.into()),
    };
    write_icmpv6(
        out,
        (gateway_mac, dst_mac),
        (target, dst),
        repr.buffer_len(),
        |icmp| repr.emit(&mut Icmpv6Packet::new_unchecked(icmp)),
    )
}

/// Writes into `out` an Ethernet frame from `link.0` to `link.1` carrying
/// an ICMPv6 message of `icmp_len` bytes from `addrs.0` to `addrs.1` with
/// the neighbour discovery hop limit: `body` writes the message, then its
/// checksum is filled in. The frame's length, or
/// [`DropReason::NoBufferSpace`].
pub(crate) fn write_icmpv6(
    out: &mut [u8],
    (src_mac, dst_mac): (EthernetAddress, EthernetAddress),
    (src, dst): (Ipv6Addr, Ipv6Addr),
    icmp_len: usize,
    body: impl FnOnce(&mut [u8]),
) -> Result<usize, DropReason> {
    let len = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + icmp_len;
    let frame = out.get_mut(..len).ok_or(DropReason::NoBufferSpace)?;
    frame.fill(0);
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv6,
    }
    .emit(&mut eth);
    let mut ip = Ipv6Packet::new_unchecked(eth.payload_mut());
    Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp_len,
        hop_limit: NDP_HOP_LIMIT,
    }
    .emit(&mut ip);
    let icmp = ip.payload_mut();
    body(&mut *icmp);
    Icmpv6Packet::new_unchecked(icmp).fill_checksum(&src, &dst);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(payload: &[u8]) -> Result<bool, DropReason> {
        // A router solicitation: 8 bytes of fixed part, then `payload`.
        let mut message = vec![ROUTER_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
        message.extend_from_slice(payload);
        options(&Icmpv6Packet::new_unchecked(&message[..]))
    }

    #[test]
    fn options_must_have_a_length_and_end_inside_the_message() {
        assert_eq!(walk(&[]), Ok(false));
        assert_eq!(walk(&[1, 1, 0, 0, 0, 0, 0, 0]), Ok(true));
        assert_eq!(
            walk(&[3, 1, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7]),
            Ok(true)
        );
        assert_eq!(walk(&[1, 0, 0, 0, 0, 0, 0, 0]), Err(DropReason::NdpInvalid));
        assert_eq!(walk(&[1, 2, 0, 0, 0, 0, 0, 0]), Err(DropReason::NdpInvalid));
        assert_eq!(walk(&[1]), Err(DropReason::NdpInvalid));
    }

    #[test]
    fn solicited_node_keeps_the_low_24_bits() {
        let addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0x1234, 0x5678);
        assert_eq!(
            solicited_node(addr),
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff34, 0x5678)
        );
    }

    #[test]
    fn ndp_types_are_133_to_137() {
        assert!(!is_ndp(128));
        assert!((133..=137).all(is_ndp));
        assert!(!is_ndp(138));
    }
}
