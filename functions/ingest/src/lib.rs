//! # sluice-ingest
//!
//! The ingest Lambda function, as a library so that tests (and the local runner) can call the
//! handler without Lambda: a Kinesis batch in, one Parquet object under `raw/` and a dead-letter
//! object under `dlq/` out, through any [`BlobStore`].
//!
//! The handler never fails for bad records (they go to `dlq/` with their reason). When storage
//! fails, it reports the batch's first sequence number in `batchItemFailures`; with
//! `ReportBatchItemFailures` on the event source mapping, Lambda re-delivers the batch from
//! there, the retry writes the same keys, and nothing is duplicated.
//!
//! The binary (`sluice-ingest`) builds the S3 client and the pipeline once, at init; see
//! `main.rs` for the environment it reads.

use aws_lambda_events::streams::KinesisEventResponse;
use sluice_aws::emf;
use sluice_core::{BlobStore, IngestOutcome, IngestPipeline, StreamRecord};
use tracing::Instrument as _;

/// The bucket the function writes to (required).
pub const DATA_BUCKET_ENV: &str = "SLUICE_DATA_BUCKET";
/// Set by Lambda; used as the `Function` dimension of the metrics.
pub const FUNCTION_NAME_ENV: &str = "AWS_LAMBDA_FUNCTION_NAME";
/// The `Function` dimension when not running on Lambda.
pub const DEFAULT_FUNCTION_NAME: &str = "sluice-ingest";

/// Handles one Lambda Kinesis batch (its records, as
/// [`sluice_aws::kinesis_records::KinesisBatch`] reads them from the event): stores it, prints
/// its EMF metrics line, and answers with the batch item failures Lambda needs to retry from
/// the right record.
pub async fn handle(
    store: &dyn BlobStore,
    pipeline: &IngestPipeline,
    records: Vec<StreamRecord>,
    now_ms: i64,
) -> KinesisEventResponse {
    let outcome = ingest(store, pipeline, records, now_ms).await;
    let function =
        std::env::var(FUNCTION_NAME_ENV).unwrap_or_else(|_| DEFAULT_FUNCTION_NAME.to_owned());
    emf::emit(&emf::ingest_line(
        &function,
        &outcome.stats,
        outcome.retry_from.is_some(),
        now_ms,
    ));
    response_for(&outcome)
}

/// Processes one batch, logging what happened. No metrics, no response: the parts of
/// [`handle`] that tests and the local runner want on their own.
pub async fn ingest(
    store: &dyn BlobStore,
    pipeline: &IngestPipeline,
    records: Vec<StreamRecord>,
    now_ms: i64,
) -> IngestOutcome {
    let span = match (records.first(), records.last()) {
        (Some(first), Some(last)) => tracing::info_span!(
            "ingest_batch",
            shard = %first.shard_id,
            first_sequence = %first.sequence_number,
            last_sequence = %last.sequence_number,
            records = records.len(),
        ),
        _ => tracing::info_span!("ingest_batch", records = 0),
    };
    async {
        let outcome = pipeline.process(store, &records, now_ms).await;
        let stats = &outcome.stats;
        match &outcome.retry_from {
            None => tracing::info!(
                events = stats.events,
                rows = stats.rows,
                rejected = stats.rejected_total(),
                objects = stats.objects,
                bytes_in = stats.bytes_in,
                bytes_out = stats.bytes_out,
                tenants = stats.tenants.len(),
                "batch stored"
            ),
            Some(from) => tracing::error!(
                retry_from = %from,
                errors = ?outcome.errors,
                "batch not stored; reporting a batch item failure so that Lambda retries it"
            ),
        }
        outcome
    }
    .instrument(span)
    .await
}

