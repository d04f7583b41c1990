//! DHCPv4: the exchanges a guest client makes, and the replies as it sees them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use frontdesk::DhcpServer;
use frontdesk::{DhcpConfig, DropReason, FrontDesk, Outcome};
use nat_core::Plan;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    DhcpMessageType, DhcpPacket, DhcpRepr, ETHERNET_HEADER_LEN, EthernetAddress, EthernetFrame,
    EthernetProtocol, IpAddress, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

use crate::guest::ClientMessage;
use crate::{DNS, GATEWAY, GUEST, desk, gateway_mac, guest_mac};

/// A DHCP reply as the guest sees it.
#[derive(Debug)]
struct ServerMessage {
    dst_mac: EthernetAddress,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    kind: DhcpMessageType,
    xid: u32,
    yiaddr: Ipv4Addr,
    ciaddr: Ipv4Addr,
    broadcast: bool,
    router: Option<Ipv4Addr>,
    subnet_mask: Option<Ipv4Addr>,
    dns: Vec<Ipv4Addr>,
    lease: Option<u32>,
    server_id: Option<Ipv4Addr>,
    options: BTreeMap<u8, Vec<u8>>,
}

impl ServerMessage {
    fn option_u32(&self, kind: u8) -> Option<u32> {
        let data = self.options.get(&kind)?;
        Some(u32::from_be_bytes(data.as_slice().try_into().unwrap()))
    }

    fn option_u16(&self, kind: u8) -> Option<u16> {
        let data = self.options.get(&kind)?;
        Some(u16::from_be_bytes(data.as_slice().try_into().unwrap()))
    }
}

fn parse_dhcp_reply(frame: &[u8]) -> ServerMessage {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.src_addr(), gateway_mac());
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    let ip_repr = Ipv4Repr::parse(&ip, &ChecksumCapabilities::default()).unwrap();
    let (src, dst) = (
        IpAddress::Ipv4(ip_repr.src_addr),
        IpAddress::Ipv4(ip_repr.dst_addr),
    );
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    let udp_repr = UdpRepr::parse(&udp, &src, &dst, &ChecksumCapabilities::default()).unwrap();
    assert_eq!((udp_repr.src_port, udp_repr.dst_port), (67, 68));
    assert!(udp.checksum() != 0, "the server fills in UDP checksums");
    let payload = udp.payload();
    assert!(payload.len() >= 300, "BOOTP minimum length");
    let dhcp = DhcpPacket::new_checked(payload).unwrap();
    let repr = DhcpRepr::parse(&dhcp).unwrap();
    let options = dhcp.options().map(|o| (o.kind, o.data.to_vec())).collect();
    ServerMessage {
        dst_mac: eth.dst_addr(),
        src_ip: ip_repr.src_addr,
        dst_ip: ip_repr.dst_addr,
        kind: repr.message_type,
        xid: repr.transaction_id,
        yiaddr: repr.your_ip,
        ciaddr: repr.client_ip,
        broadcast: repr.broadcast,
        router: repr.router,
        subnet_mask: repr.subnet_mask,
        dns: repr
            .dns_servers
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default(),
        lease: repr.lease_duration,
        server_id: repr.server_identifier,
        options,
    }
}

fn dhcp_exchange(desk: &mut FrontDesk, message: ClientMessage) -> ServerMessage {
    let frame = message.frame();
    let mut out = vec![0; 2048];
    match desk.handle_frame(&frame, Instant::now(), &mut out) {
        Outcome::Reply(len) => parse_dhcp_reply(&out[..len]),
        other => panic!("no DHCP reply: {other:?}"),
    }
}

