//! The ingest use case: a batch of stream records in, Parquet objects and a dead-letter object
//! out, written through a [`BlobStore`].
//!
//! Retry safety (docs/ARCHITECTURE.md §11): a batch is one data object (and at most one
//! dead-letter object) keyed by its shard and first sequence number, under the arrival hour of
//! its first record. A batch delivered again from the same first record (the same batch, a
//! longer one, or the first half of a bisect) replaces that object instead of duplicating it;
//! the second half of a bisect starts at another record and has a key of its own. When any
//! write fails, the whole batch is reported failed from its first sequence number, so a resumed
//! batch starts at the same record too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::Serialize;

use crate::error::CoreError;
use crate::input::StreamRecord;
use crate::store::BlobStore;

pub use crate::encode_batch::{
    BatchEncoder, DEFAULT_MAX_BATCH_DECODED_BYTES, EncodeScratch, INGEST_ENV, IngestConfig,
    encode_batch, encode_batch_with,
};

/// Which kind of object an [`EncodedObject`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKind {
    /// The batch's Parquet rows, every tenant's (docs/ARCHITECTURE.md §11).
    Raw,
    /// Gzip NDJSON of rejected records with their reasons.
    DeadLetter,
}

/// One object ready to be stored.
#[derive(Debug, Clone)]
pub struct EncodedObject {
    pub key: String,
    pub body: Bytes,
    pub content_type: &'static str,
    /// Rows (Parquet) or lines (dead letter) in the object.
    pub rows: u64,
    pub kind: ObjectKind,
}

/// What one batch contained and produced.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct IngestStats {
    /// Stream records in the batch.
    pub records: u64,
    /// Log events decoded from them (a record may carry many: NDJSON lines, KPL, CloudWatch).
    pub events: u64,
    /// Rows written to Parquet.
    pub rows: u64,
    /// Rejected events (or whole records) by reason kind.
    pub rejected: BTreeMap<String, u64>,
    /// Rows per tenant.
    pub tenants: BTreeMap<String, u64>,
    /// Payload bytes in.
    pub bytes_in: u64,
    /// Object bytes out (Parquet plus dead letter).
    pub bytes_out: u64,
    /// Objects produced.
    pub objects: u64,
    /// Earliest `arrival_ms` in the batch, for the batch-age metric.
    pub oldest_arrival_ms: Option<i64>,
}

impl IngestStats {
    /// Total rejected events.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Adds another batch's figures to these.
    pub fn absorb(&mut self, other: &IngestStats) {
        self.records += other.records;
        self.events += other.events;
        self.rows += other.rows;
        for (k, v) in &other.rejected {
            *self.rejected.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.tenants {
            *self.tenants.entry(k.clone()).or_default() += v;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.objects += other.objects;
        self.oldest_arrival_ms = match (self.oldest_arrival_ms, other.oldest_arrival_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// The objects of one batch, not yet stored.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    pub objects: Vec<EncodedObject>,
    pub stats: IngestStats,
}

/// The result of [`IngestPipeline::process`].
#[derive(Debug, Clone)]
pub struct IngestOutcome {
    pub stats: IngestStats,
    /// When set, the batch must be re-delivered from this sequence number (Lambda's
    /// `batchItemFailures`). `None` means every record is stored or dead-lettered.
    pub retry_from: Option<String>,
    /// Human-readable causes of the failure, if any.
    pub errors: Vec<String>,
}

/// Decodes, normalises and encodes batches, and stores the result.
///
/// Clones share a pool of [`EncodeScratch`]: each batch takes one (or starts a fresh one when
/// all are in use by concurrent batches) and gives it back, so a warm pipeline reuses its
/// column memory and zstd context instead of allocating them per batch.
#[derive(Debug, Clone, Default)]
pub struct IngestPipeline {
    config: IngestConfig,
    scratch: Arc<Mutex<Vec<EncodeScratch>>>,
}

impl IngestPipeline {
    pub fn new(config: IngestConfig) -> Self {
        Self {
            config,
            scratch: Arc::default(),
        }
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// Pure CPU: turns a batch into the objects to store. `now_ms` bounds event timestamps.
    pub fn encode(&self, records: &[StreamRecord], now_ms: i64) -> Result<EncodedBatch, CoreError> {
        let mut encoder = self.begin(now_ms, records.len());
        encoder.push_all(records);
        self.end(encoder)
    }

    /// Starts a batch that is fed one record at a time ([`BatchEncoder::push`]) and then stored
    /// with [`Self::store`]: for a caller that reads records as it goes, so that each is decoded
    /// while it is still in the CPU cache. `expected_records` sizes the column builders.
    pub fn begin(&self, now_ms: i64, expected_records: usize) -> BatchEncoder<'_> {
        let scratch = self.pool().pop().unwrap_or_default();
        BatchEncoder::new(&self.config, now_ms, expected_records, scratch)
    }

    fn end(&self, encoder: BatchEncoder<'_>) -> Result<EncodedBatch, CoreError> {
        let (encoded, scratch) = encoder.finish();
        self.pool().push(scratch);
        encoded
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Vec<EncodeScratch>> {
        self.scratch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Encodes the batch and writes every object. Never fails as a whole: a storage failure is
    /// reported as `retry_from` the batch's first sequence number.
    pub async fn process(
        &self,
        store: &dyn BlobStore,
        records: &[StreamRecord],
        now_ms: i64,
    ) -> IngestOutcome {
        let mut encoder = self.begin(now_ms, records.len());
        encoder.push_all(records);
        self.store(store, encoder).await
    }

    /// Encodes what was pushed into `encoder` and writes every object, as [`Self::process`]
    /// does.
    pub async fn store(&self, store: &dyn BlobStore, encoder: BatchEncoder<'_>) -> IngestOutcome {
        let Some(first) = encoder.first_sequence_number().map(str::to_owned) else {
            // Nothing to write; the scratch still goes back to the pool.
            let _empty = self.end(encoder);
            return IngestOutcome {
                stats: IngestStats::default(),
                retry_from: None,
                errors: Vec::new(),
            };
        };
        let retry = |stats, errors| IngestOutcome {
            stats,
            retry_from: Some(first.clone()),
            errors,
        };
        let batch = match self.end(encoder) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "encoding the batch failed");
                return retry(IngestStats::default(), vec![e.to_string()]);
            }
        };
        let writes = batch.objects.iter().map(|object| async move {
            store
                .put(&object.key, object.body.clone(), object.content_type)
                .await
                .map_err(|e| format!("{}: {e}", object.key))
        });
        let errors: Vec<String> = futures::future::join_all(writes)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if errors.is_empty() {
            IngestOutcome {
                stats: batch.stats,
                retry_from: None,
                errors,
            }
        } else {
            for e in &errors {
                tracing::warn!(error = %e, "object write failed; the batch will be retried");
            }
            retry(batch.stats, errors)
        }
    }
}
