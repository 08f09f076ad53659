//! Evaluating well-behaved rules: alerts and state round trips, params, validation reports,
//! and the example rules on the canned window.

mod support;

use sluice_rules::{Params, Policy, RuleError, Severity, Window, sample_window};
use support::{example_manifest, host, misbehave, rule, wasm};

fn window() -> Window {
    sample_window("acme", 1_700_000_000_000, 20, 25)
}

#[test]
fn threshold_alerts_on_the_troubled_services_of_the_sample_window() {
    let outcome = host()
        .evaluate(
            &rule("threshold"),
            &window(),
            &example_manifest("threshold").params,
            None,
            &Policy::default(),
        )
        .expect("threshold evaluates");
    let mut keys: Vec<_> = outcome.alerts.iter().map(|a| a.key.as_str()).collect();
    keys.sort();
    // Services 3, 10 and 17 have a 12.5% error rate: over the 10% critical threshold.
    assert_eq!(
        keys,
        [
            "service-03/error_rate",
            "service-10/error_rate",
            "service-17/error_rate"
        ]
    );
    assert!(
        outcome
            .alerts
            .iter()
            .all(|a| a.severity == Severity::Critical)
    );
    assert_eq!(outcome.alerts[0].label_value("service"), Some("service-03"));
    assert!(outcome.fuel_consumed > 0);
}

#[test]
fn params_reach_the_rule() {
    let outcome = host()
        .evaluate(
            &rule("misbehave"),
            &window(),
            &misbehave(r#"{"do":"echo","message":"hello from rule.toml"}"#),
            None,
            &Policy::default(),
        )
        .expect("echo evaluates");
    assert_eq!(outcome.alerts[0].description, "hello from rule.toml");
    // And the window did too.
    assert_eq!(outcome.alerts[0].title, "tenant acme");
    assert_eq!(outcome.alerts[0].label_value("services"), Some("20"));
    assert_eq!(outcome.alerts[0].label_value("patterns"), Some("25"));
}

#[test]
fn threshold_params_change_what_it_finds() {
    let params = Params::from_json(r#"{"metric":"latency_p99","critical":1000}"#).expect("json");
    let outcome = host()
        .evaluate(
            &rule("threshold"),
            &window(),
            &params,
            None,
            &Policy::default(),
        )
        .expect("threshold evaluates");
    // Every fifth service from the second has a 2.5 s p99.
    let keys: Vec<_> = outcome.alerts.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "service-02/latency_p99",
            "service-07/latency_p99",
            "service-12/latency_p99",
            "service-17/latency_p99"
        ]
    );
}

