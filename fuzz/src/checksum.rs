//! Checksum repair: a mutated frame almost never carries right checksums,
//! so a target that wants its input to get past the front desk's checks
//! rewrites them first. Only bytes already in the frame are summed; a frame
//! too short for the header it claims is left as it is. An IPv6 frame's
//! extension headers are walked (a bounded number of them) to the
//! transport header, so that a chain of them still reaches the relays.

use smoltcp::wire::checksum;

/// The checksum of a transport message of `protocol` whose pseudo-header
/// holds `addresses` (none for ICMP), over `message`: smoltcp's sum.
fn transport_checksum(addresses: Option<&[u8]>, protocol: u8, message: &[u8]) -> u16 {
    let sum = checksum::data(message);
    let Some(addresses) = addresses else {
        return !sum;
    };
    let len = u16::try_from(message.len()).unwrap_or(u16::MAX);
    let value = !checksum::combine(&[checksum::data(addresses), u16::from(protocol), len, sum]);
    // UDP sends a computed zero as all ones.
    if protocol == 17 && value == 0 {
        0xffff
    } else {
        value
    }
}

/// Writes `value` at `at` of `buf` if it fits.
fn put(buf: &mut [u8], at: usize, value: u16) {
    if let Some(field) = buf.get_mut(at..at + 2) {
        field.copy_from_slice(&value.to_be_bytes());
    }
}

/// Offset of the checksum field in a transport header, if it is one this
/// repairs.
fn checksum_offset(protocol: u8) -> Option<usize> {
    match protocol {
        6 => Some(16),     // TCP
        17 => Some(6),     // UDP
        1 | 58 => Some(2), // ICMP, ICMPv6
        _ => None,
    }
}

/// Recomputes the IPv4 header checksum and the TCP, UDP, ICMP or ICMPv6
/// checksum of an Ethernet frame carrying IPv4 or IPv6 (through its
/// extension headers; not of a fragment, whose checksum covers a datagram
/// the frame holds only part of), in place.
pub fn fix_checksums(frame: &mut [u8]) {
    let Some(ethertype) = frame.get(12..14) else {
        return;
    };
    match [ethertype[0], ethertype[1]] {
        [0x08, 0x00] => fix_ipv4(frame),
        [0x86, 0xdd] => fix_ipv6(frame),
        _ => {}
    }
}

fn fix_ipv4(frame: &mut [u8]) {
    const IP: usize = 14;
    let Some(&version_ihl) = frame.get(IP) else {
        return;
    };
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if header_len < 20 || frame.len() < IP + header_len {
        return;
    }
    put(frame, IP + 10, 0);
    let header = !checksum::data(&frame[IP..IP + header_len]);
    put(frame, IP + 10, header);
    let total = usize::from(u16::from_be_bytes([frame[IP + 2], frame[IP + 3]]));
    let protocol = frame[IP + 9];
    let end = (IP + total).min(frame.len());
    let start = IP + header_len;
    if end <= start {
        return;
    }
    let Some(offset) = checksum_offset(protocol) else {
        return;
    };
    if end < start + offset + 2 {
        return;
    }
    put(frame, start + offset, 0);
    let addresses = (protocol != 1).then(|| &frame[IP + 12..IP + 20]);
    let value = transport_checksum(addresses, protocol, &frame[start..end]);
    put(frame, start + offset, value);
}

/// Extension headers walked at most before the transport header.
const MAX_EXTENSION_HEADERS: usize = 8;

/// Where the transport message of an Ethernet frame starts and ends and
/// its protocol: after the IPv4 header, or after the IPv6 header and its
/// extension headers (hop-by-hop, routing, destination options, and a
/// fragment header that says the datagram is whole). `None` for other
/// frames, fragments and chains longer than [`MAX_EXTENSION_HEADERS`].
#[must_use]
pub fn transport(frame: &[u8]) -> Option<(u8, usize, usize)> {
    const IP: usize = 14;
    match frame.get(12..14)? {
        [0x08, 0x00] => {
            let header_len = usize::from(frame.get(IP)? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([
                *frame.get(IP + 2)?,
                *frame.get(IP + 3)?,
            ]));
            let start = IP + header_len;
            let end = (IP + total).min(frame.len());
            (header_len >= 20 && start <= end).then_some((*frame.get(IP + 9)?, start, end))
        }
        [0x86, 0xdd] => {
            let payload = usize::from(u16::from_be_bytes([
                *frame.get(IP + 4)?,
                *frame.get(IP + 5)?,
            ]));
            let end = (IP + 40 + payload).min(frame.len());
            let mut next = *frame.get(IP + 6)?;
            let mut at = IP + 40;
            for _ in 0..MAX_EXTENSION_HEADERS {
                let len = match next {
                    0 | 43 | 60 => (usize::from(*frame.get(at + 1)?) + 1) * 8,
                    44 => {
                        let field = u16::from_be_bytes([*frame.get(at + 2)?, *frame.get(at + 3)?]);
                        if field & 0xfff9 != 0 {
                            return None;
                        }
                        8
                    }
                    protocol => return (at <= end).then_some((protocol, at, end)),
                };
                next = *frame.get(at)?;
                at += len;
            }
            None
        }
        _ => None,
    }
}

fn fix_ipv6(frame: &mut [u8]) {
    const IP: usize = 14;
    let Some((protocol, start, end)) = transport(frame) else {
        return;
    };
    let Some(offset) = checksum_offset(protocol) else {
        return;
    };
    if protocol == 1 || end < start + offset + 2 {
        return;
    }
    put(frame, start + offset, 0);
    let value = transport_checksum(Some(&frame[IP + 8..IP + 40]), protocol, &frame[start..end]);
    put(frame, start + offset, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv6 frame whose payload is `chain` (extension headers, then the
    /// transport message) with `next` as the IPv6 header's next header.
    fn ipv6(next: u8, chain: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend(u16::try_from(chain.len()).unwrap_or(0).to_be_bytes());
        f.extend([next, 64]);
        f.extend([0u8; 32]);
        f.extend(chain);
        f
    }

    #[test]
    fn transport_walks_a_chain_of_extension_headers_to_udp() {
        // Hop-by-hop (8 bytes), destination options (16), then UDP.
        let mut chain = vec![60, 0, 1, 4, 0, 0, 0, 0];
        chain.extend([17, 1, 1, 12]);
        chain.extend([0u8; 12]);
        chain.extend([0x30, 0x39, 0x10, 0x92, 0, 9, 0, 0, b'x']);
        let frame = ipv6(0, &chain);
        assert_eq!(transport(&frame), Some((17, 14 + 40 + 24, frame.len())));
    }

    #[test]
    fn transport_takes_an_atomic_fragment_and_refuses_a_real_one() {
        let whole = ipv6(44, &[6, 0, 0, 0, 0, 0, 0, 1, 0, 80]);
        assert_eq!(transport(&whole), Some((6, 14 + 48, whole.len())));
        let more = ipv6(44, &[6, 0, 0, 1, 0, 0, 0, 1, 0, 80]);
        assert_eq!(transport(&more), None);
    }

    #[test]
    fn transport_gives_up_on_an_endless_chain() {
        let chain: Vec<u8> = [0u8, 0, 0, 0, 0, 0, 0, 0].repeat(MAX_EXTENSION_HEADERS + 1);
        assert_eq!(transport(&ipv6(0, &chain)), None);
    }
}
