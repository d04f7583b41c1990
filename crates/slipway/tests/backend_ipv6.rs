//! Frame-level tests of the backend over IPv6: synthetic guest frames
//! against real sockets on [::1], no root needed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener};
use std::time::{Duration, Instant};

use nat_core::{Cidr, DenyList, Plan, Rules};
use slipway::{Backend, BackendConfig, FrameBackend};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv6Packet, IpAddress, IpProtocol, Ipv6Packet, TcpControl,
    TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket,
};
use test_support::harness;
use test_support::harness::datagram::{self, dns_query, dns_responder};

use harness::frames::{
    DNS_IP6, GATEWAY_IP6, GUEST_IP6, GUEST_MAC, echo6_frame, tcp6_frame, udp6_frame,
};

fn backend_with(configure: impl FnOnce(&mut BackendConfig)) -> Backend {
    let mut config = BackendConfig::new(Plan::default(), Rules::default());
    configure(&mut config);
    Backend::new(config, Instant::now()).unwrap()
}

/// What the guest received over IPv6, parsed, checksums verified.
#[derive(Debug)]
enum Received {
    Udp {
        src: SocketAddrV6,
        dst: SocketAddrV6,
        payload: Vec<u8>,
    },
    Tcp {
        src: SocketAddrV6,
        dst_port: u16,
        control: TcpControl,
        seq: u32,
        ack: Option<u32>,
        window: u16,
        mss: Option<u16>,
        payload: Vec<u8>,
    },
    Icmp {
        src: Ipv6Addr,
        msg_type: u8,
        code: u8,
        /// The message after type, code and checksum.
        body: Vec<u8>,
    },
    Other,
}

fn parse(frame: &[u8]) -> Received {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    if eth.ethertype() != EthernetProtocol::Ipv6 {
        return Received::Other;
    }
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if dst != GUEST_IP6 {
        // Router advertisements to all nodes.
        return Received::Other;
    }
    assert_eq!(eth.dst_addr(), GUEST_MAC, "frames go to the guest's MAC");
    match ip.next_header() {
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(udp.verify_checksum(&IpAddress::Ipv6(src), &IpAddress::Ipv6(dst)));
            Received::Udp {
                src: SocketAddrV6::new(src, udp.src_port(), 0, 0),
                dst: SocketAddrV6::new(dst, udp.dst_port(), 0, 0),
                payload: udp.payload().to_vec(),
            }
        }
        IpProtocol::Tcp => {
            let (s, d) = (IpAddress::Ipv6(src), IpAddress::Ipv6(dst));
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(tcp.verify_checksum(&s, &d), "TCP checksum over IPv6");
            let repr = TcpRepr::parse(&tcp, &s, &d, &ChecksumCapabilities::default()).unwrap();
            Received::Tcp {
                src: SocketAddrV6::new(src, repr.src_port, 0, 0),
                dst_port: repr.dst_port,
                control: repr.control,
                seq: u32_of(repr.seq_number),
                ack: repr.ack_number.map(u32_of),
                window: repr.window_len,
                mss: repr.max_seg_size,
                payload: repr.payload.to_vec(),
            }
        }
        IpProtocol::Icmpv6 => {
            let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum(&src, &dst));
            Received::Icmp {
                src,
                msg_type: u8::from(icmp.msg_type()),
                code: icmp.msg_code(),
                body: ip.payload()[4..].to_vec(),
            }
        }
        _ => Received::Other,
    }
}

fn u32_of(seq: TcpSeqNumber) -> u32 {
    u32::from_ne_bytes(seq.0.to_ne_bytes())
}

fn seq_of(value: u32) -> TcpSeqNumber {
    TcpSeqNumber(i32::from_ne_bytes(value.to_ne_bytes()))
}

/// Runs the backend until `want` picks a frame, for at most `limit`.
fn pump_until<T>(
    backend: &mut Backend,
    limit: Duration,
    mut want: impl FnMut(Received) -> Option<T>,
) -> Option<T> {
    datagram::pump_until(backend, limit, |frame| want(parse(frame)))
}

/// A UDP server on [::1] that echoes one datagram.
fn udp_echo_server() -> (SocketAddr, std::thread::JoinHandle<()>) {
    datagram::udp_echo_server("[::1]:0")
}

