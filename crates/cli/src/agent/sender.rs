//! Delivering batches: up to `concurrency` `PutRecords` calls at once, each batch retried
//! until every entry is written or its attempts are used up.
//!
//! After a call, the entries that failed (per-entry `ErrorCode`) are sent again, alone, after
//! a backoff; the ones written are never sent twice. A call that failed as a whole and may
//! pass (throttling, 5xx, timeouts, connection errors) is repeated the same way. After
//! `max_attempts` the remaining entries are counted as failed: reported at exit, never
//! silently dropped. A fatal error (no such stream, access denied) stops the agent: the
//! entries of that batch and of every batch after it are counted as failed without being sent.

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::batcher::{Batch, Entry};
use super::counters::{Counters, add};
use super::put_records::{EntryResult, RecordSink};
use super::retry::RetryPolicy;

/// What the senders share.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub sink: Arc<dyn RecordSink>,
    pub policy: RetryPolicy,
    pub counters: Arc<Counters>,
    /// The first fatal error, once there is one.
    pub fatal: Arc<OnceLock<String>>,
    /// Set to stop the readers when a fatal error happens.
    pub stop: watch::Sender<bool>,
}

/// Receives batches until the channel closes, with at most `concurrency` calls in flight.
pub async fn send_all(mut batches: mpsc::Receiver<Batch>, delivery: Delivery, concurrency: usize) {
    let concurrency = concurrency.max(1);
    let mut in_flight = JoinSet::new();
    while let Some(batch) = batches.recv().await {
        while in_flight.len() >= concurrency {
            in_flight.join_next().await;
        }
        let delivery = delivery.clone();
        in_flight.spawn(async move { deliver(batch, &delivery).await });
    }
    while in_flight.join_next().await.is_some() {}
}

/// Delivers one batch, retrying what failed; counts everything.
pub async fn deliver(batch: Batch, delivery: &Delivery) {
    let Delivery {
        sink,
        policy,
        counters,
        fatal,
        stop,
    } = delivery;
    let mut pending: Vec<Entry> = batch.entries;
    let mut last_error = String::new();
    let mut attempt = 0;
    while !pending.is_empty() && attempt < policy.max_attempts.max(1) {
        if fatal.get().is_some() {
            break;
        }
        attempt += 1;
        if attempt > 1 {
            add(&counters.retried_entries, pending.len() as u64);
            tokio::time::sleep(policy.backoff(attempt - 1)).await;
        }
        add(&counters.put_records_calls, 1);
        match sink.put_records(&pending).await {
            Ok(results) if results.len() != pending.len() => {
                // Which entries were written is unknown: send them all again (at-least-once).
                add(&counters.call_errors, 1);
                last_error = format!(
                    "the sink answered {} results for {} entries",
                    results.len(),
                    pending.len()
                );
            }
            Ok(results) => {
                let mut failed = Vec::new();
                for (entry, result) in pending.into_iter().zip(results) {
                    match result {
                        EntryResult::Ok => {
                            add(&counters.records_sent, entry.user_records);
                            add(&counters.bytes_sent, entry.user_bytes);
                            add(&counters.kinesis_records, 1);
                            add(&counters.kinesis_bytes, entry.size() as u64);
                        }
                        EntryResult::Failed { code, message } => {
                            add(&counters.entry_errors, 1);
                            last_error = format!("{code}: {message}");
                            failed.push(entry);
                        }
                    }
                }
                if !failed.is_empty() {
                    tracing::debug!(
                        failed = failed.len(),
                        attempt,
                        error = %last_error,
                        "PutRecords: some entries failed; retrying them"
                    );
                }
                pending = failed;
            }
            Err(e) if e.retryable => {
                add(&counters.call_errors, 1);
                tracing::debug!(attempt, error = %e, "PutRecords failed; retrying");
                last_error = e.message;
            }
            Err(e) => {
                add(&counters.call_errors, 1);
                tracing::error!(error = %e, "PutRecords failed and will not succeed: stopping");
                last_error = e.message.clone();
                let _ = fatal.set(e.message);
                let _ = stop.send(true);
                break;
            }
        }
    }
    if !pending.is_empty() {
        let records: u64 = pending.iter().map(|e| e.user_records).sum();
        add(&counters.failed, records);
        let reason = fatal.get().cloned().unwrap_or(last_error);
        tracing::warn!(
            records,
            kinesis_records = pending.len(),
            attempts = attempt,
            error = %reason,
            "giving up on records"
        );
    }
}
