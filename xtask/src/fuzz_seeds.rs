//! `cargo xtask fuzz --seed-corpora [PCAP...]`: turns captures of guest
//! traffic (`slipway run --pcap`, by default the files in `fuzz/captures/`)
//! and hand-built frames (DHCP, ARP, and the IPv6 conversations of
//! `ipv6`) into seed inputs for the fuzz targets, under
//! `fuzz/seeds/TARGET/`. Each encoder writes the input format its target
//! reads (see the target's operations), so a seed replays the captured
//! conversation: the guest's frames in, the host peers' answers (TCP data,
//! UDP and DNS replies) from the captured frames the other way. Captures
//! talk to the host peers' port (4242) for their flows to be accepted.

use std::fs;
use std::path::{Path, PathBuf};

use crate::process::workspace_root;

mod ipv6;

/// The guest's MAC in the default plan: frames from it are the guest's.
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Frames longer than this are cut (their IPv4 length field follows) so
/// that every seed stays a few KiB; a cut TSO frame is still longer than
/// the MTU.
const MAX_SEED_FRAME: usize = 6000;
/// Guest frames per seed of the frame targets.
const FRAMES_PER_SEED: usize = 24;

/// One frame of a capture, and which side sent it.
#[derive(Clone, Debug)]
struct Frame {
    from_guest: bool,
    bytes: Vec<u8>,
}

/// The records of a classic pcap file (either byte order).
fn read_pcap(path: &Path) -> Result<Vec<Frame>, String> {
    let data = fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let magic = data
        .get(..4)
        .ok_or_else(|| format!("{}: not a pcap", path.display()))?;
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] => false,
        _ => {
            return Err(format!(
                "{}: not a pcap (magic {magic:02x?})",
                path.display()
            ));
        }
    };
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        let v = if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        };
        usize::try_from(v).ok()
    };
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let incl = word(at + 8).ok_or("short record header")?;
        let bytes = data
            .get(at + 16..at + 16 + incl)
            .ok_or_else(|| format!("{}: record cut short", path.display()))?
            .to_vec();
        at += 16 + incl;
        let from_guest = bytes.get(6..12) == Some(&GUEST_MAC[..]);
        frames.push(Frame {
            from_guest,
            bytes: cut(bytes),
        });
    }
    Ok(frames)
}

/// Cuts a frame to [`MAX_SEED_FRAME`], keeping an IPv4 length field true.
fn cut(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() <= MAX_SEED_FRAME {
        return frame;
    }
    frame.truncate(MAX_SEED_FRAME);
    if frame[12..14] == [0x08, 0x00] {
        let total = u16::try_from(MAX_SEED_FRAME - 14).unwrap_or(u16::MAX);
        frame[16..18].copy_from_slice(&total.to_be_bytes());
    }
    frame
}

/// What a host-side frame carries for the guest, as the host peers of the
/// targets would send it.
enum HostPayload<'a> {
    Tcp(&'a [u8]),
    Udp(&'a [u8]),
    Dns(&'a [u8]),
}

/// The protocol, start and end of the transport message of an IPv4 frame
/// or of an IPv6 frame without extension headers.
fn transport(frame: &[u8]) -> Option<(u8, usize, usize)> {
    match frame.get(12..14)? {
        [0x08, 0x00] => {
            let l4 = 14 + usize::from(frame.get(14)? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]));
            Some((*frame.get(23)?, l4, (14 + total).min(frame.len())))
        }
        [0x86, 0xdd] => {
            let payload = usize::from(u16::from_be_bytes([*frame.get(18)?, *frame.get(19)?]));
            Some((*frame.get(20)?, 54, (54 + payload).min(frame.len())))
        }
        _ => None,
    }
}

/// The transport payload of a TCP or UDP frame from the host side.
fn host_payload(frame: &[u8]) -> Option<HostPayload<'_>> {
    let (protocol, l4, end) = transport(frame)?;
    let src_port = u16::from_be_bytes([*frame.get(l4)?, *frame.get(l4 + 1)?]);
    match protocol {
        6 => {
            let offset = usize::from(frame.get(l4 + 12)? >> 4) * 4;
            let payload = frame.get(l4 + offset..end)?;
            (!payload.is_empty()).then_some(HostPayload::Tcp(payload))
        }
        17 => {
            let payload = frame.get(l4 + 8..end)?;
            Some(if src_port == 53 {
                HostPayload::Dns(payload)
            } else {
                HostPayload::Udp(payload)
            })
        }
        _ => None,
    }
}

