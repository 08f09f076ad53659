//! The semantics of an event source mapping for one batch of one shard, as Lambda has them:
//!
//! - **Success**: the batch is done; a tumbling-window mapping carries the returned state on.
//! - **`ReportBatchItemFailures`**: the records before the lowest reported sequence number
//!   succeeded; the rest is retried from there (a retry). A null, empty or unknown identifier
//!   fails the whole batch, as with Lambda. Without the setting the answer is ignored.
//! - **Function error**: with `BisectBatchOnFunctionError` the batch is split in two and each
//!   half delivered in turn (a split uses none of the retry quota, so a poison record ends up
//!   alone); a single record, or any batch without bisect, is retried with backoff.
//! - **`MaximumRetryAttempts`**: once a part of the batch has been retried that often, it goes to
//!   the on-failure destination and is skipped (`RetryAttemptsExhausted`).
//! - **`MaximumRecordAgeInSeconds`**: records older than that, before any invocation, go to the
//!   destination and are skipped (`RecordAgeExceeded`).
//!
//! A batch is therefore always resolved, unless the runner is stopping: then delivery stops
//! between two attempts and reports how far it got, so the checkpoint never passes a record
//! that was neither processed nor sent to the destination.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::time::Duration;

use crate::destination::{FailedBatch, FailureCondition, FailureDestination, FailureMessage};
use crate::error::LocalError;
use crate::handler::{BatchHandler, Invocation, InvocationResult};
use crate::lambda_event::{EventSource, WindowFields};
use crate::mapping::{MappingConfig, Redelivery};
use crate::stream_source::SourceRecord;

/// The time, in ms since the epoch (a trait so that record age is tested without waiting).
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// Everything a delivery needs besides the batch.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub mapping: &'a MappingConfig,
    pub handler: &'a dyn BatchHandler,
    pub destination: &'a dyn FailureDestination,
    pub source: &'a EventSource,
    pub clock: &'a dyn Clock,
}

/// The window a batch belongs to, for a tumbling-window mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowContext {
    pub start_ms: i64,
    pub end_ms: i64,
    pub state: HashMap<String, String>,
}

/// What happened to a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Records of the batch that are done (processed, or sent to the destination), from the
    /// start: all of them unless delivery was interrupted by a shutdown.
    pub done: usize,
    /// The sequence number of the last done record (the checkpoint to write).
    pub done_through: Option<String>,
    pub invocations: u32,
    /// Invocations that ended in a function error or reported failed items.
    pub function_errors: u32,
    /// Events the function dead-lettered itself.
    pub dead_lettered: u64,
    /// Rows the function stored.
    pub rows_stored: u64,
    /// Records sent to the on-failure destination, and the messages that carried them.
    pub records_to_destination: u64,
    pub destination_messages: u32,
    /// The window state after the batch (tumbling-window mappings).
    pub state: HashMap<String, String>,
}

impl BatchOutcome {
    /// True when every record of the batch is done.
    pub fn complete(&self, batch_len: usize) -> bool {
        self.done == batch_len
    }
}

#[derive(Debug, Clone)]
struct Segment {
    range: Range<usize>,
    /// Retries used so far by this part of the batch.
    retries: u32,
}

enum Attempt {
    Success(InvocationResult),
    /// Records from this index (within the segment) on failed.
    FailedFrom(usize, InvocationResult),
    Error(String),
}

