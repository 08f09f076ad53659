//! The on-failure destination: where a mapping reports a batch it gave up on (retries
//! exhausted, or records too old), before skipping it. The message has Lambda's shape
//! (`requestContext`, `responseContext`, `KinesisBatchInfo`), so whatever replays it from the
//! stream works with either.

use async_trait::async_trait;
use serde::Serialize;
use sluice_core::normalize::timestamp::format_rfc3339_ms;

use crate::error::LocalError;
use crate::stream_source::SourceRecord;

/// Why a batch was given up on (`requestContext.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FailureCondition {
    RetryAttemptsExhausted,
    RecordAgeExceeded,
}

/// The on-failure message, as Lambda sends it for a Kinesis mapping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureMessage {
    #[serde(rename = "requestContext")]
    pub request_context: RequestContext,
    #[serde(rename = "responseContext")]
    pub response_context: ResponseContext,
    pub version: String,
    pub timestamp: String,
    #[serde(rename = "KinesisBatchInfo")]
    pub kinesis_batch_info: KinesisBatchInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    pub request_id: String,
    pub function_arn: String,
    pub condition: FailureCondition,
    pub approximate_invoke_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseContext {
    pub status_code: u16,
    pub executed_version: String,
    /// `Unhandled` after a function error; absent when the records were too old to invoke.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisBatchInfo {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    pub approximate_arrival_of_first_record: String,
    pub approximate_arrival_of_last_record: String,
    pub batch_size: usize,
    pub stream_arn: String,
}

/// What a failure message is built from.
#[derive(Debug, Clone, Copy)]
pub struct FailedBatch<'a> {
    pub function_arn: &'a str,
    pub stream_arn: &'a str,
    pub shard_id: &'a str,
    pub records: &'a [SourceRecord],
    pub condition: FailureCondition,
    pub invoke_count: u32,
    pub now_ms: i64,
}

impl FailureMessage {
    /// The message for a batch (which must not be empty).
    pub fn new(batch: FailedBatch<'_>) -> Self {
        let first = batch.records.first();
        let last = batch.records.last();
        let seq =
            |r: Option<&SourceRecord>| r.map(|r| r.sequence_number.clone()).unwrap_or_default();
        let arrival = |r: Option<&SourceRecord>| format_rfc3339_ms(r.map_or(0, |r| r.arrival_ms));
        let function_error = (batch.condition == FailureCondition::RetryAttemptsExhausted)
            .then(|| "Unhandled".to_owned());
        Self {
            request_context: RequestContext {
                request_id: request_id(batch.shard_id, &seq(first), batch.now_ms),
                function_arn: batch.function_arn.to_owned(),
                condition: batch.condition,
                approximate_invoke_count: batch.invoke_count,
            },
            response_context: ResponseContext {
                status_code: 200,
                executed_version: "$LATEST".into(),
                function_error,
            },
            version: "1.0".into(),
            timestamp: format_rfc3339_ms(batch.now_ms),
            kinesis_batch_info: KinesisBatchInfo {
                shard_id: batch.shard_id.to_owned(),
                start_sequence_number: seq(first),
                end_sequence_number: seq(last),
                approximate_arrival_of_first_record: arrival(first),
                approximate_arrival_of_last_record: arrival(last),
                batch_size: batch.records.len(),
                stream_arn: batch.stream_arn.to_owned(),
            },
        }
    }
}

/// A request id unique enough for a local runner (Lambda uses a UUID).
fn request_id(shard: &str, first_sequence: &str, now_ms: i64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in shard
        .bytes()
        .chain(first_sequence.bytes())
        .chain(now_ms.to_le_bytes())
    {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let r = u128::from(h) << 64 | u128::from(h.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15);
    let hex = format!("{r:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Where failure messages go.
#[async_trait]
pub trait FailureDestination: Send + Sync + std::fmt::Debug {
    async fn send(&self, message: &FailureMessage) -> Result<(), LocalError>;
}

/// No destination configured: Lambda then only skips the batch; this logs it as well.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogOnly;

#[async_trait]
impl FailureDestination for LogOnly {
    async fn send(&self, message: &FailureMessage) -> Result<(), LocalError> {
        tracing::error!(
            shard = %message.kinesis_batch_info.shard_id,
            start = %message.kinesis_batch_info.start_sequence_number,
            end = %message.kinesis_batch_info.end_sequence_number,
            records = message.kinesis_batch_info.batch_size,
            condition = ?message.request_context.condition,
            "batch skipped (no on-failure destination configured)"
        );
        Ok(())
    }
}

/// An SQS queue, as `DestinationConfig.OnFailure` in the template.
#[derive(Debug, Clone)]
pub struct SqsDestination {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDestination {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// The destination for a queue name (`GetQueueUrl`).
    pub async fn by_name(client: aws_sdk_sqs::Client, queue: &str) -> Result<Self, LocalError> {
        let out = client
            .get_queue_url()
            .queue_name(queue)
            .send()
            .await
            .map_err(|e| LocalError::aws("sqs", "GetQueueUrl", e))?;
        let url = out
            .queue_url()
            .ok_or_else(|| LocalError::Config(format!("queue {queue} has no URL")))?;
        Ok(Self::new(client, url))
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

#[async_trait]
impl FailureDestination for SqsDestination {
    async fn send(&self, message: &FailureMessage) -> Result<(), LocalError> {
        let body = serde_json::to_string(message)
            .map_err(|e| LocalError::Config(format!("serialising the failure message: {e}")))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| LocalError::aws("sqs", "SendMessage", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_lambdas_shape_with_the_batch_range() -> Result<(), serde_json::Error> {
        let records = [
            SourceRecord {
                sequence_number: "100".into(),
                partition_key: "acme/api".into(),
                data: vec![],
                arrival_ms: 1_736_937_000_500,
            },
            SourceRecord {
                sequence_number: "105".into(),
                partition_key: "acme/api".into(),
                data: vec![],
                arrival_ms: 1_736_937_002_000,
            },
        ];
        let message = FailureMessage::new(FailedBatch {
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:sluice-ingest",
            stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/logs",
            shard_id: "shardId-000000000000",
            records: &records,
            condition: FailureCondition::RetryAttemptsExhausted,
            invoke_count: 4,
            now_ms: 1_736_937_010_000,
        });
        let json = serde_json::to_value(&message)?;
        assert_eq!(
            json["requestContext"]["condition"],
            "RetryAttemptsExhausted"
        );
        assert_eq!(json["requestContext"]["approximateInvokeCount"], 4);
        assert_eq!(json["responseContext"]["functionError"], "Unhandled");
        let info = &json["KinesisBatchInfo"];
        assert_eq!(info["shardId"], "shardId-000000000000");
        assert_eq!(info["startSequenceNumber"], "100");
        assert_eq!(info["endSequenceNumber"], "105");
        assert_eq!(
            info["approximateArrivalOfFirstRecord"],
            "2025-01-15T10:30:00.500Z"
        );
        assert_eq!(
            info["approximateArrivalOfLastRecord"],
            "2025-01-15T10:30:02.000Z"
        );
        assert_eq!(info["batchSize"], 2);
        assert_eq!(
            info["streamArn"],
            "arn:aws:kinesis:us-east-1:000000000000:stream/logs"
        );
        assert_eq!(
            json["requestContext"]["requestId"].as_str().map(str::len),
            Some(36)
        );
        Ok(())
    }
}
