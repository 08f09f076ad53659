//! The rules bucket as a hostile tenant sees it (docs/ARCHITECTURE.md §10): whoever can write
//! `compiled/` must still not get native code loaded. The evaluator loads an artifact only when
//! its SHA-256 is the one the registry recorded for the accepted version; anything else is
//! counted and the rule recompiled from the accepted component.

mod support;

use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use sluice_core::evaluate::RuleRunner;
use sluice_core::window::summary::WindowSummary;
use sluice_core::{BlobStore, LocalDirStore, StoreError};
use sluice_rules::accepted::AcceptedRecord;
use sluice_rules::tenant_rules::{LoadStats, StoreRuleRunner, register};
use sluice_rules::{EngineConfig, Host, Policy, RuleId};
use support::{host, upload, wasm};

const THRESHOLD_TOML: &str = "[rule]\nname = \"threshold\"\napi = \"0.1.0\"\n\n[params]\nmetric = \"error_rate\"\nwarning = 0.05\ncritical = 0.2\nmin_count = 10\n";

async fn registered_threshold(store: &dyn BlobStore) -> RuleId {
    upload(
        store,
        "acme",
        "threshold",
        wasm("threshold"),
        THRESHOLD_TOML,
    )
    .await;
    let status = register(host(), store, &Policy::default(), "acme", "threshold")
        .await
        .expect("registration concludes");
    assert!(status.accepted(), "{status:?}");
    RuleId::new("acme", "threshold").expect("valid id")
}

fn empty_window() -> WindowSummary {
    WindowSummary {
        tenant: "acme".into(),
        start_ms: 1_700_000_000_000,
        end_ms: 1_700_000_060_000,
        services: Vec::new(),
        patterns: Vec::new(),
    }
}

async fn run_all(runner: &StoreRuleRunner<'_>) -> Vec<Result<(), String>> {
    let mut results = Vec::new();
    for rule in runner.rules("acme").await.expect("rules listed") {
        results.push(
            runner
                .run("acme", &rule, &empty_window(), &rule.params, None)
                .await
                .map(|_| ()),
        );
    }
    results
}

#[tokio::test]
async fn registry_records_the_digest_of_the_artifact_it_wrote() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    let id = registered_threshold(&store).await;
    let record: AcceptedRecord = serde_json::from_slice(
        &store
            .get(&id.accepted_record_key())
            .await
            .expect("readable")
            .expect("a record was written"),
    )
    .expect("a record");
    let artifact = store
        .get(&id.compiled_key(host().fingerprint()))
        .await
        .expect("readable")
        .expect("an artifact was written");
    assert_eq!(
        record.artifact_sha256,
        sluice_rules::accepted::sha256_hex(&artifact)
    );
    assert_eq!(
        record.module_sha256,
        sluice_rules::accepted::sha256_hex(&wasm("threshold"))
    );
    assert_eq!(record.engine_fingerprint, host().fingerprint());
}

#[tokio::test]
async fn an_untouched_artifact_is_loaded_once_and_then_served_from_the_cache() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    registered_threshold(&store).await;
    let runner = StoreRuleRunner::new(host(), &store, Policy::default());
    assert_eq!(run_all(&runner).await, vec![Ok(())]);
    assert_eq!(run_all(&runner).await, vec![Ok(())]);
    assert_eq!(
        runner.take_load_stats(),
        LoadStats {
            artifacts_loaded: 1,
            artifact_digest_mismatches: 0,
            recompiled: 0
        }
    );
}

#[tokio::test]
async fn a_tampered_compiled_artifact_is_never_loaded_and_the_rule_is_recompiled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    let id = registered_threshold(&store).await;
    // Mallory writes valid native code for this very engine (another rule, precompiled) over
    // acme's artifact: the strongest tampering, bytes that would deserialise and run.
    let foreign = host().precompile(&wasm("misbehave")).expect("precompiles");
    store
        .put(
            &id.compiled_key(host().fingerprint()),
            Bytes::from(foreign.bytes().to_vec()),
            "application/octet-stream",
        )
        .await
        .expect("tampered");
    let runner = StoreRuleRunner::new(host(), &store, Policy::default());
    assert_eq!(
        run_all(&runner).await,
        vec![Ok(())],
        "threshold, recompiled, runs"
    );
    assert_eq!(
        runner.take_load_stats(),
        LoadStats {
            artifacts_loaded: 0,
            artifact_digest_mismatches: 1,
            recompiled: 1
        }
    );
}

