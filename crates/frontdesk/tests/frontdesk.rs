//! Scenario tests of the Ethernet front desk: guest frames built with
//! `smoltcp::wire`, replies parsed back with it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use frontdesk::{
    Classified, DhcpConfig, DropReason, FrontDesk, Handled, Icmpv4Error, LinkAddrs, Outcome,
    TcpFlags, TcpOptions, TcpSegment, TcpSegmentV4, Transport, build_icmp_v4_echo_reply,
    build_icmp_v4_error, build_udp_v4, classify, ethernet_address, handle_arp, tcp_v4_headers_len,
    write_tcp_v4_headers,
};
use frontdesk::{Counters, DhcpServer};
use nat_core::Plan;
use proptest::prelude::*;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, DhcpMessageType, DhcpPacket, DhcpRepr, ETHERNET_HEADER_LEN,
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4DstUnreachable,
    Icmpv4Message, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, NdiscRepr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber, UdpPacket, UdpRepr,
};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn plan() -> Plan {
    Plan::default()
}

fn gateway_mac() -> EthernetAddress {
    ethernet_address(plan().gateway_mac())
}

fn guest_mac() -> EthernetAddress {
    ethernet_address(plan().guest_mac())
}

fn desk() -> FrontDesk {
    FrontDesk::new(plan(), DhcpConfig::default())
}

// ---------------------------------------------------------------- builders

/// An Ethernet frame whose payload `fill` writes.
fn ethernet(
    src: EthernetAddress,
    dst: EthernetAddress,
    ethertype: EthernetProtocol,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let mut frame = vec![0; ETHERNET_HEADER_LEN + payload_len];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype,
    }
    .emit(&mut eth);
    fill(eth.payload_mut());
    frame
}

fn arp(operation: ArpOperation, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: guest_mac(),
        source_protocol_addr: sender,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    ethernet(
        guest_mac(),
        EthernetAddress::BROADCAST,
        EthernetProtocol::Arp,
        repr.buffer_len(),
        |p| repr.emit(&mut ArpPacket::new_unchecked(p)),
    )
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    arp(ArpOperation::Request, GUEST, target)
}

/// An IPv4 frame from the guest MAC to `dst_mac`, whose payload `fill`
/// writes given the IP addresses.
fn ipv4(
    dst_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len,
        hop_limit: 64,
    };
    ethernet(
        guest_mac(),
        dst_mac,
        EthernetProtocol::Ipv4,
        ip.buffer_len() + payload_len,
        |p| {
            let mut packet = Ipv4Packet::new_unchecked(p);
            ip.emit(&mut packet, &ChecksumCapabilities::default());
            fill(packet.payload_mut());
        },
    )
}

fn udp_frame(
    dst_mac: EthernetAddress,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    data: &[u8],
) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    ipv4(
        dst_mac,
        *src.ip(),
        *dst.ip(),
        IpProtocol::Udp,
        8 + data.len(),
        |p| {
            udp.emit(
                &mut UdpPacket::new_unchecked(p),
                &IpAddress::Ipv4(*src.ip()),
                &IpAddress::Ipv4(*dst.ip()),
                data.len(),
                |payload| payload.copy_from_slice(data),
                &ChecksumCapabilities::default(),
            );
        },
    )
}

fn guest_udp(data: &[u8]) -> Vec<u8> {
    udp_frame(
        gateway_mac(),
        SocketAddrV4::new(GUEST, 40000),
        SocketAddrV4::new(REMOTE, 7),
        data,
    )
}

fn guest_tcp_syn() -> Vec<u8> {
    let repr = TcpRepr {
        src_port: 40001,
        dst_port: 80,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(1000),
        ack_number: None,
        window_len: 64240,
        window_scale: Some(7),
        max_seg_size: Some(1460),
        sack_permitted: true,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    ipv4(
        gateway_mac(),
        GUEST,
        REMOTE,
        IpProtocol::Tcp,
        repr.buffer_len(),
        |p| {
            repr.emit(
                &mut TcpPacket::new_unchecked(p),
                &IpAddress::Ipv4(GUEST),
                &IpAddress::Ipv4(REMOTE),
                &ChecksumCapabilities::default(),
            );
        },
    )
}

fn guest_ping() -> Vec<u8> {
    let repr = Icmpv4Repr::EchoRequest {
        ident: 0x1234,
        seq_no: 1,
        data: b"ping",
    };
    ipv4(
        gateway_mac(),
        GUEST,
        REMOTE,
        IpProtocol::Icmp,
        repr.buffer_len(),
        |p| {
            repr.emit(
                &mut Icmpv4Packet::new_unchecked(p),
                &ChecksumCapabilities::default(),
            )
        },
    )
}

/// A router solicitation to ff02::2, at the IPv6 multicast MAC address.
fn guest_router_solicitation() -> Vec<u8> {
    let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);
    let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
    let icmp = Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicit {
        lladdr: Some(guest_mac().into()),
    });
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: 255,
    };
    ethernet(
        guest_mac(),
        EthernetAddress([0x33, 0x33, 0, 0, 0, 2]),
        EthernetProtocol::Ipv6,
        ip.buffer_len() + icmp.buffer_len(),
        |p| {
            let mut packet = Ipv6Packet::new_unchecked(p);
            ip.emit(&mut packet);
            icmp.emit(
                &src,
                &dst,
                &mut Icmpv6Packet::new_unchecked(packet.payload_mut()),
                &ChecksumCapabilities::default(),
            );
        },
    )
}

