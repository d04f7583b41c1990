//! Hand-built IPv6 conversations for the frame targets' seeds, in the
//! default plan: neighbour and router solicitations, a DHCPv6 Solicit and
//! Request, a TCP connection to the gateway (SYN, data both ways, FIN), a
//! UDP exchange, a DNS query to the IPv6 DNS address, an echo request, and
//! the same transports behind chains of extension headers (hop-by-hop,
//! destination options, routing, an atomic fragment) and in two real
//! fragments. Checksums are left zero: the targets repair them. The host's
//! side of each exchange is a frame from the gateway, which the encoders
//! turn into the host peers' moves.

use super::{Frame, GUEST_MAC};

/// slipway's MAC in the default plan, the router's and the gateway's.
const GATEWAY_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
/// The guest's link-local address (EUI-64 of [`GUEST_MAC`]).
const GUEST_LINK_LOCAL: [u16; 8] = [0xfe80, 0, 0, 0, 0x5054, 0x00ff, 0xfe12, 0x3456];
/// The guest's SLAAC address in fd00:0:0:2::/64.
const GUEST: [u16; 8] = [0xfd00, 0, 0, 2, 0x5054, 0x00ff, 0xfe12, 0x3456];
/// The router's link-local address.
const ROUTER: [u16; 8] = [0xfe80, 0, 0, 0, 0, 0, 0, 1];
/// The gateway, host loopback's name (::1).
const GATEWAY: [u16; 8] = [0xfd00, 0, 0, 2, 0, 0, 0, 2];
/// The DNS address.
const DNS: [u16; 8] = [0xfd00, 0, 0, 2, 0, 0, 0, 3];
/// The host peers' port (the fuzz targets' `PEER_PORT`).
const PEER_PORT: u16 = 4242;

fn octets(addr: [u16; 8]) -> Vec<u8> {
    addr.iter().flat_map(|w| w.to_be_bytes()).collect()
}

fn len16(bytes: &[u8]) -> [u8; 2] {
    u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes()
}

/// An Ethernet frame with an IPv6 header from `src` to `dst` whose next
/// header is `next`, carrying `payload` (extension headers and all).
fn ipv6(
    (src_mac, dst_mac): ([u8; 6], [u8; 6]),
    (src, dst): ([u16; 8], [u16; 8]),
    next: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend(src_mac);
    f.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend(len16(payload));
    f.extend([next, 255]);
    f.extend(octets(src));
    f.extend(octets(dst));
    f.extend(payload);
    f
}

fn from_guest(
    dst_mac: [u8; 6],
    (src, dst): ([u16; 8], [u16; 8]),
    next: u8,
    payload: &[u8],
) -> Frame {
    Frame {
        from_guest: true,
        bytes: ipv6((GUEST_MAC, dst_mac), (src, dst), next, payload),
    }
}

fn from_host(src: [u16; 8], next: u8, payload: &[u8]) -> Frame {
    Frame {
        from_guest: false,
        bytes: ipv6((GATEWAY_MAC, GUEST_MAC), (src, GUEST), next, payload),
    }
}

fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = src_port.to_be_bytes().to_vec();
    u.extend(dst_port.to_be_bytes());
    u.extend(
        u16::try_from(8 + payload.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    u.extend([0, 0]);
    u.extend(payload);
    u
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
const FIN_ACK: u8 = 0x11;

/// A TCP segment of the guest's port 40000 (its acknowledgment number is
/// set by the target to what the backend sent) or of the peer's port.
fn tcp((src_port, dst_port): (u16, u16), seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    // MSS 1440 and window scale 7 on a SYN, as Linux offers them.
    let options: &[u8] = if flags & SYN != 0 {
        &[2, 4, 0x05, 0xa0, 1, 3, 3, 7]
    } else {
        &[]
    };
    let mut t = src_port.to_be_bytes().to_vec();
    t.extend(dst_port.to_be_bytes());
    t.extend(seq.to_be_bytes());
    t.extend([0, 0, 0, 0]);
    t.push(u8::try_from((20 + options.len()) / 4 * 16).unwrap_or(0x50));
    t.extend([flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend(options);
    t.extend(payload);
    t
}

fn echo_request(ident: u16, data: &[u8]) -> Vec<u8> {
    let mut e = vec![128, 0, 0, 0];
    e.extend(ident.to_be_bytes());
    e.extend([0, 1]);
    e.extend(data);
    e
}

/// Neighbour solicitations of the router and the gateway, and a router
/// solicitation, from the guest's link-local address.
fn solicitations() -> Vec<Frame> {
    let ns = |target: [u16; 8]| {
        let [.., x, y, z] = octets(target)[..] else {
            return Vec::new();
        };
        let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend(octets(target));
        icmp.extend([1, 1]);
        icmp.extend(GUEST_MAC);
        // The solicited-node group of the target: its low 24 bits.
        let group = [
            0xff02,
            0,
            0,
            0,
            0,
            1,
            0xff00 | u16::from(x),
            u16::from_be_bytes([y, z]),
        ];
        ipv6(
            (GUEST_MAC, [0x33, 0x33, 0xff, x, y, z]),
            (GUEST_LINK_LOCAL, group),
            58,
            &icmp,
        )
    };
    let mut rs = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    rs.extend(GUEST_MAC);
    let all_routers = [0xff02, 0, 0, 0, 0, 0, 0, 2];
    vec![
        Frame {
            from_guest: true,
            bytes: ns(ROUTER),
        },
        Frame {
            from_guest: true,
            bytes: ns(GATEWAY),
        },
        from_guest(
            [0x33, 0x33, 0, 0, 0, 2],
            (GUEST_LINK_LOCAL, all_routers),
            58,
            &rs,
        ),
    ]
}

/// A DHCPv6 Solicit and a Request naming slipway's DUID, both for an
/// address (IA_NA) and the DNS servers.
fn dhcpv6() -> Vec<Frame> {
    let message = |kind: u8| {
        let mut m = vec![kind, 0x12, 0x34, 0x56];
        m.extend([0, 1, 0, 10, 0, 3, 0, 1]); // client id: DUID-LL
        m.extend(GUEST_MAC);
        if kind == 3 {
            m.extend([0, 2, 0, 10, 0, 3, 0, 1]); // server id
            m.extend(GATEWAY_MAC);
        }
        m.extend([0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]); // IA_NA 1
        m.extend([0, 8, 0, 2, 0, 0]); // elapsed time
        m.extend([0, 6, 0, 2, 0, 23]); // requested: DNS servers
        let all_servers = [0xff02, 0, 0, 0, 0, 0, 1, 2];
        from_guest(
            [0x33, 0x33, 0, 1, 0, 2],
            (GUEST_LINK_LOCAL, all_servers),
            17,
            &udp(546, 547, &m),
        )
    };
    vec![message(1), message(3)]
}

/// A connection from the guest's port 40000 to the gateway's
/// [`PEER_PORT`]: handshake, data each way, the guest's FIN.
fn tcp_connection() -> Vec<Frame> {
    let request = b"hello over IPv6\n";
    let reply = b"hello from ::1\n";
    let ports = (40000, PEER_PORT);
    let data_seq = 1001 + u32::try_from(request.len()).unwrap_or(0);
    vec![
        from_guest(
            GATEWAY_MAC,
            (GUEST, GATEWAY),
            6,
            &tcp(ports, 1000, SYN, &[]),
        ),
        from_guest(
            GATEWAY_MAC,
            (GUEST, GATEWAY),
            6,
            &tcp(ports, 1001, ACK, &[]),
        ),
        from_guest(
            GATEWAY_MAC,
            (GUEST, GATEWAY),
            6,
            &tcp(ports, 1001, PSH_ACK, request),
        ),
        from_host(GATEWAY, 6, &tcp((PEER_PORT, 40000), 1, PSH_ACK, reply)),
        from_guest(
            GATEWAY_MAC,
            (GUEST, GATEWAY),
            6,
            &tcp(ports, data_seq, ACK, &[]),
        ),
        from_guest(
            GATEWAY_MAC,
            (GUEST, GATEWAY),
            6,
            &tcp(ports, data_seq, FIN_ACK, &[]),
        ),
    ]
}

/// A query for `slipway.test` AAAA.
fn aaaa_query() -> Vec<u8> {
    let mut q = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend(b"\x07slipway\x04test\x00");
    q.extend([0, 28, 0, 1]);
    q
}

/// A UDP exchange with the peer, a DNS query to the DNS address and its
/// answer, and an echo request to the gateway.
fn datagrams() -> Vec<Frame> {
    let query = aaaa_query();
    let mut answer = query.clone();
    answer[2] = 0x81;
    answer[3] = 0x80;
    answer[7] = 1;
    answer.extend([0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
    answer.extend(octets([0x2001, 0xdb8, 0, 0, 0, 0, 0, 7]));
    vec![
        from_guest(
            GATEWAY_MAC,
            (GUEST, GATEWAY),
            17,
            &udp(40001, PEER_PORT, b"ping over udp6"),
        ),
        from_host(GATEWAY, 17, &udp(PEER_PORT, 40001, b"pong over udp6")),
        from_guest(GATEWAY_MAC, (GUEST, DNS), 17, &udp(40002, 53, &query)),
        from_host(DNS, 17, &udp(53, 40002, &answer)),
        from_guest(
            GATEWAY_MAC,
            (GUEST, GATEWAY),
            58,
            &echo_request(7, b"echo over ipv6"),
        ),
    ]
}

/// The transports behind chains of extension headers: hop-by-hop (PadN)
/// and destination options before UDP, an atomic fragment before a SYN, a
/// routing header (type 4, no segments left) before an echo request, and
/// a UDP datagram in two fragments.
fn extension_chains() -> Vec<Frame> {
    let hop_by_hop = |next: u8| vec![next, 0, 1, 4, 0, 0, 0, 0];
    let mut chain = hop_by_hop(60);
    chain.extend([17, 1, 1, 12]);
    chain.extend([0u8; 12]);
    chain.extend(udp(40003, PEER_PORT, b"behind two options"));
    let mut atomic = vec![6, 0, 0, 0, 0, 0, 0, 1];
    atomic.extend(tcp((40004, PEER_PORT), 5000, SYN, &[]));
    let mut routed = vec![58, 0, 4, 0, 0, 0, 0, 0];
    routed.extend(echo_request(8, b"routed"));
    let datagram = udp(40005, PEER_PORT, &[0x5a; 64]);
    let (head, tail) = datagram.split_at(48);
    let fragment = |offset_words: u16, more: bool, part: &[u8]| {
        let mut f = vec![17, 0];
        f.extend((offset_words << 3 | u16::from(more)).to_be_bytes());
        f.extend([0, 0, 0, 2]);
        f.extend(part);
        f
    };
    let to_gateway =
        |next: u8, payload: &[u8]| from_guest(GATEWAY_MAC, (GUEST, GATEWAY), next, payload);
    vec![
        to_gateway(0, &chain),
        to_gateway(44, &atomic),
        to_gateway(43, &routed),
        to_gateway(44, &fragment(0, true, head)),
        to_gateway(44, &fragment(6, false, tail)),
    ]
}

/// Every hand-built IPv6 conversation, in order.
pub(super) fn hand_built() -> Vec<Frame> {
    [
        solicitations(),
        dhcpv6(),
        tcp_connection(),
        datagrams(),
        extension_chains(),
    ]
    .concat()
}
