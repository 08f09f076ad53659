//! The mapping semantics against fake functions and a fake destination.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;

use super::*;
use crate::handler::FunctionError;

/// How the fake function fails on its chosen records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailMode {
    /// Reports them in `batchItemFailures`.
    ItemFailures,
    /// Throws when the batch contains one of them.
    Throw,
}

/// A function that fails the records in `bad` (for the first `failing_calls` invocations
/// that see them, or forever), and records every batch it is given.
#[derive(Debug)]
struct FakeFunction {
    bad: HashSet<String>,
    mode: FailMode,
    failing_calls: Option<usize>,
    failed: AtomicUsize,
    calls: Mutex<Vec<Vec<String>>>,
    processed: Mutex<Vec<String>>,
}

impl FakeFunction {
    fn new(bad: &[&str], mode: FailMode) -> Self {
        Self {
            bad: bad.iter().map(|s| (*s).to_owned()).collect(),
            mode,
            failing_calls: None,
            failed: AtomicUsize::new(0),
            calls: Mutex::default(),
            processed: Mutex::default(),
        }
    }

    fn transient(mut self, calls: usize) -> Self {
        self.failing_calls = Some(calls);
        self
    }

    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn processed(&self) -> Vec<String> {
        self.processed.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl BatchHandler for FakeFunction {
    async fn invoke(&self, inv: Invocation<'_>) -> Result<InvocationResult, FunctionError> {
        let seqs: Vec<String> = inv
            .records
            .iter()
            .map(|r| r.sequence_number.clone())
            .collect();
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(seqs.clone());
        }
        let failing = self
            .failing_calls
            .is_none_or(|n| self.failed.load(Ordering::SeqCst) < n);
        let bad: Vec<&String> = seqs
            .iter()
            .filter(|s| failing && self.bad.contains(*s))
            .collect();
        let mut state = inv.window.map(|w| w.state.clone()).unwrap_or_default();
        if bad.is_empty() {
            if let Ok(mut p) = self.processed.lock() {
                p.extend(seqs.iter().cloned());
            }
            let seen = state.entry("seen".to_owned()).or_default();
            for s in &seqs {
                seen.push_str(s);
                seen.push(',');
            }
            return Ok(InvocationResult {
                state,
                ..InvocationResult::default()
            });
        }
        self.failed.fetch_add(1, Ordering::SeqCst);
        match self.mode {
            FailMode::Throw => Err(FunctionError(format!("cannot process {bad:?}"))),
            FailMode::ItemFailures => {
                // The records before the first bad one are processed.
                let first_bad = seqs.iter().position(|s| self.bad.contains(s)).unwrap_or(0);
                if let Ok(mut p) = self.processed.lock() {
                    p.extend(seqs[..first_bad].iter().cloned());
                }
                Ok(InvocationResult {
                    batch_item_failures: bad.iter().rev().map(|s| Some((*s).clone())).collect(),
                    state,
                    ..InvocationResult::default()
                })
            }
        }
    }
}

#[derive(Debug, Default)]
struct FakeQueue {
    messages: Mutex<Vec<FailureMessage>>,
}

impl FakeQueue {
    fn messages(&self) -> Vec<FailureMessage> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl FailureDestination for FakeQueue {
    async fn send(&self, message: &FailureMessage) -> Result<(), LocalError> {
        if let Ok(mut m) = self.messages.lock() {
            m.push(message.clone());
        }
        Ok(())
    }
}

#[derive(Debug)]
struct FixedClock(i64);

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0
    }
}

const NOW: i64 = 1_736_937_000_000;

fn records(n: usize) -> Vec<SourceRecord> {
    (0..n)
        .map(|i| SourceRecord {
            sequence_number: format!("{}", 100 + i),
            partition_key: "acme/api".into(),
            data: format!("record {i}").into_bytes(),
            arrival_ms: NOW - 1_000 + i as i64,
        })
        .collect()
}

fn seqs(range: Range<usize>) -> Vec<String> {
    range.map(|i| format!("{}", 100 + i)).collect()
}

