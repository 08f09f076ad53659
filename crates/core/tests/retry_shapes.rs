//! Exactly once under every shape in which Lambda re-delivers a Kinesis batch
//! (docs/ARCHITECTURE.md §11): the same batch, a longer one from the same first record, a
//! bisect's two halves, a resume from the reported item, a crash after some objects were
//! written; and compaction, which folds the raw tier into one object per tenant-hour, drops
//! what an abandoned retry left twice, takes late events in a later pass, and can be re-run.

use std::collections::{BTreeMap, HashSet};

use arrow_array::{Array, RecordBatch, StringArray};
use async_trait::async_trait;
use bytes::Bytes;
use sluice_core::compact::{self, CompactConfig};
use sluice_core::{BlobStore, IngestPipeline, LocalDirStore, StoreError, StreamRecord};

/// 2024-05-01T12:00:00Z, the hour every record arrives in.
const HOUR_START: i64 = 1_714_564_800_000;
const ARRIVAL: i64 = HOUR_START + 60_000;
const SHARD: &str = "shardId-000000000000";

/// Record `i` of the shard: tenant `t{i % 7}`, except that tenant `late` writes only in
/// records 1,600 to 1,999 (the issue's case: a tenant that the first half of a bisect lacks).
fn record(i: u64) -> StreamRecord {
    let tenant = if (1_600..2_000).contains(&i) && i.is_multiple_of(2) {
        "late".to_owned()
    } else {
        format!("t{}", i % 7)
    };
    StreamRecord {
        shard_id: SHARD.into(),
        sequence_number: format!("4959{i:040}").into(),
        partition_key: format!("{tenant}/api"),
        arrival_ms: ARRIVAL + i as i64,
        // Two events per record, and the same event id in both: a tenant may send duplicates,
        // and they are rows of their own.
        data: format!(
            "{{\"msg\":\"r{i} a\",\"event_id\":\"dup-{i}\"}}\n{{\"msg\":\"r{i} b\",\"event_id\":\"dup-{i}\"}}"
        )
        .into_bytes()
        .into(),
    }
}

fn records(range: std::ops::Range<u64>) -> Vec<StreamRecord> {
    range.map(record).collect()
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> &'a StringArray {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .expect("string column")
}

/// Every row under `prefix`, as (origin, message).
async fn rows_under(store: &dyn BlobStore, prefix: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for key in store.list(prefix).await.expect("list") {
        let body = store.get(&key).await.expect("get").expect("listed");
        for batch in compact::read_batches(body).expect("parquet") {
            let (origin, message) = (strings(&batch, "origin"), strings(&batch, "message"));
            for i in 0..batch.num_rows() {
                rows.push((origin.value(i).to_owned(), message.value(i).to_owned()));
            }
        }
    }
    rows
}

/// Asserts that `prefix` holds exactly two rows per record of `range`, each once.
async fn assert_exactly_once(store: &dyn BlobStore, prefix: &str, range: std::ops::Range<u64>) {
    let rows = rows_under(store, prefix).await;
    let distinct: HashSet<&str> = rows.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        distinct.len(),
        rows.len(),
        "{prefix}: a row appears twice ({} rows, {} distinct)",
        rows.len(),
        distinct.len()
    );
    let messages: HashSet<&str> = rows.iter().map(|(_, m)| m.as_str()).collect();
    let want: HashSet<String> = range
        .flat_map(|i| [format!("r{i} a"), format!("r{i} b")])
        .collect();
    let want: HashSet<&str> = want.iter().map(String::as_str).collect();
    assert_eq!(messages, want, "{prefix}: not exactly the records' rows");
}

async fn deliver(store: &dyn BlobStore, batch: &[StreamRecord]) {
    let outcome = IngestPipeline::default()
        .process(store, batch, ARRIVAL)
        .await;
    assert_eq!(outcome.retry_from, None, "{:?}", outcome.errors);
}

fn temp_store() -> (tempfile::TempDir, LocalDirStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalDirStore::new(dir.path());
    (dir, store)
}

#[tokio::test]
async fn the_same_batch_delivered_twice_is_stored_once() {
    let (_dir, store) = temp_store();
    deliver(&store, &records(0..500)).await;
    deliver(&store, &records(0..500)).await;
    assert_eq!(store.list("raw/").await.expect("list").len(), 1);
    assert_exactly_once(&store, "raw/", 0..500).await;
}

#[tokio::test]
async fn a_longer_redelivery_from_the_same_record_replaces_the_shorter_one() {
    let (_dir, store) = temp_store();
    // The first attempt wrote records 0-999 and then timed out; Lambda re-delivers from
    // record 0 with more records after it, then goes on after them.
    deliver(&store, &records(0..1_000)).await;
    deliver(&store, &records(0..2_000)).await;
    deliver(&store, &records(2_000..2_500)).await;
    assert_eq!(store.list("raw/").await.expect("list").len(), 2);
    assert_exactly_once(&store, "raw/", 0..2_500).await;
}

#[tokio::test]
async fn a_bisected_batch_is_stored_once() {
    let (_dir, store) = temp_store();
    // The issue's case: records 0-1,999 written (then a time-out), the bisect's first half
    // 0-999 and then 1,000-2,999, where tenant `late` writes only in 1,600-1,999.
    deliver(&store, &records(0..2_000)).await;
    deliver(&store, &records(0..1_000)).await;
    deliver(&store, &records(1_000..3_000)).await;
    assert_exactly_once(&store, "raw/", 0..3_000).await;
}

