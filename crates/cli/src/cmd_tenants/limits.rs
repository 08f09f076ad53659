//! `sluice tenants limits T [--set key=value ...] [--json] (--data DIR | --bucket B)`: shows a
//! tenant's limits, after setting the given ones (docs/ARCHITECTURE.md §10). They are stored at
//! `control/tenants/<tenant>/limits.json` in the rules bucket (or the embedded default's
//! directory), where the registry and the evaluator read them.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use sluice_core::tenancy::limits::{TenantLimits, limits_key};
use sluice_core::{BlobStore, LocalDirStore};

const AFTER_HELP: &str = "Limits: fuel, memory_bytes, deadline_ms (per evaluation of one rule); \
max_rules, max_state_bytes (all the tenant's rules together); max_alerts_per_window, \
max_services_per_window, max_patterns_per_window; ingest_records_per_s, ingest_bytes_per_s \
(enforced by the API). Values are whole numbers >= 1; a tenant without stored limits has the \
defaults.";

#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
#[command(group(clap::ArgGroup::new("store").required(true).args(["data", "bucket"])))]
pub struct LimitsArgs {
    /// The tenant.
    tenant: String,
    /// Set a limit, `key=value` (repeatable); the others keep their values.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print the limits as one JSON object.
    #[arg(long)]
    json: bool,
    /// The embedded default's directory (the rules side of it).
    #[arg(long, conflicts_with = "bucket")]
    data: Option<PathBuf>,
    /// The rules bucket.
    #[arg(long)]
    bucket: Option<String>,
    /// S3 endpoint (moto, LocalStack, MinIO...); default: SLUICE_ENDPOINT_URL, then the SDK's
    /// own settings.
    #[arg(long, requires = "bucket")]
    endpoint: Option<String>,
}

pub async fn run(args: LimitsArgs) -> anyhow::Result<()> {
    let key = limits_key(&args.tenant)?;
    let store: Box<dyn BlobStore> = match (&args.data, &args.bucket) {
        (Some(dir), _) => Box::new(LocalDirStore::new(dir)),
        (None, Some(bucket)) => Box::new(crate::stores::s3(bucket, args.endpoint.clone()).await?),
        (None, None) => anyhow::bail!("give --data DIR or --bucket B"),
    };
    let mut limits = TenantLimits::load(store.as_ref(), &args.tenant)
        .await
        .with_context(|| format!("reading {key}"))?;
    for assignment in &args.set {
        limits.set(assignment)?;
    }
    if !args.set.is_empty() {
        limits
            .save(store.as_ref(), &args.tenant)
            .await
            .with_context(|| format!("writing {key}"))?;
    }
    if args.json {
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