/// The payload of a guest's UDP datagram to port 53.
fn dns_query(frame: &[u8]) -> Option<&[u8]> {
    let (protocol, l4, end) = transport(frame)?;
    let dst_port = u16::from_be_bytes([*frame.get(l4 + 2)?, *frame.get(l4 + 3)?]);
    (protocol == 17 && dst_port == 53).then(|| frame.get(l4 + 8..end))?
}

fn push_chunk(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend(len.to_le_bytes());
    out.extend(&bytes[..usize::from(len)]);
}

/// The low nibble of `backend_frames`' frame operation that sets a TCP
/// segment's acknowledgment number to what the backend sent last
/// (`slipway_fuzz::frames::OP_FRAME_ACKED`).
const OP_FRAME_ACKED: u8 = 5;

/// `backend_frames`: each guest frame (checksums repaired; verified, or
/// vouched for when `offloaded`; a TCP segment acknowledging what the
/// backend sent, whose ISN the capture cannot know), host events after it,
/// the host peers' answers where the capture has them, a clock step at the
/// end.
fn encode_backend(frames: &[Frame], offloaded: bool) -> Vec<u8> {
    let frame_op = if offloaded { 0x20 } else { 0x00 };
    let mut out = Vec::new();
    for frame in frames {
        if frame.from_guest {
            let tcp = transport(&frame.bytes).is_some_and(|(protocol, ..)| protocol == 6);
            out.push(frame_op | if tcp { OP_FRAME_ACKED } else { 0 });
            push_chunk(&mut out, &frame.bytes);
            out.push(0x0e);
            out.push(0x08);
            continue;
        }
        match host_payload(&frame.bytes) {
            Some(HostPayload::Tcp(data)) => {
                out.extend([0x0a, 0x00]);
                push_chunk(&mut out, data);
            }
            Some(HostPayload::Udp(data)) => {
                out.push(0x0b);
                push_chunk(&mut out, data);
            }
            Some(HostPayload::Dns(data)) => {
                out.push(0x0c);
                push_chunk(&mut out, data);
            }
            None => continue,
        }
        out.push(0x0e);
    }
    out.extend([0x06, 0x10, 0x27]);
    out
}

/// A `virtio_net_hdr` for a guest frame on a tap with `offload` (0 none,
/// 1 checksum, 2 TSO): a TCP frame longer than the Ethernet MTU goes as a
/// TSO frame with a partial checksum, others as vouched for.
fn vnet_header(frame: &[u8], offload: u8) -> [u8; 12] {
    let mut header = [0u8; 12];
    let tcp = frame.get(12..14) == Some(&[0x08, 0x00][..]) && frame.get(23) == Some(&6);
    if offload == 2 && tcp && frame.len() > 1514 {
        header[0] = 1; // NEEDS_CSUM
        header[1] = 1; // GSO_TCPV4
        header[2..4].copy_from_slice(&66u16.to_ne_bytes());
        header[4..6].copy_from_slice(&1448u16.to_ne_bytes());
        header[6..8].copy_from_slice(&34u16.to_ne_bytes());
        header[8..10].copy_from_slice(&16u16.to_ne_bytes());
    } else {
        header[0] = 2; // DATA_VALID
    }
    header
}

/// `tap_vnet`: the offload, then each guest frame behind a header, and the
/// TCP data the host side sent, from the TCP peer.
fn encode_tap(frames: &[Frame], offload: u8) -> Vec<u8> {
    let mut out = vec![offload];
    for frame in frames {
        if frame.from_guest {
            out.push(0x00);
            if offload != 0 {
                out.extend(vnet_header(&frame.bytes, offload));
            }
            push_chunk(&mut out, &frame.bytes);
        } else if let Some(HostPayload::Tcp(data)) = host_payload(&frame.bytes) {
            out.extend([0x02, 0x00]);
            push_chunk(&mut out, data);
        }
    }
    out
}

