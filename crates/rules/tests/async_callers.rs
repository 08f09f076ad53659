//! The evaluate and registry functions call the host from async code (a tokio runtime). A
//! rule that prints, or panics (which prints to stderr), must be evaluated there as anywhere
//! else: wasmtime-wasi's synchronous WASI bindings would otherwise panic the whole process on
//! a runtime thread.

mod support;

use bytes::Bytes;
use sluice_core::{BlobStore, LocalDirStore};
use sluice_rules::tenant_rules::register;
use sluice_rules::{Policy, RuleError, sample_window};
use support::{host, misbehave, rule, wasm};

fn evaluate(params: &str) -> Result<sluice_rules::Outcome, RuleError> {
    host().evaluate(
        &rule("misbehave"),
        &sample_window("acme", 1_700_000_000_000, 3, 2),
        &misbehave(params),
        None,
        &Policy::default(),
    )
}

fn assert_prints_and_alerts(outcome: &sluice_rules::Outcome) {
    assert!(outcome.stdout.contains("echo for acme"), "{outcome:?}");
    assert_eq!(outcome.alerts.len(), 1, "{outcome:?}");
}

fn assert_panic_reported(err: &RuleError) {
    match err {
        RuleError::Panic(stderr) => assert!(stderr.contains("lost the thread"), "{stderr}"),
        other => panic!("expected the rule's panic, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_printing_rule_evaluates_on_a_current_thread_runtime() {
    let outcome = evaluate(r#"{"do":"echo"}"#).expect("echo evaluates");
    assert_prints_and_alerts(&outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printing_rule_evaluates_on_a_multi_thread_runtime() {
    let outcome = evaluate(r#"{"do":"echo"}"#).expect("echo evaluates");
    assert_prints_and_alerts(&outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_rule_is_reported_from_async_code_and_the_host_keeps_serving() {
    let err = evaluate(r#"{"do":"panic","message":"lost the thread"}"#)
        .expect_err("a panicking rule fails");
    assert_panic_reported(&err);
    let outcome = evaluate(r#"{"do":"echo"}"#).expect("the next evaluation still works");
    assert_prints_and_alerts(&outcome);
}

#[tokio::test]
async fn a_rule_that_prints_on_the_canned_window_registers_from_async_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirStore::new(dir.path());
    store
        .put(
            "rules/acme/misbehave/module.wasm",
            Bytes::from(wasm("misbehave")),
            "application/wasm",
        )
        .await
        .expect("module stored");
    store
        .put(
            "rules/acme/misbehave/rule.toml",
            Bytes::from_static(
                b"[rule]\nname = \"misbehave\"\napi = \"0.1.0\"\n\n[params]\ndo = \"echo\"\n",
            ),
            "application/toml",
        )
        .await
        .expect("manifest stored");
    let status = register(host(), &store, &Policy::default(), "acme", "misbehave")
        .await
        .expect("registration concludes");
    assert!(status.accepted(), "{status:?}");
    let compiled = status.compiled_key.expect("an artifact was written");
    assert!(
        store
            .get(&compiled)
            .await
            .expect("store readable")
            .is_some(),
        "{compiled} exists"
    );
}
