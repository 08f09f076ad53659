//! Writing to Kinesis with `PutRecords`: one call ([`put_records`]), and whole sets of records
//! delivered with retries ([`KinesisWriter`], the front door's writer).
//!
//! A call either fails as a whole ([`PutError`]: retryable for throttling, 5xx and connection
//! trouble; fatal for a missing stream, denied access, invalid requests) or answers per entry
//! ([`EntryResult`]), where some entries may have failed (`ProvisionedThroughputExceededException`,
//! `InternalFailure`, KMS throttling): only those are sent again.

use std::time::Duration;

use aws_sdk_kinesis::error::{ProvideErrorMetadata as _, SdkError};
use aws_sdk_kinesis::operation::put_records::PutRecordsError;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bytes::Bytes;

/// Kinesis's limit on records per `PutRecords` call.
pub const MAX_CALL_RECORDS: usize = 500;
/// Kinesis's limit on a `PutRecords` call: 5 MiB of data and partition keys.
pub const MAX_CALL_BYTES: usize = 5 * 1024 * 1024;

/// The outcome of one entry of a call that succeeded as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    /// Written (Kinesis gave it a sequence number).
    Ok,
    /// Not written: retry it.
    Failed { code: String, message: String },
}

/// A call that failed as a whole, or records that could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PutError {
    /// True for failures that may pass (throttling, 5xx, timeouts, connection errors); false
    /// for those that will not (no such stream, access denied, invalid request).
    pub retryable: bool,
    pub message: String,
}

impl PutError {
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

/// One `PutRecords` call of `(partition key, data)` entries (at most 500, at most 5 MiB). On
/// success, one result per entry, in order.
pub async fn put_records<'a>(
    client: &aws_sdk_kinesis::Client,
    stream: &StreamRef,
    entries: impl ExactSizeIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Vec<EntryResult>, PutError> {
    let count = entries.len();
    let records = entries
        .map(|(key, data)| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(data.to_vec()))
                .partition_key(key)
                .build()
                .map_err(|err| PutError::fatal(format!("building a PutRecords entry: {err}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let call = client.put_records().set_records(Some(records));
    let call = match stream {
        StreamRef::Name(name) => call.stream_name(name),
        StreamRef::Arn(arn) => call.stream_arn(arn),
    };
    let output = call.send().await.map_err(classify)?;
    let results = output.records();
    if results.len() != count {
        // Cannot tell which entries were written: retry them all (at-least-once).
        return Err(PutError::retryable(format!(
            "PutRecords answered {} results for {count} entries",
            results.len(),
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

/// Delivers sets of records to one stream: in calls of at most 500 records and 5 MiB, each
/// call's failed entries (and calls that failed as a whole and may pass) sent again after a
/// backoff with full jitter, up to `max_attempts`.
#[derive(Debug, Clone)]
pub struct KinesisWriter {
    client: aws_sdk_kinesis::Client,
    stream: StreamRef,
    /// Attempts per record, the first included.
    pub max_attempts: u32,
    /// The backoff ceiling of the first retry; it doubles per retry up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl KinesisWriter {
    pub fn new(client: aws_sdk_kinesis::Client, stream: StreamRef) -> Self {
        Self {
            client,
            stream,
            max_attempts: 6,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }

    /// Puts every record, or fails saying how many could not be written. Returns only once
    /// each record is on the stream (or given up on).
    pub async fn put_all(&self, records: &[(String, Bytes)]) -> Result<(), PutError> {
        for chunk in calls(records) {
            self.put_call(chunk).await?;
        }
        Ok(())
    }

    async fn put_call(&self, chunk: &[(String, Bytes)]) -> Result<(), PutError> {
        let mut pending: Vec<&(String, Bytes)> = chunk.iter().collect();
        let mut last = String::new();
        for attempt in 0..self.max_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt)).await;
            }
            let entries = pending.iter().map(|(k, d)| (k.as_str(), d.as_ref()));
            match put_records(&self.client, &self.stream, entries).await {
                Ok(results) => {
                    let mut failed = Vec::new();
                    for (record, result) in pending.iter().zip(&results) {
                        if let EntryResult::Failed { code, message } = result {
                            last = format!("{code}: {message}");
                            failed.push(*record);
                        }
                    }
                    if failed.is_empty() {
                        return Ok(());
                    }
                    tracing::debug!(failed = failed.len(), attempt, "PutRecords entries failed");
                    pending = failed;
                }
                Err(e) if e.retryable => {
                    tracing::debug!(error = %e, attempt, "PutRecords failed; retrying");
                    last = e.message;
                }
                Err(e) => return Err(e),
            }
        }
        Err(PutError::retryable(format!(
            "{} of {} records not written after {} attempts (last error: {last})",
            pending.len(),
            chunk.len(),
            self.max_attempts
        )))
    }

    fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let ceiling = self
            .base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(fastrand::u64(0..=micros))
    }
}

/// Splits records into calls within Kinesis's limits (500 records, 5 MiB of keys and data).
pub fn calls(records: &[(String, Bytes)]) -> Vec<&[(String, Bytes)]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, (key, data)) in records.iter().enumerate() {
        let size = key.len() + data.len();
        if i > start && (i - start == MAX_CALL_RECORDS || bytes + size > MAX_CALL_BYTES) {
            out.push(&records[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
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
fn classify(err: SdkError<PutRecordsError>) -> PutError {
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            PutError::retryable(error_chain(&err))
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
            PutError { retryable, message }
        }
        _ => PutError::fatal(error_chain(&err)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_stay_within_500_records_and_5_mib() {
        let small: Vec<(String, Bytes)> = (0..1201)
            .map(|i| (format!("t/s{i}"), Bytes::from_static(b"{}")))
            .collect();
        let sizes: Vec<usize> = calls(&small).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![500, 500, 201]);
        let big: Vec<(String, Bytes)> = (0..12)
            .map(|_| ("t/s".to_owned(), Bytes::from(vec![b'x'; 1 << 20])))
            .collect();
        let sizes: Vec<usize> = calls(&big).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![4, 4, 4]);
        assert!(calls(&[]).is_empty());
    }
}