#[test]
fn udp_over_ipv6_to_the_gateway_reaches_host_loopback_and_back() {
    let mut backend = backend_with(|_| {});
    let (server, handle) = udp_echo_server();
    let payload: Vec<u8> = (0..1200u32).map(|i| (i * 7 + 3) as u8).collect();
    let to = SocketAddrV6::new(GATEWAY_IP6, server.port(), 0, 0);
    backend.handle_guest_frame(&udp6_frame(40_000, to, &payload), Instant::now());
    let got = pump_until(&mut backend, Duration::from_secs(5), |r| match r {
        Received::Udp { src, dst, payload } => Some((src, dst, payload)),
        _ => None,
    })
    .expect("the echo came back");
    handle.join().unwrap();
    assert_eq!(got.0, to, "the reply comes from where the guest sent it");
    assert_eq!(got.1, SocketAddrV6::new(GUEST_IP6, 40_000, 0, 0));
    assert!(got.2 == payload, "payload intact");
    assert_eq!(backend.counters().udp_bytes_to_host, 1200);
    assert_eq!(backend.counters().udp_bytes_to_guest, 1200);
    assert_eq!(backend.open_flows(flow_table::Protocol::Udp), 1);
    harness::assert_backend_quiet(
        &mut backend,
        "udp over ipv6 to the gateway reaches host loopback and back",
    );
}

#[test]
fn icmpv6_echo_to_the_gateway_is_answered() {
    let mut backend = backend_with(|_| {});
    let request = echo6_frame(GATEWAY_IP6, 0x1234, 7, b"hello");
    backend.handle_guest_frame(&request, Instant::now());
    let (src, body) = pump_until(&mut backend, Duration::from_secs(3), |r| match r {
        Received::Icmp {
            src,
            msg_type: 129,
            code: 0,
            body,
        } => Some((src, body)),
        _ => None,
    })
    .expect("an echo reply");
    assert_eq!(src, GATEWAY_IP6);
    assert_eq!(&body[..4], &[0x12, 0x34, 0, 7], "identifier and sequence");
    assert_eq!(&body[4..], b"hello");
    harness::assert_backend_quiet(&mut backend, "icmpv6 echo to the gateway is answered");
}

#[test]
fn denied_ipv6_destination_gets_admin_prohibited_and_no_socket() {
    let (server, _handle) = udp_echo_server();
    let mut backend = backend_with(|c| {
        c.rules.deny = DenyList::new(["fd00:0:0:2::2/128".parse::<Cidr>().unwrap()]);
    });
    let to = SocketAddrV6::new(GATEWAY_IP6, server.port(), 0, 0);
    let frame = udp6_frame(40_003, to, b"x");
    backend.handle_guest_frame(&frame, Instant::now());
    let (src, code, body) = pump_until(&mut backend, Duration::from_secs(2), |r| match r {
        Received::Icmp {
            src,
            msg_type: 1,
            code,
            body,
        } => Some((src, code, body)),
        _ => None,
    })
    .expect("an ICMPv6 destination unreachable");
    assert_eq!(src, GATEWAY_IP6);
    assert_eq!(code, 1, "communication administratively prohibited");
    assert_eq!(&body[4..], &frame[14..], "the whole datagram is quoted");
    assert_eq!(backend.counters().denied, 1);
    assert_eq!(
        backend.open_flows(flow_table::Protocol::Udp),
        0,
        "no flow, no socket"
    );

    // An echo request to the denied address is refused the same way.
    backend.handle_guest_frame(&echo6_frame(GATEWAY_IP6, 1, 1, b"?"), Instant::now());
    let code = pump_until(&mut backend, Duration::from_secs(2), |r| match r {
        Received::Icmp {
            msg_type: 1, code, ..
        } => Some(code),
        _ => None,
    })
    .expect("an ICMPv6 error about the echo request");
    assert_eq!(code, 1);
    assert_eq!(backend.counters().denied, 2);
    harness::assert_backend_quiet(
        &mut backend,
        "denied ipv6 destination gets admin prohibited and no socket",
    );
}

#[test]
fn dns_over_ipv6_to_the_dns_address_reaches_the_test_responder() {
    let (resolver, handle) = dns_responder();
    let mut backend = backend_with(|c| c.host_resolver = Some(resolver));
    let query = dns_query(0xbeef, "slipway.test");
    let to = SocketAddrV6::new(DNS_IP6, 53, 0, 0);
    backend.handle_guest_frame(&udp6_frame(5353, to, &query), Instant::now());
    let (src, dst, payload) = pump_until(&mut backend, Duration::from_secs(5), |r| match r {
        Received::Udp { src, dst, payload } => Some((src, dst, payload)),
        _ => None,
    })
    .expect("a DNS reply");
    let seen = handle.join().unwrap();
    assert_eq!(
        &seen[12..],
        &query[12..],
        "the question reached the upstream"
    );
    assert_eq!(src, to, "the reply comes from the IPv6 DNS address");
    assert_eq!(dst, SocketAddrV6::new(GUEST_IP6, 5353, 0, 0));
    assert_eq!(&payload[..2], &[0xbe, 0xef], "the guest's id is restored");
    assert_eq!(&payload[payload.len() - 4..], &[192, 0, 2, 7]);
    assert_eq!(backend.counters().dns_queries, 1);
    harness::assert_backend_quiet(
        &mut backend,
        "dns over ipv6 to the dns address reaches the test responder",
    );
}

