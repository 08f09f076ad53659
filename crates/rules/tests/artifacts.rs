//! Precompiled artifacts: the `.cwasm` round trip, the local cache, and refusal of code
//! compiled for another engine.

mod support;

use sluice_rules::{
    ArtifactCache, EngineConfig, Host, Policy, RuleError, RuleId, TrustedArtifact, sample_window,
};
use support::{example_manifest, host, wasm};

fn evaluate(host: &Host, rule: &sluice_rules::LoadedRule) -> sluice_rules::Outcome {
    host.evaluate(
        rule,
        &sample_window("acme", 1_700_000_000_000, 20, 25),
        &example_manifest("threshold").params,
        None,
        &Policy::default(),
    )
    .expect("threshold evaluates")
}

#[test]
fn a_precompiled_rule_evaluates_like_the_compiled_one() {
    let host = host();
    let compiled = host.load(&wasm("threshold")).expect("compiles");
    let artifact = host.precompile(&wasm("threshold")).expect("precompiles");
    assert_eq!(artifact.fingerprint(), host.fingerprint());
    let stored = TrustedArtifact::from_trusted_store(host.fingerprint(), artifact.bytes().to_vec());
    let loaded = host.load_precompiled(&stored).expect("loads");
    assert_eq!(loaded.imports(), compiled.imports());
    let (a, b) = (evaluate(host, &compiled), evaluate(host, &loaded));
    assert_eq!(a.alerts, b.alerts);
    assert_eq!(a.fuel_consumed, b.fuel_consumed);
}

#[test]
fn the_cache_compiles_once_then_loads_the_artifact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = ArtifactCache::new(dir.path());
    let host = host();
    let id = RuleId::new("acme", "errors").expect("valid id");
    let module = wasm("threshold");

    assert!(cache.get(host, &id, &module).expect("reads").is_none());
    let first = cache.load_or_compile(host, &id, &module).expect("compiles");
    let path = cache.path(host.fingerprint(), &id);
    assert!(path.ends_with(format!("compiled/{}/acme/errors.cwasm", host.fingerprint())));
    let written = std::fs::metadata(&path)
        .expect("artifact written")
        .modified()
        .expect("mtime");

    let cached = cache
        .get(host, &id, &module)
        .expect("reads")
        .expect("cached");
    assert_eq!(cached.fingerprint(), host.fingerprint());
    let second = cache.load_or_compile(host, &id, &module).expect("loads");
    let unchanged = std::fs::metadata(&path)
        .expect("artifact")
        .modified()
        .expect("mtime");
    assert_eq!(written, unchanged, "the second load used the artifact");
    assert_eq!(
        evaluate(host, &first).alerts,
        evaluate(host, &second).alerts
    );
}

#[test]
fn the_cache_recompiles_when_the_module_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = ArtifactCache::new(dir.path());
    let host = host();
    let id = RuleId::new("acme", "errors").expect("valid id");
    cache
        .load_or_compile(host, &id, &wasm("threshold"))
        .expect("compiles");
    // The tenant uploads another module under the same rule name.
    assert!(
        cache
            .get(host, &id, &wasm("anomaly"))
            .expect("reads")
            .is_none()
    );
    let replaced = cache
        .load_or_compile(host, &id, &wasm("anomaly"))
        .expect("compiles");
    let outcome = host
        .evaluate(
            &replaced,
            &sample_window("acme", 0, 2, 0),
            &example_manifest("anomaly").params,
            None,
            &Policy::default(),
        )
        .expect("anomaly evaluates");
    assert!(outcome.alerts.is_empty(), "anomaly is warming up");
    assert!(
        cache
            .get(host, &id, &wasm("anomaly"))
            .expect("reads")
            .is_some()
    );
}

#[test]
fn an_artifact_for_another_engine_fingerprint_is_refused() {
    let other = Host::new(EngineConfig {
        memory_reservation: Some(64 << 20),
        ..EngineConfig::default()
    })
    .expect("another engine");
    assert_ne!(other.fingerprint(), host().fingerprint());
    let foreign = other.precompile(&wasm("threshold")).expect("precompiles");
    let err = host().load_precompiled(&foreign).expect_err("other engine");
    assert_eq!(
        err,
        RuleError::FingerprintMismatch {
            expected: host().fingerprint().to_string(),
            found: other.fingerprint().to_string(),
        }
    );
    assert!(
        !err.is_rule_fault(),
        "a stale artifact is recompiled, not blamed on the tenant"
    );
}

#[test]
fn wasmtime_still_refuses_a_foreign_artifact_filed_under_this_fingerprint() {
    let other = Host::new(EngineConfig {
        memory_reservation: Some(64 << 20),
        ..EngineConfig::default()
    })
    .expect("another engine");
    let foreign = other.precompile(&wasm("threshold")).expect("precompiles");
    let misfiled =
        TrustedArtifact::from_trusted_store(host().fingerprint(), foreign.bytes().to_vec());
    let err = host()
        .load_precompiled(&misfiled)
        .expect_err("incompatible code");
    assert_eq!(err.code(), "load", "{err}");
}

#[test]
fn bytes_that_are_not_a_precompiled_component_are_refused() {
    let host = host();
    let raw = TrustedArtifact::from_trusted_store(host.fingerprint(), wasm("threshold"));
    assert_eq!(
        host.load_precompiled(&raw).expect_err("a .wasm").code(),
        "load"
    );
    let junk = TrustedArtifact::from_trusted_store(host.fingerprint(), b"\x7fELFjunk".to_vec());
    assert_eq!(
        host.load_precompiled(&junk).expect_err("junk").code(),
        "load"
    );
}
