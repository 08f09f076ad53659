//! The `PutRecords` call, behind a small trait ([`RecordSink`]) so that the agent's logic is
//! tested against an in-memory fake and runs against Kinesis ([`KinesisSink`]) for real.
//!
//! The call itself, and how its failures are sorted into retryable and fatal, is
//! `sluice_aws::kinesis_put` (shared with the front door).

pub use sluice_aws::kinesis_put::{EntryResult, PutError as SinkError, StreamRef};

use super::batcher::Entry;

/// Where batches go: one `PutRecords` call per invocation.
#[async_trait::async_trait]
pub trait RecordSink: Send + Sync + std::fmt::Debug {
    /// Puts `entries` (at most 500, at most 5 MiB). On success, returns one result per entry,
    /// in order.
    async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryResult>, SinkError>;
}

/// The real sink: aws-sdk-kinesis `PutRecords`. Build the client without SDK retries (the
/// agent retries, entry by entry, and counts what it retried).
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    stream: StreamRef,
}

impl KinesisSink {
    pub fn new(client: aws_sdk_kinesis::Client, stream: StreamRef) -> Self {
        Self { client, stream }
    }
}

#[async_trait::async_trait]
impl RecordSink for KinesisSink {
    async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryResult>, SinkError> {
        let entries = entries
            .iter()
            .map(|e| (e.partition_key.as_str(), e.data.as_ref()));
        sluice_aws::kinesis_put::put_records(&self.client, &self.stream, entries).await
    }
}
