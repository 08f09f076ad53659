//! The evaluator end to end on the embedded default: partials on disk, a rule, the lifecycle, and
//! signed Alertmanager-shaped webhooks to a real HTTP server on 127.0.0.1.

use std::time::Duration;

use async_trait::async_trait;
use sluice_core::aggregate::decode_partials;
use sluice_core::aggregate::{aggregate_records, encode_partials, store_partials};
use sluice_core::alerting::delivery::RetryPolicy;
use sluice_core::alerting::lifecycle::LifecycleConfig;
use sluice_core::alerting::model::{RuleAlert, RuleOutput, Severity};
use sluice_core::evaluate::{
    BucketState, EvaluateConfig, Evaluator, HeldBack, RuleRunner, ShardWait, TenantRule,
    bucket_state_key, redrive,
};
use sluice_core::synth::{Generator, Incident, SynthConfig};
use sluice_core::tenant_bucket::TenantBuckets;
use sluice_core::window::progress::{self, ShardProgress};
use sluice_core::window::summary::WindowSummary;
use sluice_core::window::{TenantWindow, WindowAggregator, WindowConfig};
use sluice_core::{BlobStore, IngestConfig, LocalDirStore, StreamRecord};
use sluice_notify::HttpPoster;
use sluice_notify::receiver::Receiver;

const START: i64 = 1_714_564_800_000;
const MIN: i64 = 60_000;

/// A plain threshold on error rate, standing in for a tenant's rule (the wasm host has its own
/// tests; this one is about the evaluator around it).
#[derive(Debug)]
struct ErrorRateRule;

#[async_trait]
impl RuleRunner for ErrorRateRule {
    async fn rules(&self, _tenant: &str) -> Result<Vec<TenantRule>, String> {
        Ok(vec![TenantRule {
            name: "error-rate".into(),
            params: toml::Table::new(),
            lifecycle: LifecycleConfig {
                for_windows: 2,
                repeat_interval_ms: 3_600_000,
            },
        }])
    }

    async fn run(
        &self,
        _tenant: &str,
        _rule: &TenantRule,
        window: &WindowSummary,
        _params: &toml::Table,
        _state: Option<&[u8]>,
    ) -> Result<RuleOutput, String> {
        let alerts = window
            .services
            .iter()
            .filter(|s| s.count >= 20 && s.error_rate > 0.2)
            .map(|s| RuleAlert {
                key: format!("{}/error-rate", s.name),
                severity: Severity::Critical,
                title: format!("{} error rate {:.0}%", s.name, s.error_rate * 100.0),
                description: String::new(),
                labels: [("service".to_owned(), s.name.clone())].into(),
                value: s.error_rate,
            })
            .collect();
        Ok(RuleOutput {
            alerts,
            state: None,
            fuel_used: 1,
        })
    }
}

