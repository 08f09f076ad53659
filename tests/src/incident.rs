//! One incident across many tenants, end to end on the emulator (docs/ARCHITECTURE.md §12):
//! `sluice local run`'s runner reading a Kinesis stream, every tenant with the `threshold`
//! rule and a webhook to a receiver started here, steady traffic, then every tenant's
//! `checkout` service failing at once. Two tenants are hostile to the rest: one's webhook
//! accepts connections and never answers, one's rule loops until the sandbox stops it.
//!
//! The isolation test runs it with short windows and asserts that every other tenant is
//! paged; `sluice-latency` (`cargo xtask latency`) runs it with the template's defaults and
//! reports how long after the incident's first record each tenant's first page arrived.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bytes::Bytes;
use sluice_core::BlobStore;
use sluice_core::window::WindowConfig;
use sluice_local::provision::{self, Clients, Resources};
use sluice_local::runner::{RunConfig, RunReport, Runner};
use sluice_notify::receiver::Receiver;
use sluice_rules::accepted::{AcceptedRecord, sha256_hex};
use sluice_rules::{EngineConfig, Host, RuleId, TrustedArtifact};

use crate::TestBucket;

/// The tenant whose webhook accepts connections and never answers.
pub const DEAD_WEBHOOK_TENANT: &str = "hostile-dead-webhook";
/// The tenant whose rule loops on every window.
pub const LOOPING_RULE_TENANT: &str = "hostile-looping-rule";
const SECRET: &[u8] = b"incident-secret";

/// How the incident is run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Tenants besides the two hostile ones.
    pub tenants: usize,
    /// Windows and lateness, shared by aggregate and evaluate.
    pub window: WindowConfig,
    /// The ingest and aggregate mappings' batching window.
    pub batching: Duration,
    /// Traffic before the incident starts.
    pub lead: Duration,
    /// One `PutRecords` of every tenant's records each tick.
    pub tick: Duration,
    /// How long to wait for the pages once the incident has started.
    pub patience: Duration,
}

impl Scenario {
    /// The template's defaults: 60 s windows, no lateness, 5 s batching windows.
    pub fn template_defaults(tenants: usize, lead: Duration) -> Self {
        Self {
            tenants,
            window: WindowConfig::default(),
            batching: Duration::from_secs(5),
            lead,
            tick: Duration::from_millis(500),
            patience: Duration::from_secs(180),
        }
    }

    /// The tenants that should be paged.
    pub fn healthy_tenants(&self) -> Vec<String> {
        (0..self.tenants)
            .map(|i| format!("tenant-{i:03}"))
            .collect()
    }
}

/// What a run saw.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When the first `PutRecords` carrying the incident was sent (ms since the epoch).
    pub incident_start_ms: i64,
    /// Each healthy tenant's first firing notification: when it arrived.
    pub pages: BTreeMap<String, i64>,
    /// Tenants that were paged but should not have been, or pages not signed with the secret.
    pub unexpected: Vec<String>,
    /// Connections the dead webhook accepted (and never answered).
    pub dead_webhook_connections: usize,
    /// Notifications kept under `alerts/undelivered/` for the dead webhook's tenant.
    pub undelivered_dead: usize,
    /// The runner's final report.
    pub report: RunReport,
}

impl Outcome {
    /// Each paged tenant's latency: its first page minus the incident's first record, in ms.
    pub fn latencies_ms(&self) -> Vec<i64> {
        self.pages
            .values()
            .map(|at| at - self.incident_start_ms)
            .collect()
    }
}