/// What a DHCP client puts in a message.
#[derive(Clone, Copy)]
struct ClientMessage {
    kind: DhcpMessageType,
    xid: u32,
    broadcast: bool,
    ciaddr: Ipv4Addr,
    requested: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
}

impl ClientMessage {
    fn new(kind: DhcpMessageType) -> Self {
        Self {
            kind,
            xid: 0x1234_5678,
            broadcast: false,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            requested: None,
            server: None,
        }
    }

    fn frame(self) -> Vec<u8> {
        let repr = DhcpRepr {
            message_type: self.kind,
            transaction_id: self.xid,
            secs: 0,
            client_hardware_address: guest_mac(),
            client_ip: self.ciaddr,
            your_ip: Ipv4Addr::UNSPECIFIED,
            server_ip: Ipv4Addr::UNSPECIFIED,
            router: None,
            subnet_mask: None,
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            broadcast: self.broadcast,
            requested_ip: self.requested,
            client_identifier: Some(guest_mac()),
            server_identifier: self.server,
            parameter_request_list: Some(&[1, 3, 6, 26, 51, 54, 58, 59]),
            dns_servers: None,
            max_size: Some(1500),
            lease_duration: None,
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        };
        let mut payload = vec![0; repr.buffer_len()];
        repr.emit(&mut DhcpPacket::new_unchecked(&mut payload[..]))
            .unwrap();
        let (src, dst) = if self.ciaddr.is_unspecified() {
            (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)
        } else {
            (self.ciaddr, GATEWAY)
        };
        let dst_mac = if dst == Ipv4Addr::BROADCAST {
            EthernetAddress::BROADCAST
        } else {
            gateway_mac()
        };
        udp_frame(
            dst_mac,
            SocketAddrV4::new(src, 68),
            SocketAddrV4::new(dst, 67),
            &payload,
        )
    }
}

// ----------------------------------------------------------------- parsers

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

// --------------------------------------------------------------------- ARP

fn arp_reply_for(desk: &mut FrontDesk, frame: &[u8]) -> Option<ArpRepr> {
    let mut out = [0u8; 128];
    match desk.handle_frame(frame, Instant::now(), &mut out) {
        Outcome::Reply(len) => {
            let eth = EthernetFrame::new_checked(&out[..len]).unwrap();
            assert_eq!(eth.src_addr(), gateway_mac());
            assert_eq!(eth.dst_addr(), guest_mac());
            assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
            Some(ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap())
        }
        Outcome::Dropped(_) => None,
        other => panic!("unexpected outcome for ARP: {other:?}"),
    }
}

#[test]
fn arp_for_gateway_and_dns_answered_with_gateway_mac() {
    let mut desk = desk();
    for addr in [GATEWAY, DNS] {
        let reply = arp_reply_for(&mut desk, &arp_request(addr)).expect("answered");
        assert_eq!(
            reply,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: gateway_mac(),
                source_protocol_addr: addr,
                target_hardware_addr: guest_mac(),
                target_protocol_addr: GUEST,
            }
        );
    }
    assert_eq!(desk.counters().total_drops(), 0);
}

#[test]
fn arp_for_guest_own_address_is_not_answered() {
    let mut desk = desk();
    // A duplicate-address probe (RFC 5227) and a gratuitous request.
    let probe = arp(ArpOperation::Request, Ipv4Addr::UNSPECIFIED, GUEST);
    let announcement = arp(ArpOperation::Request, GUEST, GUEST);
    assert_eq!(arp_reply_for(&mut desk, &probe), None);
    assert_eq!(arp_reply_for(&mut desk, &announcement), None);
    assert_eq!(desk.counters().drops(DropReason::ArpNotServed), 2);
}

#[test]
fn arp_outside_the_plan_is_not_answered() {
    let mut desk = desk();
    for addr in [
        REMOTE,
        Ipv4Addr::new(10, 0, 2, 99),
        Ipv4Addr::new(10, 0, 3, 2),
        Ipv4Addr::new(10, 0, 2, 255),
    ] {
        assert_eq!(arp_reply_for(&mut desk, &arp_request(addr)), None, "{addr}");
    }
    assert_eq!(desk.counters().drops(DropReason::ArpNotServed), 4);
}

#[test]
fn arp_for_served_addresses_inside_the_network_only() {
    let mut desk = desk();
    let inside = Ipv4Addr::new(10, 0, 2, 4);
    desk.serve_v4(inside);
    desk.serve_v4(REMOTE);
    desk.serve_v4(GUEST);
    assert!(arp_reply_for(&mut desk, &arp_request(inside)).is_some());
    assert_eq!(arp_reply_for(&mut desk, &arp_request(REMOTE)), None);
    assert_eq!(arp_reply_for(&mut desk, &arp_request(GUEST)), None);
}

