//! The tap frontend: the serving loop moves frames between a tap device
//! and a [`Backend`], sleeping in one epoll set until the tap is readable
//! (or writable, while a frame waits), the backend's host sockets are
//! ready, a stop source fires, or the backend's next deadline comes.
//!
//! With an offload ([`TapOffload`]) every frame on the tap comes behind a
//! `virtio_net_hdr`: the namespace's kernel leaves TCP and UDP checksums
//! partial and says so (`NEEDS_CSUM`), and they go to the backend as
//! [`Checksum::Partial`], unverified; the backend leaves the checksums of
//! its TCP and UDP frames partial too, and they go to the kernel marked
//! `NEEDS_CSUM`, which it takes as verified (or completes, if it forwards
//! them). So no side sums a payload. With TSO as well
//! ([`TapOffload::ChecksumTso`]) the kernel hands over TCP segments of up to
//! 64 KiB whatever the MTU; the backend relays them as it does any segment.
//! The other way, the backend's TCP segments grow to 64 KiB too and go to
//! the kernel as GSO frames cut to the guest's MSS, which it takes whole.
//! A GSO frame on a tap not set up for it is dropped and counted. While the
//! backend writes a pcap capture it takes no offload, and the capture gets
//! whole checksums: partial ones from the guest are completed before the
//! backend records them, and the backend is asked for whole ones.
//!
//! Invariant: no fixed-period wakeup. The loop sleeps until an fd is ready
//! or a deadline passes; a frame the tap cannot take yet is kept and the
//! loop waits for `EPOLLOUT`, so it neither drops frames silently nor spins.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use epoll_dispatch::serve::{Frontend, Pass, frontend_token, is_failed};
use epoll_dispatch::{Interest, Poller, Readiness, Token};
use rustix::io::Errno;
use smoltcp::wire::{EthernetFrame, EthernetProtocol};
use virtio_bindings::bindings::virtio_net::{
    VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
};

use super::{ServeEnd, StopWhen};
use crate::netns::{TapOffload, VNET_HDR_LEN};
use crate::{Backend, Checksum, FrameBackend, GuestFrame};

/// Room for the largest frame: a 65535-byte IP datagram and its Ethernet
/// header, with a byte to spare.
pub const FRAME_BUFFER_LEN: usize = 65536 + 14;

/// Frames read from the tap per wakeup, so that host traffic is not starved
/// by a guest that sends without pause.
const READ_BATCH: usize = 64;

/// Frames written to the tap per pass of the loop before it looks at its
/// other sources again; the next wait then does not sleep.
const WRITE_BATCH: usize = 256;

const TOKEN_TAP: Token = frontend_token(0);

/// What the tap frontend moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapCounters {
    /// Frames read from the tap.
    pub frames_from_guest: u64,
    /// Bytes read from the tap.
    pub bytes_from_guest: u64,
    /// Frames written to the tap.
    pub frames_to_guest: u64,
    /// Bytes written to the tap.
    pub bytes_to_guest: u64,
    /// Times a write found the tap full (`EAGAIN`) and the loop waited.
    pub write_waits: u64,
    /// Frames the tap refused with an error (e.g. `EIO` while the interface
    /// is down); each is dropped, counted here and logged.
    pub write_errors: u64,
    /// Frames from the guest whose TCP or UDP checksum its kernel left
    /// partial (`NEEDS_CSUM`): the offload at work.
    pub partial_checksums_from_guest: u64,
    /// TCP segments from the guest larger than its MTU (TSO).
    pub gso_frames_from_guest: u64,
    /// Frames to the guest sent with a partial checksum (`NEEDS_CSUM`).
    pub partial_checksums_to_guest: u64,
    /// TCP segments to the guest larger than its MSS, which its kernel
    /// takes whole (GSO).
    pub gso_frames_to_guest: u64,
    /// Frames from the tap dropped for their `virtio_net_hdr`: shorter than
    /// one, or a GSO type the tap was not set up for.
    pub bad_vnet_headers: u64,
}

