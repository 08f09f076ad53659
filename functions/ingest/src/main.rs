//! `sluice-ingest`: the ingest Lambda function (Kinesis event source mapping with
//! `ReportBatchItemFailures`).
//!
//! Environment:
//! - `SLUICE_DATA_BUCKET` (required): the bucket for `logs/` and `dlq/`;
//! - `SLUICE_ENDPOINT_URL` or `AWS_ENDPOINT_URL` (optional): an S3 endpoint override (moto,
//!   LocalStack); S3 then uses path-style addressing;
//! - `SLUICE_AWS_MAX_ATTEMPTS` (optional): attempts per S3 call, standard retry mode;
//! - the ingest limits of `sluice_core::ingest::INGEST_ENV` (optional): record, decompressed
//!   and per-batch decoded byte caps, accepted event-time range, zstd level, CloudWatch
//!   log-group mapping (documented in `infra/template.yaml`);
//! - `RUST_LOG` or Lambda's `AWS_LAMBDA_LOG_LEVEL` (optional): log filter, `info` by default.
//!
//! Logs are JSON lines on stdout; each batch also prints one CloudWatch EMF metrics line.

use anyhow::Context as _;
use lambda_runtime::{LambdaEvent, service_fn};
use sluice_aws::kinesis_records::KinesisBatch;
use sluice_aws::lambda::{init_json_tracing, now_ms};
use sluice_aws::{AwsSettings, S3BlobStore, load_sdk_config, s3_client};
use sluice_core::{IngestConfig, IngestPipeline};
use sluice_ingest::{DATA_BUCKET_ENV, handle};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_json_tracing();

    let bucket = std::env::var(DATA_BUCKET_ENV)
        .ok()
        .filter(|b| !b.trim().is_empty())
        .with_context(|| {
            format!("{DATA_BUCKET_ENV} must name the bucket to write logs/ and dlq/ to")
        })?;
    let settings =
        AwsSettings::from_env().context("reading the AWS settings from the environment")?;
    let sdk_config = load_sdk_config(&settings).await;
    let store = S3BlobStore::new(s3_client(&sdk_config), bucket);
    let config = IngestConfig::from_vars(|name| std::env::var(name).ok())
        .context("reading the ingest limits from the environment")?;
    tracing::info!(
        max_record_bytes = config.limits.max_record_bytes,
        max_decompressed_bytes = config.limits.max_decompressed_bytes,
        max_batch_decoded_bytes = config.max_batch_decoded_bytes,
        "ingest limits"
    );
    let pipeline = IngestPipeline::new(config);
    tracing::info!(
        bucket = store.bucket(),
        endpoint_url = sdk_config.endpoint_url(),
        region = sdk_config.region().map(|r| r.as_ref()),
        "sluice-ingest initialised"
    );

    let store = &store;
    let pipeline = &pipeline;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<KinesisBatch>| async move {
            let response = handle(store, pipeline, event.payload.records, now_ms()).await;
            Ok::<_, lambda_runtime::Error>(response)
        },
    ))
    .await
    .map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"))
}
