//! The aggregate use case: stream records in, per (tenant, window) partials out, and how
//! partials are stored and carried between invocations.
//!
//! Partials are written per tenant bucket ([`crate::tenant_bucket`]): one object holds every
//! tenant of the bucket, under `windows/partials/dt=…/hour=…/window=<start>/bucket=<b>/
//! <shard>-<tag>.json.gz`, where the tag comes from the batch (the Lambda tumbling window's start
//! and the first sequence number the batch saw, or that of a spill), so a retried write
//! overwrites itself and concurrent batches of one shard never overwrite one another
//! (docs/ARCHITECTURE.md §12).

use std::io::{Read as _, Write as _};

use base64::Engine as _;
use bytes::Bytes;

use crate::decode::{Decoder, EventDefaults, EventSink};
use crate::encode_batch::IngestConfig;
use crate::error::{CoreError, RejectReason};
use crate::input::{RecordRef, StreamRecord};
use crate::normalize::Fields;
use crate::partition;
use crate::resolve::resolve;
use crate::store::BlobStore;
use crate::tenant_bucket::TenantBuckets;
use crate::window::{AggEvent, TenantWindow, WindowAggregator};

/// Counts from one aggregation pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregateStats {
    pub records: u64,
    pub events: u64,
    /// Events the ingest path dead-letters; aggregation skips them.
    pub rejected: u64,
}

struct AggregateSink<'b> {
    config: &'b IngestConfig,
    record: RecordRef<'b>,
    reference_ms: i64,
    aggregator: &'b mut WindowAggregator,
    stats: &'b mut AggregateStats,
}

impl EventSink for AggregateSink<'_> {
    fn event(
        &mut self,
        _sub: u32,
        fields: &Fields<'_>,
        _attrs: Option<&str>,
        defaults: &EventDefaults<'_>,
    ) -> Result<(), RejectReason> {
        let r = resolve(
            self.config,
            self.record,
            self.reference_ms,
            fields,
            defaults,
        )?;
        self.aggregator.add(&AggEvent {
            tenant: r.tenant,
            service: r.service,
            ts_ms: r.ts_ms,
            arrival_ms: self.reference_ms,
            level: r.level,
            http_status: fields.http_status,
            latency_ms: fields.latency_ms,
            message: fields.message.as_deref().unwrap_or_default(),
        });
        self.stats.events += 1;
        Ok(())
    }

    fn reject(&mut self, _sub: Option<u32>, _reason: RejectReason, _raw: &[u8]) {
        self.stats.rejected += 1;
    }
}

/// Decodes `records` and adds every good event to `aggregator`.
pub fn aggregate_records(
    config: &IngestConfig,
    aggregator: &mut WindowAggregator,
    records: &[StreamRecord],
    now_ms: i64,
) -> AggregateStats {
    let mut stats = AggregateStats::default();
    let mut decoder = Decoder::new(config.limits.clone(), config.cloudwatch.clone());
    for record in records {
        stats.records += 1;
        let record = record.view();
        let mut sink = AggregateSink {
            config,
            record,
            reference_ms: record.reference_ms(now_ms),
            aggregator,
            stats: &mut stats,
        };
        decoder.decode(record.data, &mut sink);
    }
    stats
}

/// Serialises partials as gzip JSON.
pub fn encode_partials(partials: &[TenantWindow]) -> Result<Vec<u8>, CoreError> {
    gzip_json(partials)
}

fn gzip_json<T: serde::Serialize + ?Sized>(partials: &T) -> Result<Vec<u8>, CoreError> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    serde_json::to_writer(&mut gz, partials).map_err(std::io::Error::from)?;
    gz.flush()?;
    Ok(gz.finish()?)
}

/// Reads partials written by [`encode_partials`].
pub fn decode_partials(body: &[u8]) -> Result<Vec<TenantWindow>, CoreError> {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut json)?;
    serde_json::from_slice(&json).map_err(|e| CoreError::Config(format!("corrupt partial: {e}")))
}

/// Partials as Lambda tumbling-window state: base64 of gzip JSON (the state is a string map).
pub fn encode_state(partials: &[TenantWindow]) -> Result<String, CoreError> {
    Ok(base64::engine::general_purpose::STANDARD.encode(encode_partials(partials)?))
}

/// Reads state written by [`encode_state`].
pub fn decode_state(state: &str) -> Result<Vec<TenantWindow>, CoreError> {
    let body = base64::engine::general_purpose::STANDARD
        .decode(state)
        .map_err(|e| CoreError::Config(format!("corrupt window state: {e}")))?;
    decode_partials(&body)
}

/// The prefix of every partial of the window starting at `start_ms`.
pub fn window_prefix(start_ms: i64) -> String {
    format!(
        "windows/partials/{}/window={start_ms:013}/",
        partition::dt_hour(partition::hour_of(start_ms))
    )
}

/// The prefix of every partial of one tenant bucket of the window starting at `start_ms`.
pub fn bucket_prefix(start_ms: i64, bucket: u32) -> String {
    format!("{}bucket={bucket:04}/", window_prefix(start_ms))
}

/// The key of one shard's partial of one tenant bucket's window.
pub fn partial_key(start_ms: i64, bucket: u32, shard_id: &str, tag: &str) -> String {
    format!(
        "{}{shard_id}-{tag}.json.gz",
        bucket_prefix(start_ms, bucket)
    )
}

/// The tenant bucket named in a partial's key (`…/bucket=<b>/…`).
pub fn bucket_of_key(key: &str) -> Option<u32> {
    key.split('/')
        .find_map(|part| part.strip_prefix("bucket="))
        .and_then(|b| b.parse().ok())
}

/// Writes one object per (window, tenant bucket) holding that bucket's tenants' partials.
/// Returns the keys written.
pub async fn store_partials(
    store: &dyn BlobStore,
    partials: &[TenantWindow],
    buckets: TenantBuckets,
    shard_id: &str,
    tag: &str,
) -> Result<Vec<String>, CoreError> {
    let mut grouped: std::collections::BTreeMap<(i64, u32), Vec<&TenantWindow>> =
        std::collections::BTreeMap::new();
    for partial in partials {
        grouped
            .entry((partial.start_ms, buckets.of(&partial.tenant)))
            .or_default()
            .push(partial);
    }
    let mut keys = Vec::with_capacity(grouped.len());
    for ((start_ms, bucket), mut group) in grouped {
        group.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        let key = partial_key(start_ms, bucket, shard_id, tag);
        // Serialised as `encode_partials` serialises a slice: `decode_partials` reads it.
        let body = gzip_json(&group)?;
        store
            .put(&key, Bytes::from(body), "application/gzip")
            .await?;
        keys.push(key);
    }
    Ok(keys)
}
