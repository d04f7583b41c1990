//! DNS forwarding: queries to the DNS address go to the upstream resolver
//! through `relay-udp-icmp`'s forwarder, and its replies come back to the
//! guest from the DNS address.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use epoll_dispatch::{Interest, Token};
use relay_udp_icmp::{DnsForwarder, DnsForwarderConfig, SendOutcome};

use super::{Backend, KIND_DNS};
use frontdesk::{ChecksumFill, UDP_V6_HEADERS_LEN, udp_headers_len, write_udp_headers_with};

impl Backend {
    /// Opens the DNS forwarder unless it is open already. An upstream the
    /// host cannot reach (no route to it, as in a namespace linked only to a
    /// test network) leaves DNS unanswered, not the backend unstarted: the
    /// next query tries again, so DNS works once a route appears.
    pub(super) fn open_dns_forwarder(&mut self) {
        if self.dns.is_some() {
            return;
        }
        let Some(upstream) = self.dns_upstream else {
            return;
        };
        let opened = DnsForwarder::new(upstream, DnsForwarderConfig::default()).and_then(|dns| {
            if let Some(token) = Token::new(KIND_DNS, 0, 0) {
                self.poller.register(&dns, token, Interest::READABLE)?;
            }
            Ok(dns)
        });
        match opened {
            Ok(dns) => self.dns = Some(dns),
            Err(error) if !self.dns_warned => {
                self.dns_warned = true;
                tracing::warn!(%upstream, %error, "DNS upstream unreachable; queries are dropped until it is");
            }
            Err(error) => tracing::debug!(%upstream, %error, "DNS upstream still unreachable"),
        }
    }

    /// A DNS query to the DNS address.
    pub(super) fn dns_query(&mut self, guest: SocketAddr, query: &[u8], now: Instant) {
        self.open_dns_forwarder();
        let Some(dns) = self.dns.as_mut() else {
            self.counters.dns_drops += 1;
            return;
        };
        match dns.forward_query(guest, query, now) {
            Ok(SendOutcome::Sent(_)) => self.counters.dns_queries += 1,
            Ok(SendOutcome::Dropped(_)) | Err(_) => self.counters.dns_drops += 1,
        }
    }

    /// Replies from the DNS upstream, sent to the guest from the DNS address
    /// of the query's family.
    pub(crate) fn dns_readable(&mut self, now: Instant) {
        self.with_datagram_buf(|backend, buf| backend.dns_read(buf, now));
    }

    /// [`Self::dns_readable`] with the receive buffer lent.
    fn dns_read(&mut self, buf: &mut [u8], now: Instant) {
        let plan = self.frontdesk.plan();
        let dns_v4 = plan.ipv4().map(|v4| IpAddr::V4(v4.dns()));
        let dns_v6 = plan.ipv6().map(|v6| IpAddr::V6(v6.dns()));
        let link = self.frontdesk.link_to_guest();
        for _ in 0..64 {
            let Some(dns) = self.dns.as_mut() else {
                return;
            };
            // Received behind room for the longer (IPv6) headers; the
            // headers of an IPv4 reply start later, to end where it starts.
            let reply = match dns.recv_reply(&mut buf[UDP_V6_HEADERS_LEN..], now) {
                Ok(Some(reply)) => reply,
                Ok(None) | Err(_) => return,
            };
            let dns_addr = if reply.guest.is_ipv4() {
                dns_v4
            } else {
                dns_v6
            };
            let Some(dns_addr) = dns_addr else {
                continue;
            };
            let from = SocketAddr::new(dns_addr, 53);
            let start = UDP_V6_HEADERS_LEN - udp_headers_len(from);
            let frame = &mut buf[start..];
            let fill = ChecksumFill::Complete;
            if let Some(len) =
                write_udp_headers_with(frame, link, from, reply.guest, reply.len, fill)
            {
                self.queue_frame(frame[..len].to_vec());
            }
        }
    }
}