#[test]
fn arp_replies_and_gratuitous_replies_from_the_guest_are_counted() {
    let mut desk = desk();
    let gratuitous = arp(ArpOperation::Reply, GUEST, GUEST);
    let spoof = arp(ArpOperation::Reply, GATEWAY, GUEST);
    assert_eq!(arp_reply_for(&mut desk, &gratuitous), None);
    assert_eq!(arp_reply_for(&mut desk, &spoof), None);
    assert_eq!(desk.counters().drops(DropReason::ArpNotRequest), 2);
    // The gateway is still answered with the gateway's MAC address.
    let reply = arp_reply_for(&mut desk, &arp_request(GATEWAY)).unwrap();
    let ArpRepr::EthernetIpv4 {
        source_hardware_addr,
        ..
    } = reply
    else {
        panic!()
    };
    assert_eq!(source_hardware_addr, gateway_mac());
}

#[test]
fn malformed_arp_is_dropped_and_counted() {
    let mut frame = arp_request(GATEWAY);
    frame[ETHERNET_HEADER_LEN + 4] = 8; // hardware address length
    let mut counters = Counters::new();
    assert_eq!(
        classify(&frame, &plan(), &mut counters),
        Classified::Drop(DropReason::Malformed)
    );
    let truncated = &arp_request(GATEWAY)[..ETHERNET_HEADER_LEN + 10];
    assert_eq!(
        classify(truncated, &plan(), &mut counters),
        Classified::Drop(DropReason::Malformed)
    );
    assert_eq!(counters.drops(DropReason::Malformed), 2);
}

#[test]
fn arp_handler_alone_needs_room_for_its_reply() {
    let mut counters = Counters::new();
    let Classified::Arp(repr) = classify(&arp_request(GATEWAY), &plan(), &mut counters) else {
        panic!("not ARP")
    };
    let mut small = [0u8; 41];
    assert_eq!(
        handle_arp(&repr, &plan(), &[], &mut small, &mut counters),
        Handled::Dropped(DropReason::NoBufferSpace)
    );
    let mut enough = [0u8; 42];
    assert_eq!(
        handle_arp(&repr, &plan(), &[], &mut enough, &mut counters),
        Handled::Reply(42)
    );
}

// -------------------------------------------------------------------- DHCP

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

// --------------------------------------------------------- classification

fn classify_once(frame: &[u8]) -> (Classified<'_>, Counters) {
    let mut counters = Counters::new();
    let classified = classify(frame, &plan(), &mut counters);
    assert_eq!(counters.frames(), 1);
    assert_eq!(counters.bytes(), frame.len() as u64);
    (classified, counters)
}

fn assert_dropped(frame: &[u8], reason: DropReason) {
    let (classified, counters) = classify_once(frame);
    assert_eq!(classified, Classified::Drop(reason));
    assert_eq!(counters.drops(reason), 1);
    assert_eq!(counters.total_drops(), 1);
}

#[test]
fn valid_datagrams_pass_through() {
    let frame = guest_udp(b"hello");
    let (classified, _) = classify_once(&frame);
    let Classified::Ipv4(datagram) = classified else {
        panic!("{classified:?}")
    };
    assert_eq!(datagram.header.src_addr, GUEST);
    assert_eq!(
        datagram.transport,
        Transport::Udp {
            src_port: 40000,
            dst_port: 7,
            payload: b"hello"
        }
    );
    assert_eq!(datagram.packet.len(), 20 + 8 + 5);

    let frame = guest_tcp_syn();
    let (classified, _) = classify_once(&frame);
    let Classified::Ipv4(datagram) = classified else {
        panic!("{classified:?}")
    };
    // The header is read once, here, options as Linux reads them.
    assert_eq!(
        datagram.transport,
        Transport::Tcp(TcpSegment {
            src_port: 40001,
            dst_port: 80,
            seq: 1000,
            ack: None,
            flags: TcpFlags::SYN,
            window: 64240,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
            },
            payload: &[],
        })
    );
    let frame = guest_ping();
    let (classified, _) = classify_once(&frame);
    assert!(matches!(
        classified,
        Classified::Ipv4(d) if matches!(d.transport, Transport::Icmp { msg_type: 8, code: 0, .. })
    ));
    let frame = guest_router_solicitation();
    let (classified, counters) = classify_once(&frame);
    assert!(
        matches!(
            classified,
            Classified::Ipv6(d) if matches!(d.transport, Transport::Icmp { msg_type: 133, .. })
        ),
        "{classified:?}"
    );
    assert_eq!(counters.total_drops(), 0);
}

#[test]
fn ethernet_padding_is_ignored() {
    let mut frame = guest_udp(b"");
    frame.resize(60, 0xff);
    let (classified, _) = classify_once(&frame);
    let Classified::Ipv4(datagram) = classified else {
        panic!("{classified:?}")
    };
    assert_eq!(datagram.packet.len(), 28);
}

