//! The small servers and clients the harness runs inside guests and on the
//! host side (as subcommands of its own binary): a 1-byte echo over TCP and
//! UDP, a DNS responder, a holder of idle connections, and the clients that
//! time request-response transactions and print their percentiles as JSON.
//!
//! Invariant: every socket operation has a timeout and every loop a bound
//! in time or count; a client never runs longer than its duration plus one
//! operation timeout, and a server exits after its lifetime.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::dns;
use crate::stats::Latency;

/// The fixed ports of the servers. The harness owns the namespaces the
/// servers run in, so fixed numbers cannot collide with anyone else's;
/// all lie below the namespaces' ephemeral range (20000 and up), so that
/// no client's leftover TIME-WAIT socket holds one.
pub mod ports {
    /// iperf3's server.
    pub const IPERF: u16 = 5201;
    /// The TCP echo server (TCP_RR and TCP_CRR).
    pub const ECHO_TCP: u16 = 7001;
    /// The UDP echo server (UDP_RR).
    pub const ECHO_UDP: u16 = 7002;
    /// The server that accepts and holds idle connections.
    pub const HOLD: u16 = 7003;
    /// The DNS responder.
    pub const DNS: u16 = 53;
    /// The echo server inside the guest, the target of inbound forwards.
    pub const GUEST_ECHO: u16 = 8000;
    /// The command agent inside a VM guest (see [`crate::agent`]).
    pub const AGENT: u16 = 7100;
    /// The first host-side port forwarded to [`GUEST_ECHO`] (each guest
    /// gets the next one).
    pub const FORWARD: u16 = 18000;
    /// The end (exclusive) of the forward ports, where the ephemeral range
    /// begins.
    pub const FORWARD_END: u16 = 20000;
}

/// How long one socket operation may take before the client gives up.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How many latency samples a client keeps (later transactions still count
/// towards the rate).
const MAX_SAMPLES: usize = 4_000_000;
/// The most connections the hold server keeps.
const MAX_HELD: usize = 65_536;
/// DNS queries in flight at once.
const DNS_WINDOW: usize = 16;

/// A client workload run inside a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientWorkload {
    /// One TCP connection, 1-byte request and response, back to back.
    TcpRr,
    /// Connect, 1-byte request and response, close; repeated.
    TcpCrr,
    /// 1-byte UDP datagram and its echo, back to back.
    UdpRr,
    /// DNS queries with a window in flight; answers per second.
    Dns,
    /// ICMP echo requests and replies, back to back.
    Icmp,
}

impl ClientWorkload {
    /// Parses the name used on the command line (`tcp_rr`, ...).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "tcp_rr" => Self::TcpRr,
            "tcp_crr" => Self::TcpCrr,
            "udp_rr" => Self::UdpRr,
            "dns" => Self::Dns,
            "icmp" => Self::Icmp,
            _ => return None,
        })
    }

    /// The command-line name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::TcpRr => "tcp_rr",
            Self::TcpCrr => "tcp_crr",
            Self::UdpRr => "udp_rr",
            Self::Dns => "dns",
            Self::Icmp => "icmp",
        }
    }
}

/// Runs `workload` against `target` for `duration` and returns its result
/// as JSON: `p50_us`, `p99_us` and `tps` for the round-trip workloads,
/// `qps` and `lost` for DNS. Every workload but ICMP (IPv4 echo) runs over
/// the target's family.
///
/// # Errors
/// The target did not answer, or a socket operation failed.
pub fn client(
    workload: ClientWorkload,
    target: SocketAddr,
    duration: Duration,
) -> Result<Value, String> {
    match workload {
        ClientWorkload::TcpRr => tcp_rr(target, duration),
        ClientWorkload::TcpCrr => connect_round_trips(target, duration),
        ClientWorkload::UdpRr => udp_rr(target, duration),
        ClientWorkload::Dns => dns_qps(target, duration),
        ClientWorkload::Icmp => match target.ip() {
            IpAddr::V4(ip) => icmp_rr(ip, duration),
            IpAddr::V6(ip) => Err(format!("icmp measures IPv4 echo only, not to {ip}")),
        },
    }
}

/// Times `transaction` back to back for `duration`.
fn round_trips(
    duration: Duration,
    mut transaction: impl FnMut() -> Result<(), String>,
) -> Result<Value, String> {
    let mut samples = Vec::new();
    let mut count: u64 = 0;
    let start = Instant::now();
    while start.elapsed() < duration {
        let t0 = Instant::now();
        transaction()?;
        let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if samples.len() < MAX_SAMPLES {
            samples.push(ns);
        }
        count += 1;
    }
    rates(&mut samples, count, start.elapsed())
}

