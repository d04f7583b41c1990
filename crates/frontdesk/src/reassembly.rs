//! Reassembly of the IPv4 fragments a guest sends (RFC 791, with RFC 815's
//! bookkeeping and RFC 5722's rule on overlaps), in bounded memory and time.
//!
//! Fragments are held per datagram, keyed by (source, destination,
//! protocol, identification), until every byte from offset 0 to the end the
//! last fragment gives has come; the whole datagram is then written as one
//! frame, first fragment's header first, for the front desk to classify like
//! any unfragmented frame (its transport checksum is checked on the whole).
//!
//! The bounds, each counted when it bites:
//! - [`MAX_DATAGRAMS`] datagrams in reassembly and [`MAX_BYTES`] bytes held
//!   for them (fragment data plus [`FRAGMENT_OVERHEAD`] per fragment); a new
//!   fragment that would pass either gives up the oldest datagrams first
//!   ([`DropReason::FragmentLimit`]);
//! - [`REASSEMBLY_TIMEOUT`] from a datagram's first fragment to its last
//!   ([`DropReason::FragmentTimeout`]), served by [`Reassembler::poll_timeout`]
//!   and [`Reassembler::handle_timeout`]: nothing held, no deadline;
//! - no datagram longer than an IPv4 total length (65535 bytes,
//!   [`DropReason::FragmentTooLong`]).
//!
//! A fragment that overlaps one held gives up the whole datagram
//! ([`DropReason::FragmentOverlap`]); an exact duplicate of one held is
//! dropped alone ([`DropReason::FragmentDuplicate`]), as a retransmitted
//! frame is no attack. A fragment other than the last whose length is not a
//! positive multiple of 8 ([`DropReason::FragmentMisaligned`]), and a last
//! fragment whose end disagrees with another last fragment or with data held
//! ([`DropReason::FragmentBadEnd`]) are dropped too. Every frame a dropped
//! datagram held is counted once, under the reason that dropped it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use smoltcp::wire::{
    ETHERNET_HEADER_LEN, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr,
    IpProtocol, Ipv4Packet,
};

use super::counters::{Counters, DropReason};

/// How long a datagram may take to arrive whole, from its first fragment:
/// Linux's default (`net.ipv4.ipfrag_time`).
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Datagrams in reassembly at once at most.
pub const MAX_DATAGRAMS: usize = 64;

/// Bytes held for datagrams in reassembly at most (1 MiB): fragment data,
/// first headers and [`FRAGMENT_OVERHEAD`] per fragment. The largest
/// datagram cut into the smallest fragments (8 bytes each) costs under
/// 600 KiB, so one always fits.
pub const MAX_BYTES: usize = 1 << 20;

/// What holding one fragment costs besides its data: its map entry and
/// allocation.
pub const FRAGMENT_OVERHEAD: usize = 64;

/// The largest IPv4 datagram, header included.
const MAX_TOTAL_LEN: usize = 65535;

/// An IPv4 fragment from the guest whose header has passed every check
/// (version, header checksum, TTL, protocol): more-fragments set or a
/// non-zero offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Fragment<'a> {
    /// The Ethernet source address.
    pub src_mac: EthernetAddress,
    /// The Ethernet destination address.
    pub dst_mac: EthernetAddress,
    /// The IPv4 source address.
    pub src_addr: Ipv4Addr,
    /// The IPv4 destination address.
    pub dst_addr: Ipv4Addr,
    /// The protocol of the whole datagram.
    pub protocol: IpProtocol,
    /// The identification field.
    pub ident: u16,
    /// Where the data goes in the whole datagram's payload, in bytes.
    pub offset: usize,
    /// Whether more fragments follow (false: this is the last).
    pub more_frags: bool,
    /// The fragment's IPv4 header, options included.
    pub header: &'a [u8],
    /// The fragment's data, as long as its total length says.
    pub data: &'a [u8],
}

/// What identifies the fragments of one datagram (RFC 791).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    ident: u16,
}

impl Key {
    fn of(fragment: &Ipv4Fragment<'_>) -> Self {
        Self {
            src: fragment.src_addr,
            dst: fragment.dst_addr,
            protocol: fragment.protocol,
            ident: fragment.ident,
        }
    }
}

