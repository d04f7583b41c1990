//! TCP segments on the wire: guest segments, read by the front desk, put
//! in the state machine's terms, and segments for the guest written in place, their payload
//! peeked by the flow's driver into the frame before the headers go in
//! front of it.

use std::net::SocketAddr;
use std::time::Instant;

use flow_table::FlowKey;
use flow_table::tcp::{Flags, Segment, SeqNum, Transmit};
use relay_tcp::TcpFlowDriver;

use frontdesk::{
    ChecksumFill, LinkAddrs, OutboundTcpSegment, TcpFlags, TcpOptions, TcpSegment, tcp_headers_len,
    write_tcp_headers, write_tcp_headers_with,
};

/// A guest segment in the state machine's terms, and its payload.
pub(super) struct GuestSegment<'a> {
    pub(super) seg: Segment,
    pub(super) payload: &'a [u8],
    pub(super) src_port: u16,
    pub(super) dst_port: u16,
}

/// Takes a guest segment the front desk has checked (length, checksum,
/// ports) and read (options as Linux reads them), if it has at most one of
/// SYN, FIN and RST, as smoltcp's `TcpRepr::parse` requires.
pub(super) fn guest_segment<'a>(tcp: &TcpSegment<'a>) -> Option<GuestSegment<'a>> {
    let has = |flag| tcp.flags.contains(flag);
    let (syn, fin, rst) = (has(TcpFlags::SYN), has(TcpFlags::FIN), has(TcpFlags::RST));
    if u8::from(syn) + u8::from(fin) + u8::from(rst) > 1 {
        return None;
    }
    let flags = Flags {
        syn,
        fin,
        rst,
        psh: has(TcpFlags::PSH) && !(syn || fin || rst),
    };
    Some(GuestSegment {
        seg: Segment {
            seq: SeqNum::new(tcp.seq),
            ack: tcp.ack.map(SeqNum::new),
            flags,
            window: tcp.window,
            mss: tcp.options.mss,
            window_scale: tcp.options.window_scale,
        },
        payload: tcp.payload,
        src_port: tcp.src_port,
        dst_port: tcp.dst_port,
    })
}

/// The header options of segment `t`.
fn options_of(t: &Transmit) -> TcpOptions {
    TcpOptions {
        mss: t.mss,
        window_scale: t.window_scale,
    }
}

/// The header flags of segment `t`.
fn flags_of(t: &Transmit) -> TcpFlags {
    let mut flags = TcpFlags::NONE;
    for (on, flag) in [
        (t.flags.syn, TcpFlags::SYN),
        (t.flags.fin, TcpFlags::FIN),
        (t.flags.rst, TcpFlags::RST),
        (t.flags.psh, TcpFlags::PSH),
        (t.ack.is_some(), TcpFlags::ACK),
    ] {
        if on {
            flags = flags | flag;
        }
    }
    flags
}

/// Writes the next segment of `flow` for the guest into `buf`, if one is
/// due: payload first (peeked into its place), then the headers in front of
/// it. Returns the frame's length and the payload's.
pub(super) fn write_next_segment(
    flow: &mut TcpFlowDriver,
    buf: &mut [u8],
    (link, fill): (LinkAddrs, ChecksumFill),
    key: &FlowKey,
    now: Instant,
) -> Option<(usize, usize)> {
    // From the remote end as the guest sees it to the guest, over the
    // flow's own family.
    let (src, dst): (SocketAddr, SocketAddr) = (key.dest(), key.guest());
    let (t, payload_len) =
        flow.poll_transmit(now, buf, |t| Some(tcp_headers_len(src, options_of(t))))?;
    let segment = OutboundTcpSegment {
        link,
        src,
        dst,
        seq: t.seq.get(),
        ack: t.ack.map_or(0, SeqNum::get),
        flags: flags_of(&t),
        window: t.window,
        options: options_of(&t),
    };
    write_tcp_headers_with(buf, &segment, payload_len, fill).map(|len| (len, payload_len))
}

/// Writes RST `t` about a segment of no flow (no payload, no socket).
pub(super) fn write_rst(
    buf: &mut [u8],
    link: LinkAddrs,
    key: &FlowKey,
    t: &Transmit,
) -> Option<usize> {
    let (src, dst) = (key.dest(), key.guest());
    let mut flags = TcpFlags::RST;
    if t.ack.is_some() {
        flags = flags | TcpFlags::ACK;
    }
    let segment = OutboundTcpSegment {
        link,
        src,
        dst,
        seq: t.seq.get(),
        ack: t.ack.map_or(0, SeqNum::get),
        flags,
        window: 0,
        options: TcpOptions::default(),
    };
    write_tcp_headers(buf, &segment, 0)
}
