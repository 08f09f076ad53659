//! [`SqsWorkQueue`]: the SQS implementation of [`sluice_core::evaluate::queue::WorkQueue`], for
//! the evaluate planner (work items) and the workers (deliveries) on Lambda
//! (docs/ARCHITECTURE.md §12). Messages are JSON, sent ten to a `SendMessageBatch`. On a FIFO
//! queue (a URL ending `.fifo`) each message carries the item's deduplication id, so a planner
//! woken twice for one window queues its items once, and a message group per item key.
//!
//! [`PlannerWake`] is how aggregate wakes the planner when a shard finishes a window: one
//! message, delayed, on a standard queue the planner consumes.
//!
//! [`SqsBatch`] reads the messages Lambda's event source mapping delivers and answers with the
//! ones that failed (`ReportBatchItemFailures`), so only those come back.

use async_trait::async_trait;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_core::evaluate::queue::{QueueError, WorkQueue};

/// How a message is named on a FIFO queue: (deduplication id, group id).
pub type FifoIds<T> = fn(&T) -> (String, String);

/// An SQS queue of `T`s.
#[derive(Debug, Clone)]
pub struct SqsWorkQueue<T> {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    fifo: Option<FifoIds<T>>,
}

impl<T> SqsWorkQueue<T> {
    /// A queue; `fifo_ids` names the messages when the URL is a FIFO queue's.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String, fifo_ids: FifoIds<T>) -> Self {
        let fifo = queue_url.ends_with(".fifo").then_some(fifo_ids);
        Self {
            client,
            queue_url,
            fifo,
        }
    }
}

#[async_trait]
impl<T: Serialize + Send + Sync + 'static> WorkQueue<T> for SqsWorkQueue<T> {
    async fn send_all(&self, items: Vec<T>) -> Result<(), QueueError> {
        for chunk in items.chunks(10) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, item) in chunk.iter().enumerate() {
                let body =
                    serde_json::to_string(item).map_err(|e| QueueError::Send(e.to_string()))?;
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body);
                if let Some(ids) = self.fifo {
                    let (dedup, group) = ids(item);
                    entry = entry
                        .message_deduplication_id(dedup)
                        .message_group_id(group);
                }
                entries.push(entry.build().map_err(|e| QueueError::Send(e.to_string()))?);
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError::Send(format!("SendMessageBatch: {e}")))?;
            if let Some(failed) = out.failed().first() {
                return Err(QueueError::Send(format!(
                    "SendMessageBatch refused {} of {} messages: {}",
                    out.failed().len(),
                    chunk.len(),
                    failed.message().unwrap_or(failed.code())
                )));
            }
        }
        Ok(())
    }
}

/// The messages of one SQS event, decoded, and the failures to report.
#[derive(Debug)]
pub struct SqsBatch<T> {
    /// (message id, the item or why it does not decode).
    pub messages: Vec<(String, Result<T, String>)>,
}

impl<T: DeserializeOwned> SqsBatch<T> {
    pub fn from_event(event: SqsEvent) -> Self {
        let messages = event
            .records
            .into_iter()
            .map(|m| {
                let id = m.message_id.unwrap_or_default();
                let item = serde_json::from_str(m.body.as_deref().unwrap_or_default())
                    .map_err(|e| e.to_string());
                (id, item)
            })
            .collect();
        Self { messages }
    }
}

/// The answer that has Lambda retry exactly the `failed` message ids.
pub fn batch_response(failed: impl IntoIterator<Item = String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}

/// An SQS client for `config`.
pub fn sqs_client(config: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_decodes_each_message_on_its_own() {
        let event: SqsEvent = serde_json::from_value(serde_json::json!({
            "Records": [
                {"messageId": "a", "body": "{\"window_start_ms\": 60000, \"bucket\": 3}"},
                {"messageId": "b", "body": "not json"}
            ]
        }))
        .expect("event");
        let batch = SqsBatch::<sluice_core::evaluate::planner::WorkItem>::from_event(event);
        assert_eq!(batch.messages.len(), 2);
        assert_eq!(
            batch.messages[0].1.as_ref().map(|w| w.bucket),
            Ok(3),
            "{:?}",
            batch.messages[0]
        );
        assert!(batch.messages[1].1.is_err());
        let response = batch_response(["b".to_owned()]);
        let json = serde_json::to_value(&response).expect("json");
        assert_eq!(json["batchItemFailures"][0]["itemIdentifier"], "b");
    }
}

/// Wakes the evaluate planner through its wake queue (a standard queue: FIFO queues take no
/// per-message delay). Aggregate sends one message when a shard finishes a tumbling window,
/// delayed by the time a quiet shard's first report may take, so that when the planner runs
/// the window counts as closed (docs/ARCHITECTURE.md §12).
#[derive(Debug, Clone)]
pub struct PlannerWake {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    delay_seconds: i32,
}

impl PlannerWake {
    /// A wake-up sender; SQS caps the delay at 900 s.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String, delay_seconds: i64) -> Self {
        Self {
            client,
            queue_url,
            delay_seconds: i32::try_from(delay_seconds.clamp(0, 900)).unwrap_or(900),
        }
    }

    /// Asks for a planner run: `shard` is through `through_ms`.
    pub async fn wake(&self, shard: &str, through_ms: i64) -> Result<(), QueueError> {
        let body = serde_json::json!({ "shard": shard, "through_ms": through_ms }).to_string();
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(self.delay_seconds)
            .send()
            .await
            .map_err(|e| {
                QueueError::Send(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
            })?;
        Ok(())
    }
}
