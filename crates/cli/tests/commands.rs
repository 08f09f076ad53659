//! The `sluice` binary on real inputs: rule components built from `plugins/`, the demo's
//! metrics, a webhook receiver on 127.0.0.1.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use support::{example, fails, last_json, ok, plugins_dir, plugins_target, run, sluice, wasm};

fn threshold_manifest() -> std::path::PathBuf {
    example("threshold").join("rule.toml")
}

#[test]
fn rules_check_accepts_an_example_component_and_reports_contract_and_fuel() {
    let out = ok(&run(sluice()
        .args(["rules", "check", "--json", "--manifest"])
        .arg(threshold_manifest())
        .arg(wasm("threshold"))));
    let report = last_json(&out);
    assert_eq!(report["status"], "accepted", "{report}");
    assert_eq!(report["contract"], "sluice:rules/rule@0.1.0");
    assert!(
        report["exports"]
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x == "sluice:rules/rule@0.1.0")),
        "{report}"
    );
    assert!(report["size_bytes"].as_u64().is_some_and(|n| n > 0));
    assert!(
        report["canned"]["fuel_consumed"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    assert!(
        report["canned"]["alerts"].as_u64().is_some_and(|n| n > 0),
        "the canned window has troubled services: {report}"
    );

    let table = ok(&run(sluice()
        .args(["rules", "check", "--manifest"])
        .arg(threshold_manifest())
        .arg(wasm("threshold"))));
    for row in [
        "accepted",
        "sluice:rules/rule@0.1.0",
        "fuel used",
        "compile time",
    ] {
        assert!(table.contains(row), "no {row:?} in\n{table}");
    }
}

#[test]
fn rules_check_rejects_hostile_components_with_the_typed_reason() {
    let (_, stderr) = fails(&run(sluice()
        .args(["rules", "check"])
        .arg(wasm("reads-file"))));
    assert!(
        stderr.contains("rule rejected (forbidden_import)") && stderr.contains("wasi:filesystem"),
        "{stderr}"
    );

    let (stdout, _) = fails(&run(sluice()
        .args(["rules", "check", "--json"])
        .arg(wasm("opens-socket"))));
    let report = last_json(&stdout);
    assert_eq!(report["status"], "rejected");
    assert_eq!(report["code"], "forbidden_import");
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|r| r.contains("wasi:sockets")),
        "{report}"
    );

    let (_, stderr) = fails(&run(sluice()
        .args(["rules", "check"])
        .arg(wasm("wrong-version"))));
    assert!(stderr.contains("(unsupported_version)"), "{stderr}");
}