impl TapCounters {
    /// Each counter with its name, for [`stats_report`](super::stats_report).
    #[must_use]
    pub fn lines(&self) -> [(&'static str, u64); 11] {
        [
            ("frames from guest", self.frames_from_guest),
            ("bytes from guest", self.bytes_from_guest),
            ("frames to guest", self.frames_to_guest),
            ("bytes to guest", self.bytes_to_guest),
            ("tap write waits (EAGAIN)", self.write_waits),
            ("tap write errors", self.write_errors),
            (
                "partial csums from guest",
                self.partial_checksums_from_guest,
            ),
            ("gso frames from guest", self.gso_frames_from_guest),
            ("partial csums to guest", self.partial_checksums_to_guest),
            ("gso frames to guest", self.gso_frames_to_guest),
            ("bad vnet headers", self.bad_vnet_headers),
        ]
    }
}

/// The tap side of the loop: its buffers, the frame the tap has not taken
/// yet, and its counters. It outlives one [`serve`](Self::serve) call, so a
/// kept frame survives a return for a signal.
#[derive(Debug)]
pub struct TapFrontend<'t> {
    tap: BorrowedFd<'t>,
    offload: TapOffload,
    /// Bytes of `virtio_net_hdr` in front of each frame: 0 or
    /// [`VNET_HDR_LEN`].
    hdr_len: usize,
    rx: Vec<u8>,
    tx: Vec<u8>,
    /// The length of the write in `tx` (header and frame) the tap has not
    /// taken yet.
    pending: Option<usize>,
    counters: TapCounters,
    /// The last wait reported the tap.
    ready: bool,
    /// What the tap is registered for in the current poller.
    interest: Interest,
}

/// Serves `tap` for `backend` until `stop`; see [`TapFrontend::serve`].
///
/// # Errors
/// As [`TapFrontend::serve`].
pub fn serve_tap(backend: &mut Backend, tap: &OwnedFd, stop: StopWhen<'_>) -> io::Result<ServeEnd> {
    TapFrontend::new(tap.as_fd()).serve(backend, &stop)
}

impl<'t> TapFrontend<'t> {
    /// A frontend for a non-blocking tap descriptor that reads and writes
    /// one plain frame per call.
    #[must_use]
    pub fn new(tap: BorrowedFd<'t>) -> Self {
        Self::with_offload(tap, TapOffload::None)
    }

    /// A frontend for a tap opened with `offload` (see
    /// [`TapConfig::offload`](crate::netns::TapConfig::offload)): with any
    /// offload, each read and write is a `virtio_net_hdr` and a frame.
    #[must_use]
    pub fn with_offload(tap: BorrowedFd<'t>, offload: TapOffload) -> Self {
        let hdr_len = if offload.has_vnet_hdr() {
            VNET_HDR_LEN
        } else {
            0
        };
        Self {
            tap,
            offload,
            hdr_len,
            rx: vec![0; hdr_len + FRAME_BUFFER_LEN],
            tx: vec![0; hdr_len + FRAME_BUFFER_LEN],
            pending: None,
            counters: TapCounters::default(),
            ready: false,
            interest: Interest::READABLE,
        }
    }

    /// The offload the tap was opened with.
    #[must_use]
    pub fn offload(&self) -> TapOffload {
        self.offload
    }

    /// What the frontend has moved so far.
    #[must_use]
    pub fn counters(&self) -> &TapCounters {
        &self.counters
    }

    /// Moves frames until `stop`: frames read from the tap go to the
    /// backend (and its capture); frames from the backend go to the tap.
    ///
    /// # Errors
    /// The epoll set, the backend's epoll set, the signalfd or a tap read
    /// failed (the tap device is gone).
    pub fn serve(&mut self, backend: &mut Backend, stop: &StopWhen<'_>) -> io::Result<ServeEnd> {
        backend.set_gso_to_guest(self.offload == TapOffload::ChecksumTso);
        super::serve(self, backend, stop)
    }