/// Fails every write whose key contains `fail`, after writing the others.
#[derive(Debug)]
struct FailingWrites<'s> {
    inner: &'s LocalDirStore,
    fail: &'static str,
}

#[async_trait]
impl BlobStore for FailingWrites<'_> {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        if key.contains(self.fail) {
            return Err(StoreError::Backend {
                backend: "test",
                op: "put",
                key: key.into(),
                message: "connection reset".into(),
            });
        }
        self.inner.put(key, body, content_type).await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

#[tokio::test]
async fn a_crash_after_the_data_object_resumes_from_the_reported_item_once() {
    let (_dir, store) = temp_store();
    let mut batch = records(0..800);
    batch[300].data = Bytes::from_static(b"no tenant here");
    batch[300].partition_key = "".into();
    // The data object is written, the dead letter is not: the batch reports its first record.
    let failing = FailingWrites {
        inner: &store,
        fail: "dlq/",
    };
    let outcome = IngestPipeline::default()
        .process(&failing, &batch, ARRIVAL)
        .await;
    let from = outcome
        .retry_from
        .expect("a failed write asks for re-delivery");
    assert_eq!(from, batch[0].sequence_number.as_str());
    assert_eq!(store.list("raw/").await.expect("list").len(), 1);
    // Lambda resumes from the reported item.
    let at = batch
        .iter()
        .position(|r| r.sequence_number.as_str() == from)
        .expect("reported item is in the batch");
    deliver(&store, &batch[at..]).await;
    assert_eq!(store.list("dlq/").await.expect("list").len(), 1);
    let rows = rows_under(&store, "raw/").await;
    assert_eq!(rows.len(), 2 * 799);
    let distinct: HashSet<&str> = rows.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(distinct.len(), rows.len());
}

#[tokio::test]
async fn compaction_writes_one_object_per_tenant_hour_with_every_row_once() {
    let (_dir, store) = temp_store();
    // An abandoned retry: 0-1,999 written, the bisect's first half never stored (its retries
    // ran out), the rest delivered. The raw tier holds 1,000-1,999 twice; compaction must not.
    deliver(&store, &records(0..2_000)).await;
    deliver(&store, &records(1_000..3_000)).await;
    assert_eq!(rows_under(&store, "raw/").await.len(), 2 * 4_000);

    let config = CompactConfig::default();
    let before_close = compact::compact(&store, &config, HOUR_START + 3_600_000)
        .await
        .expect("pass");
    assert!(
        before_close.written.is_empty(),
        "the hour is not closed yet"
    );

    // At 15:00 with an hour's lateness, the hours 12 and 13 are closed.
    let stats = compact::compact(&store, &config, HOUR_START + 3 * 3_600_000)
        .await
        .expect("pass");
    assert_eq!(stats.hours, 2);
    assert_eq!(stats.duplicates, 2 * 1_000);
    let keys = store.list("logs/").await.expect("list");
    let tenants: Vec<String> = (0..7)
        .map(|t| format!("t{t}"))
        .chain(["late".into()])
        .collect();
    let mut want: Vec<String> = tenants
        .iter()
        .map(|t| format!("logs/tenant={t}/dt=2024-05-01/hour=12/part-0.parquet"))
        .collect();
    want.sort();
    assert_eq!(keys, want);
    assert_exactly_once(&store, "logs/", 0..3_000).await;
    assert_eq!(
        compact::read_watermark(&store).await.expect("watermark"),
        Some(compact::Watermark {
            watermark_ms: HOUR_START + 2 * 3_600_000
        })
    );

    // A re-run after a crash between the objects and the watermark changes nothing.
    store.delete(compact::WATERMARK_KEY).await.expect("delete");
    let again = compact::compact(&store, &config, HOUR_START + 3 * 3_600_000)
        .await
        .expect("pass");
    assert_eq!(
        again.duplicates,
        2 * 4_000,
        "every raw row was compacted already"
    );
    assert_exactly_once(&store, "logs/", 0..3_000).await;
}

#[tokio::test]
async fn late_events_reach_their_compacted_hour_in_a_later_pass_once() {
    let (_dir, store) = temp_store();
    deliver(&store, &records(0..100)).await;
    let config = CompactConfig::default();
    compact::compact(&store, &config, HOUR_START + 3 * 3_600_000)
        .await
        .expect("first pass");
    // Two hours later, a record whose event is from 12:30 arrives.
    let late = StreamRecord {
        arrival_ms: HOUR_START + 2 * 3_600_000 + 5_000,
        data: Bytes::from_static(
            br#"{"ts":"2024-05-01T12:30:00Z","msg":"late one","tenant":"t1"}"#,
        ),
        ..record(100)
    };
    deliver(&store, &[late]).await;
    for _ in 0..2 {
        compact::compact(&store, &config, HOUR_START + 5 * 3_600_000)
            .await
            .expect("later pass");
    }
    let rows = rows_under(&store, "logs/tenant=t1/dt=2024-05-01/hour=12/").await;
    let by_message: BTreeMap<&str, usize> = rows.iter().fold(BTreeMap::new(), |mut m, (_, msg)| {
        *m.entry(msg.as_str()).or_default() += 1;
        m
    });
    assert_eq!(by_message.get("late one"), Some(&1));
    assert!(by_message.values().all(|&n| n == 1), "{by_message:?}");
    assert_eq!(
        compact::read_watermark(&store).await.expect("watermark"),
        Some(compact::Watermark {
            watermark_ms: HOUR_START + 4 * 3_600_000
        })
    );
}
