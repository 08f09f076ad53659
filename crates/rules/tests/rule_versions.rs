//! Rule versions (docs/ARCHITECTURE.md §10): every upload the registry judges is an immutable
//! version, a rejected one never replaces the active version, a rollback makes an earlier
//! accepted version active again with its own parameters, and a removal takes the rule away
//! whichever order it runs in with a registration.

mod support;

use async_trait::async_trait;
use bytes::Bytes;
use sluice_core::counting_store::CountingStore;
use sluice_core::evaluate::RuleRunner;
use sluice_core::tenancy::rule_registry::{
    RollbackRequest, active_version, rollback_request_key, versions,
};
use sluice_core::{BlobStore, LocalDirStore, StoreError};
use sluice_rules::tenant_rules::{RegistryStatus, StoreRuleRunner, register, roll_back};
use sluice_rules::{Policy, RuleId};
use support::{host, upload, wasm};

fn threshold_toml(warning: f64) -> String {
    format!(
        "[rule]\nname = \"threshold\"\napi = \"0.1.0\"\n\n[params]\nmetric = \"error_rate\"\nwarning = {warning}\ncritical = 0.9\nmin_count = 10\n"
    )
}

async fn upload_and_register(store: &dyn BlobStore, module: Vec<u8>, toml: &str) -> RegistryStatus {
    upload(store, "acme", "threshold", module, toml).await;
    register(host(), store, &Policy::default(), "acme", "threshold")
        .await
        .expect("registration concludes")
}

async fn request_rollback(store: &dyn BlobStore, to: u64) -> RegistryStatus {
    store
        .put(
            &rollback_request_key("acme", "threshold"),
            Bytes::from(serde_json::to_vec(&RollbackRequest { to }).expect("JSON")),
            "application/json",
        )
        .await
        .expect("request stored");
    roll_back(host(), store, &Policy::default(), "acme", "threshold")
        .await
        .expect("rollback concludes")
}

/// The `warning` parameter the evaluator would run acme's threshold rule with.
async fn running_warning(store: &dyn BlobStore) -> Option<f64> {
    let runner = StoreRuleRunner::new(host(), store, Policy::default());
    let rules = runner.rules("acme").await.expect("listed");
    rules
        .iter()
        .find(|r| r.name == "threshold")
        .and_then(|r| r.params.get("warning")?.as_float())
}

/// Three uploads: accepted (warning 0.1), rejected (not a component), accepted (warning 0.3).
async fn three_versions(store: &dyn BlobStore) {
    let first = upload_and_register(store, wasm("threshold"), &threshold_toml(0.1)).await;
    assert!(first.accepted(), "{first:?}");
    let second =
        upload_and_register(store, b"\x7fELF native code".to_vec(), &threshold_toml(0.2)).await;
    assert_eq!(second.status, "rejected");
    assert_eq!((second.version, second.active_version), (Some(2), Some(1)));
    assert_eq!(running_warning(store).await, Some(0.1), "v1 still runs");
    let third = upload_and_register(store, wasm("threshold"), &threshold_toml(0.3)).await;
    assert!(third.accepted(), "{third:?}");
    assert_eq!((third.version, third.active_version), (Some(3), Some(3)));
}

#[tokio::test]
async fn every_upload_is_a_numbered_version_and_a_rejected_one_leaves_the_active_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    three_versions(&store).await;
    let all = versions(&store, "acme", "threshold").await.expect("listed");
    let summary: Vec<(u64, &str)> = all.iter().map(|v| (v.version, v.status.as_str())).collect();
    assert_eq!(
        summary,
        vec![(1, "accepted"), (2, "rejected"), (3, "accepted")]
    );
    assert!(
        all[1].code.is_some() && all[1].reason.is_some(),
        "{:?}",
        all[1]
    );
    assert_eq!(running_warning(&store).await, Some(0.3));
}

#[tokio::test]
async fn rollback_makes_an_earlier_accepted_version_active_with_its_own_params() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    three_versions(&store).await;
    let back = request_rollback(&store, 1).await;
    assert!(back.accepted(), "{back:?}");
    assert_eq!(back.active_version, Some(1));
    assert_eq!(running_warning(&store).await, Some(0.1));
    assert_eq!(
        store
            .get(&rollback_request_key("acme", "threshold"))
            .await
            .expect("readable"),
        None,
        "the request is consumed"
    );
    // A rejected version and a version that never was are refused; version 1 keeps running.
    let rejected = request_rollback(&store, 2).await;
    assert_eq!(rejected.code.as_deref(), Some("version_not_accepted"));
    let missing = request_rollback(&store, 9).await;
    assert_eq!(missing.code.as_deref(), Some("no_such_version"));
    assert_eq!(
        active_version(&store, "acme", "threshold")
            .await
            .expect("read"),
        Some(1)
    );
    assert_eq!(running_warning(&store).await, Some(0.1));
}

#[tokio::test]
async fn the_same_upload_notified_twice_is_one_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    let first = upload_and_register(&store, wasm("threshold"), &threshold_toml(0.1)).await;
    // S3 notifies once for module.wasm and once for rule.toml.
    let again = register(host(), &store, &Policy::default(), "acme", "threshold")
        .await
        .expect("concludes");
    assert_eq!((first.version, again.version), (Some(1), Some(1)));
    assert!(again.accepted());
    assert_eq!(
        versions(&store, "acme", "threshold")
            .await
            .expect("listed")
            .len(),
        1
    );
}

