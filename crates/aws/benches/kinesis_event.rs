//! The ingest Lambda's whole path per core: Lambda's Kinesis event JSON (as the runtime hands
//! it over) to stream records, and on to Parquet objects; and the same event read through
//! `aws_lambda_events`, for comparison. `cargo bench -p sluice-aws --bench kinesis_event`.

#[path = "../../core/benches/support/cpu_time.rs"]
mod cpu_time;

#[path = "../../core/benches/support/traffic.rs"]
mod traffic;

use base64::Engine as _;
use cpu_time::ThreadCpuTime;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_aws::kinesis::{ExactKinesisEvent, into_stream_records};
use sluice_aws::kinesis_records::KinesisBatch;
use sluice_core::IngestPipeline;
use traffic::NOW;

/// A Kinesis event of `n` generated records, shaped exactly as Lambda sends it.
fn event_json(n: usize) -> Vec<u8> {
    let records: Vec<serde_json::Value> = traffic::events(n)
        .enumerate()
        .map(|(i, e)| {
            let sequence = format!("4959033827149025660855969253836157109592157598913{:07}", i);
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": e.partition_key,
                    "sequenceNumber": sequence,
                    "data": base64::engine::general_purpose::STANDARD.encode(&e.payload),
                    "approximateArrivalTimestamp": (NOW as f64 + i as f64) / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000006:{sequence}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/sluice-ingest-role",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/sluice-logs",
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "Records": records })).expect("event JSON")
}

/// Deserialises the payload as lambda_runtime does (through `serde_path_to_error`, which
/// copies every key it passes into a String).
fn as_lambda_runtime<T: serde::de::DeserializeOwned>(json: &[u8]) -> T {
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(json))
        .expect("event")
}

fn lambda_event(c: &mut Criterion<ThreadCpuTime>) {
    let json = event_json(10_000);
    let pipeline = IngestPipeline::default();
    let mut group = c.benchmark_group("lambda_event");
    group.sample_size(10);
    group.throughput(Throughput::Elements(10_000));
    group.bench_function(
        format!("to_records_10k ({} KB, KinesisBatch)", json.len() / 1000),
        |b| b.iter(|| as_lambda_runtime::<KinesisBatch>(&json).records.len()),
    );
    group.bench_function("to_records_10k (aws_lambda_events, reference)", |b| {
        b.iter(|| into_stream_records(as_lambda_runtime::<ExactKinesisEvent>(&json).0).len())
    });
    group.bench_function("to_parquet_10k (KinesisBatch)", |b| {
        b.iter(|| {
            let batch = as_lambda_runtime::<KinesisBatch>(&json);
            pipeline
                .encode(&batch.records, NOW)
                .map(|out| out.stats.rows)
        })
    });
    group.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = lambda_event
);
criterion_main!(benches);
