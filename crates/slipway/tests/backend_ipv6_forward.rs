//! Frame-level tests of port forwards over IPv6: host peers connect to
//! real forwarded sockets, the guest is synthetic frames. What the guest
//! sees (family, addresses, ports) and what reaches either side (SHA-256)
//! is the contract.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6, TcpStream,
    UdpSocket,
};
use std::time::{Duration, Instant};

use frontdesk::DropReason;
use nat_core::{Plan, Rules};
use slipway::{Backend, BackendConfig, BackendError, Checksum, FrameBackend};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    DhcpMessageType, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet,
    Ipv6Packet, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket,
};
use test_support::e2e::data::Sha256;
use test_support::harness::datagram::{self, dns_query, dns_responder_at};
use test_support::harness::frames::{
    DNS_IP6, GATEWAY_IP6, GUEST_IP6, GuestSeg, arp_request, dhcp_message, echo6_frame, ipv6_frame,
    tcp6_frame, tcp6_frame_from, udp_frame, udp6_frame,
};
use test_support::harness::{self, free_port};

const GUEST_IP4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const GATEWAY_IP4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// Where router solicitations go (RFC 4291, section 2.7.1).
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

fn backend_with(plan: Plan, configure: impl FnOnce(&mut Rules)) -> Backend {
    let mut rules = Rules::default();
    configure(&mut rules);
    Backend::new(BackendConfig::new(plan, rules), Instant::now()).unwrap()
}

/// A frame for the guest as the tests read it, either family, checksums
/// verified.
#[derive(Debug)]
enum Seen {
    Tcp {
        src: SocketAddr,
        dst: SocketAddr,
        control: TcpControl,
        seq: u32,
        ack: Option<u32>,
        payload: Vec<u8>,
    },
    Udp {
        src: SocketAddr,
        dst: SocketAddr,
        payload: Vec<u8>,
    },
    Other,
}

fn seen(frame: &[u8]) -> Seen {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let (src, dst, proto, body) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            let ends = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
            (ends.0, ends.1, ip.next_header(), ip.payload().to_vec())
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
            let ends = (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()));
            (ends.0, ends.1, ip.next_header(), ip.payload().to_vec())
        }
        _ => return Seen::Other,
    };
    let (s, d) = (IpAddress::from(src), IpAddress::from(dst));
    match proto {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(&body[..]).unwrap();
            assert!(tcp.verify_checksum(&s, &d), "TCP checksum");
            let repr = TcpRepr::parse(&tcp, &s, &d, &ChecksumCapabilities::default()).unwrap();
            Seen::Tcp {
                src: SocketAddr::new(src, repr.src_port),
                dst: SocketAddr::new(dst, repr.dst_port),
                control: repr.control,
                seq: seq_u32(repr.seq_number),
                ack: repr.ack_number.map(seq_u32),
                payload: repr.payload.to_vec(),
            }
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(&body[..]).unwrap();
            assert!(udp.verify_checksum(&s, &d), "UDP checksum");
            Seen::Udp {
                src: SocketAddr::new(src, udp.src_port()),
                dst: SocketAddr::new(dst, udp.dst_port()),
                payload: udp.payload().to_vec(),
            }
        }
        _ => Seen::Other,
    }
}

fn seq_u32(seq: TcpSeqNumber) -> u32 {
    u32::from_ne_bytes(seq.0.to_ne_bytes())
}

fn seq_of(value: u32) -> TcpSeqNumber {
    TcpSeqNumber(i32::from_ne_bytes(value.to_ne_bytes()))
}

fn pump<T>(backend: &mut Backend, limit: Duration, mut want: impl FnMut(Seen) -> Option<T>) -> T {
    datagram::pump_until(backend, limit, |frame| want(seen(frame)))
        .expect("the frame the test waits for came")
}

/// The first SYN slipway sends the guest for a forwarded connection.
fn forwarded_syn(backend: &mut Backend) -> (SocketAddr, SocketAddr, u32) {
    pump(backend, Duration::from_secs(5), |s| match s {
        Seen::Tcp {
            src,
            dst,
            control: TcpControl::Syn,
            seq,
            ..
        } => Some((src, dst, seq)),
        _ => None,
    })
}

/// A guest TCP header with `control`, `seq` and `ack`, ports unset.
fn segment6(control: TcpControl, seq: u32, ack: u32) -> TcpRepr<'static> {
    TcpRepr {
        src_port: 0,
        dst_port: 0,
        control,
        seq_number: seq_of(seq),
        ack_number: Some(seq_of(ack)),
        window_len: 65535,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(1440),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    }
}

