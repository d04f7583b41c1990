//! Checksum repair: a mutated frame almost never carries right checksums,
//! so a target that wants its input to get past the front desk's checks
//! rewrites them first. Only bytes already in the frame are summed; a frame
//! too short for the header it claims is left as it is.

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
/// checksum of an Ethernet frame carrying IPv4 or IPv6 (no extension
/// headers), in place.
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

fn fix_ipv6(frame: &mut [u8]) {
    const IP: usize = 14;
    let start = IP + 40;
    if frame.len() < start {
        return;
    }
    let payload = usize::from(u16::from_be_bytes([frame[IP + 4], frame[IP + 5]]));
    let protocol = frame[IP + 6];
    let end = (start + payload).min(frame.len());
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