async fn seed_partials(store: &LocalDirStore) {
    let config = SynthConfig {
        tenants: 2,
        services_per_tenant: 3,
        events: 24_000,
        start_ms: START,
        duration_ms: 12 * MIN,
        incident: Some(Incident {
            tenant: "acme".into(),
            service: "checkout".into(),
            start_ms: START + 3 * MIN,
            end_ms: START + 8 * MIN,
            error_rate: 0.6,
            latency_factor: 3.0,
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
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let mine: Vec<StreamRecord> = records
            .iter()
            .filter(|r| *r.shard_id == *shard)
            .cloned()
            .collect();
        let mut agg = WindowAggregator::new(windows());
        aggregate_records(&IngestConfig::default(), &mut agg, &mine, START);
        store_partials(store, &agg.drain(), TenantBuckets::DEFAULT, shard, "test")
            .await
            .expect("partials stored");
    }
}

/// Removes the partials that `pick(key, window start)` selects; returns them (key, body).
async fn take_partials(
    store: &LocalDirStore,
    pick: impl Fn(&str, i64) -> bool,
) -> Vec<(String, bytes::Bytes)> {
    let mut taken = Vec::new();
    for key in store.list("windows/partials/").await.expect("list") {
        let start = sluice_core::evaluate::window_of_key(&key).expect("window in key");
        if pick(&key, start) {
            taken.push((
                key.clone(),
                store.get(&key).await.expect("get").expect("present"),
            ));
            store.delete(&key).await.expect("delete");
        }
    }
    taken
}

/// A store with both shards' partials and acme's webhook pointing at a fresh receiver (the
/// temporary directory lives as long as the first element).
async fn seeded_with_webhook() -> (tempfile::TempDir, LocalDirStore, Receiver) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalDirStore::new(dir.path());
    seed_partials(&store).await;
    let receiver = Receiver::start(b"hook-secret").await.expect("receiver");
    configure_webhook(&store, &receiver.url()).await;
    (dir, store, receiver)
}

/// Removes acme's partials of the windows from `from_ms` on: it sent no logs after that. Its
/// partials share their objects with the other tenants of its bucket, which keep theirs.
async fn acme_goes_quiet_from(store: &LocalDirStore, from_ms: i64) {
    for (key, body) in take_partials(store, |_, start| start >= from_ms).await {
        let rest: Vec<TenantWindow> = decode_partials(&body)
            .expect("partial")
            .into_iter()
            .filter(|p| p.tenant != "acme")
            .collect();
        if !rest.is_empty() {
            let body = encode_partials(&rest).expect("encodes");
            store
                .put(&key, body.into(), "application/gzip")
                .await
                .expect("put back");
        }
    }
}

/// The events of `tenant` in a stored partial object.
fn events_of(tenant: &str, body: &[u8]) -> u64 {
    decode_partials(body)
        .expect("partial")
        .iter()
        .filter(|p| p.tenant == tenant)
        .map(TenantWindow::count)
        .sum()
}

async fn configure_webhook(store: &LocalDirStore, url: &str) {
    let toml = format!("[[webhooks]]\nurl = \"{url}\"\nsecret = \"hook-secret\"\n");
    store
        .put("tenants/acme.toml", toml.into(), "application/toml")
        .await
        .expect("tenant config");
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        timeout: Duration::from_secs(2),
    }
}

/// One-minute windows with two minutes of lateness: the times below are worked out for them
/// (the default of no lateness is in the core's window tests).
fn windows() -> WindowConfig {
    WindowConfig {
        allowed_lateness_ms: 2 * MIN,
        ..WindowConfig::default()
    }
}

/// How long the progress path waits past a window's close for a quiet shard's first report.
fn first_report() -> i64 {
    ShardWait::default().first_report_ms
}

fn evaluator<'a>(store: &'a dyn BlobStore, http: &'a HttpPoster) -> Evaluator<'a> {
    Evaluator {
        data: store,
        rules_store: store,
        runner: &ErrorRateRule,
        http,
        config: EvaluateConfig {
            window: windows(),
            retry: quick_retry(),
            max_windows_per_run: 100,
            ..EvaluateConfig::default()
        },
    }
}

