//! The aggregate Lambda's path per core: its tumbling-window event JSON, read as lambda_runtime
//! reads payloads, into per (tenant, window) partials; and the same event read the way the
//! function read it before (a `serde_json::Value`, cloned for the window fields, then
//! `aws_lambda_events`), for comparison. `cargo bench -p sluice-aggregate`.

#[path = "../../../crates/core/benches/support/cpu_time.rs"]
mod cpu_time;

#[path = "../../../crates/core/benches/support/traffic.rs"]
mod traffic;

#[path = "../../../crates/core/benches/support/lambda_event.rs"]
mod lambda_event;

use cpu_time::ThreadCpuTime;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lambda_event::as_lambda_runtime;
use sluice_aggregate::{WindowEvent, WindowProperties};
use sluice_core::IngestConfig;
use sluice_core::aggregate::aggregate_records;
use sluice_core::window::{WindowAggregator, WindowConfig};
use traffic::NOW;

fn window_event(c: &mut Criterion<ThreadCpuTime>) {
    let json = lambda_event::event_json(
        10_000,
        serde_json::json!({
            "window": {"start": "2024-05-01T12:00:00Z", "end": "2024-05-01T12:01:00Z"},
            "state": {},
            "shardId": "shardId-000000000006",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/sluice-logs",
            "isFinalInvokeForWindow": false,
            "isWindowTerminatedEarly": false,
        }),
    );
    let ingest = IngestConfig::default();
    let mut group = c.benchmark_group("window_event");
    group.sample_size(10);
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("to_partials_10k (WindowEvent)", |b| {
        b.iter(|| {
            let event: WindowEvent = as_lambda_runtime(&json);
            let mut aggregator = WindowAggregator::new(WindowConfig::default());
            aggregate_records(&ingest, &mut aggregator, &event.records, NOW).events
        })
    });
    group.bench_function("to_partials_10k (Value, aws_lambda_events: before)", |b| {
        b.iter(|| {
            let value: serde_json::Value = as_lambda_runtime(&json);
            let props: WindowProperties =
                serde_json::from_value(value.clone()).expect("window fields");
            let event = sluice_aws::kinesis::parse_kinesis_event(value).expect("event");
            let records = sluice_aws::kinesis::into_stream_records(event);
            let mut aggregator = WindowAggregator::new(WindowConfig::default());
            let events = aggregate_records(&ingest, &mut aggregator, &records, NOW).events;
            (events, props.is_final_invoke_for_window)
        })
    });
    group.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = window_event
);
criterion_main!(benches);
