//! Webhooks as a hostile tenant would configure them (docs/ARCHITECTURE.md §10): at the
//! instance metadata service, at loopback, into the VPC, through IPv4-mapped IPv6, through a
//! name that resolves to loopback, and at a server that never answers. Each is contained: the
//! refusals are recorded with their reason before any connection, a real server on 127.0.0.1
//! receives nothing, and another tenant's alert goes out while the dead webhook still hangs.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sluice_core::aggregate::store_partials;
use sluice_core::alerting::delivery::RetryPolicy;
use sluice_core::alerting::lifecycle::LifecycleConfig;
use sluice_core::alerting::model::{RuleAlert, RuleOutput, Severity};
use sluice_core::alerting::webhook_secrets;
use sluice_core::evaluate::{
    DeliveryBudget, EvaluateConfig, Evaluator, RuleRunner, TenantRule, Undelivered,
};
use sluice_core::tenant_bucket::TenantBuckets;
use sluice_core::window::TenantWindow;
use sluice_core::window::summary::WindowSummary;
use sluice_core::{BlobStore, LocalDirStore};
use sluice_notify::guarded_dns::{Lookup, SystemLookup};
use sluice_notify::receiver::Receiver;
use sluice_notify::{EgressPolicy, HttpPoster};
use tokio::io::AsyncReadExt as _;
use tokio::sync::Notify;

const START: i64 = 1_714_564_800_000;
const MIN: i64 = 60_000;

/// Every tenant's one rule fires at once on every window.
#[derive(Debug)]
struct AlwaysFires;

#[async_trait]
impl RuleRunner for AlwaysFires {
    async fn rules(&self, _tenant: &str) -> Result<Vec<TenantRule>, String> {
        Ok(vec![TenantRule {
            name: "always".into(),
            params: toml::Table::new(),
            lifecycle: LifecycleConfig {
                for_windows: 1,
                repeat_interval_ms: 3_600_000,
            },
        }])
    }

    async fn run(
        &self,
        tenant: &str,
        _rule: &TenantRule,
        _window: &WindowSummary,
        _params: &toml::Table,
        _state: Option<&[u8]>,
    ) -> Result<RuleOutput, String> {
        Ok(RuleOutput {
            alerts: vec![RuleAlert {
                key: format!("{tenant}/always"),
                severity: Severity::Critical,
                title: "always".into(),
                description: String::new(),
                labels: Default::default(),
                value: 1.0,
            }],
            state: None,
            fuel_used: 1,
        })
    }
}

/// A store with one (empty) window of partials for each tenant.
async fn store_with_windows(tenants: &[&str]) -> (tempfile::TempDir, LocalDirStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalDirStore::new(dir.path());
    let windows: Vec<TenantWindow> = tenants
        .iter()
        .map(|t| TenantWindow::new(t, START, START + MIN))
        .collect();
    store_partials(
        &store,
        &windows,
        TenantBuckets::DEFAULT,
        "shardId-000000000000",
        "test",
    )
    .await
    .expect("partials stored");
    (dir, store)
}

async fn configure(store: &LocalDirStore, tenant: &str, toml: String) {
    store
        .put(
            &format!("tenants/{tenant}.toml"),
            toml.into(),
            "application/toml",
        )
        .await
        .expect("tenant config");
}

async fn undelivered(store: &LocalDirStore, tenant: &str) -> Vec<Undelivered> {
    let mut out = Vec::new();
    for key in store
        .list(&format!("alerts/undelivered/tenant={tenant}/"))
        .await
        .expect("list")
    {
        let body = store.get(&key).await.expect("get").expect("present");
        out.push(serde_json::from_slice(&body).expect("an undelivered record"));
    }
    out
}

/// Resolves `internal.mallory.test` to 127.0.0.1 (a name the tenant controls, pointed
/// inside), everything else as the system does (`localhost` included).
#[derive(Debug)]
struct MalloryDns;

#[async_trait]
impl Lookup for MalloryDns {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        if host == "internal.mallory.test" {
            return Ok(vec![IpAddr::from([127, 0, 0, 1])]);
        }
        SystemLookup.lookup(host).await
    }
}

#[tokio::test]
async fn refuses_webhooks_reaching_inside_with_the_reason_and_sends_nothing() {
    let (_dir, store) = store_with_windows(&["mallory"]).await;
    // A real server on 127.0.0.1: if any refusal leaked, it would see the request.
    let inside = Receiver::start(b"unused").await.expect("receiver");
    let port = inside.addr.port();
    let targets = [
        (
            "https://169.254.169.254/latest/meta-data/".to_owned(),
            "link-local",
        ),
        (format!("https://127.0.0.1:{port}/hook"), "loopback"),
        (
            format!("http://127.0.0.1:{port}/hook"),
            "scheme must be https",
        ),
        ("https://10.0.0.1/hook".to_owned(), "private"),
        (
            format!("https://[::ffff:127.0.0.1]:{port}/hook"),
            "loopback",
        ),
        (format!("https://localhost:{port}/hook"), "loopback"),
        (
            format!("https://internal.mallory.test:{port}/hook"),
            "loopback",
        ),
        ("https://[fd00:ec2::254]/latest".to_owned(), "unique-local"),
    ];
    let toml: String = targets
        .iter()
        .map(|(url, _)| format!("[[webhooks]]\nurl = \"{url}\"\nsecret = \"s\"\n"))
        .collect();
    configure(&store, "mallory", toml).await;
    let http =
        HttpPoster::with_lookup(EgressPolicy::public_only(), Arc::new(MalloryDns)).expect("client");
    let evaluator = Evaluator {
        data: &store,
        rules_store: &store,
        runner: &AlwaysFires,
        http: &http,
        config: EvaluateConfig::default(),
    };
    let run = evaluator
        .run_caught_up(START + 10 * MIN)
        .await
        .expect("evaluation");
    let report = &run.windows[0].tenants[0];
    assert_eq!(report.transitions.len(), 1, "{report:?}");
    assert!(report.delivered.is_empty(), "{report:?}");
    assert_eq!(report.refused.len(), targets.len(), "{:?}", report.refused);

    let records = undelivered(&store, "mallory").await;
    assert_eq!(records.len(), targets.len());
    for (url, why) in &targets {
        let record = records
            .iter()
            .find(|r| &r.url == url)
            .unwrap_or_else(|| panic!("no record for {url}"));
        let reason = record.refused.as_deref().unwrap_or_default();
        assert!(reason.contains(why), "{url}: {reason:?}");
        assert_eq!(record.attempts, 0, "{url}: refused, never attempted");
    }
    assert_eq!(inside.requests(), 0, "nothing reached the server inside");
}

