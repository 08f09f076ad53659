//! The aggregate use case: stream records in, per (tenant, window) partials out, and how
//! partials are stored and carried between invocations.
//!
//! Partials are written under `windows/partials/dt=…/hour=…/window=<start>/tenant=<T>/
//! <shard>-<tag>.json.gz`, where the tag comes from the batch (the Lambda tumbling window's start,
//! or the first sequence number of a spill), so a retried write overwrites itself.

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

/// The key of one shard's partial of one tenant's window.
pub fn partial_key(start_ms: i64, tenant: &str, shard_id: &str, tag: &str) -> String {
    format!(
        "{}tenant={tenant}/{shard_id}-{tag}.json.gz",
        window_prefix(start_ms)
    )
}

/// Writes one object per (tenant, window) partial. Returns the keys written.
pub async fn store_partials(
    store: &dyn BlobStore,
    partials: &[TenantWindow],
    shard_id: &str,
    tag: &str,
) -> Result<Vec<String>, CoreError> {
    let mut keys = Vec::with_capacity(partials.len());
    for partial in partials {
        let key = partial_key(partial.start_ms, &partial.tenant, shard_id, tag);
        let body = encode_partials(std::slice::from_ref(partial))?;
        store
            .put(&key, Bytes::from(body), "application/gzip")
            .await?;
        keys.push(key);
    }
    Ok(keys)
}
