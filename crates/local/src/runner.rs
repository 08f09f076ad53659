//! `sluice local run`: the event source mappings, the schedule and the metrics, together.
//!
//! - **Shards.** `ListShards` at start and every `discovery_interval` (and whenever a shard
//!   ends). A mapping starts a shard once every parent it has is finished for that mapping (its
//!   checkpoint says the closed parent was read to its end) or no longer listed (expired), as
//!   Lambda does after a reshard; so records of one partition key stay in order.
//! - **Mappings.** One [`ShardWorker`] per (mapping, shard), each with its own iterator and
//!   checkpoint, as two Lambda event source mappings on one stream have.
//! - **Evaluate.** On its schedule, in its own task ([`crate::scheduled_evaluate`]).
//! - **Compact.** On its schedule, in its own task ([`crate::scheduled_compact`]).
//! - **Stopping.** On the shutdown future (SIGTERM, Ctrl-C), after `max_runtime`, or when idle
//!   (`until_idle`): workers finish the batch in flight, write their checkpoints and return.
//!
//! Idle means: every shard read up to now with nothing buffered and no tumbling window open;
//! the clock past the newest record's arrival plus one window plus the allowed lateness (so
//! every window holding those records has closed, by event time too); an evaluation run after
//! that which found nothing left to evaluate; and no new record for the grace period.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use sluice_core::evaluate::EvaluateConfig;
use sluice_core::window::WindowConfig;
use sluice_core::{BlobStore, IngestConfig};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::batch_delivery::{Clock, SystemClock};
use crate::checkpoint::CheckpointStore;
use crate::destination::{FailureDestination, LogOnly, SqsDestination};
use crate::error::LocalError;
use crate::functions::{AggregateFunction, IngestFunction};
use crate::handler::BatchHandler;
use crate::kinesis_source::KinesisSource;
use crate::lambda_event::EventSource;
use crate::mapping::MappingConfig;
use crate::metrics::{Metrics, Snapshot};
use crate::scheduled_evaluate::{self, CompleteThrough, EvaluatorHandle, EvaluatorSetup};
use crate::shard_worker::{PollSettings, ProgressBoard, ShardWorker, WorkerExit};
use crate::stream_source::{ShardInfo, StreamSource};

/// Everything `sluice local run` is told.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub stream: String,
    pub data_bucket: String,
    pub rules_bucket: String,
    /// The on-failure queue's name; `None` only logs skipped batches.
    pub failure_queue: Option<String>,
    pub ingest: MappingConfig,
    pub aggregate: MappingConfig,
    /// Window length and allowed lateness, shared by aggregate and evaluate (the template
    /// sets both from `TumblingWindowSeconds` and `AllowedLatenessSeconds`).
    pub window: WindowConfig,
    /// How often the evaluator runs; `None` disables it.
    pub evaluate_every: Option<Duration>,
    /// How often compaction runs (docs/ARCHITECTURE.md §11); `None` disables it.
    pub compact_every: Option<Duration>,
    /// How long after its end a raw hour waits before it is compacted.
    pub compact_lateness: Duration,
    pub state_dir: PathBuf,
    pub metrics_addr: Option<SocketAddr>,
    /// Stop once idle for this long (see the module docs).
    pub until_idle: Option<Duration>,
    /// Stop after this long whatever happens.
    pub max_runtime: Option<Duration>,
    pub poll: PollSettings,
    pub discovery_interval: Duration,
    /// How often the progress callback is called.
    pub progress_every: Duration,
    /// Webhooks may go to loopback receivers over plain HTTP: on for the local runner, whose
    /// receivers listen on 127.0.0.1; the evaluate function on AWS never allows it
    /// (docs/ARCHITECTURE.md §10).
    pub allow_loopback_webhooks: bool,
}

