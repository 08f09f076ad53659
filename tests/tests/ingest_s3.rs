//! The ingest function end to end: a Lambda-shaped Kinesis event through the real handler into
//! S3 on the emulator, read back with pyarrow and DuckDB.
//!
//! Needs an emulator: `cargo xtask test`, or `cargo xtask emulator up` and
//! `export SLUICE_TEST_ENDPOINT=...`.

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use serde_json::{Value, json};
use sluice_aws::kinesis_records::KinesisBatch;
use sluice_core::{BlobStore, IngestConfig, IngestPipeline, StoreError};
use sluice_e2e::{
    TestBucket, TestRecord, base64, dead_letter_lines, from_base64, lambda_kinesis_event,
    parquet_rows, sequence_number, verify_parquet,
};

const SHARD: &str = "shardId-000000000002";
/// 50 digits; each record adds six more, as long as real Kinesis sequence numbers.
const SEQUENCE_PREFIX: &str = "49590338271490256608559692538361571095921575989136";
/// A little after the batch arrived (2025-01-15T11:00:05Z).
const NOW_MS: i64 = 1_736_938_805_000;
/// 2025-01-15T10:59:59Z, in seconds: the batch arrives in the last second of hour 10.
const ARRIVAL_S: &str = "1736938799";

type TestResult = anyhow::Result<()>;

fn seq(index: usize) -> String {
    sequence_number(SEQUENCE_PREFIX, index)
}

fn arrival(fraction: &str) -> String {
    format!("{ARRIVAL_S}.{fraction}")
}

/// Six records: NDJSON for acme spanning two hours, aliased JSON for globex, plain text,
/// and three bad records (malformed JSON, no tenant anywhere, not UTF-8).
fn mixed_batch() -> Vec<TestRecord> {
    let acme = [
        r#"{"timestamp":"2025-01-15T10:58:00.000Z","tenant":"acme","service":"checkout","level":"info","message":"order placed","http":{"method":"POST","path":"/orders","status":201},"latency_ms":42.5}"#,
        r#"{"timestamp":"2025-01-15T10:59:30.250Z","tenant":"acme","service":"checkout","level":"error","message":"payment declined","http":{"method":"POST","path":"/payments","status":502},"latency_ms":1203.75}"#,
        r#"{"timestamp":"2025-01-15T11:00:01.000Z","tenant":"acme","service":"checkout","level":"warn","message":"slow checkout","http_status":200,"latency_ms":2500}"#,
    ]
    .join("\n");
    vec![
        TestRecord::new("acme/checkout", acme, &arrival("9")),
        TestRecord::new(
            "globex/search",
            r#"{"@timestamp":"2025-01-15T10:59:00Z","tenant":"globex","service.name":"search","severity":"WARN","msg":"cache miss","latency_ms":8.25}"#,
            &arrival("95"),
        ),
        TestRecord::new("acme/edge", "GET /healthz 200 3ms", &arrival("05")),
        TestRecord::new(
            "acme/checkout",
            r#"{"tenant":"acme","message":"unterminated"#,
            &arrival("5"),
        ),
        TestRecord::new(
            "/orphan",
            r#"{"level":"info","message":"who am i"}"#,
            &arrival("6"),
        ),
        TestRecord::new("acme/api", vec![0xff, 0xfe, 0x00, b'x'], &arrival("7")),
    ]
}

/// Deserialises the event exactly as the Lambda runtime does for the function.
fn lambda_event(records: &[TestRecord]) -> anyhow::Result<KinesisBatch> {
    let json = lambda_kinesis_event(SHARD, SEQUENCE_PREFIX, records);
    Ok(serde_path_to_error::deserialize(
        &mut serde_json::Deserializer::from_str(&json),
    )?)
}

async fn run_handler(store: &dyn BlobStore, records: &[TestRecord]) -> anyhow::Result<Value> {
    let pipeline = IngestPipeline::new(IngestConfig::default());
    let response =
        sluice_ingest::handle(store, &pipeline, lambda_event(records)?.records, NOW_MS).await;
    Ok(serde_json::to_value(response)?)
}

/// The batch's one data object (docs/ARCHITECTURE.md §11), under its first record's arrival
/// hour.
fn raw_key() -> String {
    format!("raw/dt=2025-01-15/hour=10/{SHARD}-{}.parquet", seq(0))
}

