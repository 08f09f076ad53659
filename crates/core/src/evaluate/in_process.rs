//! [`Evaluator`]: the planner, the workers and the delivery wired together over in-process
//! queues ([`InProcessQueue`]), for `sluice local run`, the demo and tests: the same code the
//! Lambda functions run, with tokio channels instead of SQS (docs/ARCHITECTURE.md §12).
//!
//! For each ready window the planner's items go on the work queue; `workers` of them are
//! evaluated at once, each retried up to `item_attempts` times while a tenant of it fails; the
//! notifications they queue are delivered while the workers still run.

use std::collections::BTreeMap;

use super::delivery::{Deliverer, DeliveryItem, DeliveryOutcome};
use super::planner::{Planner, WorkItem};
use super::queue::{InProcessQueue, WorkQueue as _};
use super::worker::{ItemOutcome, Worker};
use super::{EvaluateConfig, EvaluateError, EvaluationRun, RuleRunner, TenantReport, WindowReport};
use crate::alerting::delivery::HttpPoster;
use crate::store::BlobStore;

/// A boxed `Send` future.
pub(crate) type Boxed<'f, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'f>>;

/// Runs evaluations against a data store (partials, metrics, alerts) and a rules store
/// (`tenants/*.toml`).
#[derive(Debug)]
pub struct Evaluator<'a> {
    pub data: &'a dyn BlobStore,
    pub rules_store: &'a dyn BlobStore,
    pub runner: &'a dyn RuleRunner,
    pub http: &'a dyn HttpPoster,
    pub config: EvaluateConfig,
}

impl Evaluator<'_> {
    /// Evaluates every ready window not evaluated yet (up to the per-run cap), in order. A
    /// window waits while a busy shard's aggregation has not reached its close
    /// ([`super::ShardWait`]).
    pub async fn run(&self, now_ms: i64) -> Result<EvaluationRun, EvaluateError> {
        self.run_windows(now_ms, None).await
    }

    /// Like [`Evaluator::run`], for a caller that knows every shard's aggregation is complete
    /// (the local runner once every shard is read to the end with no window open): progress
    /// records are not consulted.
    pub async fn run_caught_up(&self, now_ms: i64) -> Result<EvaluationRun, EvaluateError> {
        self.run_windows(now_ms, Some(now_ms)).await
    }

    /// Like [`Evaluator::run`], for a caller that tracks every shard itself (the local runner):
    /// every record that arrived before `complete_through_ms` is aggregated and its partials
    /// are stored. A window is evaluated once it has closed by then; progress records are not
    /// consulted.
    pub async fn run_through(
        &self,
        now_ms: i64,
        complete_through_ms: i64,
    ) -> Result<EvaluationRun, EvaluateError> {
        self.run_windows(now_ms, Some(complete_through_ms)).await
    }

    fn planner(&self) -> Planner<'_> {
        Planner {
            data: self.data,
            config: &self.config,
        }
    }

    async fn run_windows(
        &self,
        now_ms: i64,
        complete_through: Option<i64>,
    ) -> Result<EvaluationRun, EvaluateError> {
        let planner = self.planner();
        let plan = planner.ready(now_ms, complete_through).await?;
        let mut run = EvaluationRun {
            waiting: plan.waiting,
            ..EvaluationRun::default()
        };
        for ready in plan.ready {
            let mut report = self.evaluate_window(ready.start_ms).await?;
            report.lagging_shards = ready.lagging_shards;
            run.windows.push(report);
            planner
                .advance(ready.start_ms + self.config.window.window_ms)
                .await?;
        }
        Ok(run)
    }

    /// Evaluates one window for every tenant that has partials in it (or an open alert): its
    /// items through the workers, its notifications through the delivery.
    pub async fn evaluate_window(&self, start_ms: i64) -> Result<WindowReport, EvaluateError> {
        let planner = self.planner();
        let work = InProcessQueue::<WorkItem>::new();
        work.send_all(planner.items(start_ms))
            .await
            .map_err(|e| EvaluateError::Queue(e.to_string()))?;
        work.close();
        let deliveries = InProcessQueue::<DeliveryItem>::new();
        let worker = Worker {
            data: self.data,
            rules_store: self.rules_store,
            runner: self.runner,
            config: &self.config,
        };
        let deliverer = Deliverer {
            data: self.data,
            rules_store: self.rules_store,
            http: self.http,
            retry: self.config.retry,
        };
        let workers = async {
            // Boxed as `Send` futures: a lazy `map` over borrowed queues would not be provably
            // `Send` for every lifetime, which a spawned evaluator needs.
            let mut pool: Vec<Boxed<'_, Vec<Result<ItemOutcome, EvaluateError>>>> = Vec::new();
            for _ in 0..self.config.workers.max(1) {
                pool.push(Box::pin(async {
                    let mut outcomes = Vec::new();
                    while let Some(item) = work.recv().await {
                        outcomes.push(self.run_item(&worker, item, &deliveries).await);
                    }
                    outcomes
                }));
            }
            let outcomes = futures::future::join_all(pool).await;
            deliveries.close();
            outcomes.into_iter().flatten().collect::<Vec<_>>()
        };
        let delivering = deliverer.drain(&deliveries, self.config.delivery);
        let (outcomes, delivered) = tokio::join!(workers, delivering);
        let mut tenants: BTreeMap<String, TenantReport> = BTreeMap::new();
        for outcome in outcomes {
            for report in outcome?.tenants {
                tenants.insert(report.tenant.clone(), report);
            }
        }
        for (item, outcome) in delivered {
            let Some(report) = tenants.get_mut(&item.tenant) else {
                continue;
            };
            match outcome {
                DeliveryOutcome::Delivered { url } => report.delivered.push(url),
                DeliveryOutcome::Failed { url, .. } => report.undelivered.push(url),
                DeliveryOutcome::Refused { url, reason } => {
                    report.refused.push(format!("{url}: {reason}"));
                    report.undelivered.push(url);
                }
                DeliveryOutcome::Gone => {}
            }
        }
        Ok(WindowReport {
            start_ms,
            end_ms: start_ms + self.config.window.window_ms,
            tenants: tenants.into_values().collect(),
            lagging_shards: Vec::new(),
        })
    }

    /// One item, attempted again while a tenant of it fails (as SQS would re-deliver it): the
    /// tenants already done skip the window then, and keep their first report.
    async fn run_item(
        &self,
        worker: &Worker<'_>,
        item: WorkItem,
        deliveries: &InProcessQueue<DeliveryItem>,
    ) -> Result<ItemOutcome, EvaluateError> {
        let mut merged: Option<ItemOutcome> = None;
        let attempts = self.config.item_attempts.max(1);
        for attempt in 1..=attempts {
            let outcome = match worker.evaluate_item(item, deliveries).await {
                Ok(outcome) => outcome,
                Err(e) if attempt < attempts => {
                    tracing::warn!(?item, attempt, error = %e, "work item failed; retrying");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let retry = outcome.failed().next().is_some();
            merged = Some(match merged {
                None => outcome,
                Some(mut first) => {
                    // Keep the reports of the tenants done before; take the retried ones.
                    for report in outcome.tenants {
                        match first.tenants.iter_mut().find(|t| t.tenant == report.tenant) {
                            Some(old) if old.error.is_some() => *old = report,
                            Some(_) => {}
                            None => first.tenants.push(report),
                        }
                    }
                    first
                }
            });
            if !retry {
                break;
            }
            tracing::warn!(
                ?item,
                attempt,
                "tenants of the work item failed; retrying them"
            );
        }
        Ok(merged.unwrap_or_default())
    }
}
