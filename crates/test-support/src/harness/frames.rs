//! The frames a synthetic guest sends (Ethernet, IPv4, TCP, ARP, DHCP),
//! built with `smoltcp::wire`, and a parser of the frames slipway sends
//! back that checks every checksum on the way.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use nat_core::Plan;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, DhcpMessageType,
    DhcpPacket, DhcpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr,
    Icmpv4Packet, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr, NdiscRepr, TcpControl, TcpOption, TcpPacket, TcpRepr, TcpSeqNumber,
    UdpPacket, UdpRepr,
};

/// The guest's MAC address.
pub const GUEST_MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
/// The guest's IPv4 address in the default plan.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The gateway: host loopback, as the guest sees it.
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The DNS address of the default plan.
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

/// A guest IPv6 address in the default plan's network (as SLAAC or
/// DHCPv6 would give it).
pub const GUEST_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0x15);
/// The IPv6 gateway of the default plan: host loopback, as the guest sees it.
pub const GATEWAY_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 2);
/// The IPv6 DNS address of the default plan.
pub const DNS_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 3);
/// The guest's link-local address, from [`GUEST_MAC`] (modified EUI-64).
pub const GUEST_LL6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);
/// The all-routers multicast group a router solicitation goes to.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// Ethernet + IPv4 + TCP headers with the largest options field.
pub const MAX_HEADERS: usize = 14 + 20 + 60;

/// The gateway's MAC address in the default plan.
#[must_use]
pub fn gateway_mac() -> EthernetAddress {
    EthernetAddress(Plan::default().gateway_mac().0)
}

fn u32_of(seq: TcpSeqNumber) -> u32 {
    u32::from_ne_bytes(seq.0.to_ne_bytes())
}

fn seq_of(value: u32) -> TcpSeqNumber {
    TcpSeqNumber(i32::from_ne_bytes(value.to_ne_bytes()))
}

/// Writes an Ethernet/IPv4 frame from the guest at the start of `buf`
/// around an IP payload of `payload_len` bytes that `emit` writes, and
/// returns its length.
pub fn write_ipv4(
    buf: &mut [u8],
    eth_dst: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    payload_len: usize,
    emit: impl FnOnce(&mut [u8]),
) -> usize {
    let len = 14 + 20 + payload_len;
    let frame = &mut buf[..len];
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    EthernetRepr {
        src_addr: GUEST_MAC,
        dst_addr: eth_dst,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len,
        hop_limit: 64,
    };
    let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut packet, &ChecksumCapabilities::default());
    emit(packet.payload_mut());
    len
}

/// An Ethernet/IPv6 frame from [`GUEST_IP6`] to `dst` (via the gateway's
/// MAC address) around an upper-layer payload of `payload_len` bytes that
/// `emit` writes.
#[must_use]
pub fn ipv6_frame(
    dst: Ipv6Addr,
    protocol: IpProtocol,
    payload_len: usize,
    emit: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    ipv6_frame_from(GUEST_IP6, dst, protocol, payload_len, emit)
}

/// [`ipv6_frame`] from the guest's address `src`: a guest has several.
#[must_use]
pub fn ipv6_frame_from(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    protocol: IpProtocol,
    payload_len: usize,
    emit: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + 40 + payload_len];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: GUEST_MAC,
        dst_addr: gateway_mac(),
        ethertype: EthernetProtocol::Ipv6,
    }
    .emit(&mut eth);
    let mut packet = Ipv6Packet::new_unchecked(eth.payload_mut());
    Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len,
        hop_limit: 64,
    }
    .emit(&mut packet);
    emit(packet.payload_mut());
    frame
}

/// A UDP datagram over IPv6 from the guest's `src_port` to `dst` carrying
/// `payload`, with its checksum.
#[must_use]
pub fn udp6_frame(src_port: u16, dst: SocketAddrV6, payload: &[u8]) -> Vec<u8> {
    ipv6_frame(*dst.ip(), IpProtocol::Udp, 8 + payload.len(), |area| {
        UdpRepr {
            src_port,
            dst_port: dst.port(),
        }
        .emit(
            &mut UdpPacket::new_unchecked(area),
            &IpAddress::Ipv6(GUEST_IP6),
            &IpAddress::Ipv6(*dst.ip()),
            payload.len(),
            |p| p.copy_from_slice(payload),
            &ChecksumCapabilities::default(),
        );
    })
}