    /// Reads up to [`READ_BATCH`] frames and hands them to the backend.
    fn read_frames(&mut self, backend: &mut Backend, now: Instant) -> io::Result<()> {
        let mut read = 0;
        while read < READ_BATCH {
            let len = match rustix::io::read(self.tap, &mut self.rx) {
                Ok(0) => return Err(io::Error::other("the tap device was closed")),
                Ok(len) => len,
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(io::Error::new(e.kind(), format!("reading the tap: {e}"))),
            };
            read += 1;
            let Some((header, frame)) = self.rx[..len].split_at_mut_checked(self.hdr_len) else {
                self.counters.bad_vnet_headers += 1;
                continue;
            };
            self.counters.frames_from_guest += 1;
            self.counters.bytes_from_guest += frame.len() as u64;
            if self.hdr_len == 0 {
                backend.handle_guest_frame(frame, now);
                continue;
            }
            let Some(checksum) = read_vnet_hdr(header, self.offload, &mut self.counters) else {
                continue;
            };
            if let Checksum::Partial { start, offset } = checksum {
                // A backend that takes no offload (it writes a capture)
                // gets whole checksums; a bad offset leaves the frame as it
                // came (the backend does not use the offsets).
                if !backend.offloads_checksums() {
                    let _ = guest_frame::complete_checksum(frame, start, offset);
                }
            }
            backend.handle_guest_frame_offloaded(frame, checksum, now);
        }
        Ok(())
    }

    /// Writes the kept frame, then the backend's frames, until the backend
    /// has none, the tap is full (the frame is kept), or [`WRITE_BATCH`]
    /// frames are written. Returns whether the batch ran out with frames
    /// perhaps left.
    fn write_frames(&mut self, backend: &mut Backend, now: Instant) -> bool {
        for _ in 0..WRITE_BATCH {
            let len = match self.pending.take() {
                Some(len) => len,
                None => match self.next_frame(backend, now) {
                    Some(len) => len,
                    None => return false,
                },
            };
            match write_retrying(self.tap, &self.tx[..len]) {
                Ok(()) => {
                    self.counters.frames_to_guest += 1;
                    self.counters.bytes_to_guest += (len - self.hdr_len) as u64;
                }
                Err(Errno::AGAIN) => {
                    self.counters.write_waits += 1;
                    tracing::trace!(len, "tap full; keeping the frame until it drains");
                    self.pending = Some(len);
                    return false;
                }
                Err(error) => {
                    self.counters.write_errors += 1;
                    tracing::debug!(%error, len, "tap refused a frame; dropped");
                }
            }
        }
        true
    }

    /// Puts the backend's next frame, behind its `virtio_net_hdr` if the
    /// tap has one, into `tx`; returns the length to write. A backend that
    /// takes no offload (it writes a capture) fills every checksum.
    fn next_frame(&mut self, backend: &mut Backend, now: Instant) -> Option<usize> {
        let (header, area) = self.tx.split_at_mut(self.hdr_len);
        let frame = if self.hdr_len == 0 || !backend.offloads_checksums() {
            GuestFrame {
                len: backend.poll_guest_frame(area, now)?,
                checksum: Checksum::Complete,
                gso_mss: None,
            }
        } else {
            backend.poll_guest_frame_offloaded(area, now)?
        };
        let len = frame.len.min(area.len());
        if self.hdr_len > 0 {
            if matches!(frame.checksum, Checksum::Partial { .. }) {
                self.counters.partial_checksums_to_guest += 1;
            }
            if frame.gso_mss.is_some() {
                self.counters.gso_frames_to_guest += 1;
            }
            write_vnet_hdr(header, &frame, &area[..len]);
        }
        Some(self.hdr_len + len)
    }
}

