//! `sluice local run` end to end: records put into a Kinesis stream on the emulator, the
//! event-source-mapping runner (`sluice-local`) feeding the real ingest and aggregate functions,
//! the evaluator running real tenant rules (wasm), and webhooks arriving at a receiver in the
//! test. Parquet is read back with pyarrow and DuckDB.
//!
//! Needs an emulator (`SLUICE_TEST_ENDPOINT`), and for the rule tests the built components in
//! `$SLUICE_PLUGINS_WASM_DIR` (`cargo xtask test` builds them; or `cargo build --target
//! wasm32-wasip2` in `plugins/`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_s3::config::Credentials;
use bytes::Bytes;
use serde_json::Value;
use sluice_core::BlobStore;
use sluice_core::synth::{Generator, Incident, Shape, SynthConfig, SynthEvent};
use sluice_core::window::WindowConfig;
use sluice_e2e::fault_proxy::FaultProxy;
use sluice_e2e::{REGION, TestBucket, dead_letter_lines, endpoint, verify_parquet};
use sluice_local::provision::{self, Clients, Resources};
use sluice_local::runner::{RunConfig, RunReport, Runner, StopReason};
use sluice_local::shard_worker::PollSettings;
use sluice_notify::receiver::Receiver;
use sluice_rules::tenant_rules::register;
use sluice_rules::{EngineConfig, Host, Policy};

type TestResult = anyhow::Result<()>;

const WEBHOOK_SECRET: &[u8] = b"local-runner-secret";

/// SDK configuration for `endpoint`, with dummy credentials and `max_attempts` per call.
async fn sdk(endpoint: &str, max_attempts: u32) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::from_static(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "sluice-e2e"))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts))
        .load()
        .await
}

/// A fresh stream, data and rules buckets and on-failure queue, created by `sluice local up`.
#[derive(Debug)]
struct Pipeline {
    data: TestBucket,
    rules: TestBucket,
    stream: String,
    queue: String,
    state_dir: tempfile::TempDir,
    sdk: SdkConfig,
}

impl Pipeline {
    async fn create(shards: u32) -> anyhow::Result<Self> {
        let data = TestBucket::create().await?;
        let rules = TestBucket::create().await?;
        let suffix = format!("{}-{:08x}", std::process::id(), fastrand::u32(..));
        let sdk = sdk(&endpoint(), 3).await;
        let resources = Resources {
            stream: format!("sluice-e2e-{suffix}"),
            shards,
            data_bucket: data.name.clone(),
            rules_bucket: rules.name.clone(),
            failure_queue: format!("sluice-e2e-failures-{suffix}"),
        };
        let created = provision::up(&Clients::new(&sdk), &resources).await?;
        ensure!(created.len() == 4, "{created:?}");
        // Running it again finds everything and creates nothing.
        let again = provision::up(&Clients::new(&sdk), &resources).await?;
        ensure!(
            again.iter().all(|p| p.status == provision::Status::Found),
            "local up is not idempotent: {again:?}"
        );
        Ok(Self {
            data,
            rules,
            stream: resources.stream,
            queue: resources.failure_queue,
            state_dir: tempfile::tempdir()?,
            sdk,
        })
    }

    /// Settings for a quick run: 1 s windows, 1 s lateness, evaluate every second, stop when
    /// idle, a safety limit of two minutes.
    fn config(&self) -> RunConfig {
        let mut c = RunConfig::new(
            &self.stream,
            &self.data.name,
            &self.rules.name,
            self.state_dir.path().to_path_buf(),
        );
        c.failure_queue = Some(self.queue.clone());
        c.window = WindowConfig {
            window_ms: 1_000,
            allowed_lateness_ms: 1_000,
            ..WindowConfig::default()
        };
        for m in [&mut c.ingest, &mut c.aggregate] {
            m.batching_window = Duration::from_millis(200);
            m.retry_backoff = Duration::from_millis(50);
            m.max_retry_backoff = Duration::from_millis(500);
        }
        c.aggregate.tumbling_window = Some(Duration::from_secs(1));
        c.evaluate_every = Some(Duration::from_secs(1));
        c.until_idle = Some(Duration::from_millis(500));
        c.max_runtime = Some(Duration::from_secs(120));
        c.poll = PollSettings {
            idle_poll: Duration::from_millis(100),
            error_backoff: Duration::from_millis(100),
        };
        c.discovery_interval = Duration::from_secs(2);
        c.progress_every = Duration::from_millis(100);
        c
    }

