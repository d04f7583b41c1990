//! Building the frames the backend sends to the guest: UDP datagrams, ICMP
//! echo replies and errors, and TCP segments whose headers are written in
//! place in front of a payload that is already in the buffer.
//!
//! Every builder writes one whole Ethernet frame at the start of the
//! caller's buffer and returns its length, or `None` when the frame does not
//! fit in the buffer or in an IPv4 total length (an IPv6 payload length),
//! or when its source and destination are of different address families.
//! IPv4 headers carry no options, the don't-fragment flag and a TTL of
//! [`TTL`]; IPv6 headers carry no extension headers and a hop limit of
//! [`TTL`].

mod icmpv6;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::BitOr;

use nat_core::Plan;
use smoltcp::phy::{Checksum, ChecksumCapabilities};
use smoltcp::wire::{
    ETHERNET_HEADER_LEN, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr,
    IPV4_HEADER_LEN, IPV6_HEADER_LEN, Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet,
    Icmpv4Repr, Icmpv4TimeExceeded, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet,
    Ipv6Repr, TCP_HEADER_LEN, TcpOption, TcpPacket, TcpSeqNumber, UDP_HEADER_LEN, UdpPacket,
    UdpRepr, checksum,
};

use super::frame::ethernet_address;

pub use icmpv6::{Icmpv6Error, build_echo_reply, build_icmpv6_echo_reply, build_icmpv6_error};

/// The TTL of the IPv4 datagrams, and the hop limit of the IPv6 datagrams,
/// the builders write.
pub const TTL: u8 = 64;

/// Length of the fixed ICMP header (type, code, checksum, four more bytes).
const ICMP_HEADER_LEN: usize = 8;

/// How many bytes past the IP header an ICMP error quotes (RFC 792).
const ICMP_QUOTED_DATA_LEN: usize = 8;

/// How a builder writes a TCP or UDP checksum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChecksumFill {
    /// The whole checksum, over pseudo-header, header and payload.
    #[default]
    Complete,
    /// Only the pseudo-header sum, not complemented, as a kernel leaves a
    /// checksum for the NIC to complete: the frame's receiver (a guest told
    /// `NEEDS_CSUM` with [`L4_START_V4`] and [`TCP_CHECKSUM_OFFSET`] or
    /// [`UDP_CHECKSUM_OFFSET`]) completes it or takes it as verified. The
    /// payload is not read.
    Partial,
}

/// Where the transport header starts in an IPv4 frame the builders write
/// (they write no IP options): the start of a partial checksum's region.
pub const L4_START_V4: u16 = (ETHERNET_HEADER_LEN + IPV4_HEADER_LEN) as u16;

/// Where the transport header starts in an IPv6 frame the builders write
/// (they write no extension headers).
pub const L4_START_V6: u16 = (ETHERNET_HEADER_LEN + IPV6_HEADER_LEN) as u16;

/// Where the checksum field is in a TCP header.
pub const TCP_CHECKSUM_OFFSET: u16 = 16;

/// Where the checksum field is in a UDP header.
pub const UDP_CHECKSUM_OFFSET: u16 = 6;

/// The pseudo-header sum a partial checksum field holds, over the IPv4 or
/// IPv6 pseudo-header as the (same-family) addresses say.
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, protocol: IpProtocol, len: usize) -> u16 {
    // `len` fits an IP length field: the frame builders checked it.
    let len = u32::try_from(len).unwrap_or(0);
    checksum::pseudo_header(&IpAddress::from(src), &IpAddress::from(dst), protocol, len)
}

/// The source and destination MAC addresses of a frame to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkAddrs {
    /// Source: normally the gateway.
    pub src: EthernetAddress,
    /// Destination: the guest, or the broadcast address.
    pub dst: EthernetAddress,
}

impl LinkAddrs {
    /// From the gateway to the guest MAC address the plan names.
    #[must_use]
    pub fn to_guest(plan: &Plan) -> Self {
        Self::gateway_to(plan, ethernet_address(plan.guest_mac()))
    }

    /// From the gateway to `dst`: the guest's MAC address as learnt from
    /// its frames, or the broadcast address.
    #[must_use]
    pub fn gateway_to(plan: &Plan, dst: EthernetAddress) -> Self {
        Self {
            src: ethernet_address(plan.gateway_mac()),
            dst,
        }
    }
}

