//! A capture of guest-side frames in the classic pcap format (the one
//! `tcpdump -w` writes), link type Ethernet.
//!
//! The writer takes each frame's timestamp from its caller, so the event
//! loop, which reads the clock, decides the time.

use std::io::{self, Write};
use std::time::Duration;

/// The magic number of a classic pcap file with microsecond timestamps.
pub const PCAP_MAGIC: u32 = 0xa1b2_c3d4;
/// The link type of Ethernet frames (`LINKTYPE_ETHERNET`).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// The default snapshot length: the largest Ethernet frame slipway handles.
pub const DEFAULT_SNAPLEN: u32 = 65535;

/// Writes a pcap file: the global header first, then one record per frame.
/// All fields are little-endian; readers tell the byte order from the magic
/// number.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header (version 2.4, `snaplen`, Ethernet) to `out`.
    /// A `snaplen` of zero means [`DEFAULT_SNAPLEN`].
    pub fn new(mut out: W, snaplen: u32) -> io::Result<Self> {
        let snaplen = if snaplen == 0 {
            DEFAULT_SNAPLEN
        } else {
            snaplen
        };
        let mut header = [0u8; 24];
        let fields = [
            &PCAP_MAGIC.to_le_bytes()[..],
            &2u16.to_le_bytes(),    // major version
            &4u16.to_le_bytes(),    // minor version
            &0i32.to_le_bytes(),    // time zone offset
            &0u32.to_le_bytes(),    // timestamp accuracy
            &snaplen.to_le_bytes(), // snapshot length
            &LINKTYPE_ETHERNET.to_le_bytes(),
        ];
        fill(&mut header, &fields);
        out.write_all(&header)?;
        Ok(Self { out, snaplen })
    }

    /// The snapshot length: frames longer than this are truncated.
    #[must_use]
    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// Writes one frame seen at `timestamp` (time since the Unix epoch),
    /// truncated to the snapshot length; the record keeps its original
    /// length. Seconds past what 32 bits hold are clamped.
    pub fn write_frame(&mut self, timestamp: Duration, frame: &[u8]) -> io::Result<()> {
        let seconds = u32::try_from(timestamp.as_secs()).unwrap_or(u32::MAX);
        let micros = timestamp.subsec_micros();
        let original = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let captured = original.min(self.snaplen);
        let data = frame
            .get(..usize::try_from(captured).unwrap_or(usize::MAX))
            .unwrap_or(frame);
        let mut header = [0u8; 16];
        let fields = [
            &seconds.to_le_bytes()[..],
            &micros.to_le_bytes(),
            &captured.to_le_bytes(),
            &original.to_le_bytes(),
        ];
        fill(&mut header, &fields);
        self.out.write_all(&header)?;
        self.out.write_all(data)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Concatenates `fields` into `header`, which they fill exactly.
fn fill(header: &mut [u8], fields: &[&[u8]]) {
    let mut rest = header;
    for field in fields {
        let (head, tail) = rest.split_at_mut(field.len().min(rest.len()));
        head.copy_from_slice(&field[..head.len()]);
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
    }

    /// Parses a classic little-endian pcap file back into its snaplen, link
    /// type and (seconds, microseconds, original length, data) records.
    #[allow(clippy::type_complexity)]
    fn parse(bytes: &[u8]) -> (u32, u32, Vec<(u32, u32, u32, Vec<u8>)>) {
        assert_eq!(u32_at(bytes, 0), PCAP_MAGIC);
        assert_eq!((u16_at(bytes, 4), u16_at(bytes, 6)), (2, 4));
        let (snaplen, linktype) = (u32_at(bytes, 16), u32_at(bytes, 20));
        let mut records = Vec::new();
        let mut at = 24;
        while at < bytes.len() {
            let (sec, usec) = (u32_at(bytes, at), u32_at(bytes, at + 4));
            let (incl, orig) = (u32_at(bytes, at + 8), u32_at(bytes, at + 12));
            let start = at + 16;
            let end = start + incl as usize;
            records.push((sec, usec, orig, bytes[start..end].to_vec()));
            at = end;
        }
        (snaplen, linktype, records)
    }

    #[test]
    fn writes_header_and_records_that_parse_back() {
        let mut pcap = PcapWriter::new(Vec::new(), 0).unwrap();
        let first: Vec<u8> = (0..60).collect();
        let second = vec![0xee; 1514];
        pcap.write_frame(Duration::new(1_700_000_000, 123_456_789), &first)
            .unwrap();
        pcap.write_frame(Duration::from_secs(1_700_000_001), &second)
            .unwrap();
        let bytes = pcap.into_inner();
        let (snaplen, linktype, records) = parse(&bytes);
        assert_eq!((snaplen, linktype), (DEFAULT_SNAPLEN, LINKTYPE_ETHERNET));
        assert_eq!(
            records,
            vec![
                (1_700_000_000, 123_456, 60, first),
                (1_700_000_001, 0, 1514, second)
            ]
        );
    }

    #[test]
    fn truncates_at_snaplen_and_keeps_original_length() {
        let mut pcap = PcapWriter::new(Vec::new(), 64).unwrap();
        let frame = vec![7u8; 100];
        pcap.write_frame(Duration::ZERO, &frame).unwrap();
        let (snaplen, _, records) = parse(&pcap.into_inner());
        assert_eq!(snaplen, 64);
        assert_eq!(records, vec![(0, 0, 100, vec![7u8; 64])]);
    }
}
