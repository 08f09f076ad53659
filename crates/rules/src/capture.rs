//! stdout and stderr of a rule: the first few KiB are kept, the rest is counted and
//! dropped, and writing never fails or blocks (a rule that prints too much is not punished for
//! it; its panic message, printed last, may be cut off, which the captured text says).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much of each stream is kept.
pub const CAPTURE_BYTES: usize = 4096;

/// A bounded, always-ready output stream, shared by every handle the guest opens on it.
#[derive(Debug, Clone)]
pub(crate) struct CapturedOutput {
    inner: Arc<Mutex<Buffer>>,
}

#[derive(Debug)]
struct Buffer {
    kept: Vec<u8>,
    capacity: usize,
    dropped: usize,
}

impl CapturedOutput {
    pub(crate) fn new(capacity: usize) -> CapturedOutput {
        CapturedOutput {
            inner: Arc::new(Mutex::new(Buffer {
                kept: Vec::new(),
                capacity,
                dropped: 0,
            })),
        }
    }

    fn append(&self, bytes: &[u8]) {
        let mut b = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let room = b.capacity.saturating_sub(b.kept.len());
        let take = room.min(bytes.len());
        b.kept.extend_from_slice(&bytes[..take]);
        b.dropped = b.dropped.saturating_add(bytes.len() - take);
    }

    /// The captured text (lossy UTF-8), with a note of how much was dropped.
    pub(crate) fn text(&self) -> String {
        let b = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = String::from_utf8_lossy(&b.kept).into_owned();
        if b.dropped > 0 {
            text.push_str(&format!("\n[... {} more bytes dropped]", b.dropped));
        }
        text
    }
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready for a full write: what does not fit is dropped, not refused.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI 0.3 guests use this; rules are 0.2 components.
        Box::new(tokio::io::sink())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let out = CapturedOutput::new(8);
        out.append(b"hello ");
        out.append(b"world, again");
        assert_eq!(out.text(), "hello wo\n[... 10 more bytes dropped]");
    }

    #[test]
    fn every_handle_writes_to_the_same_buffer() {
        let out = CapturedOutput::new(64);
        let mut a = out.p2_stream();
        let mut b = out.p2_stream();
        a.write(Bytes::from_static(b"a")).expect("write");
        b.write(Bytes::from_static(b"b")).expect("write");
        assert_eq!(out.text(), "ab");
    }
}