#[test]
fn frame_to_another_mac_is_dropped_and_counted() {
    let other = EthernetAddress([0x52, 0x54, 0, 0, 0, 9]);
    let frame = udp_frame(
        other,
        SocketAddrV4::new(GUEST, 1),
        SocketAddrV4::new(REMOTE, 2),
        b"x",
    );
    assert_dropped(&frame, DropReason::NotForUs);
    // IPv4 to an IPv6 multicast MAC, or to an IPv4 multicast MAC.
    let frame = udp_frame(
        EthernetAddress([0x33, 0x33, 0, 0, 0, 1]),
        SocketAddrV4::new(GUEST, 1),
        SocketAddrV4::new(REMOTE, 2),
        b"x",
    );
    assert_dropped(&frame, DropReason::NotForUs);
    let frame = udp_frame(
        EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 1]),
        SocketAddrV4::new(GUEST, 1),
        SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 1), 2),
        b"x",
    );
    assert_dropped(&frame, DropReason::NotForUs);
}

#[test]
fn group_source_mac_is_dropped() {
    let mut frame = guest_udp(b"x");
    frame[6] |= 1;
    assert_dropped(&frame, DropReason::BadSourceMac);
    let mut frame = guest_udp(b"x");
    frame[6..12].fill(0);
    assert_dropped(&frame, DropReason::BadSourceMac);
}

#[test]
fn other_ethertypes_are_dropped() {
    let mut frame = guest_udp(b"x");
    frame[12..14].copy_from_slice(&[0x81, 0x00]); // 802.1Q
    assert_dropped(&frame, DropReason::UnsupportedEtherType);
}

#[test]
fn bad_ipv4_header_checksum_is_dropped_and_counted() {
    let mut frame = guest_udp(b"payload");
    frame[ETHERNET_HEADER_LEN + 10] ^= 0x55;
    assert_dropped(&frame, DropReason::BadChecksum);
}

#[test]
fn bad_transport_checksums_are_dropped() {
    let mut frame = guest_udp(b"payload");
    let last = frame.len() - 1;
    frame[last] ^= 1;
    assert_dropped(&frame, DropReason::BadChecksum);
    let mut frame = guest_tcp_syn();
    frame[ETHERNET_HEADER_LEN + 20 + 4] ^= 1; // sequence number
    assert_dropped(&frame, DropReason::BadChecksum);
    let mut frame = guest_ping();
    let last = frame.len() - 1;
    frame[last] ^= 1;
    assert_dropped(&frame, DropReason::BadChecksum);
}

#[test]
fn zero_udp_checksum_is_accepted_over_ipv4() {
    let mut frame = guest_udp(b"payload");
    let at = ETHERNET_HEADER_LEN + 20 + 6;
    frame[at..at + 2].fill(0);
    let last = frame.len() - 1;
    frame[last] ^= 1; // would fail a checksum, but there is none
    let (classified, _) = classify_once(&frame);
    assert!(matches!(classified, Classified::Ipv4(_)), "{classified:?}");
}

fn set_ipv4_flags(frame: &mut [u8], more_frags: bool, offset: u16) {
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]);
    ip.set_more_frags(more_frags);
    ip.set_frag_offset(offset);
    ip.fill_checksum();
}

#[test]
fn ipv4_fragments_are_classified_for_reassembly_not_dropped() {
    let mut first = guest_udp(b"fragment");
    set_ipv4_flags(&mut first, true, 0);
    let (classified, counters) = classify_once(&first);
    let Classified::Ipv4Fragment(fragment) = classified else {
        panic!("{classified:?}");
    };
    assert_eq!((fragment.offset, fragment.more_frags), (0, true));
    assert_eq!(fragment.data.len(), 16, "UDP header and payload");
    assert_eq!(counters.total_drops(), 0);
    let mut last = guest_udp(b"fragment");
    set_ipv4_flags(&mut last, false, 64);
    let (classified, _) = classify_once(&last);
    assert!(
        matches!(classified, Classified::Ipv4Fragment(f) if f.offset == 64 && !f.more_frags),
        "{classified:?}"
    );
}

/// `frame` (one whole guest IPv4 frame) cut into fragments whose data is
/// `first` bytes, then the rest.
fn cut_in_two(frame: &[u8], first: usize) -> [Vec<u8>; 2] {
    let ip = Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).unwrap();
    let payload = ip.payload().to_vec();
    let header = &frame[..ETHERNET_HEADER_LEN + 20];
    let piece = |data: &[u8], offset: usize, more: bool| {
        let mut f = header.to_vec();
        f.extend_from_slice(data);
        let mut ip = Ipv4Packet::new_unchecked(&mut f[ETHERNET_HEADER_LEN..]);
        ip.set_total_len(u16::try_from(20 + data.len()).unwrap());
        ip.set_ident(42);
        ip.clear_flags();
        ip.set_more_frags(more);
        ip.set_frag_offset(u16::try_from(offset).unwrap());
        ip.fill_checksum();
        f
    };
    [
        piece(&payload[..first], 0, true),
        piece(&payload[first..], first, false),
    ]
}

