//! A [`BlobStore`] wrapper that counts the requests made through it, by kind, as S3 bills
//! them: PUT class (put, conditional put, list) and GET class (get, head). For the storage cost
//! table (docs/ARCHITECTURE.md §11).

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::store::{BlobStore, ETag, Precondition, StoreError};

/// Requests counted so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    pub put: u64,
    pub get: u64,
    pub list: u64,
    pub delete: u64,
    /// Bytes written by puts.
    pub put_bytes: u64,
}

impl RequestCounts {
    /// `self - earlier`: the requests made in between.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            put: self.put - earlier.put,
            get: self.get - earlier.get,
            list: self.list - earlier.list,
            delete: self.delete - earlier.delete,
            put_bytes: self.put_bytes - earlier.put_bytes,
        }
    }
}

/// Counts requests to an inner store.
#[derive(Debug)]
pub struct CountingStore<S> {
    inner: S,
    put: AtomicU64,
    get: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    put_bytes: AtomicU64,
}

impl<S> CountingStore<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            put: AtomicU64::new(0),
            get: AtomicU64::new(0),
            list: AtomicU64::new(0),
            delete: AtomicU64::new(0),
            put_bytes: AtomicU64::new(0),
        }
    }

    pub fn counts(&self) -> RequestCounts {
        RequestCounts {
            put: self.put.load(Ordering::Relaxed),
            get: self.get.load(Ordering::Relaxed),
            list: self.list.load(Ordering::Relaxed),
            delete: self.delete.load(Ordering::Relaxed),
            put_bytes: self.put_bytes.load(Ordering::Relaxed),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl<S: BlobStore> BlobStore for CountingStore<S> {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        Self::count(&self.put);
        self.put_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        self.inner.put(key, body, content_type).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        Self::count(&self.get);
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
        Self::count(&self.delete);
        self.inner.delete(key).await
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<(Bytes, ETag)>, StoreError> {
        Self::count(&self.get);
        self.inner.get_versioned(key).await
    }

    async fn head(&self, key: &str) -> Result<Option<ETag>, StoreError> {
        Self::count(&self.get);
        self.inner.head(key).await
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Self::count(&self.get);
        self.inner.size(key).await
    }

    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        precondition: Precondition,
    ) -> Result<(), StoreError> {
        Self::count(&self.put);
        self.put_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        self.inner
            .put_if(key, body, content_type, precondition)
            .await
    }
}
