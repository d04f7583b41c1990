//! Counters of the frames the front desk saw and of those it dropped, by
//! reason.

use std::fmt;

/// Why the front desk dropped a frame from the guest.
///
/// Every drop is counted under exactly one reason in [`Counters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Too short or structurally invalid: a truncated header, a length field
    /// past the end of the frame, a wrong version, an invalid port.
    Malformed,
    /// The destination MAC address is neither the gateway's, the broadcast
    /// address nor (for IPv6) an IPv6 multicast address.
    NotForUs,
    /// The source MAC address is a group address or all zeros.
    BadSourceMac,
    /// An EtherType other than ARP, IPv4 or IPv6 (VLAN tags, LLDP, 802.3
    /// length fields).
    UnsupportedEtherType,
    /// The IPv4 header checksum, or a TCP, UDP or ICMP checksum, is wrong.
    BadChecksum,
    /// An IPv6 packet with a fragment header (IPv4 fragments are
    /// reassembled; the reasons below count those dropped).
    Fragment,
    /// The IPv4 TTL or IPv6 hop limit is zero.
    TtlExpired,
    /// An IPv4 protocol other than TCP, UDP and ICMP.
    UnsupportedProtocol,
    /// An ARP request for an address the front desk does not answer for:
    /// the guest's own (duplicate address detection, gratuitous ARP) or one
    /// outside the plan.
    ArpNotServed,
    /// An ARP message that is not a request (a reply or a gratuitous reply).
    ArpNotRequest,
    /// A DHCP message that does not parse, or a message type a server does
    /// not take (OFFER, ACK, NAK from the guest).
    DhcpMalformed,
    /// A DHCP message the server ignores: a RELEASE or DECLINE for a lease
    /// the client does not hold, or an INFORM without a client address.
    DhcpIgnored,
    /// The reply did not fit in the buffer the caller supplied.
    NoBufferSpace,
    /// The plan has no half of this address family (IPv4 or IPv6 disabled).
    FamilyDisabled,
    /// An IPv4 fragment that overlaps one held for the same datagram
    /// without being its exact duplicate: the whole datagram is dropped
    /// (RFC 5722), each of its frames counted.
    FragmentOverlap,
    /// An IPv4 fragment with the same offset and length as one held: it
    /// alone is dropped.
    FragmentDuplicate,
    /// An IPv4 fragment whose offset and length (with its header) pass
    /// 65535 bytes, or a reassembled datagram that would.
    FragmentTooLong,
    /// An IPv4 fragment other than the last whose length is not a positive
    /// multiple of 8 bytes.
    FragmentMisaligned,
    /// An IPv4 last fragment whose end differs from another last
    /// fragment's, or lies before data held, or a fragment past the end:
    /// the whole datagram is dropped.
    FragmentBadEnd,
    /// A datagram in reassembly given up to stay within the cap on
    /// datagrams or bytes held (the oldest goes first).
    FragmentLimit,
    /// A datagram still incomplete when its reassembly time ran out.
    FragmentTimeout,
    /// A neighbour discovery message that fails RFC 4861's checks: a hop
    /// limit other than 255, a code other than 0, too short, an option of
    /// length 0 or past the end, a multicast target or source.
    NdpInvalid,
    /// A neighbour solicitation for an address the front desk does not
    /// answer for: the guest's own or any other but the gateway's, the
    /// router's link-local and the DNS address.
    NdpNotServed,
    /// A neighbour solicitation from the unspecified address: the guest
    /// probing for a duplicate of its address (RFC 4862), which must hear
    /// nothing.
    NdpDadProbe,
    /// A neighbour advertisement, router advertisement or redirect from the
    /// guest: the front desk learns nothing from them.
    NdpIgnored,
    /// An IPv6 packet with a jumbo payload option (RFC 2675): no link of
    /// slipway's carries one.
    Jumbogram,
    /// An IPv6 packet with more extension headers than the front desk
    /// walks.
    ExtensionHeaderLimit,
    /// A DHCPv6 message that does not parse (an option past the end, too
    /// many options, a missing or malformed client identifier) or that a
    /// server does not take (Advertise, Reply, Reconfigure, relay messages).
    Dhcpv6Malformed,
    /// A DHCPv6 message the server ignores: one for another server (a
    /// server identifier not its own, or one where none belongs), one sent
    /// by unicast that must be multicast, a Confirm without addresses.
    Dhcpv6Ignored,
}