fn v6(addr: SocketAddr) -> SocketAddrV6 {
    match addr {
        SocketAddr::V6(a) => a,
        SocketAddr::V4(a) => panic!("{a} is no IPv6 address"),
    }
}

/// The guest's side of a connection a host peer opened through a forward
/// over IPv6, answering the SYN and then moving bytes stop-and-wait:
/// everything it receives in order is acknowledged at once, and it sends
/// its next segment once the last is acknowledged (again after 200 ms
/// without).
struct Accepted {
    guest_port: u16,
    peer: SocketAddr,
    snd_una: u32,
    rcv_nxt: u32,
    upload: Vec<u8>,
    offset: usize,
    in_flight: usize,
    sent_at: Instant,
    fin_sent: bool,
    received: Vec<u8>,
    peer_fin: bool,
}

impl Accepted {
    fn answer(backend: &mut Backend, syn: (SocketAddr, SocketAddr, u32), upload: Vec<u8>) -> Self {
        let (peer, guest, peer_iss) = syn;
        let iss: u32 = 0x1000_0000;
        let guest = Self {
            guest_port: guest.port(),
            peer,
            snd_una: iss.wrapping_add(1),
            rcv_nxt: peer_iss.wrapping_add(1),
            upload,
            offset: 0,
            in_flight: 0,
            sent_at: Instant::now(),
            fin_sent: false,
            received: Vec::new(),
            peer_fin: false,
        };
        guest.send(backend, TcpControl::Syn, iss, &[]);
        guest
    }

    fn send(&self, backend: &mut Backend, control: TcpControl, seq: u32, payload: &[u8]) {
        let repr = TcpRepr {
            payload,
            ..segment6(control, seq, self.rcv_nxt)
        };
        let frame = tcp6_frame(self.guest_port, v6(self.peer), &repr);
        backend.handle_guest_frame(&frame, Instant::now());
    }

    fn done(&self) -> bool {
        self.peer_fin && self.fin_sent && self.in_flight == 0
    }

    fn take(&mut self, backend: &mut Backend, seg: Seen) {
        let Seen::Tcp {
            src,
            control,
            seq,
            ack,
            payload,
            ..
        } = seg
        else {
            return;
        };
        if src != self.peer {
            return;
        }
        assert_ne!(control, TcpControl::Rst, "slipway reset the flow");
        if let Some(ack) = ack {
            let sent = u32::try_from(self.in_flight).unwrap();
            if ack == self.snd_una.wrapping_add(sent) {
                self.snd_una = ack;
                self.offset += self.in_flight.min(self.upload.len() - self.offset);
                self.in_flight = 0;
            }
        }
        let fin = control == TcpControl::Fin;
        if seq == self.rcv_nxt && (!payload.is_empty() || fin) {
            self.received.extend_from_slice(&payload);
            let len = u32::try_from(payload.len()).unwrap() + u32::from(fin);
            self.rcv_nxt = self.rcv_nxt.wrapping_add(len);
            self.peer_fin |= fin;
            self.send(backend, TcpControl::None, self.snd_una, &[]);
        }
    }

    /// Sends the next segment, or the FIN, unless one is in flight and not
    /// yet overdue.
    fn push(&mut self, backend: &mut Backend) {
        if self.in_flight > 0 && self.sent_at.elapsed() < Duration::from_millis(200) {
            return;
        }
        let rest = self.upload.len() - self.offset;
        if rest > 0 {
            let len = rest.min(1400);
            let chunk = self.upload[self.offset..self.offset + len].to_vec();
            self.send(backend, TcpControl::Psh, self.snd_una, &chunk);
            self.in_flight = len;
        } else if !self.fin_sent || self.in_flight > 0 {
            self.send(backend, TcpControl::Fin, self.snd_una, &[]);
            self.fin_sent = true;
            self.in_flight = 1;
        }
        self.sent_at = Instant::now();
    }
}

/// Moves the bytes of `guest`'s connection until both sides closed, for
/// at most 20 s.
fn transfer(backend: &mut Backend, guest: &mut Accepted) {
    let end = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 70_000];
    while Instant::now() < end && !guest.done() {
        // Bounded: the backend has finitely many frames queued.
        for _ in 0..256 {
            let Some(len) = backend.poll_guest_frame(&mut buf, Instant::now()) else {
                break;
            };
            guest.take(backend, seen(&buf[..len]));
        }
        guest.push(backend);
        backend
            .wait(Some(Instant::now() + Duration::from_millis(5)))
            .unwrap();
    }
    assert!(guest.done(), "both sides closed within 20 s");
}

