//! Lines in, `PutRecords` batches out.
//!
//! Each line gets its partition key ([`Partitioner`]); a line that would make a Kinesis record
//! over 1 MiB (data plus key) is counted as oversize and not sent. Lines then become Kinesis
//! records, plain or packed into KPL aggregates ([`Aggregator`]), and records fill a batch of
//! at most 500 records and 5 MiB. A batch goes to the senders when it is full, when the
//! linger time has passed since the first record waiting in it (or in an open aggregate), or
//! when the input ends. Handing a batch on waits while every sender is busy: that wait
//! reaches the readers as backpressure.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::budget::Reservation;
use super::counters::{Counters, add};
use super::kpl_encode::Aggregator;
use super::lines::Line;
use super::partition::Partitioner;

/// Kinesis's limit on records per `PutRecords` call.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Kinesis's limit on a `PutRecords` call: 5 MiB of data and partition keys.
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
/// Kinesis's limit on one record: 1 MiB of data and partition key.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// One Kinesis record to put: a user record, or a KPL aggregate of several.
#[derive(Debug)]
pub struct Entry {
    pub partition_key: String,
    pub data: Bytes,
    /// User records (lines) inside: 1 for a plain record.
    pub user_records: u64,
    /// Bytes of those lines.
    pub user_bytes: u64,
    /// The memory budget held until the record is acknowledged or given up on.
    pub reservation: Reservation,
}

impl Entry {
    /// A plain record: one line.
    pub fn plain(partition_key: String, data: Vec<u8>, reservation: Reservation) -> Self {
        let user_bytes = data.len() as u64;
        Self {
            partition_key,
            data: Bytes::from(data),
            user_records: 1,
            user_bytes,
            reservation,
        }
    }

    /// Its size as Kinesis counts it: data plus partition key.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// Records for one `PutRecords` call.
#[derive(Debug, Default)]
pub struct Batch {
    pub entries: Vec<Entry>,
    /// Sum of [`Entry::size`].
    pub bytes: usize,
}

impl Batch {
    /// User records inside.
    pub fn user_records(&self) -> u64 {
        self.entries.iter().map(|e| e.user_records).sum()
    }
}

/// Batching settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Records per call (1 to 500).
    pub max_records: usize,
    /// Bytes per call (at most 5 MiB).
    pub max_bytes: usize,
    /// Largest record, data plus key (at most 1 MiB).
    pub max_record_bytes: usize,
    /// How long a record may wait for its batch to fill.
    pub linger: Duration,
    /// KPL aggregation with aggregates of at most this many bytes; `None`: plain records.
    pub kpl_max_bytes: Option<usize>,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_records: MAX_BATCH_RECORDS,
            max_bytes: MAX_BATCH_BYTES,
            max_record_bytes: MAX_RECORD_BYTES,
            linger: Duration::from_millis(200),
            kpl_max_bytes: None,
        }
    }
}

impl BatchLimits {
    /// The same limits, clamped to what Kinesis accepts.
    pub fn clamped(mut self) -> Self {
        self.max_records = self.max_records.clamp(1, MAX_BATCH_RECORDS);
        self.max_record_bytes = self.max_record_bytes.clamp(1, MAX_RECORD_BYTES);
        self.max_bytes = self
            .max_bytes
            .clamp(self.max_record_bytes.min(MAX_BATCH_BYTES), MAX_BATCH_BYTES);
        self.kpl_max_bytes = self
            .kpl_max_bytes
            .map(|b| b.clamp(64, self.max_record_bytes));
        self
    }
}

/// The batching stage.
#[derive(Debug)]
pub struct Batcher {
    limits: BatchLimits,
    partitioner: Partitioner,
    aggregator: Option<Aggregator>,
    batch: Batch,
    deadline: Option<Instant>,
    out: mpsc::Sender<Batch>,
    counters: Arc<Counters>,
    ready: Vec<Entry>,
}

/// The senders are gone.
#[derive(Debug)]
struct SendersGone;

impl Batcher {
    pub fn new(
        limits: BatchLimits,
        partitioner: Partitioner,
        out: mpsc::Sender<Batch>,
        counters: Arc<Counters>,
    ) -> Self {
        let limits = limits.clamped();
        Self {
            aggregator: limits
                .kpl_max_bytes
                .map(|max| Aggregator::new(max, limits.max_record_bytes)),
            limits,
            partitioner,
            batch: Batch::default(),
            deadline: None,
            out,
            counters,
            ready: Vec::new(),
        }
    }

    /// Runs until the line channel closes, then flushes everything.
    pub async fn run(mut self, mut lines: mpsc::Receiver<Line>) {
        loop {
            let next = match self.deadline {
                Some(deadline) => tokio::select! {
                    line = lines.recv() => Some(line),
                    () = tokio::time::sleep_until(deadline) => None,
                },
                None => Some(lines.recv().await),
            };
            let result = match next {
                Some(Some(line)) => self.add(line).await,
                Some(None) => {
                    let _ = self.flush().await;
                    return;
                }
                None => self.flush().await,
            };
            if result.is_err() {
                return;
            }
        }
    }

    async fn add(&mut self, line: Line) -> Result<(), SendersGone> {
        let key = self.partitioner.key(&line.data);
        if line.data.len() + key.len() > self.limits.max_record_bytes {
            add(&self.counters.oversize, 1);
            tracing::warn!(
                bytes = line.data.len(),
                partition_key = %key,
                "record larger than a Kinesis record may be (1 MiB with its key): not sent"
            );
            return Ok(());
        }
        match &mut self.aggregator {
            Some(aggregator) => aggregator.add(key, line.data, line.reservation, &mut self.ready),
            None => self
                .ready
                .push(Entry::plain(key, line.data, line.reservation)),
        }
        self.place_ready().await?;
        if self.has_pending() && self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.limits.linger);
        }
        Ok(())
    }

    /// True when records wait in the batch or in open aggregates.
    fn has_pending(&self) -> bool {
        !self.batch.entries.is_empty() || self.aggregator.as_ref().is_some_and(|a| !a.is_empty())
    }

    /// Moves ready records into the batch, sending the batch whenever it is full.
    async fn place_ready(&mut self) -> Result<(), SendersGone> {
        let ready = std::mem::take(&mut self.ready);
        for entry in ready {
            let fits = self.batch.entries.len() < self.limits.max_records
                && self.batch.bytes + entry.size() <= self.limits.max_bytes;
            if !fits {
                self.send_batch().await?;
            }
            self.batch.bytes += entry.size();
            self.batch.entries.push(entry);
            if self.batch.entries.len() >= self.limits.max_records {
                self.send_batch().await?;
            }
        }
        Ok(())
    }

    async fn send_batch(&mut self) -> Result<(), SendersGone> {
        if self.batch.entries.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        if self.aggregator.as_ref().is_none_or(Aggregator::is_empty) {
            // Nothing older is left waiting: the linger clock starts again with the next
            // record. (Open aggregates keep the deadline, so a quiet key is not starved.)
            self.deadline = None;
        }
        self.out.send(batch).await.map_err(|_| SendersGone)
    }

    /// Sends everything waiting: open aggregates and the partial batch.
    async fn flush(&mut self) -> Result<(), SendersGone> {
        if let Some(aggregator) = &mut self.aggregator {
            aggregator.flush(&mut self.ready);
        }
        self.place_ready().await?;
        self.send_batch().await?;
        self.deadline = None;
        Ok(())
    }
}
