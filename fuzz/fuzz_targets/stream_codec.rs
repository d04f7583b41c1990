//! The stream frontend's length-prefix codec (`slipway::frontend::framing`).
//!
//! Half the inputs are arbitrary byte chunks read into a `FrameDecoder`:
//! no panic, every frame handed out is within `max_frame`, an error repeats
//! until the decoder is cleared, and the buffered count never exceeds what
//! was read. The other half are frames put through an `Outbox`, its bytes
//! sent in arbitrary pieces and decoded again: every frame comes back as
//! it went in (or as `Oversized` with its length when longer than the
//! decoder takes), and the outbox's counts of frames and bytes sent match.
#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use slipway::frontend::framing::{Decoded, ETHERNET_HEADER, FrameDecoder, MAX_WIRE_FRAME, Outbox};
use slipway_fuzz::Input;

/// The frame limits an input picks from: the codec's buffers are large,
/// so one decoder and one outbox per limit are made once and cleared
/// before each input (a cleared one is as a new one), which keeps the
/// target fast.
const MAX_FRAMES: [usize; 8] = [1, 14, 60, 1514, 4096, 9014, 65535, MAX_WIRE_FRAME];

struct Codecs {
    decoders: Vec<FrameDecoder>,
    outboxes: Vec<Outbox>,
}

thread_local! {
    static CODECS: RefCell<Codecs> = RefCell::new(Codecs {
        decoders: MAX_FRAMES.iter().map(|&max| FrameDecoder::new(max)).collect(),
        outboxes: MAX_FRAMES.iter().map(|&max| Outbox::new(max)).collect(),
    });
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let out_pick = usize::from(input.u8()) % MAX_FRAMES.len();
    let in_pick = usize::from(input.u8()) % MAX_FRAMES.len();
    CODECS.with_borrow_mut(|codecs| {
        let decoder = &mut codecs.decoders[in_pick];
        decoder.clear();
        if mode & 1 == 0 {
            decode_chunks(&mut input, decoder, MAX_FRAMES[in_pick]);
        } else {
            let outbox = &mut codecs.outboxes[out_pick];
            outbox.clear();
            round_trip(
                &mut input,
                outbox,
                MAX_FRAMES[out_pick],
                decoder,
                MAX_FRAMES[in_pick],
            );
        }
    });
});

fn decode_chunks(input: &mut Input<'_>, decoder: &mut FrameDecoder, max_frame: usize) {
    for _ in 0..1024 {
        if input.is_empty() {
            break;
        }
        let chunk = input.chunk(4096);
        let space = decoder.space();
        assert!(!space.is_empty(), "no room to read into");
        let n = chunk.len().min(space.len());
        space[..n].copy_from_slice(&chunk[..n]);
        decoder.filled(n);
        for _ in 0..4096 {
            match decoder.next_frame() {
                Ok(Some(Decoded::Frame(frame))) => {
                    assert!(
                        frame.len() >= ETHERNET_HEADER
                            && frame.len() <= max_frame.min(MAX_WIRE_FRAME)
                    );
                }
                Ok(Some(Decoded::TooShort(len))) => assert!(len < ETHERNET_HEADER),
                Ok(Some(Decoded::Oversized(len))) => {
                    assert!(len > max_frame && len <= MAX_WIRE_FRAME);
                }
                Ok(None) => break,
                Err(first) => {
                    assert_eq!(decoder.next_frame(), Err(first), "the error repeats");
                    decoder.clear();
                    assert_eq!(decoder.buffered(), 0);
                    break;
                }
            }
        }
    }
}

/// Bytes pushed into the outbox per input at most: longer inputs only
/// repeat what shorter ones cover, and slowly.
const MAX_PUSHED: u64 = 256 << 10;

fn round_trip(
    input: &mut Input<'_>,
    outbox: &mut Outbox,
    out_max: usize,
    decoder: &mut FrameDecoder,
    in_max: usize,
) {
    let mut in_flight: VecDeque<Vec<u8>> = VecDeque::new();
    let (mut pushed_frames, mut pushed_bytes) = (0u64, 0u64);
    let (mut sent_frames, mut sent_bytes) = (0u64, 0u64);
    for _ in 0..512 {
        let Some(op) = input.try_u8() else { break };
        if op & 1 == 0 && pushed_bytes > MAX_PUSHED {
            // Enough bytes for one input; the rest of it is sends.
            let _ = (input.u16(), input.u8());
        } else if op & 1 == 0 {
            let len = usize::from(input.u16());
            let fill = input.u8();
            let queued = outbox.push_with(|area| {
                let len = len.min(area.len());
                area[..len].fill(fill);
                Some(len)
            });
            if let Some(frame) = queued {
                assert!(!frame.is_empty() && frame.len() <= out_max.min(MAX_WIRE_FRAME));
                pushed_frames += 1;
                pushed_bytes += frame.len() as u64;
                in_flight.push_back(frame.to_vec());
            }
        } else {
            // The socket takes a piece of what is pending.
            let pending = outbox.pending();
            let n = usize::from(input.u16()).min(pending.len());
            let mut piece = &pending[..n];
            while !piece.is_empty() {
                let space = decoder.space();
                let m = piece.len().min(space.len());
                space[..m].copy_from_slice(&piece[..m]);
                decoder.filled(m);
                piece = &piece[m..];
                take_frames(decoder, &mut in_flight, in_max);
            }
            let sent = outbox.consume(n);
            sent_frames += sent.frames;
            sent_bytes += sent.bytes;
        }
        assert!(sent_frames <= pushed_frames && sent_bytes <= pushed_bytes);
    }
    if outbox.is_empty() {
        assert_eq!((sent_frames, sent_bytes), (pushed_frames, pushed_bytes));
        assert!(
            in_flight.is_empty(),
            "{} frames sent but not decoded",
            in_flight.len()
        );
    }
}

fn take_frames(decoder: &mut FrameDecoder, in_flight: &mut VecDeque<Vec<u8>>, in_max: usize) {
    for _ in 0..4096 {
        let decoded = match decoder.next_frame() {
            Ok(Some(decoded)) => decoded,
            Ok(None) => return,
            Err(error) => panic!("the decoder refused the outbox's bytes: {error}"),
        };
        let Some(expected) = in_flight.pop_front() else {
            panic!("decoded a frame nobody sent: {decoded:?}");
        };
        match decoded {
            Decoded::Frame(frame) => assert_eq!(frame, &expected[..]),
            Decoded::Oversized(len) => {
                assert_eq!(len, expected.len());
                assert!(len > in_max);
            }
            Decoded::TooShort(len) => {
                assert_eq!(len, expected.len());
                assert!(len < ETHERNET_HEADER);
            }
        }
    }
}