impl RunConfig {
    /// The template's settings for a stream and its buckets.
    pub fn new(stream: &str, data_bucket: &str, rules_bucket: &str, state_dir: PathBuf) -> Self {
        Self {
            stream: stream.to_owned(),
            data_bucket: data_bucket.to_owned(),
            rules_bucket: rules_bucket.to_owned(),
            failure_queue: None,
            ingest: MappingConfig::ingest(),
            aggregate: MappingConfig::aggregate(),
            window: WindowConfig::default(),
            evaluate_every: Some(Duration::from_secs(60)),
            compact_every: Some(Duration::from_secs(900)),
            compact_lateness: Duration::from_secs(3600),
            state_dir,
            metrics_addr: None,
            until_idle: None,
            max_runtime: None,
            poll: PollSettings::default(),
            discovery_interval: Duration::from_secs(10),
            progress_every: Duration::from_secs(5),
            allow_loopback_webhooks: true,
        }
    }
}

/// Why the runner stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Shutdown,
    MaxRuntime,
    Idle,
}

/// The final report (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub stop_reason: StopReason,
    pub elapsed_s: f64,
    /// Records the ingest mapping delivered, per second of the run.
    pub ingest_records_per_s: f64,
    pub shards: usize,
    pub metrics_addr: Option<String>,
    pub metrics: Snapshot,
}

/// A progress callback: the figures so far and the time since the start.
pub type ProgressFn = Box<dyn Fn(&Snapshot, Duration) + Send + Sync>;

/// The parts a run is made of (real ones from [`Runner::connect`]; fakes in tests).
#[derive(Debug, Clone)]
pub struct RunParts {
    pub source: Arc<dyn StreamSource>,
    /// Each mapping with its function.
    pub mappings: Vec<(MappingConfig, Arc<dyn BatchHandler>)>,
    pub destination: Arc<dyn FailureDestination>,
    pub evaluator: Option<EvaluatorSetup>,
    pub clock: Arc<dyn Clock>,
}

