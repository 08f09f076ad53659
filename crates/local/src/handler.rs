//! The invoke, behind a trait: what the event source mapping hands a function and what it gets
//! back. The real functions are in [`crate::functions`]; tests use fakes.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::lambda_event::{EventSource, WindowFields};
use crate::stream_source::SourceRecord;

/// One invocation: a batch of one shard, in order, and for a tumbling-window mapping the
/// window's fields (with the state the previous invocation returned).
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    pub source: &'a EventSource,
    pub shard_id: &'a str,
    pub records: &'a [SourceRecord],
    pub window: Option<&'a WindowFields>,
}

/// A successful invocation's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvocationResult {
    /// `batchItemFailures[].itemIdentifier`: sequence numbers (`None` for a null or missing
    /// identifier, which fails the whole batch).
    pub batch_item_failures: Vec<Option<String>>,
    /// The window state for the next invocation of the window.
    pub state: HashMap<String, String>,
    /// Events the function dead-lettered itself (ingest's `dlq/`), for the metrics.
    pub dead_lettered: u64,
    /// Rows the function stored (ingest's Parquet), for the metrics.
    pub rows_stored: u64,
}

/// A function error (the function threw, timed out, or answered something Lambda rejects).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("function error: {0}")]
pub struct FunctionError(pub String);

/// A function, invoked synchronously by the mapping.
#[async_trait]
pub trait BatchHandler: Send + Sync + std::fmt::Debug {
    async fn invoke(&self, invocation: Invocation<'_>) -> Result<InvocationResult, FunctionError>;
}
