//! The tap frontend's `virtio_net_hdr` and TSO frames: a datagram socket
//! pair stands in for the tap (one frame per read and write, as a tap
//! gives), and the input writes reads of arbitrary header and frame bytes
//! into it, with or without a GSO type, checksum offsets and a pcap
//! capture, for a tap opened with each offload. `TapFrontend::serve` runs
//! one pass per batch: the headers are parsed, the frames handed to a
//! loopback-only backend (as in `backend_frames`), and the backend's frames
//! (GSO ones too, once a host peer sends data) written back behind their
//! headers.
//!
//! Nothing may panic; every write to the tap carries a whole header when
//! the tap has one, and a GSO header only on a tap set up for TSO.
#![no_main]

use std::cell::RefCell;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use frontdesk::PcapWriter;
use slipway::frontend::{StopWhen, TapFrontend};
use slipway::netns::{TapOffload, VNET_HDR_LEN};
use slipway_fuzz::{HostPeers, Input, assert_within_limits, fix_checksums, loopback_backend};

thread_local! {
    static PEERS: RefCell<Option<HostPeers>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    PEERS.with_borrow_mut(|peers| {
        let peers = peers.get_or_insert_with(|| {
            slipway_fuzz::isolate_network();
            HostPeers::bind()
        });
        peers.reset();
        run(data, peers);
    });
});

fn fake_tap() -> (UnixDatagram, UnixDatagram) {
    let pair = UnixDatagram::pair().and_then(|(ours, guest)| {
        ours.set_nonblocking(true)?;
        guest.set_nonblocking(true)?;
        Ok((ours, guest))
    });
    match pair {
        Ok(pair) => pair,
        Err(error) => panic!("no socket pair: {error}"),
    }
}

fn run(data: &[u8], peers: &mut HostPeers) {
    let mut input = Input::new(data);
    let offload = match input.u8() % 3 {
        0 => TapOffload::None,
        1 => TapOffload::Checksum,
        _ => TapOffload::ChecksumTso,
    };
    let (tap, guest) = fake_tap();
    let mut backend = loopback_backend(Instant::now());
    let mut frontend = TapFrontend::with_offload(tap.as_fd(), offload);
    let mut read = vec![0u8; 70_000];
    let mut datagram = Vec::new();
    for _ in 0..32 {
        let Some(op) = input.try_u8() else { break };
        match op % 4 {
            0 | 1 => {
                // A batch of reads for the frontend.
                for _ in 0..=(op >> 4) {
                    datagram.clear();
                    if offload.has_vnet_hdr() && op & 0x04 == 0 {
                        // A header of the input's choice, then a frame
                        // with its checksums repaired.
                        datagram.extend_from_slice(input.bytes(VNET_HDR_LEN));
                        datagram.resize(VNET_HDR_LEN, 0);
                        let start = datagram.len();
                        datagram.extend_from_slice(input.chunk(usize::from(u16::MAX)));
                        fix_checksums(&mut datagram[start..]);
                    } else {
                        datagram.extend_from_slice(input.chunk(usize::from(u16::MAX)));
                    }
                    // A tap never reads as zero bytes; the socket pair
                    // would (and the frontend takes it for a closed tap).
                    if !datagram.is_empty() {
                        let _ = guest.send(&datagram);
                    }
                }
            }
            2 => peers.tcp(input.u8(), op >> 4, input.chunk(65535)),
            _ => {}
        }
        // Each serve call captures into a fresh buffer, or captures nothing.
        let writer: Box<dyn std::io::Write + Send> = Box::new(Vec::new());
        match PcapWriter::new(writer, 0) {
            Ok(writer) if op & 0x08 != 0 => drop(backend.set_capture(writer)),
            _ => drop(backend.take_capture()),
        }
        let stop = StopWhen {
            deadline: Some(Instant::now()),
            ..StopWhen::default()
        };
        if let Err(error) = frontend.serve(&mut backend, &stop) {
            panic!("serving the fake tap failed: {error}");
        }
        assert_within_limits(&backend);
        // What the frontend wrote to the "tap".
        while let Ok(len) = guest.recv(&mut read) {
            check_write(&read[..len], offload);
        }
    }
}

fn check_write(write: &[u8], offload: TapOffload) {
    if !offload.has_vnet_hdr() {
        assert!(write.len() >= 14, "a frame of {} bytes", write.len());
        return;
    }
    assert!(
        write.len() >= VNET_HDR_LEN + 14,
        "a write of {} bytes",
        write.len()
    );
    let gso_type = write[1] & 0x7f;
    if offload != TapOffload::ChecksumTso {
        assert_eq!(gso_type, 0, "a GSO frame on a tap without TSO");
    }
}