/// A configured runner.
pub struct Runner {
    config: RunConfig,
    parts: RunParts,
    progress: Option<ProgressFn>,
    /// The data bucket, for the compactor ([`Self::connect`] only).
    compactor: Option<crate::scheduled_compact::CompactorSetup>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("config", &self.config)
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// Builds the real parts: Kinesis, the S3 buckets, the SQS queue, the two functions and the
    /// evaluator, all from one SDK configuration.
    pub async fn connect(
        sdk: &aws_config::SdkConfig,
        config: RunConfig,
    ) -> Result<Self, LocalError> {
        config.ingest.validate()?;
        config.aggregate.validate()?;
        let region = sdk.region().map_or_else(
            || sluice_aws::config::DEFAULT_REGION.to_owned(),
            |r| r.as_ref().to_owned(),
        );
        let source =
            KinesisSource::connect(aws_sdk_kinesis::Client::new(sdk), &config.stream, &region)
                .await?;
        let s3 = sluice_aws::s3_client(sdk);
        let data: Arc<dyn BlobStore> = Arc::new(sluice_aws::S3BlobStore::new(
            s3.clone(),
            config.data_bucket.clone(),
        ));
        let rules: Arc<dyn BlobStore> = Arc::new(sluice_aws::S3BlobStore::new(
            s3,
            config.rules_bucket.clone(),
        ));
        let destination: Arc<dyn FailureDestination> = match &config.failure_queue {
            Some(queue) => {
                Arc::new(SqsDestination::by_name(aws_sdk_sqs::Client::new(sdk), queue).await?)
            }
            None => Arc::new(LogOnly),
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        // The ingest function's limits, from the same environment variables as on Lambda.
        let ingest = IngestConfig::from_vars(|name| std::env::var(name).ok())
            .map_err(|e| LocalError::Config(e.to_string()))?;
        let mut aggregate_mapping = config.aggregate.clone();
        aggregate_mapping.tumbling_window = Some(Duration::from_millis(
            u64::try_from(config.window.window_ms).unwrap_or(60_000),
        ));
        let mappings: Vec<(MappingConfig, Arc<dyn BatchHandler>)> = vec![
            (
                config.ingest.clone(),
                Arc::new(IngestFunction::new(
                    data.clone(),
                    ingest.clone(),
                    clock.clone(),
                )),
            ),
            (
                aggregate_mapping,
                Arc::new(AggregateFunction::new(
                    data.clone(),
                    ingest,
                    config.window.clone(),
                    clock.clone(),
                )),
            ),
        ];
        let compactor =
            config
                .compact_every
                .map(|every| crate::scheduled_compact::CompactorSetup {
                    data: data.clone(),
                    config: sluice_core::compact::CompactConfig {
                        lateness_ms: i64::try_from(config.compact_lateness.as_millis())
                            .unwrap_or(i64::MAX),
                        ..sluice_core::compact::CompactConfig::default()
                    },
                    every,
                });
        let evaluator = config.evaluate_every.map(|every| EvaluatorSetup {
            data,
            rules,
            config: EvaluateConfig {
                window: config.window.clone(),
                ..EvaluateConfig::default()
            },
            policy: sluice_rules::Policy::default(),
            every,
            allow_loopback_webhooks: config.allow_loopback_webhooks,
        });
        Ok(Self {
            config,
            parts: RunParts {
                source: Arc::new(source),
                mappings,
                destination,
                evaluator,
                clock,
            },
            progress: None,
            compactor,
        })
    }

    /// A runner over the given parts.
    pub fn from_parts(config: RunConfig, parts: RunParts) -> Self {
        Self {
            config,
            parts,
            progress: None,
            compactor: None,
        }
    }

    /// Calls `f` every `progress_every` with the figures so far.
    #[must_use]
    pub fn on_progress(mut self, f: ProgressFn) -> Self {
        self.progress = Some(f);
        self
    }

    /// Runs until `shutdown` completes, `max_runtime` passes or the runner is idle.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<RunReport, LocalError> {
        let started = Instant::now();
        let metrics = Metrics::default();
        let metrics_server = match self.config.metrics_addr {
            Some(addr) => Some(metrics.serve(addr).await?),
            None => None,
        };
        let metrics_addr = metrics_server.as_ref().map(|(a, _)| a.to_string());
        if let Some(addr) = &metrics_addr {
            tracing::info!(%addr, "serving Prometheus metrics at /metrics");
        }
        let checkpoints = CheckpointStore::open(&self.config.state_dir)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let progress: ProgressBoard = Arc::default();
        let evaluator: Option<(EvaluatorHandle, tokio::task::JoinHandle<()>)> =
            match self.parts.evaluator.clone() {
                Some(setup) => Some(scheduled_evaluate::start(
                    setup,
                    metrics.clone(),
                    self.parts.clock.clone(),
                    self.complete_through(&progress),
                    stop_rx.clone(),
                )?),
                None => None,
            };
        let compactor = self.compactor.clone().map(|setup| {
            crate::scheduled_compact::start(setup, self.parts.clock.clone(), stop_rx.clone())
        });
        let mut workers: JoinSet<(String, String, Result<WorkerExit, LocalError>)> = JoinSet::new();
        // (mapping, shard) started, and those finished.
        let mut started_shards: BTreeSet<(String, String)> = BTreeSet::new();
        let finished: Arc<Mutex<BTreeSet<(String, String)>>> = Arc::default();
        let mut known_shards: Vec<ShardInfo> = Vec::new();

        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut last_discovery: Option<Instant> = None;
        let mut last_progress = Instant::now();
        let mut last_records = 0u64;
        let mut last_record_change = Instant::now();
        let mut first_error: Option<LocalError> = None;
        let stop_reason = loop {
            let due = last_discovery.is_none_or(|t| t.elapsed() >= self.config.discovery_interval);
            if due {
                last_discovery = Some(Instant::now());
                match self.parts.source.list_shards().await {
                    Ok(shards) => known_shards = shards,
                    Err(e) => {
                        tracing::warn!(error = %e, "ListShards failed; keeping the shards known")
                    }
                }
                self.start_ready_shards(
                    &known_shards,
                    &mut started_shards,
                    &finished,
                    &checkpoints,
                    &metrics,
                    &progress,
                    &stop_rx,
                    &mut workers,
                )?;
            }
            tokio::select! {
                () = &mut shutdown => break StopReason::Shutdown,
                _ = tick.tick() => {}
                Some(joined) = workers.join_next() => {
                    match joined {
                        Ok((mapping, shard, Ok(WorkerExit::ShardFinished))) => {
                            finished.lock().unwrap_or_else(PoisonError::into_inner).insert((mapping, shard));
                            // Children may be waiting for this one.
                            last_discovery = None;
                        }
                        Ok((_, _, Ok(WorkerExit::Stopped))) => {}
                        Ok((mapping, shard, Err(e))) => {
                            tracing::error!(%mapping, %shard, error = %e, "shard worker failed");
                            first_error.get_or_insert(e);
                            break StopReason::Shutdown;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "shard worker panicked");
                            break StopReason::Shutdown;
                        }
                    }
                }
            }
            if self
                .config
                .max_runtime
                .is_some_and(|max| started.elapsed() >= max)
            {
                break StopReason::MaxRuntime;
            }
            let snapshot = metrics.snapshot();
            let records: u64 = snapshot.mappings.values().map(|m| m.records).sum();
            if records != last_records {
                last_records = records;
                last_record_change = Instant::now();
            }
            if let Some(f) = &self.progress
                && last_progress.elapsed() >= self.config.progress_every
            {
                last_progress = Instant::now();
                f(&snapshot, started.elapsed());
            }
            if let Some(grace) = self.config.until_idle
                && last_record_change.elapsed() >= grace
                && !started_shards.is_empty()
                && self.idle(&progress, &started_shards, &known_shards, &finished)
                && self
                    .drained(evaluator.as_ref().map(|(h, _)| h), &progress)
                    .await
            {
                break StopReason::Idle;
            }
        };