#[test]
fn fragments_reassemble_into_the_datagram_the_front_desk_passes_on() {
    let mut desk = desk();
    let mut out = vec![0u8; 1514];
    let now = Instant::now();
    let whole = guest_udp(&[7u8; 100]);
    // The last fragment first.
    let [head, tail] = cut_in_two(&whole, 24);
    assert_eq!(desk.handle_frame(&tail, now, &mut out), Outcome::Consumed);
    assert_eq!(desk.reassembly().datagrams(), 1);
    assert!(desk.poll_timeout().is_some());
    assert_eq!(
        desk.handle_frame(&head, now, &mut out),
        Outcome::Reassembled
    );
    assert_eq!(desk.poll_timeout(), None);
    let frame = desk.take_reassembled().expect("the whole datagram");
    assert_eq!(desk.take_reassembled(), None, "taken once");
    let Outcome::Ipv4(datagram) = desk.handle_reassembled(&frame, &mut out) else {
        panic!("not passed on");
    };
    assert!(matches!(
        datagram.transport,
        Transport::Udp { src_port: 40000, payload, .. } if payload == [7u8; 100]
    ));
    // The first fragment's header (its id, no fragment fields), the whole payload.
    let ip = Ipv4Packet::new_checked(datagram.packet).unwrap();
    assert_eq!(
        (ip.ident(), ip.more_frags(), ip.frag_offset()),
        (42, false, 0)
    );
    assert_eq!(ip.payload(), &whole[ETHERNET_HEADER_LEN + 20..]);
    let counters = desk.counters();
    assert_eq!((counters.frames(), counters.reassembled()), (2, 1));
    assert_eq!(counters.total_drops(), 0);
}

#[test]
fn a_tiny_first_fragment_reassembles_and_the_checksum_is_checked_on_the_whole() {
    let mut desk = desk();
    let mut out = vec![0u8; 1514];
    let now = Instant::now();
    // 8 bytes: less than a TCP header.
    let whole = guest_tcp_syn();
    let [head, tail] = cut_in_two(&whole, 8);
    assert_eq!(desk.handle_frame(&head, now, &mut out), Outcome::Consumed);
    assert_eq!(
        desk.handle_frame(&tail, now, &mut out),
        Outcome::Reassembled
    );
    let frame = desk.take_reassembled().unwrap();
    assert!(matches!(
        desk.handle_reassembled(&frame, &mut out),
        Outcome::Ipv4(d) if matches!(d.transport, Transport::Tcp(_))
    ));
    // A bad UDP checksum shows only on the whole datagram.
    let mut bad = guest_udp(&[1u8; 40]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let [head, tail] = cut_in_two(&bad, 16);
    assert_eq!(desk.handle_frame(&head, now, &mut out), Outcome::Consumed);
    assert_eq!(
        desk.handle_frame(&tail, now, &mut out),
        Outcome::Reassembled
    );
    let frame = desk.take_reassembled().unwrap();
    assert_eq!(
        desk.handle_reassembled(&frame, &mut out),
        Outcome::Dropped(DropReason::BadChecksum)
    );
    assert_eq!(desk.counters().drops(DropReason::BadChecksum), 1);
}

#[test]
fn zero_ttl_is_dropped() {
    let mut frame = guest_udp(b"x");
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]);
    ip.set_hop_limit(0);
    ip.fill_checksum();
    assert_dropped(&frame, DropReason::TtlExpired);
}

#[test]
fn truncated_and_inconsistent_ipv4_is_malformed() {
    let frame = guest_udp(b"some payload");
    assert_dropped(&frame[..ETHERNET_HEADER_LEN + 19], DropReason::Malformed);
    assert_dropped(&frame[..frame.len() - 1], DropReason::Malformed);
    assert_dropped(&frame[..10], DropReason::Malformed);
    let mut bad_ihl = frame.clone();
    bad_ihl[ETHERNET_HEADER_LEN] = 0x44;
    assert_dropped(&bad_ihl, DropReason::Malformed);
    let mut short_udp_len = frame.clone();
    let at = ETHERNET_HEADER_LEN + 20 + 4;
    short_udp_len[at..at + 2].copy_from_slice(&4u16.to_be_bytes());
    assert_dropped(&short_udp_len, DropReason::Malformed);
}

#[test]
fn other_ipv4_protocols_are_dropped() {
    let frame = ipv4(gateway_mac(), GUEST, REMOTE, IpProtocol::Igmp, 8, |_| {});
    assert_dropped(&frame, DropReason::UnsupportedProtocol);
}

#[test]
fn ipv6_udp_without_checksum_is_dropped() {
    let src = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 15);
    let dst = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 3);
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: 9,
        hop_limit: 64,
    };
    let frame = ethernet(
        guest_mac(),
        gateway_mac(),
        EthernetProtocol::Ipv6,
        49,
        |p| {
            let mut packet = Ipv6Packet::new_unchecked(p);
            ip.emit(&mut packet);
            let mut udp = UdpPacket::new_unchecked(packet.payload_mut());
            udp.set_src_port(1);
            udp.set_dst_port(53);
            udp.set_len(9);
            udp.set_checksum(0);
        },
    );
    assert_dropped(&frame, DropReason::BadChecksum);
}

#[test]
fn disabled_family_is_dropped() {
    let v6_only = Plan::builder().disable_ipv4().build().unwrap();
    let mut counters = Counters::new();
    assert_eq!(
        classify(&guest_udp(b"x"), &v6_only, &mut counters),
        Classified::Drop(DropReason::FamilyDisabled)
    );
    assert_eq!(
        classify(&arp_request(GATEWAY), &v6_only, &mut counters),
        Classified::Drop(DropReason::FamilyDisabled)
    );
    assert_eq!(counters.drops(DropReason::FamilyDisabled), 2);
}

