//! The frame builders: TCP headers in place, ICMP errors and echo replies, UDP.

use std::net::SocketAddrV4;

use frontdesk::{
    Classified, Icmpv4Error, LinkAddrs, TcpFlags, TcpOptions, TcpSegmentV4,
    build_icmp_v4_echo_reply, build_icmp_v4_error, build_udp_v4, tcp_v4_headers_len,
    write_tcp_v4_headers,
};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetFrame, Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet, Icmpv4Repr, IpAddress,
    IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket,
};

use crate::classify::classify_once;
use crate::guest::guest_udp;
use crate::{DNS, GATEWAY, GUEST, REMOTE, gateway_mac, guest_mac, plan};

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
