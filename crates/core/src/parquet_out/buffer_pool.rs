//! Output buffers that return to their writer once the object written from them is dropped.
//!
//! A file's bytes leave the writer as [`Bytes`] and are dropped after they are stored, often on
//! another thread. Fresh memory for every file costs a page fault per 4 KiB written (a tenth of
//! the CPU time of `sluice ingest` went to page faults); a buffer that comes back is already
//! faulted in.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

/// Buffers kept at most.
const KEPT: usize = 64;
/// Bytes the kept buffers may hold in all.
const KEPT_BYTES: usize = 64 << 20;

/// A shared stack of empty buffers. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct BufferPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl BufferPool {
    fn kept(&self) -> MutexGuard<'_, Vec<Vec<u8>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty buffer with room for at least `capacity` bytes: a returned one if one is
    /// big enough, else new memory.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let mut kept = self.kept();
        match kept.iter().rposition(|b| b.capacity() >= capacity) {
            Some(i) => kept.swap_remove(i),
            None => Vec::with_capacity(capacity),
        }
    }

    /// `buf` as [`Bytes`] that give the buffer back to this pool when the last of them is
    /// dropped.
    pub fn bytes(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        buf.clear();
        crate::spares::keep_within(&mut self.kept(), buf, KEPT, KEPT_BYTES, Vec::capacity);
    }

    /// Buffers waiting to be reused.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept().len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The owner behind pooled [`Bytes`].
struct Pooled {
    buf: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_its_bytes_are_dropped_and_is_reused() {
        let pool = BufferPool::default();
        let mut buf = pool.take(1000);
        buf.extend_from_slice(b"parquet bytes");
        let at = buf.as_ptr();
        let bytes = pool.bytes(buf);
        let copy = bytes.clone();
        drop(bytes);
        assert!(pool.is_empty(), "given back while a clone was alive");
        assert_eq!(&copy[..], b"parquet bytes");
        let sent = std::thread::spawn(move || drop(copy));
        assert!(sent.join().is_ok());
        assert_eq!(pool.len(), 1);
        let again = pool.take(500);
        assert!(again.is_empty(), "a reused buffer must come back empty");
        assert_eq!(again.as_ptr(), at, "the returned buffer was not reused");
    }

    #[test]
    fn a_buffer_too_small_is_not_handed_out_and_the_pool_stays_bounded() {
        let pool = BufferPool::default();
        drop(pool.bytes(Vec::with_capacity(10)));
        assert!(pool.take(100).capacity() >= 100);
        assert_eq!(pool.len(), 1, "the small buffer should still be there");
        for _ in 0..KEPT * 2 {
            drop(pool.bytes(Vec::with_capacity(16)));
        }
        assert_eq!(pool.len(), KEPT);
        drop(pool.bytes(Vec::with_capacity(KEPT_BYTES + 1)));
        assert_eq!(pool.len(), KEPT);
    }
}