#[test]
fn guest_mac_is_learnt_from_accepted_frames() {
    let mut desk = desk();
    let other = EthernetAddress([0x02, 0, 0, 0, 0, 7]);
    let mut frame = guest_udp(b"x");
    frame[6..12].copy_from_slice(&other.0);
    let mut out = [0u8; 64];
    assert!(matches!(
        desk.handle_frame(&frame, Instant::now(), &mut out),
        Outcome::Ipv4(_)
    ));
    assert_eq!(desk.guest_mac(), other);
    assert_eq!(desk.link_to_guest().dst, other);
    // A dropped frame teaches nothing.
    let mut bad = guest_udp(b"x");
    bad[ETHERNET_HEADER_LEN + 10] ^= 1;
    desk.handle_frame(&bad, Instant::now(), &mut out);
    assert_eq!(desk.guest_mac(), other);
}

// ---------------------------------------------------------------- builders

#[test]
fn tcp_headers_built_in_place_verify() {
    let plan = plan();
    let options = TcpOptions {
        mss: Some(65480),
        window_scale: Some(7),
    };
    let headers = tcp_v4_headers_len(options);
    let payload: Vec<u8> = (0..=255).cycle().take(3000).collect();
    let mut buf = vec![0xcc; headers + payload.len() + 100];
    // The relay peeks host data straight into the payload area.
    buf[headers..headers + payload.len()].copy_from_slice(&payload);
    let segment = TcpSegmentV4 {
        link: LinkAddrs::to_guest(&plan),
        src: SocketAddrV4::new(REMOTE, 80),
        dst: SocketAddrV4::new(GUEST, 40001),
        seq: 0xffff_fff0,
        ack: 1001,
        flags: TcpFlags::SYN | TcpFlags::ACK,
        window: 65535,
        options,
    };
    let len = write_tcp_v4_headers(&mut buf, &segment, payload.len()).unwrap();
    assert_eq!(len, headers + payload.len());

    let eth = EthernetFrame::new_checked(&buf[..len]).unwrap();
    assert_eq!(
        (eth.src_addr(), eth.dst_addr()),
        (gateway_mac(), guest_mac())
    );
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    let ip_repr = Ipv4Repr::parse(&ip, &ChecksumCapabilities::default()).unwrap();
    assert_eq!((ip_repr.src_addr, ip_repr.dst_addr), (REMOTE, GUEST));
    assert_eq!(ip_repr.next_header, IpProtocol::Tcp);
    let (src, dst) = (IpAddress::Ipv4(REMOTE), IpAddress::Ipv4(GUEST));
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum(&src, &dst));
    let repr = TcpRepr::parse(&tcp, &src, &dst, &ChecksumCapabilities::default()).unwrap();
    assert_eq!(repr.control, TcpControl::Syn);
    assert_eq!(repr.seq_number, TcpSeqNumber(0xffff_fff0_u32 as i32));
    assert_eq!(repr.ack_number, Some(TcpSeqNumber(1001)));
    assert_eq!(repr.window_len, 65535);
    assert_eq!(repr.max_seg_size, Some(65480));
    assert_eq!(repr.window_scale, Some(7));
    assert_eq!(repr.payload, &payload[..]);

    // Without options, a plain ACK with a FIN.
    let bare = TcpSegmentV4 {
        options: TcpOptions::default(),
        flags: TcpFlags::ACK | TcpFlags::FIN,
        ..segment
    };
    let headers = tcp_v4_headers_len(bare.options);
    assert_eq!(headers, 54);
    let len = write_tcp_v4_headers(&mut buf, &bare, 0).unwrap();
    let ip = Ipv4Packet::new_checked(&buf[14..len]).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum(&src, &dst));
    assert!(tcp.fin() && tcp.ack() && !tcp.syn());
    // No room for the payload the caller claims.
    assert_eq!(write_tcp_v4_headers(&mut buf[..100], &bare, 100), None);
}

#[test]
fn icmp_dest_unreachable_quotes_header_and_eight_bytes() {
    let frame = guest_udp(b"a datagram with more than eight bytes");
    let (classified, _) = classify_once(&frame);
    let Classified::Ipv4(datagram) = classified else {
        panic!()
    };
    let mut buf = [0u8; 256];
    let link = LinkAddrs::to_guest(&plan());
    let error = Icmpv4Error::DstUnreachable(Icmpv4DstUnreachable::PortUnreachable);
    let len = build_icmp_v4_error(&mut buf, link, REMOTE, error, datagram.packet).unwrap();
    assert_eq!(len, 14 + 20 + 8 + 20 + 8);
    let eth = EthernetFrame::new_checked(&buf[..len]).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr(), ip.dst_addr()), (REMOTE, GUEST));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    // Verbatim: the guest's own header (ident, flags, length) and the UDP header.
    assert_eq!(&ip.payload()[8..], &datagram.packet[..28]);
    assert_eq!(icmp.msg_type(), Icmpv4Message::DstUnreachable);
    assert_eq!(
        icmp.msg_code(),
        u8::from(Icmpv4DstUnreachable::PortUnreachable)
    );
    // smoltcp's Icmpv4Repr::parse wants the quoted header's total length to
    // fit in the quote, which a faithful RFC 792 quote of a longer datagram
    // does not; read the quote by hand.
    let quoted = Ipv4Packet::new_unchecked(icmp.data());
    assert_eq!((quoted.src_addr(), quoted.dst_addr()), (GUEST, REMOTE));
    assert_eq!(quoted.next_header(), IpProtocol::Udp);
    assert_eq!(usize::from(quoted.total_len()), datagram.packet.len());
    let udp = UdpPacket::new_unchecked(&icmp.data()[20..]);
    assert_eq!((udp.src_port(), udp.dst_port()), (40000, 7));

    // Fragmentation needed carries the next-hop MTU.
    let error = Icmpv4Error::FragRequired { next_hop_mtu: 1400 };
    let len = build_icmp_v4_error(&mut buf, link, GATEWAY, error, datagram.packet).unwrap();
    let icmp = &buf[14 + 20..len];
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    assert_eq!(&icmp[6..8], &1400u16.to_be_bytes());
}

