//! Evaluation at scale (docs/ARCHITECTURE.md §12), for `cargo xtask bench --tenants N`:
//! `cargo bench -p sluice-rules --bench evaluate_scale -- --tenants N [--buckets B]
//! [--shards S] [--workers W]` prints one JSON object.
//!
//! One 60 s window of N tenants × 10 `threshold` rules (release build), S shards' partials
//! stored per tenant bucket as the aggregate function stores them, evaluated by the real
//! planner items, workers and delivery ([`Evaluator::evaluate_window`], W in-process workers)
//! over the embedded store in `/dev/shm`. Every tenant runs the same ten rules, installed once
//! under one tenant and looked up through the real store-backed runner (so the loaded rules
//! stay in its cache, as in a warm worker whose tenants share rule modules; a cold load is
//! measured on its own). Both stores count their requests ([`CountingStore`]). CPU time is the
//! process's (every thread), measured around the evaluation only.

#[path = "../tests/support/mod.rs"]
mod support;

mod bench_rules;

use std::time::Instant;

use async_trait::async_trait;
use sluice_core::aggregate::store_partials;
use sluice_core::alerting::model::RuleOutput;
use sluice_core::counting_store::CountingStore;
use sluice_core::evaluate::{EvaluateConfig, Evaluator, RuleRunner, TenantRule};
use sluice_core::tenant_bucket::TenantBuckets;
use sluice_core::window::WindowConfig;
use sluice_core::window::summary::WindowSummary;
use sluice_core::{BlobStore, LocalDirStore};
use sluice_rules::Policy;
use sluice_rules::tenant_rules::StoreRuleRunner;

use bench_rules::{Accepting, RULES, install_rules, partials, scratch_dir};
use support::{host, wasm_built};

const WINDOW_START: i64 = 1_714_564_800_000;
/// The tenant the shared rules are installed under.
const RULES_TENANT: &str = "rules-template";

/// The real store-backed runner, with every tenant's rules read from [`RULES_TENANT`].
#[derive(Debug)]
struct SharedRules<'a>(StoreRuleRunner<'a>);

#[async_trait]
impl RuleRunner for SharedRules<'_> {
    async fn rules(&self, _tenant: &str) -> Result<Vec<TenantRule>, String> {
        self.0.rules(RULES_TENANT).await
    }

    async fn run(
        &self,
        _tenant: &str,
        rule: &TenantRule,
        window: &WindowSummary,
        params: &toml::Table,
        state: Option<&[u8]>,
    ) -> Result<RuleOutput, String> {
        self.0.run(RULES_TENANT, rule, window, params, state).await
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds of this process so far (every thread).
fn cpu_s() -> f64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .expect("process CPU clock");
    t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9
}

fn main() {
    // `cargo bench` passes `--bench`; only ours are read.
    let tenants = arg("--tenants", 1_000);
    let buckets = arg("--buckets", TenantBuckets::DEFAULT.count() as usize) as u32;
    let shards = arg("--shards", 2);
    let workers = arg("--workers", 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let host = host();
    let module = wasm_built("threshold", "release");
    let artifact = host.precompile(&module).expect("threshold precompiles");
    let rules_dir = scratch_dir();
    let rules = CountingStore::new(LocalDirStore::new(rules_dir.path()));
    let data_dir = scratch_dir();
    let data = CountingStore::new(LocalDirStore::new(data_dir.path()));
    let buckets = TenantBuckets::new(buckets);
    let config = EvaluateConfig {
        window: WindowConfig {
            tenant_buckets: buckets,
            ..WindowConfig::default()
        },
        workers,
        ..EvaluateConfig::default()
    };
    let aggregate_puts = rt.block_on(async {
        install_rules(&rules, host, RULES_TENANT, &module, &artifact).await;
        let mut puts = 0;
        for (shard, windows) in partials(tenants, shards, WINDOW_START) {
            puts += store_partials(&data, &windows, buckets, &shard, "bench")
                .await
                .expect("partials stored")
                .len();
        }
        let toml = "[[webhooks]]\nurl = \"https://hooks.example.com/x\"\nsecret = \"s\"\n";
        for i in 0..tenants {
            rules
                .put(
                    &format!("tenants/tenant-{i:05}.toml"),
                    toml.into(),
                    "application/toml",
                )
                .await
                .expect("tenant config");
        }
        puts
    });
    let cold_start = Instant::now();
    let cold = host.precompile(&module).expect("precompiles");
    let _ = host.load_precompiled(&cold).expect("loads");
    let cold_load_ms = cold_start.elapsed().as_secs_f64() * 1e3;
    let runner = SharedRules(StoreRuleRunner::new(host, &rules, Policy::default()));
    // Warm the runner's cache (a warm worker), then count from zero.
    rt.block_on(async {
        let window = WindowSummary::from_window(
            &sluice_core::window::TenantWindow::new("warm", WINDOW_START, WINDOW_START + 60_000),
            |_| false,
        );
        for rule in runner.rules("warm").await.expect("rules") {
            let _ = runner.run("warm", &rule, &window, &rule.params, None).await;
        }
    });
    let _ = (data.take(), rules.take());
    let evaluator = Evaluator {
        data: &data,
        rules_store: &rules,
        runner: &runner,
        http: &Accepting,
        config,
    };
    let (cpu0, wall0) = (cpu_s(), Instant::now());
    let report = rt
        .block_on(evaluator.evaluate_window(WINDOW_START))
        .expect("the window evaluates");
    let (cpu, wall) = (cpu_s() - cpu0, wall0.elapsed().as_secs_f64());
    let data_requests = data.take();
    let rules_requests = rules.take();
    let rule_runs: usize = report.tenants.iter().map(|t| t.rules_run).sum();
    let failed = report.tenants.iter().filter(|t| t.error.is_some()).count();
    let transitions: usize = report.tenants.iter().map(|t| t.transitions.len()).sum();
    assert_eq!(report.tenants.len(), tenants, "every tenant evaluated");
    assert_eq!(rule_runs, tenants * RULES.len(), "every rule ran");
    let out = serde_json::json!({
        "tenants": tenants,
        "rules_per_tenant": RULES.len(),
        "buckets": buckets.count(),
        "shards": shards,
        "workers": workers,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_ms_per_tenant_window": cpu * 1e3 / tenants as f64,
        "rule_evaluations_per_cpu_s": rule_runs as f64 / cpu,
        "tenants_failed": failed,
        "transitions": transitions,
        "aggregate_partial_puts": aggregate_puts,
        "data_requests": data_requests,
        "data_requests_total": data_requests.total(),
        "rules_requests": rules_requests,
        "rules_requests_total": rules_requests.total(),
        "cold_rule_load_ms": cold_load_ms,
    });
    println!("{out}");
}