/// A webhook server on 127.0.0.1 that accepts connections and never answers; it holds each
/// one until released.
struct Silent {
    port: u16,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    async fn start() -> Silent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("address").port();
        let (accepted, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let release = Arc::new(Notify::new());
        let (a, o, r) = (accepted.clone(), open.clone(), release.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let (o, r) = (o.clone(), r.clone());
                tokio::spawn(async move {
                    let mut sink = vec![0u8; 4096];
                    // Read whatever comes, answer nothing, until released or the client
                    // gives up.
                    loop {
                        tokio::select! {
                            _ = r.notified() => break,
                            n = socket.read(&mut sink) => if matches!(n, Ok(0) | Err(_)) { break },
                        }
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Silent {
            port,
            accepted,
            open,
            release,
            task,
        }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_webhook_that_never_answers_does_not_delay_another_tenants_alert() {
    // `a-mallory` sorts before `acme`: evaluated (and, were deliveries in one line, delivered)
    // first.
    let (_dir, store) = store_with_windows(&["a-mallory", "acme"]).await;
    let silent = Silent::start().await;
    configure(
        &store,
        "a-mallory",
        format!(
            "[[webhooks]]\nurl = \"http://127.0.0.1:{}/hook\"\nsecret = \"s\"\n",
            silent.port
        ),
    )
    .await;
    // acme signs with a secret sluice generated for its webhook id.
    let secret = webhook_secrets::create(&store, "acme", "ops")
        .await
        .expect("secret created");
    let receiver = Receiver::start(secret.signing_key())
        .await
        .expect("receiver");
    configure(
        &store,
        "acme",
        format!("[[webhooks]]\nid = \"ops\"\nurl = \"{}\"\n", receiver.url()),
    )
    .await;

    let http = HttpPoster::allowing_loopback().expect("client");
    // Nothing here ends the silent delivery but its release below: no deadline comes into it.
    let patient = RetryPolicy {
        attempts: 1,
        timeout: Duration::from_secs(24 * 3600),
        ..RetryPolicy::default()
    };
    let evaluator = Evaluator {
        data: &store,
        rules_store: &store,
        runner: &AlwaysFires,
        http: &http,
        config: EvaluateConfig {
            retry: patient,
            delivery: DeliveryBudget {
                per_tenant_time: Duration::from_secs(24 * 3600),
                ..DeliveryBudget::default()
            },
            ..EvaluateConfig::default()
        },
    };
    let finished = AtomicBool::new(false);
    let evaluation = async {
        let run = evaluator.run_caught_up(START + 10 * MIN).await;
        finished.store(true, Ordering::SeqCst);
        run
    };
    let acme_side = async {
        while receiver.received().is_empty() {
            receiver.wait(Duration::from_secs(1)).await;
        }
        // acme has its alert; is the other tenant's delivery still hanging?
        let still_running = !finished.load(Ordering::SeqCst);
        while silent.accepted.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let held_open = silent.open.load(Ordering::SeqCst);
        silent.release.notify_waiters();
        while silent.open.load(Ordering::SeqCst) > 0 {
            silent.release.notify_waiters();
            tokio::task::yield_now().await;
        }
        (still_running, held_open)
    };
    // A watchdog only: a sequential implementation would otherwise wait here for ever.
    let (run, (still_running, held_open)) = tokio::time::timeout(Duration::from_secs(300), async {
        tokio::join!(evaluation, acme_side)
    })
    .await
    .expect("acme's alert arrived while the silent webhook hung");
    let run = run.expect("evaluation");

    assert!(
        still_running,
        "acme's alert arrived before the evaluation (and the silent delivery) ended"
    );
    assert_eq!(
        held_open, 1,
        "the silent webhook's connection was open, unanswered"
    );
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert!(
        received[0].signature_valid,
        "signed with the generated secret"
    );
    let tenants = &run.windows[0].tenants;
    let acme = tenants.iter().find(|t| t.tenant == "acme").expect("acme");
    assert_eq!(acme.delivered, vec![receiver.url()]);
    let mallory = tenants
        .iter()
        .find(|t| t.tenant == "a-mallory")
        .expect("a-mallory");
    assert_eq!(mallory.undelivered.len(), 1, "{mallory:?}");
    assert_eq!(undelivered(&store, "a-mallory").await.len(), 1);
    assert!(undelivered(&store, "acme").await.is_empty());
}