fn dlq_key() -> String {
    format!("dlq/dt=2025-01-15/hour=10/{SHARD}-{}.ndjson.gz", seq(0))
}

#[tokio::test]
async fn lambda_batch_lands_as_one_parquet_object_with_the_right_values() -> TestResult {
    let bucket = TestBucket::create().await?;
    let response = run_handler(&bucket.store(), &mixed_batch()).await?;
    assert_eq!(response, json!({"batchItemFailures": []}));

    let keys = bucket.keys("").await?;
    assert_eq!(keys, vec![dlq_key(), raw_key()]);

    let dir = tempfile::tempdir()?;
    bucket.download("raw/", dir.path()).await?;
    verify_parquet(dir.path(), 5)?;

    let columns = [
        "ts",
        "received_at",
        "tenant",
        "service",
        "level",
        "http_status",
        "latency_ms",
        "message",
    ];
    let rows = parquet_rows(dir.path(), &columns)?;
    let by_message: BTreeMap<String, Value> = rows
        .into_iter()
        .map(|r| (r["message"].as_str().unwrap_or_default().to_owned(), r))
        .collect();
    let pick = |message: &str| -> anyhow::Result<&Value> {
        by_message
            .get(message)
            .ok_or_else(|| anyhow::anyhow!("no row with message {message:?} in {by_message:#?}"))
    };
    let check = |message: &str,
                 key: String,
                 tenant: &str,
                 service: &str,
                 level: &str,
                 status: Value,
                 latency: Value|
     -> TestResult {
        let row = pick(message)?;
        assert_eq!(row["_key"], json!(key), "{message}");
        assert_eq!(row["tenant"], json!(tenant), "{message}");
        assert_eq!(row["service"], json!(service), "{message}");
        assert_eq!(row["level"], json!(level), "{message}");
        assert_eq!(row["http_status"], status, "{message}");
        assert_eq!(row["latency_ms"], latency, "{message}");
        Ok(())
    };
    assert_eq!(by_message.len(), 5, "{by_message:#?}");
    check(
        "order placed",
        raw_key(),
        "acme",
        "checkout",
        "info",
        json!(201),
        json!(42.5),
    )?;
    check(
        "payment declined",
        raw_key(),
        "acme",
        "checkout",
        "error",
        json!(502),
        json!(1203.75),
    )?;
    check(
        "slow checkout",
        raw_key(),
        "acme",
        "checkout",
        "warn",
        json!(200),
        json!(2500.0),
    )?;
    check(
        "cache miss",
        raw_key(),
        "globex",
        "search",
        "warn",
        Value::Null,
        json!(8.25),
    )?;

    // Event time as written; received_at is the record's arrival, to the millisecond.
    let order = pick("order placed")?;
    assert_eq!(order["ts"], json!(1_736_938_680_000_i64));
    assert_eq!(order["received_at"], json!(1_736_938_799_900_i64));

    // Plain text: tenant and service from the partition key, time from the arrival.
    let plain = pick("GET /healthz 200 3ms")?;
    assert_eq!(plain["_key"], json!(raw_key()));
    assert_eq!(plain["tenant"], json!("acme"));
    assert_eq!(plain["service"], json!("edge"));
    assert_eq!(plain["ts"], json!(1_736_938_799_050_i64));
    assert_eq!(plain["received_at"], json!(1_736_938_799_050_i64));

    let letters = dead_letter_lines(&bucket.object(&dlq_key()).await?)?;
    let kinds: Vec<&str> = letters
        .iter()
        .filter_map(|l| l["reason_kind"].as_str())
        .collect();
    assert_eq!(kinds, vec!["not_json", "no_tenant", "not_utf8"]);
    Ok(())
}

