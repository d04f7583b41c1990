//! IPv6 datagrams from the guest: TCP, UDP and echo go to the same relays
//! and DNS forwarder as IPv4's; the errors about them come from
//! `guest_error`, as IPv4's do.

use std::net::IpAddr;
use std::time::Instant;

use super::Backend;

/// The ICMPv6 echo request type (RFC 4443, section 4.1).
const ECHO_REQUEST: u8 = 128;

impl Backend {
    pub(super) fn handle_ipv6(&mut self, datagram: &frontdesk::Ipv6Datagram<'_>, now: Instant) {
        let ends = (
            IpAddr::V6(datagram.header.src_addr),
            IpAddr::V6(datagram.header.dst_addr),
        );
        self.learn_guest_v6(datagram.header.src_addr);
        let transport = datagram.transport;
        let hop_limit = datagram.header.hop_limit;
        self.handle_transport(
            datagram.packet,
            ends,
            (transport, hop_limit),
            ECHO_REQUEST,
            now,
        );
    }
}
