//! [`S3BlobStore`]: the S3 implementation of the [`BlobStore`] port.
//!
//! - `put` sends one `PutObject` below [`S3BlobStore::multipart_threshold`] (8 MiB by default)
//!   and a multipart upload above it, in parts of [`S3BlobStore::part_size`]; a multipart upload
//!   that fails is aborted, so no orphaned parts are left to be billed. Parts carry CRC32
//!   checksums, declared when the upload is created, as S3 requires for checksummed uploads.
//! - `get` returns `None` for a missing key (`NoSuchKey`).
//! - `list` follows `ListObjectsV2` continuation tokens and returns the keys sorted.
//! - `delete` is idempotent, as in S3.
//!
//! Failures become [`StoreError::Backend`] with the S3 error code, its message and the full
//! error chain. Throttling and transient errors are retried by the SDK first (standard retry
//! mode, see [`crate::config`]).

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use sluice_core::store::{ETag, Precondition};
use sluice_core::{BlobStore, StoreError};

use crate::error::AwsError;

/// S3's smallest allowed part (every part but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3's largest allowed part.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// S3's largest number of parts in one upload.
pub const MAX_PARTS: usize = 10_000;
/// Objects at least this large are uploaded in parts, by default.
pub const DEFAULT_MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;
/// Default part size of a multipart upload.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

const BACKEND: &str = "s3";

/// A [`BlobStore`] over one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
    multipart_threshold: usize,
    part_size: usize,
}

