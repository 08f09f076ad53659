//! `api`: the front door Lambda function (docs/ARCHITECTURE.md §8). The `sluice-api` router
//! behind an API Gateway HTTP API (payload format 2.0), through `lambda_http`.
//!
//! Environment:
//! - `SLUICE_STREAM` (required): the stream's name or ARN, where stamped records go;
//! - `SLUICE_RULES_BUCKET` (required): tenants and keys, under `control/`;
//! - `SLUICE_KEY_PEPPER_SECRET_ARN`: the Secrets Manager secret holding the key pepper, read
//!   once at init (or `SLUICE_KEY_PEPPER` itself, for emulators);
//! - `SLUICE_API_*`: limits and the per-tenant quota (`sluice_api::ApiConfig`).
//!
//! Clients, the key cache and the quotas are built at init and kept while the instance is
//! warm; looked-up keys are trusted for at most 60 s, so a revocation takes effect within that.

use std::sync::Arc;

use anyhow::Context as _;
use sluice_api::{ApiConfig, ApiState, KinesisSink};
use sluice_aws::kinesis_put::{KinesisWriter, StreamRef};
use sluice_aws::lambda::{init_json_tracing, required_env};
use sluice_aws::{AwsSettings, S3BlobStore, load_sdk_config, s3_client};
use sluice_core::tenancy::{KeyCache, KeyStore, Pepper};

/// The pepper: `SLUICE_KEY_PEPPER`, else the secret named by `SLUICE_KEY_PEPPER_SECRET_ARN`.
async fn pepper(sdk: &aws_config::SdkConfig) -> anyhow::Result<Pepper> {
    if let Ok(text) = std::env::var("SLUICE_KEY_PEPPER")
        && !text.trim().is_empty()
    {
        return Ok(Pepper::from_text(&text)?);
    }
    let arn = required_env(
        "SLUICE_KEY_PEPPER_SECRET_ARN",
        "the Secrets Manager secret with the key pepper",
    )?;
    let secret = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .with_context(|| format!("reading the key pepper secret {arn}"))?;
    let text = secret
        .secret_string()
        .context("the key pepper secret has no string value")?;
    Ok(Pepper::from_text(text)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_json_tracing();
    let stream = required_env("SLUICE_STREAM", "the Kinesis stream records go to")?;
    let bucket = required_env("SLUICE_RULES_BUCKET", "the bucket holding control/keys/")?;
    let settings = AwsSettings::from_env().context("reading the AWS settings")?;
    let sdk = load_sdk_config(&settings).await;
    // One bucket: keys under control/keys/, tenant rules and configurations under rules/,
    // tenants/ and control/tenants/ (the API role may reach no other prefix).
    let rules: Arc<dyn sluice_core::BlobStore> =
        Arc::new(S3BlobStore::new(s3_client(&sdk), bucket));
    let keys = KeyStore::new(Arc::clone(&rules), pepper(&sdk).await?);
    let writer = KinesisWriter::new(sluice_aws::kinesis_client(&sdk), StreamRef::parse(&stream));
    let state = ApiState::new(
        KeyCache::new(keys),
        Arc::new(KinesisSink::new(writer)),
        ApiConfig::from_env()?,
    )
    .with_rules_store(rules);
    tracing::info!(stream, "sluice api initialised");
    lambda_http::run(sluice_api::router(Arc::new(state)))
        .await
        .map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"))
}
