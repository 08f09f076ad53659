//! The compaction use case (docs/ARCHITECTURE.md §11): rewrites each closed arrival hour of the
//! raw tier (one object per ingested batch, every tenant in it) into the compacted tier, one
//! object per tenant and event hour, `logs/tenant=T/dt=D/hour=H/part-0.parquet`.
//!
//! A pass takes the raw hours after the watermark whose end, plus the allowed lateness, has
//! passed, one at a time and in order. For each, it reads the hour's raw objects, groups their
//! rows by tenant and event hour, and merges every group into that tenant-hour's compacted
//! object: read it, add the new rows, drop every row whose `origin` (shard, sequence number,
//! index in the record: unique per input event) is already there, sort by service then time,
//! and write it back in one PUT, which replaces the object whole. Only then does the watermark
//! move past the hour. A pass that dies half way leaves some tenant-hours merged and the
//! watermark where it was; the next pass merges the same rows again, and the `origin`
//! de-duplication makes that a no-op. Late events (an event hour already compacted) merge into
//! their tenant-hour's object in the pass of the hour they arrived in, once.
//!
//! Each object is written conditionally on the version read, so two passes that overlap (a
//! slow one and the next scheduled one) cannot lose each other's rows: the loser fails and
//! its hour is redone by a later pass.
//!
//! Readers see compacted rows with `received_at` before the watermark and raw rows from it on
//! (docs/ARCHITECTURE.md §11 gives the query): a row is counted in exactly one tier whatever
//! the pass is doing, and an object is replaced whole, never seen half written.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array,
};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};

use crate::columns;
use crate::error::CoreError;
use crate::partition::{self, RAW_PREFIX};
use crate::store::{BlobStore, Precondition};

/// Where the compaction watermark is kept.
pub const WATERMARK_KEY: &str = "control/compaction/watermark.json";

const HOUR_MS: i64 = 3_600_000;

/// How compaction is tuned.
#[derive(Debug, Clone)]
pub struct CompactConfig {
    /// How long after its end a raw hour may still receive objects: a batch whose first record
    /// arrived in the hour is written at most the stream's maximum record age plus the ingest
    /// function's timeout after that arrival (docs/ARCHITECTURE.md §11).
    pub lateness_ms: i64,
    /// Raw hours compacted in one pass at most, to bound a pass's time.
    pub max_hours_per_pass: usize,
    /// zstd level of the compacted objects (written once, read often: higher than ingest's).
    pub zstd_level: i32,
}

impl Default for CompactConfig {
    fn default() -> Self {
        Self {
            lateness_ms: HOUR_MS,
            max_hours_per_pass: 24,
            zstd_level: 3,
        }
    }
}

/// The compaction state: raw hours before `watermark_ms` are compacted.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Watermark {
    /// The start of the first raw (arrival) hour not yet compacted, ms since the epoch. The
    /// compacted tier holds every row with `received_at` before it; the raw tier is read
    /// from it on.
    pub watermark_ms: i64,
}

/// One compacted object written by a pass.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CompactedObject {
    pub key: String,
    pub bytes: u64,
    pub rows: u64,
}

/// What a pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompactStats {
    /// Raw hours compacted.
    pub hours: u64,
    /// Raw objects read.
    pub raw_objects: u64,
    /// Rows read from the raw objects.
    pub raw_rows: u64,
    /// Raw rows already in the compacted tier (a re-run, or a stale object of an abandoned
    /// retry) and dropped.
    pub duplicates: u64,
    /// Compacted objects written (each replacing the tenant-hour's previous one, if any).
    pub written: Vec<CompactedObject>,
    /// The watermark after the pass.
    pub watermark_ms: Option<i64>,
}

/// Reads the watermark, `None` before the first pass.
pub async fn read_watermark(store: &dyn BlobStore) -> Result<Option<Watermark>, CoreError> {
    let Some(body) = store.get(WATERMARK_KEY).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| CoreError::Config(format!("{WATERMARK_KEY}: {e}")))
}

/// Runs one compaction pass at `now_ms`.
pub async fn compact(
    store: &dyn BlobStore,
    config: &CompactConfig,
    now_ms: i64,
) -> Result<CompactStats, CoreError> {
    let mut stats = CompactStats::default();
    let start_hour = match read_watermark(store).await? {
        Some(w) => partition::hour_of(w.watermark_ms),
        None => match first_raw_hour(store).await? {
            Some(hour) => hour,
            None => return Ok(stats),
        },
    };
    // The last hour whose end plus the lateness has passed.
    let last_closed = partition::hour_of(now_ms - config.lateness_ms) - 1;
    let writer = CompactedWriter::new(config.zstd_level)?;
    for hour in (start_hour..=last_closed).take(config.max_hours_per_pass) {
        compact_hour(store, &writer, hour, &mut stats).await?;
        let watermark = Watermark {
            watermark_ms: (hour + 1) * HOUR_MS,
        };
        let body = serde_json::to_vec(&watermark)
            .map_err(|e| CoreError::Config(format!("{WATERMARK_KEY}: {e}")))?;
        store
            .put(WATERMARK_KEY, Bytes::from(body), "application/json")
            .await?;
        stats.hours += 1;
        stats.watermark_ms = Some(watermark.watermark_ms);
        tracing::info!(
            hour = %partition::dt_hour(hour),
            watermark_ms = watermark.watermark_ms,
            "raw hour compacted"
        );
    }
    Ok(stats)
}

/// The earliest raw hour, from the keys (`raw/dt=YYYY-MM-DD/hour=HH/...`).
async fn first_raw_hour(store: &dyn BlobStore) -> Result<Option<i64>, CoreError> {
    let keys = store.list(RAW_PREFIX).await?;
    Ok(keys
        .iter()
        .filter_map(|k| partition::parse_dt_hour(k))
        .min())
}