        tracing::info!(reason = ?stop_reason, "stopping: finishing the batches in flight");
        let _ = stop_tx.send(true);
        while let Some(joined) = workers.join_next().await {
            if let Ok((mapping, shard, Err(e))) = joined {
                tracing::error!(%mapping, %shard, error = %e, "shard worker failed while stopping");
                first_error.get_or_insert(e);
            }
        }
        if let Some((handle, task)) = evaluator {
            drop(handle);
            let _ = task.await;
        }
        if let Some(task) = compactor {
            let _ = task.await;
        }
        if let Some((_, task)) = metrics_server {
            task.abort();
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let snapshot = metrics.snapshot();
        let ingest_records = snapshot
            .mappings
            .get(&self.config.ingest.name)
            .map_or(0, |m| m.records);
        Ok(RunReport {
            stop_reason,
            elapsed_s: elapsed,
            ingest_records_per_s: if elapsed > 0.0 {
                ingest_records as f64 / elapsed
            } else {
                0.0
            },
            shards: known_shards.len(),
            metrics_addr,
            metrics: snapshot,
        })
    }

    /// How far every shard of the windowed (aggregating) mappings is complete, from the board.
    /// Shards listed but not started yet are on the board too, and hold it at `i64::MIN`.
    fn complete_through(&self, progress: &ProgressBoard) -> CompleteThrough {
        let windowed: BTreeSet<String> = self
            .parts
            .mappings
            .iter()
            .filter(|(m, _)| m.tumbling_window.is_some())
            .map(|(m, _)| m.name.clone())
            .collect();
        let board = Arc::clone(progress);
        Arc::new(move |now_ms| {
            if windowed.is_empty() {
                return now_ms;
            }
            board
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter(|((mapping, _), _)| windowed.contains(mapping))
                .map(|(_, p)| p.complete_through(now_ms))
                .min()
                .unwrap_or(i64::MIN)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn start_ready_shards(
        &self,
        shards: &[ShardInfo],
        started_shards: &mut BTreeSet<(String, String)>,
        finished: &Arc<Mutex<BTreeSet<(String, String)>>>,
        checkpoints: &CheckpointStore,
        metrics: &Metrics,
        progress: &ProgressBoard,
        stop: &watch::Receiver<bool>,
        workers: &mut JoinSet<(String, String, Result<WorkerExit, LocalError>)>,
    ) -> Result<(), LocalError> {
        let listed: BTreeSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
        {
            // Every listed shard is on the board before it starts, so the evaluator waits for
            // one that is not read yet (a child waiting for its parents, or any shard before its
            // worker's first read). One pass under one lock: the evaluator never sees some of
            // the shards and not the others.
            let mut board = progress.lock().unwrap_or_else(PoisonError::into_inner);
            for (mapping, _) in &self.parts.mappings {
                for shard in shards {
                    board
                        .entry((mapping.name.clone(), shard.shard_id.clone()))
                        .or_default();
                }
            }
        }
        for (mapping, handler) in &self.parts.mappings {
            for shard in shards {
                let key = (mapping.name.clone(), shard.shard_id.clone());
                if started_shards.contains(&key) {
                    continue;
                }
                let mut ready = true;
                for parent in shard.parents() {
                    let done = !listed.contains(parent)
                        || finished
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .contains(&(mapping.name.clone(), parent.to_owned()))
                        || checkpoints
                            .load(&mapping.name, parent)?
                            .is_some_and(|c| c.shard_finished);
                    ready &= done;
                }
                if !ready {
                    continue;
                }
                started_shards.insert(key);
                let worker = ShardWorker {
                    mapping: Arc::new(mapping.clone()),
                    shard_id: shard.shard_id.clone(),
                    is_child: shard.parents().next().is_some(),
                    source: self.parts.source.clone(),
                    handler: handler.clone(),
                    destination: self.parts.destination.clone(),
                    checkpoints: checkpoints.clone(),
                    metrics: metrics.clone(),
                    clock: self.parts.clock.clone(),
                    event_source: EventSource::new(
                        self.parts.source.stream_arn(),
                        self.parts.source.region(),
                        mapping
                            .function_arn
                            .rsplit(':')
                            .next()
                            .unwrap_or(mapping.name.as_str()),
                    ),
                    poll: self.config.poll.clone(),
                    progress: progress.clone(),
                };
                let stop = stop.clone();
                let (m, s) = (mapping.name.clone(), shard.shard_id.clone());
                workers.spawn(async move { (m, s, worker.run(stop).await) });
            }
        }
        Ok(())
    }

    /// Every shard is read up to now, nothing is buffered and no window is open.
    fn idle(
        &self,
        progress: &ProgressBoard,
        started_shards: &BTreeSet<(String, String)>,
        shards: &[ShardInfo],
        finished: &Arc<Mutex<BTreeSet<(String, String)>>>,
    ) -> bool {
        let board = progress.lock().unwrap_or_else(PoisonError::into_inner);
        let finished = finished.lock().unwrap_or_else(PoisonError::into_inner);
        // Every listed shard is started, or waits on a parent that is still running.
        let all_started = self.parts.mappings.iter().all(|(m, _)| {
            shards.iter().all(|s| {
                let key = (m.name.clone(), s.shard_id.clone());
                started_shards.contains(&key) || finished.contains(&key)
            })
        });
        all_started
            && started_shards.iter().all(|key| {
                board.get(key).is_some_and(|p| {
                    p.finished || (p.caught_up && p.buffered == 0 && p.open_window_end.is_none())
                })
            })
    }

    /// Every window holding the records seen has closed (arrival + window + lateness), and an
    /// evaluation run found nothing left.
    async fn drained(&self, evaluator: Option<&EvaluatorHandle>, progress: &ProgressBoard) -> bool {
        let Some(evaluator) = evaluator else {
            return true;
        };
        let newest = progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter_map(|p| p.last_arrival_ms)
            .max();
        if let Some(newest) = newest {
            let w = &self.config.window;
            if self.parts.clock.now_ms() < newest + w.window_ms + w.allowed_lateness_ms {
                return false;
            }
        }
        match evaluator.run_caught_up().await {
            Ok(counts) => counts.windows == 0,
            Err(e) => {
                tracing::warn!(error = %e, "evaluation failed while draining");
                false
            }
        }
    }
}

/// Per-mapping totals, for a one-line summary.
pub fn summary_line(s: &Snapshot, elapsed: Duration) -> String {
    let mut parts: Vec<String> = Vec::new();
    let per = |n: u64| n as f64 / elapsed.as_secs_f64().max(0.001);
    for (name, m) in &s.mappings {
        parts.push(format!(
            "{name}: {} records ({:.0}/s), {} batches, {} errors, {} to on-failure, age {} ms",
            m.records,
            per(m.records),
            m.batches,
            m.function_errors,
            m.records_to_destination,
            s.max_iterator_age_ms(name)
        ));
    }
    let e = &s.evaluator;
    parts.push(format!(
        "evaluate: {} windows, {} rules run, {} rule errors, {} alerts sent",
        e.windows_evaluated, e.rule_evaluations, e.rule_errors, e.alerts_sent
    ));
    format!("[{:>6.1}s] {}", elapsed.as_secs_f64(), parts.join(" | "))
}

#[cfg(test)]
mod tests;