/// A guest TCP endpoint over IPv6, just enough for one transfer each way:
/// in-order receive, a bounded window of segments in flight, go-back-N on
/// a stall, and a FIN once everything it sends is acknowledged.
struct Guest6 {
    port: u16,
    remote: SocketAddrV6,
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    rcv_nxt: u32,
    peer_window: u32,
    peer_mss: Option<u16>,
    to_send: Vec<u8>,
    received: Vec<u8>,
    established: bool,
    fin_sent: bool,
    peer_fin: bool,
    last_progress: Instant,
}

/// Payload bytes of one guest segment.
const GUEST_SEGMENT: usize = 1400;
/// Bytes the guest keeps in flight at most.
const GUEST_IN_FLIGHT: u32 = 32 * 1024;

impl Guest6 {
    fn repr(&self, control: TcpControl, seq: u32) -> TcpRepr<'static> {
        TcpRepr {
            src_port: 0,
            dst_port: 0,
            control,
            seq_number: seq_of(seq),
            ack_number: self.established.then(|| seq_of(self.rcv_nxt)),
            window_len: 65535,
            window_scale: None,
            max_seg_size: (control == TcpControl::Syn).then_some(65460),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        }
    }

    fn send(&self, backend: &mut Backend, control: TcpControl, seq: u32, payload: &[u8]) {
        let repr = TcpRepr {
            payload,
            ..self.repr(control, seq)
        };
        backend.handle_guest_frame(&tcp6_frame(self.port, self.remote, &repr), Instant::now());
    }

    fn fin_acked(&self) -> bool {
        self.fin_sent && self.snd_una == self.snd_nxt
    }

    /// Takes one segment of the flow's.
    fn on_segment(&mut self, backend: &mut Backend, seg: Received) {
        let Received::Tcp {
            control,
            seq,
            ack,
            window,
            mss,
            payload,
            ..
        } = seg
        else {
            return;
        };
        assert_ne!(control, TcpControl::Rst, "the flow was reset");
        if control == TcpControl::Syn {
            self.established = true;
            self.rcv_nxt = seq.wrapping_add(1);
            self.peer_mss = mss;
        }
        if let Some(ack) = ack {
            let advance = ack.wrapping_sub(self.snd_una);
            if advance > 0 && advance <= self.snd_nxt.wrapping_sub(self.snd_una) {
                self.snd_una = ack;
                self.last_progress = Instant::now();
            }
        }
        self.peer_window = u32::from(window);
        let mut answer = control == TcpControl::Syn;
        if !payload.is_empty() || control == TcpControl::Fin {
            answer = true;
            if seq == self.rcv_nxt {
                self.received.extend_from_slice(&payload);
                self.rcv_nxt = self.rcv_nxt.wrapping_add(payload.len() as u32);
                if control == TcpControl::Fin {
                    self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                    self.peer_fin = true;
                }
            }
        }
        if answer {
            self.send(backend, TcpControl::None, self.snd_nxt, &[]);
        }
    }

    /// Sends what the window allows, going back to the first unacknowledged
    /// byte after a stall, and the FIN once everything is acknowledged.
    fn push(&mut self, backend: &mut Backend) {
        if !self.established {
            return;
        }
        if self.snd_nxt != self.snd_una && self.last_progress.elapsed() > Duration::from_millis(300)
        {
            self.snd_nxt = self.snd_una;
            self.fin_sent = false;
            self.last_progress = Instant::now();
        }
        let window = self.peer_window.min(GUEST_IN_FLIGHT);
        // Bounded: each turn sends a segment or stops.
        for _ in 0..64 {
            let offset = self.snd_nxt.wrapping_sub(self.iss.wrapping_add(1)) as usize;
            let in_flight = self.snd_nxt.wrapping_sub(self.snd_una);
            let rest = self.to_send.len().saturating_sub(offset);
            if rest == 0 || in_flight >= window {
                break;
            }
            let room = (window - in_flight) as usize;
            let len = rest.min(GUEST_SEGMENT).min(room);
            let chunk = self.to_send[offset..offset + len].to_vec();
            self.send(backend, TcpControl::Psh, self.snd_nxt, &chunk);
            self.snd_nxt = self.snd_nxt.wrapping_add(len as u32);
        }
        let all_acked =
            self.snd_una.wrapping_sub(self.iss.wrapping_add(1)) as usize == self.to_send.len();
        if all_acked && !self.fin_sent {
            self.send(backend, TcpControl::Fin, self.snd_nxt, &[]);
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
            self.fin_sent = true;
        }
    }
}