#[tokio::test]
async fn an_artifact_without_a_registry_record_is_not_a_rule() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    registered_threshold(&store).await;
    let planted = RuleId::new("acme", "planted").expect("valid id");
    let code = host().precompile(&wasm("misbehave")).expect("precompiles");
    store
        .put(
            &planted.compiled_key(host().fingerprint()),
            Bytes::from(code.bytes().to_vec()),
            "application/octet-stream",
        )
        .await
        .expect("planted");
    let runner = StoreRuleRunner::new(host(), &store, Policy::default());
    let names: Vec<String> = runner
        .rules("acme")
        .await
        .expect("listed")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, vec!["threshold".to_owned()]);
}

#[tokio::test]
async fn a_tampered_accepted_component_is_refused_when_the_artifact_does_not_match_either() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    let id = registered_threshold(&store).await;
    store
        .put(
            &id.compiled_key(host().fingerprint()),
            Bytes::from_static(b"junk"),
            "application/octet-stream",
        )
        .await
        .expect("tampered");
    store
        .put(
            &id.version_module_key(1),
            Bytes::from(wasm("misbehave")),
            "application/wasm",
        )
        .await
        .expect("tampered");
    let runner = StoreRuleRunner::new(host(), &store, Policy::default());
    let results = run_all(&runner).await;
    assert!(
        matches!(&results[..], [Err(e)] if e.contains("the registry recorded")),
        "{results:?}"
    );
    assert_eq!(runner.take_load_stats().artifact_digest_mismatches, 1);
}

#[tokio::test]
async fn an_artifact_from_another_engine_is_recompiled_not_loaded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    registered_threshold(&store).await;
    let other = Host::new(EngineConfig {
        memory_reservation: Some(64 << 20),
        ..EngineConfig::default()
    })
    .expect("another engine");
    let runner = StoreRuleRunner::new(&other, &store, Policy::default());
    assert_eq!(run_all(&runner).await, vec![Ok(())]);
    assert_eq!(runner.take_load_stats().recompiled, 1);
}

#[tokio::test]
async fn a_rejected_upload_never_replaces_the_active_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    let id = registered_threshold(&store).await;
    let before = store
        .get(&id.accepted_record_key())
        .await
        .expect("readable");
    upload(
        &store,
        "acme",
        "threshold",
        b"not wasm".to_vec(),
        THRESHOLD_TOML,
    )
    .await;
    let status = register(host(), &store, &Policy::default(), "acme", "threshold")
        .await
        .expect("concludes");
    assert!(!status.accepted());
    assert_eq!((status.version, status.active_version), (Some(2), Some(1)));
    assert_eq!(
        store
            .get(&id.accepted_record_key())
            .await
            .expect("readable"),
        before
    );
    let runner = StoreRuleRunner::new(host(), &store, Policy::default());
    assert_eq!(run_all(&runner).await, vec![Ok(())]);
}

/// A store that remembers which keys were downloaded.
#[derive(Debug)]
struct Watched {
    inner: LocalDirStore,
    gets: Mutex<Vec<String>>,
}

#[async_trait]
impl BlobStore for Watched {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        self.inner.put(key, body, content_type).await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        if let Ok(mut gets) = self.gets.lock() {
            gets.push(key.to_owned());
        }
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.inner.size(key).await
    }
}

#[tokio::test]
async fn an_oversized_upload_is_refused_from_its_size_without_being_downloaded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Watched {
        inner: LocalDirStore::new(dir.path()),
        gets: Mutex::default(),
    };
    let huge = vec![0u8; host().config().max_module_bytes + 1];
    upload(&store, "mallory", "huge", huge, THRESHOLD_TOML).await;
    let status = register(host(), &store, &Policy::default(), "mallory", "huge")
        .await
        .expect("concludes");
    assert_eq!(status.code.as_deref(), Some("too_large"), "{status:?}");
    let gets = store.gets.lock().map(|g| g.clone()).unwrap_or_default();
    assert!(
        !gets.iter().any(|k| k.ends_with("module.wasm")),
        "downloaded: {gets:?}"
    );
}

#[tokio::test]
async fn an_upload_that_outlasts_the_compile_deadline_is_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    // No compile finishes before its first poll: a zero deadline always expires.
    let impatient = Host::new(EngineConfig {
        max_compile_time: std::time::Duration::ZERO,
        ..EngineConfig::default()
    })
    .expect("engine");
    upload(&store, "mallory", "slow", wasm("threshold"), THRESHOLD_TOML).await;
    let status = register(&impatient, &store, &Policy::default(), "mallory", "slow")
        .await
        .expect("concludes");
    assert_eq!(
        status.code.as_deref(),
        Some("compile_timeout"),
        "{status:?}"
    );
    assert_eq!(
        store
            .get(
                &RuleId::new("mallory", "slow")
                    .expect("id")
                    .accepted_record_key()
            )
            .await
            .expect("readable"),
        None
    );
}