/// A TCP segment over IPv6 from the guest's `src_port` to `dst`: `repr`
/// with its ports set from them, checksummed over the IPv6 pseudo-header.
#[must_use]
pub fn tcp6_frame(src_port: u16, dst: SocketAddrV6, repr: &TcpRepr<'_>) -> Vec<u8> {
    tcp6_frame_from(SocketAddrV6::new(GUEST_IP6, src_port, 0, 0), dst, repr)
}

/// [`tcp6_frame`] from the guest's address and port `src`.
#[must_use]
pub fn tcp6_frame_from(src: SocketAddrV6, dst: SocketAddrV6, repr: &TcpRepr<'_>) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        ..*repr
    };
    ipv6_frame_from(
        *src.ip(),
        *dst.ip(),
        IpProtocol::Tcp,
        repr.buffer_len(),
        |area| emit_tcp(&repr, (*src.ip()).into(), (*dst.ip()).into(), area),
    )
}

/// Writes `repr` into the IP payload `area`, checksummed over the
/// pseudo-header of `src` and `dst`.
fn emit_tcp(repr: &TcpRepr<'_>, src: IpAddress, dst: IpAddress, area: &mut [u8]) {
    let checksums = ChecksumCapabilities::default();
    repr.emit(&mut TcpPacket::new_unchecked(area), &src, &dst, &checksums);
}

/// A TCP segment from the guest's `src_port` to `dst` over the IP version
/// of `dst`: `repr` with its ports set from them, checksummed.
#[must_use]
pub fn tcp_frame(src_port: u16, dst: SocketAddr, repr: &TcpRepr<'_>) -> Vec<u8> {
    let dst = match dst {
        SocketAddr::V6(dst) => return tcp6_frame(src_port, dst, repr),
        SocketAddr::V4(dst) => dst,
    };
    let repr = TcpRepr {
        src_port,
        dst_port: dst.port(),
        ..*repr
    };
    let mut frame = vec![0u8; 14 + 20 + repr.buffer_len()];
    write_tcp4(&mut frame, *dst.ip(), &repr);
    frame
}

/// Writes `repr` from [`GUEST_IP`] to `dst` at the start of `buf` as a
/// checksummed Ethernet/IPv4 frame, and returns its length.
fn write_tcp4(buf: &mut [u8], dst: Ipv4Addr, repr: &TcpRepr<'_>) -> usize {
    write_ipv4(
        buf,
        gateway_mac(),
        GUEST_IP,
        dst,
        IpProtocol::Tcp,
        repr.buffer_len(),
        |area| emit_tcp(repr, GUEST_IP.into(), dst.into(), area),
    )
}

/// A UDP datagram from the guest's `src_port` to `dst` over the IP version
/// of `dst`, carrying `payload`, with its checksum.
#[must_use]
pub fn udp_frame_to(src_port: u16, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    match dst {
        SocketAddr::V4(dst) => udp_frame(src_port, dst, payload),
        SocketAddr::V6(dst) => udp6_frame(src_port, dst, payload),
    }
}

/// A router solicitation from the guest's link-local address to all
/// routers, naming [`GUEST_MAC`], as a kernel sends one when its link comes
/// up.
#[must_use]
pub fn router_solicitation() -> Vec<u8> {
    let icmp = Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicit {
        lladdr: Some(GUEST_MAC.into()),
    });
    let ip = Ipv6Repr {
        src_addr: GUEST_LL6,
        dst_addr: ALL_ROUTERS,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: 255,
    };
    let mut frame = vec![0u8; 14 + ip.buffer_len() + icmp.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: GUEST_MAC,
        dst_addr: EthernetAddress([0x33, 0x33, 0, 0, 0, 2]),
        ethertype: EthernetProtocol::Ipv6,
    }
    .emit(&mut eth);
    let mut packet = Ipv6Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut packet);
    icmp.emit(
        &GUEST_LL6,
        &ALL_ROUTERS,
        &mut Icmpv6Packet::new_unchecked(packet.payload_mut()),
        &ChecksumCapabilities::default(),
    );
    frame
}