#[tokio::test]
async fn incident_fires_then_resolves_with_signed_alertmanager_webhooks_and_no_duplicates() {
    let (_dir, store, receiver) = seeded_with_webhook().await;
    receiver.fail_next(1);
    let http = HttpPoster::allowing_loopback().expect("client");

    let reports = evaluator(&store, &http)
        .run(START + 20 * MIN + first_report())
        .await
        .expect("evaluation")
        .windows;
    // Every window closed by then (end + 2 min lateness, plus the time a quiet shard's first
    // report may take) is evaluated; twelve have traffic.
    assert_eq!(reports.len(), 18);
    assert_eq!(reports.iter().filter(|w| !w.tenants.is_empty()).count(), 12);
    let got = receiver.received();
    assert_eq!(
        got.len(),
        2,
        "one firing and one resolved notification: {got:#?}"
    );
    assert_eq!(
        receiver.requests(),
        3,
        "the first attempt got a 500 and was retried once"
    );
    assert!(got.iter().all(|r| r.signature_valid), "signatures verify");
    let (firing, resolved) = (&got[0].payload, &got[1].payload);
    assert_eq!(
        (firing.version.as_str(), firing.status.as_str()),
        ("4", "firing")
    );
    assert_eq!(firing.alerts[0].labels["alertname"], "error-rate");
    assert_eq!(firing.alerts[0].labels["service"], "checkout");
    assert_eq!(firing.alerts[0].labels["tenant"], "acme");
    assert_eq!(firing.alerts[0].ends_at, "0001-01-01T00:00:00Z");
    assert_eq!(resolved.status, "resolved");
    assert_eq!(resolved.alerts[0].fingerprint, firing.alerts[0].fingerprint);
    assert!(got[0].idempotency_key.is_some());
    // `for: 2` windows: pending at minute 3, firing at the end of minute 4.
    assert_eq!(
        firing.alerts[0].starts_at,
        sluice_core::normalize::timestamp::format_rfc3339_ms(START + 4 * MIN)
    );
    let metrics = store.list("metrics/tenant=acme/").await.expect("list");
    assert_eq!(metrics.len(), 12, "a metrics object per window");
    let audit = store.list("alerts/tenant=acme/").await.expect("list");
    assert_eq!(audit.len(), 2, "{audit:?}");

    // Evaluating the same windows again sends nothing and writes nothing: the metrics, removed
    // here, are not written again.
    for key in &metrics {
        store.delete(key).await.expect("delete metrics");
    }
    store
        .delete("windows/state/watermark.json")
        .await
        .expect("reset watermark");
    let again = evaluator(&store, &http)
        .run(START + 20 * MIN)
        .await
        .expect("second run");
    assert!(
        again
            .windows
            .iter()
            .flat_map(|w| &w.tenants)
            .all(|t| t.already_evaluated)
    );
    assert_eq!(receiver.received().len(), 2, "no duplicate notifications");
    let rewritten = store.list("metrics/tenant=acme/").await.expect("list");
    assert!(
        rewritten.is_empty(),
        "rewritten by the second run: {rewritten:?}"
    );
}

#[tokio::test]
async fn failed_deliveries_are_kept_and_redriven() {
    let (_dir, store, receiver) = seeded_with_webhook().await;
    receiver.fail_next(1000);
    let http = HttpPoster::allowing_loopback().expect("client");
    evaluator(&store, &http)
        .run(START + 20 * MIN)
        .await
        .expect("evaluation");
    let kept = store
        .list("alerts/undelivered/tenant=acme/")
        .await
        .expect("list");
    assert_eq!(kept.len(), 2, "both notifications kept: {kept:?}");
    let record: serde_json::Value =
        serde_json::from_slice(&store.get(&kept[0]).await.expect("get").expect("present"))
            .expect("json");
    assert_eq!(record["error"], "HTTP 500");
    receiver.fail_next(0);
    let (ok, failed) = redrive(&store, &store, &http, Some("acme"), quick_retry())
        .await
        .expect("redrive");
    assert_eq!((ok, failed), (2, 0));
    assert!(
        store
            .list("alerts/undelivered/")
            .await
            .expect("list")
            .is_empty()
    );
    assert!(receiver.received().iter().all(|r| r.signature_valid));
}

