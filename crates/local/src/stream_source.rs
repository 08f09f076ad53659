//! What the runner reads from a stream, as a trait, so that the polling, batching, windowing and
//! checkpointing are tested with an in-memory stream and run against Kinesis
//! ([`crate::kinesis_source`]).

use async_trait::async_trait;

/// One record as `GetRecords` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    /// `ApproximateArrivalTimestamp`, ms since the epoch.
    pub arrival_ms: i64,
}

/// A shard as `ListShards` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    pub parent_shard_id: Option<String>,
    pub adjacent_parent_shard_id: Option<String>,
}

impl ShardInfo {
    /// A shard with no parents.
    pub fn root(shard_id: &str) -> Self {
        Self {
            shard_id: shard_id.to_owned(),
            parent_shard_id: None,
            adjacent_parent_shard_id: None,
        }
    }

    /// The shard's parents (none, one, or two after a merge).
    pub fn parents(&self) -> impl Iterator<Item = &str> {
        self.parent_shard_id
            .iter()
            .chain(&self.adjacent_parent_shard_id)
            .map(String::as_str)
    }
}

/// Where to open a shard iterator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IteratorPosition {
    TrimHorizon,
    Latest,
    /// Just after a checkpointed record.
    AfterSequenceNumber(String),
}

/// One `GetRecords` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordsPage {
    pub records: Vec<SourceRecord>,
    /// `None` once a closed shard (a parent after a reshard) has been read to its end.
    pub next_iterator: Option<String>,
    pub millis_behind_latest: Option<i64>,
}

/// Why a read failed. Throttling and expired iterators are expected and handled by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("throttled: {0}")]
    Throttled(String),
    #[error("shard iterator expired: {0}")]
    ExpiredIterator(String),
    #[error("stream not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Other(String),
}

/// The reads of a stream the runner makes.
#[async_trait]
pub trait StreamSource: Send + Sync + std::fmt::Debug {
    /// The stream's ARN, as Lambda puts it in every record's `eventSourceARN`.
    fn stream_arn(&self) -> &str;
    /// The region, as in every record's `awsRegion`.
    fn region(&self) -> &str;
    /// Every shard, open and closed (`ListShards`, all pages).
    async fn list_shards(&self) -> Result<Vec<ShardInfo>, SourceError>;
    /// A shard iterator (`GetShardIterator`).
    async fn shard_iterator(
        &self,
        shard_id: &str,
        position: &IteratorPosition,
    ) -> Result<String, SourceError>;
    /// Up to `limit` records (`GetRecords`).
    async fn get_records(&self, iterator: &str, limit: usize) -> Result<RecordsPage, SourceError>;
}