fn mapping(configure: impl FnOnce(&mut MappingConfig)) -> MappingConfig {
    let mut m = MappingConfig::ingest();
    m.retry_backoff = Duration::ZERO;
    m.max_retry_backoff = Duration::ZERO;
    configure(&mut m);
    m
}

fn source() -> EventSource {
    EventSource::new(
        "arn:aws:kinesis:us-east-1:000000000000:stream/logs",
        "us-east-1",
        "sluice-ingest",
    )
}

async fn deliver(
    mapping: &MappingConfig,
    function: &FakeFunction,
    queue: &FakeQueue,
    batch: &[SourceRecord],
    now: i64,
) -> BatchOutcome {
    let source = source();
    let clock = FixedClock(now);
    Delivery {
        mapping,
        handler: function,
        destination: queue,
        source: &source,
        clock: &clock,
    }
    .deliver("shardId-000000000000", batch, None, &|| false)
    .await
    .expect("the fake destination never fails")
}

#[tokio::test]
async fn a_good_batch_is_one_invocation_and_wholly_done() {
    let function = FakeFunction::new(&[], FailMode::Throw);
    let queue = FakeQueue::default();
    let batch = records(5);
    let out = deliver(&mapping(|_| {}), &function, &queue, &batch, NOW).await;
    assert_eq!(function.calls(), vec![seqs(0..5)]);
    assert!(out.complete(5));
    assert_eq!(out.done_through.as_deref(), Some("104"));
    assert_eq!((out.invocations, out.function_errors), (1, 0));
    assert!(queue.messages().is_empty());
}

#[tokio::test]
async fn reported_item_failures_resume_at_the_lowest_failed_sequence_number() {
    // Records 103 and 105 fail once (reported in reverse order), then succeed.
    let function = FakeFunction::new(&["105", "103"], FailMode::ItemFailures).transient(1);
    let queue = FakeQueue::default();
    let batch = records(8);
    let out = deliver(&mapping(|_| {}), &function, &queue, &batch, NOW).await;
    assert_eq!(function.calls(), vec![seqs(0..8), seqs(3..8)]);
    assert_eq!(
        function.processed(),
        seqs(0..8),
        "each record processed once, in order"
    );
    assert!(out.complete(8));
    assert_eq!((out.invocations, out.function_errors), (2, 1));
    assert!(queue.messages().is_empty());
}

#[tokio::test]
async fn a_record_failing_past_the_retry_limit_goes_to_the_destination_from_there_on() {
    let function = FakeFunction::new(&["104"], FailMode::ItemFailures);
    let queue = FakeQueue::default();
    let batch = records(6);
    let m = mapping(|m| m.max_retry_attempts = Some(2));
    let out = deliver(&m, &function, &queue, &batch, NOW).await;
    assert_eq!(
        function.calls(),
        vec![seqs(0..6), seqs(4..6), seqs(4..6)],
        "the first attempt and two retries"
    );
    let messages = queue.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let info = &messages[0].kinesis_batch_info;
    assert_eq!(
        (
            info.start_sequence_number.as_str(),
            info.end_sequence_number.as_str()
        ),
        ("104", "105")
    );
    assert_eq!(info.batch_size, 2);
    assert_eq!(
        messages[0].request_context.condition,
        FailureCondition::RetryAttemptsExhausted
    );
    assert_eq!(messages[0].request_context.approximate_invoke_count, 3);
    assert!(
        out.complete(6),
        "the batch is skipped after the destination"
    );
    assert_eq!(out.records_to_destination, 2);
}

