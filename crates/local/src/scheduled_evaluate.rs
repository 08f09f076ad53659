//! The evaluate function on its schedule (EventBridge `rate(1 minute)` in the template), wired
//! as `functions/evaluate/src/main.rs` wires it: partials and summaries in the data bucket,
//! rules and tenant configurations in the rules bucket, the wasmtime [`Host`], the
//! [`StoreRuleRunner`] and the webhook client.
//!
//! It runs in a task of its own, which owns the engine and the rule cache; the runner asks it
//! for a run through [`EvaluatorHandle`] (to drain before exiting) besides the schedule. It is
//! also woken as soon as a window becomes ready: every second it compares what every shard has
//! stored ([`CompleteThrough`], the runner's watermark) with the next window's close, and runs
//! the moment that close is passed, not on the next minute of the schedule
//! (docs/ARCHITECTURE.md §12).

use std::sync::Arc;
use std::time::Duration;

use sluice_core::BlobStore;
use sluice_core::evaluate::{EvaluateConfig, Evaluator};
use sluice_evaluate::RunCounts;
use sluice_rules::tenant_rules::StoreRuleRunner;
use sluice_rules::{EngineConfig, Host, Policy};
use tokio::sync::{mpsc, oneshot, watch};

use crate::batch_delivery::Clock;
use crate::error::LocalError;
use crate::metrics::Metrics;

type Reply = oneshot::Sender<Result<RunCounts, String>>;

/// A run asked for through the handle.
#[derive(Debug)]
struct Request {
    reply: Reply,
    /// Every shard's aggregation is known to be complete: no waiting on progress records.
    caught_up: bool,
}

/// Asks the evaluator task for a run now.
#[derive(Debug, Clone)]
pub struct EvaluatorHandle {
    requests: mpsc::Sender<Request>,
}

impl EvaluatorHandle {
    /// Runs the evaluator now, for a runner that is idle: every shard is read to its end with
    /// no tumbling window open, so every partial is stored and no shard needs waiting for
    /// ([`Evaluator::run_caught_up`]). Returns the run's counts.
    pub async fn run_caught_up(&self) -> Result<RunCounts, String> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request {
                reply: tx,
                caught_up: true,
            })
            .await
            .map_err(|_| "the evaluator task has stopped".to_owned())?;
        rx.await
            .map_err(|_| "the evaluator task has stopped".to_owned())?
    }
}

/// Given the time now, the arrival time before which every shard's records are aggregated
/// and stored (see [`crate::shard_worker::WorkerProgress::complete_through`]).
pub type CompleteThrough = Arc<dyn Fn(i64) -> i64 + Send + Sync>;

/// What the evaluator needs.
#[derive(Debug, Clone)]
pub struct EvaluatorSetup {
    pub data: Arc<dyn BlobStore>,
    pub rules: Arc<dyn BlobStore>,
    pub config: EvaluateConfig,
    pub policy: Policy,
    pub every: Duration,
    /// Deliver to loopback receivers over plain HTTP (docs/ARCHITECTURE.md §10).
    pub allow_loopback_webhooks: bool,
}

/// Starts the evaluator task. It runs every `setup.every` and on request, until `stop`.
///
/// A scheduled run evaluates only the windows that closed before `complete_through`: the
/// runner knows every shard, including one not read yet, which progress records cannot tell.
pub fn start(
    setup: EvaluatorSetup,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
    complete_through: CompleteThrough,
    mut stop: watch::Receiver<bool>,
) -> Result<(EvaluatorHandle, tokio::task::JoinHandle<()>), LocalError> {
    let host = Host::new(EngineConfig::default())
        .map_err(|e| LocalError::Evaluator(format!("starting the rules engine: {e}")))?;
    let http = if setup.allow_loopback_webhooks {
        sluice_notify::HttpPoster::allowing_loopback()
    } else {
        sluice_notify::HttpPoster::new()
    }
    .map_err(|e| LocalError::Evaluator(format!("building the webhook client: {e}")))?;
    let (tx, mut rx) = mpsc::channel::<Request>(4);
    let task = tokio::spawn(async move {
        let runner = StoreRuleRunner::new(&host, setup.rules.as_ref(), setup.policy);
        let evaluator = Evaluator {
            data: setup.data.as_ref(),
            rules_store: setup.rules.as_ref(),
            runner: &runner,
            http: &http,
            config: setup.config.clone(),
        };
        tracing::info!(
            fingerprint = host.fingerprint(),
            every_s = setup.every.as_secs_f64(),
            "evaluator scheduled"
        );
        let mut ticker = tokio::time::interval(setup.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch = tokio::time::interval(Duration::from_secs(1));
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let window = setup.config.window.clone();
        // The newest window closed by the watermark at the last run. A watermark before the
        // epoch (no shard has reported yet: `i64::MIN`) closes nothing.
        let last_closed = |through: i64| match through
            .checked_sub(window.window_ms + window.allowed_lateness_ms)
        {
            Some(t) if t >= 0 => window.window_start(t),
            _ => i64::MIN,
        };
        let mut closed_at_last_run = i64::MIN;
        loop {
            let reply = tokio::select! {
                _ = ticker.tick() => None,
                _ = watch.tick() => {
                    let now = clock.now_ms();
                    if last_closed(complete_through(now).min(now)) <= closed_at_last_run {
                        continue;
                    }
                    None
                }
                request = rx.recv() => match request {
                    Some(reply) => Some(reply),
                    None => break,
                },
                _ = stop.changed() => break,
            };
            let now = clock.now_ms();
            closed_at_last_run = last_closed(complete_through(now).min(now));
            let run = match &reply {
                Some(Request {
                    caught_up: true, ..
                }) => evaluator.run_caught_up(now).await,
                _ => evaluator.run_through(now, complete_through(now)).await,
            };
            let result = match run {
                Ok(run) => {
                    let counts = sluice_evaluate::counts(&run);
                    if counts.windows > 0 {
                        tracing::info!(?counts, "evaluation run finished");
                    }
                    metrics.evaluation(Some(&counts));
                    Ok(counts)
                }
                Err(e) => {
                    tracing::error!(error = %e, "evaluation run failed");
                    metrics.evaluation(None);
                    Err(e.to_string())
                }
            };
            if let Some(request) = reply {
                let _ = request.reply.send(result);
            }
        }
    });
    Ok((EvaluatorHandle { requests: tx }, task))
}