    async fn run(&self, config: RunConfig) -> anyhow::Result<RunReport> {
        self.run_on(&self.sdk, config).await
    }

    async fn run_on(&self, sdk: &SdkConfig, config: RunConfig) -> anyhow::Result<RunReport> {
        let report = Runner::connect(sdk, config)
            .await?
            .run(std::future::pending())
            .await?;
        ensure!(
            report.stop_reason == StopReason::Idle,
            "the runner did not drain: {report:#?}"
        );
        Ok(report)
    }

    /// Puts records with PutRecords (500 a call), retrying entries that failed.
    async fn put(&self, events: &[SynthEvent]) -> TestResult {
        let entries = events
            .iter()
            .map(|e| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&e.partition_key)
                    .data(Blob::new(e.payload.clone()))
                    .build()
            })
            .collect::<Result<_, _>>()?;
        let kinesis = aws_sdk_kinesis::Client::new(&self.sdk);
        sluice_e2e::put_records(&kinesis, &self.stream, entries).await
    }

    /// Rows of the raw tier (`raw/`: nothing is compacted yet), checked by pyarrow and DuckDB
    /// to be `rows`, none of them twice.
    async fn assert_parquet_rows(&self, rows: u64) -> TestResult {
        let dir = tempfile::tempdir()?;
        self.data.download("raw/", dir.path()).await?;
        verify_parquet(dir.path(), rows)
    }

    /// Runs `config` through a fault proxy that, once the runner reads, answers the next
    /// `slowdowns` S3 requests with 503 SlowDown and drops the next `drops` connections; each
    /// SDK call makes one attempt, so every fault reaches the mapping's own retries.
    async fn run_through_faults(
        &self,
        mut config: RunConfig,
        slowdowns: u32,
        drops: u32,
    ) -> anyhow::Result<(RunReport, sluice_e2e::fault_proxy::Injected)> {
        let proxy = FaultProxy::start(&endpoint()).await?;
        let through_proxy = sdk(&proxy.endpoint(), 1).await;
        config.evaluate_every = None;
        for m in [&mut config.ingest, &mut config.aggregate] {
            m.max_retry_attempts = None;
            m.max_record_age = None;
        }
        let plan = proxy.plan().clone();
        let armed = std::sync::atomic::AtomicBool::new(false);
        let report = Runner::connect(&through_proxy, config)
            .await?
            .on_progress(Box::new(move |_, _| {
                if !armed.swap(true, Ordering::SeqCst) {
                    plan.s3_slowdown_next.store(slowdowns, Ordering::SeqCst);
                    plan.drop_next.store(drops, Ordering::SeqCst);
                }
            }))
            .run(std::future::pending())
            .await?;
        ensure!(report.stop_reason == StopReason::Idle, "{report:#?}");
        Ok((report, proxy.plan().injected()))
    }

    /// No two rows of the raw tier share an `event_id` (the generated events carry none of
    /// their own, so each is its origin's).
    async fn assert_event_ids_unique(&self) -> TestResult {
        let dir = tempfile::tempdir()?;
        self.data.download("raw/", dir.path()).await?;
        let rows = sluice_e2e::parquet_rows(dir.path(), &["event_id"])?;
        let ids: std::collections::HashSet<&str> =
            rows.iter().filter_map(|r| r["event_id"].as_str()).collect();
        ensure!(
            ids.len() == rows.len(),
            "{} rows but {} distinct event ids",
            rows.len(),
            ids.len()
        );
        Ok(())
    }

    /// Every dead letter under `dlq/`.
    async fn dead_letters(&self) -> anyhow::Result<Vec<Value>> {
        let mut letters = Vec::new();
        for key in self.data.keys("dlq/").await? {
            letters.extend(dead_letter_lines(&self.data.object(&key).await?)?);
        }
        Ok(letters)
    }

    /// Events counted in every window partial written (summed over services).
    async fn events_in_partials(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for key in self.data.keys("windows/partials/").await? {
            for partial in sluice_core::aggregate::decode_partials(&self.data.object(&key).await?)?
            {
                total += partial.count();
            }
        }
        Ok(total)
    }

    /// Events in every evaluated window, as the metrics Parquet under `metrics/` records them
    /// (read back with DuckDB).
    async fn events_in_metrics(&self) -> anyhow::Result<u64> {
        let dir = tempfile::tempdir()?;
        self.data.download("metrics/", dir.path()).await?;
        let pattern = dir.path().join("metrics").join("**").join("*.parquet");
        let out = sluice_e2e::run_python(
            "import duckdb, sys\n\
             print(duckdb.sql(f\"SELECT sum(count) FROM read_parquet('{sys.argv[1]}')\").fetchall()[0][0])",
            &[pattern.to_str().context("non-UTF-8 temp dir")?],
        )?;
        out.trim()
            .parse()
            .with_context(|| format!("DuckDB printed {out:?}"))
    }

    /// Messages in the on-failure queue.
    async fn failure_messages(&self) -> anyhow::Result<usize> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let url = sqs.get_queue_url().queue_name(&self.queue).send().await?;
        let out = sqs
            .receive_message()
            .queue_url(url.queue_url().unwrap_or_default())
            .max_number_of_messages(10)
            .send()
            .await?;
        Ok(out.messages().len())
    }
}

