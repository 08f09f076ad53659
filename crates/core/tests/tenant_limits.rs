//! Per-tenant limits as a hostile tenant meets them (docs/ARCHITECTURE.md §10): a flood of
//! distinct services and patterns is folded at the caps and counted, and 500 rules keeping a
//! MiB of state each are refused at the tenant's rule and state limits, while another tenant
//! in the same window is evaluated as usual.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sluice_core::aggregate::store_partials;
use sluice_core::alerting::delivery::{HttpPoster, PostError};
use sluice_core::alerting::lifecycle::LifecycleConfig;
use sluice_core::alerting::model::RuleOutput;
use sluice_core::evaluate::{
    BucketState, EvaluateConfig, Evaluator, RuleRunner, TenantRule, TenantState, bucket_state_key,
    decoded_len,
};
use sluice_core::level::Level;
use sluice_core::tenancy::limits::{OTHER_SERVICE, TenantLimits};
use sluice_core::tenant_bucket::TenantBuckets;
use sluice_core::window::summary::WindowSummary;
use sluice_core::window::{PatternStats, ServiceStats, TenantWindow};
use sluice_core::{BlobStore, LocalDirStore};

const START: i64 = 1_714_564_800_000;
const MIN: i64 = 60_000;
const MIB: usize = 1 << 20;

/// No tenant here has a webhook; nothing is posted.
#[derive(Debug)]
struct NoHttp;

#[async_trait]
impl HttpPoster for NoHttp {
    async fn post(
        &self,
        _: &str,
        _: &[(String, String)],
        _: Bytes,
        _: Duration,
    ) -> Result<u16, PostError> {
        Err(PostError::Refused("no webhooks in this test".into()))
    }
}

/// `mallory` has 500 rules that each keep 1 MiB of state; `acme` has one small rule. Remembers
/// the windows the rules saw.
#[derive(Debug, Default)]
struct Hoarder {
    seen: Mutex<Vec<WindowSummary>>,
}

#[async_trait]
impl RuleRunner for Hoarder {
    async fn rules(&self, tenant: &str) -> Result<Vec<TenantRule>, String> {
        let n = if tenant == "mallory" { 500 } else { 1 };
        Ok((0..n)
            .map(|i| TenantRule {
                name: format!("rule-{i:03}"),
                params: toml::Table::new(),
                lifecycle: LifecycleConfig::default(),
            })
            .collect())
    }

    async fn run(
        &self,
        tenant: &str,
        _rule: &TenantRule,
        window: &WindowSummary,
        _params: &toml::Table,
        _state: Option<&[u8]>,
    ) -> Result<RuleOutput, String> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(window.clone());
        }
        let size = if tenant == "mallory" { MIB } else { 100 };
        Ok(RuleOutput {
            alerts: Vec::new(),
            state: Some(vec![7u8; size]),
            fuel_used: 1,
        })
    }
}

async fn evaluate(store: &LocalDirStore, runner: &Hoarder) -> sluice_core::evaluate::WindowReport {
    let evaluator = Evaluator {
        data: store,
        rules_store: store,
        runner,
        http: &NoHttp,
        config: EvaluateConfig::default(),
    };
    let mut run = evaluator
        .run_caught_up(START + 10 * MIN)
        .await
        .expect("evaluation");
    run.windows.remove(0)
}

async fn state_of(store: &LocalDirStore, tenant: &str) -> TenantState {
    let key = bucket_state_key(TenantBuckets::DEFAULT.of(tenant));
    let body = store.get(&key).await.expect("get").expect("state written");
    let mut states: BucketState = serde_json::from_slice(&body).expect("bucket state");
    let mut state = states.tenants.remove(tenant).expect("the tenant's state");
    if let Some(object) = &state.rule_state_object {
        let body = store
            .get(object)
            .await
            .expect("get")
            .expect("rule state object");
        state.rule_state = serde_json::from_slice(&body).expect("rule state");
    }
    state
}

/// The size of the state object of `tenant`'s bucket.
async fn bucket_object_bytes(store: &LocalDirStore, tenant: &str) -> usize {
    let key = bucket_state_key(TenantBuckets::DEFAULT.of(tenant));
    store.get(&key).await.expect("get").expect("state").len()
}