#[test]
fn tcp_over_ipv6_to_host_loopback_carries_data_both_ways_intact() {
    const UP: usize = 200_000;
    const DOWN: usize = 300_000;
    let listener = TcpListener::bind("[::1]:0").unwrap();
    let server_port = listener.local_addr().unwrap().port();
    let down = harness::pattern(DOWN, 62);
    let down_for_server = down.clone();
    let server = std::thread::spawn(move || {
        let mut stream = harness::accept_within(&listener, Duration::from_secs(10))
            .expect("the connection reached the server");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        stream.write_all(&down_for_server).unwrap();
        got
    });
    let mut backend = backend_with(|_| {});
    let up = harness::pattern(UP, 61);
    let iss = 0xffff_f000;
    let mut guest = Guest6 {
        port: 41_000,
        remote: SocketAddrV6::new(GATEWAY_IP6, server_port, 0, 0),
        iss,
        snd_una: iss,
        snd_nxt: iss.wrapping_add(1),
        rcv_nxt: 0,
        peer_window: 0,
        peer_mss: None,
        to_send: up.clone(),
        received: Vec::new(),
        established: false,
        fin_sent: false,
        peer_fin: false,
        last_progress: Instant::now(),
    };
    guest.send(&mut backend, TcpControl::Syn, iss, &[]);
    let end = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 70_000];
    while Instant::now() < end && !(guest.peer_fin && guest.fin_acked()) {
        // Bounded: the backend has finitely many frames queued.
        for _ in 0..256 {
            let Some(len) = backend.poll_guest_frame(&mut buf, Instant::now()) else {
                break;
            };
            let seg = parse(&buf[..len]);
            if let Received::Tcp { src, dst_port, .. } = &seg {
                assert_eq!(*src, guest.remote, "segments come from the gateway address");
                assert_eq!(*dst_port, guest.port);
                guest.on_segment(&mut backend, seg);
            }
        }
        guest.push(&mut backend);
        backend
            .wait(Some(Instant::now() + Duration::from_millis(10)))
            .unwrap();
    }
    assert!(guest.peer_fin && guest.fin_acked(), "both sides closed");
    assert_eq!(guest.peer_mss, Some(65520 - 60), "MSS from the IPv6 MTU");
    let got = server.join().unwrap();
    assert_eq!(got.len(), UP);
    assert_eq!(
        harness::fnv(&got),
        harness::fnv(&up),
        "guest to host intact"
    );
    assert_eq!(guest.received.len(), DOWN);
    assert_eq!(
        harness::fnv(&guest.received),
        harness::fnv(&down),
        "host to guest intact"
    );
    assert_eq!(backend.counters().tcp_flows_opened, 1);
    harness::assert_backend_quiet(
        &mut backend,
        "tcp over ipv6 to host loopback carries data both ways intact",
    );
}

#[test]
fn tcp_over_ipv6_segment_of_no_flow_gets_an_rst() {
    let mut backend = backend_with(|_| {});
    let remote = SocketAddrV6::new(GATEWAY_IP6, harness::free_port(), 0, 0);
    let repr = TcpRepr {
        src_port: 0,
        dst_port: 0,
        control: TcpControl::None,
        seq_number: seq_of(100),
        ack_number: Some(seq_of(5000)),
        window_len: 1024,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    backend.handle_guest_frame(&tcp6_frame(41_001, remote, &repr), Instant::now());
    let (control, seq) = pump_until(&mut backend, Duration::from_secs(2), |r| match r {
        Received::Tcp {
            src, control, seq, ..
        } if src == remote => Some((control, seq)),
        _ => None,
    })
    .expect("an RST");
    assert_eq!(control, TcpControl::Rst);
    assert_eq!(seq, 5000, "the RST takes its sequence number from the ACK");
    assert_eq!(backend.counters().rst_unknown, 1);
    harness::assert_backend_quiet(&mut backend, "tcp over ipv6 segment of no flow gets an rst");
}

/// An address of the namespace's own in [`with_v6_host`]: the kernel
/// answers echo requests to it.
const V6_HOST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// A host beyond the gateway: an address of the namespace's loopback.
const V6_LOCAL: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);

