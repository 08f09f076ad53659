//! # `sluice agent`: the producer side of sluice
//!
//! Follows log files (as `tail -F` does) or reads stdin, and ships every line, one line one
//! record, to a Kinesis stream with partition key `tenant/service`.
//!
//! ```text
//! readers (tail.rs) ─▶ bounded channel ─▶ batcher.rs ─▶ bounded channel ─▶ sender.rs ─▶ RecordSink
//!   one per input       (lines + budget)   keys, KPL,     (batches)         N calls,      (put_records.rs:
//!                                          500 / 5 MiB,                     retries        Kinesis or a fake)
//!                                          linger
//! ```
//!
//! - [`tail`]: inputs; [`lines`]: line splitting with a length cap, and the hand-off;
//! - [`partition`]: partition keys from the record (core's aliases) or flags, hot-key suffixes;
//! - [`batcher`]: `PutRecords` batches within Kinesis's limits, with a linger time;
//! - [`kpl_encode`]: optional KPL aggregation;
//! - [`sender`], [`retry`], [`put_records`]: calls, retries of failed entries only, backoff
//!   with full jitter, and the [`RecordSink`] trait with its Kinesis implementation;
//! - [`budget`]: the memory bound (backpressure); [`counters`], [`rate`]: what it did;
//! - [`cli`]: the command line (`sluice agent --help`).
//!
//! Memory is bounded by the [`budget::Budget`]: every line holds its size from the budget until
//! Kinesis has acknowledged it (or it was given up on), so a slow or throttled stream makes
//! the readers wait rather than the agent grow. On SIGTERM or Ctrl-C the readers stop, what
//! was read is flushed and delivered (with retries), and the counters are reported.

pub mod api_sink;
pub mod batcher;
pub mod budget;
pub mod cli;
pub mod counters;
pub mod kpl_encode;
pub mod lines;
pub mod partition;
pub mod put_records;
pub mod rate;
pub mod retry;
pub mod sender;
pub mod tail;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::AsyncRead;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub use batcher::BatchLimits;
pub use counters::{Counters, Report, Snapshot};
pub use partition::KeyConfig;
pub use put_records::{EntryResult, KinesisSink, RecordSink, SinkError, StreamRef};
pub use retry::RetryPolicy;

use budget::Budget;
use lines::LineSender;
use tail::FollowOptions;

/// Lines that may wait between the readers and the batcher (their bytes count against the
/// budget too).
const LINE_CHANNEL: usize = 1024;

/// One input.
pub enum Input {
    /// Standard input, read to its end.
    Stdin,
    /// A file, followed as `tail -F` does (or read once without follow).
    File(PathBuf),
    /// Any reader, read to its end (tests, embedding).
    Reader {
        name: String,
        reader: Box<dyn AsyncRead + Send + Unpin>,
    },
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Stdin => f.write_str("Stdin"),
            Input::File(path) => f.debug_tuple("File").field(path).finish(),
            Input::Reader { name, .. } => f.debug_struct("Reader").field("name", name).finish(),
        }
    }
}

/// Everything the agent needs to know, besides where records go.
#[derive(Debug)]
pub struct AgentConfig {
    pub inputs: Vec<Input>,
    /// Follow files at their end (`tail -F`); otherwise read each once and stop.
    pub follow: bool,
    /// Start at the beginning of files that exist at start-up (following starts at the end).
    pub from_start: bool,
    /// How often a followed file is checked at its end.
    pub poll: Duration,
    pub keys: KeyConfig,
    pub limits: BatchLimits,
    pub retry: RetryPolicy,
    /// `PutRecords` calls in flight at once.
    pub concurrency: usize,
    /// Bytes of records the agent may hold at once (at least 2 MiB is used).
    pub buffer_bytes: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            inputs: vec![Input::Stdin],
            follow: true,
            from_start: false,
            poll: Duration::from_millis(250),
            keys: KeyConfig::default(),
            limits: BatchLimits::default(),
            retry: RetryPolicy::default(),
            concurrency: 4,
            buffer_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Runs the agent until its inputs end (stdin, files without follow) or `shutdown` becomes
/// true, then delivers what it read and returns the report. `counters` may be watched while it
/// runs.
pub async fn run(
    config: AgentConfig,
    sink: Arc<dyn RecordSink>,
    counters: Arc<Counters>,
    mut shutdown: watch::Receiver<bool>,
) -> Report {
    let started = Instant::now();
    let limits = config.limits.clamped();
    let budget = Budget::new(config.buffer_bytes.max(2 * batcher::MAX_RECORD_BYTES));
    let (line_tx, line_rx) = mpsc::channel(LINE_CHANNEL);
    let (batch_tx, batch_rx) = mpsc::channel(config.concurrency.max(1));
    let (stop_tx, stop_rx) = watch::channel(false);

    // The outside shutdown, and a fatal error, both stop the readers.
    let forward_stop = stop_tx.clone();
    let forwarder = tokio::spawn(async move {
        loop {
            if *shutdown.borrow_and_update() {
                let _ = forward_stop.send(true);
                return;
            }
            if shutdown.changed().await.is_err() {
                return;
            }
        }
    });

    let fatal = Arc::new(OnceLock::new());
    let delivery = sender::Delivery {
        sink,
        policy: config.retry,
        counters: Arc::clone(&counters),
        fatal: Arc::clone(&fatal),
        stop: stop_tx,
    };
    let senders = tokio::spawn(sender::send_all(batch_rx, delivery, config.concurrency));
    let batcher = tokio::spawn(
        batcher::Batcher::new(
            limits,
            partition::Partitioner::new(config.keys),
            batch_tx,
            Arc::clone(&counters),
        )
        .run(line_rx),
    );

    let line_sender = LineSender::new(line_tx, budget, Arc::clone(&counters));
    let follow = FollowOptions {
        follow: config.follow,
        from_start: config.from_start,
        poll: config.poll,
        max_line: limits.max_record_bytes,
    };
    let mut readers = JoinSet::new();
    for input in config.inputs {
        let sender = line_sender.clone();
        let stop = stop_rx.clone();
        readers.spawn(async move {
            match input {
                Input::Stdin => {
                    tail::read_stream(tokio::io::stdin(), "-", follow.max_line, &sender, stop).await
                }
                Input::File(path) => tail::follow_file(path, follow, sender, stop).await,
                Input::Reader { name, reader } => {
                    tail::read_stream(reader, &name, follow.max_line, &sender, stop).await
                }
            }
        });
    }
    drop(line_sender);

    let mut input_errors = Vec::new();
    while let Some(done) = readers.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "input failed");
                input_errors.push(e.to_string());
            }
            Err(e) => input_errors.push(format!("a reader crashed: {e}")),
        }
    }
    // The readers are done: the batcher flushes and ends, then the senders drain and end.
    if let Err(e) = batcher.await {
        input_errors.push(format!("the batcher crashed: {e}"));
    }
    if let Err(e) = senders.await {
        input_errors.push(format!("a sender crashed: {e}"));
    }
    forwarder.abort();
    Report::new(
        counters.snapshot(),
        started.elapsed().as_secs_f64(),
        fatal.get().cloned(),
        input_errors,
    )
}

#[cfg(test)]
mod tests;