impl DropReason {
    /// Every reason, in the order [`Counters::iter`] reports them.
    pub const ALL: [DropReason; 29] = [
        DropReason::Malformed,
        DropReason::NotForUs,
        DropReason::BadSourceMac,
        DropReason::UnsupportedEtherType,
        DropReason::BadChecksum,
        DropReason::Fragment,
        DropReason::TtlExpired,
        DropReason::UnsupportedProtocol,
        DropReason::ArpNotServed,
        DropReason::ArpNotRequest,
        DropReason::DhcpMalformed,
        DropReason::DhcpIgnored,
        DropReason::NoBufferSpace,
        DropReason::FamilyDisabled,
        DropReason::FragmentOverlap,
        DropReason::FragmentDuplicate,
        DropReason::FragmentTooLong,
        DropReason::FragmentMisaligned,
        DropReason::FragmentBadEnd,
        DropReason::FragmentLimit,
        DropReason::FragmentTimeout,
        DropReason::NdpInvalid,
        DropReason::NdpNotServed,
        DropReason::NdpDadProbe,
        DropReason::NdpIgnored,
        DropReason::Jumbogram,
        DropReason::ExtensionHeaderLimit,
        DropReason::Dhcpv6Malformed,
        DropReason::Dhcpv6Ignored,
    ];