/// An ICMPv6 echo request from the guest to `dst`.
#[must_use]
pub fn echo6_frame(dst: Ipv6Addr, ident: u16, seq_no: u16, data: &[u8]) -> Vec<u8> {
    let repr = Icmpv6Repr::EchoRequest {
        ident,
        seq_no,
        data,
    };
    ipv6_frame(dst, IpProtocol::Icmpv6, repr.buffer_len(), |area| {
        repr.emit(
            &GUEST_IP6,
            &dst,
            &mut Icmpv6Packet::new_unchecked(area),
            &ChecksumCapabilities::default(),
        );
    })
}

/// A UDP datagram from the guest's `src_port` to `dst` carrying `payload`,
/// with its checksum.
#[must_use]
pub fn udp_frame(src_port: u16, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + 20 + 8 + payload.len()];
    write_ipv4(
        &mut frame,
        gateway_mac(),
        GUEST_IP,
        *dst.ip(),
        IpProtocol::Udp,
        8 + payload.len(),
        |area| {
            UdpRepr {
                src_port,
                dst_port: dst.port(),
            }
            .emit(
                &mut UdpPacket::new_unchecked(area),
                &IpAddress::Ipv4(GUEST_IP),
                &IpAddress::Ipv4(*dst.ip()),
                payload.len(),
                |p| p.copy_from_slice(payload),
                &ChecksumCapabilities::default(),
            );
        },
    );
    frame
}

/// The header of a TCP segment from the guest. The source address is
/// always [`GUEST_IP`].
#[derive(Clone, Copy, Debug)]
pub struct GuestSeg {
    /// The guest's port.
    pub src_port: u16,
    /// Where the segment goes, as the guest names it.
    pub dst: SocketAddrV4,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number; `Some` sets the ACK bit.
    pub ack: Option<u32>,
    /// SYN, FIN, RST, PSH or none.
    pub control: TcpControl,
    /// Window field as sent.
    pub window: u16,
    /// MSS option.
    pub mss: Option<u16>,
    /// Window scale option.
    pub wscale: Option<u8>,
}

impl GuestSeg {
    /// A SYN from `src_port` to `dst` with sequence number `iss`.
    #[must_use]
    pub fn syn(src_port: u16, dst: SocketAddrV4, iss: u32, wscale: Option<u8>) -> Self {
        Self {
            src_port,
            dst,
            seq: iss,
            ack: None,
            control: TcpControl::Syn,
            window: 65535,
            mss: Some(65480),
            wscale,
        }
    }

    /// A bare segment with `control`.
    #[must_use]
    pub fn bare(
        src_port: u16,
        dst: SocketAddrV4,
        seq: u32,
        ack: Option<u32>,
        control: TcpControl,
    ) -> Self {
        Self {
            src_port,
            dst,
            seq,
            ack,
            control,
            window: 65535,
            mss: None,
            wscale: None,
        }
    }

    /// Writes the frame of this segment carrying `payload` at the start of
    /// `buf` (at least [`MAX_HEADERS`] plus the payload long) and returns
    /// it.
    pub fn write<'b>(&self, buf: &'b mut [u8], payload: &[u8]) -> &'b [u8] {
        let repr = TcpRepr {
            src_port: self.src_port,
            dst_port: self.dst.port(),
            control: self.control,
            seq_number: seq_of(self.seq),
            ack_number: self.ack.map(seq_of),
            window_len: self.window,
            window_scale: self.wscale,
            max_seg_size: self.mss,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let len = write_tcp4(buf, *self.dst.ip(), &repr);
        &buf[..len]
    }

    /// The frame of this segment carrying `payload`, freshly allocated.
    #[must_use]
    pub fn frame(&self, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_HEADERS + payload.len()];
        let len = self.write(&mut buf, payload).len();
        buf.truncate(len);
        buf
    }
}

/// An ARP request from the guest for `target`, broadcast.
#[must_use]
pub fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: GUEST_MAC,
        source_protocol_addr: GUEST_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let mut frame = vec![0u8; 14 + repr.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: GUEST_MAC,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut eth);
    repr.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    frame
}

