//! The ingest use case over whole batches: formats, rejections, Parquet contents, retry safety.

use std::io::Write as _;
use std::sync::Mutex;

use arrow_array::{
    Array, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt16Array,
};
use async_trait::async_trait;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice_core::dead_letter::{self, DeadLetter};
use sluice_core::decode::kpl;
use sluice_core::ingest::{EncodedBatch, ObjectKind};
use sluice_core::{
    BlobStore, IngestConfig, IngestPipeline, LocalDirStore, StoreError, StreamRecord,
};

const ARRIVAL: i64 = 1_714_566_900_000; // 2024-05-01T12:35:00Z
const SHARD: &str = "shardId-000000000003";

fn record(seq: u64, key: &str, data: impl Into<Vec<u8>>) -> StreamRecord {
    StreamRecord {
        shard_id: SHARD.into(),
        sequence_number: format!("4959{seq:040}").into(),
        partition_key: key.into(),
        arrival_ms: ARRIVAL,
        data: data.into().into(),
    }
}

fn encode(records: &[StreamRecord]) -> EncodedBatch {
    IngestPipeline::default()
        .encode(records, ARRIVAL)
        .expect("batch encodes")
}

fn read_parquet(body: &Bytes) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(body.clone())
        .expect("valid parquet")
        .build()
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("batches");
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).expect("concat")
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> &'a StringArray {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .expect("string column")
}

/// The batch's one data object.
fn raw_object(batch: &EncodedBatch) -> &sluice_core::ingest::EncodedObject {
    let raw: Vec<_> = batch
        .objects
        .iter()
        .filter(|o| o.kind == ObjectKind::Raw)
        .collect();
    assert_eq!(raw.len(), 1, "one data object per batch");
    raw[0]
}

/// The rows of `tenant` in the batch's data object, in file order.
fn rows_of(batch: &EncodedBatch, tenant: &str) -> RecordBatch {
    let all = read_parquet(&raw_object(batch).body);
    let mask: arrow_array::BooleanArray = strings(&all, "tenant")
        .iter()
        .map(|t| Some(t == Some(tenant)))
        .collect();
    arrow_select::filter::filter_record_batch(&all, &mask).expect("filter")
}

fn dead_letters(batch: &EncodedBatch) -> Vec<DeadLetter> {
    batch
        .objects
        .iter()
        .find(|o| o.kind == ObjectKind::DeadLetter)
        .map(|o| dead_letter::decode(&o.body).expect("dead letters decode"))
        .unwrap_or_default()
}

fn keys_and_bodies(batch: &EncodedBatch) -> Vec<(String, Bytes)> {
    batch
        .objects
        .iter()
        .map(|o| (o.key.clone(), o.body.clone()))
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("in-memory write");
    gz.finish().expect("in-memory gzip")
}