#[test]
fn icmp_error_quotes_ip_options_too() {
    // A datagram with a 4-byte option (NOP, NOP, NOP, END): IHL 6.
    let mut packet = vec![0u8; 24 + 12];
    packet[0] = 0x46;
    packet[2..4].copy_from_slice(&36u16.to_be_bytes());
    packet[8] = 64;
    packet[9] = 17;
    packet[12..16].copy_from_slice(&GUEST.octets());
    packet[16..20].copy_from_slice(&REMOTE.octets());
    packet[20..24].copy_from_slice(&[1, 1, 1, 0]);
    packet[24..36].copy_from_slice(b"0123456789ab");
    let mut buf = [0u8; 256];
    let link = LinkAddrs::to_guest(&plan());
    let error = Icmpv4Error::DstUnreachable(Icmpv4DstUnreachable::HostUnreachable);
    let len = build_icmp_v4_error(&mut buf, link, GATEWAY, error, &packet).unwrap();
    let icmp = &buf[34..len];
    assert_eq!(&icmp[8..], &packet[..32]);
}

#[test]
fn icmp_echo_reply_and_udp_build_with_valid_checksums() {
    let link = LinkAddrs::to_guest(&plan());
    let mut buf = [0u8; 256];
    let len = build_icmp_v4_echo_reply(&mut buf, link, REMOTE, GUEST, 0x1234, 9, b"pong").unwrap();
    let ip = Ipv4Packet::new_checked(&buf[14..len]).unwrap();
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).unwrap(),
        Icmpv4Repr::EchoReply {
            ident: 0x1234,
            seq_no: 9,
            data: b"pong"
        }
    );

    let src = SocketAddrV4::new(DNS, 53);
    let dst = SocketAddrV4::new(GUEST, 5353);
    let len = build_udp_v4(&mut buf, link, src, dst, b"answer").unwrap();
    assert_eq!(len, 14 + 20 + 8 + 6);
    let ip = Ipv4Packet::new_checked(&buf[14..len]).unwrap();
    assert!(ip.verify_checksum());
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(udp.verify_checksum(&IpAddress::Ipv4(DNS), &IpAddress::Ipv4(GUEST)));
    assert_eq!(udp.payload(), b"answer");
}

// ---------------------------------------------------------------- proptest

fn valid_frames() -> Vec<Vec<u8>> {
    let mut request = ClientMessage::new(DhcpMessageType::Request);
    request.requested = Some(GUEST);
    request.server = Some(GATEWAY);
    let mut inform = ClientMessage::new(DhcpMessageType::Inform);
    inform.ciaddr = GUEST;
    let mut release = ClientMessage::new(DhcpMessageType::Release);
    release.ciaddr = GUEST;
    vec![
        arp_request(GATEWAY),
        arp_request(GUEST),
        ClientMessage::new(DhcpMessageType::Discover).frame(),
        request.frame(),
        inform.frame(),
        release.frame(),
        guest_udp(b"hello"),
        guest_tcp_syn(),
        guest_ping(),
        guest_router_solicitation(),
    ]
}

/// Feeds `frame` to a front desk and checks the bookkeeping: one more frame
/// seen, one more drop exactly when the outcome is a drop, replies inside
/// the buffer and well-formed.
fn check_frame(desk: &mut FrontDesk, frame: &[u8], out: &mut [u8]) -> Result<(), TestCaseError> {
    let before = desk.counters().clone();
    let outcome = desk.handle_frame(frame, Instant::now(), out);
    let after = desk.counters();
    prop_assert_eq!(after.frames(), before.frames() + 1);
    let dropped = after.total_drops() - before.total_drops();
    // A fragment may end its whole datagram, or make room by giving up
    // others: then every frame they held is counted with it.
    let given_up = after.drops(DropReason::FragmentLimit) - before.drops(DropReason::FragmentLimit);
    match outcome {
        Outcome::Dropped(reason) if reason.name().starts_with("fragment_") => {
            prop_assert!(after.drops(reason) > before.drops(reason));
        }
        Outcome::Dropped(reason) => {
            prop_assert_eq!(dropped, 1);
            prop_assert_eq!(after.drops(reason), before.drops(reason) + 1);
        }
        Outcome::Consumed | Outcome::Reassembled => prop_assert_eq!(dropped, given_up),
        Outcome::Reply(len) => {
            prop_assert_eq!(dropped, 0);
            prop_assert!(len <= out.len());
            let eth = EthernetFrame::new_checked(&out[..len]);
            prop_assert!(eth.is_ok());
            prop_assert_eq!(eth.unwrap().src_addr(), gateway_mac());
        }
        Outcome::Ipv4(_) | Outcome::Ipv6(_) => prop_assert_eq!(dropped, 0),
    }
    Ok(())
}