#[tokio::test]
async fn bisect_isolates_a_poison_record_and_delivers_every_other_one() {
    let function = FakeFunction::new(&["105"], FailMode::Throw);
    let queue = FakeQueue::default();
    let batch = records(8);
    let m = mapping(|m| {
        m.max_retry_attempts = Some(0);
        m.report_batch_item_failures = false;
    });
    let out = deliver(&m, &function, &queue, &batch, NOW).await;
    let messages = queue.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let info = &messages[0].kinesis_batch_info;
    assert_eq!(
        (
            info.start_sequence_number.as_str(),
            info.end_sequence_number.as_str()
        ),
        ("105", "105")
    );
    let mut expected = seqs(0..8);
    expected.retain(|s| s != "105");
    assert_eq!(function.processed(), expected, "everything else, in order");
    // 8 fails → [0..4) ok, [4..8) fails → [4..6) fails → 104 ok, 105 fails (no retries left);
    // then [6..8) ok.
    assert_eq!(out.invocations, 7, "{:?}", function.calls());
    assert!(out.complete(8));
}

#[tokio::test]
async fn without_bisect_a_failing_batch_is_retried_whole_then_sent_to_the_destination() {
    let function = FakeFunction::new(&["102"], FailMode::Throw);
    let queue = FakeQueue::default();
    let batch = records(4);
    let m = mapping(|m| {
        m.bisect_on_error = false;
        m.max_retry_attempts = Some(2);
    });
    let out = deliver(&m, &function, &queue, &batch, NOW).await;
    assert_eq!(function.calls(), vec![seqs(0..4); 3]);
    let messages = queue.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].kinesis_batch_info.batch_size, 4);
    assert_eq!(
        messages[0].response_context.function_error.as_deref(),
        Some("Unhandled")
    );
    assert!(function.processed().is_empty());
    assert!(out.complete(4));
}

#[tokio::test]
async fn transient_errors_are_retried_until_they_pass_with_unlimited_retries() {
    let function = FakeFunction::new(&["100"], FailMode::Throw).transient(5);
    let queue = FakeQueue::default();
    let batch = records(1);
    let m = mapping(|m| m.max_retry_attempts = None);
    let out = deliver(&m, &function, &queue, &batch, NOW).await;
    assert_eq!(out.invocations, 6);
    assert_eq!(function.processed(), seqs(0..1));
    assert!(queue.messages().is_empty());
}

#[tokio::test]
async fn records_older_than_the_maximum_age_skip_the_function() {
    let function = FakeFunction::new(&[], FailMode::Throw);
    let queue = FakeQueue::default();
    let mut batch = records(4);
    batch[0].arrival_ms = NOW - 120_000;
    batch[1].arrival_ms = NOW - 61_000;
    let m = mapping(|m| m.max_record_age = Some(Duration::from_secs(60)));
    let out = deliver(&m, &function, &queue, &batch, NOW).await;
    let messages = queue.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].request_context.condition,
        FailureCondition::RecordAgeExceeded
    );
    assert_eq!(messages[0].kinesis_batch_info.end_sequence_number, "101");
    assert_eq!(messages[0].response_context.function_error, None);
    assert_eq!(function.calls(), vec![seqs(2..4)]);
    assert!(out.complete(4));
}

#[derive(Debug)]
struct Answers(Vec<Option<String>>);

#[async_trait]
impl BatchHandler for Answers {
    async fn invoke(&self, _inv: Invocation<'_>) -> Result<InvocationResult, FunctionError> {
        Ok(InvocationResult {
            batch_item_failures: self.0.clone(),
            ..InvocationResult::default()
        })
    }
}

async fn deliver_answering(
    m: &MappingConfig,
    answer: Vec<Option<String>>,
) -> (BatchOutcome, Vec<FailureMessage>) {
    let queue = FakeQueue::default();
    let source = source();
    let handler = Answers(answer);
    let out = Delivery {
        mapping: m,
        handler: &handler,
        destination: &queue,
        source: &source,
        clock: &FixedClock(NOW),
    }
    .deliver("shardId-000000000000", &records(4), None, &|| false)
    .await
    .expect("delivered");
    (out, queue.messages())
}

