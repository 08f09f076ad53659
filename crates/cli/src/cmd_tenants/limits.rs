//! `sluice tenants limits T [--set key=value ...] [--json] (--data DIR | --bucket B)`: shows a
//! tenant's limits, after setting the given ones (docs/ARCHITECTURE.md §10). They are stored at
//! `control/tenants/<tenant>/limits.json` in the rules bucket (or the embedded default's
//! directory), where the registry and the evaluator read them.

use anyhow::Context as _;
use clap::Args;
use sluice_core::BlobStore;
use sluice_core::tenancy::limits::{TenantLimits, limits_key};

const AFTER_HELP: &str = "Limits: fuel, memory_bytes, deadline_ms (per evaluation of one rule); \
max_rules, max_state_bytes (all the tenant's rules together); max_alerts_per_window, \
max_services_per_window, max_patterns_per_window; ingest_records_per_s, ingest_bytes_per_s \
(enforced by the API). Values are whole numbers >= 1; a tenant without stored limits has the \
defaults.";

#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct LimitsArgs {
    /// The tenant.
    tenant: String,
    /// Set a limit, `key=value` (repeatable); the others keep their values.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Shows the tenant's limits in `store` (the `--data` directory or `--bucket`), after setting
/// the given ones; JSON with `json`.
pub async fn run(store: &dyn BlobStore, args: LimitsArgs, json: bool) -> anyhow::Result<()> {
    let key = limits_key(&args.tenant)?;
    let mut limits = TenantLimits::load(store, &args.tenant)
        .await
        .with_context(|| format!("reading {key}"))?;
    for assignment in &args.set {
        limits.set(assignment)?;
    }
    if !args.set.is_empty() {
        limits
            .save(store, &args.tenant)
            .await
            .with_context(|| format!("writing {key}"))?;
    }
    if json {
        println!("{}", serde_json::to_string(&limits)?);
    } else {
        let value = serde_json::to_value(limits)?;
        println!("limits of tenant {} ({key}):", args.tenant);
        for name in TenantLimits::KEYS {
            println!("  {name:<26} {}", value[name]);
        }
    }
    Ok(())
}
