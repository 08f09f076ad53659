//! Errors of the core, and the reasons a record is rejected to the dead-letter prefix.

use serde::Serialize;

/// Why one record (or one event inside a record) was rejected. Every rejected record lands in
/// `dlq/` with this reason next to its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// The payload has no bytes (or only whitespace).
    #[error("empty payload")]
    Empty,
    /// The payload is larger than the configured limit.
    #[error("record of {size} bytes exceeds the {limit}-byte limit")]
    Oversized { size: usize, limit: usize },
    /// The payload is not valid UTF-8.
    #[error("not UTF-8: invalid byte at offset {offset}")]
    NotUtf8 { offset: usize },
    /// The payload looked like JSON but is not.
    #[error("not JSON: {detail}")]
    NotJson { detail: String },
    /// Neither the record nor the partition key names a tenant.
    #[error("no tenant: the record has no tenant field and the partition key names none")]
    NoTenant,
    /// The tenant or service name cannot be used in a storage key.
    #[error("invalid {field} {value:?}: use 1-64 characters of [A-Za-z0-9._-]")]
    InvalidName { field: &'static str, value: String },
    /// The event time is unreadable or too far from the arrival time.
    #[error("timestamp out of range: {detail}")]
    TimestampOutOfRange { detail: String },
    /// A CloudWatch Logs payload could not be decompressed or parsed.
    #[error("corrupt gzip: {detail}")]
    CorruptGzip { detail: String },
    /// A KPL aggregated record is malformed or its MD5 does not match.
    #[error("corrupt KPL aggregate: {detail}")]
    CorruptKpl { detail: String },
    /// The batch had already decoded its limit of bytes (gzip and KPL expand) when this
    /// record came: it is kept, raw, with the dead letters instead of being decoded.
    #[error("the batch decoded more than its {limit}-byte limit before this record")]
    BatchTooLarge { limit: usize },
}

impl RejectReason {
    /// A short, stable name for counting and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Oversized { .. } => "oversized",
            Self::NotUtf8 { .. } => "not_utf8",
            Self::NotJson { .. } => "not_json",
            Self::NoTenant => "no_tenant",
            Self::InvalidName { .. } => "invalid_name",
            Self::TimestampOutOfRange { .. } => "timestamp_out_of_range",
            Self::CorruptGzip { .. } => "corrupt_gzip",
            Self::CorruptKpl { .. } => "corrupt_kpl",
            Self::BatchTooLarge { .. } => "batch_too_large",
        }
    }
}

impl Serialize for RejectReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Failures of the core that are not about one record.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Arrow refused to build a batch (a bug: the builders are sized together).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The Parquet writer failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Compressing the dead-letter object failed.
    #[error("dead-letter encoding: {0}")]
    DeadLetter(#[from] std::io::Error),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
}