/// A DHCP message from a client without an address, broadcast from
/// 0.0.0.0:68 to 255.255.255.255:67, asking for the subnet mask, router,
/// DNS servers, interface MTU and lease time.
#[must_use]
pub fn dhcp_message(
    message_type: DhcpMessageType,
    xid: u32,
    requested_ip: Option<Ipv4Addr>,
    server_identifier: Option<Ipv4Addr>,
) -> Vec<u8> {
    let wanted = [1u8, 3, 6, 26, 51];
    let repr = DhcpRepr {
        message_type,
        transaction_id: xid,
        secs: 0,
        client_hardware_address: GUEST_MAC,
        client_ip: Ipv4Addr::UNSPECIFIED,
        your_ip: Ipv4Addr::UNSPECIFIED,
        server_ip: Ipv4Addr::UNSPECIFIED,
        router: None,
        subnet_mask: None,
        relay_agent_ip: Ipv4Addr::UNSPECIFIED,
        broadcast: false,
        requested_ip,
        client_identifier: Some(GUEST_MAC),
        server_identifier,
        parameter_request_list: Some(&wanted),
        dns_servers: None,
        max_size: None,
        lease_duration: None,
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let dhcp_len = repr.buffer_len();
    let mut frame = vec![0u8; 14 + 20 + 8 + dhcp_len];
    let (src, dst) = (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
    write_ipv4(
        &mut frame,
        EthernetAddress::BROADCAST,
        src,
        dst,
        IpProtocol::Udp,
        8 + dhcp_len,
        |area| {
            UdpRepr {
                src_port: DHCP_CLIENT_PORT,
                dst_port: DHCP_SERVER_PORT,
            }
            .emit(
                &mut UdpPacket::new_unchecked(area),
                &IpAddress::Ipv4(src),
                &IpAddress::Ipv4(dst),
                dhcp_len,
                |payload| {
                    repr.emit(&mut DhcpPacket::new_unchecked(payload))
                        .expect("DHCP message fits");
                },
                &ChecksumCapabilities::default(),
            );
        },
    );
    frame
}

/// Checks a DHCP reply of the default plan (address, router, DNS, MTU
/// 65520, lease) and returns its server identifier and address.
pub fn check_dhcp_reply(frame: &Frame, kind: DhcpMessageType, xid: u32) -> (Ipv4Addr, Ipv4Addr) {
    let Parsed::Udp { src, dst, payload } = frame.parse() else {
        panic!("not a UDP datagram: {frame:?}");
    };
    assert_eq!(src, SocketAddrV4::new(GATEWAY_IP, 67));
    assert_eq!(dst.port(), 68);
    let packet = DhcpPacket::new_checked(payload).expect("a DHCP packet");
    let repr = DhcpRepr::parse(&packet).expect("a DHCP message");
    assert_eq!(repr.message_type, kind);
    assert_eq!(repr.transaction_id, xid);
    assert_eq!(repr.client_hardware_address, GUEST_MAC);
    assert_eq!(repr.your_ip, GUEST_IP);
    assert_eq!(repr.router, Some(GATEWAY_IP));
    assert_eq!(repr.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
    let dns = repr.dns_servers.expect("DNS servers");
    assert_eq!(dns.as_slice(), [DNS_IP]);
    assert_eq!(repr.server_identifier, Some(GATEWAY_IP));
    assert_eq!(repr.lease_duration, Some(3600));
    let mtu = packet
        .options()
        .find(|option| option.kind == 26)
        .expect("an interface MTU option");
    assert_eq!(mtu.data, 65520u16.to_be_bytes());
    (GATEWAY_IP, repr.your_ip)
}

/// A TCP segment slipway sent to the guest, checksums verified.
#[derive(Clone, Copy, Debug)]
pub struct TcpView<'a> {
    /// The remote end as the guest sees it.
    pub src: SocketAddrV4,
    /// The guest's end.
    pub dst: SocketAddrV4,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number, when the ACK bit is set.
    pub ack: Option<u32>,
    /// SYN bit.
    pub syn: bool,
    /// FIN bit.
    pub fin: bool,
    /// RST bit.
    pub rst: bool,
    /// PSH bit.
    pub psh: bool,
    /// Window field as sent.
    pub window: u16,
    /// MSS option.
    pub mss: Option<u16>,
    /// Window scale option.
    pub wscale: Option<u8>,
    /// Payload.
    pub payload: &'a [u8],
}

/// A frame slipway sent to the guest, parsed.
#[derive(Clone, Copy, Debug)]
pub enum Parsed<'a> {
    /// An ARP message.
    Arp(ArpRepr),
    /// A TCP segment.
    Tcp(TcpView<'a>),
    /// A UDP datagram.
    Udp {
        /// Source.
        src: SocketAddrV4,
        /// Destination.
        dst: SocketAddrV4,
        /// Payload.
        payload: &'a [u8],
    },
    /// An ICMP message.
    Icmp {
        /// Source.
        src: Ipv4Addr,
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
    },
    /// Anything else.
    Other,
}

/// Parses a frame slipway sent to the guest, asserting that it comes from
/// the gateway's MAC address, goes to the guest (or is broadcast) and has
/// correct IPv4, TCP, UDP and ICMP checksums.
#[must_use]
pub fn parse(frame: &[u8]) -> Parsed<'_> {
    let eth = EthernetFrame::new_checked(frame).expect("an Ethernet frame");
    assert_eq!(
        eth.src_addr(),
        gateway_mac(),
        "frames come from the gateway"
    );
    assert!(
        eth.dst_addr() == GUEST_MAC || eth.dst_addr().is_broadcast(),
        "frame to {}",
        eth.dst_addr()
    );
    let payload = &frame[14..];
    match eth.ethertype() {
        EthernetProtocol::Arp => {
            let packet = ArpPacket::new_checked(payload).expect("an ARP packet");
            Parsed::Arp(ArpRepr::parse(&packet).expect("a valid ARP message"))
        }
        EthernetProtocol::Ipv4 => parse_ipv4(payload),
        _ => Parsed::Other,
    }
}

fn parse_ipv4(bytes: &[u8]) -> Parsed<'_> {
    let ip = Ipv4Packet::new_checked(bytes).expect("an IPv4 packet");
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    assert!(dst == GUEST_IP || dst.is_broadcast(), "datagram to {dst}");
    if ip.more_frags() || ip.frag_offset() != 0 {
        // A fragment's transport checksum covers the whole datagram.
        return Parsed::Other;
    }
    let total = usize::from(ip.total_len());
    let payload = &bytes[usize::from(ip.header_len())..total];
    let (s, d) = (IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
    match ip.next_header() {
        IpProtocol::Tcp => Parsed::Tcp(parse_tcp(src, dst, payload)),
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(payload).expect("a UDP datagram");
            assert!(udp.verify_checksum(&s, &d), "UDP checksum");
            let len = usize::from(udp.len());
            Parsed::Udp {
                src: SocketAddrV4::new(src, udp.src_port()),
                dst: SocketAddrV4::new(dst, udp.dst_port()),
                payload: &payload[8..len],
            }
        }
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(payload).expect("an ICMP message");
            assert!(icmp.verify_checksum(), "ICMP checksum");
            Parsed::Icmp {
                src,
                msg_type: u8::from(icmp.msg_type()),
                code: icmp.msg_code(),
            }
        }
        _ => Parsed::Other,
    }
}