#[tokio::test]
async fn the_evaluator_runs_the_accepted_manifest_never_the_upload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    upload_and_register(&store, wasm("threshold"), &threshold_toml(0.1)).await;
    let id = RuleId::new("acme", "threshold").expect("valid");
    // A new rule.toml written to the upload, not (yet) judged: not what runs.
    store
        .put(
            &id.manifest_key(),
            threshold_toml(0.7).into(),
            "application/toml",
        )
        .await
        .expect("stored");
    assert_eq!(running_warning(&store).await, Some(0.1));
    // The accepted copy altered behind the registry's back: its digest no longer matches,
    // so it is not used at all.
    store
        .put(
            &id.version_manifest_key(1),
            threshold_toml(0.7).into(),
            "application/toml",
        )
        .await
        .expect("stored");
    assert_eq!(running_warning(&store).await, None);
    let runner = StoreRuleRunner::new(host(), &store, Policy::default());
    let rules = runner.rules("acme").await.expect("listed");
    let window = sluice_core::window::summary::WindowSummary {
        tenant: "acme".into(),
        start_ms: 0,
        end_ms: 60_000,
        services: Vec::new(),
        patterns: Vec::new(),
    };
    let run = runner
        .run("acme", &rules[0], &window, &rules[0].params, None)
        .await;
    assert!(
        run.as_ref().is_err_and(|e| e.contains("SHA-256")),
        "{run:?}"
    );
}

#[tokio::test]
async fn removing_the_upload_removes_the_rule_and_its_versions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    three_versions(&store).await;
    let id = RuleId::new("acme", "threshold").expect("valid");
    store.delete(&id.module_key()).await.expect("deleted");
    store.delete(&id.manifest_key()).await.expect("deleted");
    let removed = register(host(), &store, &Policy::default(), "acme", "threshold")
        .await
        .expect("concludes");
    assert_eq!(removed.status, "removed");
    assert_rule_gone(&store).await;
    assert_eq!(
        store
            .list(&format!("compiled/{}/acme/", host().fingerprint()))
            .await
            .expect("listed"),
        Vec::<String>::new()
    );
}

/// Nothing of acme's rule is left: no upload, no verdict, no record, no version, and nothing
/// runs.
async fn assert_rule_gone(store: &dyn BlobStore) {
    for prefix in ["control/registry/acme/", "rules/acme/"] {
        assert_eq!(
            store.list(prefix).await.expect("listed"),
            Vec::<String>::new()
        );
    }
    assert_eq!(running_warning(store).await, None);
}

/// A store on which the tenant's DELETE lands while the registry is reading the upload.
#[derive(Debug)]
struct DeletedMidway {
    inner: LocalDirStore,
}

#[async_trait]
impl BlobStore for DeletedMidway {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        self.inner.put(key, body, content_type).await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let body = self.inner.get(key).await?;
        if key == "rules/acme/threshold/rule.toml" {
            self.inner
                .delete("rules/acme/threshold/module.wasm")
                .await?;
            self.inner.delete("rules/acme/threshold/rule.toml").await?;
        }
        Ok(body)
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.inner.size(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

#[tokio::test]
async fn a_removal_while_the_upload_is_judged_wins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = DeletedMidway {
        inner: LocalDirStore::new(dir.path()),
    };
    upload(
        &store.inner,
        "acme",
        "threshold",
        wasm("threshold"),
        &threshold_toml(0.1),
    )
    .await;
    let status = register(host(), &store, &Policy::default(), "acme", "threshold")
        .await
        .expect("concludes");
    assert_eq!(status.status, "removed");
    assert_rule_gone(&store).await;
}

/// One window as a warm evaluator sees it: the rules listed, then each run. Returns the
/// requests the runs made after the listing, and the `warning` they ran with.
async fn one_window(
    runner: &StoreRuleRunner<'_>,
    store: &CountingStore<LocalDirStore>,
) -> (sluice_core::counting_store::RequestCounts, Option<f64>) {
    let window = sluice_core::window::summary::WindowSummary::from_window(
        &sluice_core::window::TenantWindow::new("acme", 0, 60_000),
        |_| false,
    );
    let rules = runner.rules("acme").await.expect("listed");
    let listed = store.counts();
    for rule in &rules {
        runner
            .run("acme", rule, &window, &rule.params, None)
            .await
            .expect("runs");
    }
    let warning = rules
        .iter()
        .find(|r| r.name == "threshold")
        .and_then(|r| r.params.get("warning")?.as_float());
    (store.counts().since(&listed), warning)
}

#[tokio::test]
async fn a_warm_runner_reads_nothing_more_to_run_a_listed_rule_and_still_follows_a_rollback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::new(LocalDirStore::new(dir.path()));
    three_versions(&store).await;
    let runner = StoreRuleRunner::new(host(), &store, Policy::default());
    let (cold, warning) = one_window(&runner, &store).await;
    assert_eq!(warning, Some(0.3));
    assert!(cold.get > 0, "the first run loads the rule: {cold:?}");
    // Warm: listing read the record; running needs neither it again nor the manifest.
    let (warm, warning) = one_window(&runner, &store).await;
    assert_eq!(warning, Some(0.3));
    assert_eq!(warm.total(), 0, "{warm:?}");
    // A rollback changes the record: the next window runs version 1 with its own params.
    let back = request_rollback(&store, 1).await;
    assert!(back.accepted(), "{back:?}");
    let (_, warning) = one_window(&runner, &store).await;
    assert_eq!(warning, Some(0.1));
}
