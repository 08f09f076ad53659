//! The worker and delivery roles of the evaluate function on SQS (docs/ARCHITECTURE.md §12):
//! each message of the batch on its own, and the answer names only the messages to retry
//! (`ReportBatchItemFailures`), so one failing item never has the others redone.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use sluice_aws::sqs_queue::{SqsBatch, batch_response};
use sluice_core::evaluate::delivery::{Deliverer, DeliveryItem, DeliveryOutcome};
use sluice_core::evaluate::planner::WorkItem;
use sluice_core::evaluate::queue::WorkQueue;
use sluice_core::evaluate::worker::Worker;

/// The worker: one work item per message. A message is retried while a tenant of its item
/// failed (the tenants done skip the window then: their state says it is evaluated).
pub async fn work_batch(
    worker: &Worker<'_>,
    deliveries: &dyn WorkQueue<DeliveryItem>,
    event: SqsEvent,
) -> SqsBatchResponse {
    let batch = SqsBatch::<WorkItem>::from_event(event);
    let mut failed = Vec::new();
    for (id, item) in batch.messages {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                // Retrying cannot make it decode: dropped, with a trace.
                tracing::error!(message_id = %id, error = %e, "undecodable work item dropped");
                continue;
            }
        };
        match worker.evaluate_item(item, deliveries).await {
            Ok(outcome) => {
                let failures: Vec<&str> = outcome.failed().map(|t| t.tenant.as_str()).collect();
                tracing::info!(
                    window_start = item.window_start_ms,
                    bucket = item.bucket,
                    tenants = outcome.tenants.len(),
                    partials = outcome.partials_read,
                    failed = ?failures,
                    "work item evaluated"
                );
                if !failures.is_empty() {
                    failed.push(id);
                }
            }
            Err(e) => {
                tracing::warn!(?item, error = %e, "work item failed; SQS retries it");
                failed.push(id);
            }
        }
    }
    batch_response(failed)
}

/// The delivery: one notification per message, all of the batch at once. A message is retried
/// while its delivery fails for a reason worth retrying (SQS's visibility timeout is the
/// backoff; the record under `alerts/undelivered/` keeps the last error for a redrive).
pub async fn delivery_batch(deliverer: &Deliverer<'_>, event: SqsEvent) -> SqsBatchResponse {
    let batch = SqsBatch::<DeliveryItem>::from_event(event);
    let each = batch.messages.into_iter().map(|(id, item)| async move {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "undecodable delivery dropped");
                return None;
            }
        };
        match deliverer.deliver(&item, None).await {
            Ok(outcome) if outcome.should_retry() => Some(id),
            Ok(DeliveryOutcome::Delivered { url }) => {
                tracing::info!(tenant = %item.tenant, %url, "notification delivered");
                None
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(tenant = %item.tenant, key = %item.key, error = %e, "delivery failed; SQS retries it");
                Some(id)
            }
        }
    });
    let failed = futures::future::join_all(each).await;
    batch_response(failed.into_iter().flatten())
}