fn rates(samples: &mut [u64], count: u64, elapsed: Duration) -> Result<Value, String> {
    let latency = Latency::of_nanos(samples).ok_or("no transaction completed")?;
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let tps = count as f64 / elapsed.as_secs_f64();
    Ok(json!({
        "p50_us": latency.p50_us,
        "p99_us": latency.p99_us,
        "tps": tps,
        "count": count,
    }))
}

fn connect(target: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&target, OP_TIMEOUT)
        .map_err(|e| format!("connect {target}: {e}"))?;
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(OP_TIMEOUT)))
        .and_then(|()| stream.set_write_timeout(Some(OP_TIMEOUT)))
        .map_err(|e| format!("socket options: {e}"))?;
    Ok(stream)
}

fn exchange(stream: &mut TcpStream) -> Result<(), String> {
    let mut byte = [b'x'];
    stream.write_all(&byte).map_err(|e| format!("send: {e}"))?;
    stream
        .read_exact(&mut byte)
        .map_err(|e| format!("receive: {e}"))
}

/// One connect-request-response transaction; the close is part of the
/// next transaction's cost, as in netperf's TCP_CRR.
fn connect_round_trip(target: SocketAddr) -> Result<(), String> {
    let mut stream = connect(target)?;
    exchange(&mut stream)
}

/// Connect-request-response transactions back to back. A transaction the
/// path refuses or resets is counted in `errors`, not timed (and shows in
/// the report); the run fails only when no transaction succeeds.
fn connect_round_trips(target: SocketAddr, duration: Duration) -> Result<Value, String> {
    let mut samples = Vec::new();
    let (mut count, mut errors) = (0u64, 0u64);
    let mut last_error = String::new();
    let start = Instant::now();
    while start.elapsed() < duration {
        let t0 = Instant::now();
        match connect_round_trip(target) {
            Ok(()) => {
                if samples.len() < MAX_SAMPLES {
                    samples.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
                }
                count += 1;
            }
            Err(error) => {
                errors += 1;
                last_error = error;
            }
        }
    }
    if count == 0 {
        return Err(format!(
            "all {errors} transactions failed, the last: {last_error}"
        ));
    }
    Ok(with(
        rates(&mut samples, count, start.elapsed())?,
        "errors",
        json!(errors),
    ))
}

fn tcp_rr(target: SocketAddr, duration: Duration) -> Result<Value, String> {
    let mut stream = connect(target)?;
    round_trips(duration, || exchange(&mut stream))
}

