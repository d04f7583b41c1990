//! The pcap capture of a [`Backend`]: every frame from the guest and every
//! frame for it, recorded where the backend takes and hands them, so that
//! every frontend and device core captures alike.
//!
//! While a capture is written the backend takes no checksum offload
//! ([`FrameBackend::offloads_checksums`] is `false`), so the capture holds
//! whole checksums. The capture stops at its first write error, with one
//! warning, and the frames keep flowing.

use std::io::{self, Write};
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
#[derive(Clone, Debug, Default)]
pub struct SharedBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// What was written so far.
    #[must_use]
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().map(|bytes| bytes.clone()).unwrap_or_default()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("the buffer's lock is poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