#[test]
fn rules_test_fires_the_threshold_example_on_the_example_window() {
    let window = example("threshold").join("window.example.json");
    let out = ok(&run(sluice()
        .args(["rules", "test", "--json", "--window"])
        .arg(&window)
        .arg("--params")
        .arg(threshold_manifest())
        .arg(wasm("threshold"))));
    let outcome = last_json(&out);
    let alerts: BTreeMap<String, String> = outcome["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| {
            (
                a["key"].as_str().unwrap_or_default().to_owned(),
                a["severity"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        alerts,
        BTreeMap::from([
            ("checkout/error_rate".to_owned(), "critical".to_owned()),
            ("payments/error_rate".to_owned(), "warning".to_owned()),
        ]),
        "auth is under min_count, search is healthy: {outcome}"
    );
    assert!(outcome["fuel_consumed"].as_u64().is_some_and(|n| n > 0));

    let table = ok(&run(sluice()
        .args(["rules", "test", "--window"])
        .arg(&window)
        .arg("--params")
        .arg(threshold_manifest())
        .arg(wasm("threshold"))));
    for text in [
        "checkout/error_rate",
        "critical",
        "service=checkout",
        "fuel",
    ] {
        assert!(table.contains(text), "no {text:?} in\n{table}");
    }
}

#[test]
fn rules_test_carries_the_state_file_between_runs_and_reports_failures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let params = dir.path().join("echo.json");
    std::fs::write(&params, r#"{"do": "echo", "message": "hi"}"#).expect("params");
    let state = dir.path().join("state.json");
    let window = example("threshold").join("window.example.json");
    let evaluations = || {
        let out = ok(&run(sluice()
            .args(["rules", "test", "--json", "--window"])
            .arg(&window)
            .arg("--params")
            .arg(&params)
            .arg("--state")
            .arg(&state)
            .arg(wasm("misbehave"))));
        let outcome = last_json(&out);
        assert!(
            outcome["stdout"]
                .as_str()
                .is_some_and(|s| s.contains("echo for acme")),
            "{outcome}"
        );
        outcome["alerts"][0]["labels"]["evaluations"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(evaluations(), "1");
    assert!(state.is_file(), "the new state is written");
    assert_eq!(evaluations(), "2", "the state is read back");

    std::fs::write(&params, r#"{"do": "panic"}"#).expect("params");
    let (_, stderr) = fails(&run(sluice()
        .args(["rules", "test", "--window"])
        .arg(&window)
        .arg("--params")
        .arg(&params)
        .arg(wasm("misbehave"))));
    assert!(
        stderr.contains("evaluation failed (panic)") && stderr.contains("deliberate panic"),
        "{stderr}"
    );
}

#[test]
fn rules_upload_to_a_directory_registers_and_precompiles_accepted_rules_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = ok(&run(sluice()
        .args([
            "rules", "upload", "--json", "--tenant", "acme", "--rule", "errors",
        ])
        .arg("--dir")
        .arg(dir.path())
        .arg("--manifest")
        .arg(threshold_manifest())
        .arg(wasm("threshold"))));
    let status = last_json(&out);
    assert_eq!(status["status"], "accepted", "{status}");
    let compiled = status["compiled_key"].as_str().expect("compiled key");
    assert!(
        compiled.starts_with("compiled/") && compiled.ends_with("/acme/errors.cwasm"),
        "{compiled}"
    );
    let rule_dir = dir.path().join("rules/acme/errors");
    for file in ["module.wasm", "rule.toml", "status.json"] {
        assert!(rule_dir.join(file).is_file(), "{file} written");
    }
    assert!(dir.path().join(compiled).is_file(), "artifact written");

    let (stdout, stderr) = fails(&run(sluice()
        .args([
            "rules", "upload", "--json", "--tenant", "acme", "--rule", "sneaky",
        ])
        .arg("--dir")
        .arg(dir.path())
        .arg("--manifest")
        .arg(threshold_manifest())
        .arg(wasm("reads-file"))));
    let status = last_json(&stdout);
    assert_eq!(status["status"], "rejected");
    assert_eq!(status["code"], "forbidden_import");
    assert!(
        stderr.contains("rule rejected (forbidden_import)"),
        "{stderr}"
    );
    let written: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("rules/acme/sneaky/status.json")).expect("status.json"),
    )
    .expect("status JSON");
    assert_eq!(written["status"], "rejected");
    let artifacts = std::fs::read_dir(dir.path().join(compiled).parent().expect("dir"))
        .expect("compiled dir")
        .count();
    assert_eq!(artifacts, 1, "only the accepted rule is precompiled");
}

/// The second run starts 46 seconds later in the minute than the first, as two runs of the same
/// command do: the windows, alerts and rows must not depend on that, nor on what the first run
/// left in the directory.
#[test]
fn demo_run_again_into_the_same_directory_later_in_the_minute_shows_the_same_incident() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("demo");
    let rules = support::wasm_dir();
    let demo = |until: &str| {
        last_json(&ok(&run(sluice()
            .args(["demo", "--records", "20000", "--tenants", "1", "--json"])
            .args(["--until", until])
            .arg("--out")
            .arg(&data)
            .arg("--rules-dir")
            .arg(&rules))))
    };
    let first = demo("2026-11-26T12:00:07Z");
    assert!(first["alerts_firing"].as_u64() > Some(0), "{first}");
    assert!(first["alerts_resolved"].as_u64() > Some(0), "{first}");
    let second = demo("2026-11-26T12:00:53Z");
    for key in [
        "windows_evaluated",
        "alerts_firing",
        "alerts_resolved",
        "rows",
    ] {
        assert_eq!(second[key], first[key], "{key}: {first} then {second}");
    }
}

/// The incident tenant's JSON records go through the front door with a key the demo made: all
/// of them accepted, the key's record under `control/`, its secret nowhere in the directory.
#[test]
fn demo_ships_a_tenants_records_through_the_front_door_with_a_key_stored_only_hashed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("demo");
    let summary = last_json(&ok(&run(sluice()
        .args(["demo", "--records", "20000", "--tenants", "2", "--json"])
        .args(["--until", "2026-11-26T12:00:07Z"])
        .arg("--out")
        .arg(&data)
        .arg("--rules-dir")
        .arg(support::wasm_dir())
        .env_remove("SLUICE_KEY_PEPPER"))));
    let door = &summary["front_door"];
    assert_eq!(door["tenant"], "acme", "{summary}");
    assert!(door["records"].as_u64() > Some(0), "{summary}");
    assert_eq!(door["accepted"], door["records"], "{summary}");
    assert!(
        door["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "{summary}"
    );
    let key_id = door["key_id"].as_str().expect("key_id");
    assert!(
        data.join("control/keys")
            .join(format!("{key_id}.json"))
            .is_file(),
        "no key record for {key_id} under control/"
    );
    let key = door["key"].as_str().expect("key");
    let secret = key.rsplit('_').next().expect("secret part");
    assert!(secret.len() >= 32 && !key_id.contains(secret), "{key}");
    let holding = files_containing(&data, secret.as_bytes());
    assert!(holding.is_empty(), "the key in clear in {holding:?}");
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        for entry in std::fs::read_dir(&next).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if std::fs::read(&path)
                .expect("read file")
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn demo_rejects_an_until_that_is_not_a_time() {
    let (_, stderr) = fails(&run(sluice().args(["demo", "--until", "yesterday"])));
    assert!(stderr.contains("not an RFC 3339 time"), "{stderr}");
}

/// The demo's metrics for one tenant, and a threshold rule's manifest for its checkout service.
struct BacktestFixture {
    dir: tempfile::TempDir,
    data: std::path::PathBuf,
    params: std::path::PathBuf,
    from: String,
    to: String,
}

impl BacktestFixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("demo");
        // Only the metrics matter here: no rules in the demo (an empty rules dir), one tenant,
        // so that every service has about 55 records a minute.
        let demo = last_json(&ok(&run(sluice()
            .args(["demo", "--records", "20000", "--tenants", "1", "--json"])
            .arg("--out")
            .arg(&data)
            .arg("--rules-dir")
            .arg(dir.path().join("no-rules")))));
        assert!(
            demo["windows_evaluated"].as_u64().is_some_and(|n| n >= 60),
            "{demo}"
        );
        let params = dir.path().join("rule.toml");
        std::fs::write(
            &params,
            "[rule]\nname = \"checkout-errors\"\n\n[params]\nmetric = \"error_rate\"\nwarning = 0.1\ncritical = 0.2\nservices = [\"checkout\"]\nmin_count = 20\n",
        )
        .expect("manifest");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        let time = sluice_core::normalize::timestamp::format_rfc3339_ms;
        Self {
            from: time(now - 3 * 3_600_000),
            to: time(now + 3_600_000),
            dir,
            data,
            params,
        }
    }

    /// `sluice backtest` of the threshold rule on tenant acme, with `extra` arguments and,
    /// when given, this text as the tenant's configuration.
    fn backtest(&self, extra: &[&str], tenant_config: Option<&str>) -> std::process::Output {
        let mut cmd = sluice();
        cmd.args(["backtest", "--tenant", "acme", "--rule"])
            .arg(wasm("threshold"))
            .arg("--params")
            .arg(&self.params)
            .arg("--data")
            .arg(&self.data)
            .args(["--from", &self.from, "--to", &self.to])
            .args(extra);
        if let Some(text) = tenant_config {
            let config = self.dir.path().join("acme.toml");
            std::fs::write(&config, text).expect("tenant config");
            cmd.arg("--tenant-config").arg(config);
        }
        run(&mut cmd)
    }
}