#[tokio::test]
async fn a_firing_alert_resolves_when_its_tenant_stops_sending_logs() {
    let (_dir, store, receiver) = seeded_with_webhook().await;
    // acme goes quiet from minute 6, in the middle of its incident: no partials after that.
    let quiet_from = START + 6 * MIN;
    acme_goes_quiet_from(&store, quiet_from).await;
    let http = HttpPoster::allowing_loopback().expect("client");
    let reports = evaluator(&store, &http)
        .run(START + 20 * MIN)
        .await
        .expect("evaluation")
        .windows;

    let got = receiver.received();
    let statuses: Vec<&str> = got.iter().map(|r| r.payload.status.as_str()).collect();
    assert_eq!(statuses, ["firing", "resolved"], "{got:#?}");
    assert!(got.iter().all(|r| r.signature_valid));
    assert_eq!(
        got[1].payload.alerts[0].ends_at,
        sluice_core::normalize::timestamp::format_rfc3339_ms(quiet_from + MIN),
        "resolved at the end of the first window without logs"
    );
    // The quiet tenant is evaluated while it has an open alert, and not after.
    let acme_windows: Vec<i64> = reports
        .iter()
        .filter(|w| w.tenants.iter().any(|t| t.tenant == "acme"))
        .map(|w| w.start_ms)
        .collect();
    assert_eq!(acme_windows.last(), Some(&quiet_from), "{acme_windows:?}");
    assert!(
        reports
            .iter()
            .filter(|w| w.start_ms < START + 12 * MIN)
            .all(|w| w.tenants.iter().any(|t| t.tenant != "acme")),
        "the other tenant is evaluated in every window it has logs in"
    );
}

const SHARD_0: &str = "shardId-000000000000";
const SHARD_1: &str = "shardId-000000000001";

/// A shard's progress record, as the aggregate function writes it, with 1-minute Lambda windows.
async fn shard_at(store: &LocalDirStore, shard: &str, through_ms: i64, written_at_ms: i64) {
    let p = ShardProgress {
        shard: shard.into(),
        through_ms,
        window_ms: MIN,
        written_at_ms,
    };
    progress::record(store, &p).await.expect("progress written");
}

/// Takes shard 1's partials of the windows from `from_ms` on out of the store, as if its
/// aggregator still held them in its open Lambda window; returns them to put back later.
async fn withhold_shard_1(store: &LocalDirStore, from_ms: i64) -> Vec<(String, bytes::Bytes)> {
    let held = take_partials(store, |key, start| {
        key.contains(SHARD_1) && start >= from_ms
    })
    .await;
    assert!(!held.is_empty());
    held
}

#[tokio::test]
async fn a_closed_window_waits_for_a_busy_shard_and_then_counts_its_partials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalDirStore::new(dir.path());
    seed_partials(&store).await;
    let http = HttpPoster::allowing_loopback().expect("client");
    // Minute 6: shard 0 is through it; shard 1 is busy with the Lambda window of minute 5, so
    // its partials of the windows from minute 3 on are not stored yet.
    let held = withhold_shard_1(&store, START + 3 * MIN).await;
    shard_at(&store, SHARD_0, START + 6 * MIN, START + 6 * MIN + 1_000).await;
    shard_at(&store, SHARD_1, START + 5 * MIN, START + 5 * MIN + 2_000).await;

    let now = START + 6 * MIN + first_report() + 10_000;
    let run = evaluator(&store, &http).run(now).await.expect("evaluation");
    // Windows 0-2 closed (end + 2 min lateness) before shard 1's progress; window 3 closed at
    // minute 6, which shard 1 has not reached.
    let starts: Vec<i64> = run.windows.iter().map(|w| w.start_ms).collect();
    assert_eq!(starts, [START, START + MIN, START + 2 * MIN]);
    assert_eq!(
        run.waiting,
        Some(HeldBack {
            window_start_ms: START + 3 * MIN,
            shards: vec![SHARD_1.to_owned()],
        })
    );
    assert!(run.windows.iter().all(|w| w.lagging_shards.is_empty()));

    // Shard 1's final invocation stores its partials and moves its progress past minute 7.
    let mut expected = 0;
    for (key, body) in &held {
        let start = sluice_core::evaluate::window_of_key(key).expect("window");
        if start == START + 3 * MIN {
            expected += events_of("acme", body);
        }
        store
            .put(key, body.clone(), "application/gzip")
            .await
            .expect("put back");
    }
    for key in store.list("windows/partials/").await.expect("list") {
        if key.contains(SHARD_0)
            && sluice_core::evaluate::window_of_key(&key) == Some(START + 3 * MIN)
        {
            let body = store.get(&key).await.expect("get").expect("present");
            expected += events_of("acme", &body);
        }
    }
    shard_at(&store, SHARD_1, START + 7 * MIN, START + 7 * MIN + 1_000).await;
    let run = evaluator(&store, &http)
        .run(START + 7 * MIN + first_report() + 5_000)
        .await
        .expect("evaluation");
    assert_eq!(run.windows.len(), 1);
    assert_eq!(run.windows[0].start_ms, START + 3 * MIN);
    let acme = run.windows[0]
        .tenants
        .iter()
        .find(|t| t.tenant == "acme")
        .expect("acme evaluated");
    let counted: u64 = acme.summary.services.iter().map(|s| s.count).sum();
    assert_eq!(counted, expected, "both shards' events of minute 3 count");
    assert!(expected > 0);
    assert_eq!(
        run.waiting,
        Some(HeldBack {
            window_start_ms: START + 4 * MIN,
            shards: vec![SHARD_0.to_owned()],
        }),
        "minute 4 closed at minute 7, which shard 0 (busy: it wrote at minute 6) has not reached"
    );
}

