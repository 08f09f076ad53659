//! `sluice-evaluate`: the evaluate Lambda function. `SLUICE_EVALUATE_ROLE` picks its role
//! (docs/ARCHITECTURE.md §12): `planner` (EventBridge schedule; queues work items on
//! `SLUICE_WORK_QUEUE_URL`), `worker` (SQS work queue; queues notifications on
//! `SLUICE_DELIVERY_QUEUE_URL`), `delivery` (SQS delivery queue), or `all` (the default: one
//! scheduled run evaluates and delivers in-process).
//!
//! Environment: `SLUICE_DATA_BUCKET` and `SLUICE_RULES_BUCKET` (required),
//! `SLUICE_WINDOW_SECONDS` (60), `SLUICE_ALLOWED_LATENESS_SECONDS` (0),
//! `SLUICE_TENANT_BUCKETS` (32), `SLUICE_SHARD_GRACE_SECONDS` (60) and
//! `SLUICE_MAX_SHARD_WAIT_SECONDS` (600) (how long a closed window waits for shards whose
//! aggregation is behind), `SLUICE_AGGREGATE_BATCHING_WINDOW_SECONDS` (5; a window is
//! evaluated 10 s more than this after its close, so that a quiet shard has reported records
//! that arrived just before it), and the usual endpoint override. Each tenant's state is
//! written with a conditional write, so overlapping runs or a re-delivered message send
//! nothing twice.

use anyhow::Context as _;
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use sluice_aws::lambda::{count_env, init_json_tracing, now_ms, required_env, seconds_env};
use sluice_aws::sqs_queue::{SqsWorkQueue, sqs_client};
use sluice_aws::{AwsSettings, S3BlobStore, emf, load_sdk_config, s3_client};
use sluice_core::evaluate::delivery::{Deliverer, DeliveryItem};
use sluice_core::evaluate::planner::{Planner, WorkItem};
use sluice_core::evaluate::worker::Worker;
use sluice_core::evaluate::{EvaluateConfig, Evaluator, ShardWait};
use sluice_core::tenant_bucket::TenantBuckets;
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
        allowed_lateness_ms: seconds_env("SLUICE_ALLOWED_LATENESS_SECONDS", 0)? * 1000,
        tenant_buckets: TenantBuckets::new(count_env(
            "SLUICE_TENANT_BUCKETS",
            TenantBuckets::DEFAULT.count(),
        )?),
        ..WindowConfig::default()
    };
    let config = EvaluateConfig {
        window,
        shard_wait: ShardWait {
            grace_ms: seconds_env("SLUICE_SHARD_GRACE_SECONDS", 60)? * 1000,
            max_wait_ms: seconds_env("SLUICE_MAX_SHARD_WAIT_SECONDS", 600)? * 1000,
            first_report_ms: ShardWait::first_report_after(
                seconds_env("SLUICE_AGGREGATE_BATCHING_WINDOW_SECONDS", 5)? * 1000,
            ),
        },
        ..EvaluateConfig::default()
    };
    let settings = AwsSettings::from_env().context("reading the AWS settings")?;
    let sdk = load_sdk_config(&settings).await;
    let data = S3BlobStore::new(s3_client(&sdk), data_bucket);
    let rules = S3BlobStore::new(s3_client(&sdk), rules_bucket);
    let role = std::env::var("SLUICE_EVALUATE_ROLE").unwrap_or_else(|_| "all".to_owned());
    let function =
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "sluice-evaluate".into());
    match role.as_str() {
        "planner" => {
            let work = SqsWorkQueue::<WorkItem>::new(
                sqs_client(&sdk),
                required_env("SLUICE_WORK_QUEUE_URL", "the queue of work items")?,
                |item| (item.dedup_id(), item.group_id()),
            );
            let planner = Planner {
                data: &data,
                config: &config,
            };
            tracing::info!(role, "sluice-evaluate initialised");
            let (planner, work) = (&planner, &work);
            lambda_runtime::run(service_fn(
                move |_event: LambdaEvent<serde_json::Value>| async move {
                    let plan = planner.enqueue(now_ms(), work).await?;
                    tracing::info!(windows = plan.ready.len(), waiting = ?plan.waiting, "planned");
                    Ok::<_, lambda_runtime::Error>(plan)
                },
            ))
            .await
        }
        "worker" => {
            let host = Host::new(EngineConfig::default()).context("starting the rules engine")?;
            let runner = StoreRuleRunner::new(&host, &rules, Policy::default());
            let deliveries = SqsWorkQueue::<DeliveryItem>::new(
                sqs_client(&sdk),
                required_env("SLUICE_DELIVERY_QUEUE_URL", "the queue of notifications")?,
                |d| (d.key.clone(), d.tenant.clone()),
            );
            let worker = Worker {
                data: &data,
                rules_store: &rules,
                runner: &runner,
                config: &config,
            };
            tracing::info!(
                role,
                fingerprint = host.fingerprint(),
                "sluice-evaluate initialised"
            );
            let (worker, deliveries) = (&worker, &deliveries);
            lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
                Ok::<_, lambda_runtime::Error>(
                    sluice_evaluate::sqs_roles::work_batch(worker, deliveries, event.payload).await,
                )
            }))
            .await
        }
        "delivery" => {
            // Public HTTPS destinations only (docs/ARCHITECTURE.md §10): never loopback on AWS.
            let http = sluice_notify::HttpPoster::new().context("building the webhook client")?;
            let deliverer = Deliverer {
                data: &data,
                rules_store: &rules,
                http: &http,
                retry: config.retry,
            };
            tracing::info!(role, "sluice-evaluate initialised");
            let deliverer = &deliverer;
            lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
                Ok::<_, lambda_runtime::Error>(
                    sluice_evaluate::sqs_roles::delivery_batch(deliverer, event.payload).await,
                )
            }))
            .await
        }
        "all" => {
            let host = Host::new(EngineConfig::default()).context("starting the rules engine")?;
            let runner = StoreRuleRunner::new(&host, &rules, Policy::default());
            // Public HTTPS destinations only (docs/ARCHITECTURE.md §10): never loopback on AWS.
            let http = sluice_notify::HttpPoster::new().context("building the webhook client")?;
            let evaluator = Evaluator {
                data: &data,
                rules_store: &rules,
                runner: &runner,
                http: &http,
                config,
            };
            tracing::info!(
                role,
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
        }
        other => anyhow::bail!(
            "SLUICE_EVALUATE_ROLE={other:?}: expected planner, worker, delivery or all"
        ),
    }
    .map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"))
}
