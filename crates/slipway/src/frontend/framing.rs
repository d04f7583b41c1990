//! The framing of QEMU's `-netdev stream` protocol (the one QEMU also uses
//! with passt): on a stream socket, each Ethernet frame is preceded by its
//! length as a 4-byte big-endian integer.
//!
//! [`FrameDecoder`] cuts the bytes read from the socket into frames, however
//! they were split across reads; [`Outbox`] lays frames from the backend
//! out with their length prefixes, for as many writes as the socket needs.
//!
//! Invariant: pure and bounded. No I/O, and both buffers are sized once, at
//! construction, from constants: a length the peer claims never sizes an
//! allocation, and a frame is never copied more than once on its way
//! through.

use thiserror::Error;

/// Bytes of the length prefix before each frame.
pub const LEN_PREFIX: usize = 4;

/// The Ethernet header before each frame's payload.
pub const ETHERNET_HEADER: usize = 14;

/// The longest frame on a link of this MTU: the MTU plus the Ethernet
/// header.
#[must_use]
pub fn max_frame_for_mtu(mtu: u16) -> usize {
    usize::from(mtu) + ETHERNET_HEADER
}

/// The longest frame the protocol carries at all: a 65535-byte IP datagram
/// and its Ethernet header. A longer length prefix is never a frame.
pub const MAX_WIRE_FRAME: usize = 65535 + ETHERNET_HEADER;

/// QEMU's receive buffer (`NET_BUFSIZE`): it drops the connection on a
/// longer frame, so nothing longer is ever sent.
pub const QEMU_MAX_FRAME: usize = 69632;

const _: () = assert!(MAX_WIRE_FRAME <= QEMU_MAX_FRAME);

/// The decoder's buffer: room for two of the longest frames with their
/// prefixes, so that a frame under way always fits after one compaction.
const DECODER_BUFFER: usize = 2 * (LEN_PREFIX + MAX_WIRE_FRAME);

/// The outbox's buffer when frames are small; at least two of the longest
/// frames fit in any case.
const OUTBOX_BUFFER: usize = 256 * 1024;

/// A length prefix that cannot start a frame: the stream cannot be cut
/// into frames after it. (A short length, 0 included, still says where
/// the next frame starts: it is [`Decoded::TooShort`], not an error.)
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum FramingError {
    /// Longer than any Ethernet frame.
    #[error("a frame length of {0} bytes, more than the protocol's {MAX_WIRE_FRAME}")]
    TooLong(u32),
}

/// What [`FrameDecoder::next_frame`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A frame, borrowed from the decoder's buffer.
    Frame(&'a [u8]),
    /// A frame longer than the decoder's `max_frame` (but within
    /// [`MAX_WIRE_FRAME`]): skipped, its length given.
    Oversized(usize),
    /// A frame shorter than an Ethernet header (0 to 13 bytes): skipped,
    /// its length given.
    TooShort(usize),
}