/// A UDP socket connected to `target` whose receives time out after
/// `timeout`.
fn connected_udp(target: SocketAddr, timeout: Duration) -> Result<UdpSocket, String> {
    let any: IpAddr = match target {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((any, 0))
        .and_then(|s| s.connect(target).map(|()| s))
        .map_err(|e| format!("udp socket to {target}: {e}"))?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(|e| format!("udp timeout: {e}"))?;
    Ok(socket)
}

fn udp_rr(target: SocketAddr, duration: Duration) -> Result<Value, String> {
    let socket = connected_udp(target, Duration::from_millis(200))?;
    let mut lost: u64 = 0;
    let result = round_trips(duration, || {
        let mut buf = [0u8; 16];
        for _ in 0..10 {
            socket.send(b"x").map_err(|e| format!("udp send: {e}"))?;
            match socket.recv(&mut buf) {
                Ok(_) => return Ok(()),
                Err(e) if is_timeout(&e) => lost += 1,
                Err(e) => return Err(format!("udp receive: {e}")),
            }
        }
        Err(format!("{target} answered none of 10 datagrams"))
    })?;
    Ok(with(result, "lost", json!(lost)))
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn with(mut value: Value, key: &str, extra: Value) -> Value {
    if let Some(map) = value.as_object_mut() {
        map.insert(key.to_owned(), extra);
    }
    value
}

fn dns_qps(target: SocketAddr, duration: Duration) -> Result<Value, String> {
    let socket = connected_udp(target, Duration::from_millis(300))?;
    let mut in_flight: Vec<u16> = Vec::with_capacity(DNS_WINDOW);
    let (mut next_id, mut answered, mut lost) = (0u16, 0u64, 0u64);
    let mut buf = [0u8; 512];
    let start = Instant::now();
    while start.elapsed() < duration {
        while in_flight.len() < DNS_WINDOW {
            next_id = next_id.wrapping_add(1);
            socket
                .send(&dns::query(next_id))
                .map_err(|e| format!("dns send: {e}"))?;
            in_flight.push(next_id);
        }
        match socket.recv(&mut buf) {
            Ok(n) => {
                let id = buf.get(..n).and_then(dns::response_id);
                if let Some(at) = in_flight.iter().position(|q| Some(*q) == id) {
                    in_flight.swap_remove(at);
                    answered += 1;
                }
            }
            Err(e) if is_timeout(&e) => {
                lost += in_flight.len() as u64;
                in_flight.clear();
            }
            Err(e) => return Err(format!("dns receive: {e}")),
        }
    }
    if answered == 0 {
        return Err(format!("{target} answered no DNS query"));
    }
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let qps = answered as f64 / start.elapsed().as_secs_f64();
    Ok(json!({ "qps": qps, "answered": answered, "lost": lost }))
}

fn icmp_rr(target: Ipv4Addr, duration: Duration) -> Result<Value, String> {
    use rustix::net::{AddressFamily, SocketType, ipproto, socket};
    // Ping sockets need the caller's group in this namespace's range; the
    // harness's clients run as root in namespaces the harness made.
    let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
    let fd = socket(AddressFamily::INET, SocketType::DGRAM, Some(ipproto::ICMP))
        .map_err(|e| format!("ping socket: {e}"))?;
    let socket = UdpSocket::from(fd);
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| format!("ping timeout: {e}"))?;
    let to = SocketAddr::new(target.into(), 0);
    let (mut seq, mut lost) = (0u16, 0u32);
    let mut buf = [0u8; 128];
    round_trips(duration, || {
        seq = seq.wrapping_add(1);
        // Echo request; the kernel fills in the identifier and checksum.
        let mut request = [0u8; 64];
        request[0] = 8;
        request[6..8].copy_from_slice(&seq.to_be_bytes());
        socket
            .send_to(&request, to)
            .map_err(|e| format!("ping send: {e}"))?;
        // A reply that does not come in time is lost; a few losses in a
        // row mean the path does not answer pings at all.
        for _ in 0..16 {
            match socket.recv(&mut buf) {
                Ok(n) if n >= 8 && buf[0] == 0 && buf[6..8] == seq.to_be_bytes() => return Ok(()),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    lost += 1;
                    if lost >= 4 {
                        return Err(format!("{target} answered no echo request in {lost} tries"));
                    }
                    socket
                        .send_to(&request, to)
                        .map_err(|e| format!("ping send: {e}"))?;
                }
                Err(e) => return Err(format!("ping reply from {target}: {e}")),
            }
        }
        Err(format!("no matching echo reply from {target}"))
    })
}

/// Serves the host side until `lifetime` passes: TCP and UDP echo, the
/// connection holder and the DNS responder, all bound to `bind`. Prints
/// `ready` once every socket is bound.
///
/// # Errors
/// A socket could not be bound.
pub fn serve_host(bind: IpAddr, lifetime: Duration) -> Result<(), String> {
    let tcp = TcpListener::bind((bind, ports::ECHO_TCP))
        .map_err(|e| format!("bind tcp {bind}:{}: {e}", ports::ECHO_TCP))?;
    let udp = UdpSocket::bind((bind, ports::ECHO_UDP))
        .map_err(|e| format!("bind udp {bind}:{}: {e}", ports::ECHO_UDP))?;
    let hold = TcpListener::bind((bind, ports::HOLD))
        .map_err(|e| format!("bind tcp {bind}:{}: {e}", ports::HOLD))?;
    let dns = UdpSocket::bind((bind, ports::DNS))
        .map_err(|e| format!("bind udp {bind}:{}: {e}", ports::DNS))?;
    thread::spawn(move || echo_tcp(&tcp));
    thread::spawn(move || echo_udp(&udp, |q| Some(q.to_vec())));
    thread::spawn(move || echo_udp(&dns, dns::answer));
    thread::spawn(move || hold_connections(&hold));
    announce_ready();
    thread::sleep(lifetime);
    Ok(())
}