fn parse_tcp(src: Ipv4Addr, dst: Ipv4Addr, bytes: &[u8]) -> TcpView<'_> {
    let tcp = TcpPacket::new_checked(bytes).expect("a TCP segment");
    assert!(
        tcp.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst)),
        "TCP checksum"
    );
    let (mut mss, mut wscale) = (None, None);
    let mut options = tcp.options();
    for _ in 0..40 {
        if options.is_empty() {
            break;
        }
        let (rest, option) = TcpOption::parse(options).expect("well-formed TCP options");
        match option {
            TcpOption::EndOfList => break,
            TcpOption::MaxSegmentSize(value) => mss = Some(value),
            TcpOption::WindowScale(value) => wscale = Some(value),
            _ => {}
        }
        options = rest;
    }
    TcpView {
        src: SocketAddrV4::new(src, tcp.src_port()),
        dst: SocketAddrV4::new(dst, tcp.dst_port()),
        seq: u32_of(tcp.seq_number()),
        ack: tcp.ack().then(|| u32_of(tcp.ack_number())),
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        psh: tcp.psh(),
        window: tcp.window_len(),
        mss,
        wscale,
        payload: &bytes[usize::from(tcp.header_len())..],
    }
}

/// The frames of a pcap capture as slipway writes it (little-endian, one
/// record per frame), in order.
///
/// # Panics
/// The capture does not start with the pcap magic or ends inside a record.
#[must_use]
pub fn pcap_frames(capture: &[u8]) -> Vec<&[u8]> {
    assert_eq!(capture.get(..4), Some(&0xa1b2_c3d4_u32.to_le_bytes()[..]));
    let mut frames = Vec::new();
    let mut at = 24;
    while let Some(record) = capture.get(at..at + 16) {
        let len = u32::from_le_bytes([record[8], record[9], record[10], record[11]]);
        let start = at + 16;
        let end = start + usize::try_from(len).expect("a record length");
        frames.push(capture.get(start..end).expect("a whole record"));
        at = end;
    }
    assert_eq!(at, capture.len().max(24), "whole records");
    frames
}