#[tokio::test]
async fn a_window_is_not_evaluated_before_a_quiet_shard_could_report_a_record_from_before_its_close()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalDirStore::new(dir.path());
    seed_partials(&store).await;
    let http = HttpPoster::allowing_loopback().expect("client");
    // Shard 0 is through minute 7. Shard 1 was quiet (no progress record at all), and records
    // reached it just before window 3 closed at minute 6: Lambda has not invoked its
    // aggregator for them yet, so nothing says it is busy, and its partials are not stored.
    let _held = withhold_shard_1(&store, START + 3 * MIN).await;
    shard_at(&store, SHARD_0, START + 7 * MIN, START + 7 * MIN).await;

    let close = START + 6 * MIN;
    let first_invocation = close + 5_000;
    assert!(first_invocation < close + first_report());
    // A run after the close but before that invocation.
    let run = evaluator(&store, &http)
        .run(close + 1_000)
        .await
        .expect("evaluation");
    let starts: Vec<i64> = run.windows.iter().map(|w| w.start_ms).collect();
    assert_eq!(
        starts,
        [START, START + MIN, START + 2 * MIN],
        "window 3 waits for a first report that may still come"
    );
    assert!(run.waiting.is_none());

    // The first invocation comes within that time and marks shard 1 busy in the Lambda window
    // of minute 5: window 3 now waits for it by name.
    shard_at(&store, SHARD_1, START + 5 * MIN, first_invocation).await;
    let run = evaluator(&store, &http)
        .run(close + first_report())
        .await
        .expect("evaluation");
    assert!(run.windows.is_empty(), "{:?}", run.windows);
    assert_eq!(
        run.waiting,
        Some(HeldBack {
            window_start_ms: START + 3 * MIN,
            shards: vec![SHARD_1.to_owned()],
        })
    );
}

#[tokio::test]
async fn a_runner_that_tracks_its_shards_gets_only_the_windows_closed_before_its_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalDirStore::new(dir.path());
    seed_partials(&store).await;
    let http = HttpPoster::allowing_loopback().expect("client");
    // Long after every window, but the runner vouches only for arrivals before minute 4: one
    // of its shards has not been read past it. No progress record exists, and none is needed.
    let now = START + 30 * MIN;
    let run = evaluator(&store, &http)
        .run_through(now, START + 4 * MIN + 1)
        .await
        .expect("evaluation");
    // Windows close 2 minutes (the lateness) after they end: minutes 0 and 1 by minute 4.
    let starts: Vec<i64> = run.windows.iter().map(|w| w.start_ms).collect();
    assert_eq!(starts, [START, START + MIN]);
    assert!(run.waiting.is_none());

    // Once the runner is complete through now, the rest follow, in order.
    let run = evaluator(&store, &http)
        .run_through(now, now)
        .await
        .expect("evaluation");
    assert_eq!(
        run.windows.first().map(|w| w.start_ms),
        Some(START + 2 * MIN)
    );
    assert!(run.windows.len() > 1);
}