/// Writes the Ethernet and IP headers for a payload of `payload_len` bytes
/// from `src` to `dst` and returns the frame (headers and payload area) and
/// where the payload starts in it. `None` when the addresses are of
/// different families or the payload does not fit an IP length field.
fn ip_frame(
    buf: &mut [u8],
    link: LinkAddrs,
    (src, dst): (IpAddr, IpAddr),
    protocol: IpProtocol,
    payload_len: usize,
) -> Option<(&mut [u8], usize)> {
    let (ethertype, ip_header_len) = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (EthernetProtocol::Ipv4, IPV4_HEADER_LEN),
        (IpAddr::V6(_), IpAddr::V6(_)) => (EthernetProtocol::Ipv6, IPV6_HEADER_LEN),
        _ => return None,
    };
    // IPv4 counts its header in the total length, IPv6 only the payload.
    let length_field = match ethertype {
        EthernetProtocol::Ipv4 => IPV4_HEADER_LEN.checked_add(payload_len)?,
        _ => payload_len,
    };
    u16::try_from(length_field).ok()?;
    let l4_start = ETHERNET_HEADER_LEN + ip_header_len;
    let frame_len = l4_start.checked_add(payload_len)?;
    let frame = buf.get_mut(..frame_len)?;
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    EthernetRepr {
        src_addr: link.src,
        dst_addr: link.dst,
        ethertype,
    }
    .emit(&mut eth);
    let ip = eth.payload_mut();
    match (src, dst) {
        (IpAddr::V4(src_addr), IpAddr::V4(dst_addr)) => Ipv4Repr {
            src_addr,
            dst_addr,
            next_header: protocol,
            payload_len,
            hop_limit: TTL,
        }
        .emit(
            &mut Ipv4Packet::new_unchecked(ip),
            &ChecksumCapabilities::default(),
        ),
        (IpAddr::V6(src_addr), IpAddr::V6(dst_addr)) => Ipv6Repr {
            src_addr,
            dst_addr,
            next_header: protocol,
            payload_len,
            hop_limit: TTL,
        }
        .emit(&mut Ipv6Packet::new_unchecked(ip)),
        _ => return None,
    }
    Some((frame, l4_start))
}

/// Writes a UDP datagram from `src` to `dst` carrying `payload`, with its
/// checksum. Returns the frame length.
pub fn build_udp_v4(
    buf: &mut [u8],
    link: LinkAddrs,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) -> Option<usize> {
    build_udp(buf, link, src.into(), dst.into(), payload)
}

/// Writes a UDP datagram from `src` to `dst` (both IPv4 or both IPv6)
/// carrying `payload`, with its checksum. Returns the frame length.
pub fn build_udp(
    buf: &mut [u8],
    link: LinkAddrs,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) -> Option<usize> {
    let copy = |area: &mut [u8]| {
        area.copy_from_slice(payload);
        Some(())
    };
    build_udp_with(
        buf,
        link,
        (src, dst),
        payload.len(),
        ChecksumFill::Complete,
        copy,
    )
}

/// Bytes in front of a UDP payload in an IPv4 frame: Ethernet, IPv4
/// (no options) and UDP headers.
pub const UDP_V4_HEADERS_LEN: usize = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN;

/// Bytes in front of a UDP payload in an IPv6 frame: Ethernet, IPv6 (no
/// extension headers) and UDP headers.
pub const UDP_V6_HEADERS_LEN: usize = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + UDP_HEADER_LEN;

/// Bytes in front of a UDP payload from `src` in a frame the builders write.
#[must_use]
pub fn udp_headers_len(src: SocketAddr) -> usize {
    match src {
        SocketAddr::V4(_) => UDP_V4_HEADERS_LEN,
        SocketAddr::V6(_) => UDP_V6_HEADERS_LEN,
    }
}

/// Writes the headers of a UDP datagram whose `payload_len`-byte payload
/// already sits at `buf[UDP_V4_HEADERS_LEN..]` (received there straight from
/// a host socket), with the checksum over it. Returns the frame length.
pub fn write_udp_v4_headers(
    buf: &mut [u8],
    link: LinkAddrs,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload_len: usize,
) -> Option<usize> {
    write_udp_v4_headers_with(buf, link, src, dst, payload_len, ChecksumFill::Complete)
}

/// [`write_udp_v4_headers`] with the checksum written as `checksum` says.
pub fn write_udp_v4_headers_with(
    buf: &mut [u8],
    link: LinkAddrs,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload_len: usize,
    checksum: ChecksumFill,
) -> Option<usize> {
    write_udp_headers_with(buf, link, src.into(), dst.into(), payload_len, checksum)
}

