//! [`CountingStore`]: a [`BlobStore`] wrapper that counts the requests made through it, by
//! kind (as S3 bills them: GET, PUT, LIST, DELETE, HEAD), for `cargo xtask bench --tenants`
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
    pub list: u64,
    pub delete: u64,
    pub head: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.get + self.put + self.list + self.delete + self.head
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
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[async_trait]
impl<S: BlobStore> BlobStore for CountingStore<S> {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        bump(&self.put);
        self.inner.put(key, body, content_type).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        bump(&self.get);
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        bump(&self.list);
        self.inner.list(prefix).await
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
        bump(&self.put);
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
                Bytes::from_static(b"y"),
                "text/plain",
                Precondition::Absent,
            )
            .await?;
        store.get("a/1").await?;
        store.list("a/").await?;
        store.delete("a/1").await?;
        let counts = store.take();
        assert_eq!(
            counts,
            RequestCounts {
                get: 1,
                put: 2,
                list: 1,
                delete: 1,
                head: 0
            }
        );
        assert_eq!(store.take().total(), 0, "taking resets");
        Ok(())
    }
}
