//! `sluice rules test FILE.wasm --window window.json`: one evaluation on a window of your own.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use comfy_table::Cell;
use sluice_rules::{Alert, Outcome, Params, Policy, Window};

use super::Refused;
use crate::{report, ui};

/// The long `--help` text (clap takes the short one from the command's doc comment).
pub const LONG_ABOUT: &str = r#"Evaluate a rule component once, in the same sandbox and under the same limits as the
deployed pipeline, on a window given as JSON, and print the alerts it returns (key, severity,
title, value, labels), the fuel and time it used, and anything it printed.

The window is the contract's `window` record (plugins/wit/since_v0.1.0/rules.wit documents
every field) as JSON; fields marked optional may be left out:

  {
    "tenant": "acme",
    "start_ms": 1767225600000,       window start, ms since the epoch (inclusive)
    "end_ms": 1767225660000,         window end (exclusive)
    "services": [                    optional, [] by default
      {
        "service": "checkout",
        "count": 1200,               records in the window
        "levels": {"trace": 0, "debug": 0, "info": 990, "warn": 30, "error": 170, "fatal": 10},
        "requests": 1100,            records with an HTTP status (optional, 0)
        "status4xx": 30,             (optional, 0)
        "status5xx": 165,            (optional, 0)
        "error_rate": 0.15,          (error + fatal) / count
        "latency": {"count": 1100, "p50": 45, "p90": 180, "p95": 420, "p99": 1900, "max": 5200}
                                     milliseconds (optional, null: no latencies)
      }
    ],
    "patterns": [                    optional, [] by default
      {
        "id": "6574a1f03b1e2a17",    stable across windows
        "template": "circuit breaker <*> opened after <*> failures",
        "service": "checkout",
        "level": "error",            trace | debug | info | warn | error | fatal
        "count": 64,
        "first_seen": true,          the tenant's first time (optional, false)
        "sample": "circuit breaker payments-api opened after 5 failures"   (optional, "")
      }
    ]
  }

plugins/examples/threshold/window.example.json is a complete window that makes the threshold
example fire:

  sluice rules test plugins/target/wasm32-wasip2/release/threshold.wasm \
    --window plugins/examples/threshold/window.example.json \
    --params plugins/examples/threshold/rule.toml

With --state FILE, successive runs carry the rule's state the way the host carries it from one
window to the next.

Exits non-zero when the rule is rejected or its evaluation fails (out of fuel, a panic, invalid
params, ...), with the stable code and the exact reason."#;

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The rule component, e.g. plugins/target/wasm32-wasip2/release/threshold.wasm.
    wasm: PathBuf,
    /// The window to evaluate, as JSON (see above).
    #[arg(long, short)]
    window: PathBuf,
    /// The rule's params: its manifest (`rule.toml`, whose [params] and [limits] are used) or
    /// a JSON object (`*.json`). Without it the rule gets `{}`.
    #[arg(long, short)]
    params: Option<PathBuf>,
    /// A state file, carried between runs as the host carries it between windows: read before
    /// the evaluation (a missing file means no state), replaced with the rule's new state after.
    #[arg(long, short)]
    state: Option<PathBuf>,
    /// Print the outcome as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: TestArgs) -> anyhow::Result<()> {
    let wasm = super::read_wasm(&args.wasm)?;
    let window = read_window(&args.window)?;
    let (params, manifest) = match &args.params {
        Some(path) => super::read_params(path)?,
        None => (Params::empty(), None),
    };
    let policy = manifest.as_ref().map_or_else(Policy::default, |m| {
        Policy::default().restricted_by(&m.limits)
    });
    let state = match &args.state {
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e).with_context(|| format!("reading the state {}", path.display()));
            }
        },
        None => None,
    };
    let host = super::host()?;
    let spinner = ui::spinner(args.json, format!("loading {}", args.wasm.display()));
    let rule = host.load(&wasm);
    spinner.finish_and_clear();
    let rule = rule.map_err(|e| Refused::rejected(&e))?;
    let outcome = host
        .evaluate(&rule, &window, &params, state.as_deref(), &policy)
        .map_err(|e| Refused::failed(&e))?;
    if let Some(path) = &args.state {
        match &outcome.state {
            Some(bytes) => std::fs::write(path, bytes)
                .with_context(|| format!("writing the state {}", path.display()))?,
            None => match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("removing the state {}", path.display()));
                }
            },
        }
    }
    if args.json {
        println!("{}", json(&outcome, &policy));
        return Ok(());
    }
    if outcome.alerts.is_empty() {
        println!(
            "no alerts for tenant {} in the window {} .. {}",
            window.tenant,
            ui::time(window.start_ms),
            ui::time(window.end_ms)
        );
    } else {
        println!("{}", alerts_table(&outcome.alerts));
    }
    println!(
        "fuel {} of {} · {} · output {} · state {}{}",
        report::count(outcome.fuel_consumed),
        report::count(policy.fuel),
        ui::millis(outcome.duration),
        report::bytes(outcome.output_bytes as u64),
        report::bytes(outcome.state.as_ref().map_or(0, Vec::len) as u64),
        args.state
            .as_ref()
            .map(|p| format!(" → {}", p.display()))
            .unwrap_or_default()
    );
    if !outcome.stdout.is_empty() {
        println!("rule stdout:\n{}", outcome.stdout);
    }
    if !outcome.stderr.is_empty() {
        println!("rule stderr:\n{}", outcome.stderr);
    }
    Ok(())
}

fn read_window(path: &Path) -> anyhow::Result<Window> {
    let text =
        std::fs::read(path).with_context(|| format!("reading the window {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a window (see `sluice rules test --help` for its JSON shape)",
            path.display()
        )
    })
}

fn alerts_table(alerts: &[Alert]) -> comfy_table::Table {
    let mut t = report::table(&["key", "severity", "title", "value", "labels"]);
    for a in alerts {
        t.add_row(vec![
            Cell::new(&a.key),
            Cell::new(a.severity.as_str()),
            Cell::new(&a.title),
            report::right(ui::value(a.value)),
            Cell::new(
                a.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        ]);
    }
    t
}

fn json(outcome: &Outcome, policy: &Policy) -> serde_json::Value {
    let alerts: Vec<serde_json::Value> = outcome
        .alerts
        .iter()
        .map(|a| {
            serde_json::json!({
                "key": a.key,
                "severity": a.severity.as_str(),
                "title": a.title,
                "description": a.description,
                "labels": a
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                    .collect::<serde_json::Map<_, _>>(),
                "value": a.value,
            })
        })
        .collect();
    // The SDK keeps state as JSON; show it as such when it is, else only its size.
    let state = outcome
        .state
        .as_deref()
        .and_then(|s| serde_json::from_slice::<serde_json::Value>(s).ok());
    serde_json::json!({
        "alerts": alerts,
        "fuel_consumed": outcome.fuel_consumed,
        "fuel_budget": policy.fuel,
        "duration_ms": outcome.duration.as_secs_f64() * 1000.0,
        "output_bytes": outcome.output_bytes,
        "state": state,
        "state_bytes": outcome.state.as_ref().map_or(0, Vec::len),
        "stdout": outcome.stdout,
        "stderr": outcome.stderr,
    })
}
