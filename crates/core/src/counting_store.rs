//! [`CountingStore`]: a [`BlobStore`] wrapper that counts the requests made through it, by kind,
//! as S3 bills them (PUT and LIST in the PUT class; GET and HEAD in the GET class; DELETE free).
//! It feeds the storage cost table (docs/ARCHITECTURE.md §11) and `cargo xtask bench --tenants`
//! (docs/ARCHITECTURE.md §12).

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

use crate::store::{BlobStore, ETag, Precondition, StoreError};

/// Requests made, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    pub get: u64,
    pub put: u64,
    /// ListObjectsV2 requests: one per 1,000 keys listed (at least one per listing).
    pub list: u64,
    pub delete: u64,
    /// HEAD requests (existence, size and version checks).
    pub head: u64,
    /// Bytes written by puts.
    pub put_bytes: u64,
}

impl RequestCounts {
    /// Every request, whatever its kind.
    pub fn total(&self) -> u64 {
        self.get + self.put + self.list + self.delete + self.head
    }

    /// `self - earlier`: the requests made in between.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            get: self.get - earlier.get,
            put: self.put - earlier.put,
            list: self.list - earlier.list,
            delete: self.delete - earlier.delete,
            head: self.head - earlier.head,
            put_bytes: self.put_bytes - earlier.put_bytes,
        }
    }
}

/// Counts every request to the store it wraps.
#[derive(Debug)]
pub struct CountingStore<S> {
    inner: S,
    get: AtomicU64,
    put: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    head: AtomicU64,
    put_bytes: AtomicU64,
}

impl<S> CountingStore<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            get: AtomicU64::new(0),
            put: AtomicU64::new(0),
            list: AtomicU64::new(0),
            delete: AtomicU64::new(0),
            head: AtomicU64::new(0),
            put_bytes: AtomicU64::new(0),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> RequestCounts {
        RequestCounts {
            get: self.get.load(Ordering::Relaxed),
            put: self.put.load(Ordering::Relaxed),
            list: self.list.load(Ordering::Relaxed),
            delete: self.delete.load(Ordering::Relaxed),
            head: self.head.load(Ordering::Relaxed),
            put_bytes: self.put_bytes.load(Ordering::Relaxed),
        }
    }

    /// The counts so far, and zero again.
    pub fn take(&self) -> RequestCounts {
        RequestCounts {
            get: self.get.swap(0, Ordering::Relaxed),
            put: self.put.swap(0, Ordering::Relaxed),
            list: self.list.swap(0, Ordering::Relaxed),
            delete: self.delete.swap(0, Ordering::Relaxed),
            head: self.head.swap(0, Ordering::Relaxed),
            put_bytes: self.put_bytes.swap(0, Ordering::Relaxed),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn count_put(&self, body: &Bytes) {
        bump(&self.put);
        self.put_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[async_trait]
impl<S: BlobStore> BlobStore for CountingStore<S> {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        self.count_put(&body);
        self.inner.put(key, body, content_type).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        bump(&self.get);
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // S3 returns at most 1,000 keys per ListObjectsV2 request.
        let keys = self.inner.list(prefix).await?;
        self.list
            .fetch_add((keys.len() as u64).div_ceil(1000).max(1), Ordering::Relaxed);
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        bump(&self.delete);
        self.inner.delete(key).await
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<(Bytes, ETag)>, StoreError> {
        bump(&self.get);
        self.inner.get_versioned(key).await
    }

    async fn head(&self, key: &str) -> Result<Option<ETag>, StoreError> {
        bump(&self.head);
        self.inner.head(key).await
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        bump(&self.head);
        self.inner.size(key).await
    }

    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        precondition: Precondition,
    ) -> Result<(), StoreError> {
        self.count_put(&body);
        self.inner
            .put_if(key, body, content_type, precondition)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalDirStore;

    #[tokio::test]
    async fn counts_each_request_once_by_kind() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CountingStore::new(LocalDirStore::new(dir.path()));
        store
            .put("a/1", Bytes::from_static(b"x"), "text/plain")
            .await?;
        store
            .put_if(
                "a/2",
                Bytes::from_static(b"yz"),
                "text/plain",
                Precondition::Absent,
            )
            .await?;
        store.get("a/1").await?;
        store.head("a/2").await?;
        store.list("a/").await?;
        store.delete("a/1").await?;
        let before_take = store.counts();
        let counts = store.take();
        assert_eq!(before_take, counts);
        assert_eq!(
            counts,
            RequestCounts {
                get: 1,
                put: 2,
                list: 1,
                delete: 1,
                head: 1,
                put_bytes: 3,
            }
        );
        assert_eq!(counts.total(), 6);
        assert_eq!(store.take().total(), 0, "taking resets");
        Ok(())
    }

    #[tokio::test]
    async fn a_listing_costs_one_request_per_thousand_keys() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CountingStore::new(LocalDirStore::new(dir.path()));
        for i in 0..1001 {
            store
                .put(&format!("k/{i}"), Bytes::from_static(b"x"), "text/plain")
                .await?;
        }
        let before = store.counts();
        store.list("k/").await?;
        store.list("none/").await?;
        assert_eq!(store.counts().since(&before).list, 3);
        Ok(())
    }
}