/// A host client that sends `upload`, half-closes, and returns everything
/// the guest sent back.
fn client(
    connect: impl FnOnce() -> std::io::Result<TcpStream> + Send + 'static,
    upload: Vec<u8>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut stream = connect().expect("the forward accepts");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(&upload).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut down = Vec::new();
        stream.read_to_end(&mut down).unwrap();
        down
    })
}

/// A host connection to the forward at `forward` carries `UP` bytes to the
/// guest and `DOWN` back, each intact; returns the ends the guest saw.
fn hashed_transfer_through(
    backend: &mut Backend,
    forward: SocketAddr,
    bind: Option<SocketAddr>,
) -> (SocketAddr, SocketAddr) {
    const UP: usize = 150_000;
    const DOWN: usize = 250_000;
    let up = harness::pattern(UP, 71);
    let down = harness::pattern(DOWN, 72);
    let client = client(move || connect_from(forward, bind), up.clone());
    let syn = forwarded_syn(backend);
    let mut guest = Accepted::answer(backend, syn, down.clone());
    transfer(backend, &mut guest);
    let got_down = client.join().unwrap();
    assert_eq!(guest.received.len(), UP);
    assert_eq!(
        Sha256::digest(&guest.received),
        Sha256::digest(&up),
        "host to guest intact"
    );
    assert_eq!(got_down.len(), DOWN);
    assert_eq!(
        Sha256::digest(&got_down),
        Sha256::digest(&down),
        "guest to host intact"
    );
    (syn.0, syn.1)
}

