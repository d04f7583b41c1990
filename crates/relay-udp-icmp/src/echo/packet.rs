//! ICMP and ICMPv6 echo headers: the 8 bytes the relay writes before the
//! guest's payload and reads back before the reply's, and the Internet
//! checksum that raw IPv4 sockets leave to the sender.

use smoltcp::wire::checksum as ip_checksum;

/// ICMP echo reply.
pub(crate) const ICMP_ECHO_REPLY: u8 = 0;
/// ICMP echo request.
pub(crate) const ICMP_ECHO_REQUEST: u8 = 8;
/// ICMPv6 echo request.
pub(crate) const ICMPV6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 echo reply.
pub(crate) const ICMPV6_ECHO_REPLY: u8 = 129;
/// Type, code, checksum, identifier, sequence number.
pub(crate) const ECHO_HEADER_LEN: usize = 8;
/// The smallest IPv4 header.
pub(crate) const IPV4_MIN_HEADER_LEN: usize = 20;

/// An echo request header with a zero checksum.
pub(crate) fn request_header(v6: bool, id: u16, seq: u16) -> [u8; ECHO_HEADER_LEN] {
    let ty = if v6 {
        ICMPV6_ECHO_REQUEST
    } else {
        ICMP_ECHO_REQUEST
    };
    let [i0, i1] = id.to_be_bytes();
    let [s0, s1] = seq.to_be_bytes();
    [ty, 0, 0, 0, i0, i1, s0, s1]
}

/// Writes the Internet checksum of `header` followed by `payload` into
/// `header[2..4]` (which must be zero beforehand).
pub(crate) fn fill_checksum(header: &mut [u8; ECHO_HEADER_LEN], payload: &[u8]) {
    let sum = checksum(header, payload);
    header[2..4].copy_from_slice(&sum.to_be_bytes());
}

/// The Internet checksum (RFC 1071) of `header` followed by `payload`; over
/// a message that includes its own correct checksum it is 0. The header's
/// even length lets the two be summed apart.
pub(crate) fn checksum(header: &[u8; ECHO_HEADER_LEN], payload: &[u8]) -> u16 {
    !ip_checksum::combine(&[ip_checksum::data(header), ip_checksum::data(payload)])
}

/// The Internet checksum `sum` after one 16-bit word it covers changed from
/// `old` to `new`, without the rest of the data (RFC 1624, eqn. 3:
/// `HC' = ~(~HC + ~m + m')`).
pub(crate) fn checksum_replace(sum: u16, old: u16, new: u16) -> u16 {
    !ip_checksum::combine(&[!sum, !old, new])
}

/// The fields of a received echo header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EchoHeader {
    pub(crate) ty: u8,
    pub(crate) code: u8,
    pub(crate) id: u16,
    pub(crate) seq: u16,
}

impl EchoHeader {
    pub(crate) fn parse(bytes: &[u8; ECHO_HEADER_LEN]) -> Self {
        Self {
            ty: bytes[0],
            code: bytes[1],
            id: u16::from_be_bytes([bytes[4], bytes[5]]),
            seq: u16::from_be_bytes([bytes[6], bytes[7]]),
        }
    }

    pub(crate) fn is_request(&self, v6: bool) -> bool {
        let ty = if v6 {
            ICMPV6_ECHO_REQUEST
        } else {
            ICMP_ECHO_REQUEST
        };
        self.ty == ty && self.code == 0
    }

    pub(crate) fn is_reply(&self, v6: bool) -> bool {
        let ty = if v6 {
            ICMPV6_ECHO_REPLY
        } else {
            ICMP_ECHO_REPLY
        };
        self.ty == ty && self.code == 0
    }
}

/// The header length of an IPv4 packet from its first byte (IHL), if it is
/// an IPv4 header of a valid length.
pub(crate) fn ipv4_header_len(first: u8) -> Option<usize> {
    let len = usize::from(first & 0x0f) * 4;
    (first >> 4 == 4 && len >= IPV4_MIN_HEADER_LEN).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data, &[]), !0xddf2);
    }

    #[test]
    fn checksum_does_not_depend_on_where_the_header_ends() {
        let data: Vec<u8> = (0..=250u8).collect();
        let whole = !ip_checksum::data(&data);
        let mut header = [0u8; ECHO_HEADER_LEN];
        header.copy_from_slice(&data[..ECHO_HEADER_LEN]);
        assert_eq!(checksum(&header, &data[ECHO_HEADER_LEN..]), whole);
        // Odd and even payload lengths alike.
        for end in [8, 9, 10, 101, 250] {
            let part = !ip_checksum::data(&data[..end]);
            assert_eq!(
                checksum(&header, &data[ECHO_HEADER_LEN..end]),
                part,
                "{end}"
            );
        }
    }

    #[test]
    fn a_filled_header_checks_out() {
        let payload = b"slipway echo payload!";
        let mut h = request_header(false, 0xbeef, 7);
        fill_checksum(&mut h, payload);
        assert_eq!(checksum(&h, payload), 0);
        let parsed = EchoHeader::parse(&h);
        assert_eq!((parsed.ty, parsed.id, parsed.seq), (8, 0xbeef, 7));
        assert!(!parsed.is_reply(false));
    }

    #[test]
    fn replacing_the_identifier_keeps_the_checksum_valid() {
        let payload = b"slipway echo payload, odd length";
        for (old, new) in [(0xbeef, 0x1234), (0, 0xffff), (0xffff, 0), (7, 7)] {
            let mut h = request_header(false, old, 42);
            fill_checksum(&mut h, payload);
            let sum = u16::from_be_bytes([h[2], h[3]]);
            h[4..6].copy_from_slice(&u16::to_be_bytes(new));
            h[2..4].copy_from_slice(&checksum_replace(sum, old, new).to_be_bytes());
            assert_eq!(checksum(&h, payload), 0, "{old:#x} -> {new:#x}");
        }
    }

    #[test]
    fn ipv4_header_lengths() {
        assert_eq!(ipv4_header_len(0x45), Some(20));
        assert_eq!(ipv4_header_len(0x4f), Some(60));
        assert_eq!(ipv4_header_len(0x44), None);
        assert_eq!(ipv4_header_len(0x65), None);
    }
}