#[test]
fn dhcp_discover_offer_request_ack() {
    let mut desk = desk();
    let offer = dhcp_exchange(&mut desk, ClientMessage::new(DhcpMessageType::Discover));
    assert_eq!(offer.kind, DhcpMessageType::Offer);
    assert_eq!(offer.xid, 0x1234_5678);
    assert_eq!(offer.yiaddr, GUEST);
    assert_eq!((offer.dst_mac, offer.dst_ip), (guest_mac(), GUEST));
    assert_eq!(offer.src_ip, GATEWAY);
    assert_eq!(offer.server_id, Some(GATEWAY));
    assert!(desk.dhcp().lease().is_none(), "an offer is not a lease");

    let mut request = ClientMessage::new(DhcpMessageType::Request);
    request.requested = Some(offer.yiaddr);
    request.server = offer.server_id;
    let ack = dhcp_exchange(&mut desk, request);
    assert_eq!(ack.kind, DhcpMessageType::Ack);
    assert_eq!(ack.yiaddr, GUEST);
    assert_eq!((ack.dst_mac, ack.dst_ip), (guest_mac(), GUEST));
    for reply in [&offer, &ack] {
        assert_eq!(reply.router, Some(GATEWAY));
        assert_eq!(reply.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(reply.dns, vec![DNS]);
        assert_eq!(reply.option_u16(26), Some(65520), "interface MTU");
        assert_eq!(reply.lease, Some(3600));
        assert_eq!(reply.option_u32(58), Some(1800), "renewal time");
        assert_eq!(reply.option_u32(59), Some(3150), "rebinding time");
        assert_eq!(reply.server_id, Some(GATEWAY));
        // The client identifier is echoed (RFC 6842).
        let mut id = vec![1];
        id.extend_from_slice(&guest_mac().0);
        assert_eq!(reply.options.get(&61), Some(&id));
    }
    let lease = desk.dhcp().lease().unwrap();
    assert_eq!((lease.client_mac, lease.xid), (guest_mac(), 0x1234_5678));
    assert_eq!(desk.dhcp().stats().offers, 1);
    assert_eq!(desk.dhcp().stats().acks, 1);
    assert_eq!(desk.counters().total_drops(), 0);
}

#[test]
fn dhcp_broadcast_flag_is_honoured() {
    let mut desk = desk();
    let mut discover = ClientMessage::new(DhcpMessageType::Discover);
    discover.broadcast = true;
    let offer = dhcp_exchange(&mut desk, discover);
    assert!(offer.broadcast);
    assert_eq!(
        (offer.dst_mac, offer.dst_ip),
        (EthernetAddress::BROADCAST, Ipv4Addr::BROADCAST)
    );
}

#[test]
fn dhcp_renewal_is_acked_to_ciaddr() {
    let mut desk = desk();
    let mut renew = ClientMessage::new(DhcpMessageType::Request);
    renew.ciaddr = GUEST;
    let ack = dhcp_exchange(&mut desk, renew);
    assert_eq!(ack.kind, DhcpMessageType::Ack);
    assert_eq!((ack.ciaddr, ack.yiaddr), (GUEST, GUEST));
    assert_eq!((ack.dst_mac, ack.dst_ip), (guest_mac(), GUEST));
}

#[test]
fn dhcp_request_for_another_address_is_naked() {
    let mut desk = desk();
    let mut request = ClientMessage::new(DhcpMessageType::Request);
    request.requested = Some(Ipv4Addr::new(10, 0, 2, 16));
    let nak = dhcp_exchange(&mut desk, request);
    assert_eq!(nak.kind, DhcpMessageType::Nak);
    assert_eq!(nak.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        (nak.dst_mac, nak.dst_ip),
        (EthernetAddress::BROADCAST, Ipv4Addr::BROADCAST)
    );
    assert_eq!((nak.router, nak.lease), (None, None));
    assert_eq!(nak.server_id, Some(GATEWAY));
    assert!(nak.options.contains_key(&56), "NAK explains itself");
    assert!(desk.dhcp().lease().is_none());

    let mut other_server = ClientMessage::new(DhcpMessageType::Request);
    other_server.requested = Some(GUEST);
    other_server.server = Some(Ipv4Addr::new(10, 0, 2, 1));
    assert_eq!(
        dhcp_exchange(&mut desk, other_server).kind,
        DhcpMessageType::Nak
    );
    let mut stale_ciaddr = ClientMessage::new(DhcpMessageType::Request);
    stale_ciaddr.ciaddr = Ipv4Addr::new(10, 0, 2, 16);
    assert_eq!(
        dhcp_exchange(&mut desk, stale_ciaddr).kind,
        DhcpMessageType::Nak
    );
    assert_eq!(desk.dhcp().stats().naks, 3);
}

#[test]
fn dhcp_release_forgets_the_lease() {
    let mut desk = desk();
    let mut request = ClientMessage::new(DhcpMessageType::Request);
    request.requested = Some(GUEST);
    dhcp_exchange(&mut desk, request);
    assert!(desk.dhcp().lease().is_some());
    let mut release = ClientMessage::new(DhcpMessageType::Release);
    release.ciaddr = GUEST;
    release.server = Some(GATEWAY);
    let mut out = vec![0; 2048];
    assert_eq!(
        desk.handle_frame(&release.frame(), Instant::now(), &mut out),
        Outcome::Consumed
    );
    assert!(desk.dhcp().lease().is_none());
    // A second release has no lease to release.
    assert_eq!(
        desk.handle_frame(&release.frame(), Instant::now(), &mut out),
        Outcome::Dropped(DropReason::DhcpIgnored)
    );
    assert_eq!(desk.counters().drops(DropReason::DhcpIgnored), 1);
}

#[test]
fn dhcp_decline_is_counted() {
    let mut desk = desk();
    let mut decline = ClientMessage::new(DhcpMessageType::Decline);
    decline.requested = Some(GUEST);
    decline.server = Some(GATEWAY);
    let mut out = vec![0; 2048];
    assert_eq!(
        desk.handle_frame(&decline.frame(), Instant::now(), &mut out),
        Outcome::Consumed
    );
    assert_eq!(desk.dhcp().stats().declines, 1);
}

#[test]
fn dhcp_inform_is_acked_without_address_or_lease() {
    let mut desk = desk();
    let mut inform = ClientMessage::new(DhcpMessageType::Inform);
    inform.ciaddr = GUEST;
    let ack = dhcp_exchange(&mut desk, inform);
    assert_eq!(ack.kind, DhcpMessageType::Ack);
    assert_eq!(ack.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.ciaddr, GUEST);
    assert_eq!(ack.dst_ip, GUEST);
    assert_eq!(ack.lease, None);
    assert_eq!(ack.router, Some(GATEWAY));
    assert_eq!(ack.dns, vec![DNS]);
    assert!(desk.dhcp().lease().is_none());
}

#[test]
fn dhcp_lease_time_and_mtu_follow_configuration() {
    let plan = Plan::builder().mtu(1500).build().unwrap();
    let config = DhcpConfig {
        lease_time: Duration::from_secs(600),
    };
    let mut desk = FrontDesk::new(plan, config);
    let offer = dhcp_exchange(&mut desk, ClientMessage::new(DhcpMessageType::Discover));
    assert_eq!(offer.lease, Some(600));
    assert_eq!(offer.option_u32(58), Some(300));
    assert_eq!(offer.option_u32(59), Some(525));
    assert_eq!(offer.option_u16(26), Some(1500));
}

#[test]
fn dhcp_server_messages_from_the_guest_are_dropped() {
    let mut desk = desk();
    let mut out = vec![0; 2048];
    // A BOOTREPLY opcode: not something a client sends.
    let mut frame = ClientMessage::new(DhcpMessageType::Discover).frame();
    let dhcp_start = ETHERNET_HEADER_LEN + 20 + 8;
    frame[dhcp_start] = 2;
    // Recompute the UDP checksum so only the DHCP content is wrong.
    refill_udp_checksum(&mut frame);
    assert_eq!(
        desk.handle_frame(&frame, Instant::now(), &mut out),
        Outcome::Dropped(DropReason::DhcpMalformed)
    );
    let server = DhcpServer::new(DhcpConfig::default());
    assert!(server.lease().is_none());
}

fn refill_udp_checksum(frame: &mut [u8]) {
    let ip = Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).unwrap();
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    let start = ETHERNET_HEADER_LEN + usize::from(ip.header_len());
    let end = ETHERNET_HEADER_LEN + usize::from(ip.total_len());
    UdpPacket::new_unchecked(&mut frame[start..end]).fill_checksum(&src, &dst);
}
