//! `sluice-aggregate`: the aggregate Lambda function (Kinesis event source mapping with
//! `TumblingWindowInSeconds`).
//!
//! Environment: `SLUICE_DATA_BUCKET` (required; partials go under `windows/partials/`, shard
//! progress under `windows/progress/`), `SLUICE_WINDOW_SECONDS` (default 60),
//! `SLUICE_ALLOWED_LATENESS_SECONDS` (default 0), `SLUICE_TENANT_BUCKETS` (32, B of
//! docs/ARCHITECTURE.md §12), `SLUICE_PLANNER_WAKE_QUEUE_URL` (optional: a final invocation
//! sends the evaluate planner a wake-up there, delayed by the time a quiet shard's first report
//! may take: `SLUICE_AGGREGATE_BATCHING_WINDOW_SECONDS`, default 5, plus 10 s), `SLUICE_ENDPOINT_URL`/
//! `AWS_ENDPOINT_URL` (optional endpoint override).

use anyhow::Context as _;
use lambda_runtime::{LambdaEvent, service_fn};
use sluice_aws::lambda::{count_env, init_json_tracing, now_ms, required_env, seconds_env};
use sluice_aws::sqs_queue::{PlannerWake, sqs_client};
use sluice_aws::{AwsSettings, S3BlobStore, load_sdk_config, s3_client};
use sluice_core::IngestConfig;
use sluice_core::evaluate::ShardWait;
use sluice_core::tenant_bucket::TenantBuckets;
use sluice_core::window::WindowConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_json_tracing();
    let bucket = required_env(
        "SLUICE_DATA_BUCKET",
        "the bucket that holds windows/partials/",
    )?;
    let windows = WindowConfig {
        window_ms: seconds_env("SLUICE_WINDOW_SECONDS", 60)? * 1000,
        allowed_lateness_ms: seconds_env("SLUICE_ALLOWED_LATENESS_SECONDS", 0)? * 1000,
        tenant_buckets: TenantBuckets::new(count_env(
            "SLUICE_TENANT_BUCKETS",
            TenantBuckets::DEFAULT.count(),
        )?),
        ..WindowConfig::default()
    };
    let settings = AwsSettings::from_env().context("reading the AWS settings")?;
    let sdk = load_sdk_config(&settings).await;
    let store = S3BlobStore::new(s3_client(&sdk), bucket);
    let ingest = IngestConfig::default();
    let wake = match std::env::var("SLUICE_PLANNER_WAKE_QUEUE_URL") {
        Ok(url) if !url.is_empty() => Some(PlannerWake::new(
            sqs_client(&sdk),
            url,
            ShardWait::first_report_after(
                seconds_env("SLUICE_AGGREGATE_BATCHING_WINDOW_SECONDS", 5)? * 1000,
            ) / 1000,
        )),
        _ => None,
    };
    tracing::info!(
        bucket = store.bucket(),
        window_ms = windows.window_ms,
        "sluice-aggregate initialised"
    );
    let (store, ingest, windows, wake) = (&store, &ingest, &windows, &wake);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<sluice_aggregate::WindowEvent>| async move {
            let sluice_aggregate::WindowEvent { records, props } = event.payload;
            let response =
                sluice_aggregate::handle(store, ingest, windows, &records, &props, now_ms())
                    .await?;
            if let (Some(wake), Some(through)) = (wake, response.finished_through_ms) {
                let shard = props.shard_id.as_deref().unwrap_or("unknown-shard");
                // The partials are stored: a lost wake-up only delays evaluation to the
                // planner's schedule, so it does not fail (and re-run) the window.
                if let Err(e) = wake.wake(shard, through).await {
                    tracing::warn!(error = %e, "could not wake the planner; it runs on its schedule");
                }
            }
            Ok::<_, lambda_runtime::Error>(response)
        },
    ))
    .await
    .map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"))
}