#[test]
fn ndjson_records_become_sorted_parquet_rows_with_canonical_values() {
    let batch = encode(&[
        record(
            1,
            "acme/checkout",
            r#"{"ts":"2024-05-01T12:30:02Z","level":"ERROR","msg":"db timeout","http":{"method":"POST","path":"/pay","status":503},"latency_ms":812.5,"trace_id":"t1","order":42}
{"ts":"2024-05-01T12:30:01Z","level":"info","msg":"ok","status":200,"duration_ms":3}"#,
        ),
        record(
            2,
            "acme/search",
            r#"{"@timestamp":1714566600000,"severity":"warn","message":"slow","service.name":"search-v2"}"#,
        ),
    ]);
    assert_eq!(batch.stats.rows, 3);
    assert_eq!(batch.stats.rejected_total(), 0);
    let object = raw_object(&batch);
    assert_eq!(
        object.key,
        format!("raw/dt=2024-05-01/hour=12/{SHARD}-4959{:040}.parquet", 1)
    );
    let rows = read_parquet(&object.body);
    assert_eq!(rows.num_rows(), 3);
    let ts = rows
        .column_by_name("ts")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        .expect("ts");
    assert_eq!(
        ts.values().to_vec(),
        vec![1_714_566_600_000, 1_714_566_601_000, 1_714_566_602_000],
        "sorted by ts"
    );
    assert_eq!(
        strings(&rows, "message").iter().collect::<Vec<_>>(),
        vec![Some("slow"), Some("ok"), Some("db timeout")]
    );
    assert_eq!(strings(&rows, "service").value(0), "search-v2");
    assert_eq!(
        strings(&rows, "service").value(2),
        "checkout",
        "service from the partition key"
    );
    assert_eq!(
        strings(&rows, "level").iter().collect::<Vec<_>>(),
        vec![Some("warn"), Some("info"), Some("error")]
    );
    let status = rows
        .column_by_name("http_status")
        .and_then(|c| c.as_any().downcast_ref::<UInt16Array>())
        .expect("status");
    assert_eq!(
        (status.is_null(0), status.value(1), status.value(2)),
        (true, 200, 503)
    );
    let latency = rows
        .column_by_name("latency_ms")
        .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
        .expect("latency");
    assert_eq!((latency.value(1), latency.value(2)), (3.0, 812.5));
    assert_eq!(strings(&rows, "attrs").value(2), r#"{"order":42}"#);
    assert_eq!(strings(&rows, "http_method").value(2), "POST");
    assert_eq!(
        strings(&rows, "event_id").value(2),
        format!("{SHARD}:4959{:040}:0", 1)
    );
    assert_eq!(
        strings(&rows, "event_id").value(1),
        format!("{SHARD}:4959{:040}:1", 1)
    );
}

#[test]
fn one_object_per_batch_sorted_by_tenant_then_time() {
    let batch = encode(&[
        record(1, "beta/a", r#"{"ts":"2024-05-01T12:00:00Z","msg":"c"}"#),
        record(2, "acme/a", r#"{"ts":"2024-05-01T12:00:00Z","msg":"b"}"#),
        record(3, "acme/a", r#"{"ts":"2024-05-01T11:59:59Z","msg":"a"}"#),
        record(
            4,
            "ignored/a",
            r#"{"ts":"2024-05-01T12:00:00Z","msg":"d","tenant":"gamma"}"#,
        ),
        record(5, "", "no tenant"),
    ]);
    let keys: Vec<&str> = batch.objects.iter().map(|o| o.key.as_str()).collect();
    let suffix = format!("{SHARD}-4959{:040}", 1);
    assert_eq!(
        keys,
        vec![
            format!("raw/dt=2024-05-01/hour=12/{suffix}.parquet"),
            format!("dlq/dt=2024-05-01/hour=12/{suffix}.ndjson.gz"),
        ]
    );
    let rows = read_parquet(&raw_object(&batch).body);
    let pairs: Vec<(&str, &str)> = strings(&rows, "tenant")
        .iter()
        .flatten()
        .zip(strings(&rows, "message").iter().flatten())
        .collect();
    assert_eq!(
        pairs,
        vec![("acme", "a"), ("acme", "b"), ("beta", "c"), ("gamma", "d")]
    );
    assert_eq!(
        batch.stats.tenants.get("gamma"),
        Some(&1),
        "the record's tenant beats the partition key"
    );
    assert_eq!(batch.stats.objects, 2);
}

#[test]
fn big_tenants_get_row_groups_of_their_own_and_small_ones_share() {
    use parquet::file::reader::{FileReader as _, SerializedFileReader};
    use parquet::file::statistics::Statistics;

    // Two tenants over the row-group floor, sixty small ones between and after them.
    let mut records = Vec::new();
    let mut push = |tenant: &str, n: usize| {
        let lines: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"tenant":"{tenant}","msg":"m{i}"}}"#))
            .collect();
        for chunk in lines.chunks(500) {
            let seq = records.len() as u64;
            records.push(record(seq, "", chunk.join("\n")));
        }
    };
    push("big-a", 9_000);
    for i in 0..30 {
        push(&format!("mid-{i:02}"), 3);
    }
    push("big-b", 10_000);
    for i in 0..30 {
        push(&format!("small-{i:02}"), 2);
    }
    let batch = encode(&records);
    assert_eq!(batch.stats.rows, 9_000 + 90 + 10_000 + 60);
    let reader = SerializedFileReader::new(raw_object(&batch).body.clone()).expect("parquet");
    let bounds: Vec<(String, String, i64)> = reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| {
            let tenant = g
                .columns()
                .iter()
                .find(|c| c.column_path().string() == "tenant")
                .and_then(|c| c.statistics().cloned());
            let Some(Statistics::ByteArray(s)) = tenant else {
                panic!("tenant statistics in every row group");
            };
            let text = |v: Option<&parquet::data_type::ByteArray>| {
                v.and_then(|b| b.as_utf8().ok()).unwrap_or("").to_owned()
            };
            (text(s.min_opt()), text(s.max_opt()), g.num_rows())
        })
        .collect();
    assert_eq!(
        bounds,
        vec![
            (String::from("big-a"), String::from("big-a"), 9_000),
            (String::from("big-b"), String::from("big-b"), 10_000),
            (String::from("mid-00"), String::from("small-29"), 150),
        ]
    );
    assert_eq!(rows_of(&batch, "small-07").num_rows(), 2);
}

#[test]
fn interleaved_tenants_and_hours_each_get_exactly_their_own_rows() {
    // 80 tenants over two hours in one batch, names sharing a long prefix, and every record
    // for another tenant than the one before.
    let tenants: Vec<String> = (0..80).map(|i| format!("customer-tenant-{i:02}")).collect();
    let hours = ["2024-05-01T11:30:00Z", "2024-05-01T12:30:00Z"];
    let mut records = Vec::new();
    for round in 0..3 {
        for hour in hours {
            for tenant in &tenants {
                let seq = records.len() as u64;
                records.push(record(
                    seq,
                    "",
                    format!(
                        r#"{{"ts":"{hour}","tenant":"{tenant}","msg":"{tenant} {hour} {round}"}}"#
                    ),
                ));
            }
        }
    }
    let batch = encode(&records);
    assert_eq!(batch.stats.rows, 480);
    assert_eq!(batch.objects.len(), 1);
    for tenant in &tenants {
        let rows = rows_of(&batch, tenant);
        let messages: Vec<&str> = strings(&rows, "message").iter().flatten().collect();
        let want: Vec<String> = hours
            .iter()
            .flat_map(|hour| (0..3).map(move |r| format!("{tenant} {hour} {r}")))
            .collect();
        assert_eq!(messages, want, "{tenant}: by time, arrival order within");
    }
}

#[test]
fn decodes_cloudwatch_logs_subscription_and_skips_control_messages() {
    let envelope = serde_json::json!({
        "messageType": "DATA_MESSAGE", "owner": "123456789012",
        "logGroup": "/sluice/acme/billing", "logStream": "2024/05/01/[$LATEST]abc",
        "subscriptionFilters": ["sluice"],
        "logEvents": [
            {"id": "3785", "timestamp": 1_714_566_000_000i64, "message": "{\"level\":\"error\",\"msg\":\"card declined\",\"status\":402}"},
            {"id": "3786", "timestamp": 1_714_566_001_000i64, "message": "WARN retrying charge\n"}
        ]
    });
    let control = serde_json::json!({"messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "", "logStream": "", "logEvents": [{"id": "", "timestamp": 1, "message": "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]});
    let batch = encode(&[
        record(1, "random-pk", gzip(envelope.to_string().as_bytes())),
        record(2, "random-pk", gzip(control.to_string().as_bytes())),
    ]);
    assert_eq!((batch.stats.rows, batch.stats.rejected_total()), (2, 0));
    let rows = rows_of(&batch, "acme");
    assert_eq!(strings(&rows, "service").value(0), "billing");
    assert_eq!(
        strings(&rows, "event_id").iter().collect::<Vec<_>>(),
        vec![Some("3785"), Some("3786")]
    );
    assert_eq!(
        strings(&rows, "level").iter().collect::<Vec<_>>(),
        vec![Some("error"), Some("warn")]
    );
    assert_eq!(strings(&rows, "message").value(1), "WARN retrying charge");
}

