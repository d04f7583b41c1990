//! The host side of the fuzzed backend's flows: a TCP listener and a UDP
//! peer on [`PEER_PORT`] of [`HOST`] and of ::1 (where the gateway's IPv4
//! and IPv6 addresses lead) and a DNS upstream on [`DNS_PORT`] of
//! [`HOST`], each answering with bytes the input chooses. Opened once
//! per process; [`HostPeers::reset`] forgets one input's connections and
//! datagrams before the next.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};

use crate::{DNS_PORT, HOST, PEER_PORT};

/// The most accepted connections kept; older ones are closed.
const MAX_CONNS: usize = 8;

/// The host peers; a peer whose port could not be bound is absent (and
/// said so once on stderr), and flows to it are refused by the kernel.
#[derive(Debug)]
pub struct HostPeers {
    listeners: Vec<TcpListener>,
    udp: Vec<UdpSocket>,
    dns: Option<UdpSocket>,
    conns: Vec<TcpStream>,
    buf: Vec<u8>,
}

/// Where the gateway of each family leads.
const HOSTS: [IpAddr; 2] = [IpAddr::V4(HOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];

fn bind<T>(
    what: &str,
    (host, port): (IpAddr, u16),
    open: impl FnOnce(SocketAddr) -> std::io::Result<T>,
) -> Option<T> {
    let addr = SocketAddr::new(host, port);
    match open(addr) {
        Ok(socket) => Some(socket),
        Err(error) => {
            eprintln!("slipway-fuzz: no {what} on {addr}: {error}");
            None
        }
    }
}

impl HostPeers {
    /// Binds the peers (call after [`crate::isolate_network`], so that they
    /// live in the same namespace as the backend's sockets).
    #[must_use]
    pub fn bind() -> Self {
        let listen = |addr| {
            let listener = TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        };
        let udp_socket = |addr| {
            let socket = UdpSocket::bind(addr)?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        };
        let on_each = |what| HOSTS.map(|host| (what, (host, PEER_PORT)));
        Self {
            listeners: on_each("TCP listener")
                .into_iter()
                .filter_map(|(what, at)| bind(what, at, listen))
                .collect(),
            udp: on_each("UDP peer")
                .into_iter()
                .filter_map(|(what, at)| bind(what, at, udp_socket))
                .collect(),
            dns: bind("DNS upstream", (HOSTS[0], DNS_PORT), udp_socket),
            conns: Vec::new(),
            buf: vec![0; 65536],
        }
    }

    /// Closes every connection and drops every datagram left by the last
    /// input.
    pub fn reset(&mut self) {
        self.conns.clear();
        for listener in &self.listeners {
            while listener.accept().is_ok() {}
        }
        for socket in self.udp.iter().chain(&self.dns) {
            while socket.recv_from(&mut self.buf).is_ok() {}
        }
    }

    /// Accepts the connections waiting on either listener, keeping the
    /// newest [`MAX_CONNS`].
    pub fn accept(&mut self) {
        for listener in &self.listeners {
            for _ in 0..MAX_CONNS {
                let Ok((conn, _)) = listener.accept() else {
                    break;
                };
                if conn.set_nonblocking(true).is_err() {
                    continue;
                }
                if self.conns.len() >= MAX_CONNS {
                    self.conns.remove(0);
                }
                self.conns.push(conn);
            }
        }
    }

    /// Acts on accepted connection `which` (modulo their number) as `how`
    /// says: write `data`, read what is queued, shut down writing, or close
    /// it with a reset.
    pub fn tcp(&mut self, which: u8, how: u8, data: &[u8]) {
        self.accept();
        if self.conns.is_empty() {
            return;
        }
        let index = usize::from(which) % self.conns.len();
        match how % 4 {
            0 => {
                let _ = self.conns[index].write(data);
            }
            1 => {
                let conn = &mut self.conns[index];
                for _ in 0..16 {
                    match conn.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            }
            2 => {
                let _ = self.conns[index].shutdown(Shutdown::Write);
            }
            _ => {
                let conn = self.conns.remove(index);
                // Linger 0: the close sends an RST.
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                let fd = std::os::fd::AsRawFd::as_raw_fd(&conn);
                // SAFETY: `linger` outlives the call, which reads
                // `size_of::<linger>()` bytes of it; `fd` is open.
                unsafe {
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        std::ptr::from_ref(&linger).cast(),
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    );
                }
                drop(conn);
            }
        }
    }

    /// Takes the next datagram a guest flow sent a UDP peer (the IPv4 one
    /// first) and answers its sender with `data`.
    pub fn udp_reply(&mut self, data: &[u8]) {
        for socket in &self.udp {
            if let Ok((_, from)) = socket.recv_from(&mut self.buf) {
                let _ = socket.send_to(data, from);
                return;
            }
        }
    }

    /// Takes the next query the backend forwarded to the DNS upstream and
    /// answers it with `data`, its first two bytes replaced by the query's
    /// transaction id when `same_id`, so that the reply matches.
    pub fn dns_reply(&mut self, data: &[u8], same_id: bool) {
        let Some(socket) = &self.dns else {
            return;
        };
        let Ok((len, from)) = socket.recv_from(&mut self.buf) else {
            return;
        };
        let mut reply = data.to_vec();
        if same_id && len >= 2 && reply.len() >= 2 {
            reply[..2].copy_from_slice(&self.buf[..2]);
        }
        let _ = socket.send_to(&reply, from);
    }
}