/// Lambda's answer for an outcome: no failures, or one failure at the sequence number to
/// resume from (Lambda retries that record and every later one of the batch).
pub fn response_for(outcome: &IngestOutcome) -> KinesisEventResponse {
    let mut response = KinesisEventResponse::default();
    if let Some(from) = &outcome.retry_from {
        response.add_failure(from.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use aws_lambda_events::kinesis::KinesisEvent;
    use base64::Engine as _;
    use bytes::Bytes;
    use sluice_aws::kinesis::kinesis_event_from_slice;
    use sluice_aws::kinesis_records::KinesisBatch;
    use sluice_core::{IngestConfig, LocalDirStore, StoreError};

    const FIXTURE: &str = include_str!("../../../infra/events/kinesis.json");
    /// Arrival of the fixture's records (2025-01-15T10:30:00Z), give or take a second.
    const FIXTURE_NOW_MS: i64 = 1_736_937_005_000;

    /// A store whose writes all fail, as S3 does during an outage.
    #[derive(Debug)]
    struct FailingStore;

    #[async_trait]
    impl BlobStore for FailingStore {
        async fn put(
            &self,
            key: &str,
            _body: Bytes,
            _content_type: &str,
        ) -> Result<(), StoreError> {
            Err(StoreError::Backend {
                backend: "test",
                op: "put",
                key: key.to_owned(),
                message: "SlowDown: injected failure".to_owned(),
            })
        }
        async fn get(&self, _key: &str) -> Result<Option<Bytes>, StoreError> {
            Ok(None)
        }
        async fn list(&self, _prefix: &str) -> Result<Vec<String>, StoreError> {
            Ok(Vec::new())
        }
        async fn delete(&self, _key: &str) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn fixture() -> KinesisEvent {
        kinesis_event_from_slice(FIXTURE.as_bytes())
            .expect("infra/events/kinesis.json is a Lambda Kinesis event")
    }

    /// The records of an event, read as lambda_runtime reads the function's payload.
    fn payload(json: &str) -> Vec<StreamRecord> {
        serde_path_to_error::deserialize::<_, KinesisBatch>(
            &mut serde_json::Deserializer::from_str(json),
        )
        .expect("a Lambda Kinesis event")
        .records
    }

    fn fixture_records() -> Vec<StreamRecord> {
        payload(FIXTURE)
    }

    fn pipeline() -> IngestPipeline {
        IngestPipeline::new(IngestConfig::default())
    }

    #[test]
    fn fixture_is_a_lambda_kinesis_event_with_the_three_payload_kinds() {
        let event = fixture();
        assert!(event.records.len() >= 3);
        let payloads: Vec<String> = event
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.kinesis.data).into_owned())
            .collect();
        assert!(
            payloads
                .iter()
                .any(|p| p.lines().count() > 1 && p.starts_with('{')),
            "an NDJSON record: {payloads:?}"
        );
        assert!(
            payloads.iter().any(|p| !p.starts_with('{')),
            "a plain-text record: {payloads:?}"
        );
        assert!(
            payloads.iter().any(|p| p.starts_with('{')
                && serde_json::from_str::<serde_json::Value>(p).is_err()
                && p.lines().count() == 1),
            "a malformed record: {payloads:?}"
        );
        for record in &event.records {
            assert_eq!(record.event_source.as_deref(), Some("aws:kinesis"));
            let id = record.event_id.as_deref().unwrap_or_default();
            assert_eq!(
                Some(id),
                Some(format!("shardId-000000000006:{}", record.kinesis.sequence_number).as_str())
            );
        }
        // The fixture is also accepted by the plain aws_lambda_events type Lambda tooling uses.
        let plain: KinesisEvent = serde_json::from_str(FIXTURE).expect("plain KinesisEvent");
        assert_eq!(plain.records.len(), event.records.len());
    }

    #[tokio::test]
    async fn fixture_batch_is_stored_as_one_parquet_object_and_the_malformed_record_dead_lettered()
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalDirStore::new(dir.path());
        let records = fixture_records();
        let first_sequence = records[0].sequence_number.clone();

        let response = handle(&store, &pipeline(), records, FIXTURE_NOW_MS).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");

        // One data object for the batch, every tenant in it (docs/ARCHITECTURE.md §11).
        let raw = store.list("raw/").await.expect("list raw");
        assert_eq!(
            raw,
            vec![format!(
                "raw/dt=2025-01-15/hour=10/shardId-000000000006-{first_sequence}.parquet"
            )]
        );
        let body = store
            .get(&raw[0])
            .await
            .expect("get")
            .expect("object exists");
        assert_eq!(&body[..4], b"PAR1", "not Parquet");
        let batches = sluice_core::compact::read_batches(body).expect("parquet");
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert!(rows >= 2, "{rows} rows");
        // Both tenants' rows are in it (the batches' debug form lists every value).
        let shown = format!("{batches:?}");
        assert!(
            shown.contains("acme") && shown.contains("globex"),
            "{shown}"
        );

        let dlq = store.list("dlq/").await.expect("list dlq");
        assert_eq!(
            dlq,
            vec![format!(
                "dlq/dt=2025-01-15/hour=10/shardId-000000000006-{first_sequence}.ndjson.gz"
            )]
        );
        let body = store.get(&dlq[0]).await.expect("get").expect("dlq object");
        let letters = sluice_core::dead_letter::decode(&body).expect("gzip NDJSON");
        assert_eq!(letters.len(), 1, "{letters:?}");
        assert_eq!(letters[0].reason_kind, "not_json");
    }

    #[tokio::test]
    async fn failed_write_reports_the_first_sequence_number_for_retry() {
        let records = fixture_records();
        let first_sequence = records[0].sequence_number.to_string();
        let response = handle(&FailingStore, &pipeline(), records, FIXTURE_NOW_MS).await;
        assert_eq!(response.batch_item_failures.len(), 1, "{response:?}");
        assert_eq!(
            response.batch_item_failures[0].item_identifier.as_deref(),
            Some(first_sequence.as_str())
        );
        let json = serde_json::to_value(&response).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": first_sequence}]})
        );
    }

    #[tokio::test]
    async fn a_batch_of_only_bad_records_succeeds_with_everything_dead_lettered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalDirStore::new(dir.path());
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let records = payload(&format!(
            r#"{{"Records": [
                    {{"kinesis": {{"partitionKey": "acme/api", "sequenceNumber": "100", "data": "{}", "approximateArrivalTimestamp": 1736937000.5}},
                      "eventID": "shardId-000000000001:100", "eventSource": "aws:kinesis"}},
                    {{"kinesis": {{"partitionKey": "acme/api", "sequenceNumber": "101", "data": "{}", "approximateArrivalTimestamp": 1736937000.6}},
                      "eventID": "shardId-000000000001:101", "eventSource": "aws:kinesis"}}
                ]}}"#,
            b64("{\"broken"),
            b64("   "),
        ));
        let response = handle(&store, &pipeline(), records, FIXTURE_NOW_MS).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        assert!(store.list("raw/").await.expect("list").is_empty());
        let dlq = store.list("dlq/").await.expect("list");
        assert_eq!(
            dlq,
            vec!["dlq/dt=2025-01-15/hour=10/shardId-000000000001-100.ndjson.gz".to_owned()]
        );
        let letters = sluice_core::dead_letter::decode(
            &store.get(&dlq[0]).await.expect("get").expect("object"),
        )
        .expect("decode");
        let kinds: Vec<&str> = letters.iter().map(|l| l.reason_kind.as_str()).collect();
        assert_eq!(kinds, vec!["not_json", "empty"]);
    }

    #[tokio::test]
    async fn an_empty_event_is_a_success_with_nothing_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalDirStore::new(dir.path());
        let response = handle(
            &store,
            &pipeline(),
            payload(r#"{"Records": []}"#),
            FIXTURE_NOW_MS,
        )
        .await;
        assert!(response.batch_item_failures.is_empty());
        assert!(store.list("").await.expect("list").is_empty());
    }
}
