//! The ingest Lambda's whole path per core: Lambda's Kinesis event JSON (as the runtime hands
//! it over) to stream records, and on to Parquet objects; and the same event read through
//! `aws_lambda_events`, for comparison. `cargo bench -p sluice-aws --bench kinesis_event`.

#[path = "../../core/benches/support/cpu_time.rs"]
mod cpu_time;

#[path = "../../core/benches/support/traffic.rs"]
mod traffic;

#[path = "../../core/benches/support/lambda_event.rs"]
mod lambda_event;

use cpu_time::ThreadCpuTime;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lambda_event::{as_lambda_runtime, event_json};
use sluice_aws::kinesis::{ExactKinesisEvent, into_stream_records};
use sluice_aws::kinesis_records::KinesisBatch;
use sluice_core::IngestPipeline;
use traffic::NOW;

fn lambda_event(c: &mut Criterion<ThreadCpuTime>) {
    let json = event_json(10_000, serde_json::json!({}));
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
    group.bench_function("to_parquet_10k (aws_lambda_events: before)", |b| {
        b.iter(|| {
            let records = into_stream_records(as_lambda_runtime::<ExactKinesisEvent>(&json).0);
            pipeline.encode(&records, NOW).map(|out| out.stats.rows)
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