/// Synthetic traffic from 1.5 s ago, over one second, for `tenants` tenants and 2 services
/// each; acme/checkout fails 80% of its requests throughout.
fn traffic(events: usize, tenants: usize, malformed_every: Option<usize>) -> Vec<SynthEvent> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let start = now - 1_500;
    Generator::new(SynthConfig {
        tenants,
        services_per_tenant: 2,
        events,
        start_ms: start,
        duration_ms: 1_000,
        seed: fastrand::u64(..),
        incident: Some(Incident {
            tenant: "acme".into(),
            service: "checkout".into(),
            start_ms: start,
            end_ms: now,
            error_rate: 0.8,
            latency_factor: 3.0,
        }),
        malformed_every,
        text_services: false,
        shape: Shape::Uniform,
    })
    .collect()
}

/// Uploads a rule for `tenant` and registers it, as the registry function does.
async fn install_rule(
    rules: &dyn BlobStore,
    tenant: &str,
    name: &str,
    wasm_file: &str,
    manifest: &str,
) -> TestResult {
    let wasm = sluice_e2e::rule_component(wasm_file)?;
    rules
        .put(
            &format!("rules/{tenant}/{name}/module.wasm"),
            Bytes::from(wasm),
            "application/wasm",
        )
        .await?;
    rules
        .put(
            &format!("rules/{tenant}/{name}/rule.toml"),
            Bytes::from(manifest.to_owned()),
            "application/toml",
        )
        .await?;
    let host = Host::new(EngineConfig::default())?;
    let status = register(&host, rules, &Policy::default(), tenant, name).await?;
    ensure!(status.accepted(), "{tenant}/{name}: {status:?}");
    Ok(())
}

/// The threshold example for acme, alerting at once (`for_windows = 1`), with a webhook to
/// `receiver`.
async fn install_threshold_for_acme(rules: &dyn BlobStore, receiver: &Receiver) -> TestResult {
    let manifest = std::fs::read_to_string(
        sluice_e2e::repo_root().join("plugins/examples/threshold/rule.toml"),
    )?;
    install_rule(rules, "acme", "threshold", "threshold.wasm", &manifest).await?;
    let tenant = format!(
        "[[webhooks]]\nurl = \"{}\"\nsecret = \"{}\"\n\n[rules.threshold]\nfor_windows = 1\n",
        receiver.url(),
        String::from_utf8_lossy(WEBHOOK_SECRET)
    );
    rules
        .put("tenants/acme.toml", Bytes::from(tenant), "application/toml")
        .await?;
    Ok(())
}