/// When the first alert fired in a `backtest --json` result.
fn first_firing_ms(result: &serde_json::Value) -> Option<i64> {
    result["transitions"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["kind"] == "firing"))
        .and_then(|t| t["at_ms"].as_i64())
}

#[test]
fn ingest_reads_a_file_that_reports_length_zero_but_has_content() {
    // Files under /proc have a length of 0 and content all the same: they cannot be mapped.
    let dir = tempfile::tempdir().expect("temp dir");
    let out = ok(&run(sluice()
        .args([
            "ingest",
            "/proc/self/status",
            "--partition-key",
            "acme/host",
            "--json",
        ])
        .arg("-o")
        .arg(dir.path().join("data"))));
    let report: serde_json::Value = last_json(&out);
    assert!(report["rows"].as_u64().unwrap_or(0) > 10, "{report}");
}

#[test]
fn errors_show_their_causes_without_a_backtrace_even_with_rust_backtrace_set() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.ndjson");
    let (_, stderr) = fails(&run(sluice()
        .env("RUST_BACKTRACE", "1")
        .arg("ingest")
        .arg(&missing)
        .arg("-o")
        .arg(dir.path().join("data"))));
    assert!(
        stderr.starts_with(&format!("Error: opening {}", missing.display())),
        "{stderr}"
    );
    assert!(stderr.contains("Caused by:\n    No such file"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
}

#[test]
fn ingest_fails_when_every_record_is_rejected_and_says_how_to_give_a_tenant() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("app.log");
    std::fs::write(&input, "{\"message\":\"no tenant\"}\nplain text line\n").expect("input");
    let data = dir.path().join("data");
    // The input as an argument, as `agent` takes its files (other tests give it with -i).
    let ingest = |extra: &[&str]| {
        run(sluice()
            .arg("ingest")
            .arg(&input)
            .arg("-o")
            .arg(&data)
            .args(extra))
    };
    let (stdout, stderr) = fails(&ingest(&[]));
    assert!(stdout.contains("No rows written"), "{stdout}");
    assert!(
        !stdout.contains("/raw/"),
        "no Parquet to point at: {stdout}"
    );
    assert!(stderr.contains("every record was rejected (2)"), "{stderr}");
    assert!(
        stderr.contains("2 records had no tenant field") && stderr.contains("--partition-key"),
        "{stderr}"
    );
    assert!(data.join("dlq").is_dir());

    // With the tenant given, both records are stored and no hint is printed.
    let out = ingest(&["--partition-key", "acme/app", "--json"]);
    let stdout = ok(&out);
    assert_eq!(last_json(&stdout)["rows"], 2, "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hint"));
}

