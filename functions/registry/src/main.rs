//! `sluice-registry`: the registry Lambda function, triggered by S3 object-created events on
//! `rules/` in the rules bucket.
//!
//! Environment: `SLUICE_RULES_BUCKET` (required), and the usual endpoint override.

use anyhow::Context as _;
use aws_lambda_events::s3::S3Event;
use lambda_runtime::{LambdaEvent, service_fn};
use sluice_aws::lambda::{init_json_tracing, required_env};
use sluice_aws::{AwsSettings, S3BlobStore, load_sdk_config, s3_client};
use sluice_registry::Action;
use sluice_rules::tenant_rules::{register, roll_back};
use sluice_rules::{EngineConfig, Host, Policy};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_json_tracing();
    let bucket = required_env("SLUICE_RULES_BUCKET", "the bucket tenants upload rules/ to")?;
    let settings = AwsSettings::from_env().context("reading the AWS settings")?;
    let sdk = load_sdk_config(&settings).await;
    let store = S3BlobStore::new(s3_client(&sdk), bucket);
    let host = Host::new(EngineConfig::default()).context("starting the rules engine")?;
    let policy = Policy::default();
    tracing::info!(
        fingerprint = host.fingerprint(),
        "sluice-registry initialised"
    );
    let (store, host, policy) = (&store, &host, &policy);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<S3Event>| async move {
        let mut statuses = Vec::new();
        for (tenant, rule, action) in sluice_registry::uploads(&event.payload) {
            let status = match action {
                Action::Register => register(host, store, policy, &tenant, &rule).await?,
                Action::Rollback => roll_back(host, store, policy, &tenant, &rule).await?,
            };
            statuses.push(serde_json::json!({"tenant": tenant, "rule": rule, "status": status.status, "reason": status.reason}));
        }
        Ok::<_, lambda_runtime::Error>(serde_json::Value::Array(statuses))
    }))
    .await
    .map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"))
}
