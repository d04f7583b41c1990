//! `guest-frame` knows nothing about devices, sockets, flows or time
//! sources; it performs no I/O and holds no state. Everything here works on
//! bytes the caller has already copied, so a value checked is the value
//! used.
//!
//! The frame boundary: what a guest's network device (a virtio-net device,
//! a tap or stream frontend, a test peer) and a network backend say to each
//! other, defined once so neither side needs an adapter.
//!
//! - [`FrameBackend`]: frames in as borrowed slices, frames out into the
//!   caller's buffer, with or without checksum offload.
//! - [`Checksum`]: what a frame's transport checksum is (complete, left
//!   partial for the "hardware", or vouched for), in either direction.
//! - [`GuestFrame`]: a frame a backend wrote, with its checksum state and,
//!   for a TCP segment larger than the guest's MSS, the size to cut it to.
//! - [`complete_checksum`]: the partial-checksum completion both sides do
//!   when the other end cannot take a partial checksum.

#![forbid(unsafe_code)]

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

use std::ops::Range;
use std::time::Instant;

use smoltcp::wire::checksum;

/// What a frame's transport-layer (TCP, UDP) checksum is, in either
/// direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// The checksums in the frame are what they are: a receiver verifies
    /// them.
    Complete,
    /// Left for the "hardware" (virtio's `VIRTIO_NET_HDR_F_NEEDS_CSUM`,
    /// Linux's `CHECKSUM_PARTIAL`): the field at `start + offset` holds
    /// only the pseudo-header sum, and the one's complement sum from
    /// `start` to the end of the frame, stored there, completes it. Both
    /// offsets count from the frame's first byte (the Ethernet header).
    /// Nothing has been computed, so there is nothing to verify.
    Partial {
        /// Where the summed region starts.
        start: u16,
        /// Where the checksum field is, from `start`.
        offset: u16,
    },
    /// Vouched for by the sender (virtio's `VIRTIO_NET_HDR_F_DATA_VALID`).
    Valid,
}

/// A frame [`FrameBackend::poll_guest_frame_offloaded`] wrote at the start
/// of the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestFrame {
    /// Its length.
    pub len: usize,
    /// Its TCP or UDP checksum: partial, or whole.
    pub checksum: Checksum,
    /// For a TCP segment larger than the guest's MSS (only from a backend
    /// asked for such segments): that MSS, the size to cut its payload to.
    /// Its checksum is then always partial.
    pub gso_mss: Option<u16>,
}

impl GuestFrame {
    /// A frame of `len` bytes whose checksums are complete.
    #[must_use]
    pub const fn complete(len: usize) -> Self {
        Self {
            len,
            checksum: Checksum::Complete,
            gso_mss: None,
        }
    }
}

/// The frame interface a device or frontend drives: slipway's backend, a
/// test peer, or anything else that speaks Ethernet.
///
/// It is called on the thread that owns the backend, so no implementation
/// needs a lock.
pub trait FrameBackend {
    /// Takes one Ethernet frame from the guest. The slice is the caller's
    /// (often a device's copy of guest memory), valid for the call.
    fn handle_guest_frame(&mut self, frame: &[u8], now: Instant);

    /// Writes the next frame for the guest into `buf` and returns its
    /// length, or `None` when nothing is due. A caller calls this only
    /// when it can take the frame, so a frame the guest has no room for
    /// stays in the backend.
    ///
    /// `buf` should hold the longest frame of the link (the MTU plus the
    /// Ethernet header). A frame is never cut to fit a shorter buffer: an
    /// implementation sizes what it can to the buffer and drops, counted,
    /// what it cannot, as a link drops a frame over its MTU.
    fn poll_guest_frame(&mut self, buf: &mut [u8], now: Instant) -> Option<usize>;

    /// Whether the backend takes checksum offload: frames from the guest
    /// whose checksum was left partial, passed on as they are, and frames
    /// for the guest whose checksum it leaves partial. When `false` (the
    /// default) the caller completes every partial checksum itself and
    /// calls only [`handle_guest_frame`](Self::handle_guest_frame) and
    /// [`poll_guest_frame`](Self::poll_guest_frame); when `true` it may
    /// call the `_offloaded` methods.
    fn offloads_checksums(&self) -> bool {
        false
    }

    /// Takes one frame from the guest with what the caller knows of its
    /// transport checksum: a [`Checksum::Partial`] region lies inside the
    /// frame and is not verified, nor is a [`Checksum::Valid`] one;
    /// [`Checksum::Complete`] is verified as by
    /// [`handle_guest_frame`](Self::handle_guest_frame).
    fn handle_guest_frame_offloaded(&mut self, frame: &[u8], checksum: Checksum, now: Instant) {
        let _ = checksum;
        self.handle_guest_frame(frame, now);
    }