/// Writes the headers of a UDP datagram from `src` to `dst` (both IPv4 or
/// both IPv6) whose `payload_len`-byte payload already sits at
/// `buf[udp_headers_len(src)..]`, with the checksum as `checksum` says.
/// Returns the frame length.
pub fn write_udp_headers_with(
    buf: &mut [u8],
    link: LinkAddrs,
    src: SocketAddr,
    dst: SocketAddr,
    payload_len: usize,
    checksum: ChecksumFill,
) -> Option<usize> {
    build_udp_with(buf, link, (src, dst), payload_len, checksum, |_| Some(()))
}

/// [`build_udp_with`] between IPv4 addresses.
pub(crate) fn build_udp_v4_with(
    buf: &mut [u8],
    link: LinkAddrs,
    (src, dst): (SocketAddrV4, SocketAddrV4),
    payload_len: usize,
    checksum: ChecksumFill,
    fill: impl FnOnce(&mut [u8]) -> Option<()>,
) -> Option<usize> {
    build_udp_with(
        buf,
        link,
        (src.into(), dst.into()),
        payload_len,
        checksum,
        fill,
    )
}

/// Writes a UDP datagram from `src` to `dst` whose `payload_len`-byte
/// payload `fill` writes in place; `fill` may refuse with `None`. Returns
/// the frame length.
fn build_udp_with(
    buf: &mut [u8],
    link: LinkAddrs,
    (src, dst): (SocketAddr, SocketAddr),
    payload_len: usize,
    checksum: ChecksumFill,
    fill: impl FnOnce(&mut [u8]) -> Option<()>,
) -> Option<usize> {
    let udp_len = UDP_HEADER_LEN.checked_add(payload_len)?;
    let ips = (src.ip(), dst.ip());
    let (frame, l4_start) = ip_frame(buf, link, ips, IpProtocol::Udp, udp_len)?;
    let frame_len = frame.len();
    let udp = frame.get_mut(l4_start..)?;
    fill(udp.get_mut(UDP_HEADER_LEN..)?)?;
    let mut caps = ChecksumCapabilities::default();
    if checksum == ChecksumFill::Partial {
        caps.udp = Checksum::None;
    }
    let mut packet = UdpPacket::new_unchecked(udp);
    UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    }
    .emit(
        &mut packet,
        &IpAddress::from(src.ip()),
        &IpAddress::from(dst.ip()),
        payload_len,
        |_| {},
        &caps,
    );
    if checksum == ChecksumFill::Partial {
        packet.set_checksum(pseudo_header_sum(
            src.ip(),
            dst.ip(),
            IpProtocol::Udp,
            udp_len,
        ));
    }
    Some(frame_len)
}

/// Writes an ICMP echo reply from `src` to `dst` with the request's
/// identifier, sequence number and data. Returns the frame length.
pub fn build_icmp_v4_echo_reply(
    buf: &mut [u8],
    link: LinkAddrs,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    seq_no: u16,
    data: &[u8],
) -> Option<usize> {
    let repr = Icmpv4Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    let ips = (src.into(), dst.into());
    let (frame, l4_start) = ip_frame(buf, link, ips, IpProtocol::Icmp, repr.buffer_len())?;
    let frame_len = frame.len();
    let icmp = frame.get_mut(l4_start..)?;
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(icmp),
        &ChecksumCapabilities::default(),
    );
    Some(frame_len)
}

/// An ICMP error to send about a datagram from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icmpv4Error {
    /// Destination unreachable with the given code. For code 4
    /// (fragmentation needed) prefer [`Icmpv4Error::FragRequired`], which
    /// carries the next-hop MTU.
    DstUnreachable(Icmpv4DstUnreachable),
    /// Destination unreachable, fragmentation needed and DF set, with the
    /// next-hop MTU (RFC 1191).
    FragRequired {
        /// The MTU of the next hop.
        next_hop_mtu: u16,
    },
    /// Time exceeded with the given code.
    TimeExceeded(Icmpv4TimeExceeded),
}

impl Icmpv4Error {
    /// Type, code and the four bytes after the checksum.
    fn header(self) -> (Icmpv4Message, u8, [u8; 4]) {
        match self {
            Icmpv4Error::DstUnreachable(reason) => {
                (Icmpv4Message::DstUnreachable, reason.into(), [0; 4])
            }
            Icmpv4Error::FragRequired { next_hop_mtu } => {
                let [hi, lo] = next_hop_mtu.to_be_bytes();
                (
                    Icmpv4Message::DstUnreachable,
                    Icmpv4DstUnreachable::FragRequired.into(),
                    [0, 0, hi, lo],
                )
            }
            Icmpv4Error::TimeExceeded(reason) => {
                (Icmpv4Message::TimeExceeded, reason.into(), [0; 4])
            }
        }
    }
}

