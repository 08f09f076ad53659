//! `cargo xtask bench --tenants N`: evaluation at scale (docs/ARCHITECTURE.md §12). Runs the
//! `evaluate_scale` bench of `sluice-rules` (the real workers and delivery over the embedded
//! store, every store request counted) at 100, 1,000 and N tenants × 10 rules, one 60 s
//! window, and prints, per size: CPU per tenant-window, rule evaluations per CPU second, the
//! data and rules stores' requests, and the time to evaluate every tenant with 32 workers
//! extrapolated from one: CPU / 32 (one vCPU each) plus the data-store requests at
//! [`S3_REQUEST_MS`] each, overlapped by each worker's tenant concurrency.

use anyhow::{Context, Result};
use serde_json::Value;

use crate::util;

/// Workers the extrapolation assumes (the target: every tenant within 30 s of the
/// window being ready with 32 concurrent workers).
const WORKERS: f64 = 32.0;
/// S3 request latency assumed for the extrapolation (first byte, small objects, same region).
const S3_REQUEST_MS: f64 = 20.0;
/// Requests a worker has in flight at once (`EvaluateConfig::tenant_concurrency`).
const IN_FLIGHT: f64 = 8.0;
const TARGET_S: f64 = 30.0;

/// Runs the sizes up to `tenants` and prints the table (or JSON lines with `json`).
pub fn run(tenants: u64, buckets: Option<u32>, json: bool) -> Result<()> {
    let mut sizes: Vec<u64> = [100, 1_000].into_iter().filter(|n| *n < tenants).collect();
    sizes.push(tenants);
    let mut rows = Vec::new();
    for n in sizes {
        let mut cmd = util::cargo();
        cmd.args([
            "bench",
            "-p",
            "sluice-rules",
            "--bench",
            "evaluate_scale",
            "--",
            "--tenants",
            &n.to_string(),
        ]);
        if let Some(b) = buckets {
            cmd.args(["--buckets", &b.to_string()]);
        }
        let out = util::output(&mut cmd)?;
        let result = util::last_json_object(&out)
            .with_context(|| format!("evaluate_scale at {n} tenants"))?;
        if json {
            println!("{result}");
        }
        rows.push(row(&result));
    }
    if !json {
        println!(
            "{}",
            util::table(
                &[
                    ">tenants",
                    ">buckets",
                    ">CPU ms/tenant-window",
                    ">rule evals/CPU s",
                    ">data GET",
                    ">data PUT",
                    ">data LIST",
                    ">data DELETE",
                    ">data total",
                    ">rules-store total",
                    ">partial PUTs (aggregate)",
                    ">est. s @32 workers",
                ],
                &rows
            )
        );
        println!(
            "est. s @32 workers = CPU s / {WORKERS} + data requests x {S3_REQUEST_MS} ms / ({WORKERS} x {IN_FLIGHT}); target {TARGET_S} s"
        );
    }
    Ok(())
}

fn row(r: &Value) -> Vec<String> {
    let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
    let d = |k: &str| r["data_requests"][k].as_u64().unwrap_or(0).to_string();
    let data_total = f("data_requests_total");
    let estimate = f("cpu_s") / WORKERS + data_total * S3_REQUEST_MS / 1e3 / (WORKERS * IN_FLIGHT);
    vec![
        format!("{}", r["tenants"]),
        format!("{}", r["buckets"]),
        format!("{:.3}", f("cpu_ms_per_tenant_window")),
        format!("{:.0}", f("rule_evaluations_per_cpu_s")),
        d("get"),
        d("put"),
        d("list"),
        d("delete"),
        format!("{data_total:.0}"),
        format!("{:.0}", f("rules_requests_total")),
        format!("{}", r["aggregate_partial_puts"]),
        format!("{estimate:.1}"),
    ]
}