    /// Writes the next frame for the guest into `buf`, as
    /// [`poll_guest_frame`](Self::poll_guest_frame), possibly leaving its
    /// TCP or UDP checksum partial (the pseudo-header sum in the field), and
    /// says so; the caller completes it ([`complete_checksum`]) or passes it
    /// on marked so.
    fn poll_guest_frame_offloaded(&mut self, buf: &mut [u8], now: Instant) -> Option<GuestFrame> {
        self.poll_guest_frame(buf, now).map(GuestFrame::complete)
    }
}

impl<B: FrameBackend + ?Sized> FrameBackend for &mut B {
    fn handle_guest_frame(&mut self, frame: &[u8], now: Instant) {
        (**self).handle_guest_frame(frame, now);
    }

    fn poll_guest_frame(&mut self, buf: &mut [u8], now: Instant) -> Option<usize> {
        (**self).poll_guest_frame(buf, now)
    }

    fn offloads_checksums(&self) -> bool {
        (**self).offloads_checksums()
    }

    fn handle_guest_frame_offloaded(&mut self, frame: &[u8], checksum: Checksum, now: Instant) {
        (**self).handle_guest_frame_offloaded(frame, checksum, now);
    }

    fn poll_guest_frame_offloaded(&mut self, buf: &mut [u8], now: Instant) -> Option<GuestFrame> {
        (**self).poll_guest_frame_offloaded(buf, now)
    }
}

/// A partial checksum's field (`start + offset`, two bytes) lies past the
/// end of the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("checksum field past the end of the frame")]
pub struct ChecksumOutOfFrame;

/// The bytes of a partial checksum's field in a frame of `frame_len` bytes.
///
/// # Errors
/// The field does not lie wholly inside the frame.
pub fn checksum_field_in_frame(
    frame_len: usize,
    start: u16,
    offset: u16,
) -> Result<Range<usize>, ChecksumOutOfFrame> {
    let field = usize::from(start) + usize::from(offset);
    let field_end = field + 2;
    if field_end > frame_len {
        return Err(ChecksumOutOfFrame);
    }
    Ok(field..field_end)
}

/// Completes a partial checksum as a NIC with `NETIF_F_HW_CSUM` does: the
/// one's complement sum from `start` to the end of the frame, stored at
/// `start + offset`. The sender has already put the pseudo-header sum in the
/// checksum field, so summing over it gives the full checksum.
///
/// # Errors
/// The field does not lie wholly inside the frame; the frame is unchanged.
pub fn complete_checksum(
    frame: &mut [u8],
    start: u16,
    offset: u16,
) -> Result<(), ChecksumOutOfFrame> {
    let field = checksum_field_in_frame(frame.len(), start, offset)?;
    let start = usize::from(start);
    let sum = !ones_complement_sum(&frame[start..]);
    // A zero result goes out as 0xffff: the same value in one's complement,
    // and the only form UDP accepts (zero there means "no checksum").
    let sum = if sum == 0 { 0xffff } else { sum };
    frame[field].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// The one's complement sum of `data` (RFC 1071, before the final
/// complement): smoltcp's.
fn ones_complement_sum(data: &[u8]) -> u16 {
    // smoltcp sums in 32 bits, which holds 128 KiB of data; longer data is
    // summed in pieces of an even length, so that no byte changes place.
    data.chunks(1 << 16).fold(0, |sum, piece| {
        checksum::combine(&[sum, checksum::data(piece)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_offsets_outside_the_frame_are_refused() {
        let mut frame = [0u8; 60];
        for (start, offset) in [(59, 0), (58, 1), (u16::MAX, u16::MAX), (0, 59), (61, 0)] {
            assert_eq!(
                complete_checksum(&mut frame, start, offset),
                Err(ChecksumOutOfFrame),
                "start {start} offset {offset}"
            );
        }
        assert_eq!(complete_checksum(&mut frame, 58, 0), Ok(()));
    }

    #[test]
    fn completed_sum_verifies_to_zero() {
        // An odd-length region, the checksum field inside it.
        let mut data: Vec<u8> = (0..101u8).map(|b| b.wrapping_mul(37)).collect();
        data[10] = 0;
        data[11] = 0;
        assert_eq!(complete_checksum(&mut data, 4, 6), Ok(()));
        assert_eq!(ones_complement_sum(&data[4..]), 0xffff);
    }

    #[test]
    fn data_longer_than_a_32_bit_sum_holds_sums_in_pieces() {
        // 150,000 words of 0x0100: 38,400,000 modulo 0xffff.
        let data = [1u8, 0].repeat(150_000);
        assert_eq!(ones_complement_sum(&data), 62_025);
        // 150,000 words of 0xffff (zero) and an odd last byte.
        assert_eq!(ones_complement_sum(&[0xff; 300_001]), 0xff00);
    }
}