impl Frontend<Backend> for TapFrontend<'_> {
    fn register(&mut self, poller: &Poller) -> io::Result<()> {
        poller.register(self.tap, TOKEN_TAP, Interest::READABLE)?;
        self.interest = Interest::READABLE;
        Ok(())
    }

    fn note_first_pass(&mut self) {
        self.ready = true;
    }

    fn note_ready(&mut self, token: Token, readiness: Readiness) {
        if token == TOKEN_TAP {
            self.ready |=
                readiness.is_readable() || readiness.is_writable() || is_failed(readiness);
        }
    }

    fn handle_input(
        &mut self,
        _poller: &Poller,
        backend: &mut Backend,
        now: Instant,
    ) -> io::Result<Pass> {
        if std::mem::take(&mut self.ready) {
            self.read_frames(backend, now)?;
        }
        Ok(Pass::Idle)
    }

    fn handle_output(
        &mut self,
        poller: &Poller,
        backend: &mut Backend,
        now: Instant,
    ) -> io::Result<Pass> {
        let more = self.write_frames(backend, now);
        let wanted = if self.pending.is_some() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if wanted != self.interest {
            poller.modify(self.tap, TOKEN_TAP, wanted)?;
            self.interest = wanted;
        }
        Ok(Pass::busy_if(more))
    }

    fn is_flushed(&self) -> bool {
        self.pending.is_none()
    }
}

/// What the `virtio_net_hdr` of a frame from the guest says of its
/// checksum, or `None` (counted) for a GSO type the tap was not set up for.
/// The tap writes the header in native byte order (no `TUNSETVNETLE`).
fn read_vnet_hdr(
    header: &[u8],
    offload: TapOffload,
    counters: &mut TapCounters,
) -> Option<Checksum> {
    let field = |at: usize| {
        header
            .get(at..at + 2)
            .map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]))
    };
    let flags = u32::from(header.first().copied().unwrap_or(0));
    let gso_type = u32::from(header.get(1).copied().unwrap_or(0)) & !VIRTIO_NET_HDR_GSO_ECN;
    match gso_type {
        VIRTIO_NET_HDR_GSO_NONE => {}
        VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_TCPV6
            if offload == TapOffload::ChecksumTso =>
        {
            counters.gso_frames_from_guest += 1;
        }
        _ => {
            tracing::debug!(
                gso_type,
                "frame with a GSO type the tap was not set up for; dropped"
            );
            counters.bad_vnet_headers += 1;
            return None;
        }
    }
    if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        counters.partial_checksums_from_guest += 1;
        return Some(Checksum::Partial {
            start: field(6),
            offset: field(8),
        });
    }
    if flags & VIRTIO_NET_HDR_F_DATA_VALID != 0 {
        return Some(Checksum::Valid);
    }
    Some(Checksum::Complete)
}

/// Writes the `virtio_net_hdr` of a frame to the guest: `NEEDS_CSUM` with
/// the offsets for a partial checksum, `DATA_VALID` otherwise (every frame
/// the backend builds carries correct checksums); for a TCP segment larger
/// than the guest's MSS, also the GSO type of its IP version, the length of
/// its headers and the MSS to cut it to.
fn write_vnet_hdr(header: &mut [u8], frame: &GuestFrame, bytes: &[u8]) {
    header.fill(0);
    let (flags, start, offset) = match frame.checksum {
        Checksum::Partial { start, offset } => (VIRTIO_NET_HDR_F_NEEDS_CSUM, start, offset),
        Checksum::Complete | Checksum::Valid => (VIRTIO_NET_HDR_F_DATA_VALID, 0, 0),
    };
    let (gso_type, hdr_len, gso_size) = match (frame.gso_mss, frame.checksum) {
        (Some(mss), Checksum::Partial { start, .. }) => {
            // The TCP data offset, in 32-bit words, is the high nibble of
            // the 13th byte of the TCP header.
            let data_offset = bytes
                .get(usize::from(start) + 12)
                .map_or(0, |b| u16::from(b >> 4) * 4);
            (tcp_gso_type(bytes), start.saturating_add(data_offset), mss)
        }
        _ => (VIRTIO_NET_HDR_GSO_NONE, 0, 0),
    };
    if let [f, g, h0, h1, s0, s1, c0, c1, o0, o1, ..] = header {
        // The flag and type constants are single bytes.
        *f = u8::try_from(flags).unwrap_or(0);
        *g = u8::try_from(gso_type).unwrap_or(0);
        [*h0, *h1] = hdr_len.to_ne_bytes();
        [*s0, *s1] = gso_size.to_ne_bytes();
        [*c0, *c1] = start.to_ne_bytes();
        [*o0, *o1] = offset.to_ne_bytes();
    }
}