/// Writes an ICMP error from `src` about `offending`, a datagram the guest
/// sent (at least its IPv4 header; more is fine). The error goes to the
/// offending datagram's source and quotes its header, options included,
/// and the first eight bytes of its payload verbatim (RFC 792). Returns the
/// frame length.
///
/// Returns `None`, as RFC 1812 section 4.3.2.7 requires, when the offending
/// datagram is itself an ICMP error (or too short to tell), is a non-first
/// fragment, or has a source that is not a unicast address or a destination
/// that is a multicast or the limited broadcast address; and when the
/// offending bytes do not start with a plausible IPv4 header.
pub fn build_icmp_v4_error(
    buf: &mut [u8],
    link: LinkAddrs,
    src: Ipv4Addr,
    error: Icmpv4Error,
    offending: &[u8],
) -> Option<usize> {
    let quoted = quotable(offending)?;
    let orig = Ipv4Packet::new_unchecked(quoted);
    let icmp_len = ICMP_HEADER_LEN.checked_add(quoted.len())?;
    let ips = (src.into(), orig.src_addr().into());
    let (frame, l4_start) = ip_frame(buf, link, ips, IpProtocol::Icmp, icmp_len)?;
    let frame_len = frame.len();
    let icmp = frame.get_mut(l4_start..)?;
    let (msg_type, code, rest) = error.header();
    icmp.get_mut(4..ICMP_HEADER_LEN)?.copy_from_slice(&rest);
    icmp.get_mut(ICMP_HEADER_LEN..)?.copy_from_slice(quoted);
    let mut packet = Icmpv4Packet::new_unchecked(icmp);
    packet.set_msg_type(msg_type);
    packet.set_msg_code(code);
    packet.fill_checksum();
    Some(frame_len)
}

/// The prefix of `offending` an ICMP error quotes, or `None` when no error
/// may be sent about it.
fn quotable(offending: &[u8]) -> Option<&[u8]> {
    let first = *offending.first()?;
    let header_len = usize::from(first & 0x0f).checked_mul(4)?;
    if first >> 4 != 4 || header_len < IPV4_HEADER_LEN || offending.len() < header_len {
        return None;
    }
    let orig = Ipv4Packet::new_unchecked(offending);
    let source = orig.src_addr();
    let dest = orig.dst_addr();
    if orig.frag_offset() != 0
        || source.is_unspecified()
        || source.is_broadcast()
        || source.is_multicast()
        || source.is_loopback()
        || dest.is_multicast()
        || dest.is_broadcast()
    {
        return None;
    }
    if orig.next_header() == IpProtocol::Icmp {
        let msg_type = Icmpv4Message::from(*offending.get(header_len)?);
        let is_query = matches!(
            msg_type,
            Icmpv4Message::EchoRequest
                | Icmpv4Message::EchoReply
                | Icmpv4Message::Timestamp
                | Icmpv4Message::TimestampReply
                | Icmpv4Message::RouterSolicit
                | Icmpv4Message::RouterAdvert
        );
        if !is_query {
            return None;
        }
    }
    let end = header_len
        .checked_add(ICMP_QUOTED_DATA_LEN)?
        .min(offending.len());
    offending.get(..end)
}

/// The TCP flags a segment carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(u8);

impl TcpFlags {
    /// No flag.
    pub const NONE: TcpFlags = TcpFlags(0);
    /// FIN: no more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN: synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST: reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH: push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK: the acknowledgment number is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);

    /// Whether every flag of `other` is set in `self`.
    #[must_use]
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags as the low byte of the TCP flags field.
    #[must_use]
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The flags of this type (FIN to ACK) that the low byte of a TCP flags
    /// field sets; URG, ECE and CWR are left out.
    pub(crate) fn from_wire(byte: u8) -> TcpFlags {
        TcpFlags(byte & 0x1f)
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;

    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

/// The TCP options a segment carries: those a SYN or SYN-ACK negotiates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size (RFC 9293).
    pub mss: Option<u16>,
    /// Window scale shift count (RFC 7323); written after a NOP so that it
    /// ends on a four-byte boundary.
    pub window_scale: Option<u8>,
}

impl TcpOptions {
    /// Length of the options in the TCP header: a multiple of four.
    #[must_use]
    pub fn len(&self) -> usize {
        let mss = if self.mss.is_some() { 4 } else { 0 };
        let ws = if self.window_scale.is_some() { 4 } else { 0 };
        mss + ws
    }