/// Merges one raw hour into the compacted tier.
async fn compact_hour(
    store: &dyn BlobStore,
    writer: &CompactedWriter,
    hour: i64,
    stats: &mut CompactStats,
) -> Result<(), CoreError> {
    let keys = store.list(&partition::raw_hour_prefix(hour)).await?;
    let mut batches = Vec::new();
    for key in keys.iter().filter(|k| k.ends_with(".parquet")) {
        let Some(body) = store.get(key).await? else {
            continue;
        };
        stats.raw_objects += 1;
        batches.extend(read_batches(body)?);
    }
    if batches.is_empty() {
        return Ok(());
    }
    let raw = arrow_select::concat::concat_batches(&columns::schema(), &batches)?;
    stats.raw_rows += raw.num_rows() as u64;
    for ((tenant, event_hour), rows) in group_by_tenant_hour(&raw)? {
        let new_rows = arrow_select::take::take_record_batch(&raw, &UInt32Array::from(rows))?;
        let key = partition::compacted_key(&tenant, event_hour);
        let (mut parts, precondition) = match store.get_versioned(&key).await? {
            Some((body, tag)) => (read_batches(body)?, Precondition::Matches(tag)),
            None => (Vec::new(), Precondition::Absent),
        };
        let before: usize =
            parts.iter().map(RecordBatch::num_rows).sum::<usize>() + new_rows.num_rows();
        parts.push(new_rows);
        let merged = arrow_select::concat::concat_batches(&columns::schema(), &parts)?;
        let merged = sort_by_service_time(&dedupe_by_origin(&merged)?)?;
        stats.duplicates += (before - merged.num_rows()) as u64;
        let body = writer.write(&merged)?;
        let bytes = body.len() as u64;
        // Conditional: a concurrent pass that replaced the object since it was read makes this
        // one fail (and the next pass redo the hour) instead of losing that pass's rows.
        store
            .put_if(&key, body, "application/vnd.apache.parquet", precondition)
            .await?;
        stats.written.push(CompactedObject {
            key,
            bytes,
            rows: merged.num_rows() as u64,
        });
    }
    Ok(())
}

/// Every record batch of a Parquet object, in the canonical schema.
pub fn read_batches(body: Bytes) -> Result<Vec<RecordBatch>, CoreError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(body)?
        .with_batch_size(64 * 1024)
        .build()?;
    let schema = columns::schema();
    reader
        .map(|batch| {
            let batch = batch?;
            // The same columns; field metadata may differ between writers.
            Ok(RecordBatch::try_new(
                Arc::clone(&schema),
                batch.columns().to_vec(),
            )?)
        })
        .collect()
}

fn string_column<'b>(batch: &'b RecordBatch, name: &str) -> Result<&'b StringArray, CoreError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| CoreError::Config(format!("log rows without a string column {name}")))
}

fn ts_column(batch: &RecordBatch) -> Result<&TimestampMillisecondArray, CoreError> {
    batch
        .column_by_name("ts")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        .ok_or_else(|| CoreError::Config("log rows without a ts column".into()))
}

/// Row indices of each (tenant, event hour).
fn group_by_tenant_hour(
    batch: &RecordBatch,
) -> Result<BTreeMap<(String, i64), Vec<u32>>, CoreError> {
    let tenants = string_column(batch, "tenant")?;
    let ts = ts_column(batch)?;
    let mut groups: BTreeMap<(String, i64), Vec<u32>> = BTreeMap::new();
    for row in 0..batch.num_rows() {
        let key = (
            tenants.value(row).to_owned(),
            partition::hour_of(ts.value(row)),
        );
        groups.entry(key).or_default().push(row as u32);
    }
    Ok(groups)
}

/// Keeps the first row of each `origin`.
pub fn dedupe_by_origin(batch: &RecordBatch) -> Result<RecordBatch, CoreError> {
    let origins = string_column(batch, "origin")?;
    let mut seen = HashSet::with_capacity(batch.num_rows());
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|row| Some(seen.insert(origins.value(row))))
        .collect();
    Ok(arrow_select::filter::filter_record_batch(batch, &keep)?)
}

/// The rows by service, then time, then origin (so that the order is total and a re-run
/// writes the same file).
fn sort_by_service_time(batch: &RecordBatch) -> Result<RecordBatch, CoreError> {
    let services = string_column(batch, "service")?;
    let origins = string_column(batch, "origin")?;
    let ts = ts_column(batch)?;
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        (services.value(a), ts.value(a), origins.value(a)).cmp(&(
            services.value(b),
            ts.value(b),
            origins.value(b),
        ))
    });
    let indices = UInt32Array::from(order);
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| arrow_select::take::take(c.as_ref(), &indices, None))
        .collect::<Result<_, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Writes compacted objects: zstd, page statistics (and so a page index), row groups of a
/// million rows.
struct CompactedWriter {
    properties: WriterProperties,
}

impl CompactedWriter {
    fn new(zstd_level: i32) -> Result<Self, CoreError> {
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(zstd_level)?))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(1 << 20))
            .set_created_by(format!("sluice {} compact", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self { properties })
    }

    fn write(&self, batch: &RecordBatch) -> Result<Bytes, CoreError> {
        let mut out = Vec::with_capacity(batch.get_array_memory_size() / 4 + 4096);
        let mut writer =
            ArrowWriter::try_new(&mut out, batch.schema(), Some(self.properties.clone()))?;
        writer.write(batch)?;
        writer.close()?;
        Ok(Bytes::from(out))
    }
}
