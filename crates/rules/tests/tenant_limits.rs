//! The registry and the evaluator read the tenant's own limits (docs/ARCHITECTURE.md §10)
//! instead of one policy for everyone: a tenant's rule count and sandbox budget are its own.

mod support;

use bytes::Bytes;
use sluice_core::tenancy::limits::TenantLimits;
use sluice_core::{BlobStore, LocalDirStore};
use sluice_rules::tenant_rules::register;
use sluice_rules::{Policy, RuleId};
use support::{host, wasm};

const MANIFEST: &str = "[rule]\nname = \"threshold\"\napi = \"0.1.0\"\n\n[params]\nmetric = \"error_rate\"\nwarning = 0.05\ncritical = 0.2\nmin_count = 10\n";

async fn upload(store: &dyn BlobStore, tenant: &str, rule: &str) {
    let id = RuleId::new(tenant, rule).expect("valid id");
    store
        .put(
            &id.module_key(),
            Bytes::from(wasm("threshold")),
            "application/wasm",
        )
        .await
        .expect("module");
    store
        .put(
            &id.manifest_key(),
            Bytes::from_static(MANIFEST.as_bytes()),
            "application/toml",
        )
        .await
        .expect("manifest");
}

#[tokio::test]
async fn the_registry_refuses_a_rule_beyond_the_tenants_rule_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    let mut limits = TenantLimits::default();
    limits.set("max_rules=1").expect("a limit");
    limits.save(&store, "mallory").await.expect("limits saved");
    for rule in ["first", "second"] {
        upload(&store, "mallory", rule).await;
    }
    let first = register(host(), &store, &Policy::default(), "mallory", "first")
        .await
        .expect("concludes");
    assert!(first.accepted(), "{first:?}");
    let second = register(host(), &store, &Policy::default(), "mallory", "second")
        .await
        .expect("concludes");
    assert_eq!(second.code.as_deref(), Some("too_many_rules"), "{second:?}");
    assert!(
        second
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("1 accepted rules"),
        "{second:?}"
    );
    let again = register(host(), &store, &Policy::default(), "mallory", "first")
        .await
        .expect("concludes");
    assert!(
        again.accepted(),
        "a new version of an accepted rule is not a new rule"
    );
    // Another tenant's limit is its own.
    upload(&store, "acme", "second").await;
    let acme = register(host(), &store, &Policy::default(), "acme", "second")
        .await
        .expect("concludes");
    assert!(acme.accepted(), "{acme:?}");
}

#[tokio::test]
async fn the_registry_validates_under_the_tenants_fuel() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    let mut limits = TenantLimits::default();
    limits.set("fuel=1000").expect("a limit");
    limits.save(&store, "mallory").await.expect("limits saved");
    upload(&store, "mallory", "threshold").await;
    let status = register(host(), &store, &Policy::default(), "mallory", "threshold")
        .await
        .expect("concludes");
    assert_eq!(status.code.as_deref(), Some("out_of_fuel"), "{status:?}");
}