impl Delivery<'_> {
    /// Delivers `records` (one shard, in order). `stopping` is polled between attempts.
    pub async fn deliver(
        &self,
        shard_id: &str,
        records: &[SourceRecord],
        window: Option<WindowContext>,
        stopping: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<BatchOutcome, LocalError> {
        let mut outcome = BatchOutcome {
            state: window.as_ref().map(|w| w.state.clone()).unwrap_or_default(),
            ..BatchOutcome::default()
        };
        let mut queue = VecDeque::from([Segment {
            range: 0..records.len(),
            retries: 0,
        }]);
        if window.is_none() && records.len() > 1 {
            self.rehearse_redelivery(shard_id, records, &mut queue, &mut outcome)
                .await;
        }
        while let Some(mut segment) = queue.pop_front() {
            // Records too old are never sent to the function.
            let expired = self.expired_prefix(&records[segment.range.clone()]);
            if expired > 0 {
                let range = segment.range.start..segment.range.start + expired;
                self.give_up(
                    shard_id,
                    &records[range.clone()],
                    FailureCondition::RecordAgeExceeded,
                    segment.retries,
                    &mut outcome,
                )
                .await?;
                mark_done(&mut outcome, records, range.end);
                segment.range.start += expired;
            }
            if segment.range.is_empty() {
                continue;
            }
            if segment.retries > 0 && stopping() {
                return Ok(outcome);
            }
            let batch = &records[segment.range.clone()];
            let fields = window.as_ref().map(|w| WindowFields {
                start_ms: w.start_ms,
                end_ms: w.end_ms,
                state: outcome.state.clone(),
                is_final_invoke_for_window: false,
                is_window_terminated_early: false,
            });
            outcome.invocations += 1;
            match self.attempt(shard_id, batch, fields.as_ref()).await {
                Attempt::Success(result) => {
                    outcome.dead_lettered += result.dead_lettered;
                    outcome.rows_stored += result.rows_stored;
                    if window.is_some() {
                        outcome.state = result.state;
                    }
                    mark_done(&mut outcome, records, segment.range.end);
                }
                Attempt::FailedFrom(index, result) => {
                    outcome.function_errors += 1;
                    outcome.dead_lettered += result.dead_lettered;
                    outcome.rows_stored += result.rows_stored;
                    if window.is_some() {
                        outcome.state = result.state;
                    }
                    let failed_at = segment.range.start + index;
                    mark_done(&mut outcome, records, failed_at);
                    tracing::warn!(
                        mapping = %self.mapping.name,
                        shard = %shard_id,
                        from = %records[failed_at].sequence_number,
                        retry = segment.retries + 1,
                        "batch item failure reported; retrying from the lowest failed record"
                    );
                    let rest = Segment {
                        range: failed_at..segment.range.end,
                        retries: segment.retries,
                    };
                    self.retry_or_give_up(shard_id, records, rest, &mut queue, &mut outcome)
                        .await?;
                }
                Attempt::Error(message) => {
                    outcome.function_errors += 1;
                    tracing::warn!(
                        mapping = %self.mapping.name,
                        shard = %shard_id,
                        first = %batch[0].sequence_number,
                        records = batch.len(),
                        retry = segment.retries + 1,
                        error = %message,
                        "function error"
                    );
                    if self.mapping.bisect_on_error && segment.range.len() > 1 {
                        let mid = segment.range.start + segment.range.len() / 2;
                        queue.push_front(Segment {
                            range: mid..segment.range.end,
                            retries: segment.retries,
                        });
                        queue.push_front(Segment {
                            range: segment.range.start..mid,
                            retries: segment.retries,
                        });
                    } else {
                        self.retry_or_give_up(shard_id, records, segment, &mut queue, &mut outcome)
                            .await?;
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// The invocation a time-out made before this delivery ([`Redelivery`]): its objects
    /// are written, its answer is lost. A bisect then delivers the halves.
    async fn rehearse_redelivery(
        &self,
        shard_id: &str,
        records: &[SourceRecord],
        queue: &mut VecDeque<Segment>,
        outcome: &mut BatchOutcome,
    ) {
        let mid = records.len() / 2;
        let first = match self.mapping.redelivery {
            Redelivery::None => return,
            Redelivery::Identical | Redelivery::Bisect => records,
            Redelivery::Longer => &records[..mid],
        };
        outcome.invocations += 1;
        outcome.function_errors += 1;
        let _lost = self.attempt(shard_id, first, None).await;
        tracing::debug!(
            mapping = %self.mapping.name,
            shard = %shard_id,
            records = first.len(),
            shape = ?self.mapping.redelivery,
            "rehearsed a timed-out invocation; re-delivering"
        );
        if self.mapping.redelivery == Redelivery::Bisect {
            *queue = VecDeque::from([
                Segment {
                    range: 0..mid,
                    retries: 0,
                },
                Segment {
                    range: mid..records.len(),
                    retries: 0,
                },
            ]);
        }
    }

    async fn attempt(
        &self,
        shard_id: &str,
        batch: &[SourceRecord],
        window: Option<&WindowFields>,
    ) -> Attempt {
        let invocation = Invocation {
            source: self.source,
            shard_id,
            records: batch,
            window,
        };
        let result = match self.handler.invoke(invocation).await {
            Ok(result) => result,
            Err(e) => return Attempt::Error(e.0),
        };
        if !self.mapping.report_batch_item_failures || result.batch_item_failures.is_empty() {
            return Attempt::Success(result);
        }
        let mut lowest: Option<usize> = None;
        for failure in &result.batch_item_failures {
            let index = failure
                .as_deref()
                .filter(|id| !id.is_empty())
                .and_then(|id| batch.iter().position(|r| r.sequence_number == id));
            match index {
                Some(i) => lowest = Some(lowest.map_or(i, |l| l.min(i))),
                None => {
                    return Attempt::Error(format!(
                        "batchItemFailures names {failure:?}, not a record of the batch: the \
                         whole batch counts as failed"
                    ));
                }
            }
        }
        match lowest {
            Some(i) => Attempt::FailedFrom(i, result),
            None => Attempt::Success(result),
        }
    }

    /// Retries `segment` after a backoff, or sends it to the destination when its retries are
    /// used up.
    async fn retry_or_give_up(
        &self,
        shard_id: &str,
        records: &[SourceRecord],
        segment: Segment,
        queue: &mut VecDeque<Segment>,
        outcome: &mut BatchOutcome,
    ) -> Result<(), LocalError> {
        let exhausted = self
            .mapping
            .max_retry_attempts
            .is_some_and(|max| segment.retries >= max);
        if exhausted {
            self.give_up(
                shard_id,
                &records[segment.range.clone()],
                FailureCondition::RetryAttemptsExhausted,
                segment.retries + 1,
                outcome,
            )
            .await?;
            mark_done(outcome, records, segment.range.end);
            return Ok(());
        }
        let pause = self.backoff(segment.retries);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        queue.push_front(Segment {
            range: segment.range,
            retries: segment.retries + 1,
        });
        Ok(())
    }

    fn backoff(&self, retries: u32) -> Duration {
        let factor = 1u32 << retries.min(16);
        self.mapping
            .retry_backoff
            .saturating_mul(factor)
            .min(self.mapping.max_retry_backoff)
    }

    fn expired_prefix(&self, batch: &[SourceRecord]) -> usize {
        let Some(max_age) = self.mapping.max_record_age else {
            return 0;
        };
        let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let now = self.clock.now_ms();
        batch
            .iter()
            .take_while(|r| now.saturating_sub(r.arrival_ms) > max_age_ms)
            .count()
    }

    async fn give_up(
        &self,
        shard_id: &str,
        batch: &[SourceRecord],
        condition: FailureCondition,
        invoke_count: u32,
        outcome: &mut BatchOutcome,
    ) -> Result<(), LocalError> {
        let message = FailureMessage::new(FailedBatch {
            function_arn: &self.mapping.function_arn,
            stream_arn: &self.source.stream_arn,
            shard_id,
            records: batch,
            condition,
            invoke_count,
            now_ms: self.clock.now_ms(),
        });
        self.destination.send(&message).await?;
        tracing::error!(
            mapping = %self.mapping.name,
            shard = %shard_id,
            start = %message.kinesis_batch_info.start_sequence_number,
            end = %message.kinesis_batch_info.end_sequence_number,
            records = batch.len(),
            ?condition,
            "records sent to the on-failure destination and skipped"
        );
        outcome.records_to_destination += batch.len() as u64;
        outcome.destination_messages += 1;
        Ok(())
    }
}

fn mark_done(outcome: &mut BatchOutcome, records: &[SourceRecord], end: usize) {
    if end > outcome.done {
        outcome.done = end;
        outcome.done_through = Some(records[end - 1].sequence_number.clone());
    }
}

#[cfg(test)]
mod tests;