#[test]
fn backtest_fires_and_resolves_around_the_demo_incident() {
    let demo = BacktestFixture::new();
    let result = last_json(&ok(&demo.backtest(&["--for", "2", "--json"], None)));
    let first = result["first_window_start_ms"]
        .as_i64()
        .expect("first window");
    let minute = |ms: i64| (ms - first) as f64 / 60_000.0;
    let transitions: Vec<(String, f64)> = result["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .map(|t| {
            assert_eq!(t["key"], "checkout/error_rate", "{t}");
            (
                t["kind"].as_str().unwrap_or_default().to_owned(),
                minute(t["at_ms"].as_i64().unwrap_or_default()),
            )
        })
        .collect();
    // The incident runs from minute 35 to 45 of the demo's hour; `for` 2 fires at the end of
    // its second window, and the first window without it resolves. In between, a window whose
    // severity differs from the one before (warning, critical) is a repeat.
    let (repeats, transitions): (Vec<_>, Vec<_>) = transitions
        .into_iter()
        .partition(|(kind, _)| kind == "repeat");
    assert!(
        repeats.iter().all(|(_, at)| (35.0..=49.0).contains(at)),
        "{result}"
    );
    assert_eq!(transitions.len(), 2, "{result}");
    assert_eq!(transitions[0].0, "firing", "{result}");
    assert!((35.0..=40.0).contains(&transitions[0].1), "{result}");
    assert_eq!(transitions[1].0, "resolved", "{result}");
    assert!((44.0..=49.0).contains(&transitions[1].1), "{result}");
    assert_eq!(result["firing_at_end"], serde_json::json!([]));
    assert_eq!(result["failures"], serde_json::json!([]));

    let table = ok(&demo.backtest(&["--for", "2"], None));
    for text in [
        "FIRING",
        "resolved",
        "checkout/error_rate",
        "no log patterns",
    ] {
        assert!(table.contains(text), "no {text:?} in\n{table}");
    }
}

#[test]
fn backtest_applies_the_data_directorys_own_tenant_configuration_unless_told_not_to() {
    let demo = BacktestFixture::new();
    let own = demo.data.join("tenants").join("acme.toml");
    let mut text = std::fs::read_to_string(&own).expect("the demo writes the tenant's config");
    text.push_str("\n[rules.checkout-errors]\nfor_windows = 3\n");
    std::fs::write(&own, text).expect("tenant config");

    let out = demo.backtest(&["--json"], None);
    let result = last_json(&ok(&out));
    assert_eq!(result["for_windows"], 3, "{result}");
    assert_eq!(result["tenant_config"], own.display().to_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("using the tenant configuration"),
        "{stderr}"
    );

    let ignored = last_json(&ok(&demo.backtest(&["--json", "--no-tenant-config"], None)));
    assert_eq!(ignored["for_windows"], 1, "{ignored}");
    assert_eq!(ignored["tenant_config"], serde_json::Value::Null);
}