#[test]
fn decodes_kpl_aggregates_using_each_sub_record_partition_key() {
    let agg = kpl::encode(&[
        ("acme/api", br#"{"msg":"one"}"#.as_slice()),
        ("beta/web", b"ERROR two".as_slice()),
    ]);
    let batch = encode(&[record(1, "outer-key", agg)]);
    assert_eq!(batch.stats.rows, 2);
    let beta = rows_of(&batch, "beta");
    assert_eq!(
        (
            strings(&beta, "service").value(0),
            strings(&beta, "level").value(0)
        ),
        ("web", "error")
    );
    assert_eq!(
        strings(&beta, "event_id").value(0),
        format!("{SHARD}:4959{:040}:1", 1),
        "sub-sequence in the id"
    );
}

#[test]
fn rejects_every_bad_kind_with_its_reason_and_keeps_the_rest() {
    let mut bad_kpl = kpl::encode(&[("acme/api", b"x".as_slice())]);
    let n = bad_kpl.len();
    bad_kpl[n - 3] ^= 0xff;
    let bomb = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..40 {
            gz.write_all(&zeros).expect("in-memory write");
        }
        gz.finish().expect("gzip")
    };
    let records = vec![
        record(1, "acme/api", r#"{"msg":"good"}"#),
        record(2, "acme/api", "   "),
        record(3, "acme/api", vec![b'{', 0xff, b'}']),
        record(4, "acme/api", r#"{"msg":"unterminated"#),
        record(5, "", r#"{"msg":"who am i"}"#),
        record(6, "acme/api", r#"{"tenant":"../etc","msg":"x"}"#),
        record(
            7,
            "acme/api",
            r#"{"ts":"2019-01-01T00:00:00Z","msg":"ancient"}"#,
        ),
        record(8, "acme/api", vec![0x1f, 0x8b, 0, 1, 2, 3]),
        record(9, "acme/api", bomb),
        record(10, "acme/api", bad_kpl),
        record(11, "acme/api", vec![b'x'; (1 << 20) + 1]),
    ];
    let batch = encode(&records);
    assert_eq!(batch.stats.rows, 1, "the good record is stored");
    let letters = dead_letters(&batch);
    let kinds: Vec<(String, String)> = letters
        .iter()
        .map(|l| {
            (
                l.sequence_number[4..].trim_start_matches('0').to_owned(),
                l.reason_kind.clone(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("2", "empty"),
        ("3", "not_utf8"),
        ("4", "not_json"),
        ("5", "no_tenant"),
        ("6", "invalid_name"),
        ("7", "timestamp_out_of_range"),
        ("8", "corrupt_gzip"),
        ("9", "corrupt_gzip"),
        ("10", "corrupt_kpl"),
        ("11", "oversized"),
    ]
    .iter()
    .map(|(s, k)| ((*s).to_owned(), (*k).to_owned()))
    .collect();
    assert_eq!(kinds, expected);
    assert!(
        letters[7].reason.contains("decompresses to more than"),
        "{}",
        letters[7].reason
    );
    assert_eq!(
        letters[2].raw().ok(),
        Some(records[3].data.to_vec()),
        "raw bytes are kept"
    );
    assert_eq!(batch.stats.rejected_total(), 10);
    let dlq = batch
        .objects
        .iter()
        .find(|o| o.kind == ObjectKind::DeadLetter)
        .expect("dead-letter object");
    assert_eq!(
        dlq.key,
        format!("dlq/dt=2024-05-01/hour=12/{SHARD}-4959{:040}.ndjson.gz", 1)
    );
}

#[test]
fn not_utf8_reason_gives_the_offset_of_the_first_bad_byte() {
    // Valid multi-byte text well past a SIMD block, then a lone continuation byte.
    let mut long = r#"{"msg":""#.as_bytes().to_vec();
    long.extend("héllo wörld ✓ ".repeat(20).as_bytes());
    let bad_at = long.len();
    long.extend([0x80, b'"', b'}']);
    let batch = encode(&[
        record(1, "acme/api", long),
        record(2, "acme/api", vec![0xc3]),
        record(3, "acme/api", r#"{"msg":"fine ✓"}"#),
    ]);
    assert_eq!(batch.stats.rows, 1, "the valid record is stored");
    let reasons: Vec<String> = dead_letters(&batch).into_iter().map(|l| l.reason).collect();
    assert_eq!(
        reasons,
        [
            format!("not UTF-8: invalid byte at offset {bad_at}"),
            "not UTF-8: invalid byte at offset 0".to_owned(),
        ]
    );
}

#[test]
fn one_bad_line_in_a_record_rejects_only_that_line() {
    let batch = encode(&[record(
        1,
        "acme/api",
        "{\"msg\":\"a\"}\n{\"msg\": oops}\n{\"msg\":\"c\"}\nnot json at all\n",
    )]);
    assert_eq!(batch.stats.rows, 2);
    let letters = dead_letters(&batch);
    assert_eq!(letters.len(), 2);
    assert_eq!(
        (letters[0].sub_sequence, letters[0].raw().ok()),
        (Some(1), Some(b"{\"msg\": oops}".to_vec()))
    );
    assert_eq!(letters[1].reason_kind, "not_json");
}

#[test]
fn accepts_a_one_megabyte_record_intact() {
    let message = "m".repeat(1_000_000);
    let data = format!(r#"{{"msg":"{message}"}}"#);
    assert!(data.len() <= 1 << 20);
    let batch = encode(&[record(1, "acme/api", data)]);
    let rows = rows_of(&batch, "acme");
    assert_eq!(strings(&rows, "message").value(0).len(), 1_000_000);
}

#[test]
fn same_batch_twice_gives_identical_objects() {
    let records: Vec<StreamRecord> = (0..50)
        .map(|i| {
            record(
                i,
                ["acme/a", "beta/b"][i as usize % 2],
                format!(r#"{{"msg":"m{i}","latency_ms":{i}}}"#),
            )
        })
        .chain([record(99, "", "no tenant")])
        .collect();
    let a = encode(&records);
    let b = encode(&records);
    assert_eq!(keys_and_bodies(&a), keys_and_bodies(&b));
}

/// Buffers (column builders, pages, column chunks, files) are reused from batch to batch; what
/// an earlier, bigger batch left in them must not show in the next one's objects.
#[test]
fn a_pipeline_that_encoded_a_bigger_batch_before_gives_the_same_objects_as_a_fresh_one() {
    let big: Vec<StreamRecord> = (0..3_000)
        .map(|i| {
            record(
                i,
                ["acme/a", "beta/b", "gamma/c"][i as usize % 3],
                format!(
                    r#"{{"msg":"{}","latency_ms":{i},"trace_id":"{i:032x}"}}"#,
                    "x".repeat(200 + i as usize % 50)
                ),
            )
        })
        .collect();
    let small: Vec<StreamRecord> = (0..20)
        .map(|i| record(10_000 + i, "acme/a", format!(r#"{{"msg":"m{i}"}}"#)))
        .collect();
    let reused = IngestPipeline::default();
    for _ in 0..2 {
        reused.encode(&big, ARRIVAL).expect("big batch encodes");
    }
    let after = reused.encode(&small, ARRIVAL).expect("small batch encodes");
    let fresh = encode(&small);
    assert_eq!(after.objects.len(), 1);
    assert_eq!(keys_and_bodies(&after), keys_and_bodies(&fresh));
    assert_eq!(
        strings(&read_parquet(&after.objects[0].body), "message").value(19),
        "m19"
    );
}

#[tokio::test]
async fn reprocessing_a_batch_overwrites_instead_of_duplicating() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalDirStore::new(dir.path());
    let records: Vec<StreamRecord> = (0..20)
        .map(|i| record(i, "acme/a", format!(r#"{{"msg":"m{i}"}}"#)))
        .collect();
    let pipeline = IngestPipeline::new(IngestConfig::default());
    for _ in 0..2 {
        let outcome = pipeline.process(&store, &records, ARRIVAL).await;
        assert_eq!(outcome.retry_from, None);
    }
    assert_eq!(store.list("raw/").await?.len(), 1);
    Ok(())
}

#[derive(Debug, Default)]
struct FailingStore {
    /// Writes of keys containing this fail.
    fail_key: &'static str,
    written: Mutex<Vec<String>>,
}

#[async_trait]
impl BlobStore for FailingStore {
    async fn put(&self, key: &str, _body: Bytes, _content_type: &str) -> Result<(), StoreError> {
        if key.contains(self.fail_key) {
            return Err(StoreError::Backend {
                backend: "test",
                op: "put",
                key: key.into(),
                message: "503 SlowDown".into(),
            });
        }
        self.written.lock().expect("lock").push(key.to_owned());
        Ok(())
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

#[tokio::test]
async fn storage_failure_asks_for_redelivery_from_the_first_record() {
    let store = FailingStore {
        fail_key: "dlq/",
        ..FailingStore::default()
    };
    let records = vec![
        record(5, "acme/a", r#"{"msg":"a"}"#),
        record(6, "beta/b", r#"{"msg":"b"}"#),
        record(7, "", "no tenant: a dead letter"),
    ];
    let outcome = IngestPipeline::default()
        .process(&store, &records, ARRIVAL)
        .await;
    assert_eq!(
        outcome.retry_from.as_deref(),
        Some(records[0].sequence_number.as_str())
    );
    assert!(
        outcome.errors[0].contains("503 SlowDown"),
        "{:?}",
        outcome.errors
    );
    // What was written is named after the batch's first record, so the redelivery overwrites it.
    let written = store.written.lock().expect("lock").clone();
    assert_eq!(
        written,
        vec![format!(
            "raw/dt=2024-05-01/hour=12/{SHARD}-{}.parquet",
            records[0].sequence_number
        )]
    );
}

#[test]
fn parquet_columns_are_laid_out_as_tuned() {
    use parquet::basic::{Compression, Encoding};
    use parquet::file::reader::{FileReader as _, SerializedFileReader};

    let lines: Vec<String> = (0..200i64)
        .map(|i| {
            format!(
                r#"{{"ts":{},"level":"info","msg":"GET /orders/{i} done","http":{{"method":"GET","path":"/orders/{i}","status":200}},"latency_ms":{i}.5,"trace_id":"{i:032x}","region":"eu-west-1","host":"ip-10-0-0-{}"}}"#,
                1_714_566_600_000 + i,
                i % 7
            )
        })
        .collect();
    let batch = encode(&[record(1, "acme/checkout", lines.join("\n"))]);
    let object = raw_object(&batch);
    let reader = SerializedFileReader::new(object.body.clone()).expect("valid parquet");
    let group = reader.metadata().row_group(0);
    let column = |name: &str| {
        group
            .columns()
            .iter()
            .find(|c| c.column_path().string() == name)
            .unwrap_or_else(|| panic!("column {name}"))
    };
    for c in group.columns() {
        assert!(
            matches!(c.compression(), Compression::ZSTD(_)),
            "{}: {:?}",
            c.column_path(),
            c.compression()
        );
    }
    // Dictionaries for the low-cardinality columns only; delta-encoded timestamps.
    let encodings = |name: &str| column(name).encodings().collect::<Vec<Encoding>>();
    for name in ["tenant", "service", "level", "host", "region"] {
        assert!(
            encodings(name).contains(&Encoding::RLE_DICTIONARY),
            "{name}: {:?}",
            encodings(name)
        );
    }
    for name in ["message", "trace_id", "event_id", "origin"] {
        assert!(
            !encodings(name).contains(&Encoding::RLE_DICTIONARY),
            "{name}: {:?}",
            encodings(name)
        );
    }
    assert!(encodings("ts").contains(&Encoding::DELTA_BINARY_PACKED));
    assert!(encodings("trace_id").contains(&Encoding::DELTA_LENGTH_BYTE_ARRAY));
    // Statistics where they prune (time, status), none on free text and ids.
    assert!(column("ts").statistics().is_some());
    assert!(column("message").statistics().is_none());
    assert!(column("trace_id").statistics().is_none());
    assert_eq!(read_parquet(&object.body).num_rows(), 200);
}

#[tokio::test]
async fn records_pushed_one_at_a_time_store_the_same_objects_as_a_whole_batch()
-> Result<(), StoreError> {
    let records: Vec<StreamRecord> = (0..300)
        .map(|i| {
            let tenant = ["acme", "beta", "gamma"][i as usize % 3];
            match i {
                // A rejected record and a plain-text line among the JSON.
                17 => record(i, "", "not json and no tenant"),
                40 => record(i, "acme/api", "plain text line"),
                _ => record(
                    i,
                    "",
                    format!(
                        r#"{{"tenant":"{tenant}","service":"api","msg":"m{i}","ts":{}}}"#,
                        ARRIVAL - 1_000 * i as i64
                    ),
                ),
            }
        })
        .collect();
    let pipeline = IngestPipeline::new(IngestConfig::default());
    let whole = tempfile::tempdir().expect("tempdir");
    let whole_store = LocalDirStore::new(whole.path());
    let batch = pipeline.process(&whole_store, &records, ARRIVAL).await;

    let streamed = tempfile::tempdir().expect("tempdir");
    let streamed_store = LocalDirStore::new(streamed.path());
    let mut encoder = pipeline.begin(ARRIVAL, records.len());
    for r in &records {
        encoder.push(r.view());
    }
    assert_eq!(encoder.records(), records.len() as u64);
    let one_by_one = pipeline.store(&streamed_store, encoder).await;

    assert_eq!(one_by_one.retry_from, None);
    assert_eq!(one_by_one.stats, batch.stats);
    assert_eq!(batch.stats.rejected_total(), 1, "{:?}", batch.stats);
    let keys = whole_store.list("").await?;
    assert!(keys.iter().any(|k| k.starts_with("dlq/")), "{keys:?}");
    assert_eq!(
        keys.iter().filter(|k| k.starts_with("raw/")).count(),
        1,
        "{keys:?}"
    );
    assert_eq!(streamed_store.list("").await?, keys);
    for key in &keys {
        assert_eq!(
            streamed_store.get(key).await?,
            whole_store.get(key).await?,
            "{key} differs"
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_encoder_with_no_records_stores_nothing() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalDirStore::new(dir.path());
    let pipeline = IngestPipeline::default();
    let outcome = pipeline.store(&store, pipeline.begin(ARRIVAL, 10)).await;
    assert_eq!(outcome.retry_from, None);
    assert_eq!(outcome.stats.objects, 0);
    assert!(store.list("").await?.is_empty());
    Ok(())
}

#[test]
fn records_past_the_batch_decoded_cap_are_dead_lettered_whole_and_the_rest_stored() {
    // Gzip records that expand 1000 times: each decodes to a little over 1 MiB.
    let line = format!(r#"{{"tenant":"acme","msg":"{}"}}"#, "z".repeat(1000));
    let expanding = gzip(format!("{line}\n").repeat(1050).as_bytes());
    assert!(expanding.len() < 20_000, "{}", expanding.len());
    let mut records: Vec<StreamRecord> = (1..=10)
        .map(|i| record(i, "acme/api", expanding.clone()))
        .collect();
    records.push(record(11, "acme/api", r#"{"tenant":"acme","msg":"small"}"#));
    let config = IngestConfig {
        max_batch_decoded_bytes: 4 << 20,
        ..IngestConfig::default()
    };
    let batch = IngestPipeline::new(config)
        .encode(&records, ARRIVAL)
        .expect("batch encodes");
    // Three records (3.2 MiB) fit; the fourth would pass 4 MiB, so it and every later
    // expanding record go to the dead letters, raw; the small last record still fits.
    assert_eq!(batch.stats.rows, 3 * 1050 + 1);
    let letters = dead_letters(&batch);
    assert_eq!(letters.len(), 7);
    for (letter, want_seq) in letters.iter().zip(4..) {
        assert_eq!(letter.reason_kind, "batch_too_large");
        assert!(
            letter.reason.contains("4194304-byte limit"),
            "{}",
            letter.reason
        );
        assert_eq!(letter.sequence_number, format!("4959{want_seq:040}"));
        assert_eq!(
            letter.raw().ok(),
            Some(expanding.clone()),
            "kept raw, not decoded"
        );
    }
    assert_eq!(batch.stats.rejected.get("batch_too_large"), Some(&7));
}

#[test]
fn plain_records_count_against_the_batch_cap_by_their_size() {
    let big = format!(r#"{{"tenant":"acme","msg":"{}"}}"#, "y".repeat(600_000));
    let records: Vec<StreamRecord> = (1..=4)
        .map(|i| record(i, "acme/api", big.clone()))
        .collect();
    let config = IngestConfig {
        max_batch_decoded_bytes: 1 << 20,
        ..IngestConfig::default()
    };
    let batch = IngestPipeline::new(config)
        .encode(&records, ARRIVAL)
        .expect("batch encodes");
    assert_eq!(batch.stats.rows, 1);
    assert_eq!(batch.stats.rejected.get("batch_too_large"), Some(&3));
}

#[test]
fn ingest_config_reads_its_limits_from_the_environment() -> Result<(), sluice_core::CoreError> {
    let vars = [
        ("SLUICE_MAX_RECORD_BYTES", "2048"),
        ("SLUICE_MAX_DECOMPRESSED_BYTES", "4096"),
        ("SLUICE_MAX_BATCH_DECODED_BYTES", "65536"),
        ("SLUICE_MAX_PAST_SECONDS", "60"),
        ("SLUICE_MAX_FUTURE_SECONDS", "5"),
        ("SLUICE_ZSTD_LEVEL", "3"),
        ("SLUICE_CLOUDWATCH_MAPPING", "/ecs/{tenant}/{service}"),
    ];
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let c = IngestConfig::from_vars(lookup)?;
    assert_eq!(c.limits.max_record_bytes, 2048);
    assert_eq!(c.limits.max_decompressed_bytes, 4096);
    assert_eq!(c.max_batch_decoded_bytes, 65536);
    assert_eq!((c.max_past_ms, c.max_future_ms), (60_000, 5_000));
    assert_eq!(c.parquet.zstd_level, 3);
    assert_eq!(
        c.cloudwatch.map("/ecs/acme/api").tenant.as_deref(),
        Some("acme")
    );
    // Every documented variable is one from_vars reads.
    for (name, _) in sluice_core::ingest::INGEST_ENV {
        assert!(vars.iter().any(|(k, _)| *k == name), "{name} untested");
    }
    // Nothing set: the defaults.
    let d = IngestConfig::from_vars(|_| None)?;
    assert_eq!(
        d.max_batch_decoded_bytes,
        sluice_core::ingest::DEFAULT_MAX_BATCH_DECODED_BYTES
    );
    Ok(())
}

#[test]
fn ingest_config_names_the_variable_that_is_unusable() {
    for (name, value, want) in [
        (
            "SLUICE_MAX_BATCH_DECODED_BYTES",
            "lots",
            "SLUICE_MAX_BATCH_DECODED_BYTES=\"lots\"",
        ),
        ("SLUICE_MAX_BATCH_DECODED_BYTES", "1024", "must be at least"),
        ("SLUICE_ZSTD_LEVEL", "0", "outside zstd's levels"),
        ("SLUICE_MAX_PAST_SECONDS", "-1", "must not be negative"),
        (
            "SLUICE_CLOUDWATCH_MAPPING",
            "/x bogus=1",
            "SLUICE_CLOUDWATCH_MAPPING",
        ),
    ] {
        let err = IngestConfig::from_vars(|k| (k == name).then(|| value.to_owned()))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(want), "{name}={value}: {err:?}");
    }
}