#[tokio::test]
async fn retried_batch_overwrites_instead_of_duplicating() -> TestResult {
    let bucket = TestBucket::create().await?;
    let store = bucket.store();
    let batch = mixed_batch();

    run_handler(&store, &batch).await?;
    let first_keys = bucket.keys("").await?;
    let first_objects = {
        let mut objects = Vec::new();
        for key in &first_keys {
            objects.push(bucket.object(key).await?);
        }
        objects
    };

    // Lambda re-delivers the same batch (e.g. after a timeout).
    let response = run_handler(&store, &batch).await?;
    assert_eq!(response, json!({"batchItemFailures": []}));
    let second_keys = bucket.keys("").await?;
    assert_eq!(first_keys, second_keys, "a retry must write the same keys");
    assert_eq!(second_keys.len(), 2, "{second_keys:?}");

    let dir = tempfile::tempdir()?;
    bucket.download("raw/", dir.path()).await?;
    verify_parquet(dir.path(), 5)?;
    let letters = dead_letter_lines(&bucket.object(&dlq_key()).await?)?;
    assert_eq!(
        letters.len(),
        3,
        "the dead letters are not doubled: {letters:?}"
    );
    for (key, before) in first_keys.iter().zip(&first_objects) {
        if key.ends_with(".parquet") {
            let after = bucket.object(key).await?;
            assert_eq!(
                &after, before,
                "{key}: the same batch must encode to the same bytes"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn malformed_records_go_to_the_dead_letter_prefix_with_their_reasons() -> TestResult {
    let bucket = TestBucket::create().await?;
    let malformed = r#"{"tenant":"acme","message":"unterminated"#;
    let not_utf8 = vec![0xff, 0xfe, 0x00, b'x'];
    let batch = vec![
        TestRecord::new("acme/checkout", malformed, &arrival("123")),
        TestRecord::new(
            "acme/checkout",
            "{\"tenant\":\"acme\",\"message\":\"fine\"}\n{\"broken\n",
            &arrival("2"),
        ),
        TestRecord::new("/orphan", r#"{"message":"who am i"}"#, &arrival("3")),
        TestRecord::new("acme/api", not_utf8.clone(), &arrival("4")),
        TestRecord::new("acme/api", "   \n", &arrival("5")),
    ];
    let response = run_handler(&bucket.store(), &batch).await?;
    assert_eq!(
        response,
        json!({"batchItemFailures": []}),
        "bad records never fail the batch"
    );

    assert_eq!(bucket.keys("dlq/").await?, vec![dlq_key()]);
    let letters = dead_letter_lines(&bucket.object(&dlq_key()).await?)?;
    assert_eq!(letters.len(), 5, "{letters:#?}");
    for letter in &letters {
        let fields: Vec<&str> = letter
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for required in [
            "shard_id",
            "sequence_number",
            "partition_key",
            "arrival_ms",
            "reason_kind",
            "reason",
            "data",
        ] {
            assert!(
                fields.contains(&required),
                "{required} missing from {letter}"
            );
        }
        assert_eq!(letter["shard_id"], json!(SHARD));
        assert!(
            !letter["reason"].as_str().unwrap_or_default().is_empty(),
            "{letter}"
        );
    }

    let whole = &letters[0];
    assert_eq!(whole["sequence_number"], json!(seq(0)));
    assert_eq!(whole["partition_key"], json!("acme/checkout"));
    assert_eq!(whole["arrival_ms"], json!(1_736_938_799_123_i64));
    assert_eq!(whole["reason_kind"], json!("not_json"));
    assert_eq!(whole["data"], json!(base64(malformed.as_bytes())));
    // The whole record was bad: no sub-sequence, or that of its only event.
    assert!(
        matches!(whole.get("sub_sequence"), None | Some(Value::Null))
            || whole["sub_sequence"] == json!(0),
        "{whole}"
    );

    // Only the bad line of an NDJSON record is dead-lettered; the good one is stored.
    let partial = &letters[1];
    assert_eq!(partial["sequence_number"], json!(seq(1)));
    assert_eq!(partial["sub_sequence"], json!(1));
    assert_eq!(partial["reason_kind"], json!("not_json"));
    assert_eq!(partial["arrival_ms"], json!(1_736_938_799_200_i64));
    let raw = String::from_utf8(from_base64(partial["data"].as_str().unwrap_or_default())?)?;
    assert_eq!(raw.trim_end(), "{\"broken");

    assert_eq!(letters[2]["reason_kind"], json!("no_tenant"));
    assert_eq!(letters[2]["partition_key"], json!("/orphan"));
    assert_eq!(letters[3]["reason_kind"], json!("not_utf8"));
    assert_eq!(letters[3]["data"], json!(base64(&not_utf8)));
    assert_eq!(letters[4]["reason_kind"], json!("empty"));

    let dir = tempfile::tempdir()?;
    bucket.download("raw/", dir.path()).await?;
    verify_parquet(dir.path(), 1)?;
    let rows = parquet_rows(dir.path(), &["message"])?;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["message"], json!("fine"));
    Ok(())
}

#[tokio::test]
async fn failing_s3_reports_the_first_sequence_number_for_retry() -> TestResult {
    let bucket = TestBucket::create().await?;
    // A bucket that does not exist: every write fails with NoSuchBucket.
    let missing =
        sluice_aws::S3BlobStore::new(bucket.client.clone(), format!("{}-missing", bucket.name));
    let response = run_handler(&missing, &mixed_batch()).await?;
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": seq(0)}]})
    );

    let err = missing
        .put(
            "logs/x.parquet",
            Bytes::from_static(b"x"),
            "application/octet-stream",
        )
        .await;
    match err {
        Err(StoreError::Backend {
            backend,
            op,
            key,
            message,
        }) => {
            assert_eq!((backend, op, key.as_str()), ("s3", "put", "logs/x.parquet"));
            assert!(message.contains("NoSuchBucket"), "{message}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(bucket.keys("").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn objects_above_the_threshold_are_uploaded_in_parts() -> TestResult {
    let bucket = TestBucket::create().await?;
    let part = sluice_aws::s3_store::MIN_PART_SIZE;
    let store = bucket.store().with_multipart(part, part)?;
    let mut body = vec![0u8; 2 * part + 1024 * 1024];
    let mut rng = fastrand::Rng::with_seed(7);
    rng.fill(&mut body);
    let body = Bytes::from(body);

    store
        .put("big/object.bin", body.clone(), "application/octet-stream")
        .await?;

    let head = bucket
        .client
        .head_object()
        .bucket(&bucket.name)
        .key("big/object.bin")
        .send()
        .await?;
    assert_eq!(head.content_length(), Some(i64::try_from(body.len())?));
    let etag = head.e_tag().unwrap_or_default();
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "a 3-part upload has a multipart ETag, got {etag}"
    );
    let back = store
        .get("big/object.bin")
        .await?
        .ok_or_else(|| anyhow::anyhow!("object missing"))?;
    assert!(
        back == body,
        "the multipart object differs from what was put"
    );

    let uploads = bucket
        .client
        .list_multipart_uploads()
        .bucket(&bucket.name)
        .send()
        .await?;
    assert!(
        uploads.uploads().is_empty(),
        "no upload left open: {:?}",
        uploads.uploads()
    );
    Ok(())
}

#[tokio::test]
async fn s3_store_round_trips_lists_past_one_page_and_deletes() -> TestResult {
    let bucket = TestBucket::create().await?;
    let store = bucket.store();
    assert_eq!(store.get("nothing/here").await?, None);

    // 1001 keys: one more than a ListObjectsV2 page.
    let keys: Vec<String> = (0..1001).map(|i| format!("many/k{i:05}")).collect();
    for chunk in keys.chunks(100) {
        let puts = chunk.iter().map(|key| {
            bucket
                .client
                .put_object()
                .bucket(&bucket.name)
                .key(key)
                .body(ByteStream::from_static(b"."))
                .send()
        });
        for result in futures::future::join_all(puts).await {
            result?;
        }
    }
    let listed = store.list("many/").await?;
    assert_eq!(listed, keys);

    store
        .put("one/a.txt", Bytes::from_static(b"hello"), "text/plain")
        .await?;
    assert_eq!(
        store.get("one/a.txt").await?.as_deref(),
        Some(&b"hello"[..])
    );
    let head = bucket
        .client
        .head_object()
        .bucket(&bucket.name)
        .key("one/a.txt")
        .send()
        .await?;
    assert_eq!(head.content_type(), Some("text/plain"));
    let tag = store
        .head("one/a.txt")
        .await?
        .expect("a tag for a stored object");
    assert_eq!(store.head("one/a.txt").await?.as_ref(), Some(&tag));
    store
        .put("one/a.txt", Bytes::from_static(b"replaced"), "text/plain")
        .await?;
    assert_eq!(
        store.get("one/a.txt").await?.as_deref(),
        Some(&b"replaced"[..])
    );
    assert_ne!(
        store.head("one/a.txt").await?,
        Some(tag),
        "a rewrite changes the tag"
    );
    assert_eq!(store.head("nothing/here").await?, None);
    assert_eq!(store.list("one/").await?, vec!["one/a.txt".to_owned()]);
    store.delete("one/a.txt").await?;
    store.delete("one/a.txt").await?;
    assert_eq!(store.get("one/a.txt").await?, None);
    assert!(store.list("one/").await?.is_empty());
    Ok(())
}