#[tokio::test]
async fn a_stuck_shard_holds_windows_back_only_up_to_the_cap_and_a_quiet_one_not_at_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalDirStore::new(dir.path());
    seed_partials(&store).await;
    let http = HttpPoster::allowing_loopback().expect("client");
    let wait = ShardWait::default();
    // Shard 1 keeps retrying the Lambda window of minute 0 (its progress is fresh, never
    // further); shard 0 is through everything.
    withhold_shard_1(&store, START).await;
    shard_at(&store, SHARD_0, START + 30 * MIN, START + 30 * MIN).await;
    let now = START + 3 * MIN + wait.max_wait_ms;
    shard_at(&store, SHARD_1, START, now - 1_000).await;
    let run = evaluator(&store, &http).run(now).await.expect("evaluation");
    // Window 0 closed at minute 3 and has waited the longest wait: evaluated without shard 1.
    // Window 1 closed at minute 4 and still waits.
    assert_eq!(run.windows.len(), 1);
    assert_eq!(run.windows[0].start_ms, START);
    assert_eq!(run.windows[0].lagging_shards, [SHARD_1]);
    assert_eq!(
        run.waiting.map(|w| w.window_start_ms),
        Some(START + MIN),
        "the next window waits its own longest wait"
    );

    // Shard 1 goes quiet: after one Lambda window plus the grace with no progress it is no
    // longer waited for.
    let later = now + first_report() + 1_000;
    shard_at(&store, SHARD_1, START, later - MIN - wait.grace_ms - 1).await;
    let run = evaluator(&store, &http)
        .run(later)
        .await
        .expect("evaluation");
    assert!(run.waiting.is_none(), "{:?}", run.waiting);
    // Windows 1-10: every one closed by then.
    assert_eq!(run.windows.len(), 10);
    assert!(run.windows.iter().all(|w| w.lagging_shards.is_empty()));
}

#[tokio::test]
async fn open_alerts_in_per_tenant_state_from_before_buckets_still_resolve() {
    let (_dir, store, receiver) = seeded_with_webhook().await;
    let http = HttpPoster::allowing_loopback().expect("client");

    // Windows 0-5: acme's error-rate alert fires at the end of minute 4.
    evaluator(&store, &http)
        .run(START + 8 * MIN)
        .await
        .expect("evaluation");
    assert_eq!(receiver.received().len(), 1, "firing");

    // A store written before state was kept per bucket: one object per tenant instead.
    let buckets = store.list("alerts/state/bucket=").await.expect("list");
    assert_eq!(
        buckets.len(),
        TenantBuckets::DEFAULT.count() as usize,
        "one state object per bucket, whatever the number of tenants: {buckets:?}"
    );
    for key in buckets {
        let body = store.get(&key).await.expect("get").expect("present");
        let states: BucketState = serde_json::from_slice(&body).expect("bucket state");
        for (tenant, state) in states.tenants {
            store
                .put(
                    &format!("alerts/state/tenant={tenant}.json"),
                    serde_json::to_vec(&state).expect("json").into(),
                    "application/json",
                )
                .await
                .expect("put");
        }
        store.delete(&key).await.expect("delete");
    }
    // acme goes quiet from minute 6: only its old state says it still has an alert to resolve.
    acme_goes_quiet_from(&store, START + 6 * MIN).await;
    evaluator(&store, &http)
        .run(START + 20 * MIN)
        .await
        .expect("evaluation");
    let statuses: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.payload.status.clone())
        .collect();
    assert_eq!(statuses, ["firing", "resolved"]);
    let acme = bucket_state_key(TenantBuckets::DEFAULT.of("acme"));
    let body = store.get(&acme).await.expect("get").expect("acme's bucket");
    let states: BucketState = serde_json::from_slice(&body).expect("bucket state");
    assert!(
        !states.tenants["acme"].has_open_alerts(),
        "the upgrade carried acme's alert into its bucket's state, where it resolved"
    );
}