    /// Whether there are no options.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn emit(&self, mut area: &mut [u8]) {
        if let Some(mss) = self.mss {
            area = TcpOption::MaxSegmentSize(mss).emit(area);
        }
        if let Some(shift) = self.window_scale {
            area = TcpOption::NoOperation.emit(area);
            TcpOption::WindowScale(shift).emit(area);
        }
    }
}

/// The header fields of a TCP segment to the guest, `A` its socket address
/// type ([`SocketAddrV4`], [`SocketAddrV6`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboundTcpSegment<A> {
    /// Ethernet addresses.
    pub link: LinkAddrs,
    /// Source address and port (the remote end as the guest sees it).
    pub src: A,
    /// Destination address and port (the guest's end).
    pub dst: A,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (written as is; meaningful with
    /// [`TcpFlags::ACK`]).
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Window, already scaled down by the shift in effect.
    pub window: u16,
    /// Options.
    pub options: TcpOptions,
}

/// A TCP segment to the guest over IPv4.
pub type TcpSegmentV4 = OutboundTcpSegment<SocketAddrV4>;

/// A TCP segment to the guest over IPv6.
pub type TcpSegmentV6 = OutboundTcpSegment<SocketAddrV6>;

/// Length of the Ethernet, IPv4 and TCP headers of a segment with
/// `options`: where its payload starts in the frame.
#[must_use]
pub fn tcp_v4_headers_len(options: TcpOptions) -> usize {
    ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + TCP_HEADER_LEN + options.len()
}

/// Length of the Ethernet, IPv6 and TCP headers of a segment with
/// `options`: where its payload starts in the frame.
#[must_use]
pub fn tcp_v6_headers_len(options: TcpOptions) -> usize {
    ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + TCP_HEADER_LEN + options.len()
}

/// Length of the Ethernet, IP and TCP headers of a segment from `src` with
/// `options`: [`tcp_v4_headers_len`] or [`tcp_v6_headers_len`] as its
/// family says.
#[must_use]
pub fn tcp_headers_len(src: SocketAddr, options: TcpOptions) -> usize {
    match src {
        SocketAddr::V4(_) => tcp_v4_headers_len(options),
        SocketAddr::V6(_) => tcp_v6_headers_len(options),
    }
}

/// Writes the Ethernet, IP and TCP headers of `segment` at the start of
/// `buf`, in front of the `payload_len` bytes already at
/// `buf[tcp_v4_headers_len(segment.options)..]` (`tcp_v6_headers_len` for
/// IPv6), and the TCP checksum over headers and payload. Returns the frame
/// length.
///
/// The payload is read, never moved: a relay peeks host data straight into
/// that area and then calls this.
pub fn write_tcp_headers<A: Into<SocketAddr> + Copy>(
    buf: &mut [u8],
    segment: &OutboundTcpSegment<A>,
    payload_len: usize,
) -> Option<usize> {
    write_tcp_headers_with(buf, segment, payload_len, ChecksumFill::Complete)
}

/// [`write_tcp_headers`] over IPv4.
pub fn write_tcp_v4_headers(
    buf: &mut [u8],
    segment: &TcpSegmentV4,
    payload_len: usize,
) -> Option<usize> {
    write_tcp_v4_headers_with(buf, segment, payload_len, ChecksumFill::Complete)
}

/// [`write_tcp_v4_headers`] with the checksum written as `checksum` says:
/// with [`ChecksumFill::Partial`] the payload is not read at all.
pub fn write_tcp_v4_headers_with(
    buf: &mut [u8],
    segment: &TcpSegmentV4,
    payload_len: usize,
    checksum: ChecksumFill,
) -> Option<usize> {
    write_tcp_headers_with(buf, segment, payload_len, checksum)
}

