//! Servers on host loopback that the guest reaches through the gateway
//! address, or (the `_on` forms, on a listener of either family, made on
//! the host's loopback or inside a namespace) on any address. Each runs on its own threads for the rest of the test
//! binary; every read and write on a connection is bounded by
//! [`IO_TIMEOUT`].

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use super::Family;
use super::data::{Sha256, hex};

/// The bound on each read and write of a server's connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// A listener on 127.0.0.1 with an ephemeral port and a backlog of
/// `backlog` (std's is 128, too short for a burst of connections).
pub fn listener(backlog: i32) -> TcpListener {
    loopback_listener(Family::V4, backlog)
}

/// A listener on the loopback address of `family` (127.0.0.1 or ::1) with
/// an ephemeral port and a backlog of `backlog`.
pub fn loopback_listener(family: Family, backlog: i32) -> TcpListener {
    listener_at(SocketAddr::new(family.loopback(), 0), backlog)
}

/// A listener on `addr` (port 0: an ephemeral one) with a backlog of
/// `backlog`, in the calling thread's network namespace.
pub fn listener_at(addr: impl Into<SocketAddr>, backlog: i32) -> TcpListener {
    let addr = addr.into();
    try_listener_at(addr, backlog).unwrap_or_else(|e| panic!("listen on {addr}: {e}"))
}

fn try_listener_at(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd = rustix::net::socket(family, SocketType::STREAM, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    if addr.is_ipv6() {
        // An IPv6 listener takes IPv6 alone, so that a server on both
        // families can tell which one a client came over.
        sockopt::set_ipv6_v6only(&fd, true)?;
    }
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, backlog)?;
    Ok(TcpListener::from(fd))
}

fn port_of(listener: &TcpListener) -> u16 {
    listener.local_addr().expect("local_addr").port()
}

/// Calls `serve` on a new thread for every connection `listener` accepts,
/// with [`IO_TIMEOUT`] set.
fn serve_each(listener: TcpListener, serve: impl Fn(TcpStream) + Send + Sync + Clone + 'static) {
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
            let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
            let serve = serve.clone();
            thread::spawn(move || serve(stream));
        }
    });
}

/// Reads an HTTP request head; returns its lines (without line ends).
fn read_head(reader: &mut impl BufRead) -> io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
    }
}