#[tokio::test]
async fn a_flood_of_distinct_services_and_patterns_is_capped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalDirStore::new(dir.path());
    let mut flood = TenantWindow::new("mallory", START, START + MIN);
    for i in 0..2_000u64 {
        flood.services.insert(
            format!("svc-{i:05}"),
            ServiceStats {
                count: 1 + i % 7,
                ..ServiceStats::default()
            },
        );
    }
    for i in 0..3_000u64 {
        flood.patterns.insert(
            format!("p{i:05}"),
            PatternStats {
                template: format!("flood {i}"),
                service: "svc-00000".into(),
                level: Level::Info,
                count: 1,
                sample: String::new(),
                sample_ts: START,
            },
        );
    }
    let total: u64 = flood.services.values().map(|s| s.count).sum();
    store_partials(
        &store,
        &[flood],
        TenantBuckets::DEFAULT,
        "shardId-000000000000",
        "test",
    )
    .await
    .expect("partials");
    let limits = TenantLimits::default();
    let runner = Hoarder::default();
    let report = evaluate(&store, &runner).await;

    let mallory = &report.tenants[0];
    let max_services = limits.max_services_per_window as usize;
    assert_eq!(mallory.folded_services, 2_000 - (max_services - 1));
    assert_eq!(
        mallory.folded_patterns,
        3_000 - limits.max_patterns_per_window as usize
    );
    let seen = runner
        .seen
        .lock()
        .map(|s| s[0].clone())
        .expect("a rule ran");
    assert_eq!(seen.services.len(), max_services);
    assert!(seen.patterns.len() <= limits.max_patterns_per_window as usize);
    let other = seen
        .services
        .iter()
        .find(|s| s.name == OTHER_SERVICE)
        .expect("the folded services are one `other` service");
    let kept: u64 = seen.services.iter().map(|s| s.count).sum();
    assert_eq!(kept, total, "folding keeps every event, under `other`");
    assert!(other.count > 0);
}

#[tokio::test]
async fn five_hundred_rules_with_a_mebibyte_of_state_each_are_refused_at_the_tenants_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalDirStore::new(dir.path());
    store_partials(
        &store,
        &[
            TenantWindow::new("acme", START, START + MIN),
            TenantWindow::new("mallory", START, START + MIN),
        ],
        TenantBuckets::DEFAULT,
        "shardId-000000000000",
        "test",
    )
    .await
    .expect("partials");
    let limits = TenantLimits::default();
    let report = evaluate(&store, &Hoarder::default()).await;

    let by_tenant: BTreeMap<&str, _> = report
        .tenants
        .iter()
        .map(|t| (t.tenant.as_str(), t))
        .collect();
    let mallory = by_tenant["mallory"];
    assert_eq!(
        mallory.rules_run,
        limits.rules(),
        "no more rules run than the limit"
    );
    assert!(
        mallory
            .rule_errors
            .iter()
            .any(|(r, e)| r == "*" && e.contains("500 rules, over the tenant's limit of 50")),
        "{:?}",
        mallory.rule_errors.first()
    );
    let kept = (limits.max_state_bytes as usize) / MIB;
    let refused: Vec<_> = mallory
        .rule_errors
        .iter()
        .filter(|(_, e)| e.contains("over the limit of"))
        .collect();
    assert_eq!(
        refused.len(),
        limits.rules() - kept,
        "{:?}",
        refused.first()
    );
    let state = state_of(&store, "mallory").await;
    assert_eq!(state.rule_state.len(), kept);
    let stored: usize = state.rule_state.values().map(|s| decoded_len(s)).sum();
    assert!(stored as u64 <= limits.max_state_bytes, "{stored}");
    // Mallory's megabytes are an object of its own: its bucket's object, which every window
    // of its neighbours reads and writes, stays small.
    assert!(
        state
            .rule_state_object
            .as_deref()
            .is_some_and(|k| k.starts_with("alerts/state/rules/tenant=mallory/")),
        "{:?}",
        state.rule_state_object
    );
    let bucket = bucket_object_bytes(&store, "mallory").await;
    assert!(
        bucket < 64 * 1024,
        "the bucket's state object is {bucket} bytes"
    );

    let acme = by_tenant["acme"];
    assert_eq!((acme.rules_run, acme.rule_errors.len()), (1, 0), "{acme:?}");
    assert_eq!(state_of(&store, "acme").await.rule_state.len(), 1);
}