/// Serves the TCP echo on `0.0.0.0:port` inside a guest until `lifetime`
/// passes; prints `ready` once bound.
///
/// # Errors
/// The socket could not be bound.
pub fn serve_guest(port: u16, lifetime: Duration) -> Result<(), String> {
    let tcp = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .map_err(|e| format!("bind tcp port {port}: {e}"))?;
    thread::spawn(move || echo_tcp(&tcp));
    announce_ready();
    thread::sleep(lifetime);
    Ok(())
}

fn announce_ready() {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
}

/// Echoes each connection in turn until it closes. The clients open one
/// connection at a time, so one connection at a time is served, without a
/// thread hop in the way of the latency being measured.
fn echo_tcp(listener: &TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    }
}

fn echo_udp(socket: &UdpSocket, reply: impl Fn(&[u8]) -> Option<Vec<u8>>) {
    let mut buf = [0u8; 2048];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if let Some(response) = reply(&buf[..n]) {
            let _ = socket.send_to(&response, from);
        }
    }
}

fn hold_connections(listener: &TcpListener) {
    let mut held = Vec::new();
    for stream in listener.incoming().flatten() {
        if held.len() < MAX_HELD {
            held.push(stream);
        }
    }
}

/// Opens `count` connections to `target`, prints `held N`, and keeps them
/// open until `lifetime` passes (or the harness kills it).
///
/// # Errors
/// A connection failed, or opening all of them took longer than two
/// minutes.
pub fn hold(target: SocketAddr, count: usize, lifetime: Duration) -> Result<(), String> {
    crate::sys::raise_nofile();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        if Instant::now() > deadline {
            return Err(format!("opened only {i} of {count} connections in 120 s"));
        }
        let stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))
            .map_err(|e| format!("connection {} of {count} to {target}: {e}", i + 1))?;
        held.push(stream);
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "held {}", held.len());
    let _ = out.flush();
    thread::sleep(lifetime);
    Ok(())
}

/// Connects to `target` until a TCP connection succeeds and the echo
/// answers, or `limit` passes.
///
/// # Errors
/// The target never answered within `limit`.
pub fn probe(target: SocketAddr, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match connect_round_trip(target) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{target} did not answer within {limit:?}: {last}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Serves a TCP and a UDP echo on ephemeral ports of `loopback`.
    fn echo_servers(loopback: IpAddr) -> (SocketAddr, SocketAddr) {
        let tcp = TcpListener::bind((loopback, 0)).unwrap();
        let udp = UdpSocket::bind((loopback, 0)).unwrap();
        let addrs = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
        thread::spawn(move || echo_tcp(&tcp));
        thread::spawn(move || echo_udp(&udp, |q| Some(q.to_vec())));
        addrs
    }

    fn positive(value: &Value, key: &str) -> f64 {
        let x = value[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {value}"));
        assert!(x > 0.0 && x.is_finite(), "{key} = {x}");
        x
    }

    #[test]
    fn round_trip_clients_against_loopback_echo_report_sane_percentiles_in_both_families() {
        let short = Duration::from_millis(200);
        for loopback in [
            IpAddr::from(Ipv4Addr::LOCALHOST),
            Ipv6Addr::LOCALHOST.into(),
        ] {
            let (tcp, udp) = echo_servers(loopback);
            for (workload, target) in [
                (ClientWorkload::TcpRr, tcp),
                (ClientWorkload::TcpCrr, tcp),
                (ClientWorkload::UdpRr, udp),
            ] {
                let result = client(workload, target, short).unwrap();
                let p50 = positive(&result, "p50_us");
                let p99 = positive(&result, "p99_us");
                positive(&result, "tps");
                assert!(p50 <= p99, "{workload:?} {target}: {result}");
            }
        }
    }

    #[test]
    fn icmp_client_refuses_an_ipv6_target_instead_of_pinging_over_ipv4() {
        let target = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 0);
        let error = client(ClientWorkload::Icmp, target, Duration::from_millis(100)).unwrap_err();
        assert!(error.contains("IPv4 echo only"), "{error}");
    }

    #[test]
    fn dns_client_counts_answers_from_the_responder() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        thread::spawn(move || echo_udp(&socket, dns::answer));
        let result = client(ClientWorkload::Dns, addr, Duration::from_millis(200)).unwrap();
        positive(&result, "qps");
    }

    #[test]
    fn client_against_a_closed_port_fails_instead_of_hanging() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
        let start = Instant::now();
        assert!(client(ClientWorkload::TcpRr, target, Duration::from_secs(5)).is_err());
        assert!(probe(target, Duration::from_millis(300)).is_err());
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}