/// Cuts a byte stream into length-prefixed frames.
///
/// Use: read into [`space`](Self::space), report the count with
/// [`filled`](Self::filled), then take frames with
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`, before
/// reading again.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Box<[u8]>,
    /// The first byte not yet decoded.
    start: usize,
    /// The end of the bytes read.
    end: usize,
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder that hands out frames of up to `max_frame` bytes and skips
    /// longer ones (up to [`MAX_WIRE_FRAME`]; `max_frame` is capped there).
    #[must_use]
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: vec![0; DECODER_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            max_frame: max_frame.min(MAX_WIRE_FRAME),
        }
    }

    /// Where the next read goes; never empty once every frame has been
    /// taken. Moves a frame under way to the front of the buffer first
    /// when the longest frame might not fit behind it.
    pub fn space(&mut self) -> &mut [u8] {
        let tail = self.buf.len() - self.start;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if tail < LEN_PREFIX + MAX_WIRE_FRAME || self.end == self.buf.len() {
            // Less than one frame is left here once every whole frame is
            // taken, so this copies less than one frame.
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        &mut self.buf[self.end..]
    }

    /// Records that the last read put `n` bytes into [`space`](Self::space).
    pub fn filled(&mut self, n: usize) {
        self.end = self.end.saturating_add(n).min(self.buf.len());
    }

    /// Bytes read but not yet handed out.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Forgets every byte read (the connection is gone).
    pub fn clear(&mut self) {
        (self.start, self.end) = (0, 0);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// A length prefix over [`MAX_WIRE_FRAME`]; the bytes after it cannot
    /// be cut into frames, and the decoder returns the same error until
    /// [`clear`](Self::clear)ed.
    pub fn next_frame(&mut self) -> Result<Option<Decoded<'_>>, FramingError> {
        if self.end - self.start < LEN_PREFIX {
            return Ok(None);
        }
        let Some(prefix) = self.buf.get(self.start..self.start + LEN_PREFIX) else {
            return Ok(None);
        };
        let claimed = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let len = usize::try_from(claimed).unwrap_or(usize::MAX);
        if len > MAX_WIRE_FRAME {
            return Err(FramingError::TooLong(claimed));
        }
        let first = self.start + LEN_PREFIX;
        if self.end - first < len {
            return Ok(None);
        }
        self.start = first + len;
        if len < ETHERNET_HEADER {
            return Ok(Some(Decoded::TooShort(len)));
        }
        if len > self.max_frame {
            return Ok(Some(Decoded::Oversized(len)));
        }
        Ok(self.buf.get(first..first + len).map(Decoded::Frame))
    }
}

/// Frames for the peer, each behind its length prefix, until the socket
/// takes them.
///
/// Bounded: [`has_room`](Self::has_room) turns false once the longest frame
/// might not fit; the caller then takes no frame from the backend until the
/// socket has taken these (backpressure) rather than queueing more.
#[derive(Debug)]
pub struct Outbox {
    buf: Box<[u8]>,
    /// The first byte not yet sent.
    start: usize,
    /// The end of the last frame.
    end: usize,
    /// Where the frame `start` is in begins, after its prefix; 0 when empty.
    head_start: usize,
    /// Where that frame ends (`start < head_end <= end`); 0 when empty.
    head_end: usize,
    max_frame: usize,
}

/// Frames and bytes (without prefixes) of a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Whole frames.
    pub frames: u64,
    /// Their bytes, not counting the prefixes.
    pub bytes: u64,
}

impl Outbox {
    /// An outbox for frames of up to `max_frame` bytes (capped at
    /// [`MAX_WIRE_FRAME`], so no frame over [`QEMU_MAX_FRAME`] leaves it).
    #[must_use]
    pub fn new(max_frame: usize) -> Self {
        let max_frame = max_frame.min(MAX_WIRE_FRAME);
        let len = OUTBOX_BUFFER.max(2 * (LEN_PREFIX + max_frame));
        Self {
            buf: vec![0; len].into_boxed_slice(),
            start: 0,
            end: 0,
            head_start: 0,
            head_end: 0,
            max_frame,
        }
    }

    /// Whether a frame of the longest length fits behind those queued.
    #[must_use]
    pub fn has_room(&self) -> bool {
        self.buf.len() - self.end >= LEN_PREFIX + self.max_frame
    }

    /// Whether every byte has been sent.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Lets `fill` write one frame into the outbox (into a slice of
    /// `max_frame` bytes) and return its length, or `None` when it has no
    /// frame. Returns the frame queued, or `None` when `fill` had none or
    /// there is no room.
    pub fn push_with(&mut self, fill: impl FnOnce(&mut [u8]) -> Option<usize>) -> Option<&[u8]> {
        if !self.has_room() {
            return None;
        }
        let first = self.end + LEN_PREFIX;
        let area = self.buf.get_mut(first..first + self.max_frame)?;
        let len = fill(area)?.min(self.max_frame);
        if len == 0 {
            return None;
        }
        let prefix = u32::try_from(len).ok()?.to_be_bytes();
        self.buf.get_mut(self.end..first)?.copy_from_slice(&prefix);
        if self.is_empty() {
            (self.head_start, self.head_end) = (first, first + len);
        }
        self.end = first + len;
        self.buf.get(first..first + len)
    }

    /// The bytes to send next.
    #[must_use]
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Records that the socket took `n` bytes of [`pending`](Self::pending);
    /// returns the frames that left whole with them.
    pub fn consume(&mut self, n: usize) -> Sent {
        let mut sent = Sent::default();
        if self.is_empty() {
            return sent;
        }
        self.start = self.start.saturating_add(n).min(self.end);
        // Bounded: each pass moves `head_end` forward by a whole frame.
        while self.head_end <= self.start {
            sent.frames += 1;
            sent.bytes += (self.head_end - self.head_start) as u64;
            if self.head_end == self.end {
                self.clear();
                break;
            }
            let len = self.len_at(self.head_end);
            self.head_start = self.head_end + LEN_PREFIX;
            self.head_end = self.head_start + len;
        }
        sent
    }

    /// Frames not (wholly) sent yet.
    #[must_use]
    pub fn queued_frames(&self) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let mut count = 1;
        let mut at = self.head_end;
        while at < self.end {
            count += 1;
            at = at + LEN_PREFIX + self.len_at(at);
        }
        count
    }

    /// Drops every queued byte (the connection is gone).
    pub fn clear(&mut self) {
        (self.start, self.end, self.head_start, self.head_end) = (0, 0, 0, 0);
    }

    /// The length in the prefix at `at`: written by [`push_with`](Self::push_with), so at
    /// least 1 and within the buffer.
    fn len_at(&self, at: usize) -> usize {
        let prefix = self.buf.get(at..at + LEN_PREFIX).unwrap_or(&[0, 0, 0, 1]);
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        usize::try_from(len).unwrap_or(1).max(1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn encode(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames {
            out.extend(u32::try_from(frame.len()).unwrap().to_be_bytes());
            out.extend(frame);
        }
        out
    }

    /// Feeds `chunks` to a decoder one read each; returns the frames (an
    /// oversized one as its length in zeroes) and the first error.
    fn decode(
        max_frame: usize,
        chunks: impl IntoIterator<Item = Vec<u8>>,
    ) -> (Vec<Vec<u8>>, Option<FramingError>) {
        let mut decoder = FrameDecoder::new(max_frame);
        let mut frames = Vec::new();
        for chunk in chunks {
            let mut chunk = &chunk[..];
            while !chunk.is_empty() {
                let space = decoder.space();
                assert!(!space.is_empty(), "room for the next read");
                let n = space.len().min(chunk.len());
                space[..n].copy_from_slice(&chunk[..n]);
                decoder.filled(n);
                chunk = &chunk[n..];
                loop {
                    match decoder.next_frame() {
                        Ok(Some(Decoded::Frame(f))) => frames.push(f.to_vec()),
                        Ok(Some(Decoded::Oversized(len) | Decoded::TooShort(len))) => {
                            frames.push(vec![0; len]);
                        }
                        Ok(None) => break,
                        Err(e) => return (frames, Some(e)),
                    }
                }
            }
        }
        (frames, None)
    }

    fn frames_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let small = proptest::collection::vec(any::<u8>(), ETHERNET_HEADER..200);
        let large = (1000usize..=MAX_WIRE_FRAME).prop_map(|len| vec![0xa5; len]);
        proptest::collection::vec(prop_oneof![12 => small, 1 => large], 0..12)
    }

    proptest! {
        #[test]
        fn any_split_decodes_to_the_same_frames(
            frames in frames_strategy(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
        ) {
            let stream = encode(&frames);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort_unstable();
            let chunks = points.windows(2).map(|w| stream[w[0]..w[1]].to_vec());
            let (decoded, error) = decode(MAX_WIRE_FRAME, chunks);
            prop_assert_eq!(error, None);
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            max_frame in 0usize..70_000,
        ) {
            let total: usize = chunks.iter().map(Vec::len).sum();
            let (frames, _) = decode(max_frame, chunks);
            let taken: usize = frames.iter().map(|f| f.len() + LEN_PREFIX).sum();
            prop_assert!(taken <= total);
        }

        #[test]
        fn outbox_sends_every_frame_once_in_order(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..3000), 1..40),
            writes in proptest::collection::vec(1usize..5000, 1..50),
        ) {
            let mut outbox = Outbox::new(1514);
            let mut wire = Vec::new();
            let mut next = frames.iter();
            let mut pushed = 0u64;
            let mut sent = Sent::default();
            for (step, &write) in writes.iter().cycle().enumerate().take(10_000) {
                if step % 3 == 0 {
                    if let Some(frame) = next.next() {
                        let f = frame.clone();
                        let queued = outbox.push_with(|buf| {
                            let n = f.len().min(buf.len());
                            buf[..n].copy_from_slice(&f[..n]);
                            Some(n)
                        });
                        if queued.is_some() { pushed += 1 } else { next = frames[usize::try_from(pushed).unwrap()..].iter(); }
                    }
                }
                let pending = outbox.pending();
                let n = write.min(pending.len());
                wire.extend_from_slice(&pending[..n]);
                let s = outbox.consume(n);
                sent.frames += s.frames;
                sent.bytes += s.bytes;
                prop_assert_eq!(
                    outbox.queued_frames(),
                    pushed - sent.frames,
                );
                if pushed == frames.len() as u64 && outbox.is_empty() {
                    break;
                }
            }
            let expected: Vec<Vec<u8>> = frames.iter().map(|f| f[..f.len().min(1514)].to_vec()).collect();
            prop_assert_eq!(sent.frames, expected.len() as u64);
            prop_assert_eq!(sent.bytes, expected.iter().map(|f| f.len() as u64).sum::<u64>());
            prop_assert_eq!(wire, encode(&expected));
        }
    }

    #[test]
    fn several_frames_in_one_read() {
        let frames = vec![vec![1; 60], vec![2; 14], vec![3; 1514]];
        let (decoded, error) = decode(1514, [encode(&frames)]);
        assert_eq!((decoded, error), (frames, None));
    }

    #[test]
    fn frames_shorter_than_an_ethernet_header_are_skipped_and_the_next_decodes() {
        let mut stream = Vec::new();
        for len in 0..ETHERNET_HEADER {
            stream.extend(u32::try_from(len).unwrap().to_be_bytes());
            stream.extend(vec![0xee; len]);
        }
        stream.extend(encode(&[vec![8; 60]]));
        let mut decoder = FrameDecoder::new(1514);
        decoder.space()[..stream.len()].copy_from_slice(&stream);
        decoder.filled(stream.len());
        for len in 0..ETHERNET_HEADER {
            assert_eq!(decoder.next_frame(), Ok(Some(Decoded::TooShort(len))));
        }
        assert_eq!(
            decoder.next_frame(),
            Ok(Some(Decoded::Frame(&[8u8; 60][..])))
        );
        assert_eq!(decoder.next_frame(), Ok(None));
    }

    #[test]
    fn overlong_lengths_are_errors() {
        let (_, error) = decode(1514, [vec![0xff, 0xff, 0xff, 0xff]]);
        assert_eq!(error, Some(FramingError::TooLong(u32::MAX)));
        let claimed = u32::try_from(MAX_WIRE_FRAME + 1).unwrap();
        let (_, error) = decode(1514, [claimed.to_be_bytes().to_vec()]);
        assert_eq!(error, Some(FramingError::TooLong(claimed)));
    }

    #[test]
    fn a_frame_over_max_frame_is_skipped_and_the_next_decodes() {
        let frames = vec![vec![7; 1515], vec![8; 60]];
        let mut decoder = FrameDecoder::new(1514);
        let stream = encode(&frames);
        decoder.space()[..stream.len()].copy_from_slice(&stream);
        decoder.filled(stream.len());
        assert_eq!(decoder.next_frame(), Ok(Some(Decoded::Oversized(1515))));
        assert_eq!(
            decoder.next_frame(),
            Ok(Some(Decoded::Frame(&[8u8; 60][..])))
        );
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn outbox_stops_taking_frames_when_full() {
        let mut outbox = Outbox::new(MAX_WIRE_FRAME);
        let mut queued = 0;
        while outbox.push_with(|buf| Some(buf.len())).is_some() {
            queued += 1;
            assert!(queued < 100, "bounded");
        }
        assert!(!outbox.has_room());
        assert!(queued >= 2);
        assert_eq!(outbox.queued_frames(), queued);
        assert!(outbox.pending().len() <= 4 * (LEN_PREFIX + MAX_WIRE_FRAME));
        let sent = outbox.consume(outbox.pending().len());
        assert_eq!(sent.frames, queued);
        assert!(outbox.is_empty() && outbox.has_room());
    }
}
