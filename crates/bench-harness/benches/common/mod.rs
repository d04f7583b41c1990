//! What the bench files share: frames of a synthetic guest (Ethernet, IPv4
//! and TCP, built and read by hand with std only, so that every bench file
//! compiles against any tree whose public API it calls, whatever its
//! smoltcp version) and divan's settings for nanosecond-scale bodies.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

/// The guest's MAC address in the default plan.
pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// The guest's address in the default plan.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The gateway's address in the default plan: host loopback.
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

/// TCP flag bits.
pub const FIN: u8 = 0x01;
/// SYN.
pub const SYN: u8 = 0x02;
/// RST.
pub const RST: u8 = 0x04;
/// PSH.
pub const PSH: u8 = 0x08;
/// ACK.
pub const ACK: u8 = 0x10;

/// Runs the benches of a file whose bodies take a few nanoseconds. A fixed
/// sample size keeps divan from timing single calls, whose timer overhead
/// would double the result; command-line options still win.
pub fn run_nanosecond_benches() {
    divan::Divan::default()
        .sample_size(1000)
        .config_with_args()
        .main();
}

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const TCP_LEN: usize = 20;

/// A TCP segment from the guest, as a whole Ethernet frame.
#[derive(Clone, Copy, Debug)]
pub struct Seg<'a> {
    /// The gateway's MAC address: the frame's destination.
    pub gateway_mac: [u8; 6],
    /// Source (the guest's end).
    pub src: SocketAddrV4,
    /// Destination.
    pub dst: SocketAddrV4,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flag bits.
    pub flags: u8,
    /// Window field.
    pub window: u16,
    /// MSS option, for a SYN.
    pub mss: Option<u16>,
    /// Payload.
    pub payload: &'a [u8],
}

/// Folds `bytes` into a one's complement sum.
fn sum(mut acc: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for pair in &mut chunks {
        acc += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

impl Seg<'_> {
    /// The frame, with valid IPv4 and TCP checksums.
    pub fn frame(&self) -> Vec<u8> {
        let options: &[u8] = match self.mss {
            Some(mss) => &[2, 4, (mss >> 8) as u8, mss as u8],
            None => &[],
        };
        let tcp_len = TCP_LEN + options.len() + self.payload.len();
        let ip_total = IP_LEN + tcp_len;
        let mut f = Vec::with_capacity(ETH_LEN + ip_total);
        f.extend_from_slice(&self.gateway_mac);
        f.extend_from_slice(&GUEST_MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        let ip_start = f.len();
        f.extend_from_slice(&[0x45, 0, (ip_total >> 8) as u8, ip_total as u8]);
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&self.src.ip().octets());
        f.extend_from_slice(&self.dst.ip().octets());
        let ip_sum = fold(sum(0, &f[ip_start..]));
        f[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());
        let tcp_start = f.len();
        f.extend_from_slice(&self.src.port().to_be_bytes());
        f.extend_from_slice(&self.dst.port().to_be_bytes());
        f.extend_from_slice(&self.seq.to_be_bytes());
        f.extend_from_slice(&self.ack.to_be_bytes());
        let offset = (((TCP_LEN + options.len()) / 4) as u8) << 4;
        f.extend_from_slice(&[offset, self.flags]);
        f.extend_from_slice(&self.window.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(options);
        f.extend_from_slice(self.payload);
        let mut pseudo = sum(0, &self.src.ip().octets());
        pseudo = sum(pseudo, &self.dst.ip().octets());
        pseudo += 6 + tcp_len as u32;
        let tcp_sum = fold(sum(pseudo, &f[tcp_start..]));
        f[tcp_start + 16..tcp_start + 18].copy_from_slice(&tcp_sum.to_be_bytes());
        f
    }
}

/// The TCP header fields of a frame to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpView {
    /// Source (the remote end as the guest sees it).
    pub src: SocketAddrV4,
    /// Destination (the guest's end).
    pub dst: SocketAddrV4,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flag bits.
    pub flags: u8,
    /// Payload length.
    pub payload_len: usize,
}

/// Reads the TCP header of an Ethernet/IPv4/TCP frame; `None` for any
/// other frame.
pub fn tcp_view(frame: &[u8]) -> Option<TcpView> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(ETH_LEN..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if *ip.get(9)? != 6 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let addr = |at: usize| -> Option<Ipv4Addr> {
        let b = ip.get(at..at + 4)?;
        Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    };
    let tcp = ip.get(ihl..total)?;
    let word = |at: usize| -> Option<u32> {
        let b = tcp.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let port =
        |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*tcp.get(at)?, *tcp.get(at + 1)?])) };
    let data_offset = usize::from(tcp.get(12)? >> 4) * 4;
    Some(TcpView {
        src: SocketAddrV4::new(addr(12)?, port(0)?),
        dst: SocketAddrV4::new(addr(16)?, port(2)?),
        seq: word(4)?,
        ack: word(8)?,
        flags: *tcp.get(13)?,
        payload_len: tcp.len().checked_sub(data_offset)?,
    })
}

/// Offset of the TCP header in frames built by [`Seg::frame`].
const TCP_AT: usize = ETH_LEN + IP_LEN;

/// Rewrites the sequence number of a frame built by [`Seg::frame`] and
/// updates its TCP checksum incrementally (RFC 1624), so that a bench can
/// send a fresh segment without rebuilding the frame.
pub fn set_seq(frame: &mut [u8], seq: u32) {
    let old = u32::from_be_bytes(frame[TCP_AT + 4..TCP_AT + 8].try_into().unwrap_or([0; 4]));
    frame[TCP_AT + 4..TCP_AT + 8].copy_from_slice(&seq.to_be_bytes());
    let check = u16::from_be_bytes([frame[TCP_AT + 16], frame[TCP_AT + 17]]);
    // HC' = ~(~HC + ~m + m'), one 16-bit word at a time.
    let mut acc = u32::from(!check);
    for (m, m2) in [(old >> 16, seq >> 16), (old & 0xffff, seq & 0xffff)] {
        acc += u32::from(!(m as u16)) + m2;
    }
    let new = fold(acc);
    frame[TCP_AT + 16..TCP_AT + 18].copy_from_slice(&new.to_be_bytes());
}
