//! `sluice-latency`: how long after an incident's first record each tenant's first page
//! arrives, with `sluice local run`'s runner on the emulator and the template's defaults (60 s
//! windows, no lateness, 5 s batching windows), N tenants plus a tenant whose webhook never
//! answers and one whose rule loops (docs/ARCHITECTURE.md §12; the scenario is
//! [`sluice_e2e::incident`]). `cargo xtask latency` starts the emulator and runs it.
//!
//! Each run starts the incident at a random point of a window, so the runs sample the whole
//! range a page can take (the incident's window must end first). Prints one line per run and,
//! with `--json`, a JSON object per run.
//!
//! Usage: `sluice-latency [--runs 5] [--tenants 98] [--json]`.

use std::time::Duration;

use anyhow::{Context as _, bail};
use sluice_e2e::incident::{self, Scenario};

fn arg(args: &[String], name: &str, default: usize) -> anyhow::Result<usize> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} needs a value"))?
            .parse()
            .with_context(|| format!("{name} takes a whole number")),
        None => Ok(default),
    }
}

fn median(sorted: &[i64]) -> i64 {
    match sorted.len() {
        0 => 0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("sluice-latency [--runs 5] [--tenants 98] [--json]");
        return Ok(());
    }
    let runs = arg(&args, "--runs", 5)?;
    let tenants = arg(&args, "--tenants", 98)?;
    let json = args.iter().any(|a| a == "--json");
    let mut firsts = Vec::new();
    println!(
        "{:>3}  {:>15}  {:>10}  {:>10}  {:>10}  {:>7}  {:>11}",
        "run", "incident at :ss", "first (s)", "median (s)", "last (s)", "paged", "rule errors"
    );
    for run in 1..=runs {
        // Start the incident 10 s into the run plus a random point of a 60 s window.
        let lead = Duration::from_millis(10_000 + fastrand::u64(0..60_000));
        let scenario = Scenario::template_defaults(tenants, lead);
        let outcome = incident::run(&scenario)
            .await
            .with_context(|| format!("run {run}"))?;
        let mut latencies = outcome.latencies_ms();
        latencies.sort_unstable();
        let paged = latencies.len();
        if paged == 0 {
            bail!(
                "run {run}: no tenant was paged within {:?}",
                scenario.patience
            );
        }
        let first = latencies[0];
        let last = latencies[paged - 1];
        let mid = median(&latencies);
        firsts.push(first);
        let second_of_minute = (outcome.incident_start_ms / 1000) % 60;
        let s = |ms: i64| ms as f64 / 1000.0;
        println!(
            "{run:>3}  {second_of_minute:>15}  {:>10.1}  {:>10.1}  {:>10.1}  {:>3}/{:<3}  {:>11}",
            s(first),
            s(mid),
            s(last),
            paged,
            tenants,
            outcome.report.metrics.evaluator.rule_errors
        );
        if !outcome.unexpected.is_empty() {
            bail!(
                "run {run}: pages that should not exist: {:?}",
                outcome.unexpected
            );
        }
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "run": run,
                    "incident_start_ms": outcome.incident_start_ms,
                    "first_page_s": s(first),
                    "median_page_s": s(mid),
                    "last_page_s": s(last),
                    "paged": paged,
                    "tenants": tenants,
                    "dead_webhook_connections": outcome.dead_webhook_connections,
                    "rule_errors": outcome.report.metrics.evaluator.rule_errors,
                })
            );
        }
    }
    firsts.sort_unstable();
    println!(
        "median over {runs} runs of the first page: {:.1} s (target: at most 75 s)",
        median(&firsts) as f64 / 1000.0
    );
    Ok(())
}