/// `stream_codec`: both directions' frames as the stream frontend's
/// length-prefixed byte stream, read in pieces of 700 bytes; and the same
/// frames' lengths through the outbox and back.
fn encode_stream(frames: &[Frame]) -> (Vec<u8>, Vec<u8>) {
    let mut stream = Vec::new();
    for frame in frames {
        let len = u32::try_from(frame.bytes.len()).unwrap_or(0);
        stream.extend(len.to_be_bytes());
        stream.extend(&frame.bytes);
    }
    // Mode, then the picks of the outbox's and the decoder's frame limit
    // (65535 and 1514 in the target's list).
    let mut decode = vec![0x00, 6, 6];
    for piece in stream.chunks(700) {
        push_chunk(&mut decode, piece);
    }
    let mut round = vec![0x01, 6, 3];
    for frame in frames {
        let len = u16::try_from(frame.bytes.len()).unwrap_or(u16::MAX);
        round.push(0x00);
        round.extend(len.to_le_bytes());
        round.push(frame.bytes.first().copied().unwrap_or(0));
        round.push(0x01);
        round.extend(1000u16.to_le_bytes());
    }
    round.push(0x01);
    round.extend(u16::MAX.to_le_bytes());
    (decode, round)
}

/// The virtio-net features the seeds ack: VERSION_1, CSUM, GUEST_CSUM, MAC,
/// MRG_RXBUF.
const FEATURES: u64 = (1 << 32) | 1 | (1 << 1) | (1 << 5) | (1 << 15);
const VRING_DESC_F_WRITE: u16 = 2;

/// Memory writes (at most 512 bytes each, as `virtio_tables` takes them;
/// `op` is the target's memory-write operation) putting `bytes` at `at`.
fn memory_writes(out: &mut Vec<u8>, op: u8, at: u16, bytes: &[u8], max: usize) {
    for (i, piece) in bytes.chunks(max).enumerate() {
        let offset = u16::try_from(i * max).unwrap_or(0);
        out.push(op);
        out.extend(at.wrapping_add(offset).to_le_bytes());
        push_chunk(out, piece);
    }
}

fn descriptor(addr: u64, len: u32, flags: u16, next: u16) -> Vec<u8> {
    let mut d = addr.to_le_bytes().to_vec();
    d.extend(len.to_le_bytes());
    d.extend(flags.to_le_bytes());
    d.extend(next.to_le_bytes());
    d
}

/// A split ring's writes: one descriptor per buffer (`frames`: header and
/// frame each, for transmit; `rx`: that many 2 KiB write-only buffers),
/// the available ring naming them, for rings at `rings` with buffers from
/// `buffers`. Returns the memory image pieces as (address, bytes).
fn ring_image(rings: u16, buffers: u16, tx: &[&[u8]], rx: usize) -> Vec<(u16, Vec<u8>)> {
    let mut pieces = Vec::new();
    let mut table = Vec::new();
    let mut at = buffers;
    let mut heads = 0u16;
    for frame in tx {
        let mut buf = vec![0u8; 12];
        buf.extend(*frame);
        let len = u32::try_from(buf.len()).unwrap_or(0);
        table.extend(descriptor(u64::from(at), len, 0, 0));
        pieces.push((at, buf));
        at = at.wrapping_add(u16::try_from(len).unwrap_or(0).next_multiple_of(16));
        heads += 1;
    }
    for _ in 0..rx {
        table.extend(descriptor(u64::from(at), 2048, VRING_DESC_F_WRITE, 0));
        at = at.wrapping_add(2048);
        heads += 1;
    }
    pieces.push((rings, table));
    let mut avail = vec![0u8, 0];
    avail.extend(heads.to_le_bytes());
    for head in 0..heads {
        avail.extend(head.to_le_bytes());
    }
    pieces.push((rings + 0x1000, avail));
    pieces
}

/// The guest frames (small enough for one 2 KiB buffer) of a capture.
fn small_guest_frames(frames: &[Frame], most: usize) -> Vec<&[u8]> {
    frames
        .iter()
        .filter(|f| f.from_guest && f.bytes.len() <= 2000)
        .take(most)
        .map(|f| f.bytes.as_slice())
        .collect()
}