/// A webhook that accepts every connection and never answers, counting them.
struct BlackHole {
    url: String,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        Ok(Self {
            url,
            connections,
            task,
        })
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Installs an accepted rule for `tenant` as the registry records one (the component was
/// compiled once for every tenant, as a registry compiling the same bytes would produce).
async fn install(
    rules: &dyn BlobStore,
    host: &Host,
    tenant: &str,
    rule: &str,
    module: &[u8],
    artifact: &TrustedArtifact,
    manifest: &str,
) -> anyhow::Result<()> {
    let id = RuleId::new(tenant, rule)?;
    let put = |key: String, body: Vec<u8>, kind: &'static str| async move {
        rules.put(&key, Bytes::from(body), kind).await
    };
    put(
        id.version_manifest_key(1),
        manifest.as_bytes().to_vec(),
        "application/toml",
    )
    .await?;
    put(
        id.compiled_key(host.fingerprint()),
        artifact.bytes().to_vec(),
        "application/octet-stream",
    )
    .await?;
    put(
        id.version_module_key(1),
        module.to_vec(),
        "application/wasm",
    )
    .await?;
    let record = AcceptedRecord {
        engine_fingerprint: host.fingerprint().to_owned(),
        compiled_key: id.compiled_key(host.fingerprint()),
        artifact_sha256: sha256_hex(artifact.bytes()),
        module_sha256: sha256_hex(module),
        version: 1,
        manifest_sha256: sha256_hex(manifest.as_bytes()),
    };
    put(
        id.accepted_record_key(),
        serde_json::to_vec(&record)?,
        "application/json",
    )
    .await?;
    Ok(())
}

/// Every tenant's rules and configuration.
async fn install_tenants(
    scenario: &Scenario,
    rules: &dyn BlobStore,
    receiver: &str,
    dead: &str,
) -> anyhow::Result<()> {
    let host = Host::new(EngineConfig::default())?;
    let threshold = crate::rule_component("threshold.wasm")?;
    let threshold_artifact = host.precompile(&threshold)?;
    let threshold_manifest =
        std::fs::read_to_string(crate::repo_root().join("plugins/examples/threshold/rule.toml"))?;
    let misbehave = crate::rule_component("misbehave.wasm")?;
    let misbehave_artifact = host.precompile(&misbehave)?;
    let misbehave_manifest =
        "[rule]\nname = \"misbehave\"\napi = \"0.1.0\"\n\n[params]\ndo = \"echo\"\n";
    let secret = String::from_utf8_lossy(SECRET);
    let mut tenants: Vec<(String, &str)> = scenario
        .healthy_tenants()
        .into_iter()
        .map(|t| (t, receiver))
        .collect();
    tenants.push((DEAD_WEBHOOK_TENANT.to_owned(), dead));
    for (tenant, url) in &tenants {
        install(
            rules,
            &host,
            tenant,
            "threshold",
            &threshold,
            &threshold_artifact,
            &threshold_manifest,
        )
        .await?;
        let config = format!(
            "[[webhooks]]\nurl = \"{url}\"\nsecret = \"{secret}\"\n\n[rules.threshold]\nfor_windows = 1\nparams = {{ min_count = 10 }}\n"
        );
        rules
            .put(
                &format!("tenants/{tenant}.toml"),
                Bytes::from(config),
                "application/toml",
            )
            .await?;
    }
    install(
        rules,
        &host,
        LOOPING_RULE_TENANT,
        "misbehave",
        &misbehave,
        &misbehave_artifact,
        misbehave_manifest,
    )
    .await?;
    let config = format!(
        "[[webhooks]]\nurl = \"{receiver}\"\nsecret = \"{secret}\"\n\n[rules.misbehave]\nfor_windows = 1\nparams = {{ do = \"loop\" }}\n"
    );
    rules
        .put(
            &format!("tenants/{LOOPING_RULE_TENANT}.toml"),
            Bytes::from(config),
            "application/toml",
        )
        .await?;
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One tick of traffic: four records per tenant, all failing during the incident.
fn tick_records(
    tenants: &[String],
    failing: bool,
    seq: &mut u64,
) -> anyhow::Result<Vec<PutRecordsRequestEntry>> {
    let ts = now_ms();
    let mut out = Vec::with_capacity(tenants.len() * 4);
    for tenant in tenants {
        for _ in 0..4 {
            *seq += 1;
            let status = if failing { 503 } else { 200 };
            let level = if failing { "error" } else { "info" };
            let line = format!(
                r#"{{"ts":{ts},"tenant":"{tenant}","service":"checkout","level":"{level}","msg":"POST /cart/{seq} {status}","status":{status},"latency_ms":{}}}"#,
                20 + *seq % 30
            );
            out.push(
                PutRecordsRequestEntry::builder()
                    .partition_key(tenant)
                    .data(Blob::new(line.into_bytes()))
                    .build()?,
            );
        }
    }
    Ok(out)
}

/// Runs the scenario on the emulator (`crate::endpoint`).
pub async fn run(scenario: &Scenario) -> anyhow::Result<Outcome> {
    let sdk = crate::sdk_config().await;
    let data = TestBucket::create().await?;
    let rules = TestBucket::create().await?;
    let suffix = format!("{}-{:08x}", std::process::id(), fastrand::u32(..));
    let resources = Resources {
        stream: format!("sluice-incident-{suffix}"),
        shards: 2,
        data_bucket: data.name.clone(),
        rules_bucket: rules.name.clone(),
        failure_queue: format!("sluice-incident-failures-{suffix}"),
    };
    provision::up(&Clients::new(&sdk), &resources).await?;
    let receiver = Receiver::start(SECRET).await?;
    let dead = BlackHole::start().await?;
    install_tenants(scenario, &rules.store(), &receiver.url(), &dead.url).await?;

    let state_dir = tempfile::tempdir()?;
    let mut config = RunConfig::new(
        &resources.stream,
        &data.name,
        &rules.name,
        state_dir.path().to_path_buf(),
    );
    config.failure_queue = Some(resources.failure_queue.clone());
    config.window = scenario.window.clone();
    config.ingest.batching_window = scenario.batching;
    config.aggregate.batching_window = scenario.batching;
    config.aggregate.tumbling_window = Some(Duration::from_millis(
        u64::try_from(scenario.window.window_ms).unwrap_or(60_000),
    ));
    config.compact_every = None;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = Runner::connect(&sdk, config).await?;
    let running = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));

    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let mut traffic: Vec<String> = scenario.healthy_tenants();
    traffic.push(DEAD_WEBHOOK_TENANT.to_owned());
    traffic.push(LOOPING_RULE_TENANT.to_owned());
    let healthy = scenario.healthy_tenants();
    let mut seq = 0_u64;
    let started = tokio::time::Instant::now();
    while started.elapsed() < scenario.lead {
        let records = tick_records(&traffic, false, &mut seq)?;
        crate::put_records(&kinesis, &resources.stream, records).await?;
        tokio::time::sleep(scenario.tick).await;
    }
    let incident_start_ms = now_ms();
    let incident = tokio::time::Instant::now();
    let mut pages = BTreeMap::new();
    while incident.elapsed() < scenario.patience {
        let records = tick_records(&traffic, true, &mut seq)?;
        crate::put_records(&kinesis, &resources.stream, records).await?;
        for got in receiver.received() {
            if got.payload.status != "firing" {
                continue;
            }
            for alert in &got.payload.alerts {
                if let Some(tenant) = alert.labels.get("tenant") {
                    pages.entry(tenant.clone()).or_insert(got.received_at_ms);
                }
            }
        }
        if healthy.iter().all(|t| pages.contains_key(t)) {
            break;
        }
        tokio::time::sleep(scenario.tick).await;
    }
    let _ = stop.send(());
    let report = running.await.context("the runner task")??;
    let mut unexpected: Vec<String> = pages
        .keys()
        .filter(|t| !healthy.contains(t))
        .cloned()
        .collect();
    unexpected.extend(
        receiver
            .received()
            .iter()
            .filter(|r| !r.signature_valid)
            .map(|r| format!("unsigned page: {:?}", r.payload.alerts)),
    );
    pages.retain(|t, _| healthy.contains(t));
    let undelivered_dead = data
        .keys("alerts/undelivered/")
        .await?
        .iter()
        .filter(|k| k.contains(DEAD_WEBHOOK_TENANT))
        .count();
    Ok(Outcome {
        incident_start_ms,
        pages,
        unexpected,
        dead_webhook_connections: dead.connections.load(Ordering::SeqCst),
        undelivered_dead,
        report,
    })
}
