//! The storage cost table of `cargo xtask bench` (docs/ARCHITECTURE.md §11): `sluice
//! storage-cost` measures a sample of 1,000 Zipf-skewed tenants on 4 shards through a request
//! counting store and scales it to a day; this module prints its table and checks the issue's
//! targets on its figures:
//! - S3 requests per ingest batch do not depend on the number of tenants (the same load with 10
//!   and with 1,000 tenants makes the same ingest PUTs);
//! - all requests per GB (ingest, dead letters, compaction) are at most 1/50 of the old
//!   layout's (one object per tenant-hour per batch);
//! - compacted objects average at least 64 MiB wherever a tenant-hour has that much data.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::util::note;

/// Runs `sluice storage-cost` and prints its table, then checks the targets.
pub fn run(sluice: &Path, json: bool) -> Result<Value> {
    let thousand = cost(sluice, 1000, json)?;
    let ten = cost(sluice, 10, true)?;
    let per_gb = |v: &Value, key: &str| v["per_gb"][key].as_f64().unwrap_or(f64::NAN);
    let checks = [
        (
            "ingest PUTs per GB with 1,000 tenants equal those with 10",
            (per_gb(&thousand, "ingest_put") - per_gb(&ten, "ingest_put")).abs() < 1e-9,
        ),
        (
            "requests per GB at most 1/50 of the old layout's",
            per_gb(&thousand, "reduction") >= 50.0,
        ),
        (
            "tenant-hours of 64 MiB or more average at least 64 MiB",
            thousand["day"]["big_average_bytes"].as_f64().unwrap_or(0.0) == 0.0
                || thousand["day"]["big_average_bytes"].as_f64().unwrap_or(0.0)
                    >= 64.0 * 1024.0 * 1024.0,
        ),
    ];
    for (what, ok) in checks {
        note(format!(
            "storage target: {what}: {}",
            if ok { "met" } else { "MISSED" }
        ));
    }
    Ok(thousand)
}

fn cost(sluice: &Path, tenants: usize, json: bool) -> Result<Value> {
    let mut cmd = Command::new(sluice);
    cmd.args(["storage-cost", "--tenants", &tenants.to_string(), "--json"]);
    let out = cmd
        .output()
        .with_context(|| format!("running {} storage-cost", sluice.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "sluice storage-cost failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: Value =
        serde_json::from_slice(&out.stdout).context("storage-cost printed no JSON")?;
    if !json {
        // The human table, from the same binary.
        let table = Command::new(sluice)
            .args(["storage-cost", "--tenants", &tenants.to_string()])
            .output()
            .context("running sluice storage-cost")?;
        print!("{}", String::from_utf8_lossy(&table.stdout));
    }
    Ok(value)
}