/// The first fragment's link addresses and IPv4 header.
#[derive(Clone, Debug)]
struct First {
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    header: Vec<u8>,
}

/// One datagram in reassembly.
#[derive(Clone, Debug)]
struct Datagram {
    key: Key,
    deadline: Instant,
    first: Option<First>,
    /// Fragment data by offset; no two overlap.
    fragments: BTreeMap<usize, Vec<u8>>,
    /// Where the payload ends, once the last fragment came.
    end: Option<usize>,
    /// Data bytes held: the payload is whole when this reaches `end`.
    held: usize,
    /// Bytes charged against [`MAX_BYTES`].
    cost: usize,
    /// Frames taken in (empty ones too), to count if the datagram is
    /// dropped.
    frames: u64,
}

/// Why a fragment gives up its whole datagram, or only itself.
enum Refusal {
    /// Drop this frame only.
    Frame(DropReason),
    /// Drop the datagram with every frame it holds, and this one.
    Datagram(DropReason),
}

/// What became of a fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reassembly {
    /// Held until the rest of its datagram comes.
    Held,
    /// It completed its datagram: the whole datagram's frame (Ethernet
    /// header, the first fragment's IPv4 header with its length and
    /// fragment fields rewritten, the payload).
    Whole(Vec<u8>),
    /// It was dropped, with its datagram or alone; the drop is counted.
    Dropped(DropReason),
}

/// The datagrams a guest is sending in fragments.
#[derive(Clone, Debug, Default)]
pub struct Reassembler {
    /// Oldest first.
    datagrams: Vec<Datagram>,
    bytes: usize,
}

impl Reassembler {
    /// Nothing in reassembly.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Datagrams in reassembly now.
    #[must_use]
    pub fn datagrams(&self) -> usize {
        self.datagrams.len()
    }

