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

mod bench_rules;

use bench_rules::{Accepting, RULES, install_rules, partials, scratch_dir};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_core::aggregate::store_partials;
use sluice_core::evaluate::{EvaluateConfig, Evaluator};
use sluice_core::tenant_bucket::TenantBuckets;
use sluice_core::{BlobStore, LocalDirStore};
use sluice_rules::Policy;
use sluice_rules::tenant_rules::StoreRuleRunner;
use support::{host, wasm_built};

const TENANTS: usize = 100;
const WINDOW_START: i64 = 1_714_564_800_000;

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
    let shards = partials(TENANTS, 2, WINDOW_START);
    let tenants: Vec<String> = shards[0].1.iter().map(|w| w.tenant.clone()).collect();
    rt.block_on(async {
        for tenant in &tenants {
            install_rules(&rules, host, tenant, &module, &artifact).await;
        }
    });
    let runner = StoreRuleRunner::new(host, &rules, Policy::default());
    let http = Accepting;
    let setup = || {
        let dir = scratch_dir();
        let data = LocalDirStore::new(dir.path());
        rt.block_on(async {
            for (shard, partials) in &shards {
                store_partials(&data, partials, TenantBuckets::DEFAULT, shard, "bench")
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