#[test]
fn state_round_trips_between_evaluations() {
    let params = misbehave(r#"{"do":"echo"}"#);
    let mut state: Option<Vec<u8>> = None;
    for expected in 1..=3 {
        let outcome = host()
            .evaluate(
                &rule("misbehave"),
                &window(),
                &params,
                state.as_deref(),
                &Policy::default(),
            )
            .expect("echo evaluates");
        assert_eq!(outcome.alerts[0].value, f64::from(expected));
        state = outcome.state;
    }
    // A failed evaluation leaves the caller's state as it was: the next one continues.
    let failed = host().evaluate(
        &rule("misbehave"),
        &window(),
        &misbehave(r#"{"do":"panic"}"#),
        state.as_deref(),
        &Policy::default(),
    );
    assert!(matches!(failed, Err(RuleError::Panic(_))));
    let outcome = host()
        .evaluate(
            &rule("misbehave"),
            &window(),
            &params,
            state.as_deref(),
            &Policy::default(),
        )
        .expect("echo evaluates");
    assert_eq!(outcome.alerts[0].value, 4.0);
}

#[test]
fn fuel_is_deterministic() {
    let params = example_manifest("threshold").params;
    let run = || {
        host()
            .evaluate(
                &rule("threshold"),
                &window(),
                &params,
                None,
                &Policy::default(),
            )
            .expect("threshold evaluates")
            .fuel_consumed
    };
    assert_eq!(run(), run());
}

#[test]
fn invalid_params_come_back_as_invalid_params() {
    let params =
        Params::from_json(r#"{"metric":"error_rate","warning":0.5,"critical":0.1}"#).expect("json");
    let err = host()
        .evaluate(
            &rule("threshold"),
            &window(),
            &params,
            None,
            &Policy::default(),
        )
        .expect_err("warning above critical");
    assert!(
        matches!(&err, RuleError::InvalidParams(m) if m.contains("warning")),
        "{err}"
    );
}

#[test]
fn validation_reports_size_imports_exports_and_fuel() {
    let wasm = wasm("threshold");
    let manifest = example_manifest("threshold");
    let validated = host()
        .validate(&wasm, &manifest.params, &Policy::default())
        .expect("threshold is a valid rule");
    let r = &validated.report;
    assert_eq!(r.size_bytes, wasm.len());
    assert_eq!(r.contract, "sluice:rules/rule@0.1.0");
    assert_eq!(r.exports, ["sluice:rules/rule@0.1.0"]);
    assert!(
        r.imports
            .iter()
            .any(|i| i.starts_with("wasi:cli/stderr@0.2")),
        "{:?}",
        r.imports
    );
    assert!(
        r.imports
            .iter()
            .all(|i| sluice_rules::contract::is_allowed_import(i))
    );
    assert!(r.canned.fuel_consumed > 0);
    assert_eq!(r.canned.alerts.len(), 3);
    // The report is what `status.json` carries.
    let json = serde_json::to_value(r).expect("serialisable");
    assert!(json["canned"]["fuel_consumed"].is_u64());
}

#[test]
fn validation_fails_on_params_the_rule_refuses() {
    let params = Params::from_json(r#"{"metric":"nope"}"#).expect("json");
    let err = host()
        .validate(&wasm("threshold"), &params, &Policy::default())
        .expect_err("unknown metric");
    assert_eq!(err.code(), "invalid_params");
}

#[test]
fn every_example_rule_evaluates_on_the_canned_window_with_its_manifest() {
    for name in ["threshold", "latency-slo", "new-pattern", "anomaly"] {
        let manifest = example_manifest(name);
        assert_eq!(manifest.rule.name, name);
        let outcome = host()
            .evaluate(
                &rule(name),
                &window(),
                &manifest.params,
                None,
                &Policy::default(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(outcome.state.is_some(), "{name} returns its state");
        assert!(
            outcome.fuel_consumed < Policy::default().fuel / 10,
            "{name}: {}",
            outcome.fuel_consumed
        );
    }
}

#[test]
fn new_pattern_alerts_on_the_new_error_patterns_of_the_sample_window() {
    let window = window();
    let outcome = host()
        .evaluate(
            &rule("new-pattern"),
            &window,
            &example_manifest("new-pattern").params,
            None,
            &Policy::default(),
        )
        .expect("new-pattern evaluates");
    let expected: Vec<String> = window
        .patterns
        .iter()
        .filter(|p| p.first_seen && p.level >= sluice_rules::Level::Error)
        .map(|p| format!("new/{}", p.id))
        .collect();
    assert_eq!(expected.len(), 2, "the sample has two new error patterns");
    let keys: Vec<String> = outcome.alerts.iter().map(|a| a.key.clone()).collect();
    assert_eq!(keys, expected);
}

#[test]
fn the_wall_clock_reads_the_window_end_and_stdout_is_captured() {
    let window = window();
    let outcome = host()
        .evaluate(
            &rule("misbehave"),
            &window,
            &misbehave(r#"{"do":"echo"}"#),
            None,
            &Policy::default(),
        )
        .expect("echo evaluates");
    assert_eq!(
        outcome.alerts[0].label_value("wall_clock_ms"),
        Some(window.end_ms.to_string().as_str())
    );
    assert_eq!(outcome.stdout, "echo for acme\n");
    assert_eq!(outcome.stderr, "");
}
