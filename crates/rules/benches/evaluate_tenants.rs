//! The evaluate function's work for one window: merge every shard's partials per tenant, write
//! the tenant's metrics, and run its rules, for 100 tenants × 10 rules (the `threshold`
//! example, built in release, with ten different metrics), as `sluice-evaluate` does it:
//! [`Evaluator::evaluate_window`] with the store-backed rule runner, on the embedded store.
//! `cargo bench -p sluice-rules --bench evaluate_tenants`.
//!
//! Each iteration gets a fresh data directory (written in the setup, not measured) holding two
//! shards' partials for every tenant; the rules bucket and the runner's cache of loaded rules
//! are shared, as in a warm Lambda. Both stores live in `/dev/shm` when there is one. Webhook posts go to an in-process poster that answers 200
//! at once, so delivery costs only the signing. Wall time: the evaluator is async and uses the
//! runtime's threads.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_core::aggregate::{aggregate_records, store_partials};
use sluice_core::alerting::delivery::{HttpPoster, PostError};
use sluice_core::evaluate::{EvaluateConfig, Evaluator};
use sluice_core::synth::{Generator, Incident, SynthConfig};
use sluice_core::window::{TenantWindow, WindowAggregator, WindowConfig};
use sluice_core::{BlobStore, IngestConfig, LocalDirStore, StreamRecord};
use sluice_rules::accepted::{AcceptedRecord, sha256_hex};
use sluice_rules::tenant_rules::StoreRuleRunner;
use sluice_rules::{Policy, RuleId};
use support::{host, wasm_built};

const TENANTS: usize = 100;
const RULES: [(&str, &str); 10] = [
    ("error_rate", "warning = 0.05\ncritical = 0.10"),
    ("errors", "warning = 50\ncritical = 200"),
    ("5xx", "warning = 20\ncritical = 100"),
    ("5xx_rate", "warning = 0.02\ncritical = 0.05"),
    ("4xx_rate", "warning = 0.2\ncritical = 0.4"),
    ("latency_p50", "warning = 200\ncritical = 500"),
    ("latency_p90", "warning = 400\ncritical = 800"),
    ("latency_p95", "warning = 500\ncritical = 1000"),
    ("latency_p99", "warning = 800\ncritical = 2000"),
    ("latency_max", "warning = 2000\ncritical = 5000"),
];
const WINDOW_START: i64 = 1_714_564_800_000;

#[derive(Debug)]
struct Accepting;

#[async_trait]
impl HttpPoster for Accepting {
    async fn post(
        &self,
        _url: &str,
        _headers: &[(String, String)],
        _body: Bytes,
        _timeout: Duration,
    ) -> Result<u16, PostError> {
        Ok(200)
    }
}

/// Two shards' partials of one window for every tenant: generated traffic of the synthetic
/// tenants (one with an incident, so some rules fire), copied under 100 tenant names.
fn partials() -> Vec<(String, Vec<TenantWindow>)> {
    let config = SynthConfig {
        tenants: 8,
        services_per_tenant: 8,
        events: 100_000,
        start_ms: WINDOW_START,
        duration_ms: 60_000,
        incident: Some(Incident {
            tenant: "acme".into(),
            service: "checkout".into(),
            start_ms: WINDOW_START,
            end_ms: WINDOW_START + 60_000,
            error_rate: 0.5,
            latency_factor: 4.0,
        }),
        ..SynthConfig::default()
    };
    let records: Vec<StreamRecord> = Generator::new(config)
        .enumerate()
        .map(|(i, e)| StreamRecord {
            shard_id: format!("shardId-{:012}", i % 2).into(),
            sequence_number: i.to_string().into(),
            partition_key: e.partition_key,
            arrival_ms: e.ts_ms + 200,
            data: e.payload.into(),
        })
        .collect();
    (0..2)
        .map(|shard| {
            let id = format!("shardId-{shard:012}");
            let mine: Vec<StreamRecord> = records
                .iter()
                .filter(|r| *r.shard_id == *id)
                .cloned()
                .collect();
            let mut agg = WindowAggregator::new(WindowConfig::default());
            aggregate_records(&IngestConfig::default(), &mut agg, &mine, WINDOW_START);
            let base = agg.drain();
            let copies = (0..TENANTS)
                .map(|i| TenantWindow {
                    tenant: format!("tenant-{i:03}"),
                    ..base[i % base.len()].clone()
                })
                .collect();
            (id, copies)
        })
        .collect()
}