/// Connects to `to`, from `bind` when given.
fn connect_from(to: SocketAddr, bind: Option<SocketAddr>) -> std::io::Result<TcpStream> {
    let Some(bind) = bind else {
        return TcpStream::connect_timeout(&to, Duration::from_secs(5));
    };
    use rustix::net::{AddressFamily, SocketType, bind as bind_to, connect, socket};
    let family = if bind.is_ipv6() {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let fd = socket(family, SocketType::STREAM, None)?;
    bind_to(&fd, &bind)?;
    connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

#[test]
fn tcp_forward_on_ipv6_loopback_reaches_the_guest_over_ipv6_intact_both_ways() {
    let port = free_port();
    let mut backend = backend_with(Plan::default(), |r| {
        r.tcp_forwards = format!("[::1]/{port}:8080").parse().unwrap();
    });
    let forward = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    assert_eq!(backend.tcp_listeners(), [forward], "bound on ::1 alone");
    // The guest is seen using its address once: an echo to the gateway.
    backend.handle_guest_frame(&echo6_frame(GATEWAY_IP6, 1, 1, b"hi"), Instant::now());
    let (peer, guest) = hashed_transfer_through(&mut backend, forward, None);
    assert_eq!(
        guest,
        SocketAddr::from((GUEST_IP6, 8080)),
        "to the guest's IPv6 address"
    );
    assert_eq!(
        peer.ip(),
        IpAddr::V6(GATEWAY_IP6),
        "host loopback appears as the gateway"
    );
    assert_eq!(backend.counters().tcp_flows_accepted, 1);
    harness::assert_backend_quiet(
        &mut backend,
        "tcp forward on ipv6 loopback reaches the guest over ipv6 intact both ways",
    );
}

#[test]
fn ipv6_forward_before_any_guest_traffic_goes_to_the_plans_or_the_slaac_address() {
    // The address the guest forms by SLAAC from its MAC 52:54:00:12:34:56.
    let slaac: Ipv6Addr = "fd00:0:0:2:5054:ff:fe12:3456".parse().unwrap();
    let configured: Ipv6Addr = "fd00:0:0:2::99".parse().unwrap();
    let plans = [
        (Plan::default(), slaac),
        (
            Plan::builder().ipv6_guest(configured).build().unwrap(),
            configured,
        ),
    ];
    for (plan, expected) in plans {
        let port = free_port();
        let mut backend = backend_with(plan, |r| {
            r.tcp_forwards = format!("[::1]/{port}:22").parse().unwrap();
        });
        let stream = TcpStream::connect((Ipv6Addr::LOCALHOST, port)).unwrap();
        let (peer, guest, seq) = forwarded_syn(&mut backend);
        assert_eq!(guest, SocketAddr::from((expected, 22)));
        // Refused by the guest: the host peer is reset, the flow gone.
        let rst = segment6(TcpControl::Rst, 0, seq.wrapping_add(1));
        let frame = tcp6_frame_from(SocketAddrV6::new(expected, 22, 0, 0), v6(peer), &rst);
        backend.handle_guest_frame(&frame, Instant::now());
        harness::assert_backend_quiet(&mut backend, "forward before guest traffic");
        drop(stream);
    }
}

#[test]
fn forward_without_address_listens_on_both_families_and_keeps_each_in_its_own() {
    let port = free_port();
    let mut backend = backend_with(Plan::default(), |r| {
        r.tcp_forwards = format!("{port}:8080").parse().unwrap();
    });
    let mut listeners = backend.tcp_listeners();
    listeners.sort();
    assert_eq!(
        listeners,
        [
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
        ]
    );
    let over_v4 = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    let (peer, guest, seq) = forwarded_syn(&mut backend);
    assert_eq!(
        guest,
        SocketAddr::from((GUEST_IP4, 8080)),
        "IPv4 stays IPv4"
    );
    assert_eq!(peer.ip(), IpAddr::V4(GATEWAY_IP4));
    let SocketAddr::V4(peer4) = peer else {
        unreachable!()
    };
    let rst = GuestSeg::bare(8080, peer4, 0, Some(seq.wrapping_add(1)), TcpControl::Rst);
    backend.handle_guest_frame(&rst.frame(&[]), Instant::now());

    let over_v6 = TcpStream::connect((Ipv6Addr::LOCALHOST, port)).unwrap();
    let (peer, guest, seq) = forwarded_syn(&mut backend);
    assert!(
        guest.is_ipv6() && guest.port() == 8080,
        "IPv6 stays IPv6: {guest}"
    );
    assert_eq!(peer.ip(), IpAddr::V6(GATEWAY_IP6));
    let SocketAddr::V6(guest6) = guest else {
        unreachable!()
    };
    let rst = segment6(TcpControl::Rst, 0, seq.wrapping_add(1));
    let frame = tcp6_frame_from(guest6, v6(peer), &rst);
    backend.handle_guest_frame(&frame, Instant::now());
    harness::assert_backend_quiet(&mut backend, "forward without address on both families");
    drop((over_v4, over_v6));

    // Without IPv6 in the plan nothing listens on it: the host refuses.
    let port = free_port();
    let v4_only = Plan::builder().disable_ipv6().build().unwrap();
    let backend = backend_with(v4_only, |r| {
        r.tcp_forwards = format!("{port}").parse().unwrap();
    });
    assert_eq!(
        backend.tcp_listeners(),
        [SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))]
    );
    let refused = TcpStream::connect((Ipv6Addr::LOCALHOST, port)).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    // And a forward that names an IPv6 address does not start.
    let rules = Rules {
        tcp_forwards: format!("[::1]/{port}").parse().unwrap(),
        ..Rules::default()
    };
    let config = BackendConfig::new(Plan::builder().disable_ipv6().build().unwrap(), rules);
    let error = Backend::new(config, Instant::now()).unwrap_err();
    assert!(matches!(error, BackendError::Rules(_)), "{error}");
}

