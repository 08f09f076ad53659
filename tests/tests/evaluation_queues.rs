//! The evaluation queues of docs/ARCHITECTURE.md §12 on the emulator's SQS: aggregate's
//! delayed planner wake-up on a standard queue, and the planner's work items on a FIFO queue,
//! deduplicated per (window, bucket) when a planner is woken twice for one window.

use std::collections::BTreeSet;

use anyhow::ensure;
use aws_sdk_sqs::types::QueueAttributeName;
use sluice_aws::sqs_queue::{PlannerWake, SqsWorkQueue};
use sluice_core::evaluate::planner::WorkItem;
use sluice_core::evaluate::queue::WorkQueue;

type TestResult = anyhow::Result<()>;

fn unique(name: &str) -> String {
    format!(
        "sluice-{name}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    )
}

async fn receive_all(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    wait_seconds: i32,
) -> anyhow::Result<Vec<String>> {
    let mut bodies = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .send()
            .await?;
        let messages = out.messages();
        if messages.is_empty() {
            return Ok(bodies);
        }
        for m in messages {
            bodies.push(m.body().unwrap_or_default().to_owned());
            if let Some(handle) = m.receipt_handle() {
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
        }
    }
}

#[tokio::test]
async fn a_finished_window_wakes_the_planner_after_the_first_report_delay() -> TestResult {
    let sdk = sluice_e2e::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs
        .create_queue()
        .queue_name(unique("wake"))
        .send()
        .await?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let wake = PlannerWake::new(sqs.clone(), url.clone(), 2);
    wake.wake("shardId-000000000001", 1_714_564_860_000).await?;
    ensure!(
        receive_all(&sqs, &url, 0).await?.is_empty(),
        "the wake-up is delayed, so the planner does not run before the window counts as closed"
    );
    let got = receive_all(&sqs, &url, 5).await?;
    ensure!(got.len() == 1, "{got:?}");
    let body: serde_json::Value = serde_json::from_str(&got[0])?;
    ensure!(
        body == serde_json::json!({"shard": "shardId-000000000001", "through_ms": 1_714_564_860_000_i64}),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn a_planner_woken_twice_for_a_window_queues_each_bucket_once() -> TestResult {
    let sdk = sluice_e2e::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs
        .create_queue()
        .queue_name(format!("{}.fifo", unique("work")))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let queue = SqsWorkQueue::<WorkItem>::new(sqs.clone(), url.clone(), |item| {
        (item.dedup_id(), item.group_id())
    });
    let items: Vec<WorkItem> = (0..32)
        .map(|bucket| WorkItem {
            window_start_ms: 1_714_564_800_000,
            bucket,
        })
        .collect();
    queue.send_all(items.clone()).await?;
    // A second wake-up (another shard's, or the schedule's) plans the same window again.
    queue.send_all(items.clone()).await?;
    let got: Vec<WorkItem> = receive_all(&sqs, &url, 1)
        .await?
        .iter()
        .map(|b| serde_json::from_str(b))
        .collect::<Result<_, _>>()?;
    ensure!(got.len() == 32, "{} messages: {got:?}", got.len());
    let distinct: BTreeSet<WorkItem> = got.into_iter().collect();
    ensure!(distinct == items.into_iter().collect(), "every bucket once");
    Ok(())
}