fn content_length(head: &[String]) -> Option<usize> {
    head.iter().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

/// An HTTP server answering every request with `body`.
pub fn http_body(body: &'static [u8]) -> u16 {
    http_body_on(listener(128), body)
}

/// [`http_body`] on `listener`; returns its port.
pub fn http_body_on(listener: TcpListener, body: &'static [u8]) -> u16 {
    let port = port_of(&listener);
    serve_each(listener, move |stream| {
        if read_head(&mut BufReader::new(&stream)).is_err() {
            return;
        }
        let head = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut stream = &stream;
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    });
    port
}

/// Listeners on 127.0.0.1 and on ::1 with the same ephemeral port, so
/// that a name with addresses of both families leads to one server.
pub fn dual_stack_listeners(backlog: i32) -> [TcpListener; 2] {
    // The port free on 127.0.0.1 may be taken on ::1: a few tries.
    for _ in 0..20 {
        let v4 = loopback_listener(Family::V4, backlog);
        let addr = SocketAddr::new(Family::V6.loopback(), port_of(&v4));
        if let Ok(v6) = try_listener_at(addr, backlog) {
            return [v4, v6];
        }
    }
    panic!("no port free on both 127.0.0.1 and ::1 in 20 tries");
}

/// An HTTP server on every one of `listeners` (one port) answering each
/// request with `peer=ADDR`, the client's address, and reporting that
/// address.
pub fn http_peer_on(
    listeners: impl IntoIterator<Item = TcpListener>,
) -> (u16, Receiver<SocketAddr>) {
    let (tx, rx) = mpsc::channel();
    let mut port = 0;
    for listener in listeners {
        port = port_of(&listener);
        let tx = tx.clone();
        serve_each(listener, move |stream| {
            let Ok(peer) = stream.peer_addr() else {
                return;
            };
            if read_head(&mut BufReader::new(&stream)).is_err() {
                return;
            }
            let body = format!("peer={}\n", peer.ip());
            let answer = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = (&stream).write_all(answer.as_bytes());
            let _ = tx.send(peer);
        });
    }
    (port, rx)
}

/// What [`http_upload_sink`] received in one request.
pub struct Upload {
    /// Body bytes received.
    pub len: usize,
    /// Their SHA-256, hex.
    pub sha256: String,
    /// From the first body byte to the last.
    pub elapsed: Duration,
}

/// An HTTP server that takes a request body (Content-Length), answers
/// `200` with the number of bytes received, then hashes them and reports
/// the [`Upload`].
pub fn http_upload_sink() -> (u16, Receiver<Upload>) {
    http_upload_sink_on(listener(128))
}

/// [`http_upload_sink`] on `listener`.
pub fn http_upload_sink_on(listener: TcpListener) -> (u16, Receiver<Upload>) {
    let port = port_of(&listener);
    let (tx, rx) = mpsc::channel();
    serve_each(listener, move |stream| {
        let mut reader = BufReader::new(&stream);
        let Ok(head) = read_head(&mut reader) else {
            return;
        };
        let want = content_length(&head).unwrap_or(0);
        // What the head's reader took of the body, then straight from the
        // socket into place: the server keeps up with the guest.
        let mut body = vec![0; want];
        let mut filled = reader.buffer().len().min(want);
        body[..filled].copy_from_slice(&reader.buffer()[..filled]);
        let mut started = (filled > 0).then(Instant::now);
        while filled < want {
            match (&stream).read(&mut body[filled..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
            started.get_or_insert_with(Instant::now);
        }
        body.truncate(filled);
        let elapsed = started.map_or(Duration::ZERO, |t| t.elapsed());
        let text = format!("{}\n", body.len());
        let answer = format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = (&stream).write_all(answer.as_bytes());
        let _ = tx.send(Upload {
            len: body.len(),
            sha256: hex(&Sha256::digest(&body)),
            elapsed,
        });
    });
    (port, rx)
}

/// A server that reads exactly `len` bytes from each connection, answers
/// their SHA-256 in hex and a newline, and closes. Counts the answers.
pub fn hash_server(len: usize, backlog: i32) -> (u16, Arc<AtomicUsize>) {
    hash_server_on(listener(backlog), len)
}

/// [`hash_server`] on `listener`.
pub fn hash_server_on(listener: TcpListener, len: usize) -> (u16, Arc<AtomicUsize>) {
    let port = port_of(&listener);
    let answered = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&answered);
    serve_each(listener, move |stream| {
        let mut data = vec![0; len];
        if (&stream).read_exact(&mut data).is_err() {
            return;
        }
        let answer = format!("{}\n", hex(&Sha256::digest(&data)));
        if (&stream).write_all(answer.as_bytes()).is_ok() {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    (port, answered)
}

/// A server that reads each connection to end of stream and only then
/// answers `got N bytes sha256 HEX` about what it read, and closes.
pub fn reply_after_eof() -> u16 {
    let listener = listener(128);
    let port = port_of(&listener);
    serve_each(listener, |stream| {
        let mut request = Vec::new();
        if (&stream).read_to_end(&mut request).is_err() {
            return;
        }
        let answer = format!(
            "got {} bytes sha256 {}",
            request.len(),
            hex(&Sha256::digest(&request))
        );
        let _ = (&stream).write_all(answer.as_bytes());
    });
    port
}

/// A server that sends back every byte of each connection until the
/// client closes; counts the connections it accepted.
pub fn echo_on(listener: TcpListener) -> (u16, Arc<AtomicUsize>) {
    let port = port_of(&listener);
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    serve_each(listener, move |stream| {
        count.fetch_add(1, Ordering::Relaxed);
        let _ = io::copy(&mut &stream, &mut &stream);
    });
    (port, accepted)
}

/// A listener that accepts and closes connections, counting them.
pub fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    counting_listener_on(listener(128))
}

/// [`counting_listener`] on `listener`.
pub fn counting_listener_on(listener: TcpListener) -> (u16, Arc<AtomicUsize>) {
    let port = port_of(&listener);
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    serve_each(listener, move |_stream| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    (port, accepted)
}

/// A UDP server on 127.0.0.1 sending every datagram back to its sender.
pub fn udp_echo() -> u16 {
    udp_echo_at(Family::V4)
}

/// [`udp_echo`] on the loopback address of `family`.
pub fn udp_echo_at(family: Family) -> u16 {
    let addr = SocketAddr::new(family.loopback(), 0);
    udp_echo_on(UdpSocket::bind(addr).expect("bind udp"))
}

/// [`udp_echo`] on `socket`; returns its port.
pub fn udp_echo_on(socket: UdpSocket) -> u16 {
    let port = socket.local_addr().expect("local_addr").port();
    thread::spawn(move || {
        let mut buf = vec![0; 65536];
        while let Ok((len, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..len], peer);
        }
    });
    port
}

/// The name the DNS responder knows.
pub const DNS_NAME: &str = "slipway.test";
/// The address it answers for [`DNS_NAME`].
pub const DNS_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

/// What a DNS responder knows of one name: its A and AAAA records.
#[derive(Clone, Copy, Debug)]
pub struct Records {
    /// The name, lowercase, without the final dot.
    pub name: &'static str,
    /// Its IPv4 address, if it has one.
    pub a: Option<Ipv4Addr>,
    /// Its IPv6 address, if it has one.
    pub aaaa: Option<Ipv6Addr>,
}

impl Records {
    /// The record of type `qtype` (1: A, 28: AAAA) as an answer's type and
    /// data, if the name has one.
    fn answer(&self, qtype: u16) -> Option<(u16, Vec<u8>)> {
        match qtype {
            1 => self.a.map(|a| (1, a.octets().to_vec())),
            28 => self.aaaa.map(|aaaa| (28, aaaa.octets().to_vec())),
            _ => None,
        }
    }
}

/// The queries a DNS responder answered for its name.
#[derive(Debug, Default)]
pub struct Queries {
    /// Of any type.
    pub known: Arc<AtomicUsize>,
    /// Of type AAAA.
    pub aaaa: Arc<AtomicUsize>,
}

/// A DNS responder on 127.0.0.1 (UDP) answering A queries for
/// [`DNS_NAME`] with [`DNS_ADDRESS`], other names with NXDOMAIN and other
/// types with no records. Counts the queries for [`DNS_NAME`].
pub fn dns_responder() -> (u16, Arc<AtomicUsize>) {
    let records = Records {
        name: DNS_NAME,
        a: Some(DNS_ADDRESS),
        aaaa: None,
    };
    let (port, queries) = dns_responder_with(records);
    (port, queries.known)
}

/// A DNS responder on 127.0.0.1 (UDP) answering queries for the name of
/// `records` with its records, other names with NXDOMAIN and types it has
/// no record of with no records.
pub fn dns_responder_with(records: Records) -> (u16, Queries) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let port = socket.local_addr().expect("local_addr").port();
    let queries = Queries::default();
    let (known, aaaa) = (Arc::clone(&queries.known), Arc::clone(&queries.aaaa));
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, peer)) = socket.recv_from(&mut buf) {
            if let Some((reply, qtype)) = dns_answer(&records, &buf[..len]) {
                if let Some(qtype) = qtype {
                    known.fetch_add(1, Ordering::Relaxed);
                    if qtype == 28 {
                        aaaa.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
    (port, queries)
}

/// The reply to a one-question query, and its type if it asked about the
/// name of `records`. `None` for what is not a query.
fn dns_answer(records: &Records, query: &[u8]) -> Option<(Vec<u8>, Option<u16>)> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at + 1..at + 1 + len)?).to_lowercase());
        at += 1 + len;
    }
    let question_end = at + 5;
    let qtype = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    let known = labels.join(".") == records.name;
    let answer = known.then(|| records.answer(qtype)).flatten();
    let mut reply = query.get(..question_end)?.to_vec();
    reply[2] = 0x80 | (query[2] & 0x01); // QR, opcode 0, RD echoed
    reply[3] = if known { 0x80 } else { 0x83 }; // RA; NOERROR or NXDOMAIN
    reply[4..12].copy_from_slice(&[0, 1, 0, u8::from(answer.is_some()), 0, 0, 0, 0]);
    if let Some((rtype, data)) = answer {
        reply.extend([0xc0, 12]);
        reply.extend(rtype.to_be_bytes());
        reply.extend([0, 1, 0, 0, 0, 60]);
        reply.extend(u16::try_from(data.len()).unwrap_or(0).to_be_bytes());
        reply.extend(data);
    }
    Some((reply, known.then_some(qtype)))
}