    /// Bytes held now, as charged against [`MAX_BYTES`].
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the oldest datagram in reassembly times out; `None` when none
    /// is.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.datagrams.iter().map(|d| d.deadline).min()
    }

    /// Gives up the datagrams whose time ran out by `now`, counting their
    /// frames as [`DropReason::FragmentTimeout`] drops.
    pub fn handle_timeout(&mut self, now: Instant, counters: &mut Counters) {
        let bytes = &mut self.bytes;
        self.datagrams.retain(|datagram| {
            if datagram.deadline > now {
                return true;
            }
            *bytes = bytes.saturating_sub(datagram.cost);
            tracing::debug!(
                ident = datagram.key.ident,
                frames = datagram.frames,
                "fragments timed out"
            );
            counters.record_drops(DropReason::FragmentTimeout, datagram.frames);
            false
        });
    }

    /// Takes one fragment (already counted as a frame in `counters`),
    /// counting what it drops there.
    pub fn handle_fragment(
        &mut self,
        fragment: &Ipv4Fragment<'_>,
        now: Instant,
        counters: &mut Counters,
    ) -> Reassembly {
        if let Err(reason) = check_alone(fragment) {
            counters.record_drop(reason);
            return Reassembly::Dropped(reason);
        }
        let key = Key::of(fragment);
        let at = match self.datagrams.iter().position(|d| d.key == key) {
            Some(at) => at,
            None => self.start(key, now, counters),
        };
        match check_against(&self.datagrams[at], fragment) {
            Ok(()) => {}
            Err(Refusal::Frame(reason)) => {
                counters.record_drop(reason);
                return Reassembly::Dropped(reason);
            }
            Err(Refusal::Datagram(reason)) => {
                let datagram = self.remove(at);
                counters.record_drops(reason, datagram.frames.saturating_add(1));
                return Reassembly::Dropped(reason);
            }
        }
        let cost = fragment_cost(fragment);
        let Some(at) = self.make_room(at, cost, counters) else {
            return Reassembly::Dropped(DropReason::FragmentLimit);
        };
        let datagram = &mut self.datagrams[at];
        datagram.frames = datagram.frames.saturating_add(1);
        datagram.cost = datagram.cost.saturating_add(cost);
        self.bytes = self.bytes.saturating_add(cost);
        if !fragment.more_frags {
            datagram.end = Some(fragment.offset.saturating_add(fragment.data.len()));
        }
        if fragment.offset == 0 {
            datagram.first = Some(First {
                src_mac: fragment.src_mac,
                dst_mac: fragment.dst_mac,
                header: fragment.header.to_vec(),
            });
        }
        if !fragment.data.is_empty() {
            datagram.held = datagram.held.saturating_add(fragment.data.len());
            datagram
                .fragments
                .insert(fragment.offset, fragment.data.to_vec());
        }
        let whole = datagram.first.is_some() && datagram.end == Some(datagram.held);
        if !whole {
            return Reassembly::Held;
        }
        let datagram = self.remove(at);
        match assemble(&datagram) {
            Some(frame) => {
                counters.record_reassembled();
                Reassembly::Whole(frame)
            }
            None => {
                counters.record_drops(DropReason::FragmentTooLong, datagram.frames);
                Reassembly::Dropped(DropReason::FragmentTooLong)
            }
        }
    }

    /// Starts reassembly of a new datagram, giving up the oldest when
    /// [`MAX_DATAGRAMS`] are already in it. Returns its index.
    fn start(&mut self, key: Key, now: Instant, counters: &mut Counters) -> usize {
        if self.datagrams.len() >= MAX_DATAGRAMS {
            let oldest = self.remove(0);
            counters.record_drops(DropReason::FragmentLimit, oldest.frames);
        }
        self.datagrams.push(Datagram {
            key,
            deadline: now + REASSEMBLY_TIMEOUT,
            first: None,
            fragments: BTreeMap::new(),
            end: None,
            held: 0,
            cost: 0,
            frames: 0,
        });
        self.datagrams.len() - 1
    }

    /// Gives up the oldest other datagrams until `cost` more bytes fit in
    /// [`MAX_BYTES`]. Returns the index of datagram `at` afterwards, or
    /// `None` when even alone it would not fit (then it is dropped too).
    fn make_room(&mut self, mut at: usize, cost: usize, counters: &mut Counters) -> Option<usize> {
        while self.bytes.saturating_add(cost) > MAX_BYTES {
            let victim = usize::from(at == 0);
            if victim >= self.datagrams.len() {
                let datagram = self.remove(at);
                counters.record_drops(DropReason::FragmentLimit, datagram.frames.saturating_add(1));
                return None;
            }
            let dropped = self.remove(victim);
            counters.record_drops(DropReason::FragmentLimit, dropped.frames);
            if victim < at {
                at -= 1;
            }
        }
        Some(at)
    }

    fn remove(&mut self, at: usize) -> Datagram {
        let datagram = self.datagrams.remove(at);
        self.bytes = self.bytes.saturating_sub(datagram.cost);
        datagram
    }
}

/// What holding `fragment` costs.
fn fragment_cost(fragment: &Ipv4Fragment<'_>) -> usize {
    let header = if fragment.offset == 0 {
        fragment.header.len()
    } else {
        0
    };
    FRAGMENT_OVERHEAD
        .saturating_add(fragment.data.len())
        .saturating_add(header)
}

/// The checks a fragment passes on its own.
fn check_alone(fragment: &Ipv4Fragment<'_>) -> Result<(), DropReason> {
    let len = fragment.data.len();
    if fragment.more_frags && (len == 0 || len % 8 != 0) {
        return Err(DropReason::FragmentMisaligned);
    }
    let total = fragment
        .offset
        .saturating_add(len)
        .saturating_add(fragment.header.len());
    if total > MAX_TOTAL_LEN {
        return Err(DropReason::FragmentTooLong);
    }
    Ok(())
}