/// `virtio_tables`: the guest's frames in a transmit ring, receive buffers
/// for the peer's frames (the capture's host-side frame lengths), each
/// ring served.
fn encode_virtio(frames: &[Frame]) -> Vec<u8> {
    let mut out = FEATURES.to_le_bytes().to_vec();
    out.extend([8, 8, 1]);
    let tx = small_guest_frames(frames, 8);
    for (at, bytes) in ring_image(0x3000, 0x6000, &tx, 0) {
        memory_writes(&mut out, 0x00, at, &bytes, 512);
    }
    for (at, bytes) in ring_image(0x0000, 0xa000, &[], 8) {
        memory_writes(&mut out, 0x00, at, &bytes, 512);
    }
    out.push(0x03);
    for frame in frames.iter().filter(|f| !f.from_guest).take(8) {
        let len = u16::try_from(frame.bytes.len()).unwrap_or(0);
        out.push(0x32);
        out.extend(len.to_le_bytes());
        out.push(0xab);
    }
    out.extend([0x04, 0x03, 0x04]);
    out
}

/// `vhost_user`: the message sequence QEMU sends to start a virtio-net
/// device (features, a memory table with the memfd, both rings' size,
/// addresses, base, call and kick descriptors), then the guest's frames in
/// the transmit ring and receive buffers, a kick of each ring, and passes.
fn encode_vhost(frames: &[Frame]) -> Vec<u8> {
    // Operation 0 writes a message: the pick of request, its payload as
    // the target builds it, and whether descriptors go with it.
    let mut out = vec![0x00];
    let message = |out: &mut Vec<u8>, pick: u8, payload: &[u8], attach: u8| {
        out.push(0x00);
        out.push(pick);
        out.extend(payload);
        out.push(attach);
    };
    message(&mut out, 0, &[], 0); // GET_FEATURES
    message(&mut out, 1, &FEATURES.to_le_bytes(), 0); // SET_FEATURES
    message(&mut out, 4, &[0, 0, 0, 0], 1); // SET_MEM_TABLE, the memfd
    for ring in [0u8, 1] {
        message(&mut out, 5, &[ring, 0], 0); // SET_VRING_NUM 256
        message(&mut out, 6, &[ring, 2, ring, 2, ring, 2, ring], 0); // SET_VRING_ADDR
        message(&mut out, 7, &[ring, 2], 0); // SET_VRING_BASE 0
        message(&mut out, 10, &[0xff, ring], 1); // SET_VRING_CALL, an eventfd
        message(&mut out, 9, &[0xff, ring], 1); // SET_VRING_KICK, an eventfd
    }
    out.push(0x07);
    let tx = small_guest_frames(frames, 6);
    for (at, bytes) in ring_image(0x4000, 0x8000, &tx, 0) {
        memory_writes(&mut out, 0x04, at, &bytes, 1024);
    }
    for (at, bytes) in ring_image(0x0000, 0xb000, &[], 4) {
        memory_writes(&mut out, 0x04, at, &bytes, 1024);
    }
    out.extend([0x16, 0x06, 0x07, 0x07]);
    out
}

