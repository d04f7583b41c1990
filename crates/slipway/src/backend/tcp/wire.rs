//! TCP segments on the wire: guest segments read into the state machine's
//! terms, and segments for the guest written in place, their payload
//! peeked by the flow's driver into the frame before the headers go in
//! front of it.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Instant;

use flow_table::FlowKey;
use flow_table::tcp::{Flags, Segment, SeqNum, TcpConfig, Transmit};
use relay_tcp::TcpFlowDriver;
use smoltcp::wire::TcpPacket;

use frontdesk::{
    ChecksumFill, LinkAddrs, TcpFlags, TcpOptions, TcpSegmentV4, tcp_v4_headers_len,
    write_tcp_v4_headers, write_tcp_v4_headers_with,
};

/// A parsed guest segment: the state machine's header and the payload.
pub(super) struct GuestSegment<'a> {
    pub(super) seg: Segment,
    pub(super) payload: &'a [u8],
    pub(super) src_port: u16,
    pub(super) dst_port: u16,
}

/// Reads a guest segment the front desk has checked (length, checksum).
///
/// The header is taken as smoltcp's `TcpRepr::parse` takes it (ports
/// present, at most one of SYN, FIN and RST), but the options are read as
/// Linux reads them, since a guest is most often Linux and expects its
/// peer to agree: see [`parse_options`].
pub(super) fn parse_segment(bytes: &[u8]) -> Option<GuestSegment<'_>> {
    let packet = TcpPacket::new_checked(bytes).ok()?;
    if packet.src_port() == 0 || packet.dst_port() == 0 {
        return None;
    }
    let (syn, fin, rst) = (packet.syn(), packet.fin(), packet.rst());
    if u8::from(syn) + u8::from(fin) + u8::from(rst) > 1 {
        return None;
    }
    let flags = Flags {
        syn,
        fin,
        rst,
        psh: packet.psh() && !(syn || fin || rst),
    };
    let seq = SeqNum::new(u32::from_ne_bytes(packet.seq_number().0.to_ne_bytes()));
    let ack = packet
        .ack()
        .then(|| SeqNum::new(u32::from_ne_bytes(packet.ack_number().0.to_ne_bytes())));
    let options = parse_options(packet.options(), syn);
    Some(GuestSegment {
        seg: Segment {
            seq,
            ack,
            flags,
            window: packet.window_len(),
            mss: options.mss,
            window_scale: options.window_scale,
        },
        payload: packet.payload(),
        src_port: packet.src_port(),
        dst_port: packet.dst_port(),
    })
}

/// The options of a guest segment the state machine uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct GuestOptions {
    mss: Option<u16>,
    window_scale: Option<u8>,
}

/// Reads TCP options as Linux's `tcp_parse_options` does: an option whose
/// length is below 2 or runs past the header ends the parsing, and the
/// options before it still count; the segment itself is kept. MSS (length
/// 4, not 0) and window scale (length 3, shift at most 14) count on a SYN
/// only; options of other lengths are skipped.
fn parse_options(mut options: &[u8], syn: bool) -> GuestOptions {
    const END: u8 = 0;
    const NOP: u8 = 1;
    const MSS: u8 = 2;
    const WINDOW_SCALE: u8 = 3;
    let mut found = GuestOptions::default();
    // Bounded: every turn takes at least one byte off the options.
    while let Some((&kind, rest)) = options.split_first() {
        match kind {
            END => break,
            NOP => options = rest,
            _ => {
                let Some(&len) = rest.first() else { break };
                let len = usize::from(len);
                if len < 2 || len > options.len() {
                    break;
                }
                match (kind, &options[2..len]) {
                    (MSS, &[hi, lo]) if syn && u16::from_be_bytes([hi, lo]) != 0 => {
                        found.mss = Some(u16::from_be_bytes([hi, lo]));
                    }
                    (WINDOW_SCALE, &[shift]) if syn => {
                        found.window_scale = Some(shift.min(TcpConfig::MAX_WINDOW_SCALE));
                    }
                    _ => {}
                }
                options = &options[len..];
            }
        }
    }
    found
}

fn v4_of(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(v4) => Some(v4),
        SocketAddr::V6(_) => None,
    }
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
    let (src, dst) = (v4_of(key.dest())?, v4_of(key.guest())?);
    let (t, payload_len) =
        flow.poll_transmit(now, buf, |t| Some(tcp_v4_headers_len(options_of(t))))?;
    let segment = TcpSegmentV4 {
        link,
        src,
        dst,
        seq: t.seq.get(),
        ack: t.ack.map_or(0, SeqNum::get),
        flags: flags_of(&t),
        window: t.window,
        options: options_of(&t),
    };
    write_tcp_v4_headers_with(buf, &segment, payload_len, fill).map(|len| (len, payload_len))
}

/// Writes RST `t` about a segment of no flow (no payload, no socket).
pub(super) fn write_rst(
    buf: &mut [u8],
    link: LinkAddrs,
    key: &FlowKey,
    t: &Transmit,
) -> Option<usize> {
    let (src, dst) = (v4_of(key.dest())?, v4_of(key.guest())?);
    let mut flags = TcpFlags::RST;
    if t.ack.is_some() {
        flags = flags | TcpFlags::ACK;
    }
    let segment = TcpSegmentV4 {
        link,
        src,
        dst,
        seq: t.seq.get(),
        ack: t.ack.map_or(0, SeqNum::get),
        flags,
        window: 0,
        options: TcpOptions::default(),
    };
    write_tcp_v4_headers(buf, &segment, 0)
}

#[cfg(test)]
mod tests {
    use super::{GuestOptions, parse_options};

    fn found(mss: Option<u16>, window_scale: Option<u8>) -> GuestOptions {
        GuestOptions { mss, window_scale }
    }

    #[test]
    fn options_before_a_bad_length_count_and_parsing_stops_there() {
        // MSS, then a zero-length option, then a window scale never read.
        let options = [2, 4, 0x05, 0xb4, 8, 0, 3, 3, 7];
        assert_eq!(parse_options(&options, true), found(Some(1460), None));
        // Length 1 and a length past the end stop alike.
        assert_eq!(parse_options(&[3, 3, 7, 8, 1], true), found(None, Some(7)));
        assert_eq!(
            parse_options(&[1, 3, 3, 9, 8, 40], true),
            found(None, Some(9))
        );
        // A kind with no length byte left.
        assert_eq!(parse_options(&[1, 1, 5], true), found(None, None));
    }

    #[test]
    fn mss_and_window_scale_count_on_syn_only_with_their_lengths() {
        let options = [2, 4, 0x05, 0xb4, 1, 3, 3, 20, 0];
        assert_eq!(parse_options(&options, true), found(Some(1460), Some(14)));
        assert_eq!(parse_options(&options, false), found(None, None));
        // Wrong lengths and MSS 0 are skipped; what follows still counts.
        let odd = [2, 3, 9, 2, 4, 0, 0, 3, 4, 7, 0, 2, 4, 0x02, 0x18];
        assert_eq!(parse_options(&odd, true), found(Some(536), None));
    }
}
