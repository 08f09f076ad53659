//! The agent's counters, shared by every stage, and the report printed at exit.
//!
//! Every line read ends up in exactly one of `records_sent`, `failed` or `oversize` once the
//! agent has finished, so `records_read == records_sent + failed + oversize` is the check that
//! nothing was silently dropped ([`Report::undelivered`]).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters, updated by the readers, the batcher and the senders.
#[derive(Debug, Default)]
pub struct Counters {
    /// Lines read from the inputs (empty lines are skipped and not counted).
    pub records_read: AtomicU64,
    /// Bytes of those lines (without the newline).
    pub bytes_read: AtomicU64,
    /// User records that Kinesis accepted.
    pub records_sent: AtomicU64,
    /// Bytes of those records.
    pub bytes_sent: AtomicU64,
    /// Kinesis records accepted (fewer than `records_sent` with KPL aggregation).
    pub kinesis_records: AtomicU64,
    /// Bytes of those Kinesis records (data plus partition key, as Kinesis counts them).
    pub kinesis_bytes: AtomicU64,
    /// `PutRecords` calls made, including failed ones.
    pub put_records_calls: AtomicU64,
    /// Kinesis records sent again after a failure.
    pub retried_entries: AtomicU64,
    /// Entries that a `PutRecords` answer reported as failed (each attempt counts).
    pub entry_errors: AtomicU64,
    /// `PutRecords` calls that failed as a whole (throttling, 5xx, connection errors).
    pub call_errors: AtomicU64,
    /// User records given up on after the last attempt (or after a fatal error).
    pub failed: AtomicU64,
    /// Lines larger than a Kinesis record may be; reported, not sent.
    pub oversize: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// The counters as they are now.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            records_read: get(&self.records_read),
            bytes_read: get(&self.bytes_read),
            records_sent: get(&self.records_sent),
            bytes_sent: get(&self.bytes_sent),
            kinesis_records: get(&self.kinesis_records),
            kinesis_bytes: get(&self.kinesis_bytes),
            put_records_calls: get(&self.put_records_calls),
            retried_entries: get(&self.retried_entries),
            entry_errors: get(&self.entry_errors),
            call_errors: get(&self.call_errors),
            failed: get(&self.failed),
            oversize: get(&self.oversize),
        }
    }
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub records_read: u64,
    pub bytes_read: u64,
    pub records_sent: u64,
    pub bytes_sent: u64,
    pub kinesis_records: u64,
    pub kinesis_bytes: u64,
    pub put_records_calls: u64,
    pub retried_entries: u64,
    pub entry_errors: u64,
    pub call_errors: u64,
    pub failed: u64,
    pub oversize: u64,
}

/// What the agent did, printed at exit (`--json` prints it as one JSON object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub counters: Snapshot,
    /// Wall-clock seconds from start to the last acknowledgement.
    pub elapsed_s: f64,
    /// User records accepted per second of `elapsed_s`.
    pub records_per_sec: f64,
    /// MiB of user records accepted per second of `elapsed_s`.
    pub mib_per_sec: f64,
    /// The error that stopped the agent early (a missing stream, denied access...), if any.
    pub fatal_error: Option<String>,
    /// Inputs that could not be read, with the reason.
    pub input_errors: Vec<String>,
}

impl Report {
    /// Builds the report from the final counters.
    pub fn new(
        counters: Snapshot,
        elapsed_s: f64,
        fatal_error: Option<String>,
        input_errors: Vec<String>,
    ) -> Self {
        let secs = elapsed_s.max(1e-9);
        Self {
            counters,
            elapsed_s,
            records_per_sec: counters.records_sent as f64 / secs,
            mib_per_sec: counters.bytes_sent as f64 / (1024.0 * 1024.0) / secs,
            fatal_error,
            input_errors,
        }
    }

    /// Lines read that did not reach Kinesis: failed plus oversize.
    pub fn undelivered(&self) -> u64 {
        self.counters.failed + self.counters.oversize
    }

    /// True when every line read was delivered and every input was read.
    pub fn is_clean(&self) -> bool {
        self.undelivered() == 0 && self.fatal_error.is_none() && self.input_errors.is_empty()
    }

    /// The report for humans, a few lines.
    pub fn human(&self) -> String {
        let c = &self.counters;
        let mut out = format!(
            "read {} records ({:.1} MiB); sent {} in {} Kinesis records with {} PutRecords calls \
             in {:.2}s ({:.0} records/s, {:.2} MiB/s)\n\
             retried entries {}, entry errors {}, call errors {}; failed {}, oversize {}",
            c.records_read,
            c.bytes_read as f64 / (1024.0 * 1024.0),
            c.records_sent,
            c.kinesis_records,
            c.put_records_calls,
            self.elapsed_s,
            self.records_per_sec,
            self.mib_per_sec,
            c.retried_entries,
            c.entry_errors,
            c.call_errors,
            c.failed,
            c.oversize,
        );
        if let Some(fatal) = &self.fatal_error {
            out.push_str(&format!("\nstopped early: {fatal}"));
        }
        for error in &self.input_errors {
            out.push_str(&format!("\ninput error: {error}"));
        }
        out
    }
}