#[test]
fn udp_forward_on_ipv6_carries_datagrams_both_ways() {
    let port = free_port();
    let mut backend = backend_with(Plan::default(), |r| {
        r.udp_forwards = format!("[::1]/{port}:5353").parse().unwrap();
    });
    backend.handle_guest_frame(&echo6_frame(GATEWAY_IP6, 1, 1, b"hi"), Instant::now());
    let host = UdpSocket::bind("[::1]:0").unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let question = harness::pattern(1400, 73);
    host.send_to(&question, (Ipv6Addr::LOCALHOST, port))
        .unwrap();
    let (src, dst, payload) = pump(&mut backend, Duration::from_secs(5), |s| match s {
        Seen::Udp { src, dst, payload } => Some((src, dst, payload)),
        _ => None,
    });
    assert_eq!(dst, SocketAddr::from((GUEST_IP6, 5353)));
    assert_eq!(
        src,
        SocketAddr::from((GATEWAY_IP6, host.local_addr().unwrap().port()))
    );
    assert_eq!(Sha256::digest(&payload), Sha256::digest(&question));
    let answer = harness::pattern(900, 74);
    backend.handle_guest_frame(&udp6_frame(5353, v6(src), &answer), Instant::now());
    let _ = datagram::pump_until(&mut backend, Duration::from_millis(200), |_| None::<()>);
    let mut buf = [0u8; 2048];
    let (n, from) = host.recv_from(&mut buf).unwrap();
    assert_eq!(from, SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
    assert_eq!(Sha256::digest(&buf[..n]), Sha256::digest(&answer));
    harness::assert_backend_quiet(
        &mut backend,
        "udp forward on ipv6 carries datagrams both ways",
    );
}

/// A host peer beyond loopback, in a namespace of the test's own.
const PEER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The forwarded address, in the same namespace.
const FORWARDED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// Runs `body` in a new network namespace whose loopback carries [`PEER`]
/// and [`FORWARDED`].
fn with_peer_addresses(body: impl FnOnce() + Send) {
    let ns = match slipway::netns::Namespace::create() {
        Ok(ns) => ns,
        Err(error) => return test_support::common::skip(&format!("no namespace: {error}")),
    };
    ns.run_in(|| {
        let up = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()?;
        assert!(up.success(), "ip link set lo up: {up}");
        // Usable at once: no duplicate address detection on them.
        for addr in [PEER, FORWARDED] {
            let added = std::process::Command::new("ip")
                .args([
                    "-6",
                    "addr",
                    "add",
                    &format!("{addr}/128"),
                    "dev",
                    "lo",
                    "nodad",
                ])
                .status()?;
            assert!(added.success(), "ip -6 addr add {addr} dev lo: {added}");
        }
        body();
        Ok(())
    })
    .unwrap();
}

#[test]
fn guest_sees_the_real_ipv6_address_of_a_peer_beyond_loopback() {
    with_peer_addresses(|| {
        let port = free_port();
        let mut backend = backend_with(Plan::default(), |r| {
            r.tcp_forwards = format!("[{FORWARDED}]/{port}:8080").parse().unwrap();
            r.udp_forwards = format!("[{FORWARDED}]/{port}:5353").parse().unwrap();
        });
        backend.handle_guest_frame(&echo6_frame(GATEWAY_IP6, 1, 1, b"hi"), Instant::now());
        let forward = SocketAddr::from((FORWARDED, port));
        let from = SocketAddr::from((PEER, 0));
        let (peer, guest) = hashed_transfer_through(&mut backend, forward, Some(from));
        assert_eq!(peer.ip(), IpAddr::V6(PEER), "the peer's own address");
        assert_eq!(guest, SocketAddr::from((GUEST_IP6, 8080)));

        let host = UdpSocket::bind((PEER, 0)).unwrap();
        host.send_to(b"who", forward).unwrap();
        let src = pump(&mut backend, Duration::from_secs(5), |s| match s {
            Seen::Udp { src, .. } => Some(src),
            _ => None,
        });
        assert_eq!(
            src,
            host.local_addr().unwrap(),
            "the datagram's real source"
        );
        harness::assert_backend_quiet(&mut backend, "real ipv6 peer");
    });
}

#[test]
fn dns_goes_to_an_ipv6_upstream_whatever_the_family_of_the_query() {
    let queries = [
        (
            SocketAddr::from((DNS_IP6, 53)),
            SocketAddr::from((GUEST_IP6, 5353)),
        ),
        (
            SocketAddr::from((Ipv4Addr::new(10, 0, 2, 3), 53)),
            SocketAddr::from((GUEST_IP4, 5353)),
        ),
    ];
    for (dns, guest) in queries {
        let (upstream, responder) = dns_responder_at("[::1]:0");
        let mut backend = backend_with(Plan::default(), |r| r.dns_upstream = Some(upstream));
        let query = dns_query(0x6006, "forward.test");
        let frame = match dns {
            SocketAddr::V6(to) => udp6_frame(5353, to, &query),
            SocketAddr::V4(to) => udp_frame(5353, SocketAddrV4::new(*to.ip(), 53), &query),
        };
        backend.handle_guest_frame(&frame, Instant::now());
        let (src, dst, reply) = pump(&mut backend, Duration::from_secs(5), |s| match s {
            Seen::Udp { src, dst, payload } => Some((src, dst, payload)),
            _ => None,
        });
        let asked = responder.join().unwrap();
        assert_eq!(&asked[12..], &query[12..], "the question reached [::1]");
        assert_eq!((src, dst), (dns, guest), "answered from the DNS address");
        assert_eq!(&reply[..2], &[0x60, 0x06], "the guest's id restored");
        assert_eq!(&reply[reply.len() - 4..], &[192, 0, 2, 7]);
        harness::assert_backend_quiet(&mut backend, "dns to an ipv6 upstream");
    }
}

#[test]
fn a_family_turned_off_is_neither_answered_nor_relayed() {
    let syn = segment6(TcpControl::Syn, 7, 0);
    let syn = TcpRepr {
        ack_number: None,
        ..syn
    };
    let ipv6_frames = vec![
        // Solicitations of the router and of the gateway's MAC address get
        // no advertisement; echo, UDP, DNS and TCP no relay.
        ipv6_frame(ALL_ROUTERS, IpProtocol::Icmpv6, 8, |icmp| icmp[0] = 133),
        ipv6_frame(GATEWAY_IP6, IpProtocol::Icmpv6, 24, |icmp| icmp[0] = 135),
        echo6_frame(GATEWAY_IP6, 1, 1, b"?"),
        udp6_frame(
            5353,
            SocketAddrV6::new(DNS_IP6, 53, 0, 0),
            &dns_query(1, "off.test"),
        ),
        tcp6_frame(40_000, SocketAddrV6::new(GATEWAY_IP6, 80, 0, 0), &syn),
    ];
    let ipv4_frames = vec![
        arp_request(GATEWAY_IP4),
        dhcp_message(DhcpMessageType::Discover, 7, None, None),
        udp_frame(
            5353,
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 3), 53),
            b"?",
        ),
        GuestSeg::syn(40_001, SocketAddrV4::new(GATEWAY_IP4, 80), 7, None).frame(&[]),
    ];
    let cases = [
        (Plan::builder().disable_ipv6().build().unwrap(), ipv6_frames),
        (Plan::builder().disable_ipv4().build().unwrap(), ipv4_frames),
    ];
    for (plan, frames) in cases {
        let mut backend = backend_with(plan, |_| {});
        for frame in &frames {
            backend.handle_guest_frame(frame, Instant::now());
        }
        let answered = harness::assert_backend_quiet(&mut backend, "a family turned off");
        assert!(answered.is_empty(), "nothing answered: {answered:?}");
        let dropped = backend.frame_counters().drops(DropReason::FamilyDisabled);
        assert_eq!(dropped, frames.len() as u64, "each frame dropped, counted");
        assert_eq!(
            backend.counters().udp_flows_opened + backend.counters().tcp_flows_opened,
            0
        );
    }
}

