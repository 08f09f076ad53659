//! The planner: which windows are ready, and one [`WorkItem`] per (window, tenant bucket) for
//! each (docs/ARCHITECTURE.md §12).
//!
//! A window is ready once it has closed (end plus allowed lateness, and the time a quiet shard's
//! first report may take: [`super::ShardWait::first_report_ms`]) and every busy shard's
//! aggregation is past its close ([`crate::window::progress`]), or once the longest wait has run
//! out for a shard still behind. `windows/state/watermark.json` holds the next window to plan;
//! it advances as soon as a window's items are queued, since the queue (its retries and its
//! dead-letter queue) owns them from then on.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::queue::WorkQueue;
use super::{EvaluateConfig, EvaluateError, HeldBack, read_json};
use crate::error::CoreError;
use crate::partition;
use crate::store::BlobStore;
use crate::window::progress::{self, ShardProgress};

const WATERMARK_KEY: &str = "windows/state/watermark.json";

#[derive(Debug, Serialize, Deserialize)]
struct Watermark {
    next_window_start: i64,
}

/// One unit of evaluation: one tenant bucket of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkItem {
    pub window_start_ms: i64,
    pub bucket: u32,
}

impl WorkItem {
    /// A name unique per (window, bucket): the SQS FIFO deduplication id, so a planner woken
    /// twice for one window queues its items once.
    pub fn dedup_id(&self) -> String {
        format!("{:013}-{:04}", self.window_start_ms, self.bucket)
    }

    /// The SQS FIFO message group: the bucket, so that one bucket's windows are evaluated one
    /// at a time and in order (its state is one object), and the buckets side by side.
    pub fn group_id(&self) -> String {
        format!("bucket-{:04}", self.bucket)
    }
}

/// A window the planner found ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadyWindow {
    pub start_ms: i64,
    /// Shards still behind when the longest wait ran out.
    pub lagging_shards: Vec<String>,
}

/// What the planner found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub ready: Vec<ReadyWindow>,
    /// The next closed window, if it waits for shards whose aggregation is behind.
    pub waiting: Option<HeldBack>,
}

/// Whether a closed window may be evaluated.
enum Gate {
    Open { left_behind: Vec<String> },
    Wait(HeldBack),
}

/// Finds ready windows and queues their work.
#[derive(Debug)]
pub struct Planner<'a> {
    pub data: &'a dyn BlobStore,
    pub config: &'a EvaluateConfig,
}

impl Planner<'_> {
    /// The windows ready at `now_ms`, in order (at most the per-run cap). With
    /// `complete_through`, the caller vouches that every record that arrived before it is
    /// aggregated (the local runner): progress records are not consulted.
    pub async fn ready(
        &self,
        now_ms: i64,
        complete_through: Option<i64>,
    ) -> Result<Plan, EvaluateError> {
        let closed_by = match complete_through {
            Some(t) => t.min(now_ms),
            None => now_ms - self.config.shard_wait.first_report_ms,
        };
        let w = &self.config.window;
        let mut next = match self.next_window().await? {
            Some(next) => next,
            None => match self.earliest_partial(now_ms).await? {
                Some(start) => start,
                None => return Ok(Plan::default()),
            },
        };
        let mut plan = Plan::default();
        let mut shards: Option<Vec<ShardProgress>> = None;
        while w.is_closed(next, closed_by) && plan.ready.len() < self.config.max_windows_per_run {
            let lagging_shards = if complete_through.is_none() {
                let shards = match &shards {
                    Some(s) => s,
                    None => shards.insert(progress::load_all(self.data).await?),
                };
                match self.shard_gate(shards, next, now_ms) {
                    Gate::Open { left_behind } => left_behind,
                    Gate::Wait(held) => {
                        plan.waiting = Some(held);
                        break;
                    }
                }
            } else {
                Vec::new()
            };
            plan.ready.push(ReadyWindow {
                start_ms: next,
                lagging_shards,
            });
            next += w.window_ms;
        }
        Ok(plan)
    }

    /// One item per tenant bucket of the window starting at `start_ms`.
    pub fn items(&self, start_ms: i64) -> Vec<WorkItem> {
        self.config
            .window
            .tenant_buckets
            .all()
            .map(|bucket| WorkItem {
                window_start_ms: start_ms,
                bucket,
            })
            .collect()
    }

    /// Plans and queues every ready window's items, advancing the watermark past each (the
    /// Lambda planner). Returns the plan.
    pub async fn enqueue(
        &self,
        now_ms: i64,
        queue: &dyn WorkQueue<WorkItem>,
    ) -> Result<Plan, EvaluateError> {
        let plan = self.ready(now_ms, None).await?;
        for window in &plan.ready {
            queue
                .send_all(self.items(window.start_ms))
                .await
                .map_err(|e| EvaluateError::Queue(e.to_string()))?;
            self.advance(window.start_ms + self.config.window.window_ms)
                .await?;
            tracing::info!(
                window_start = window.start_ms,
                buckets = self.config.window.tenant_buckets.count(),
                "window queued for evaluation"
            );
        }
        Ok(plan)
    }

    /// Records that every window before `next_window_start` is planned.
    pub async fn advance(&self, next_window_start: i64) -> Result<(), EvaluateError> {
        let mark = serde_json::to_vec(&Watermark { next_window_start })
            .map_err(std::io::Error::from)
            .map_err(CoreError::from)?;
        self.data
            .put(WATERMARK_KEY, Bytes::from(mark), "application/json")
            .await?;
        Ok(())
    }

    async fn next_window(&self) -> Result<Option<i64>, EvaluateError> {
        match self.data.get(WATERMARK_KEY).await? {
            Some(body) => Ok(Some(
                read_json::<Watermark>(WATERMARK_KEY, &body)?.next_window_start,
            )),
            None => Ok(None),
        }
    }

    /// Whether the window starting at `start_ms` may be evaluated now, given the shards'
    /// progress.
    fn shard_gate(&self, shards: &[ShardProgress], start_ms: i64, now_ms: i64) -> Gate {
        let wait = self.config.shard_wait;
        let close = self.config.window.close_ms(start_ms);
        let lagging = progress::lagging(shards, close, now_ms, wait.grace_ms);
        if lagging.is_empty() {
            return Gate::Open {
                left_behind: lagging,
            };
        }
        if now_ms < close + wait.max_wait_ms {
            tracing::info!(window_start = start_ms, shards = ?lagging, "window waits for shards whose aggregation is behind");
            return Gate::Wait(HeldBack {
                window_start_ms: start_ms,
                shards: lagging,
            });
        }
        tracing::warn!(window_start = start_ms, shards = ?lagging, waited_ms = now_ms - close,
            "evaluating without shards still behind after the longest wait; their partials of this window will not count");
        Gate::Open {
            left_behind: lagging,
        }
    }

    async fn earliest_partial(&self, now_ms: i64) -> Result<Option<i64>, EvaluateError> {
        let first_hour = partition::hour_of(now_ms) - self.config.lookback_hours;
        for hour in first_hour..=partition::hour_of(now_ms) {
            let prefix = format!("windows/partials/{}/", partition::dt_hour(hour));
            let keys = self.data.list(&prefix).await?;
            if let Some(start) = keys.iter().filter_map(|k| super::window_of_key(k)).min() {
                return Ok(Some(start));
            }
        }
        Ok(None)
    }
}
