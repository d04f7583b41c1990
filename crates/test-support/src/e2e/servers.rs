//! Servers on host loopback that the guest reaches through the gateway
//! address, or (the `_on` forms, on a socket made inside a namespace) on
//! any address. Each runs on its own threads for the rest of the test
//! binary; every read and write on a connection is bounded by
//! [`IO_TIMEOUT`].

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use super::data::{Sha256, hex};

/// The bound on each read and write of a server's connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// A listener on 127.0.0.1 with an ephemeral port and a backlog of
/// `backlog` (std's is 128, too short for a burst of connections).
pub fn listener(backlog: i32) -> TcpListener {
    listener_at(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), backlog)
}

/// A listener on `addr` (port 0: an ephemeral one) with a backlog of
/// `backlog`, in the calling thread's network namespace.
pub fn listener_at(addr: SocketAddrV4, backlog: i32) -> TcpListener {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    sockopt::set_socket_reuseaddr(&fd, true).expect("SO_REUSEADDR");
    rustix::net::bind(&fd, &addr).expect("bind");
    rustix::net::listen(&fd, backlog).expect("listen");
    TcpListener::from(fd)
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
    let listener = listener(backlog);
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
    let listener = listener(128);
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
    udp_echo_on(UdpSocket::bind("127.0.0.1:0").expect("bind udp"))
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

/// A DNS responder on 127.0.0.1 (UDP) answering A queries for
/// [`DNS_NAME`] with [`DNS_ADDRESS`], other names with NXDOMAIN and other
/// types with no records. Counts the queries for [`DNS_NAME`].
pub fn dns_responder() -> (u16, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let port = socket.local_addr().expect("local_addr").port();
    let queries = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&queries);
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, peer)) = socket.recv_from(&mut buf) {
            if let Some((reply, known)) = dns_answer(&buf[..len]) {
                if known {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
    (port, queries)
}

/// The reply to a one-question query, and whether it asked about
/// [`DNS_NAME`]. `None` for what is not a query.
fn dns_answer(query: &[u8]) -> Option<(Vec<u8>, bool)> {
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
    let known = labels.join(".") == DNS_NAME;
    let answer = known && qtype == 1;
    let mut reply = query.get(..question_end)?.to_vec();
    reply[2] = 0x80 | (query[2] & 0x01); // QR, opcode 0, RD echoed
    reply[3] = if known { 0x80 } else { 0x83 }; // RA; NOERROR or NXDOMAIN
    reply[4..12].copy_from_slice(&[0, 1, 0, u8::from(answer), 0, 0, 0, 0]);
    if answer {
        reply.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend(DNS_ADDRESS.octets());
    }
    Some((reply, known))
}