#[test]
fn backtest_applies_the_tenants_overrides_of_the_rule() {
    let demo = BacktestFixture::new();
    let baseline = last_json(&ok(&demo.backtest(&["--for", "2", "--json"], None)));
    assert!(first_firing_ms(&baseline).is_some(), "{baseline}");

    // The tenant's for_windows (no --for given) fires one window later than --for 2.
    let slower = last_json(&ok(&demo.backtest(
        &["--json"],
        Some("[rules.checkout-errors]\nfor_windows = 3\n"),
    )));
    assert_eq!(slower["for_windows"], 3, "{slower}");
    assert_eq!(
        first_firing_ms(&slower),
        first_firing_ms(&baseline).map(|at| at + 60_000),
        "{slower}"
    );
    // --for still wins over it.
    let explicit = last_json(&ok(&demo.backtest(
        &["--for", "2", "--json"],
        Some("[rules.checkout-errors]\nfor_windows = 3\n"),
    )));
    assert_eq!(first_firing_ms(&explicit), first_firing_ms(&baseline));

    // Its params override the manifest's: thresholds the incident never reaches.
    let lenient = last_json(&ok(&demo.backtest(
        &["--json"],
        Some("[rules.checkout-errors]\nparams = { warning = 0.9, critical = 0.95 }\n"),
    )));
    assert_eq!(lenient["transitions"], serde_json::json!([]), "{lenient}");

    // A rule the tenant disabled is not replayed: production does not run it.
    let (_, stderr) = fails(&demo.backtest(
        &["--json"],
        Some("[rules.checkout-errors]\ndisabled = true\n"),
    ));
    assert!(stderr.contains("disables rule checkout-errors"), "{stderr}");
}

