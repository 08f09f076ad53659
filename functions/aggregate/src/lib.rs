//! # sluice-aggregate
//!
//! The aggregate Lambda function, as a library: a Kinesis batch of a tumbling window
//! (`TumblingWindowInSeconds` on the event source mapping) in; per (tenant, window) partials out.
//!
//! Between the invocations of one Lambda window the partials travel in Lambda's window state (a
//! string map capped at 1 MB): gzip JSON, base64, under `partials`. When that would pass
//! [`SPILL_STATE_BYTES`], the partials are written to S3 early (a "spill", keyed by the batch's
//! first sequence number) and the state starts empty again; the evaluator merges spills with
//! everything else, since all partials of a window merge by adding. On the final invocation of
//! the window the partials are written under a key named after the shard and the Lambda window,
//! so a retried final invocation overwrites rather than duplicates.
//!
//! The shard's progress goes to `windows/progress/` at the first and the final invocation of
//! each window ([`sluice_core::window::progress`]): the evaluator closes a window only once
//! every busy shard's partials for it are stored. A final invocation says so in
//! [`WindowResponse::finished_through_ms`], and the binary then wakes the planner.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sluice_aws::kinesis_records::{raw_event, read_event};
use sluice_core::aggregate::{aggregate_records, decode_state, encode_state, store_partials};
use sluice_core::normalize::timestamp::parse_rfc3339_ms;
use sluice_core::window::progress::{self, ShardProgress};
use sluice_core::window::{WindowAggregator, WindowConfig};
use sluice_core::{BlobStore, CoreError, IngestConfig};

/// The state key the partials travel under.
pub const STATE_KEY: &str = "partials";
/// The state key of the batch tag: the first sequence number the window's state saw.
pub const BATCH_KEY: &str = "batch";
/// Spill to S3 above this much encoded state (Lambda refuses state over 1 MB).
pub const SPILL_STATE_BYTES: usize = 800 * 1024;

/// The time-window fields of Lambda's Kinesis tumbling-window event.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowProperties {
    pub window: LambdaWindow,
    #[serde(default)]
    pub state: HashMap<String, String>,
    #[serde(default)]
    pub shard_id: Option<String>,
    #[serde(default)]
    pub is_final_invoke_for_window: bool,
    #[serde(default)]
    pub is_window_terminated_early: bool,
}

/// Lambda's window bounds (RFC 3339).
#[derive(Debug, Clone, Deserialize)]
pub struct LambdaWindow {
    pub start: String,
    pub end: String,
}

/// The function's answer: the state for the next invocation, and failures (always empty: a
/// failure is returned as a function error, so Lambda retries the batch with the same state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowResponse {
    pub state: HashMap<String, String>,
    pub batch_item_failures: Vec<serde_json::Value>,
    /// Set when this invocation finished the shard's tumbling window: everything that arrived
    /// before this time is stored, so the planner may have a window to evaluate (not sent to
    /// Lambda).
    #[serde(skip)]
    pub finished_through_ms: Option<i64>,
}

/// Why an invocation failed (Lambda then retries it with the same state).
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error("invalid tumbling-window event: {0}")]
    Event(String),
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// Lambda's tumbling-window Kinesis event, the function's payload type: the records (read as
/// the ingest function reads them, with exact arrival times) and the window fields.
#[derive(Debug, Clone)]
pub struct WindowEvent {
    pub records: Vec<sluice_core::StreamRecord>,
    pub props: WindowProperties,
}

impl WindowEvent {
    /// Reads the event's JSON text: the records in one pass, then the window fields from what
    /// is left.
    pub fn from_json(json: &str) -> Result<Self, AggregateError> {
        let (records, rest) = read_event(json).map_err(|e| AggregateError::Event(e.to_string()))?;
        let props =
            serde_json::from_str(&rest).map_err(|e| AggregateError::Event(e.to_string()))?;
        Ok(Self { records, props })
    }
}

impl<'de> Deserialize<'de> for WindowEvent {
    /// Past lambda_runtime's key-copying deserializer, as [`raw_event`] explains.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = raw_event(deserializer)?;
        Self::from_json(raw.get()).map_err(serde::de::Error::custom)
    }
}

/// Decodes Lambda's event held as a JSON value (the local runner builds it so).
pub fn parse_event(
    value: serde_json::Value,
) -> Result<(Vec<sluice_core::StreamRecord>, WindowProperties), AggregateError> {
    let event = WindowEvent::from_json(&value.to_string())?;
    Ok((event.records, event.props))
}