/// A directory in memory (`/dev/shm`) where there is one, so that the figure is the
/// evaluator's work rather than this machine's disk.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("temp dir")
}

fn evaluate_tenants(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let host = host();
    let module = wasm_built("threshold", "release");
    let artifact = host.precompile(&module).expect("threshold precompiles");
    let rules_dir = scratch_dir();
    let rules = LocalDirStore::new(rules_dir.path());
    let shards = partials();
    let tenants: Vec<String> = shards[0].1.iter().map(|w| w.tenant.clone()).collect();
    rt.block_on(async {
        for tenant in &tenants {
            for (metric, thresholds) in RULES {
                let name = format!("threshold-{}", metric.replace('_', "-"));
                let id = RuleId::new(tenant, &name).expect("valid rule id");
                let manifest = format!(
                    "[rule]\nname = \"{name}\"\napi = \"0.1.0\"\n\n[params]\nmetric = \"{metric}\"\n{thresholds}\nmin_count = 10\n"
                );
                rules
                    .put(&id.version_manifest_key(1), manifest.clone().into(), "application/toml")
                    .await
                    .expect("manifest stored");
                rules
                    .put(
                        &id.compiled_key(host.fingerprint()),
                        Bytes::from(artifact.bytes().to_vec()),
                        "application/octet-stream",
                    )
                    .await
                    .expect("artifact stored");
                // What the registry records beside it: the evaluator loads nothing else.
                let record = AcceptedRecord {
                    engine_fingerprint: host.fingerprint().to_owned(),
                    compiled_key: id.compiled_key(host.fingerprint()),
                    artifact_sha256: sha256_hex(artifact.bytes()),
                    module_sha256: sha256_hex(&module),
                    version: 1,
                    manifest_sha256: sha256_hex(manifest.as_bytes()),
                };
                rules
                    .put(&id.version_module_key(1), Bytes::from(module.clone()), "application/wasm")
                    .await
                    .expect("module stored");
                rules
                    .put(
                        &id.accepted_record_key(),
                        Bytes::from(serde_json::to_vec(&record).expect("JSON")),
                        "application/json",
                    )
                    .await
                    .expect("record stored");
            }
        }
    });
    let runner = StoreRuleRunner::new(host, &rules, Policy::default());
    let http = Accepting;
    let setup = || {
        let dir = scratch_dir();
        let data = LocalDirStore::new(dir.path());
        rt.block_on(async {
            for (shard, partials) in &shards {
                store_partials(&data, partials, shard, "bench")
                    .await
                    .expect("partials stored");
            }
            for tenant in &tenants {
                let toml = "[[webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"s\"\n";
                data.put(
                    &format!("tenants/{tenant}.toml"),
                    toml.into(),
                    "application/toml",
                )
                .await
                .expect("tenant config");
            }
        });
        (dir, data)
    };
    let mut group = c.benchmark_group("evaluate_window");
    group.sample_size(10);
    group.throughput(Throughput::Elements((TENANTS * RULES.len()) as u64));
    group.bench_function("100_tenants_x_10_rules", |b| {
        b.iter_batched(
            setup,
            |(dir, data)| {
                let evaluator = Evaluator {
                    data: &data,
                    rules_store: &rules,
                    runner: &runner,
                    http: &http,
                    config: EvaluateConfig::default(),
                };
                let report = rt
                    .block_on(evaluator.evaluate_window(WINDOW_START))
                    .expect("the window evaluates");
                let runs: usize = report.tenants.iter().map(|t| t.rules_run).sum();
                assert_eq!(runs, TENANTS * RULES.len());
                // Dropped (the directory deleted) after the measurement.
                (report, dir)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, evaluate_tenants);
criterion_main!(benches);
