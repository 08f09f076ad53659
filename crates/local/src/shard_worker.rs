//! One mapping reading one shard, as Lambda's poller does: open an iterator (after the
//! checkpoint, else at the mapping's starting position; a child shard of a reshard at the trim
//! horizon), `GetRecords` in a loop, gather a batch (`BatchSize`, `MaximumBatchingWindowInSeconds`,
//! 6 MB), deliver it ([`crate::batch_delivery`]), checkpoint it, and for a tumbling-window
//! mapping cut batches at window ends and close each window with a final invocation.
//!
//! A closed shard ends when `GetRecords` returns no next iterator: the worker closes its open
//! window, marks the checkpoint finished (so that the shard's children may start) and returns.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::batch_delivery::{BatchOutcome, Clock, Delivery, WindowContext};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::destination::FailureDestination;
use crate::error::LocalError;
use crate::handler::{BatchHandler, Invocation};
use crate::lambda_event::{EventSource, WindowFields};
use crate::mapping::{MAX_PAYLOAD_BYTES, MappingConfig, StartingPosition};
use crate::metrics::Metrics;
use crate::stream_source::{IteratorPosition, SourceError, SourceRecord, StreamSource};
use crate::tumbling_window::{OpenWindow, records_in};

/// What a worker tells the runner about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerProgress {
    /// The last read returned nothing new and the shard is read up to now.
    pub caught_up: bool,
    /// Records read but not yet delivered.
    pub buffered: usize,
    /// End of the open tumbling window, if any.
    pub open_window_end: Option<i64>,
    /// Arrival of the newest record seen.
    pub last_arrival_ms: Option<i64>,
    /// Arrival of the oldest record read whose result is not stored yet: still buffered, or
    /// in the open tumbling window (its partials are written when the window closes).
    pub pending_since_ms: Option<i64>,
    pub finished: bool,
}

impl WorkerProgress {
    /// Every record that arrived before this has been delivered and, in a mapping with
    /// tumbling windows, its window closed (so its partials are stored). `i64::MIN` for a shard
    /// not read yet; `i64::MAX` once the shard is read to its end.
    pub fn complete_through(&self, now_ms: i64) -> i64 {
        if self.finished {
            return i64::MAX;
        }
        if let Some(since) = self.pending_since_ms {
            return since;
        }
        if self.caught_up {
            return now_ms;
        }
        // Records not read yet arrived at or after the last one read.
        self.last_arrival_ms.unwrap_or(i64::MIN)
    }
}

/// Every worker's progress, by (mapping, shard).
pub type ProgressBoard = Arc<Mutex<BTreeMap<(String, String), WorkerProgress>>>;

/// Why a worker returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// The shard was closed and is read to its end.
    ShardFinished,
    /// The runner is stopping.
    Stopped,
}

/// Runner settings a worker needs.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// Pause between reads of a shard that had nothing new (Lambda polls about once a second).
    pub idle_poll: Duration,
    /// Pause after a throttled or failed read.
    pub error_backoff: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            idle_poll: Duration::from_secs(1),
            error_backoff: Duration::from_millis(500),
        }
    }
}

/// One (mapping, shard).
#[derive(Debug, Clone)]
pub struct ShardWorker {
    pub mapping: Arc<MappingConfig>,
    pub shard_id: String,
    /// A child shard of a reshard (starts at the trim horizon without a checkpoint).
    pub is_child: bool,
    pub source: Arc<dyn StreamSource>,
    pub handler: Arc<dyn BatchHandler>,
    pub destination: Arc<dyn FailureDestination>,
    pub checkpoints: CheckpointStore,
    pub metrics: Metrics,
    pub clock: Arc<dyn Clock>,
    pub event_source: EventSource,
    pub poll: PollSettings,
    pub progress: ProgressBoard,
}

struct State {
    checkpoint: Checkpoint,
    buffer: Vec<SourceRecord>,
    buffer_bytes: usize,
    buffer_since: Option<Instant>,
    /// See [`WorkerProgress::pending_since_ms`].
    pending_since: Option<i64>,
}

impl ShardWorker {
    /// Records what still waits to be stored, here and on the board.
    fn set_pending(&self, st: &mut State, since: Option<i64>) {
        st.pending_since = since;
        self.report(|p| p.pending_since_ms = since);
    }

    fn report(&self, f: impl FnOnce(&mut WorkerProgress)) {
        let mut board = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        f(board
            .entry((self.mapping.name.clone(), self.shard_id.clone()))
            .or_default());
    }

    fn stopping(stop: &watch::Receiver<bool>) -> bool {
        *stop.borrow()
    }

