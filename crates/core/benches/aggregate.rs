//! Aggregation throughput (CPU time of the benchmark thread): decoded events into per (tenant, window) partials, log-pattern mining
//! included; and merging partials. `cargo bench -p sluice-core --bench aggregate`.

#[path = "support/cpu_time.rs"]
mod cpu_time;

use cpu_time::ThreadCpuTime;
use std::ops::Range;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_core::aggregate::aggregate_records;
use sluice_core::level::Level;
use sluice_core::synth::{Generator, SynthConfig};
use sluice_core::window::{AggEvent, WindowAggregator, WindowConfig};
use sluice_core::{IngestConfig, StreamRecord};

const NOW: i64 = 1_714_568_400_000;

/// A decoded event. Its strings are ranges of one text buffer, laid out in event order as a
/// batch of records is in memory (a decoder hands the aggregator `&str`s into the record it has
/// just read). One heap allocation per string would instead measure cache misses on strings
/// scattered across the heap.
struct Event {
    tenant: Range<usize>,
    service: Range<usize>,
    ts_ms: i64,
    level: Level,
    status: Option<u16>,
    latency: Option<f64>,
    message: Range<usize>,
}

fn push(text: &mut String, s: &str) -> Range<usize> {
    let start = text.len();
    text.push_str(s);
    start..text.len()
}

fn events(n: usize) -> (String, Vec<Event>, Vec<StreamRecord>) {
    let config = SynthConfig {
        tenants: 8,
        services_per_tenant: 8,
        events: n,
        start_ms: NOW - 600_000,
        duration_ms: 540_000,
        ..SynthConfig::default()
    };
    let mut text = String::new();
    let mut out = Vec::with_capacity(n);
    let mut records = Vec::with_capacity(n);
    for (i, e) in Generator::new(config).enumerate() {
        let v: serde_json::Value = serde_json::from_slice(&e.payload).unwrap_or_default();
        let (tenant, service) = e.partition_key.split_once('/').unwrap_or(("t", "s"));
        let msg = v["msg"]
            .as_str()
            .or(v["message"].as_str())
            .unwrap_or_default();
        let level = Level::parse(
            v["level"]
                .as_str()
                .or(v["log.level"].as_str())
                .unwrap_or("info"),
        )
        .unwrap_or_default();
        let status = v["status"]
            .as_u64()
            .or(v["http"]["status_code"].as_u64())
            .map(|s| s as u16);
        let latency = v["latency_ms"]
            .as_f64()
            .or(v["http"]["duration_ms"].as_f64());
        out.push(Event {
            tenant: push(&mut text, tenant),
            service: push(&mut text, service),
            ts_ms: e.ts_ms,
            level,
            status,
            latency,
            message: push(&mut text, msg),
        });
        records.push(StreamRecord {
            shard_id: "s".into(),
            sequence_number: i.to_string().into(),
            partition_key: e.partition_key,
            arrival_ms: e.ts_ms + 100,
            data: e.payload.into(),
        });
    }
    (text, out, records)
}

fn aggregate(c: &mut Criterion<ThreadCpuTime>) {
    let (text, events, records) = events(100_000);
    let mut group = c.benchmark_group("aggregate");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("partials_from_decoded_events_100k", |b| {
        b.iter(|| {
            let mut agg = WindowAggregator::new(WindowConfig::default());
            for e in &events {
                agg.add(&AggEvent {
                    tenant: &text[e.tenant.clone()],
                    service: &text[e.service.clone()],
                    ts_ms: e.ts_ms,
                    arrival_ms: e.ts_ms + 100,
                    level: e.level,
                    http_status: e.status,
                    latency_ms: e.latency,
                    message: &text[e.message.clone()],
                });
            }
            agg.drain().len()
        })
    });
    group.bench_function("partials_from_raw_records_100k_decode_included", |b| {
        b.iter(|| {
            let mut agg = WindowAggregator::new(WindowConfig::default());
            aggregate_records(&IngestConfig::default(), &mut agg, &records, NOW);
            agg.drain().len()
        })
    });
    group.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = aggregate
);
criterion_main!(benches);