#[tokio::test]
async fn an_identifier_that_is_not_in_the_batch_fails_the_whole_batch() {
    let m = mapping(|m| {
        m.max_retry_attempts = Some(0);
        m.bisect_on_error = false;
    });
    for answer in [
        vec![Some("999".to_owned())],
        vec![None],
        vec![Some(String::new())],
    ] {
        let (out, messages) = deliver_answering(&m, answer.clone()).await;
        assert_eq!(messages.len(), 1, "{answer:?}");
        assert_eq!(
            messages[0].kinesis_batch_info.start_sequence_number, "100",
            "{answer:?}"
        );
        assert_eq!(out.function_errors, 1);
    }
}

#[tokio::test]
async fn without_report_batch_item_failures_the_answer_is_ignored() {
    let m = mapping(|m| m.report_batch_item_failures = false);
    let (out, messages) = deliver_answering(&m, vec![Some("101".to_owned())]).await;
    assert!(messages.is_empty());
    assert_eq!((out.invocations, out.function_errors), (1, 0));
    assert!(out.complete(4));
}

#[tokio::test]
async fn a_shutdown_between_retries_leaves_the_failed_records_undone() {
    let function = FakeFunction::new(&["102"], FailMode::ItemFailures);
    let queue = FakeQueue::default();
    let batch = records(5);
    let m = mapping(|m| m.max_retry_attempts = None);
    let stop = AtomicBool::new(false);
    let source = source();
    let stopping = || {
        // The first failure has been seen by the time delivery asks.
        stop.store(true, Ordering::SeqCst);
        stop.load(Ordering::SeqCst)
    };
    let out = Delivery {
        mapping: &m,
        handler: &function,
        destination: &queue,
        source: &source,
        clock: &FixedClock(NOW),
    }
    .deliver("shardId-000000000000", &batch, None, &stopping)
    .await
    .expect("delivered");
    assert_eq!(out.done, 2);
    assert_eq!(
        out.done_through.as_deref(),
        Some("101"),
        "checkpoint before the failed record"
    );
    assert!(!out.complete(5));
    assert!(queue.messages().is_empty());
}

#[tokio::test]
async fn window_state_is_carried_across_invocations_and_kept_through_retries() {
    let function = FakeFunction::new(&["102"], FailMode::Throw).transient(1);
    let queue = FakeQueue::default();
    let batch = records(4);
    let m = mapping(|m| {
        m.tumbling_window = Some(Duration::from_secs(60));
        m.bisect_on_error = false;
    });
    let source = source();
    let window = WindowContext {
        start_ms: NOW - 60_000,
        end_ms: NOW,
        state: HashMap::from([("seen".to_owned(), "99,".to_owned())]),
    };
    let out = Delivery {
        mapping: &m,
        handler: &function,
        destination: &queue,
        source: &source,
        clock: &FixedClock(NOW),
    }
    .deliver("shardId-000000000000", &batch, Some(window), &|| false)
    .await
    .expect("delivered");
    assert_eq!(
        out.state["seen"], "99,100,101,102,103,",
        "the failed attempt left no trace"
    );
}

#[tokio::test]
async fn each_rehearsed_redelivery_shape_invokes_as_lambda_would_after_a_time_out() {
    use crate::mapping::Redelivery;
    for (shape, want) in [
        (Redelivery::Identical, vec![seqs(0..6), seqs(0..6)]),
        (Redelivery::Longer, vec![seqs(0..3), seqs(0..6)]),
        (Redelivery::Bisect, vec![seqs(0..6), seqs(0..3), seqs(3..6)]),
    ] {
        let function = FakeFunction::new(&[], FailMode::Throw);
        let queue = FakeQueue::default();
        let batch = records(6);
        let out = deliver(
            &mapping(|m| m.redelivery = shape),
            &function,
            &queue,
            &batch,
            NOW,
        )
        .await;
        assert_eq!(function.calls(), want, "{shape:?}");
        assert!(out.complete(6), "{shape:?}");
        assert_eq!(out.done_through.as_deref(), Some("105"), "{shape:?}");
        assert_eq!(out.function_errors, 1, "{shape:?}: the time-out counts");
        assert!(queue.messages().is_empty());
    }
}