#[test]
fn offloaded_ipv6_segments_start_their_partial_checksum_after_the_ipv6_header() {
    let port = free_port();
    let mut backend = backend_with(Plan::default(), |r| {
        r.tcp_forwards = format!("[::1]/{port}:8080").parse().unwrap();
    });
    let _stream = TcpStream::connect((Ipv6Addr::LOCALHOST, port)).unwrap();
    let mut buf = vec![0u8; 2048];
    let end = Instant::now() + Duration::from_secs(5);
    let frame = loop {
        assert!(Instant::now() < end, "no SYN for the guest within 5 s");
        if let Some(frame) = backend.poll_guest_frame_offloaded(&mut buf, Instant::now()) {
            break frame;
        }
        backend
            .wait(Some(Instant::now() + Duration::from_millis(20)))
            .unwrap();
    };
    // Ethernet (14) and IPv6 (40) headers, then TCP's checksum at 16.
    assert_eq!(
        frame.checksum,
        Checksum::Partial {
            start: 54,
            offset: 16
        }
    );
    let Seen::Tcp {
        src,
        dst,
        control: TcpControl::Syn,
        seq,
        ..
    } = seen_partial(&buf[..frame.len])
    else {
        panic!("not a SYN")
    };
    let rst = segment6(TcpControl::Rst, 0, seq.wrapping_add(1));
    backend.handle_guest_frame(&tcp6_frame_from(v6(dst), v6(src), &rst), Instant::now());
    harness::assert_backend_quiet(&mut backend, "offloaded ipv6 segment");
}

/// [`seen`] of a frame whose TCP checksum is partial: completed first
/// where its partial checksum says, as a guest's NIC would.
fn seen_partial(frame: &[u8]) -> Seen {
    let mut frame = frame.to_vec();
    let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
    let (src, dst) = (
        IpAddress::Ipv6(ip.src_addr()),
        IpAddress::Ipv6(ip.dst_addr()),
    );
    let mut tcp = TcpPacket::new_unchecked(&mut frame[54..]);
    tcp.fill_checksum(&src, &dst);
    seen(&frame)
}