/// `dns_replies`: each captured query forwarded, the captured answer from
/// the upstream (matched), the reply read; then a stray raw answer and a
/// timeout.
fn encode_dns(frames: &[Frame]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut any = false;
    for frame in frames {
        if frame.from_guest {
            if let Some(query) = dns_query(&frame.bytes) {
                out.extend([0x00, 0x00]);
                push_chunk(&mut out, query);
                any = true;
            }
        } else if let Some(HostPayload::Dns(reply)) = host_payload(&frame.bytes) {
            out.push(0x01);
            push_chunk(&mut out, reply);
            out.push(0x03);
            out.extend(4096u16.to_le_bytes());
        }
    }
    out.extend([0x02, 0x0c, 0x00]);
    out.extend([0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend([0x03, 0x00, 0x10, 0x04, 0xd0, 0x07]);
    any.then_some(out)
}

/// Frames slipway's front desk answers itself: a DHCP discover and
/// request, an ARP request for the DNS address, an IPv6 router
/// solicitation and neighbour solicitation (checksums are repaired by the
/// targets).
fn hand_built() -> Vec<Frame> {
    let ether = |dst: [u8; 6], ethertype: [u8; 2]| {
        let mut f = dst.to_vec();
        f.extend(GUEST_MAC);
        f.extend(ethertype);
        f
    };
    let dhcp = |kind: u8| {
        let mut f = ether([0xff; 6], [0x08, 0x00]);
        let mut bootp = vec![1, 1, 6, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0x80, 0];
        bootp.extend([0u8; 16]);
        bootp.extend(GUEST_MAC);
        bootp.extend([0u8; 10 + 64 + 128]);
        bootp.extend([99, 130, 83, 99, 53, 1, kind]);
        if kind == 3 {
            bootp.extend([50, 4, 10, 0, 2, 15, 54, 4, 10, 0, 2, 2]);
        }
        bootp.extend([55, 3, 1, 3, 6, 255]);
        let udp_len = u16::try_from(8 + bootp.len()).unwrap_or(0);
        let total = udp_len + 20;
        f.extend([
            0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255,
        ]);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f.extend([0, 68, 0, 67]);
        f.extend(udp_len.to_be_bytes());
        f.extend([0, 0]);
        f.extend(bootp);
        f
    };
    let mut arp = ether([0xff; 6], [0x08, 0x06]);
    arp.extend([0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend(GUEST_MAC);
    arp.extend([10, 0, 2, 15, 0, 0, 0, 0, 0, 0, 10, 0, 2, 3]);
    let ipv6 = |dst_mac: [u8; 6], dst: [u8; 16], icmp: &[u8]| {
        let mut f = ether(dst_mac, [0x86, 0xdd]);
        f.extend([0x60, 0, 0, 0]);
        f.extend(u16::try_from(icmp.len()).unwrap_or(0).to_be_bytes());
        f.extend([58, 255]);
        f.extend([
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0, 0xff, 0xfe, 0x12, 0x34, 0x56,
        ]);
        f.extend(dst);
        f.extend(icmp);
        f
    };
    let all_routers = [0xff02, 0, 0, 0, 0, 0, 0, 2u16]
        .map(u16::to_be_bytes)
        .concat();
    let rs = ipv6(
        [0x33, 0x33, 0, 0, 0, 2],
        all_routers.try_into().unwrap_or([0; 16]),
        &[
            133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56,
        ],
    );
    let mut target = [0u8; 16];
    target[..2].copy_from_slice(&[0xfe, 0x80]);
    target[15] = 2;
    let mut ns_icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns_icmp.extend(target);
    let solicited = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2];
    let ns = ipv6([0x33, 0x33, 0xff, 0, 0, 2], solicited, &ns_icmp);
    [dhcp(1), dhcp(3), arp, rs, ns]
        .into_iter()
        .map(|bytes| Frame {
            from_guest: true,
            bytes,
        })
        .collect()
}

fn write_seed(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join(name);
    fs::write(&path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("  {} ({} bytes)", path.display(), bytes.len());
    Ok(())
}

/// The captures in `fuzz/captures/`, sorted.
fn default_captures() -> Vec<PathBuf> {
    let dir = workspace_root().join("fuzz/captures");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "pcap"))
        .collect();
    paths.sort();
    paths
}

/// Writes the seeds of every target from `captures` (the default
/// captures when empty) and the hand-built frames.
pub fn seed_corpora(captures: &[PathBuf]) -> Result<(), String> {
    let captures = if captures.is_empty() {
        default_captures()
    } else {
        captures.to_vec()
    };
    if captures.is_empty() {
        return Err("no captures: put .pcap files in fuzz/captures/ or name them".to_owned());
    }
    let seeds = workspace_root().join("fuzz/seeds");
    let dir = |target: &str| seeds.join(target);
    let mut sets: Vec<(String, Vec<Frame>)> = Vec::new();
    for path in &captures {
        let stem = path.file_stem().map_or_else(
            || "capture".to_owned(),
            |s| s.to_string_lossy().into_owned(),
        );
        sets.push((stem, read_pcap(path)?));
    }
    sets.push(("hand-built".to_owned(), hand_built()));
    sets.push(("hand-built-ipv6".to_owned(), ipv6::hand_built()));
    for (stem, frames) in &sets {
        eprintln!("seeds from {stem} ({} frames):", frames.len());
        // Split long captures so that each seed stays small.
        let mut parts: Vec<&[Frame]> = Vec::new();
        let mut start = 0;
        let mut seen = 0;
        for (i, frame) in frames.iter().enumerate() {
            seen += usize::from(frame.from_guest);
            if seen == FRAMES_PER_SEED || i + 1 == frames.len() {
                parts.push(&frames[start..=i]);
                start = i + 1;
                seen = 0;
            }
        }
        for (n, part) in parts.iter().enumerate() {
            let name = format!("{stem}-{n}");
            write_seed(&dir("backend_frames"), &name, &encode_backend(part, false))?;
            write_seed(
                &dir("backend_frames"),
                &format!("{name}-offloaded"),
                &encode_backend(part, true),
            )?;
            let offload = if stem.contains("tso") { 2 } else { 1 };
            write_seed(&dir("tap_vnet"), &name, &encode_tap(part, offload))?;
            write_seed(
                &dir("tap_vnet"),
                &format!("{name}-plain"),
                &encode_tap(part, 0),
            )?;
            let (decode, round) = encode_stream(part);
            write_seed(&dir("stream_codec"), &format!("{name}-decode"), &decode)?;
            write_seed(&dir("stream_codec"), &format!("{name}-round-trip"), &round)?;
            write_seed(&dir("virtio_tables"), &name, &encode_virtio(part))?;
            write_seed(&dir("vhost_user"), &name, &encode_vhost(part))?;
            if let Some(dns) = encode_dns(part) {
                write_seed(&dir("dns_replies"), &name, &dns)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_built_frames_are_the_guests_and_parse_as_their_kind() {
        let frames = hand_built();
        assert_eq!(frames.len(), 5);
        for frame in &frames {
            assert!(frame.from_guest);
            assert_eq!(frame.bytes[6..12], GUEST_MAC);
        }
        // The DHCP discover: UDP 68 -> 67, the magic cookie in place.
        let discover = &frames[0].bytes;
        assert_eq!(discover[23], 17);
        assert_eq!(&discover[34..38], &[0, 68, 0, 67]);
        assert_eq!(&discover[42 + 236..42 + 240], &[99, 130, 83, 99]);
    }

    #[test]
    fn ipv6_seed_acknowledges_the_backend_and_replays_the_host_answers() {
        let frames = ipv6::hand_built();
        assert!(frames.iter().all(|f| f.bytes[12..14] == [0x86, 0xdd]));
        let seed = encode_backend(&frames, false);
        // Every guest TCP segment goes as the acknowledging frame
        // operation; the peer's TCP data, the UDP reply and the DNS answer
        // as the host peers' moves.
        let tcp_frames = frames
            .iter()
            .filter(|f| f.from_guest && transport(&f.bytes).is_some_and(|(p, ..)| p == 6))
            .count();
        assert_eq!(tcp_frames, 5);
        let mut ops = Vec::new();
        let mut at = 0;
        while let Some(&op) = seed.get(at) {
            ops.push(op);
            at += 1;
            let chunked = matches!(op & 0x0f, 0..=5 | 11 | 12);
            if op & 0x0f == 10 {
                at += 1;
            }
            if chunked || op & 0x0f == 10 {
                let len = usize::from(u16::from_le_bytes([seed[at], seed[at + 1]]));
                at += 2 + len;
            } else if op & 0x0f == 6 {
                at += 2;
            }
        }
        assert_eq!(
            ops.iter().filter(|&&op| op == OP_FRAME_ACKED).count(),
            tcp_frames
        );
        for host_op in [0x0a, 0x0b, 0x0c] {
            assert_eq!(
                ops.iter().filter(|&&op| op == host_op).count(),
                1,
                "{ops:?}"
            );
        }
    }

    #[test]
    fn a_long_ipv4_frame_is_cut_with_its_length_field() {
        let mut frame = vec![0u8; 9000];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        let cut = cut(frame);
        assert_eq!(cut.len(), MAX_SEED_FRAME);
        let total = usize::from(u16::from_be_bytes([cut[16], cut[17]]));
        assert_eq!(total + 14, MAX_SEED_FRAME);
    }

    #[test]
    fn backend_seed_replays_host_answers_as_peer_operations() {
        let mut reply = vec![0u8; 14 + 20 + 8];
        reply[12..14].copy_from_slice(&[0x08, 0x00]);
        reply[14] = 0x45;
        reply[16..18].copy_from_slice(&(20u16 + 8 + 3).to_be_bytes());
        reply[23] = 17;
        reply[34..36].copy_from_slice(&53u16.to_be_bytes());
        reply.extend(b"dns");
        let frames = [Frame {
            from_guest: false,
            bytes: reply,
        }];
        let seed = encode_backend(&frames, false);
        assert_eq!(&seed[..6], &[0x0c, 3, 0, b'd', b'n', b's']);
    }
}
