//! `sluice-evaluate`: the evaluate Lambda function, run every minute by an EventBridge schedule.
//!
//! Environment: `SLUICE_DATA_BUCKET` and `SLUICE_RULES_BUCKET` (required),
//! `SLUICE_WINDOW_SECONDS` (60), `SLUICE_ALLOWED_LATENESS_SECONDS` (120),
//! `SLUICE_SHARD_GRACE_SECONDS` (60) and `SLUICE_MAX_SHARD_WAIT_SECONDS` (600) (how long a closed
//! window waits for shards whose aggregation is behind), `SLUICE_AGGREGATE_BATCHING_WINDOW_SECONDS`
//! (5; a window is evaluated 10 s more than this after its close, so that a quiet shard has
//! reported records that arrived just before it), and the usual endpoint override. Run it with
//! reserved concurrency 1: each tenant's state is written with a conditional write, so a second
//! concurrent run sends nothing twice, but it does no good either.

use anyhow::Context as _;
use lambda_runtime::{LambdaEvent, service_fn};
use sluice_aws::lambda::{init_json_tracing, now_ms, required_env, seconds_env};
use sluice_aws::{AwsSettings, S3BlobStore, emf, load_sdk_config, s3_client};
use sluice_core::evaluate::{EvaluateConfig, Evaluator, ShardWait};
use sluice_core::window::WindowConfig;
use sluice_rules::tenant_rules::StoreRuleRunner;
use sluice_rules::{EngineConfig, Host, Policy};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_json_tracing();
    let data_bucket = required_env(
        "SLUICE_DATA_BUCKET",
        "the bucket with windows/, metrics/ and alerts/",
    )?;
    let rules_bucket = required_env(
        "SLUICE_RULES_BUCKET",
        "the bucket with rules/, compiled/ and tenants/",
    )?;
    let window = WindowConfig {
        window_ms: seconds_env("SLUICE_WINDOW_SECONDS", 60)? * 1000,
        allowed_lateness_ms: seconds_env("SLUICE_ALLOWED_LATENESS_SECONDS", 120)? * 1000,
        ..WindowConfig::default()
    };
    let settings = AwsSettings::from_env().context("reading the AWS settings")?;
    let sdk = load_sdk_config(&settings).await;
    let data = S3BlobStore::new(s3_client(&sdk), data_bucket);
    let rules = S3BlobStore::new(s3_client(&sdk), rules_bucket);
    let host = Host::new(EngineConfig::default()).context("starting the rules engine")?;
    let runner = StoreRuleRunner::new(&host, &rules, Policy::default());
    // Public HTTPS destinations only (docs/ARCHITECTURE.md §10): never loopback on AWS.
    let http = sluice_notify::HttpPoster::new().context("building the webhook client")?;
    let evaluator = Evaluator {
        data: &data,
        rules_store: &rules,
        runner: &runner,
        http: &http,
        config: EvaluateConfig {
            window,
            shard_wait: ShardWait {
                grace_ms: seconds_env("SLUICE_SHARD_GRACE_SECONDS", 60)? * 1000,
                max_wait_ms: seconds_env("SLUICE_MAX_SHARD_WAIT_SECONDS", 600)? * 1000,
                first_report_ms: ShardWait::first_report_after(
                    seconds_env("SLUICE_AGGREGATE_BATCHING_WINDOW_SECONDS", 5)? * 1000,
                ),
            },
            ..EvaluateConfig::default()
        },
    };
    let function =
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "sluice-evaluate".into());
    tracing::info!(
        fingerprint = host.fingerprint(),
        "sluice-evaluate initialised"
    );
    let (evaluator, function, runner) = (&evaluator, &function, &runner);
    lambda_runtime::run(service_fn(
        move |_event: LambdaEvent<serde_json::Value>| async move {
            let now = now_ms();
            let run = evaluator.run(now).await?;
            let loads = runner.take_load_stats();
            let counts = sluice_evaluate::RunCounts {
                artifact_digest_mismatches: loads.artifact_digest_mismatches,
                rules_recompiled: loads.recompiled,
                ..sluice_evaluate::counts(&run)
            };
            tracing::info!(?counts, "evaluation run finished");
            emf::emit(&sluice_evaluate::metrics_line(function, &counts, now));
            Ok::<_, lambda_runtime::Error>(counts)
        },
    ))
    .await
    .map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"))
}