/// The checks a fragment passes against what its datagram holds.
fn check_against(datagram: &Datagram, fragment: &Ipv4Fragment<'_>) -> Result<(), Refusal> {
    let start = fragment.offset;
    let end = start.saturating_add(fragment.data.len());
    let held_end = datagram
        .fragments
        .last_key_value()
        .map_or(0, |(offset, data)| offset.saturating_add(data.len()));
    match (fragment.more_frags, datagram.end) {
        (false, Some(known)) if known != end => {
            return Err(Refusal::Datagram(DropReason::FragmentBadEnd));
        }
        (false, None) if held_end > end => {
            return Err(Refusal::Datagram(DropReason::FragmentBadEnd));
        }
        (true, Some(known)) if end > known => {
            return Err(Refusal::Datagram(DropReason::FragmentBadEnd));
        }
        _ => {}
    }
    if start == end {
        return Ok(());
    }
    // The held fragment starting last before this one's end is the only one
    // that can overlap it without an earlier one doing so as well.
    if let Some((&offset, data)) = datagram.fragments.range(..end).next_back() {
        let held_end = offset.saturating_add(data.len());
        if held_end > start {
            if offset == start && held_end == end {
                return Err(Refusal::Frame(DropReason::FragmentDuplicate));
            }
            return Err(Refusal::Datagram(DropReason::FragmentOverlap));
        }
    }
    Ok(())
}

