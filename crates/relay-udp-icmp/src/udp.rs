//! UDP flows on connected host sockets, and bound sockets for inbound port
//! forwards.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{RecvFlags, SendFlags};

use crate::counters::{Counters, DropReason};
use crate::icmp_error::IcmpErrorReport;
use crate::sys;

/// The largest UDP payload over IPv4: 65535 less the IPv4 and UDP headers.
pub const MAX_UDP_PAYLOAD_V4: usize = 65_507;
/// The largest UDP payload over IPv6 without jumbograms: 65535 less the UDP
/// header (the IPv6 payload length does not count the IPv6 header).
pub const MAX_UDP_PAYLOAD_V6: usize = 65_527;

/// What became of a datagram handed to the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// The kernel took the datagram, with this many payload bytes (0 for an
    /// empty datagram).
    Sent(usize),
    /// The datagram was dropped and counted; UDP's own loss handling (or the
    /// guest's retransmission) takes over.
    Dropped(DropReason),
}

/// The largest UDP payload towards `addr`'s family.
pub(crate) fn max_payload(addr: SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => MAX_UDP_PAYLOAD_V4,
        SocketAddr::V6(_) => MAX_UDP_PAYLOAD_V6,
    }
}

/// An IPv4-mapped IPv6 peer as the IPv4 address it is.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, a.port())),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

fn local_addr_of(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let any = rustix::net::getsockname(fd)?;
    SocketAddr::try_from(any).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Sends on `fd` (to `peer` when given, else to the connected peer), and
/// counts what happened.
fn send_counted(
    fd: BorrowedFd<'_>,
    peer: Option<SocketAddr>,
    limit_for: SocketAddr,
    payload: &[u8],
    counters: &mut Counters,
) -> io::Result<SendOutcome> {
    if payload.len() > max_payload(limit_for) {
        return Ok(drop_datagram(
            counters,
            DropReason::Oversize,
            limit_for,
            payload.len(),
        ));
    }
    let sent = sys::send_retrying(&mut || {}, || match peer {
        Some(peer) => rustix::net::sendto(fd, payload, SendFlags::empty(), &peer),
        None => rustix::net::send(fd, payload, SendFlags::empty()),
    })?;
    Ok(match sent {
        Some(n) => {
            counters.record_to_host(n);
            SendOutcome::Sent(n)
        }
        None => drop_datagram(counters, DropReason::WouldBlock, limit_for, payload.len()),
    })
}

fn drop_datagram(
    counters: &mut Counters,
    reason: DropReason,
    peer: SocketAddr,
    len: usize,
) -> SendOutcome {
    counters.record_drop(reason);
    tracing::debug!(%reason, %peer, len, "UDP datagram dropped");
    SendOutcome::Dropped(reason)
}

/// Reads one report from `fd`'s error queue (see
/// [`sys::recv_error_queue`] for `quoted`), counts and logs it: the one
/// reader of error queues for flow, listener and echo sockets alike.
pub(crate) fn recv_error_counted(
    fd: BorrowedFd<'_>,
    quoted: &mut [u8],
    counters: &mut Counters,
) -> io::Result<Option<(IcmpErrorReport, usize)>> {
    let got = sys::recv_error_queue(fd, quoted)?;
    if let Some((r, _)) = &got {
        counters.record_icmp_error();
        tracing::debug!(
            errno = r.errno,
            origin = ?r.origin,
            icmp_type = r.icmp_type,
            icmp_code = r.icmp_code,
            info = r.info,
            offender = ?r.offender,
            destination = ?r.destination,
            "ICMP error on a host socket"
        );
    }
    Ok(got)
}

/// The host socket of one UDP flow: connected to the flow's destination,
/// non-blocking, close-on-exec, with ICMP errors queued (`IP_RECVERR` or
/// `IPV6_RECVERR`) for [`UdpFlowSocket::recv_error`].
#[derive(Debug)]
pub struct UdpFlowSocket {
    fd: OwnedFd,
    peer: SocketAddr,
    counters: Counters,
}

impl UdpFlowSocket {
    /// Opens a socket of `dst`'s family and connects it to `dst`. The local
    /// port is an ephemeral one the kernel picks.
    ///
    /// Path MTU discovery stays at the kernel's default (`IP_PMTUDISC_WANT`,
    /// `IPV6_PMTUDISC_WANT`), not `DO`: a router's "packet too big" or
    /// "fragmentation needed" is queued for [`recv_error`](Self::recv_error)
    /// whatever the mode, so the guest learns each path MTU a router
    /// reports; and a datagram larger than a path MTU the host already
    /// knows is fragmented here rather than refused with `EMSGSIZE`, because
    /// the guest, told to fragment instead, would send IPv6 fragments that
    /// the guest link does not reassemble.
    pub fn connect(dst: SocketAddr) -> io::Result<Self> {
        let v6 = dst.is_ipv6();
        let fd = sys::udp_socket(v6)?;
        sys::enable_recverr(fd.as_fd(), v6)?;
        rustix::net::connect(&fd, &dst)?;
        Ok(Self {
            fd,
            peer: dst,
            counters: Counters::default(),
        })
    }

    /// The destination the socket is connected to.
    #[must_use]
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The host address and port the flow's datagrams leave from.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        local_addr_of(self.fd.as_fd())
    }

    /// Sends one datagram of the guest's to the destination. A full send
    /// buffer and an oversized payload are counted drops, not errors; an
    /// `Err` is a host failure that ends the flow.
    pub fn send(&mut self, payload: &[u8]) -> io::Result<SendOutcome> {
        send_counted(
            self.fd.as_fd(),
            None,
            self.peer,
            payload,
            &mut self.counters,
        )
    }

    /// Receives one datagram from the destination into `buf`, returning its
    /// length, or `None` when none is waiting. A datagram larger than `buf`
    /// is dropped and counted ([`DropReason::Truncated`]) and the next one
    /// read: pass a buffer of [`MAX_UDP_PAYLOAD_V6`] bytes to never lose one.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            let got = sys::recv_retrying(&mut || {}, || {
                rustix::net::recv(&self.fd, &mut *buf, RecvFlags::TRUNC)
            })?;
            let Some((len, full_len)) = got else {
                return Ok(None);
            };
            if full_len > buf.len() {
                drop_datagram(
                    &mut self.counters,
                    DropReason::Truncated,
                    self.peer,
                    full_len,
                );
                continue;
            }
            self.counters.record_to_guest(len);
            return Ok(Some(len));
        }
    }

    /// Reads one ICMP error from the socket's error queue, or `None` when
    /// it is empty.
    pub fn recv_error(&mut self) -> io::Result<Option<IcmpErrorReport>> {
        let got = recv_error_counted(self.fd.as_fd(), &mut [], &mut self.counters)?;
        Ok(got.map(|(report, _)| report))
    }

    /// This flow's counters.
    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl AsFd for UdpFlowSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A host socket bound for an inbound UDP port forward: datagrams from host
