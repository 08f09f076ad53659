//! Ingest throughput (CPU time of the benchmark thread): decode + normalise + Parquet (zstd) over generated ~400-byte records.
//! `cargo bench -p sluice-core --bench ingest`; `cargo xtask bench` prints the comparison with DuckDB.

#[path = "support/cpu_time.rs"]
mod cpu_time;

#[path = "support/traffic.rs"]
mod traffic;

use cpu_time::ThreadCpuTime;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_core::decode::{Decoder, EventDefaults, EventSink};
use sluice_core::normalize::Fields;
use sluice_core::{IngestPipeline, RejectReason, StreamRecord};
use traffic::NOW;

fn records(n: usize) -> Vec<StreamRecord> {
    traffic::events(n)
        .enumerate()
        .map(|(i, e)| StreamRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: (49_000_000_000u64 + i as u64).to_string().into(),
            partition_key: e.partition_key,
            arrival_ms: NOW,
            data: e.payload.into(),
        })
        .collect()
}

fn ingest(c: &mut Criterion<ThreadCpuTime>) {
    let pipeline = IngestPipeline::default();
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    for (name, n) in [("lambda_batch_10k", 10_000), ("batch_200k", 200_000)] {
        let batch = records(n);
        let bytes: usize = batch.iter().map(|r| r.data.len()).sum();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{name}_records ({} B avg)", bytes / n), |b| {
            b.iter(|| pipeline.encode(&batch, NOW).map(|out| out.stats.rows))
        });
    }
    group.finish();
}

/// Counts events without storing them: the cost of decoding and normalising alone.
struct CountingSink(u64);

impl EventSink for CountingSink {
    fn event(
        &mut self,
        _: u32,
        fields: &Fields<'_>,
        attrs: Option<&str>,
        _: &EventDefaults<'_>,
    ) -> Result<(), RejectReason> {
        self.0 += u64::from(fields.message.is_some()) + attrs.map_or(0, |a| a.len() as u64);
        Ok(())
    }
    fn reject(&mut self, _: Option<u32>, _: RejectReason, _: &[u8]) {}
}

fn decode_only(c: &mut Criterion<ThreadCpuTime>) {
    let batch = records(10_000);
    let mut group = c.benchmark_group("decode");
    group.sample_size(20);
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("decode_normalise_10k_records", |b| {
        let mut decoder = Decoder::default();
        b.iter(|| {
            let mut sink = CountingSink(0);
            for r in &batch {
                decoder.decode(&r.data, &mut sink);
            }
            sink.0
        })
    });
    group.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = ingest, decode_only
);
criterion_main!(benches);
