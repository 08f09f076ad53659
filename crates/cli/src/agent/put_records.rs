//! The `PutRecords` call, behind a small trait ([`RecordSink`]) so that the agent's logic is
//! tested against an in-memory fake and runs against Kinesis ([`KinesisSink`]) for real.
//!
//! A call either fails as a whole ([`SinkError`]: retryable for throttling, 5xx and connection
//! trouble; fatal for a missing stream, denied access, invalid requests) or answers per entry
//! ([`EntryResult`]), where some entries may have failed (`ProvisionedThroughputExceededException`,
//! `InternalFailure`, KMS throttling): only those are retried.

use aws_sdk_kinesis::error::{ProvideErrorMetadata as _, SdkError};
use aws_sdk_kinesis::operation::put_records::PutRecordsError;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::batcher::Entry;

/// The outcome of one entry of a call that succeeded as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    /// Written (Kinesis gave it a sequence number).
    Ok,
    /// Not written: retry it.
    Failed { code: String, message: String },
}

/// A call that failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// True for failures that may pass (throttling, 5xx, timeouts, connection errors); false
    /// for those that will not (no such stream, access denied, invalid request).
    pub retryable: bool,
    pub message: String,
}

impl SinkError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            message: message.into(),
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            message: message.into(),
        }
    }
}

/// Where batches go: one `PutRecords` call per invocation.
#[async_trait::async_trait]
pub trait RecordSink: Send + Sync + std::fmt::Debug {
    /// Puts `entries` (at most 500, at most 5 MiB). On success, returns one result per entry,
    /// in order.
    async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryResult>, SinkError>;
}

/// Which stream to write to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRef {
    Name(String),
    Arn(String),
}

impl StreamRef {
    /// A stream ARN (`arn:...`) or a name.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        if s.starts_with("arn:") {
            Self::Arn(s.to_owned())
        } else {
            Self::Name(s.to_owned())
        }
    }
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
        let records = entries
            .iter()
            .map(|e| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(e.data.to_vec()))
                    .partition_key(e.partition_key.clone())
                    .build()
                    .map_err(|err| SinkError::fatal(format!("building a PutRecords entry: {err}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let call = self.client.put_records().set_records(Some(records));
        let call = match &self.stream {
            StreamRef::Name(name) => call.stream_name(name),
            StreamRef::Arn(arn) => call.stream_arn(arn),
        };
        let output = call.send().await.map_err(classify)?;
        let results = output.records();
        if results.len() != entries.len() {
            // Cannot tell which entries were written: retry them all (at-least-once).
            return Err(SinkError::retryable(format!(
                "PutRecords answered {} results for {} entries",
                results.len(),
                entries.len()
            )));
        }
        Ok(results
            .iter()
            .map(|r| match r.error_code() {
                None => EntryResult::Ok,
                Some(code) => EntryResult::Failed {
                    code: code.to_owned(),
                    message: r.error_message().unwrap_or_default().to_owned(),
                },
            })
            .collect())
    }
}

/// An error and its sources, joined by `: ` (without the SDK's debug dump).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// Sorts an SDK error into retryable or fatal.
fn classify(err: SdkError<PutRecordsError>) -> SinkError {
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            SinkError::retryable(error_chain(&err))
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let e = service.err();
            let message = format!(
                "{}: {} (HTTP {status})",
                e.code().unwrap_or("error"),
                e.message().unwrap_or("no message")
            );
            let retryable = matches!(
                e,
                PutRecordsError::ProvisionedThroughputExceededException(_)
                    | PutRecordsError::KmsThrottlingException(_)
                    | PutRecordsError::InternalFailureException(_)
            ) || status >= 500
                || status == 429
                || e.code().is_some_and(is_throttling_code);
            SinkError { retryable, message }
        }
        _ => SinkError::fatal(error_chain(&err)),
    }
}

/// Error codes AWS uses for throttling, whatever the operation.
fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "TransactionInProgressException"
            | "RequestLimitExceeded"
            | "BandwidthLimitExceeded"
            | "LimitExceededException"
            | "RequestThrottled"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "EC2ThrottledException"
    )
}