fn assert_acme_checkout_alert_arrived(receiver: &Receiver) {
    let got = receiver.received();
    let alert = got
        .iter()
        .filter(|r| r.payload.status == "firing")
        .flat_map(|r| r.payload.alerts.iter().map(move |a| (r, a)))
        .find(|(_, a)| {
            a.labels.get("tenant").map(String::as_str) == Some("acme")
                && a.labels.get("service").map(String::as_str) == Some("checkout")
        });
    let (request, _) = alert.unwrap_or_else(|| panic!("no firing acme/checkout alert in {got:#?}"));
    assert!(
        request.signature_valid,
        "the webhook is signed with the tenant's secret"
    );
}

/// Fetches `/metrics` from a running runner (plain HTTP/1.0 over TCP).
async fn scrape(addr: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body)
}

fn free_loopback_addr() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_become_parquet_windows_and_an_alert_at_the_tenants_webhook() -> TestResult {
    let pipeline = Pipeline::create(2).await?;
    let receiver = Receiver::start(WEBHOOK_SECRET).await?;
    install_threshold_for_acme(&pipeline.rules.store(), &receiver).await?;
    let events = traffic(3_000, 2, None);
    pipeline.put(&events).await?;

    let mut config = pipeline.config();
    let metrics_addr = free_loopback_addr()?;
    config.metrics_addr = Some(metrics_addr);
    // Scrape /metrics while the runner works.
    let scraper = tokio::spawn(async move {
        let mut last = String::new();
        for _ in 0..600 {
            if let Ok(text) = scrape(&metrics_addr.to_string()).await
                && text.contains("sluice_local_records_total{mapping=\"ingest\"} 3000")
            {
                return text;
            }
            if let Ok(text) = scrape(&metrics_addr.to_string()).await {
                last = text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last
    });
    let report = pipeline.run(config).await?;

    // Records in = Parquet rows + dead letters, exactly.
    let letters = pipeline.dead_letters().await?;
    assert!(letters.is_empty(), "no bad records were sent: {letters:#?}");
    pipeline.assert_parquet_rows(3_000).await?;
    assert_eq!(report.metrics.mappings["ingest"].records, 3_000);
    assert_eq!(report.metrics.mappings["ingest"].rows_stored, 3_000);
    assert_eq!(report.metrics.mappings["aggregate"].records, 3_000);
    assert_eq!(report.shards, 2);

    // Every event is counted in exactly one window partial; summaries were written.
    assert_eq!(pipeline.events_in_partials().await?, 3_000);
    // Each shard's aggregation recorded its progress, and no window was evaluated before both
    // shards' partials were in, although the runner starts on a backlog, with a shard not read
    // yet: every event counts in exactly one evaluated window.
    assert_eq!(pipeline.data.keys("windows/progress/").await?.len(), 2);
    assert_eq!(pipeline.events_in_metrics().await?, 3_000);

    assert_acme_checkout_alert_arrived(&receiver);
    assert!(
        report.metrics.evaluator.alerts_sent >= 1,
        "{:?}",
        report.metrics.evaluator
    );
    assert_eq!(report.metrics.evaluator.rule_errors, 0);
    assert_eq!(pipeline.failure_messages().await?, 0, "nothing given up on");

    let text = scraper.await?;
    for needle in [
        "sluice_local_records_total{mapping=\"ingest\"} 3000",
        "sluice_local_iterator_age_milliseconds{mapping=\"aggregate\",shard=\"shardId-000000000001\"}",
        "# TYPE sluice_local_alerts_sent_total counter",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle:?}:\n{text}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_dead_lettered_with_reasons_and_every_good_one_is_stored()
-> TestResult {
    let pipeline = Pipeline::create(1).await?;
    let mut events = traffic(1_400, 2, Some(7));
    // Two more kinds: no tenant anywhere, and not UTF-8.
    events.push(SynthEvent {
        ts_ms: 0,
        partition_key: "/orphan".into(),
        payload: br#"{"level":"info","message":"who am i"}"#.to_vec(),
        malformed: true,
    });
    events.push(SynthEvent {
        ts_ms: 0,
        partition_key: "acme/api".into(),
        payload: vec![0xff, 0xfe, 0x00, b'x'],
        malformed: true,
    });
    let bad = events.iter().filter(|e| e.malformed).count() as u64;
    let good = events.len() as u64 - bad;
    ensure!(bad >= 200, "{bad} malformed records");
    pipeline.put(&events).await?;

    let mut config = pipeline.config();
    config.evaluate_every = None;
    let report = pipeline.run(config).await?;

    let letters = pipeline.dead_letters().await?;
    assert_eq!(
        letters.len() as u64,
        bad,
        "every bad record is dead-lettered once"
    );
    for letter in &letters {
        assert!(
            !letter["reason"].as_str().unwrap_or_default().is_empty(),
            "{letter}"
        );
        assert!(
            !letter["reason_kind"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{letter}"
        );
    }
    let kinds: std::collections::BTreeSet<&str> = letters
        .iter()
        .filter_map(|l| l["reason_kind"].as_str())
        .collect();
    for kind in ["not_json", "not_utf8", "no_tenant"] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    pipeline.assert_parquet_rows(good).await?;
    // Aggregation skips what ingest dead-letters, and counts every good event once.
    assert_eq!(pipeline.events_in_partials().await?, good);
    assert_eq!(report.metrics.mappings["ingest"].dead_lettered, bad);
    assert_eq!(report.metrics.mappings["ingest"].records_to_destination, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_stream_resumes_without_losing_or_duplicating_records() -> TestResult {
    let pipeline = Pipeline::create(1).await?;
    let events = traffic(6_000, 2, None);
    pipeline.put(&events).await?;

    // Small batches, so the kill lands in the middle of the stream.
    let mut config = pipeline.config();
    config.evaluate_every = None;
    config.until_idle = None;
    for m in [&mut config.ingest, &mut config.aggregate] {
        m.batch_size = 100;
        m.batching_window = Duration::ZERO;
    }
    let seen = Arc::new(AtomicU64::new(0));
    let progress = seen.clone();
    let runner = Runner::connect(&pipeline.sdk, config.clone())
        .await?
        .on_progress(Box::new(move |snapshot, _| {
            let ingest = snapshot.mappings.get("ingest").map_or(0, |m| m.records);
            progress.store(ingest, Ordering::SeqCst);
        }));
    let task = tokio::spawn(runner.run(std::future::pending()));
    let mut waited = 0;
    while seen.load(Ordering::SeqCst) < 1_500 && waited < 1_200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    // Killed: no clean shutdown, whatever batch is in flight is abandoned. (The workers are
    // tasks of their own, cancelled at their next await; give them a moment to be gone, as a
    // killed process would be.)
    task.abort();
    let _ = task.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = seen.load(Ordering::SeqCst);
    assert!(
        (1_500..6_000).contains(&before),
        "killed after {before} records"
    );

    config.until_idle = Some(Duration::from_millis(500));
    let report = pipeline.run(config).await?;
    let redelivered = report.metrics.mappings["ingest"].records;
    assert!(
        redelivered < 6_000,
        "the restart resumed from the checkpoint ({redelivered} records read again)"
    );

    // Nothing lost, nothing duplicated: re-delivered batches overwrote their own objects.
    pipeline.assert_parquet_rows(6_000).await?;
    // The window state survived the kill with the checkpoint: every event counted once.
    assert_eq!(pipeline.events_in_partials().await?, 6_000);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_slowdowns_and_dropped_connections_are_retried_until_every_record_is_stored()
-> TestResult {
    let pipeline = Pipeline::create(1).await?;
    let events = traffic(2_000, 2, None);
    pipeline.put(&events).await?;

    let mut config = pipeline.config();
    for m in [&mut config.ingest, &mut config.aggregate] {
        m.batch_size = 250;
    }
    let (report, injected) = pipeline.run_through_faults(config, 25, 8).await?;
    assert!(injected.s3_slowdowns >= 20, "{injected:?}");
    assert!(injected.drops >= 1, "{injected:?}");
    assert!(
        report.metrics.mappings["ingest"].function_errors > 0,
        "the faults reached the mapping: {:?}",
        report.metrics.mappings
    );
    pipeline.assert_parquet_rows(2_000).await?;
    assert_eq!(pipeline.events_in_partials().await?, 2_000);
    assert_eq!(pipeline.failure_messages().await?, 0, "nothing given up on");
    Ok(())
}

/// Each re-delivery shape Lambda may make (docs/ARCHITECTURE.md §11), rehearsed on every batch
/// while S3 throttles and drops connections: every record stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_redelivery_shape_through_s3_faults_stores_each_record_once() -> TestResult {
    use sluice_local::Redelivery;
    for shape in [
        Redelivery::Identical,
        Redelivery::Longer,
        Redelivery::Bisect,
    ] {
        let pipeline = Pipeline::create(2).await?;
        let events = traffic(1_500, 3, None);
        pipeline.put(&events).await?;
        let mut config = pipeline.config();
        config.ingest.redelivery = shape;
        for m in [&mut config.ingest, &mut config.aggregate] {
            m.batch_size = 200;
        }
        let (report, _) = pipeline
            .run_through_faults(config, 10, 4)
            .await
            .with_context(|| format!("{shape:?}"))?;
        let ingest = &report.metrics.mappings["ingest"];
        assert!(
            ingest.function_errors > 0,
            "{shape:?}: the rehearsed time-outs count as errors"
        );
        pipeline
            .assert_parquet_rows(1_500)
            .await
            .with_context(|| format!("{shape:?}"))?;
        pipeline
            .assert_event_ids_unique()
            .await
            .with_context(|| format!("{shape:?}"))?;
        assert_eq!(pipeline.failure_messages().await?, 0, "{shape:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_rule_does_not_stop_another_tenants_alert() -> TestResult {
    let pipeline = Pipeline::create(1).await?;
    let receiver = Receiver::start(WEBHOOK_SECRET).await?;
    let rules = pipeline.rules.store();
    install_threshold_for_acme(&rules, &receiver).await?;
    // globex's rule passes the registry's check with harmless parameters, then the tenant's
    // configuration turns it into an infinite loop: it must run out of fuel or time on every
    // window, without holding anyone else up.
    install_rule(
        &rules,
        "globex",
        "misbehave",
        "misbehave.wasm",
        "[rule]\nname = \"misbehave\"\napi = \"0.1.0\"\n\n[params]\ndo = \"echo\"\n",
    )
    .await?;
    rules
        .put(
            "tenants/globex.toml",
            Bytes::from_static(b"[rules.misbehave]\nfor_windows = 1\nparams = { do = \"loop\" }\n"),
            "application/toml",
        )
        .await?;
    let events = traffic(2_000, 2, None);
    pipeline.put(&events).await?;

    let report = pipeline.run(pipeline.config()).await?;
    assert_acme_checkout_alert_arrived(&receiver);
    assert!(
        report.metrics.evaluator.rule_errors >= 1,
        "the hostile rule failed, and was counted: {:?}",
        report.metrics.evaluator
    );
    pipeline.assert_parquet_rows(2_000).await?;
    Ok(())
}

impl Pipeline {
    /// `sluice local run` as a child process against this pipeline, with 1 s windows and
    /// 1 s lateness, its metrics on `metrics_addr`, and `extra` arguments.
    fn command(&self, metrics_addr: &str, extra: &[&str]) -> anyhow::Result<std::process::Command> {
        let mut cmd = std::process::Command::new(sluice_e2e::sluice_binary()?);
        cmd.args([
            "local",
            "run",
            "--endpoint",
            &endpoint(),
            "--region",
            REGION,
        ])
        .args(["--stream", &self.stream])
        .args(["--data-bucket", &self.data.name])
        .args(["--rules-bucket", &self.rules.name])
        .args(["--failure-queue", &self.queue])
        .arg("--state-dir")
        .arg(self.state_dir.path())
        .args(["--metrics-addr", metrics_addr])
        .args(["--window-seconds", "1", "--allowed-lateness-seconds", "1"])
        .args(["--poll-interval-ms", "100", "--progress-seconds", "0"])
        .args(extra)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdin(std::process::Stdio::null());
        Ok(cmd)
    }

    /// Records in the shards that have a parent (the children of a reshard), as the stream
    /// serves them from their trim horizon.
    async fn records_in_child_shards(&self) -> anyhow::Result<usize> {
        let kinesis = aws_sdk_kinesis::Client::new(&self.sdk);
        let shards = kinesis
            .list_shards()
            .stream_name(&self.stream)
            .send()
            .await?;
        let mut total = 0;
        for shard in shards.shards() {
            if shard.parent_shard_id().is_none() {
                continue;
            }
            let mut iterator = kinesis
                .get_shard_iterator()
                .stream_name(&self.stream)
                .shard_id(shard.shard_id())
                .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
                .send()
                .await?
                .shard_iterator
                .context("no shard iterator")?;
            loop {
                let page = kinesis
                    .get_records()
                    .shard_iterator(&iterator)
                    .send()
                    .await?;
                total += page.records().len();
                match page.next_shard_iterator() {
                    Some(next) if !page.records().is_empty() => iterator = next.to_owned(),
                    _ => break,
                }
            }
        }
        Ok(total)
    }
}

/// The value of the `sluice_local_records_total` sample of the ingest mapping.
fn ingest_records(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("sluice_local_records_total{mapping=\"ingest\"} "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_process_killed_with_sigkill_resumes_without_losing_or_duplicating_records()
-> TestResult {
    let pipeline = Pipeline::create(2).await?;
    let total = 6_000u64;
    let events = traffic(usize::try_from(total)?, 2, None);
    pipeline.put(&events).await?;

    let addr = free_loopback_addr()?.to_string();
    let small_batches = ["--batch-size", "100", "--batching-window-seconds", "0"];
    // Both processes rehearse Lambda's re-deliveries on every batch (docs/ARCHITECTURE.md §11):
    // longer ones before the kill, bisects after it.
    let mut first = pipeline
        .command(&addr, &small_batches)?
        .args(["--no-evaluate", "--redelivery", "longer"])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let mut before = 0;
    for _ in 0..1_200 {
        if let Some(status) = first.try_wait()? {
            anyhow::bail!("the runner exited on its own: {status}");
        }
        before = scrape(&addr)
            .await
            .ok()
            .and_then(|m| ingest_records(&m))
            .unwrap_or(0);
        if before >= 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL: no shutdown path runs, the batches in flight are abandoned.
    first.kill()?;
    first.wait()?;
    assert!(
        (500..total).contains(&before),
        "killed after {before} records"
    );

    let mut second = pipeline.command("127.0.0.1:0", &small_batches)?;
    second.args(["--no-evaluate", "--until-idle", "--idle-seconds", "1"]);
    second.args(["--redelivery", "bisect"]);
    second.args(["--max-runtime-seconds", "120", "--json"]);
    let out = tokio::task::spawn_blocking(move || second.output()).await??;
    ensure!(
        out.status.success(),
        "the restarted runner failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stdout).into_owned())?;
    assert_eq!(report["stop_reason"], "idle", "{report:#}");
    let read_again = report["metrics"]["mappings"]["ingest"]["records"]
        .as_u64()
        .context("no ingest records in the report")?;
    assert!(
        read_again < total,
        "the restart resumed from the checkpoints ({read_again} records read again)"
    );

    // Nothing lost, nothing duplicated: batches delivered twice overwrote their own objects.
    pipeline.assert_parquet_rows(total).await?;
    pipeline.assert_event_ids_unique().await?;
    // The window state was checkpointed with the sequence numbers: every event counted once.
    assert_eq!(pipeline.events_in_partials().await?, total);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_while_running_is_discovered_and_children_are_read_after_their_parent()
-> TestResult {
    let pipeline = Pipeline::create(1).await?;
    let mut config = pipeline.config();
    config.evaluate_every = None;
    config.until_idle = None;
    config.discovery_interval = Duration::from_millis(500);
    let seen = Arc::new(AtomicU64::new(0));
    let progress = seen.clone();
    let runner = Runner::connect(&pipeline.sdk, config)
        .await?
        .on_progress(Box::new(move |snapshot, _| {
            let ingest = snapshot.mappings.get("ingest").map_or(0, |m| m.records);
            progress.store(ingest, Ordering::SeqCst);
        }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    let wait_for = |count: u64| {
        let seen = seen.clone();
        async move {
            for _ in 0..1_200 {
                if seen.load(Ordering::SeqCst) >= count {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::bail!(
                "the runner read {} of {count} records",
                seen.load(Ordering::SeqCst)
            )
        }
    };

    pipeline.put(&traffic(1_000, 2, None)).await?;
    wait_for(1_000).await?;
    let kinesis = aws_sdk_kinesis::Client::new(&pipeline.sdk);
    kinesis
        .update_shard_count()
        .stream_name(&pipeline.stream)
        .target_shard_count(2)
        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
        .send()
        .await?;
    for _ in 0..100 {
        let status = kinesis
            .describe_stream_summary()
            .stream_name(&pipeline.stream)
            .send()
            .await?;
        if status
            .stream_description_summary()
            .is_some_and(|d| d.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pipeline.put(&traffic(1_000, 2, None)).await?;

    wait_for(2_000).await?;
    // Let the last windows close, then stop the runner.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop.send(());
    let report = task.await??;

    assert_eq!(
        report.shards, 3,
        "the children were discovered: {report:#?}"
    );
    assert_eq!(report.metrics.mappings["ingest"].records, 2_000);
    pipeline.assert_parquet_rows(2_000).await?;
    assert_eq!(pipeline.events_in_partials().await?, 2_000);
    // Kinesis (and LocalStack) close the parent and route new records to the children; the
    // parent must then be read to its end before its children. moto 5.2.5 keeps writing to the
    // closed parent, so there the children stay empty and the parent is never finished.
    let in_children = pipeline.records_in_child_shards().await?;
    if in_children > 0 {
        let state = sluice_local::checkpoint::CheckpointStore::open(pipeline.state_dir.path())?;
        let parent = state
            .load("ingest", "shardId-000000000000")?
            .context("no checkpoint for the parent")?;
        assert!(parent.shard_finished, "{parent:?}");
    }
    Ok(())
}

/// A hundred tenants paged for one incident while one tenant's webhook never answers and
/// another's rule loops: every other tenant is paged, the dead webhook's notification is kept
/// for a redrive, the loop is stopped and counted, and nothing reaches a tenant it does not
/// belong to. How soon the pages come is measured by `cargo xtask latency`, not here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_and_a_looping_rule_delay_no_other_tenants_page() -> TestResult {
    use sluice_e2e::incident::{self, Scenario};
    let scenario = Scenario {
        tenants: 98,
        window: WindowConfig {
            window_ms: 2_000,
            allowed_lateness_ms: 0,
            ..WindowConfig::default()
        },
        batching: Duration::from_millis(200),
        lead: Duration::from_secs(3),
        tick: Duration::from_millis(250),
        // Generous: a debug build on a loaded machine evaluates a hundred tenants slowly, and
        // the run ends as soon as every tenant is paged.
        patience: Duration::from_secs(240),
    };
    let outcome = incident::run(&scenario).await?;
    let mut latencies = outcome.latencies_ms();
    latencies.sort_unstable();
    eprintln!(
        "pages after the incident's first record (ms): first {:?}, last {:?}; runner stopped after {:.1} s",
        latencies.first(),
        latencies.last(),
        outcome.report.elapsed_s
    );
    let missing: Vec<String> = scenario
        .healthy_tenants()
        .into_iter()
        .filter(|t| !outcome.pages.contains_key(t))
        .collect();
    assert!(missing.is_empty(), "not paged: {missing:?}");
    assert!(outcome.unexpected.is_empty(), "{:?}", outcome.unexpected);
    assert!(
        outcome.dead_webhook_connections >= 1,
        "the dead webhook was tried"
    );
    assert!(
        outcome.undelivered_dead >= 1,
        "the dead webhook's notification is kept for a redrive"
    );
    assert!(
        outcome.report.metrics.evaluator.rule_errors >= 1,
        "the looping rule was stopped and counted: {:?}",
        outcome.report.metrics.evaluator
    );
    Ok(())
}