#[test]
fn alerts_redrive_resends_kept_notifications_signed_and_keeps_what_still_fails() {
    use sluice_core::alerting::lifecycle::{LifecycleConfig, apply};
    use sluice_core::alerting::model::{RuleAlert, Severity};
    use sluice_core::alerting::webhook::{idempotency_key, payload};
    use sluice_core::evaluate::Undelivered;

    const SECRET: &str = "redrive-secret";
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let receiver = runtime
        .block_on(sluice_notify::receiver::Receiver::start(SECRET.as_bytes()))
        .expect("receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |rel: &str, body: &[u8]| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(path, body).expect("write");
    };
    write(
        "tenants/acme.toml",
        format!(
            "[[webhooks]]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
            receiver.url()
        )
        .as_bytes(),
    );
    let mut alerts = BTreeMap::new();
    let produced = [RuleAlert {
        key: "checkout/error_rate".into(),
        severity: Severity::Critical,
        title: "checkout: error rate 35% above 20%".into(),
        description: String::new(),
        labels: BTreeMap::from([("service".to_owned(), "checkout".to_owned())]),
        value: 0.35,
    }];
    let window_start = 1_795_600_000_000;
    let transitions = apply(
        &mut alerts,
        "acme",
        "threshold",
        LifecycleConfig::default(),
        &produced,
        window_start + 60_000,
    );
    let idem = idempotency_key("acme", window_start, &transitions);
    let record = Undelivered {
        tenant: "acme".into(),
        window_start_ms: window_start,
        url: receiver.url(),
        idempotency_key: idem.clone(),
        payload: serde_json::to_value(payload("acme", &transitions)).expect("payload"),
        error: Some("HTTP 503".into()),
        attempts: 5,
        refused: None,
    };
    let key = format!("alerts/undelivered/tenant=acme/{window_start:013}-{idem}-0.json");
    write(&key, &serde_json::to_vec(&record).expect("record"));
    let redrive = |extra: &[&str]| {
        run(sluice()
            .args(["alerts", "redrive", "--json", "--attempts", "1"])
            // The test's receiver listens on 127.0.0.1 (docs/ARCHITECTURE.md §10).
            .args(["--allow-loopback-webhooks", "--dir"])
            .arg(dir.path())
            .args(extra))
    };

    receiver.fail_next(1);
    let (stdout, stderr) = fails(&redrive(&[]));
    let counts = last_json(&stdout);
    assert_eq!(
        (counts["delivered"].as_u64(), counts["failed"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(stderr.contains("still fail"), "{stderr}");
    let kept: Undelivered =
        serde_json::from_slice(&std::fs::read(dir.path().join(&key)).expect("kept"))
            .expect("record");
    assert_eq!(kept.attempts, 6, "the failed attempt is counted");
    assert!(
        kept.error.is_some_and(|e| e.contains("500")),
        "the new error is kept"
    );

    let counts = last_json(&ok(&redrive(&["--tenant", "acme"])));
    assert_eq!(
        (counts["delivered"].as_u64(), counts["failed"].as_u64()),
        (Some(1), Some(0))
    );
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert!(
        received[0].signature_valid,
        "signed with the tenant's secret"
    );
    assert_eq!(received[0].idempotency_key.as_deref(), Some(idem.as_str()));
    assert_eq!(received[0].payload.alerts[0].status, "firing");
    assert!(
        !dir.path().join(&key).exists(),
        "a delivered notification is removed"
    );

    let counts = last_json(&ok(&redrive(&[])));
    assert_eq!(counts["delivered"], 0, "nothing left to send");
}

/// A cargo workspace like `plugins/` (same settings, lock file and SDK) but empty, in a temp
/// directory, so that scaffolding never touches the real one.
fn scratch_plugins_workspace(root: &Path) {
    let plugins = plugins_dir();
    let text = std::fs::read_to_string(plugins.join("Cargo.toml")).expect("plugins/Cargo.toml");
    let mut manifest: toml::Table = toml::from_str(&text).expect("plugins manifest");
    let workspace = manifest
        .get_mut("workspace")
        .and_then(toml::Value::as_table_mut)
        .expect("[workspace]");
    workspace.insert("members".into(), toml::Value::from(vec!["examples/*"]));
    let sdk = std::path::absolute(plugins.join("sdk")).expect("sdk path");
    let deps = workspace
        .get_mut("dependencies")
        .and_then(toml::Value::as_table_mut)
        .expect("[workspace.dependencies]");
    deps.insert(
        "sluice-rule-sdk".into(),
        toml::Value::from(toml::Table::from_iter([(
            "path".to_owned(),
            toml::Value::from(sdk.display().to_string()),
        )])),
    );
    std::fs::write(
        root.join("Cargo.toml"),
        toml::to_string(&manifest).expect("toml"),
    )
    .expect("write manifest");
    std::fs::copy(plugins.join("Cargo.lock"), root.join("Cargo.lock")).expect("lock file");
    std::fs::create_dir_all(root.join(".cargo")).expect(".cargo");
    std::fs::copy(
        plugins.join(".cargo/config.toml"),
        root.join(".cargo/config.toml"),
    )
    .expect("cargo config");
}

#[test]
fn rules_new_scaffolds_a_crate_that_builds_passes_its_tests_and_validates() {
    const NAME: &str = "scaffold-smoke";
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    scratch_plugins_workspace(root);
    let examples = root.join("examples");

    let out = ok(&run(sluice()
        .current_dir(root)
        .args(["rules", "new", NAME, "--dir"])
        .arg(&examples)));
    assert!(out.contains("cargo test -p scaffold-smoke"), "{out}");
    for file in ["Cargo.toml", "rule.toml", "src/lib.rs"] {
        assert!(examples.join(NAME).join(file).is_file(), "{file} created");
    }
    let lib = examples.join(NAME).join("src/lib.rs");
    let before = std::fs::read_to_string(&lib).expect("lib.rs");
    let (_, stderr) = fails(&run(sluice()
        .current_dir(root)
        .args(["rules", "new", NAME, "--dir"])
        .arg(&examples)));
    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&lib).expect("lib.rs"), before);

    // One command builds it, in the shared plugins target dir (its dependencies are built).
    let built: serde_json::Value = serde_json::from_str(
        ok(&run(sluice()
            .args(["rules", "build", "--json", "-p", NAME, "--plugins-dir"])
            .arg(root)
            .arg("--target-dir")
            .arg(plugins_target())))
        .trim(),
    )
    .expect("a JSON list of components");
    let component = built[0]["path"].as_str().expect("a component").to_owned();
    assert!(component.ends_with("scaffold_smoke.wasm"), "{built}");

    let report = last_json(&ok(&run(sluice()
        .args(["rules", "check", "--json", &component, "--manifest"])
        .arg(examples.join(NAME).join("rule.toml")))));
    assert_eq!(report["status"], "accepted", "{report}");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let tests = std::process::Command::new(cargo)
        .current_dir(root)
        .args(["test", "-p", NAME])
        .env("CARGO_TARGET_DIR", plugins_target())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("cargo test");
    let stdout = String::from_utf8_lossy(&tests.stdout);
    assert!(
        tests.status.success() && stdout.contains("3 passed"),
        "the scaffold's tests:\n{stdout}\n{}",
        String::from_utf8_lossy(&tests.stderr)
    );
    // Leave no stray component (or other uplifted output) next to the real ones.
    for dir in [
        plugins_target().join("wasm32-wasip2/debug"),
        plugins_target().join("debug"),
    ] {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("scaffold_smoke") || name.starts_with("libscaffold_smoke") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// The emulator `cargo xtask test` starts (moto or LocalStack), as the end-to-end tests use it.
fn emulator_endpoint() -> String {
    match std::env::var("SLUICE_TEST_ENDPOINT") {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => panic!(
            "SLUICE_TEST_ENDPOINT is not set: run cargo xtask test, or `eval \"$(cargo xtask emulator up)\"` \
             and export SLUICE_TEST_ENDPOINT (with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set to dummies)"
        ),
    }
}

#[test]
fn rules_upload_and_alerts_redrive_work_against_buckets_on_an_emulator() {
    use sluice_core::BlobStore as _;
    use sluice_core::evaluate::Undelivered;

    let endpoint = emulator_endpoint();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let settings = sluice_aws::AwsSettings {
        endpoint_url: Some(endpoint.clone()),
        region: Some("us-east-1".into()),
        max_attempts: None,
    };
    let client = sluice_aws::s3_client(&runtime.block_on(sluice_aws::load_sdk_config(&settings)));
    let unique = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos()
    );
    let (rules_bucket, data_bucket) = (
        format!("sluice-cli-rules-{unique}"),
        format!("sluice-cli-data-{unique}"),
    );
    for bucket in [&rules_bucket, &data_bucket] {
        runtime
            .block_on(client.create_bucket().bucket(bucket).send())
            .unwrap_or_else(|e| panic!("creating bucket {bucket} on {endpoint}: {e:?}"));
    }
    let rules = sluice_aws::S3BlobStore::new(client.clone(), &rules_bucket);
    let data = sluice_aws::S3BlobStore::new(client, &data_bucket);
    let upload = |rule: &str, wait: &str| {
        run(sluice()
            .args([
                "rules", "upload", "--json", "--tenant", "acme", "--rule", rule,
            ])
            .args([
                "--bucket",
                &rules_bucket,
                "--endpoint",
                &endpoint,
                "--wait",
                wait,
            ])
            .arg("--manifest")
            .arg(threshold_manifest())
            .arg(wasm("threshold"))
            .env("AWS_REGION", "us-east-1"))
    };

    // No registry function runs on the emulator: the upload lands and stays pending.
    let status = last_json(&ok(&upload("unwatched", "1")));
    assert_eq!(status["status"], "pending", "{status}");
    let keys = runtime
        .block_on(rules.list("rules/acme/unwatched/"))
        .expect("list");
    assert_eq!(
        keys,
        [
            "rules/acme/unwatched/module.wasm",
            "rules/acme/unwatched/rule.toml"
        ]
    );

    // With a registry reacting to the upload (the function's code, run here), the command
    // reports its conclusion.
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let host =
                sluice_rules::Host::new(sluice_rules::EngineConfig::default()).expect("host");
            for _ in 0..300 {
                if runtime
                    .block_on(rules.get("rules/acme/watched/module.wasm"))
                    .expect("get")
                    .is_some()
                {
                    let status = runtime
                        .block_on(sluice_rules::tenant_rules::register(
                            &host,
                            &rules,
                            &sluice_rules::Policy::default(),
                            "acme",
                            "watched",
                        ))
                        .expect("register");
                    assert!(status.accepted(), "{status:?}");
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            panic!("the upload never arrived");
        });
        let status = last_json(&ok(&upload("watched", "60")));
        assert_eq!(status["status"], "accepted", "{status}");
        let compiled = status["compiled_key"]
            .as_str()
            .expect("compiled key")
            .to_owned();
        assert!(
            runtime
                .block_on(rules.get(&compiled))
                .expect("get")
                .is_some(),
            "{compiled} is in the bucket"
        );
    });

    // A notification kept in the data bucket goes out, signed with the secret from the rules
    // bucket's tenant configuration.
    const SECRET: &str = "bucket-secret";
    let receiver = runtime
        .block_on(sluice_notify::receiver::Receiver::start(SECRET.as_bytes()))
        .expect("receiver");
    let config = format!(
        "[[webhooks]]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        receiver.url()
    );
    runtime
        .block_on(rules.put("tenants/acme.toml", config.into(), "application/toml"))
        .expect("tenant config");
    let payload = serde_json::json!({
        "version": "4", "groupKey": "{}:{tenant=\"acme\"}", "truncatedAlerts": 0, "status": "firing",
        "receiver": "sluice/acme", "groupLabels": {"tenant": "acme"}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "", "alerts": []
    });
    let record = Undelivered {
        tenant: "acme".into(),
        window_start_ms: 0,
        url: receiver.url(),
        idempotency_key: "bucket-test".into(),
        payload,
        error: None,
        attempts: 0,
        refused: None,
    };
    runtime
        .block_on(data.put(
            "alerts/undelivered/tenant=acme/0000000000000-bucket-test-0.json",
            serde_json::to_vec(&record).expect("json").into(),
            "application/json",
        ))
        .expect("undelivered record");
    let counts = last_json(&ok(&run(sluice()
        .args(["alerts", "redrive", "--json", "--allow-loopback-webhooks"])
        .args(["--bucket", &data_bucket])
        .args(["--rules-bucket", &rules_bucket, "--endpoint", &endpoint])
        .env("AWS_REGION", "us-east-1"))));
    assert_eq!(
        (counts["delivered"].as_u64(), counts["failed"].as_u64()),
        (Some(1), Some(0)),
        "{counts}"
    );
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].signature_valid);
    assert!(
        runtime
            .block_on(data.list("alerts/undelivered/"))
            .expect("list")
            .is_empty(),
        "a delivered notification is removed"
    );
}