impl S3BlobStore {
    /// HeadObject, `None` for a missing key.
    async fn head_object(
        &self,
        key: &str,
    ) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(output)),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(err) => Err(backend_error("head", key, &err)),
        }
    }

    /// A store over `bucket` with the default multipart settings (8 MiB threshold and parts).
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
        }
    }

    /// The same store with other multipart settings: objects of at least `threshold` bytes are
    /// uploaded in parts of `part_size` bytes (S3 allows 5 MiB to 5 GiB per part).
    pub fn with_multipart(mut self, threshold: usize, part_size: usize) -> Result<Self, AwsError> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(AwsError::Multipart(format!(
                "part size {part_size} is outside S3's {MIN_PART_SIZE}..={MAX_PART_SIZE} bytes"
            )));
        }
        if threshold == 0 {
            return Err(AwsError::Multipart("threshold must be above 0".to_owned()));
        }
        self.multipart_threshold = threshold;
        self.part_size = part_size;
        Ok(self)
    }

    /// The bucket this store writes to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The underlying S3 client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Objects of at least this many bytes are uploaded in parts.
    pub fn multipart_threshold(&self) -> usize {
        self.multipart_threshold
    }

    /// Size of each part of a multipart upload (the last may be smaller).
    pub fn part_size(&self) -> usize {
        self.part_size
    }

    async fn put_single(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| backend_error("put", key, &e))?;
        Ok(())
    }

    async fn put_multipart(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), StoreError> {
        let ranges = part_ranges(body.len(), self.part_size);
        if ranges.len() > MAX_PARTS {
            return Err(StoreError::Backend {
                backend: BACKEND,
                op: "put",
                key: key.to_owned(),
                message: format!(
                    "{} bytes need {} parts of {} bytes; S3 allows {MAX_PARTS}",
                    body.len(),
                    ranges.len(),
                    self.part_size
                ),
            });
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| backend_error("create_multipart_upload", key, &e))?;
        let Some(upload_id) = created.upload_id().map(str::to_owned) else {
            return Err(StoreError::Backend {
                backend: BACKEND,
                op: "create_multipart_upload",
                key: key.to_owned(),
                message: "the response has no upload id".to_owned(),
            });
        };
        tracing::debug!(
            key,
            upload_id,
            parts = ranges.len(),
            bytes = body.len(),
            "multipart upload started"
        );

        match self.upload_parts(key, &upload_id, &body, &ranges).await {
            Ok(()) => Ok(()),
            Err(err) => {
                let abort = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                if let Err(abort_err) = abort {
                    tracing::warn!(
                        key,
                        upload_id,
                        error = %DisplayErrorContext(&abort_err),
                        "aborting the failed multipart upload failed too; a bucket lifecycle rule \
                         (AbortIncompleteMultipartUpload) will remove its parts"
                    );
                } else {
                    tracing::debug!(key, upload_id, "failed multipart upload aborted");
                }
                Err(err)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        body: &Bytes,
        ranges: &[std::ops::Range<usize>],
    ) -> Result<(), StoreError> {
        let mut completed = Vec::with_capacity(ranges.len());
        for (index, range) in ranges.iter().enumerate() {
            // Part numbers start at 1; MAX_PARTS was checked, so this fits in an i32.
            let part_number = i32::try_from(index + 1).map_err(|_| StoreError::Backend {
                backend: BACKEND,
                op: "upload_part",
                key: key.to_owned(),
                message: format!("part number {} out of range", index + 1),
            })?;
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(ByteStream::from(body.slice(range.clone())))
                .send()
                .await
                .map_err(|e| backend_error("upload_part", key, &e))?;
            let mut done = CompletedPart::builder().part_number(part_number);
            if let Some(etag) = part.e_tag() {
                done = done.e_tag(etag);
            }
            if let Some(crc) = part.checksum_crc32() {
                done = done.checksum_crc32(crc);
            }
            completed.push(done.build());
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| backend_error("complete_multipart_upload", key, &e))?;
        Ok(())
    }
}

/// Splits `len` bytes into consecutive parts of `part_size` (the last one shorter).
pub fn part_ranges(len: usize, part_size: usize) -> Vec<std::ops::Range<usize>> {
    let part_size = part_size.max(1);
    (0..len)
        .step_by(part_size)
        .map(|start| start..(start + part_size).min(len))
        .collect()
}

/// Maps an SDK failure to the port's error: the S3 code and message first, then the full chain.
fn backend_error<E, R>(op: &'static str, key: &str, err: &SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(err).to_string();
    let message = match (err.code(), err.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg} ({detail})"),
        (Some(code), None) => format!("{code} ({detail})"),
        _ => detail,
    };
    StoreError::Backend {
        backend: BACKEND,
        op,
        key: key.to_owned(),
        message,
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    #[tracing::instrument(level = "debug", skip(self, body), fields(bucket = %self.bucket, bytes = body.len()))]
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        if body.len() >= self.multipart_threshold {
            self.put_multipart(key, body, content_type).await
        } else {
            self.put_single(key, body, content_type).await
        }
    }

    #[tracing::instrument(level = "debug", skip(self), fields(bucket = %self.bucket))]
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(err) => return Err(backend_error("get", key, &err)),
        };
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Backend {
                backend: BACKEND,
                op: "get",
                key: key.to_owned(),
                message: format!("reading the body: {}", DisplayErrorContext(&e)),
            })?;
        Ok(Some(body.into_bytes()))
    }

    #[tracing::instrument(level = "debug", skip(self), fields(bucket = %self.bucket))]
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| backend_error("list", prefix, &e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys.sort();
        Ok(keys)
    }

    #[tracing::instrument(level = "debug", skip(self), fields(bucket = %self.bucket))]
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| backend_error("delete", key, &e))?;
        Ok(())
    }

    /// HeadObject's ETag.
    async fn head(&self, key: &str) -> Result<Option<ETag>, StoreError> {
        Ok(self
            .head_object(key)
            .await?
            .map(|output| output.e_tag().unwrap_or_default().to_owned()))
    }

    /// HeadObject's Content-Length.
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.head_object(key).await?.map(|output| {
            output
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0)
        }))
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<(Bytes, ETag)>, StoreError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(err) => return Err(backend_error("get", key, &err)),
        };
        let etag = output.e_tag().unwrap_or_default().to_owned();
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Backend {
                backend: BACKEND,
                op: "get",
                key: key.to_owned(),
                message: format!("reading the body: {}", DisplayErrorContext(&e)),
            })?;
        Ok(Some((body.into_bytes(), etag)))
    }

    /// S3's own conditional writes: `If-None-Match: *` and `If-Match: <etag>`.
    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        precondition: Precondition,
    ) -> Result<(), StoreError> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body));
        let request = match &precondition {
            Precondition::Absent => request.if_none_match("*"),
            Precondition::Matches(etag) => request.if_match(etag),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.raw_response().map(|r| r.status().as_u16()),
                    Some(409 | 412)
                ) =>
            {
                Err(StoreError::PreconditionFailed {
                    key: key.to_owned(),
                })
            }
            Err(err) => Err(backend_error("put_if", key, &err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::{BehaviorVersion, Region};

    fn offline_client() -> Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::from_static("us-east-1"))
            .build();
        Client::from_conf(config)
    }

    #[test]
    fn parts_cover_the_body_exactly_with_a_short_last_part() {
        let mib = 1024 * 1024;
        let ranges = part_ranges(11 * mib, 5 * mib);
        assert_eq!(
            ranges,
            vec![0..5 * mib, 5 * mib..10 * mib, 10 * mib..11 * mib]
        );
        assert_eq!(part_ranges(10, 5), vec![0..5, 5..10]);
        assert_eq!(part_ranges(0, 5), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn multipart_settings_below_the_s3_minimum_part_size_are_rejected() {
        let store = S3BlobStore::new(offline_client(), "bucket");
        assert_eq!(store.multipart_threshold(), DEFAULT_MULTIPART_THRESHOLD);
        assert_eq!(store.part_size(), DEFAULT_PART_SIZE);
        let err = store.clone().with_multipart(1024, 1024);
        assert!(matches!(err, Err(AwsError::Multipart(_))), "{err:?}");
        let err = store.clone().with_multipart(0, MIN_PART_SIZE);
        assert!(matches!(err, Err(AwsError::Multipart(_))), "{err:?}");
        let ok = store.with_multipart(MIN_PART_SIZE, MIN_PART_SIZE);
        assert!(
            matches!(ok, Ok(ref s) if s.part_size() == MIN_PART_SIZE),
            "{ok:?}"
        );
    }
}
