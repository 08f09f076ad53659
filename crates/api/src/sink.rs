//! Where stamped records go: a [`RecordSink`] puts a whole set and returns only once every
//! record is on the stream, or with an honest error (then none of the request is
//! acknowledged, and the sender sends it again).
//!
//! - [`KinesisSink`]: `PutRecords` through [`sluice_aws::kinesis_put::KinesisWriter`]
//!   (calls within Kinesis's limits, only the failed entries retried, with backoff);
//! - [`EmbeddedSink`]: the embedded default's in-process stream;
//! - [`MemorySink`]: a list in memory (tests, benches).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sluice_aws::kinesis_put::KinesisWriter;
use sluice_core::embedded_stream::EmbeddedStream;

/// One record for the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// `tenant/service`.
    pub partition_key: String,
    /// The stamped JSON object.
    pub data: Bytes,
}

/// The records could not all be put on the stream.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// The stream, as the front door writes to it.
#[async_trait::async_trait]
pub trait RecordSink: Send + Sync + std::fmt::Debug {
    /// Puts every record; returns once all are on the stream, or fails.
    async fn put(&self, records: Vec<OutRecord>) -> Result<(), SinkError>;
}

/// Kinesis, with `PutRecords`.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    writer: KinesisWriter,
}

impl KinesisSink {
    pub fn new(writer: KinesisWriter) -> Self {
        Self { writer }
    }
}

#[async_trait::async_trait]
impl RecordSink for KinesisSink {
    async fn put(&self, records: Vec<OutRecord>) -> Result<(), SinkError> {
        let pairs: Vec<(String, Bytes)> = records
            .into_iter()
            .map(|r| (r.partition_key, r.data))
            .collect();
        self.writer
            .put_all(&pairs)
            .await
            .map_err(|e| SinkError(e.to_string()))
    }
}

/// The embedded default's stream, shared with whatever drains it.
#[derive(Debug, Clone)]
pub struct EmbeddedSink {
    stream: Arc<Mutex<EmbeddedStream>>,
    /// The arrival time records get; `None`: the wall clock.
    arrival: Option<Arc<AtomicI64>>,
}

impl EmbeddedSink {
    pub fn new(stream: Arc<Mutex<EmbeddedStream>>) -> Self {
        Self {
            stream,
            arrival: None,
        }
    }

    /// Records get the time in `arrival` (ms since the epoch) as their arrival time instead of
    /// the wall clock's: for a replay of past traffic (`sluice demo`), whose clock the caller
    /// moves.
    pub fn with_arrival_clock(stream: Arc<Mutex<EmbeddedStream>>, arrival: Arc<AtomicI64>) -> Self {
        Self {
            stream,
            arrival: Some(arrival),
        }
    }
}

#[async_trait::async_trait]
impl RecordSink for EmbeddedSink {
    async fn put(&self, records: Vec<OutRecord>) -> Result<(), SinkError> {
        let arrival = self
            .arrival
            .as_ref()
            .map_or_else(crate::intake::now_ms, |a| a.load(Ordering::Acquire));
        let mut stream = self
            .stream
            .lock()
            .map_err(|_| SinkError("the embedded stream is poisoned".into()))?;
        for record in records {
            stream.put(&record.partition_key, record.data.to_vec(), arrival);
        }
        Ok(())
    }
}

/// Records kept in memory, in the order they were put.
#[derive(Debug, Default)]
pub struct MemorySink {
    records: Mutex<Vec<OutRecord>>,
}

impl MemorySink {
    /// Everything put so far, taken out.
    pub fn take(&self) -> Vec<OutRecord> {
        self.records
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl RecordSink for MemorySink {
    async fn put(&self, records: Vec<OutRecord>) -> Result<(), SinkError> {
        self.records
            .lock()
            .map_err(|_| SinkError("poisoned".into()))?
            .extend(records);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_embedded_sink_with_an_arrival_clock_stamps_the_clocks_time() -> Result<(), SinkError>
    {
        let stream = Arc::new(Mutex::new(EmbeddedStream::new(1)));
        let clock = Arc::new(AtomicI64::new(1_764_158_407_150));
        let sink = EmbeddedSink::with_arrival_clock(Arc::clone(&stream), Arc::clone(&clock));
        let record = OutRecord {
            partition_key: "acme/web".into(),
            data: Bytes::from_static(br#"{"tenant":"acme"}"#),
        };
        sink.put(vec![record.clone()]).await?;
        clock.store(1_764_158_467_150, Ordering::Release);
        sink.put(vec![record]).await?;
        let batch = stream
            .lock()
            .map_err(|_| SinkError("poisoned".into()))?
            .take_batch(0, 10);
        let arrivals: Vec<i64> = batch.iter().map(|r| r.arrival_ms).collect();
        assert_eq!(arrivals, vec![1_764_158_407_150, 1_764_158_467_150]);
        Ok(())
    }
}
