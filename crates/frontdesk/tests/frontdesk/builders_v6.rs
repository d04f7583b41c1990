//! The frame builders over IPv6: TCP headers in place, UDP and ICMPv6,
//! checksums over the IPv6 pseudo-header, complete or partial.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use frontdesk::{
    ChecksumFill, Icmpv6Error, L4_START_V6, LinkAddrs, TCP_CHECKSUM_OFFSET, TcpFlags, TcpOptions,
    TcpSegmentV6, UDP_V6_HEADERS_LEN, build_icmpv6_echo_reply, build_icmpv6_error, build_udp,
    tcp_v6_headers_len, udp_headers_len, write_tcp_headers, write_tcp_headers_with,
};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv6DstUnreachable, Icmpv6Message, Icmpv6Packet, Icmpv6Repr,
    IpAddress, IpProtocol, Ipv6Packet, TcpPacket, TcpRepr, UdpPacket, checksum,
};

use crate::plan;

const GUEST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0x15);
const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 2);

fn segment(options: TcpOptions) -> TcpSegmentV6 {
    TcpSegmentV6 {
        link: LinkAddrs::to_guest(&plan()),
        src: SocketAddrV6::new(GATEWAY6, 80, 0, 0),
        dst: SocketAddrV6::new(GUEST6, 40001, 0, 0),
        seq: 7,
        ack: 1001,
        flags: TcpFlags::SYN | TcpFlags::ACK,
        window: 65535,
        options,
    }
}

#[test]
fn tcp_v6_headers_built_in_place_verify() {
    let options = TcpOptions {
        mss: Some(65460),
        window_scale: Some(7),
    };
    let headers = tcp_v6_headers_len(options);
    assert_eq!(headers, 14 + 40 + 20 + 8);
    let payload: Vec<u8> = (0..=255).cycle().take(3000).collect();
    let mut buf = vec![0xcc; headers + payload.len()];
    buf[headers..].copy_from_slice(&payload);
    let len = write_tcp_headers(&mut buf, &segment(options), payload.len()).unwrap();
    assert_eq!(len, buf.len());
    let eth = EthernetFrame::new_checked(&buf[..len]).unwrap();
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (GATEWAY6, GUEST6));
    assert_eq!(ip.next_header(), IpProtocol::Tcp);
    assert_eq!(usize::from(ip.payload_len()), len - 14 - 40);
    let (src, dst) = (IpAddress::Ipv6(GATEWAY6), IpAddress::Ipv6(GUEST6));
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum(&src, &dst));
    let repr = TcpRepr::parse(&tcp, &src, &dst, &ChecksumCapabilities::default()).unwrap();
    assert_eq!(repr.max_seg_size, Some(65460));
    assert_eq!(repr.window_scale, Some(7));
    assert_eq!(repr.payload, &payload[..]);
    assert_eq!(
        write_tcp_headers(&mut buf[..100], &segment(options), 100),
        None
    );
}

#[test]
fn tcp_v6_partial_checksum_is_the_pseudo_header_sum() {
    let options = TcpOptions::default();
    let headers = tcp_v6_headers_len(options);
    let mut buf = vec![0u8; headers + 10];
    let len =
        write_tcp_headers_with(&mut buf, &segment(options), 10, ChecksumFill::Partial).unwrap();
    let at = usize::from(L4_START_V6 + TCP_CHECKSUM_OFFSET);
    let field = u16::from_be_bytes([buf[at], buf[at + 1]]);
    let tcp_len = u32::try_from(len - usize::from(L4_START_V6)).unwrap();
    let expected = checksum::pseudo_header_v6(&GATEWAY6, &GUEST6, IpProtocol::Tcp, tcp_len);
    assert_eq!(field, expected);
}

#[test]
fn udp_v6_verifies_and_mixed_families_are_refused() {
    let src = SocketAddr::from((GATEWAY6, 53));
    let dst = SocketAddr::from((GUEST6, 5353));
    assert_eq!(udp_headers_len(src), UDP_V6_HEADERS_LEN);
    let link = LinkAddrs::to_guest(&plan());
    let mut buf = [0u8; 200];
    let len = build_udp(&mut buf, link, src, dst, b"answer").unwrap();
    assert_eq!(len, UDP_V6_HEADERS_LEN + 6);
    let ip = Ipv6Packet::new_checked(&buf[14..len]).unwrap();
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    let (s, d) = (IpAddress::Ipv6(GATEWAY6), IpAddress::Ipv6(GUEST6));
    assert!(udp.verify_checksum(&s, &d));
    assert_ne!(udp.checksum(), 0);
    assert_eq!(udp.payload(), b"answer");
    let v4 = SocketAddr::V4(SocketAddrV4::new([10, 0, 2, 15].into(), 1));
    assert_eq!(build_udp(&mut buf, link, src, v4, b"x"), None);
}

#[test]
fn icmpv6_echo_reply_and_admin_prohibited_verify() {
    let link = LinkAddrs::to_guest(&plan());
    let mut buf = [0u8; 300];
    let len = build_icmpv6_echo_reply(&mut buf, link, GATEWAY6, GUEST6, 7, 9, b"ping").unwrap();
    let ip = Ipv6Packet::new_checked(&buf[14..len]).unwrap();
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    let repr =
        Icmpv6Repr::parse(&GATEWAY6, &GUEST6, &icmp, &ChecksumCapabilities::default()).unwrap();
    assert_eq!(
        repr,
        Icmpv6Repr::EchoReply {
            ident: 7,
            seq_no: 9,
            data: b"ping"
        }
    );

    // An error about that very reply, as if the guest had sent it.
    let offending = buf[14..len].to_vec();
    let mut swapped = offending.clone();
    swapped[8..24].copy_from_slice(&GUEST6.octets());
    swapped[24..40].copy_from_slice(&GATEWAY6.octets());
    let error = Icmpv6Error::DstUnreachable(Icmpv6DstUnreachable::AdminProhibit);
    let mut out = [0u8; 300];
    let n = build_icmpv6_error(&mut out, link, GATEWAY6, error, &swapped).unwrap();
    let ip = Ipv6Packet::new_checked(&out[14..n]).unwrap();
    assert_eq!(ip.dst_addr(), GUEST6);
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(&GATEWAY6, &GUEST6));
    assert_eq!(icmp.msg_type(), Icmpv6Message::DstUnreachable);
    assert_eq!(icmp.msg_code(), 1);
    assert_eq!(&ip.payload()[8..], &swapped[..]);
}