/// Runs `cmd` with its stdout a pipe whose reader is already gone, as after `| head`.
fn with_stdout_closed(cmd: &mut std::process::Command) -> std::process::Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning sluice");
    drop(child.stdout.take());
    child.wait_with_output().expect("waiting for sluice")
}

#[test]
fn gen_into_a_closed_pipe_stops_quietly_with_success() {
    let out = with_stdout_closed(sluice().args(["gen", "--records", "100000"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_report_printed_into_a_closed_pipe_stops_quietly_after_the_work_is_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, "{\"tenant\":\"acme\",\"message\":\"hello\"}\n").expect("input");
    let data = dir.path().join("data");
    let out = with_stdout_closed(
        sluice()
            .arg("ingest")
            .arg("-i")
            .arg(&input)
            .arg("-o")
            .arg(&data),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let parquet = walk(&data)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count();
    assert_eq!(
        parquet, 1,
        "the record was stored before the report was printed"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn tenants_limits_sets_and_shows_a_tenants_limits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = |extra: &[&str]| {
        run(sluice()
            .args(["tenants", "limits", "mallory", "--json", "--data"])
            .arg(dir.path())
            .args(extra))
    };
    let defaults = last_json(&ok(&limits(&[])));
    assert_eq!(defaults["max_rules"], 50, "{defaults}");
    let set = last_json(&ok(&limits(&[
        "--set",
        "max_rules=3",
        "--set",
        "fuel=1000",
    ])));
    assert_eq!(
        (set["max_rules"].as_u64(), set["fuel"].as_u64()),
        (Some(3), Some(1000))
    );
    let stored = std::fs::read(dir.path().join("control/tenants/mallory/limits.json"))
        .expect("stored beside the tenant's keys");
    let stored: serde_json::Value = serde_json::from_slice(&stored).expect("JSON");
    assert_eq!(stored["max_rules"], 3);
    let (_, stderr) = fails(&limits(&["--set", "max_rulez=3"]));
    assert!(stderr.contains("unknown limit `max_rulez`"), "{stderr}");
    let again = last_json(&ok(&limits(&[])));
    assert_eq!(again["max_rules"], 3, "a refused --set changes nothing");
}