/// Runs `body` on a thread in a new network namespace whose only link is a
/// tap with [`V6_HOST`]/64 that nobody reads, ping sockets allowed. Returns
/// why it could not.
fn with_v6_host(body: impl FnOnce() + Send) -> Result<(), String> {
    use slipway::netns::{Namespace, TapConfig, TapIpv6, TapOffload, open_tap};
    let ns = Namespace::create().map_err(|e| format!("namespace: {e}"))?;
    let cfg = TapConfig {
        name: "v6host0".into(),
        mac: [0x02, 0, 0x5e, 0, 0x53, 2],
        mtu: 1500,
        addr_v4: None,
        gateway_v4: None,
        addr_v6: Some((V6_HOST, 64)),
        gateway_v6: None,
        // IPv6 on, so the static address takes.
        ipv6: TapIpv6::Autoconf,
        offload: TapOffload::None,
    };
    // Held open for the test: the link is up while its descriptor is.
    let _tap = open_tap(&ns, &cfg).map_err(|e| format!("tap: {e}"))?;
    ns.run_in(|| {
        // Ping sockets of both families follow this one setting.
        std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")?;
        body();
        Ok(())
    })
    .map_err(|e| e.to_string())
}

#[test]
fn icmpv6_echo_beyond_the_gateway_is_relayed_on_an_echo_socket() {
    let test = "icmpv6_echo_beyond_the_gateway_is_relayed_on_an_echo_socket";
    let ran = with_v6_host(|| {
        // The pinged host is an address of the namespace's loopback, which is
        // up from the start: the new tap's link is not on this path.
        let added = std::process::Command::new("ip")
            .args(["-6", "addr", "add", &format!("{V6_LOCAL}/128"), "dev", "lo"])
            .status()
            .expect("ip runs");
        assert!(added.success(), "ip -6 addr add {V6_LOCAL} dev lo: {added}");
        let mut backend = backend_with(|_| {});
        // Sent again each second, as ping does, should one be lost; the flow
        // is the same each time.
        let request = echo6_frame(V6_LOCAL, 0x4321, 9, b"beyond");
        let reply = (0..5).find_map(|_| {
            backend.handle_guest_frame(&request, Instant::now());
            pump_until(&mut backend, Duration::from_secs(1), |r| match r {
                Received::Icmp {
                    src,
                    msg_type: 129,
                    body,
                    ..
                } => Some((src, body)),
                _ => None,
            })
        });
        let (src, body) = reply.unwrap_or_else(|| {
            panic!(
                "no echo reply reached the guest: {} echo flows, echo over {:?}, counters {:?}, \
                 addresses {:?}, routes {:?}",
                backend.open_flows(flow_table::Protocol::Icmp),
                relay_udp_icmp::probe_echo(nat_core::IpFamily::V6).kind(),
                backend.counters(),
                std::fs::read_to_string("/proc/net/if_inet6"),
                std::fs::read_to_string("/proc/net/ipv6_route"),
            )
        });
        assert_eq!(src, V6_LOCAL, "the reply comes from the pinged host");
        assert_eq!(
            &body[..4],
            &[0x43, 0x21, 0, 9],
            "the guest's identifier restored"
        );
        assert_eq!(&body[4..], b"beyond");
        assert_eq!(backend.open_flows(flow_table::Protocol::Icmp), 1);
        harness::assert_backend_quiet(&mut backend, test);
    });
    if let Err(why) = ran {
        eprintln!("{test}: skipped: {why}");
    }
}

#[test]
fn icmpv6_echo_to_an_absent_neighbour_drains_its_error_and_goes_quiet() {
    let test = "icmpv6_echo_to_an_absent_neighbour_drains_its_error_and_goes_quiet";
    // On the namespace's link, but nobody answers neighbour solicitations.
    let absent = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x77);
    let ran = with_v6_host(|| {
        let mut backend = backend_with(|_| {});
        backend.handle_guest_frame(&echo6_frame(absent, 0x5555, 1, b"?"), Instant::now());
        let end = Instant::now() + Duration::from_secs(10);
        // Bounded: neighbour discovery gives up within a few seconds.
        while backend.counters().host_icmp_errors == 0 && Instant::now() < end {
            let _ = pump_until(&mut backend, Duration::from_millis(200), |_| None::<()>);
        }
        assert_eq!(
            backend.counters().host_icmp_errors,
            1,
            "the host's error was read"
        );
        harness::assert_backend_quiet(&mut backend, test);
    });
    if let Err(why) = ran {
        eprintln!("{test}: skipped: {why}");
    }
}