/// peers arrive with the peer's address, and the guest's replies go back to
/// that peer from the forwarded port.
///
/// The socket has `SO_REUSEADDR`; an IPv6 one is `IPV6_V6ONLY`, so IPv4 and
/// IPv6 forwards of the same port bind side by side. ICMP errors about
/// replies are queued for [`UdpListener::recv_error`], with the peer in
/// [`IcmpErrorReport::destination`].
#[derive(Debug)]
pub struct UdpListener {
    fd: OwnedFd,
    local: SocketAddr,
    counters: Counters,
}

impl UdpListener {
    /// Binds to `addr` (port 0 picks an ephemeral port; see
    /// [`UdpListener::local_addr`]).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let v6 = addr.is_ipv6();
        let fd = sys::udp_socket(v6)?;
        rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
        if v6 {
            rustix::net::sockopt::set_ipv6_v6only(&fd, true)?;
        }
        sys::enable_recverr(fd.as_fd(), v6)?;
        rustix::net::bind(&fd, &addr)?;
        let local = local_addr_of(fd.as_fd())?;
        Ok(Self {
            fd,
            local,
            counters: Counters::default(),
        })
    }

    /// The bound address and port.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Receives one datagram into `buf`: its length and the host peer that
    /// sent it, or `None` when none is waiting. A datagram larger than `buf`
    /// is dropped and counted, as in [`UdpFlowSocket::recv`].
    pub fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        loop {
            let got = sys::recv_retrying(&mut || {}, || {
                rustix::net::recvfrom(&self.fd, &mut *buf, RecvFlags::TRUNC)
            })?;
            let Some((len, full_len, peer)) = got else {
                return Ok(None);
            };
            let Some(peer) = peer.and_then(|a| SocketAddr::try_from(a).ok()) else {
                continue;
            };
            let peer = canonical(peer);
            if full_len > buf.len() {
                drop_datagram(&mut self.counters, DropReason::Truncated, peer, full_len);
                continue;
            }
            self.counters.record_to_guest(len);
            return Ok(Some((len, peer)));
        }
    }

    /// Sends the guest's reply to `peer` from the forwarded port.
    pub fn send_to(&mut self, payload: &[u8], peer: SocketAddr) -> io::Result<SendOutcome> {
        send_counted(
            self.fd.as_fd(),
            Some(peer),
            self.local,
            payload,
            &mut self.counters,
        )
    }

    /// Reads one ICMP error from the socket's error queue, or `None` when
    /// it is empty.
    pub fn recv_error(&mut self) -> io::Result<Option<IcmpErrorReport>> {
        let got = recv_error_counted(self.fd.as_fd(), &mut [], &mut self.counters)?;
        Ok(got.map(|(report, _)| report))
    }

    /// This listener's counters.
    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl AsFd for UdpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    #[test]
    fn mapped_peers_become_ipv4() {
        let mapped = SocketAddr::V6(SocketAddrV6::new(
            Ipv4Addr::LOCALHOST.to_ipv6_mapped(),
            7,
            0,
            0,
        ));
        assert_eq!(
            canonical(mapped),
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7))
        );
        let v6 = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 7, 0, 0));
        assert_eq!(canonical(v6), v6);
    }
}