    /// The reason's name in `snake_case`, as counters and logs show it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NotForUs => "not_for_us",
            DropReason::BadSourceMac => "bad_source_mac",
            DropReason::UnsupportedEtherType => "unsupported_ethertype",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::Fragment => "fragment",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::ArpNotServed => "arp_not_served",
            DropReason::ArpNotRequest => "arp_not_request",
            DropReason::DhcpMalformed => "dhcp_malformed",
            DropReason::DhcpIgnored => "dhcp_ignored",
            DropReason::NoBufferSpace => "no_buffer_space",
            DropReason::FamilyDisabled => "family_disabled",
            DropReason::FragmentOverlap => "fragment_overlap",
            DropReason::FragmentDuplicate => "fragment_duplicate",
            DropReason::FragmentTooLong => "fragment_too_long",
            DropReason::FragmentMisaligned => "fragment_misaligned",
            DropReason::FragmentBadEnd => "fragment_bad_end",
            DropReason::FragmentLimit => "fragment_limit",
            DropReason::FragmentTimeout => "fragment_timeout",
            DropReason::NdpInvalid => "ndp_invalid",
            DropReason::NdpNotServed => "ndp_not_served",
            DropReason::NdpDadProbe => "ndp_dad_probe",
            DropReason::NdpIgnored => "ndp_ignored",
            DropReason::Jumbogram => "jumbogram",
            DropReason::ExtensionHeaderLimit => "extension_header_limit",
            DropReason::Dhcpv6Malformed => "dhcpv6_malformed",
            DropReason::Dhcpv6Ignored => "dhcpv6_ignored",
        }
    }

    /// The reason's position in [`DropReason::ALL`].
    fn index(self) -> usize {
        match self {
            DropReason::Malformed => 0,
            DropReason::NotForUs => 1,
            DropReason::BadSourceMac => 2,
            DropReason::UnsupportedEtherType => 3,
            DropReason::BadChecksum => 4,
            DropReason::Fragment => 5,
            DropReason::TtlExpired => 6,
            DropReason::UnsupportedProtocol => 7,
            DropReason::ArpNotServed => 8,
            DropReason::ArpNotRequest => 9,
            DropReason::DhcpMalformed => 10,
            DropReason::DhcpIgnored => 11,
            DropReason::NoBufferSpace => 12,
            DropReason::FamilyDisabled => 13,
            DropReason::FragmentOverlap => 14,
            DropReason::FragmentDuplicate => 15,
            DropReason::FragmentTooLong => 16,
            DropReason::FragmentMisaligned => 17,
            DropReason::FragmentBadEnd => 18,
            DropReason::FragmentLimit => 19,
            DropReason::FragmentTimeout => 20,
            DropReason::NdpInvalid => 21,
            DropReason::NdpNotServed => 22,
            DropReason::NdpDadProbe => 23,
            DropReason::NdpIgnored => 24,
            DropReason::Jumbogram => 25,
            DropReason::ExtensionHeaderLimit => 26,
            DropReason::Dhcpv6Malformed => 27,
            DropReason::Dhcpv6Ignored => 28,
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Frames and bytes received from the guest, and drops by reason.
///
/// Counts wrap at `u64::MAX` rather than panic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    frames: u64,
    bytes: u64,
    offloaded_checksums: u64,
    reassembled: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl Counters {
    /// Fresh counters, all zero.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Frames received from the guest.
    #[must_use]
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes received from the guest, Ethernet headers included.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Frames whose transport checksum was not verified because the
    /// frontend offloaded it (a partial checksum from the guest's kernel,
    /// or one it vouched for).
    #[must_use]
    pub fn offloaded_checksums(&self) -> u64 {
        self.offloaded_checksums
    }

    /// IPv4 datagrams reassembled from the guest's fragments (each then
    /// classified like an unfragmented frame, but not counted as one more
    /// frame).
    #[must_use]
    pub fn reassembled(&self) -> u64 {
        self.reassembled
    }

    /// Frames dropped for `reason`.
    #[must_use]
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.index()).copied().unwrap_or(0)
    }

    /// Frames dropped for any reason.
    #[must_use]
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().fold(0, |sum, n| sum.wrapping_add(*n))
    }

    /// Each drop reason's name with its count, in [`DropReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|reason| (reason.name(), self.drops(*reason)))
    }

    /// Counts one frame of `len` bytes received from the guest.
    pub fn record_frame(&mut self, len: usize) {
        self.frames = self.frames.wrapping_add(1);
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        self.bytes = self.bytes.wrapping_add(len);
    }

    /// Counts one frame whose transport checksum is offloaded.
    pub fn record_offloaded_checksum(&mut self) {
        self.offloaded_checksums = self.offloaded_checksums.wrapping_add(1);
    }

    /// Counts one datagram reassembled from fragments.
    pub fn record_reassembled(&mut self) {
        self.reassembled = self.reassembled.wrapping_add(1);
    }

    /// Counts `count` frames dropped together for `reason` (the fragments
    /// of a datagram given up), and logs it at debug level.
    pub fn record_drops(&mut self, reason: DropReason, count: u64) {
        tracing::debug!(reason = reason.name(), count, "guest frames dropped");
        if let Some(total) = self.drops.get_mut(reason.index()) {
            *total = total.wrapping_add(count);
        }
    }

    /// Counts one frame dropped for `reason`, and logs it at debug level.
    pub fn record_drop(&mut self, reason: DropReason) {
        tracing::debug!(reason = reason.name(), "guest frame dropped");
        if let Some(count) = self.drops.get_mut(reason.index()) {
            *count = count.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_follow_all() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason}");
        }
    }

    #[test]
    fn iter_names_every_reason_with_its_count() {
        let mut c = Counters::new();
        c.record_drop(DropReason::Fragment);
        c.record_drop(DropReason::Fragment);
        c.record_drop(DropReason::NotForUs);
        let all: Vec<_> = c.iter().collect();
        assert_eq!(all.len(), DropReason::ALL.len());
        assert!(all.contains(&("fragment", 2)));
        assert!(all.contains(&("not_for_us", 1)));
        assert_eq!(c.total_drops(), 3);
    }

    #[test]
    fn frames_and_bytes_accumulate() {
        let mut c = Counters::new();
        c.record_frame(60);
        c.record_frame(1514);
        assert_eq!((c.frames(), c.bytes()), (2, 1574));
    }
}
