//! Frames a guest sends, built with `smoltcp::wire`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, DhcpMessageType, DhcpPacket, DhcpRepr, ETHERNET_HEADER_LEN,
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    NdiscRepr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

use crate::{GATEWAY, GUEST, REMOTE, gateway_mac, guest_mac};

/// An Ethernet frame whose payload `fill` writes.
pub(crate) fn ethernet(
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

pub(crate) fn arp(operation: ArpOperation, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
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

pub(crate) fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    arp(ArpOperation::Request, GUEST, target)
}

/// An IPv4 frame from the guest MAC to `dst_mac`, whose payload `fill`
/// writes given the IP addresses.
pub(crate) fn ipv4(
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

pub(crate) fn udp_frame(
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

pub(crate) fn guest_udp(data: &[u8]) -> Vec<u8> {
    udp_frame(
        gateway_mac(),
        SocketAddrV4::new(GUEST, 40000),
        SocketAddrV4::new(REMOTE, 7),
        data,
    )
}

pub(crate) fn guest_tcp_syn() -> Vec<u8> {
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

pub(crate) fn guest_ping() -> Vec<u8> {
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
pub(crate) fn guest_router_solicitation() -> Vec<u8> {
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
pub(crate) struct ClientMessage {
    pub(crate) kind: DhcpMessageType,
    pub(crate) xid: u32,
    pub(crate) broadcast: bool,
    pub(crate) ciaddr: Ipv4Addr,
    pub(crate) requested: Option<Ipv4Addr>,
    pub(crate) server: Option<Ipv4Addr>,
}

impl ClientMessage {
    pub(crate) fn new(kind: DhcpMessageType) -> Self {
        Self {
            kind,
            xid: 0x1234_5678,
            broadcast: false,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            requested: None,
            server: None,
        }
    }

    pub(crate) fn frame(self) -> Vec<u8> {
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