/// A packet of one transport protocol in a pcap capture, over either IP
/// version.
#[derive(Clone, Copy, Debug)]
pub struct Captured<'a> {
    /// Its IP source address.
    pub src: IpAddress,
    /// Its IP destination address.
    pub dst: IpAddress,
    /// The IP payload, as long as the IP header says.
    pub payload: &'a [u8],
    /// The length of the whole frame.
    pub frame_len: usize,
}

/// The packets of `protocol` in a pcap capture as slipway writes it, in
/// order; over IPv6 those whose fixed header names `protocol` (none of
/// the frames the tests capture has extension headers).
///
/// # Panics
/// The capture is not whole (see [`pcap_frames`]), or a frame of IPv4 or
/// IPv6 is shorter than its headers say.
#[must_use]
pub fn pcap_packets(capture: &[u8], protocol: IpProtocol) -> Vec<Captured<'_>> {
    let mut packets = Vec::new();
    for frame in pcap_frames(capture) {
        let eth = EthernetFrame::new_checked(frame).expect("an Ethernet frame");
        let (src, dst, next, payload) = match eth.ethertype() {
            EthernetProtocol::Ipv4 => {
                let ip = Ipv4Packet::new_checked(eth.payload()).expect("an IPv4 packet");
                let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
                (src, dst, ip.next_header(), ip.payload())
            }
            EthernetProtocol::Ipv6 => {
                let ip = Ipv6Packet::new_checked(eth.payload()).expect("an IPv6 packet");
                let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
                (src, dst, ip.next_header(), ip.payload())
            }
            _ => continue,
        };
        if next == protocol {
            packets.push(Captured {
                src,
                dst,
                payload,
                frame_len: frame.len(),
            });
        }
    }
    packets
}

/// A frame slipway sent to the guest, kept.
#[derive(Clone, Debug)]
pub struct Frame(pub Vec<u8>);

impl Frame {
    /// The frame parsed.
    #[must_use]
    pub fn parse(&self) -> Parsed<'_> {
        parse(&self.0)
    }

    /// The TCP segment, if it is one.
    #[must_use]
    pub fn tcp(&self) -> Option<TcpView<'_>> {
        match self.parse() {
            Parsed::Tcp(view) => Some(view),
            _ => None,
        }
    }

    /// The TCP segment, if it is one to guest port `port`.
    #[must_use]
    pub fn tcp_to(&self, port: u16) -> Option<TcpView<'_>> {
        self.tcp().filter(|view| view.dst.port() == port)
    }

    /// The ARP message, if it is one.
    #[must_use]
    pub fn arp(&self) -> Option<ArpRepr> {
        match self.parse() {
            Parsed::Arp(repr) => Some(repr),
            _ => None,
        }
    }
}
