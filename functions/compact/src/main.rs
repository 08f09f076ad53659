//! `sluice-compact`: the compact Lambda function, run every 15 minutes by an EventBridge
//! schedule (docs/ARCHITECTURE.md §11). A thin adapter over [`sluice_core::compact`]: each raw
//! hour (one object per ingested batch) whose end plus the allowed lateness has passed is folded
//! into one object per tenant-hour under `logs/`, then the watermark moves past it.
//!
//! Environment: `SLUICE_DATA_BUCKET` (required), `SLUICE_COMPACT_LATENESS_SECONDS` (3600: at
//! least the stream's maximum record age plus the ingest function's timeout, or a batch could
//! be written to an hour already compacted), `SLUICE_COMPACT_MAX_HOURS` (24, raw hours per
//! run), and the usual endpoint override. Run it with reserved concurrency 1: a tenant-hour's
//! object is read, merged and written back, and two concurrent runs could lose one's rows.

use anyhow::Context as _;
use lambda_runtime::{LambdaEvent, service_fn};
use sluice_aws::lambda::{init_json_tracing, now_ms, required_env, seconds_env};
use sluice_aws::{AwsSettings, S3BlobStore, load_sdk_config, s3_client};
use sluice_core::compact::{CompactConfig, compact};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_json_tracing();
    let data_bucket = required_env("SLUICE_DATA_BUCKET", "the bucket with raw/ and logs/")?;
    let config = CompactConfig {
        lateness_ms: seconds_env("SLUICE_COMPACT_LATENESS_SECONDS", 3600)? * 1000,
        max_hours_per_pass: usize::try_from(seconds_env("SLUICE_COMPACT_MAX_HOURS", 24)?)
            .context("SLUICE_COMPACT_MAX_HOURS")?,
        ..CompactConfig::default()
    };
    let settings = AwsSettings::from_env().context("reading the AWS settings")?;
    let sdk = load_sdk_config(&settings).await;
    let data = S3BlobStore::new(s3_client(&sdk), data_bucket);
    tracing::info!(
        lateness_ms = config.lateness_ms,
        "sluice-compact initialised"
    );
    let (data, config) = (&data, &config);
    lambda_runtime::run(service_fn(
        move |_event: LambdaEvent<serde_json::Value>| async move {
            let pass = compact(data, config, now_ms()).await?;
            tracing::info!(
                hours = pass.hours,
                raw_objects = pass.raw_objects,
                raw_rows = pass.raw_rows,
                duplicates = pass.duplicates,
                written = pass.written.len(),
                watermark_ms = pass.watermark_ms,
                "compaction pass finished"
            );
            Ok::<_, lambda_runtime::Error>(serde_json::json!({
                "hours": pass.hours,
                "objects_written": pass.written.len(),
                "duplicates": pass.duplicates,
                "watermark_ms": pass.watermark_ms,
            }))
        },
    ))
    .await
    .map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"))
}
