//! The pcap capture of a [`Backend`]: every frame from the guest and every
//! frame for it, recorded where the backend takes and hands them, so that
//! every frontend and device core captures alike.
//!
//! While a capture is written the backend takes no checksum offload
//! ([`FrameBackend::offloads_checksums`] is `false`), so the capture holds
//! whole checksums. The capture stops at its first write error, with one
//! warning, and the frames keep flowing.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use frontdesk::PcapWriter;

use crate::Backend;
#[cfg(doc)]
use crate::FrameBackend;

/// The writer a backend captures into.
pub type CaptureWriter = PcapWriter<Box<dyn Write + Send>>;

/// A capture in progress.
pub(crate) struct Capture {
    writer: CaptureWriter,
    /// A write failed; nothing more is recorded.
    failed: bool,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Appends `frame`, stopping the capture at its first error.
    pub(crate) fn record(&mut self, frame: &[u8]) {
        if self.failed {
            return;
        }
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if let Err(error) = self.writer.write_frame(timestamp, frame) {
            tracing::warn!(%error, "pcap capture failed; capture stopped");
            self.failed = true;
        }
    }

    /// Flushes the capture, stopping it at its first error.
    fn flush(&mut self) {
        if self.failed {
            return;
        }
        if let Err(error) = self.writer.flush() {
            tracing::warn!(%error, "pcap capture failed; capture stopped");
            self.failed = true;
        }
    }
}

impl Backend {
    /// Captures every frame from and to the guest into `writer` from now
    /// on (replacing a capture in progress, which is returned).
    pub fn set_capture(&mut self, writer: CaptureWriter) -> Option<CaptureWriter> {
        let old = self.capture.replace(Capture {
            writer,
            failed: false,
        });
        old.map(|capture| capture.writer)
    }

    /// Ends the capture and returns its writer, flushed as far as the
    /// capture goes; the caller finishes it (`into_inner().flush()`).
    pub fn take_capture(&mut self) -> Option<CaptureWriter> {
        let mut capture = self.capture.take()?;
        capture.flush();
        Some(capture.writer)
    }

    /// Whether a capture is being written.
    #[must_use]
    pub fn is_capturing(&self) -> bool {
        self.capture.is_some()
    }

    /// Flushes the capture's buffered frames, as the serving loop does
    /// whenever it goes idle.
    pub fn flush_capture(&mut self) {
        if let Some(capture) = &mut self.capture {
            capture.flush();
        }
    }

    /// Records a frame if a capture is written.
    pub(crate) fn capture_frame(&mut self, frame: &[u8]) {
        if let Some(capture) = &mut self.capture {
            capture.record(frame);
        }
    }
}

/// A writer that appends to a shared buffer, for tests that read back what
/// a backend captured.
#[cfg(test)]
#[derive(Clone, Debug, Default)]
pub(crate) struct SharedBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl SharedBuffer {
    /// What was written so far.
    #[must_use]
    pub(crate) fn contents(&self) -> Vec<u8> {
        self.0.lock().map(|bytes| bytes.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("the buffer's lock is poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;
    use crate::FrameBackend;
    use crate::fixtures::{arp_request_for_gateway, backend};

    /// Takes the pcap header, then fails every write; counts the writes.
    struct FailsAfterHeader(Arc<AtomicUsize>);

    impl Write for FailsAfterHeader {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0.fetch_add(1, Ordering::Relaxed) == 0 {
                return Ok(buf.len());
            }
            Err(io::Error::other("disk full"))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn both_directions_are_captured_and_offload_is_off_meanwhile() {
        let mut backend = backend();
        assert!(backend.offloads_checksums());
        let buffer = SharedBuffer::default();
        let writer: Box<dyn Write + Send> = Box::new(buffer.clone());
        backend.set_capture(PcapWriter::new(writer, 0).unwrap());
        assert!(
            !backend.offloads_checksums(),
            "a capture holds whole checksums"
        );
        let now = Instant::now();
        backend.handle_guest_frame(&arp_request_for_gateway(), now);
        let mut reply = [0u8; 2048];
        let len = backend.poll_guest_frame(&mut reply, now).unwrap();
        assert!(backend.take_capture().is_some());
        assert!(backend.offloads_checksums());
        // The header, then two records (16-byte headers) of the two frames.
        assert_eq!(buffer.contents().len(), 24 + 16 + 42 + 16 + len);
    }

    #[test]
    fn a_failed_capture_stops_and_the_frames_keep_flowing() {
        let mut backend = backend();
        let writes = Arc::new(AtomicUsize::new(0));
        let writer: Box<dyn Write + Send> = Box::new(FailsAfterHeader(Arc::clone(&writes)));
        backend.set_capture(PcapWriter::new(writer, 0).unwrap());
        let now = Instant::now();
        let mut reply = [0u8; 2048];
        for _ in 0..3 {
            backend.handle_guest_frame(&arp_request_for_gateway(), now);
            assert!(backend.poll_guest_frame(&mut reply, now).is_some());
            backend.flush_capture();
        }
        // The header, then the one write that failed.
        assert_eq!(writes.load(Ordering::Relaxed), 2);
    }
}
