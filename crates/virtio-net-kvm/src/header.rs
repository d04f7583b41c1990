//! The `virtio_net_hdr_v1` that precedes every frame on both queues, and the
//! checksum the device completes for the driver.
//!
//! Everything here works on bytes the device has already copied out of
//! guest memory, so a value checked is the value used.

use virtio_bindings::bindings::virtio_net::{
    VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE,
};

use guest_frame::Checksum;

/// Bytes of `virtio_net_hdr_v1`: with `VIRTIO_F_VERSION_1` the header always
/// carries `num_buffers`, whatever `VIRTIO_NET_F_MRG_RXBUF` says.
pub const NET_HDR_LEN: usize = 12;

/// The largest Ethernet frame the device moves in either direction:
/// a 65535-byte MTU, the Ethernet header, a VLAN tag, and slack.
pub const MAX_FRAME_LEN: usize = 65550;

/// The smallest frame handed to the backend: one Ethernet header.
pub(crate) const MIN_FRAME_LEN: usize = 14;

/// Why a transmit header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderFault {
    /// The chain is shorter than header plus an Ethernet header.
    Short,
    /// `gso_type` is not `VIRTIO_NET_HDR_GSO_NONE`; no GSO feature is offered.
    Gso,
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM` without `VIRTIO_NET_F_CSUM` negotiated.
    CsumNotNegotiated,
    /// `csum_start`/`csum_offset` point outside the frame.
    CsumOutOfFrame,
}

/// The fields of a transmit header the device acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TxHeader {
    /// Where the checksum to complete starts and where it is stored,
    /// relative to `start`, when the driver asked for one.
    pub(crate) csum: Option<(u16, u16)>,
}

impl TxHeader {
    /// Parses the header at the front of `chain` (header then frame).
    pub(crate) fn parse(chain: &[u8], csum_negotiated: bool) -> Result<Self, HeaderFault> {
        if chain.len() < NET_HDR_LEN + MIN_FRAME_LEN {
            return Err(HeaderFault::Short);
        }
        let flags = chain[0];
        let gso_type = chain[1];
        if u32::from(gso_type) != VIRTIO_NET_HDR_GSO_NONE {
            return Err(HeaderFault::Gso);
        }
        // Flags other than NEEDS_CSUM carry nothing a device acts on in the
        // transmit direction; they are ignored, as the spec lets devices do.
        if u32::from(flags) & VIRTIO_NET_HDR_F_NEEDS_CSUM == 0 {
            return Ok(Self { csum: None });
        }
        if !csum_negotiated {
            return Err(HeaderFault::CsumNotNegotiated);
        }
        let start = u16::from_le_bytes([chain[6], chain[7]]);
        let offset = u16::from_le_bytes([chain[8], chain[9]]);
        Ok(Self {
            csum: Some((start, offset)),
        })
    }
}

/// Writes a receive header for a frame spread over `num_buffers` chains,
/// with the checksum flags and offsets of `checksum`.
pub(crate) fn rx_header(checksum: Checksum, num_buffers: u16) -> [u8; NET_HDR_LEN] {
    let mut hdr = [0u8; NET_HDR_LEN];
    // The flag constants are small; the casts keep the low byte, the whole value.
    match checksum {
        Checksum::Complete => {}
        Checksum::Valid => hdr[0] = (VIRTIO_NET_HDR_F_DATA_VALID & 0xff) as u8,
        Checksum::Partial { start, offset } => {
            hdr[0] = (VIRTIO_NET_HDR_F_NEEDS_CSUM & 0xff) as u8;
            hdr[6..8].copy_from_slice(&start.to_le_bytes());
            hdr[8..10].copy_from_slice(&offset.to_le_bytes());
        }
    }
    hdr[10..12].copy_from_slice(&num_buffers.to_le_bytes());
    hdr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(flags: u8, gso: u8, start: u16, offset: u16) -> Vec<u8> {
        let mut v = vec![0u8; NET_HDR_LEN + 64];
        v[0] = flags;
        v[1] = gso;
        v[6..8].copy_from_slice(&start.to_le_bytes());
        v[8..10].copy_from_slice(&offset.to_le_bytes());
        v
    }

    #[test]
    fn gso_frames_are_refused() {
        assert_eq!(
            TxHeader::parse(&header(0, 1, 0, 0), true),
            Err(HeaderFault::Gso)
        );
    }

    #[test]
    fn needs_csum_without_the_feature_is_refused() {
        assert_eq!(
            TxHeader::parse(&header(1, 0, 34, 16), false),
            Err(HeaderFault::CsumNotNegotiated)
        );
        assert_eq!(
            TxHeader::parse(&header(1, 0, 34, 16), true),
            Ok(TxHeader {
                csum: Some((34, 16))
            })
        );
    }

    #[test]
    fn chains_shorter_than_two_headers_are_refused() {
        assert_eq!(
            TxHeader::parse(&[0u8; NET_HDR_LEN + 13], true),
            Err(HeaderFault::Short)
        );
    }
}