/// The whole datagram's frame, or `None` when it exceeds an IPv4 total
/// length.
fn assemble(datagram: &Datagram) -> Option<Vec<u8>> {
    let first = datagram.first.as_ref()?;
    let header_len = first.header.len();
    let total = header_len.checked_add(datagram.held)?;
    let total_u16 = u16::try_from(total).ok()?;
    let mut frame = vec![0u8; ETHERNET_HEADER_LEN.checked_add(total)?];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: first.src_mac,
        dst_addr: first.dst_mac,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let ip = eth.payload_mut();
    ip.get_mut(..header_len)?.copy_from_slice(&first.header);
    for (&offset, data) in &datagram.fragments {
        let from = header_len.checked_add(offset)?;
        ip.get_mut(from..from.checked_add(data.len())?)?
            .copy_from_slice(data);
    }
    let mut packet = Ipv4Packet::new_unchecked(ip);
    packet.set_total_len(total_u16);
    packet.set_more_frags(false);
    packet.set_frag_offset(0);
    packet.fill_checksum();
    Some(frame)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    const MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

    /// A 20-byte IPv4 header as a first fragment carries it.
    fn header() -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[0] = 0x45;
        h[8] = 64;
        h[9] = 17;
        h[12..16].copy_from_slice(&SRC.octets());
        h[16..20].copy_from_slice(&DST.octets());
        h
    }

    fn fragment<'a>(
        header: &'a [u8],
        ident: u16,
        offset: usize,
        more: bool,
        data: &'a [u8],
    ) -> Ipv4Fragment<'a> {
        Ipv4Fragment {
            src_mac: MAC,
            dst_mac: MAC,
            src_addr: SRC,
            dst_addr: DST,
            protocol: IpProtocol::Udp,
            ident,
            offset,
            more_frags: more,
            header,
            data,
        }
    }

    /// Cuts `payload` into pieces of `size` bytes (a multiple of 8).
    fn cut(payload: &[u8], size: usize) -> Vec<(usize, bool, &[u8])> {
        let pieces: Vec<_> = payload.chunks(size).collect();
        let n = pieces.len();
        pieces
            .into_iter()
            .enumerate()
            .map(|(i, piece)| (i * size, i + 1 < n, piece))
            .collect()
    }

    /// The whole datagram's frame, if `f` completes it.
    fn feed(
        r: &mut Reassembler,
        f: &Ipv4Fragment<'_>,
        now: Instant,
        c: &mut Counters,
    ) -> Option<Vec<u8>> {
        match r.handle_fragment(f, now, c) {
            Reassembly::Whole(frame) => Some(frame),
            Reassembly::Held | Reassembly::Dropped(_) => None,
        }
    }

    fn payload_of(frame: &[u8]) -> &[u8] {
        let packet = Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).unwrap();
        assert!(packet.verify_checksum());
        assert!(!packet.more_frags());
        assert_eq!(packet.frag_offset(), 0);
        let len = usize::from(packet.total_len()) - 20;
        &frame[ETHERNET_HEADER_LEN + 20..][..len]
    }

    #[test]
    fn in_order_fragments_reassemble() {
        let h = header();
        let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut r = Reassembler::new();
        let mut c = Counters::new();
        let now = Instant::now();
        let mut whole = None;
        for (offset, more, data) in cut(&payload, 1480) {
            assert!(whole.is_none());
            whole = feed(&mut r, &fragment(&h, 7, offset, more, data), now, &mut c);
        }
        assert_eq!(payload_of(&whole.unwrap()), &payload[..]);
        assert_eq!((r.datagrams(), r.bytes(), c.reassembled()), (0, 0, 1));
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn overlap_drops_the_datagram_and_counts_each_frame() {
        let h = header();
        let data = [1u8; 16];
        let mut r = Reassembler::new();
        let mut c = Counters::new();
        let now = Instant::now();
        assert!(feed(&mut r, &fragment(&h, 1, 0, true, &data), now, &mut c).is_none());
        assert!(feed(&mut r, &fragment(&h, 1, 8, true, &data), now, &mut c).is_none());
        assert_eq!(c.drops(DropReason::FragmentOverlap), 2);
        assert_eq!((r.datagrams(), r.bytes()), (0, 0));
    }

    #[test]
    fn exact_duplicate_is_dropped_alone() {
        let h = header();
        let data = [1u8; 16];
        let mut r = Reassembler::new();
        let mut c = Counters::new();
        let now = Instant::now();
        assert!(feed(&mut r, &fragment(&h, 1, 0, true, &data), now, &mut c).is_none());
        assert!(feed(&mut r, &fragment(&h, 1, 0, true, &data), now, &mut c).is_none());
        assert_eq!(c.drops(DropReason::FragmentDuplicate), 1);
        let whole = feed(&mut r, &fragment(&h, 1, 16, false, &data[..3]), now, &mut c);
        assert_eq!(payload_of(&whole.unwrap()).len(), 19);
    }

    #[test]
    fn misaligned_too_long_and_bad_ends_are_counted() {
        let h = header();
        let mut r = Reassembler::new();
        let mut c = Counters::new();
        let now = Instant::now();
        let odd = [0u8; 13];
        assert!(feed(&mut r, &fragment(&h, 1, 0, true, &odd), now, &mut c).is_none());
        assert_eq!(c.drops(DropReason::FragmentMisaligned), 1);
        let big = [0u8; 1000];
        assert!(feed(&mut r, &fragment(&h, 2, 65000, false, &big), now, &mut c).is_none());
        assert_eq!(c.drops(DropReason::FragmentTooLong), 1);
        let eight = [0u8; 8];
        feed(&mut r, &fragment(&h, 3, 64, false, &eight), now, &mut c);
        feed(&mut r, &fragment(&h, 3, 80, false, &eight), now, &mut c);
        assert_eq!(c.drops(DropReason::FragmentBadEnd), 2);
        feed(&mut r, &fragment(&h, 4, 64, false, &eight), now, &mut c);
        feed(&mut r, &fragment(&h, 4, 72, true, &eight), now, &mut c);
        assert_eq!(c.drops(DropReason::FragmentBadEnd), 4);
        assert_eq!((r.datagrams(), r.bytes()), (0, 0));
    }

    #[test]
    fn timeout_gives_up_the_datagram_and_leaves_no_deadline() {
        let h = header();
        let data = [0u8; 8];
        let mut r = Reassembler::new();
        let mut c = Counters::new();
        let now = Instant::now();
        feed(&mut r, &fragment(&h, 1, 0, true, &data), now, &mut c);
        feed(&mut r, &fragment(&h, 1, 16, true, &data), now, &mut c);
        assert_eq!(r.poll_timeout(), Some(now + REASSEMBLY_TIMEOUT));
        r.handle_timeout(now + REASSEMBLY_TIMEOUT - Duration::from_millis(1), &mut c);
        assert_eq!(r.datagrams(), 1);
        r.handle_timeout(now + REASSEMBLY_TIMEOUT, &mut c);
        assert_eq!(c.drops(DropReason::FragmentTimeout), 2);
        assert_eq!((r.datagrams(), r.bytes(), r.poll_timeout()), (0, 0, None));
    }

    #[test]
    fn too_many_datagrams_give_up_the_oldest() {
        let h = header();
        let data = [0u8; 8];
        let mut r = Reassembler::new();
        let mut c = Counters::new();
        let now = Instant::now();
        for ident in 0..=u16::try_from(MAX_DATAGRAMS).unwrap() {
            feed(&mut r, &fragment(&h, ident, 0, true, &data), now, &mut c);
        }
        assert_eq!(r.datagrams(), MAX_DATAGRAMS);
        assert_eq!(c.drops(DropReason::FragmentLimit), 1);
        // Datagram 0 is gone: its last fragment starts a new datagram.
        assert!(feed(&mut r, &fragment(&h, 0, 8, false, &data), now, &mut c).is_none());
        // Datagram 2 is still held and completes.
        assert!(feed(&mut r, &fragment(&h, 2, 8, false, &data), now, &mut c).is_some());
    }

    /// A datagram's fragments: pieces of multiples of 8 bytes (the last
    /// any length), in an arbitrary order, and pieces to send twice.
    fn split_strategy() -> impl Strategy<Value = (Vec<u8>, Vec<usize>, Vec<usize>, Vec<usize>)> {
        (
            proptest::collection::vec(any::<u8>(), 1..6000),
            proptest::collection::vec(1usize..200, 1..40),
        )
            .prop_flat_map(|(payload, sizes)| {
                let n = pieces(&payload, &sizes).len();
                let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
                let dups = proptest::collection::vec(0..n, 0..4);
                (Just(payload), Just(sizes), order, dups)
            })
    }

    /// Offsets and lengths of the pieces `sizes` (in 8-byte units, cycled)
    /// cut `payload` into.
    fn pieces(payload: &[u8], sizes: &[usize]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut offset = 0;
        let mut i = 0;
        while offset < payload.len() {
            let len = (sizes[i % sizes.len()] * 8).min(payload.len() - offset);
            out.push((offset, len));
            offset += len;
            i += 1;
        }
        out
    }

    proptest! {
        #[test]
        fn any_split_and_order_reassembles_the_same_bytes(
            (payload, sizes, order, dups) in split_strategy()
        ) {
            let h = header();
            let all = pieces(&payload, &sizes);
            let mut sequence = order.clone();
            for dup in dups {
                // Right after its original, so that the piece sent last
                // stays the one that completes the datagram.
                let at = sequence.iter().position(|&i| i == dup).unwrap_or(0);
                if at + 1 < sequence.len() {
                    sequence.insert(at + 1, dup);
                }
            }
            let mut r = Reassembler::new();
            let mut c = Counters::new();
            let now = Instant::now();
            let mut whole = None;
            for &i in &sequence {
                let (offset, len) = all[i];
                let more = offset + len < payload.len();
                let f = fragment(&h, 9, offset, more, &payload[offset..offset + len]);
                if let Some(frame) = feed(&mut r, &f, now, &mut c) {
                    prop_assert!(whole.is_none(), "completed twice");
                    whole = Some(frame);
                }
            }
            let whole = whole.expect("reassembled");
            prop_assert_eq!(payload_of(&whole), &payload[..]);
            prop_assert_eq!(c.drops(DropReason::FragmentOverlap), 0);
            prop_assert_eq!(r.bytes(), 0);
        }

        #[test]
        fn fragment_garbage_never_panics_and_stays_bounded(
            frags in proptest::collection::vec(
                (0u16..70, 0usize..8192, any::<bool>(), 0usize..3000, 0u64..40),
                1..600,
            )
        ) {
            let h = header();
            let data = vec![0xa5u8; 3000];
            let mut r = Reassembler::new();
            let mut c = Counters::new();
            let start = Instant::now();
            for (ident, offset8, more, len, secs) in frags {
                let now = start + Duration::from_secs(secs);
                let f = fragment(&h, ident, offset8 * 8, more, &data[..len]);
                let _ = r.handle_fragment(&f, now, &mut c);
                r.handle_timeout(now, &mut c);
                prop_assert!(r.bytes() <= MAX_BYTES);
                prop_assert!(r.datagrams() <= MAX_DATAGRAMS);
            }
            r.handle_timeout(start + Duration::from_secs(100), &mut c);
            prop_assert_eq!((r.datagrams(), r.bytes(), r.poll_timeout()), (0, 0, None));
        }
    }
}