/// Handles one invocation.
pub async fn handle(
    store: &dyn BlobStore,
    ingest: &IngestConfig,
    windows: &WindowConfig,
    records: &[sluice_core::StreamRecord],
    props: &WindowProperties,
    now_ms: i64,
) -> Result<WindowResponse, AggregateError> {
    let mut aggregator = WindowAggregator::new(windows.clone());
    if let Some(state) = props.state.get(STATE_KEY) {
        aggregator.absorb(decode_state(state)?);
    }
    let stats = aggregate_records(ingest, &mut aggregator, records, now_ms);
    let shard = props
        .shard_id
        .clone()
        .or_else(|| records.first().map(|r| r.shard_id.to_string()))
        .unwrap_or_else(|| "unknown-shard".to_owned());
    let rfc3339 = |name: &str, text: &str| {
        parse_rfc3339_ms(text)
            .ok_or_else(|| AggregateError::Event(format!("window {name} {text:?} is not RFC 3339")))
    };
    let window_start = rfc3339("start", &props.window.start)?;
    let window_end = rfc3339("end", &props.window.end)?;
    let progress = |through_ms: i64| ShardProgress {
        shard: shard.clone(),
        through_ms,
        window_ms: window_end - window_start,
        written_at_ms: now_ms,
    };
    let partials = aggregator.drain();
    tracing::info!(
        shard = %shard,
        lambda_window = %props.window.start,
        records = stats.records,
        events = stats.events,
        skipped = stats.rejected,
        partials = partials.len(),
        final_invoke = props.is_final_invoke_for_window,
        "batch aggregated"
    );
    if props.is_window_terminated_early {
        tracing::warn!(shard = %shard, "Lambda ended the window early (state too large); writing what there is");
    }
    let mut response = WindowResponse::default();
    // The batch: the first record this window's state saw (kept across invocations).
    let batch = props
        .state
        .get(BATCH_KEY)
        .cloned()
        .or_else(|| records.first().map(|r| r.sequence_number.to_string()))
        .unwrap_or_else(|| "empty".to_owned());
    if props.is_final_invoke_for_window || props.is_window_terminated_early {
        let tag = format!("{window_start:013}-{batch}");
        let keys = store_partials(store, &partials, windows.tenant_buckets, &shard, &tag).await?;
        tracing::info!(objects = keys.len(), "window partials written");
        // Everything that arrived before the window's end is stored now (a window cut short
        // only vouches for its start: Lambda opens the next one where it stopped).
        let through = if props.is_final_invoke_for_window {
            window_end
        } else {
            window_start
        };
        progress::record(store, &progress(through)).await?;
        response.finished_through_ms = props.is_final_invoke_for_window.then_some(through);
        return Ok(response);
    }
    if !props.state.contains_key(STATE_KEY) {
        // The window's first invocation (or the first after a spill): the shard is busy with
        // this window, and what arrived before its start is stored.
        progress::record(store, &progress(window_start)).await?;
    }
    let state = encode_state(&partials)?;
    if state.len() > SPILL_STATE_BYTES {
        let first = records
            .first()
            .map_or("empty", |r| r.sequence_number.as_str());
        let keys = store_partials(
            store,
            &partials,
            windows.tenant_buckets,
            &shard,
            &format!("{window_start:013}-spill-{first}"),
        )
        .await?;
        tracing::info!(
            objects = keys.len(),
            state_bytes = state.len(),
            "state outgrew the Lambda cap; partials spilled to S3"
        );
    } else if !partials.is_empty() {
        response.state.insert(STATE_KEY.to_owned(), state);
        response.state.insert(BATCH_KEY.to_owned(), batch);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::LocalDirStore;
    use sluice_core::aggregate::decode_partials;

    /// The fixture shard's progress record: (through, window length, written at).
    async fn progress_of(store: &LocalDirStore) -> (i64, i64, i64) {
        let all = progress::load_all(store).await.expect("progress loads");
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].shard, "shardId-000000000006");
        (all[0].through_ms, all[0].window_ms, all[0].written_at_ms)
    }

    fn fixture() -> serde_json::Value {
        let text = include_str!("../../../infra/events/kinesis-window.json");
        serde_json::from_str(text).expect("fixture is JSON")
    }

    #[test]
    fn the_payload_type_reads_the_records_and_the_window_fields() {
        let text = include_str!("../../../infra/events/kinesis-window.json");
        // As lambda_runtime reads it: through serde_path_to_error.
        let event: WindowEvent =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text))
                .expect("the payload type reads it");
        let reference = sluice_aws::kinesis::kinesis_event_from_slice(text.as_bytes())
            .map(sluice_aws::kinesis::into_stream_records)
            .expect("the reference reads it");
        assert!(!reference.is_empty());
        assert_eq!(event.records, reference);
        assert_eq!(
            event.props.shard_id.as_deref(),
            Some("shardId-000000000006")
        );
        assert!(event.props.is_final_invoke_for_window);
        assert!(!event.props.is_window_terminated_early);
        assert!(event.props.state.is_empty());
        assert!(event.props.window.start < event.props.window.end);
        let (records, props) = parse_event(fixture()).expect("parse_event reads it");
        assert_eq!(records, reference);
        assert_eq!(props.window.start, event.props.window.start);
    }

    #[tokio::test]
    async fn state_round_trips_between_invocations_and_the_final_one_writes_partials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalDirStore::new(dir.path());
        let (records, mut props) = parse_event(fixture()).expect("fixture parses");
        let now = records[0].arrival_ms;
        // The fixture's records were logged at 10:29:58-59 and arrived at 10:30:00: a stack
        // that allows two minutes of lateness counts them in 10:29 (with the default of none
        // they would count, marked late, in 10:30).
        let windows = WindowConfig {
            allowed_lateness_ms: 120_000,
            ..WindowConfig::default()
        };
        props.is_final_invoke_for_window = false;
        let first = handle(
            &store,
            &IngestConfig::default(),
            &windows,
            &records,
            &props,
            now,
        )
        .await
        .expect("first invocation");
        assert!(
            first.state.contains_key(STATE_KEY),
            "partials carried in state"
        );
        assert_eq!(
            first.finished_through_ms, None,
            "no planner wake-up mid-window"
        );
        assert!(
            store
                .list("windows/partials/")
                .await
                .expect("list")
                .is_empty(),
            "no partials written yet"
        );
        // The shard is busy with the window that starts at 10:30; what arrived before is stored.
        assert_eq!(
            progress_of(&store).await,
            (1_736_937_000_000, 60_000, now),
            "progress at the window's first invocation"
        );
        // The final invocation (Lambda sends it with no records) writes what the state holds.
        props.state = first.state;
        props.is_final_invoke_for_window = true;
        let last = handle(&store, &IngestConfig::default(), &windows, &[], &props, now)
            .await
            .expect("final invocation");
        assert!(last.state.is_empty());
        assert_eq!(
            last.finished_through_ms,
            Some(1_736_937_060_000),
            "the final invocation wakes the planner: the shard is through the window's end"
        );
        assert_eq!(
            progress_of(&store).await.0,
            1_736_937_060_000,
            "after the final invocation the shard is through the window's end"
        );
        let keys = store.list("windows/partials/").await.expect("list");
        // acme and globex log at 10:29:58-59; the plain-text line has no time of its own and
        // takes its arrival, 10:30:00.45: three (tenant, window) partials, stored per
        // (window, tenant bucket).
        let buckets = WindowConfig::default().tenant_buckets;
        let acme_key = sluice_core::aggregate::bucket_prefix(1_736_936_940_000, buckets.of("acme"));
        let acme = keys
            .iter()
            .find(|k| k.starts_with(&acme_key))
            .expect("acme's bucket of 10:29");
        let batch = &records[0].sequence_number;
        assert!(
            acme.ends_with(&format!(
                "/shardId-000000000006-1736937000000-{batch}.json.gz"
            )),
            "{acme}"
        );
        let mut tenants = Vec::new();
        for key in &keys {
            let body = store.get(key).await.expect("get").expect("present");
            tenants.extend(decode_partials(&body).expect("decodes"));
        }
        assert_eq!(
            tenants.len(),
            3,
            "three (tenant, window) partials: {tenants:?}"
        );
        let partial = decode_partials(&store.get(acme).await.expect("get").expect("present"))
            .expect("decodes");
        let acme_window = partial
            .iter()
            .find(|p| p.tenant == "acme")
            .expect("acme in its bucket");
        let checkout = &acme_window.services["checkout"];
        assert_eq!(
            (checkout.count, checkout.http_5xx, checkout.errors()),
            (2, 1, 1)
        );
        // A retried final invocation writes the same keys.
        handle(&store, &IngestConfig::default(), &windows, &[], &props, now)
            .await
            .expect("retry");
        assert_eq!(store.list("windows/partials/").await.expect("list"), keys);
    }
}
