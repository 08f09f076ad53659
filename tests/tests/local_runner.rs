//! `sluice local run` end to end: records put into a Kinesis stream on the emulator, the
//! event-source-mapping runner (`sluice-local`) feeding the real ingest and aggregate functions,
//! the evaluator running real tenant rules (wasm), and webhooks arriving at a receiver in the
//! test. Parquet is read back with pyarrow and DuckDB.
//!
//! Needs an emulator (`SLUICE_TEST_ENDPOINT`), and for the rule tests the built components in
//! `$SLUICE_PLUGINS_WASM_DIR` (`cargo xtask test` builds them; or `cargo build --target
//! wasm32-wasip2` in `plugins/`).

use std::path::{Path, PathBuf};
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
use sluice_core::synth::{Generator, Incident, SynthConfig, SynthEvent};
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
        let kinesis = aws_sdk_kinesis::Client::new(&self.sdk);
        for chunk in events.chunks(500) {
            let mut pending: Vec<PutRecordsRequestEntry> = chunk
                .iter()
                .map(|e| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(&e.partition_key)
                        .data(Blob::new(e.payload.clone()))
                        .build()
                })
                .collect::<Result<_, _>>()?;
            for _ in 0..10 {
                let out = kinesis
                    .put_records()
                    .stream_name(&self.stream)
                    .set_records(Some(pending.clone()))
                    .send()
                    .await?;
                if out.failed_record_count().unwrap_or_default() == 0 {
                    pending.clear();
                    break;
                }
                pending = pending
                    .into_iter()
                    .zip(out.records())
                    .filter(|(_, r)| r.error_code().is_some())
                    .map(|(e, _)| e)
                    .collect();
            }
            ensure!(pending.is_empty(), "PutRecords kept failing");
        }
        Ok(())
    }

    /// Rows of every Parquet object under `logs/`, checked by pyarrow and DuckDB to be `rows`.
    async fn assert_parquet_rows(&self, rows: u64) -> TestResult {
        let dir = tempfile::tempdir()?;
        self.data.download("logs/", dir.path()).await?;
        verify_parquet(dir.path(), rows)
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
    })
    .collect()
}

/// The directory of the built rule components.
fn wasm_dir() -> PathBuf {
    std::env::var_os("SLUICE_PLUGINS_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| sluice_e2e::repo_root().join("plugins/target/wasm32-wasip2/debug"))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "reading {} (build the rule components: cargo build --target wasm32-wasip2 in plugins/, \
             or set SLUICE_PLUGINS_WASM_DIR)",
            path.display()
        )
    })
}

/// Uploads a rule for `tenant` and registers it, as the registry function does.
async fn install_rule(
    rules: &dyn BlobStore,
    tenant: &str,
    name: &str,
    wasm_file: &str,
    manifest: &str,
) -> TestResult {
    let wasm = read(&wasm_dir().join(wasm_file))?;
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
    assert!(
        !pipeline.data.keys("metrics/tenant=acme/").await?.is_empty(),
        "window summaries"
    );

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

    let proxy = FaultProxy::start(&endpoint()).await?;
    // One attempt per SDK call: every fault reaches the event source mapping's own retries.
    let through_proxy = sdk(&proxy.endpoint(), 1).await;
    let mut config = pipeline.config();
    config.evaluate_every = None;
    for m in [&mut config.ingest, &mut config.aggregate] {
        m.batch_size = 250;
        m.max_retry_attempts = None;
        m.max_record_age = None;
    }
    // The faults start once the runner is connected and reading.
    let plan = proxy.plan().clone();
    let armed = std::sync::atomic::AtomicBool::new(false);
    let report = Runner::connect(&through_proxy, config)
        .await?
        .on_progress(Box::new(move |_, _| {
            if !armed.swap(true, Ordering::SeqCst) {
                plan.s3_slowdown_next.store(25, Ordering::SeqCst);
                plan.drop_next.store(8, Ordering::SeqCst);
            }
        }))
        .run(std::future::pending())
        .await?;
    assert_eq!(report.stop_reason, StopReason::Idle, "{report:#?}");
    let injected = proxy.plan().injected();
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