/// [`write_tcp_headers`] with the checksum written as `checksum` says: with
/// [`ChecksumFill::Partial`] the payload is not read at all.
pub fn write_tcp_headers_with<A: Into<SocketAddr> + Copy>(
    buf: &mut [u8],
    segment: &OutboundTcpSegment<A>,
    payload_len: usize,
    checksum: ChecksumFill,
) -> Option<usize> {
    let tcp_header_len = TCP_HEADER_LEN + segment.options.len();
    let tcp_len = tcp_header_len.checked_add(payload_len)?;
    let (src_sock, dst_sock): (SocketAddr, SocketAddr) = (segment.src.into(), segment.dst.into());
    let (src, dst) = (src_sock.ip(), dst_sock.ip());
    let (frame, l4_start) = ip_frame(buf, segment.link, (src, dst), IpProtocol::Tcp, tcp_len)?;
    let frame_len = frame.len();
    let tcp = frame.get_mut(l4_start..)?;
    let mut packet = TcpPacket::new_unchecked(tcp);
    packet.set_src_port(src_sock.port());
    packet.set_dst_port(dst_sock.port());
    packet.set_seq_number(TcpSeqNumber(i32::from_ne_bytes(segment.seq.to_ne_bytes())));
    packet.set_ack_number(TcpSeqNumber(i32::from_ne_bytes(segment.ack.to_ne_bytes())));
    packet.set_header_len(u8::try_from(tcp_header_len).ok()?);
    packet.clear_flags();
    let flags = segment.flags;
    packet.set_fin(flags.contains(TcpFlags::FIN));
    packet.set_syn(flags.contains(TcpFlags::SYN));
    packet.set_rst(flags.contains(TcpFlags::RST));
    packet.set_psh(flags.contains(TcpFlags::PSH));
    packet.set_ack(flags.contains(TcpFlags::ACK));
    packet.set_window_len(segment.window);
    packet.set_urgent_at(0);
    segment.options.emit(packet.options_mut());
    match checksum {
        ChecksumFill::Complete => {
            packet.fill_checksum(&IpAddress::from(src), &IpAddress::from(dst));
        }
        ChecksumFill::Partial => {
            packet.set_checksum(pseudo_header_sum(src, dst, IpProtocol::Tcp, tcp_len));
        }
    }
    Some(frame_len)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn options_pad_to_four_bytes() {
        let both = TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
        };
        assert_eq!(both.len(), 8);
        assert_eq!(tcp_v4_headers_len(both), 14 + 20 + 20 + 8);
        let mut area = [0xaa; 8];
        both.emit(&mut area);
        assert_eq!(area, [2, 4, 0x05, 0xb4, 1, 3, 3, 7]);
        assert!(TcpOptions::default().is_empty());
    }

    #[test]
    fn udp_too_large_for_ipv4_is_refused() {
        let plan = Plan::default();
        let mut buf = vec![0; 70_000];
        let payload = vec![0; 65_535 - 28 + 1];
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 2), 1);
        let dst = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 15), 2);
        let link = LinkAddrs::to_guest(&plan);
        assert_eq!(build_udp_v4(&mut buf, link, src, dst, &payload), None);
        let fits = &payload[1..];
        assert_eq!(
            build_udp_v4(&mut buf, link, src, dst, fits),
            Some(14 + 65_535)
        );
    }

    #[test]
    fn small_buffer_is_refused() {
        let plan = Plan::default();
        let mut buf = [0; 40];
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 2), 1);
        let dst = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 15), 2);
        let link = LinkAddrs::to_guest(&plan);
        assert_eq!(build_udp_v4(&mut buf, link, src, dst, b"x"), None);
    }

    #[test]
    fn no_error_about_an_icmp_error() {
        let plan = Plan::default();
        let link = LinkAddrs::to_guest(&plan);
        let mut offending = [0u8; 28];
        let mut ip = Ipv4Packet::new_unchecked(&mut offending[..]);
        Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 2, 15),
            dst_addr: Ipv4Addr::new(192, 0, 2, 1),
            next_header: IpProtocol::Icmp,
            payload_len: 8,
            hop_limit: 64,
        }
        .emit(&mut ip, &ChecksumCapabilities::default());
        offending[20] = 3; // destination unreachable
        let mut buf = [0; 128];
        let error = Icmpv4Error::DstUnreachable(Icmpv4DstUnreachable::PortUnreachable);
        let gw = Ipv4Addr::new(10, 0, 2, 2);
        assert_eq!(
            build_icmp_v4_error(&mut buf, link, gw, error, &offending),
            None
        );
        offending[20] = 8; // echo request
        assert!(build_icmp_v4_error(&mut buf, link, gw, error, &offending).is_some());
        assert_eq!(build_icmp_v4_error(&mut buf, link, gw, error, &[]), None);
        assert_eq!(
            build_icmp_v4_error(&mut buf, link, gw, error, &offending[..19]),
            None
        );
    }
}