/// Recomputes the IPv4 header checksum and the TCP, UDP or ICMP checksum
/// of an IPv4 frame, where its lengths allow.
fn refill_checksums(frame: &mut [u8]) {
    if frame.len() < ETHERNET_HEADER_LEN || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let ip_bytes = &mut frame[ETHERNET_HEADER_LEN..];
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut *ip_bytes) else {
        return;
    };
    ip.fill_checksum();
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    let protocol = ip.next_header();
    let range = usize::from(ip.header_len())..usize::from(ip.total_len());
    let l4 = &mut ip_bytes[range];
    match protocol {
        IpProtocol::Udp => {
            if let Ok(mut udp) = UdpPacket::new_checked(l4) {
                udp.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Tcp => {
            if let Ok(mut tcp) = TcpPacket::new_checked(l4) {
                tcp.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Icmp => {
            if let Ok(mut icmp) = Icmpv4Packet::new_checked(l4) {
                icmp.fill_checksum();
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_drops_are_counted(
        frame in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut desk = desk();
        let mut out = vec![0u8; 1024];
        check_frame(&mut desk, &frame, &mut out)?;
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_ethernet_header_never_panic(
        ethertype in prop_oneof![Just(0x0806u16), Just(0x0800), Just(0x86dd)],
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut frame = Vec::with_capacity(14 + body.len());
        frame.extend_from_slice(&gateway_mac().0);
        frame.extend_from_slice(&guest_mac().0);
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(&body);
        let mut desk = desk();
        let mut out = vec![0u8; 1024];
        check_frame(&mut desk, &frame, &mut out)?;
    }

    #[test]
    fn mutated_valid_frames_never_panic_and_drops_are_counted(
        which in 0usize..10,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        extra in proptest::collection::vec(any::<u8>(), 0..8),
        out_len in prop_oneof![Just(2048usize), 0usize..400],
        fix_checksums in any::<bool>(),
    ) {
        let mut frame = valid_frames().swap_remove(which);
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] ^= byte;
        }
        if let Some(cut) = cut {
            frame.truncate(cut.index(frame.len() + 1));
        }
        frame.extend_from_slice(&extra);
        if fix_checksums {
            // Let the mutation reach the parsers behind the checksums.
            refill_checksums(&mut frame);
        }
        let mut desk = desk();
        let mut out = vec![0u8; out_len];
        check_frame(&mut desk, &frame, &mut out)?;
        // Whatever state the first frame left, a second pass is as safe.
        check_frame(&mut desk, &frame, &mut out)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn mutated_dhcp_messages_with_good_checksums_never_panic(
        kind in prop_oneof![
            Just(DhcpMessageType::Discover),
            Just(DhcpMessageType::Request),
            Just(DhcpMessageType::Release),
            Just(DhcpMessageType::Decline),
            Just(DhcpMessageType::Inform),
        ],
        ciaddr in prop_oneof![Just(Ipv4Addr::UNSPECIFIED), Just(GUEST)],
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        options in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut message = ClientMessage::new(kind);
        message.ciaddr = ciaddr;
        message.requested = Some(GUEST);
        let mut frame = message.frame();
        // Mutate the DHCP message only, options area included, and grow it
        // with arbitrary option bytes; then make the lengths and checksums
        // consistent again so the DHCP parser sees it.
        let dhcp_start = ETHERNET_HEADER_LEN + 20 + 8;
        let dhcp_len = frame.len() - dhcp_start;
        for (at, byte) in flips {
            let i = dhcp_start + at.index(dhcp_len);
            frame[i] ^= byte;
        }
        frame.extend_from_slice(&options);
        let ip_len = u16::try_from(frame.len() - ETHERNET_HEADER_LEN).unwrap();
        Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]).set_total_len(ip_len);
        UdpPacket::new_unchecked(&mut frame[ETHERNET_HEADER_LEN + 20..]).set_len(ip_len - 20);
        refill_checksums(&mut frame);
        let mut desk = desk();
        let mut out = vec![0u8; 2048];
        check_frame(&mut desk, &frame, &mut out)?;
        check_frame(&mut desk, &frame, &mut out)?;
    }
}

#[test]
fn every_valid_frame_is_accepted_unmutated() {
    let mut desk = desk();
    let mut out = vec![0u8; 2048];
    for frame in valid_frames() {
        let outcome = desk.handle_frame(&frame, Instant::now(), &mut out);
        match outcome {
            Outcome::Dropped(DropReason::ArpNotServed) => {} // the guest's own address
            Outcome::Dropped(reason) => panic!("dropped a valid frame: {reason}"),
            _ => {}
        }
    }
    assert_eq!(desk.counters().total_drops(), 1);
}