    /// Sleeps, or returns early when the runner stops.
    async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) {
        if d.is_zero() || Self::stopping(stop) {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            _ = stop.changed() => {}
        }
    }

    /// Runs until the shard ends or `stop` turns true. The batch in flight is finished (or
    /// stopped between two retries) and checkpointed before returning.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<WorkerExit, LocalError> {
        let checkpoint = self
            .checkpoints
            .load(&self.mapping.name, &self.shard_id)?
            .unwrap_or_else(|| Checkpoint {
                mapping: self.mapping.name.clone(),
                shard_id: self.shard_id.clone(),
                ..Checkpoint::default()
            });
        if checkpoint.shard_finished {
            self.report(|p| {
                p.finished = true;
                p.caught_up = true;
            });
            return Ok(WorkerExit::ShardFinished);
        }
        self.report(|p| p.open_window_end = checkpoint.window.as_ref().map(|w| w.end_ms));
        // A window left open by an earlier run holds records whose arrivals are not kept: the
        // shard counts as complete through nothing until that window closes.
        let pending_since = checkpoint.window.as_ref().map(|_| i64::MIN);
        let mut st = State {
            checkpoint,
            buffer: Vec::new(),
            buffer_bytes: 0,
            buffer_since: None,
            pending_since: None,
        };
        self.set_pending(&mut st, pending_since);
        let mut iterator = match self.open_iterator(&st.checkpoint, &mut stop).await? {
            Some(it) => it,
            None => return Ok(WorkerExit::Stopped),
        };
        tracing::info!(mapping = %self.mapping.name, shard = %self.shard_id,
            after = ?st.checkpoint.sequence_number, "polling shard");
        loop {
            if Self::stopping(&stop) {
                return Ok(WorkerExit::Stopped);
            }
            let want = self
                .mapping
                .batch_size
                .saturating_sub(st.buffer.len())
                .max(1);
            let page = match self.source.get_records(&iterator, want).await {
                Ok(page) => page,
                Err(SourceError::ExpiredIterator(e)) => {
                    tracing::warn!(shard = %self.shard_id, error = %e, "iterator expired; reopening after the checkpoint");
                    st.buffer.clear();
                    st.buffer_bytes = 0;
                    st.buffer_since = None;
                    match self.open_iterator(&st.checkpoint, &mut stop).await? {
                        Some(it) => iterator = it,
                        None => return Ok(WorkerExit::Stopped),
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(mapping = %self.mapping.name, shard = %self.shard_id, error = %e, "GetRecords failed; retrying");
                    Self::pause(&mut stop, self.poll.error_backoff).await;
                    continue;
                }
            };
            let now = self.clock.now_ms();
            let got = page.records.len();
            if let Some(last) = page.records.last() {
                let arrival = last.arrival_ms;
                self.report(|p| {
                    p.last_arrival_ms = Some(p.last_arrival_ms.map_or(arrival, |a| a.max(arrival)))
                });
            }
            let age = match (page.millis_behind_latest, page.records.last()) {
                (Some(behind), _) if got == 0 => behind,
                (_, Some(last)) => now - last.arrival_ms,
                (Some(behind), None) => behind,
                (None, None) => 0,
            };
            self.metrics
                .iterator_age(&self.mapping.name, &self.shard_id, age);
            if st.buffer.is_empty() && got > 0 {
                st.buffer_since = Some(Instant::now());
            }
            if let Some(oldest) = page.records.iter().map(|r| r.arrival_ms).min() {
                let since = st.pending_since.map_or(oldest, |p| p.min(oldest));
                self.set_pending(&mut st, Some(since));
            }
            for r in page.records {
                st.buffer_bytes += r.data.len() + r.partition_key.len();
                st.buffer.push(r);
            }
            // A full page is never the end: LocalStack reports 0 ms behind for every record
            // that ties with the newest arrival time, although more of them are unread.
            let caught_up = got == 0 || (page.millis_behind_latest == Some(0) && got < want);
            let shard_ended = page.next_iterator.is_none();
            self.report(|p| {
                p.caught_up = caught_up && !shard_ended;
                p.buffered = st.buffer.len();
            });

            let full =
                st.buffer.len() >= self.mapping.batch_size || st.buffer_bytes >= MAX_PAYLOAD_BYTES;
            let waited = st
                .buffer_since
                .is_some_and(|t| t.elapsed() >= self.mapping.batching_window);
            if !st.buffer.is_empty() && (full || waited || shard_ended) {
                if !self.deliver_buffer(&mut st, &stop).await? {
                    return Ok(WorkerExit::Stopped);
                }
                self.report(|p| p.buffered = 0);
                if self.mapping.tumbling_window.is_none() {
                    // Delivered is stored; with windows, the records wait in the open window.
                    self.set_pending(&mut st, None);
                }
            }
            // A window ends once the shard is read past its end in time.
            if st.buffer.is_empty()
                && let Some(window) = &st.checkpoint.window
                && (shard_ended || (caught_up && self.clock.now_ms() >= window.end_ms))
            {
                self.close_window(&mut st, &stop, None).await?;
            }
            match page.next_iterator {
                Some(next) => iterator = next,
                None if st.buffer.is_empty() => {
                    st.checkpoint.shard_finished = true;
                    self.checkpoints.save(&st.checkpoint)?;
                    self.report(|p| {
                        p.finished = true;
                        p.caught_up = true;
                        p.open_window_end = None;
                    });
                    tracing::info!(mapping = %self.mapping.name, shard = %self.shard_id, "closed shard read to its end");
                    return Ok(WorkerExit::ShardFinished);
                }
                None => {
                    // Stopped in the middle of the last batch: the shard's end comes again
                    // after a restart.
                    return Ok(WorkerExit::Stopped);
                }
            }
            let pause = if !caught_up {
                Duration::ZERO
            } else if let Some(since) = st.buffer_since.filter(|_| !st.buffer.is_empty()) {
                self.mapping
                    .batching_window
                    .saturating_sub(since.elapsed())
                    .min(self.poll.idle_poll)
            } else {
                self.poll.idle_poll
            };
            Self::pause(&mut stop, pause).await;
        }
    }

    async fn open_iterator(
        &self,
        checkpoint: &Checkpoint,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<String>, LocalError> {
        let position = match &checkpoint.sequence_number {
            Some(seq) => IteratorPosition::AfterSequenceNumber(seq.clone()),
            None if self.is_child => IteratorPosition::TrimHorizon,
            None => match self.mapping.starting_position {
                StartingPosition::TrimHorizon => IteratorPosition::TrimHorizon,
                StartingPosition::Latest => IteratorPosition::Latest,
            },
        };
        loop {
            if Self::stopping(stop) {
                return Ok(None);
            }
            match self.source.shard_iterator(&self.shard_id, &position).await {
                Ok(it) => return Ok(Some(it)),
                Err(SourceError::NotFound(e)) => {
                    return Err(LocalError::StreamNotFound(e));
                }
                Err(e) => {
                    tracing::warn!(shard = %self.shard_id, error = %e, "GetShardIterator failed; retrying");
                    Self::pause(stop, self.poll.error_backoff).await;
                }
            }
        }
    }

    /// Delivers the buffer, in batches that never span two windows. False when delivery was
    /// interrupted by a shutdown.
    async fn deliver_buffer(
        &self,
        st: &mut State,
        stop: &watch::Receiver<bool>,
    ) -> Result<bool, LocalError> {
        let records = std::mem::take(&mut st.buffer);
        st.buffer_bytes = 0;
        st.buffer_since = None;
        let mut start = 0;
        while start < records.len() {
            let rest = &records[start..];
            let (batch_len, window) = match self.mapping.tumbling_window {
                None => (rest.len(), None),
                Some(size) => {
                    let arrival = rest[0]
                        .arrival_ms
                        .max(st.checkpoint.closed_through_ms.unwrap_or(i64::MIN));
                    if st
                        .checkpoint
                        .window
                        .as_ref()
                        .is_some_and(|w| arrival >= w.end_ms)
                    {
                        let rest_since = rest.iter().map(|r| r.arrival_ms).min();
                        self.close_window(st, stop, rest_since).await?;
                    }
                    let size_ms = i64::try_from(size.as_millis()).unwrap_or(i64::MAX);
                    let window = st
                        .checkpoint
                        .window
                        .get_or_insert_with(|| OpenWindow::containing(arrival, size_ms))
                        .clone();
                    self.report(|p| p.open_window_end = Some(window.end_ms));
                    (records_in(&window, rest).max(1), Some(window))
                }
            };
            let batch = &rest[..batch_len];
            let stop_rx = stop.clone();
            let stopping = move || *stop_rx.borrow();
            let outcome = Delivery {
                mapping: &self.mapping,
                handler: self.handler.as_ref(),
                destination: self.destination.as_ref(),
                source: &self.event_source,
                clock: self.clock.as_ref(),
            }
            .deliver(
                &self.shard_id,
                batch,
                window.as_ref().map(|w| WindowContext {
                    start_ms: w.start_ms,
                    end_ms: w.end_ms,
                    state: w.state.clone(),
                }),
                &stopping,
            )
            .await?;
            self.record(st, batch, &outcome)?;
            if !outcome.complete(batch.len()) {
                return Ok(false);
            }
            start += batch_len;
        }
        Ok(true)
    }

    /// Metrics and checkpoint after a batch.
    fn record(
        &self,
        st: &mut State,
        batch: &[SourceRecord],
        outcome: &BatchOutcome,
    ) -> Result<(), LocalError> {
        self.metrics.records_read(&self.mapping.name, outcome.done);
        self.metrics.batch(&self.mapping.name, outcome);
        if let Some(seq) = &outcome.done_through {
            st.checkpoint.sequence_number = Some(seq.clone());
            if let Some(w) = st.checkpoint.window.as_mut() {
                w.state.clone_from(&outcome.state);
            }
            self.checkpoints.save(&st.checkpoint)?;
        }
        tracing::debug!(
            mapping = %self.mapping.name,
            shard = %self.shard_id,
            records = batch.len(),
            done = outcome.done,
            invocations = outcome.invocations,
            "batch delivered"
        );
        Ok(())
    }

    /// The final invocation of the open window (no records, `isFinalInvokeForWindow`), retried
    /// like a batch; then the window is dropped from the checkpoint. `then_pending`: the
    /// oldest arrival still waiting once this window's partials are stored.
    async fn close_window(
        &self,
        st: &mut State,
        stop: &watch::Receiver<bool>,
        then_pending: Option<i64>,
    ) -> Result<(), LocalError> {
        let Some(window) = st.checkpoint.window.clone() else {
            return Ok(());
        };
        let fields = WindowFields {
            start_ms: window.start_ms,
            end_ms: window.end_ms,
            state: window.state.clone(),
            is_final_invoke_for_window: true,
            is_window_terminated_early: false,
        };
        let mut invocations = 0u32;
        let mut errors = 0u32;
        loop {
            invocations += 1;
            let result = self
                .handler
                .invoke(Invocation {
                    source: &self.event_source,
                    shard_id: &self.shard_id,
                    records: &[],
                    window: Some(&fields),
                })
                .await;
            match result {
                Ok(_) => break,
                Err(e) => {
                    errors += 1;
                    let retries = invocations - 1;
                    if self
                        .mapping
                        .max_retry_attempts
                        .is_some_and(|max| retries >= max)
                    {
                        tracing::error!(mapping = %self.mapping.name, shard = %self.shard_id,
                            window_start = window.start_ms, error = %e,
                            "final invocation of the window failed past the retry limit; its partials are lost");
                        break;
                    }
                    if *stop.borrow() {
                        // Kept in the checkpoint: closed again after a restart.
                        self.metrics
                            .window_closed(&self.mapping.name, invocations, errors);
                        return Ok(());
                    }
                    tracing::warn!(mapping = %self.mapping.name, shard = %self.shard_id, error = %e,
                        "final invocation of the window failed; retrying");
                    let factor = 1u32 << retries.min(16);
                    let pause = self
                        .mapping
                        .retry_backoff
                        .saturating_mul(factor)
                        .min(self.mapping.max_retry_backoff);
                    tokio::time::sleep(pause).await;
                }
            }
        }
        self.metrics
            .window_closed(&self.mapping.name, invocations, errors);
        st.checkpoint.window = None;
        st.checkpoint.closed_through_ms = Some(window.end_ms);
        self.checkpoints.save(&st.checkpoint)?;
        self.report(|p| p.open_window_end = None);
        self.set_pending(st, then_pending);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_complete_through_its_oldest_unstored_record_or_what_it_has_read() {
        let now = 1_000_000;
        let not_started = WorkerProgress::default();
        assert_eq!(
            not_started.complete_through(now),
            i64::MIN,
            "a shard not read yet holds all"
        );
        let reading = WorkerProgress {
            last_arrival_ms: Some(5_000),
            ..WorkerProgress::default()
        };
        assert_eq!(
            reading.complete_through(now),
            5_000,
            "unread records come after the last read"
        );
        let window_open = WorkerProgress {
            caught_up: true,
            last_arrival_ms: Some(9_000),
            pending_since_ms: Some(7_000),
            ..WorkerProgress::default()
        };
        assert_eq!(
            window_open.complete_through(now),
            7_000,
            "partials not stored yet"
        );
        let idle = WorkerProgress {
            caught_up: true,
            last_arrival_ms: Some(9_000),
            ..WorkerProgress::default()
        };
        assert_eq!(idle.complete_through(now), now);
        let finished = WorkerProgress {
            finished: true,
            pending_since_ms: Some(7_000),
            ..WorkerProgress::default()
        };
        assert_eq!(finished.complete_through(now), i64::MAX);
    }
}