/// The GSO type of the TCP segment in `frame`, by its IP version: the
/// kernel cuts a segment (when it forwards it, or for a device without TSO)
/// by the protocol its GSO type names.
fn tcp_gso_type(frame: &[u8]) -> u32 {
    match EthernetFrame::new_checked(frame).map(|eth| eth.ethertype()) {
        Ok(EthernetProtocol::Ipv6) => VIRTIO_NET_HDR_GSO_TCPV6,
        _ => VIRTIO_NET_HDR_GSO_TCPV4,
    }
}

/// Writes one frame, retrying on `EINTR`.
fn write_retrying(fd: BorrowedFd<'_>, frame: &[u8]) -> Result<(), Errno> {
    loop {
        match rustix::io::write(fd, frame) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    use super::*;
    use crate::fixtures::{arp_request_for_gateway, backend};

    /// A datagram socket pair stands in for the tap: one frame per read and
    /// write, non-blocking.
    fn fake_tap() -> (UnixDatagram, UnixDatagram) {
        let (ours, guest) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (ours, guest)
    }

    #[test]
    fn answers_arp_and_captures_both_directions() {
        let (tap, guest) = fake_tap();
        guest.send(&arp_request_for_gateway()).unwrap();
        let mut backend = backend();
        let capture = crate::capture::SharedBuffer::default();
        let writer: Box<dyn std::io::Write + Send> = Box::new(capture.clone());
        backend.set_capture(frontdesk::PcapWriter::new(writer, 0).unwrap());
        let mut frontend = TapFrontend::new(tap.as_fd());
        let stop = StopWhen {
            deadline: Some(Instant::now() + Duration::from_millis(50)),
            ..StopWhen::default()
        };
        let end = frontend.serve(&mut backend, &stop).unwrap();
        assert_eq!(end, ServeEnd::Deadline);
        let mut reply = [0u8; 2048];
        let len = guest.recv(&mut reply).unwrap();
        assert_eq!(&reply[12..14], &[0x08, 0x06]);
        assert_eq!(&reply[20..22], &[0, 2], "an ARP reply");
        assert_eq!(&reply[28..32], &[10, 0, 2, 2]);
        let counters = frontend.counters();
        assert_eq!(
            (counters.frames_from_guest, counters.frames_to_guest),
            (1, 1)
        );
        assert_eq!(counters.bytes_to_guest, len as u64);
        drop(backend.take_capture());
        let capture = capture.contents();
        // Header, then two records (16-byte headers) of the two frames.
        assert_eq!(capture.len(), 24 + 16 + 42 + 16 + len);
    }

    #[test]
    fn with_a_vnet_header_frames_go_both_ways_behind_it_and_bad_headers_are_counted() {
        let (tap, guest) = fake_tap();
        let with_header = |flags: u8, gso_type: u8| {
            let mut read = vec![flags, gso_type, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            read.extend(arp_request_for_gateway());
            read
        };
        guest.send(&with_header(0, 0)).unwrap();
        // TCPv4 GSO on a tap set up for checksums only.
        guest.send(&with_header(1, 1)).unwrap();
        guest.send(&[0; 5]).unwrap();
        let mut backend = backend();
        let mut frontend = TapFrontend::with_offload(tap.as_fd(), TapOffload::Checksum);
        let stop = StopWhen {
            deadline: Some(Instant::now() + Duration::from_millis(50)),
            ..StopWhen::default()
        };
        frontend.serve(&mut backend, &stop).unwrap();
        let mut reply = [0u8; 2048];
        let len = guest.recv(&mut reply).unwrap();
        assert_eq!(len, VNET_HDR_LEN + 42, "one ARP reply behind a header");
        assert_eq!(reply[0], 2, "DATA_VALID: the backend's checksums are whole");
        assert_eq!(&reply[VNET_HDR_LEN + 12..VNET_HDR_LEN + 14], &[0x08, 0x06]);
        guest.set_nonblocking(true).unwrap();
        assert!(
            guest.recv(&mut reply).is_err(),
            "nothing for the dropped ones"
        );
        let counters = frontend.counters();
        assert_eq!(counters.bad_vnet_headers, 2);
        assert_eq!(counters.frames_from_guest, 2);
        assert_eq!(counters.bytes_to_guest, 42);
        assert_eq!(backend.frame_counters().frames(), 1);
    }

    /// A TCP segment of `payload` bytes after an IP header of `ip_len`
    /// bytes, with a 32-byte TCP header (timestamps): only the bytes the
    /// vnet header is made from are set.
    fn segment(ethertype: [u8; 2], ip_len: usize, payload: usize) -> Vec<u8> {
        let mut frame = vec![0u8; 14 + ip_len + 32 + payload];
        frame[12..14].copy_from_slice(&ethertype);
        frame[14 + ip_len + 12] = 8 << 4;
        frame
    }

    /// The vnet header expected: flags, GSO type, header length, GSO size,
    /// checksum start and offset, in native byte order.
    fn vnet_hdr(flags: u8, gso_type: u8, fields: [u16; 4]) -> Vec<u8> {
        let mut header = vec![flags, gso_type];
        for field in fields {
            header.extend(field.to_ne_bytes());
        }
        header.extend([0, 0]);
        header
    }

    #[test]
    fn a_large_segment_to_the_guest_gets_the_gso_type_of_its_ip_version() {
        for (ethertype, ip_len, gso_type) in [
            ([0x08, 0x00], 20u16, VIRTIO_NET_HDR_GSO_TCPV4),
            ([0x86, 0xdd], 40, VIRTIO_NET_HDR_GSO_TCPV6),
        ] {
            let bytes = segment(ethertype, usize::from(ip_len), 20_000);
            let start = 14 + ip_len;
            let frame = GuestFrame {
                len: bytes.len(),
                checksum: Checksum::Partial { start, offset: 16 },
                gso_mss: Some(1428),
            };
            let mut header = [0xaa; VNET_HDR_LEN];
            write_vnet_hdr(&mut header, &frame, &bytes);
            let expected = vnet_hdr(
                1,
                u8::try_from(gso_type).unwrap(),
                [start + 32, 1428, start, 16],
            );
            assert_eq!(header[..], expected[..], "ethertype {ethertype:02x?}");
        }
    }

    #[test]
    fn a_segment_within_the_mss_goes_without_gso_and_whole_frames_as_valid() {
        let bytes = segment([0x86, 0xdd], 40, 100);
        let mut header = [0xaa; VNET_HDR_LEN];
        let partial = GuestFrame {
            len: bytes.len(),
            checksum: Checksum::Partial {
                start: 54,
                offset: 16,
            },
            gso_mss: None,
        };
        write_vnet_hdr(&mut header, &partial, &bytes);
        assert_eq!(header[..], vnet_hdr(1, 0, [0, 0, 54, 16])[..]);
        write_vnet_hdr(&mut header, &GuestFrame::complete(bytes.len()), &bytes);
        assert_eq!(header[..], vnet_hdr(2, 0, [0; 4])[..]);
    }

    #[test]
    fn gso_frames_of_either_ip_version_from_the_guest_are_taken_only_with_tso() {
        let from_guest =
            |gso_type: u32| vnet_hdr(1, u8::try_from(gso_type).unwrap(), [86, 1428, 54, 16]);
        for gso_type in [VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6] {
            let mut counters = TapCounters::default();
            let header = from_guest(gso_type);
            let taken = read_vnet_hdr(&header, TapOffload::ChecksumTso, &mut counters);
            assert_eq!(
                taken,
                Some(Checksum::Partial {
                    start: 54,
                    offset: 16
                })
            );
            let ecn = from_guest(gso_type | VIRTIO_NET_HDR_GSO_ECN);
            assert!(read_vnet_hdr(&ecn, TapOffload::ChecksumTso, &mut counters).is_some());
            assert_eq!(
                read_vnet_hdr(&header, TapOffload::Checksum, &mut counters),
                None
            );
            assert_eq!(
                (counters.gso_frames_from_guest, counters.bad_vnet_headers),
                (2, 1),
                "GSO type {gso_type}"
            );
        }
        // UDP fragmentation offload is never set up.
        let mut counters = TapCounters::default();
        let udp = from_guest(virtio_bindings::bindings::virtio_net::VIRTIO_NET_HDR_GSO_UDP);
        assert_eq!(
            read_vnet_hdr(&udp, TapOffload::ChecksumTso, &mut counters),
            None
        );
        assert_eq!(counters.bad_vnet_headers, 1);
    }

    #[test]
    fn a_frame_the_tap_cannot_take_is_kept_until_it_drains() {
        let (tap, guest) = fake_tap();
        // Fill the socket's send queue so the next write sees EAGAIN.
        let filler = [0u8; 1024];
        while tap.send(&filler).is_ok() {}
        guest.send(&arp_request_for_gateway()).unwrap();
        let mut backend = backend();
        let mut frontend = TapFrontend::new(tap.as_fd());
        let stop = |ms| StopWhen {
            deadline: Some(Instant::now() + Duration::from_millis(ms)),
            ..StopWhen::default()
        };
        let end = frontend.serve(&mut backend, &stop(30)).unwrap();
        assert_eq!(end, ServeEnd::Deadline);
        assert!(frontend.counters().write_waits >= 1);
        assert_eq!(frontend.counters().frames_to_guest, 0);
        // Drain the queue from the guest side; the kept reply goes out.
        let mut buf = [0u8; 2048];
        guest.set_nonblocking(true).unwrap();
        while let Ok(len) = guest.recv(&mut buf) {
            assert_eq!(len, filler.len());
        }
        let end = frontend.serve(&mut backend, &stop(200)).unwrap();
        assert_eq!(end, ServeEnd::Deadline);
        assert_eq!(frontend.counters().frames_to_guest, 1);
        let len = guest.recv(&mut buf).unwrap();
        assert_eq!((len, &buf[12..14]), (42, &[0x08, 0x06][..]));
    }

    #[test]
    fn process_exit_ends_serving() {
        let (tap, _guest) = fake_tap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pidfd = super::super::pidfd_open(i32::try_from(child.id()).unwrap()).unwrap();
        let mut backend = backend();
        let stop = StopWhen {
            process_exit: Some(pidfd.as_fd()),
            deadline: Some(Instant::now() + Duration::from_secs(10)),
            ..StopWhen::default()
        };
        let end = serve_tap(&mut backend, &OwnedFd::from(tap), stop).unwrap();
        assert_eq!(end, ServeEnd::ProcessExited);
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn settled_tcp_ends_serving_at_once() {
        let (tap, _guest) = fake_tap();
        let mut backend = backend();
        let stop = StopWhen {
            tcp_settled: true,
            deadline: Some(Instant::now() + Duration::from_secs(10)),
            ..StopWhen::default()
        };
        let end = serve_tap(&mut backend, &OwnedFd::from(tap), stop).unwrap();
        assert_eq!(end, ServeEnd::TcpSettled);
    }
}
