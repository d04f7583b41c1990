//! TCP segments from the guest, read once: [`classify`](super::classify)
//! checks a segment (length, checksum, ports) and reads its header into a
//! [`TcpSegment`], which the relays take as it is.

use smoltcp::wire::TcpPacket;

use super::builder::{TcpFlags, TcpOptions};

/// Where the flags byte (FIN to CWR) is in a TCP header.
const FLAGS_AT: usize = 13;

/// The largest window scale shift (RFC 7323, section 2.3); a larger one
/// counts as this, as Linux counts it.
const MAX_WINDOW_SCALE: u8 = 14;

/// A TCP segment from the guest whose checks have passed, its header read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source port (non-zero).
    pub src_port: u16,
    /// Destination port (non-zero).
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number, when the ACK flag is set.
    pub ack: Option<u32>,
    /// The flags [`TcpFlags`] names, as the segment sets them (any
    /// combination: which ones may go together is the relay's question).
    pub flags: TcpFlags,
    /// The window field, unscaled.
    pub window: u16,
    /// MSS and window scale, read as Linux's `tcp_parse_options` reads
    /// them (stopping at a zero-length or overlong option); on a SYN only.
    pub options: TcpOptions,
    /// The payload after the header and its options.
    pub payload: &'a [u8],
}

impl<'a> TcpSegment<'a> {
    /// Reads the header of a segment `new_checked` has accepted.
    pub(crate) fn read(packet: &TcpPacket<&'a [u8]>) -> Self {
        let bytes: &[u8] = packet.as_ref();
        let flags = TcpFlags::from_wire(bytes.get(FLAGS_AT).copied().unwrap_or(0));
        let as_u32 = |n: i32| u32::from_ne_bytes(n.to_ne_bytes());
        Self {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq: as_u32(packet.seq_number().0),
            ack: packet.ack().then(|| as_u32(packet.ack_number().0)),
            flags,
            window: packet.window_len(),
            options: read_options(packet.options(), packet.syn()),
            payload: packet.payload(),
        }
    }
}

/// Reads TCP options as Linux's `tcp_parse_options` does, since a guest is
/// most often Linux and expects its peer to agree: an option whose length
/// is below 2 or runs past the header ends the parsing, and the options
/// before it still count; the segment itself is kept. MSS (length 4, not
/// 0) and window scale (length 3, shift at most 14) count on a SYN only;
/// options of other lengths are skipped.
fn read_options(mut options: &[u8], syn: bool) -> TcpOptions {
    const END: u8 = 0;
    const NOP: u8 = 1;
    const MSS: u8 = 2;
    const WINDOW_SCALE: u8 = 3;
    let mut found = TcpOptions::default();
    if !syn {
        return found;
    }
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
                    (MSS, &[hi, lo]) if u16::from_be_bytes([hi, lo]) != 0 => {
                        found.mss = Some(u16::from_be_bytes([hi, lo]));
                    }
                    (WINDOW_SCALE, &[shift]) => {
                        found.window_scale = Some(shift.min(MAX_WINDOW_SCALE));
                    }
                    _ => {}
                }
                options = &options[len..];
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::{TcpOptions, read_options};

    fn found(mss: Option<u16>, window_scale: Option<u8>) -> TcpOptions {
        TcpOptions { mss, window_scale }
    }

    #[test]
    fn options_before_a_bad_length_count_and_parsing_stops_there() {
        // MSS, then a zero-length option, then a window scale never read.
        let options = [2, 4, 0x05, 0xb4, 8, 0, 3, 3, 7];
        assert_eq!(read_options(&options, true), found(Some(1460), None));
        // Length 1 and a length past the end stop alike.
        assert_eq!(read_options(&[3, 3, 7, 8, 1], true), found(None, Some(7)));
        assert_eq!(
            read_options(&[1, 3, 3, 9, 8, 40], true),
            found(None, Some(9))
        );
        // A kind with no length byte left.
        assert_eq!(read_options(&[1, 1, 5], true), found(None, None));
    }

    #[test]
    fn mss_and_window_scale_count_on_syn_only_with_their_lengths() {
        let options = [2, 4, 0x05, 0xb4, 1, 3, 3, 20, 0];
        assert_eq!(read_options(&options, true), found(Some(1460), Some(14)));
        assert_eq!(read_options(&options, false), found(None, None));
        // Wrong lengths and MSS 0 are skipped; what follows still counts.
        let odd = [2, 3, 9, 2, 4, 0, 0, 3, 4, 7, 0, 2, 4, 0x02, 0x18];
        assert_eq!(read_options(&odd, true), found(Some(536), None));
    }
}
