//! The agent as a whole, against an in-memory [`RecordSink`] that fails chosen entries or
//! calls. Time-dependent behaviour (linger, backoff, backpressure) runs on tokio's paused
//! clock, so no test depends on how fast this machine is.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::Semaphore;

use super::batcher::{Entry, MAX_BATCH_BYTES, MAX_RECORD_BYTES};
use super::*;

type Decide = Box<dyn Fn(&Entry, usize) -> EntryResult + Send + Sync>;
/// `(partition key, data)` of one entry.
type Put = (String, Vec<u8>);

/// A fake Kinesis: records every call, answers each entry with `decide(entry, times this
/// entry's data was seen before)`, fails whole calls from a queue of errors, and can be held
/// shut (every call waits for the gate).
struct FakeSink {
    calls: Mutex<Vec<Vec<Put>>>,
    written: Mutex<Vec<Put>>,
    seen: Mutex<BTreeMap<Vec<u8>, usize>>,
    call_errors: Mutex<VecDeque<SinkError>>,
    decide: Decide,
    gate: Option<Arc<Semaphore>>,
}

impl std::fmt::Debug for FakeSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeSink")
    }
}

impl FakeSink {
    fn new(decide: impl Fn(&Entry, usize) -> EntryResult + Send + Sync + 'static) -> Self {
        Self {
            calls: Mutex::default(),
            written: Mutex::default(),
            seen: Mutex::default(),
            call_errors: Mutex::default(),
            decide: Box::new(decide),
            gate: None,
        }
    }

    fn accepting() -> Self {
        Self::new(|_, _| EntryResult::Ok)
    }

    fn calls(&self) -> Vec<Vec<Put>> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn written(&self) -> Vec<Put> {
        self.written.lock().map(|w| w.clone()).unwrap_or_default()
    }

    fn written_data(&self) -> Vec<String> {
        self.written()
            .into_iter()
            .map(|(_, d)| String::from_utf8_lossy(&d).into_owned())
            .collect()
    }
}

fn throttled() -> EntryResult {
    EntryResult::Failed {
        code: "ProvisionedThroughputExceededException".into(),
        message: "Rate exceeded for shard".into(),
    }
}

#[async_trait::async_trait]
impl RecordSink for FakeSink {
    async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryResult>, SinkError> {
        if let Some(gate) = &self.gate {
            let _pass = gate.acquire().await;
        }
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(
                entries
                    .iter()
                    .map(|e| (e.partition_key.clone(), e.data.to_vec()))
                    .collect(),
            );
        }
        if let Some(error) = self.call_errors.lock().ok().and_then(|mut q| q.pop_front()) {
            return Err(error);
        }
        let mut results = Vec::new();
        for entry in entries {
            let before = self
                .seen
                .lock()
                .map(|mut seen| {
                    let n = seen.entry(entry.data.to_vec()).or_insert(0);
                    *n += 1;
                    *n - 1
                })
                .unwrap_or_default();
            let result = (self.decide)(entry, before);
            if result == EntryResult::Ok
                && let Ok(mut written) = self.written.lock()
            {
                written.push((entry.partition_key.clone(), entry.data.to_vec()));
            }
            results.push(result);
        }
        Ok(results)
    }
}

fn reader(text: String) -> Input {
    Input::Reader {
        name: "test".into(),
        reader: Box::new(std::io::Cursor::new(text.into_bytes())),
    }
}

fn lines(n: usize, tenant: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"tenant":"{tenant}","service":"api","i":{i}}}"#))
        .collect()
}

fn config(inputs: Vec<Input>) -> AgentConfig {
    AgentConfig {
        inputs,
        follow: false,
        retry: RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(50),
            cap: Duration::from_millis(500),
        },
        ..AgentConfig::default()
    }
}

fn run_with(
    config: AgentConfig,
    sink: &Arc<FakeSink>,
) -> impl std::future::Future<Output = Report> + Send + 'static {
    let sink = Arc::clone(sink) as Arc<dyn RecordSink>;
    async move {
        let (_stop, shutdown) = watch::channel(false);
        run(config, sink, Arc::new(Counters::default()), shutdown).await
    }
}

fn assert_accounted(report: &Report) {
    let c = &report.counters;
    assert_eq!(
        c.records_read,
        c.records_sent + c.failed + c.oversize,
        "every line read is sent, failed or oversize: {c:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn batches_hold_at_most_500_records() {
    let sink = Arc::new(FakeSink::accepting());
    let input = lines(1_234, "acme");
    let report = run_with(config(vec![reader(input.join("\n"))]), &sink).await;
    let sizes: Vec<usize> = sink.calls().iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![500, 500, 234]);
    assert_eq!(sink.written_data(), input);
    assert_eq!(report.counters.put_records_calls, 3);
    assert!(report.is_clean(), "{report:?}");
    assert_accounted(&report);
}

#[tokio::test(start_paused = true)]
async fn batches_hold_at_most_5_mib_with_partition_keys() {
    let sink = Arc::new(FakeSink::accepting());
    // 40 records of ~400 KiB: 16 MiB in all, so at least four calls.
    let big: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#"{{"tenant":"acme","i":{i},"pad":"{}"}}"#,
                "x".repeat(400 * 1024)
            )
        })
        .collect();
    let report = run_with(config(vec![reader(big.join("\n"))]), &sink).await;
    let calls = sink.calls();
    for call in &calls {
        let bytes: usize = call.iter().map(|(k, d)| k.len() + d.len()).sum();
        assert!(bytes <= MAX_BATCH_BYTES, "{bytes} bytes in one call");
    }
    // Full calls, not one record each.
    assert_eq!(
        calls.len(),
        4,
        "{:?}",
        calls.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(sink.written_data(), big);
    assert_accounted(&report);
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_is_sent_once_the_linger_time_has_passed() -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let sink = Arc::new(FakeSink::accepting());
    let (mut writer, read_end) = tokio::io::duplex(1 << 16);
    let mut cfg = config(vec![Input::Reader {
        name: "pipe".into(),
        reader: Box::new(read_end),
    }]);
    cfg.limits.linger = Duration::from_millis(200);
    let agent = tokio::spawn(run_with(cfg, &sink));

    writer
        .write_all(b"{\"tenant\":\"a\"}\n{\"tenant\":\"b\"}\n{\"tenant\":\"c\"}\n")
        .await?;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(sink.calls().is_empty(), "sent before the linger time");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        sink.calls().iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3]
    );

    // The input is still open: the agent keeps waiting for more, then ends with it.
    writer.write_all(b"{\"tenant\":\"d\"}\n").await?;
    drop(writer);
    let report = agent.await?;
    assert_eq!(report.counters.records_sent, 4);
    assert_eq!(sink.calls().len(), 2);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn retries_only_the_entries_that_failed() {
    // Every third record is throttled the first time Kinesis sees it.
    let sink = Arc::new(FakeSink::new(|entry, before| {
        let n: usize = String::from_utf8_lossy(&entry.data)
            .rsplit(':')
            .next()
            .and_then(|s| s.trim_end_matches('}').parse().ok())
            .unwrap_or(0);
        if n.is_multiple_of(3) && before == 0 {
            throttled()
        } else {
            EntryResult::Ok
        }
    }));
    let input = lines(30, "acme");
    let report = run_with(config(vec![reader(input.join("\n"))]), &sink).await;
    let calls = sink.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].len(), 30);
    // The second call carries exactly the ten throttled records, in order.
    let retried: Vec<String> = calls[1]
        .iter()
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .collect();
    let expected: Vec<String> = input.iter().step_by(3).cloned().collect();
    assert_eq!(retried, expected);
    // Each record written exactly once.
    let mut written = sink.written_data();
    written.sort();
    let mut want = input.clone();
    want.sort();
    assert_eq!(written, want);
    let c = report.counters;
    assert_eq!((c.retried_entries, c.entry_errors, c.failed), (10, 10, 0));
    assert!(report.is_clean());
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_the_last_attempt_and_counts_the_record_as_failed() {
    let sink = Arc::new(FakeSink::new(|entry, _| {
        if entry.data.windows(6).any(|w| w == b"doomed") {
            throttled()
        } else {
            EntryResult::Ok
        }
    }));
    let text = "{\"tenant\":\"a\",\"m\":\"ok 1\"}\n{\"tenant\":\"a\",\"m\":\"doomed\"}\n{\"tenant\":\"a\",\"m\":\"ok 2\"}\n";
    let report = run_with(config(vec![reader(text.into())]), &sink).await;
    // Attempt 1 with all three, then attempts 2 to 4 with the doomed one alone.
    let sizes: Vec<usize> = sink.calls().iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![3, 1, 1, 1]);
    let c = report.counters;
    assert_eq!((c.records_sent, c.failed, c.retried_entries), (2, 1, 3));
    assert!(!report.is_clean());
    assert_eq!(report.undelivered(), 1);
    assert_accounted(&report);
}

#[tokio::test(start_paused = true)]
async fn whole_call_failures_are_retried_with_every_entry_and_written_once() {
    let mut fake = FakeSink::accepting();
    fake.call_errors = Mutex::new(VecDeque::from([
        SinkError::retryable("ProvisionedThroughputExceededException: Rate exceeded"),
        SinkError::retryable("dispatch failure: connection closed"),
    ]));
    let sink = Arc::new(fake);
    let input = lines(7, "acme");
    let report = run_with(config(vec![reader(input.join("\n"))]), &sink).await;
    assert_eq!(
        sink.calls().iter().map(Vec::len).collect::<Vec<_>>(),
        vec![7, 7, 7]
    );
    assert_eq!(sink.written_data(), input);
    let c = report.counters;
    assert_eq!((c.call_errors, c.retried_entries, c.failed), (2, 14, 0));
}

#[tokio::test(start_paused = true)]
async fn a_fatal_error_stops_the_agent_and_counts_what_was_not_sent_as_failed() {
    let mut fake = FakeSink::accepting();
    fake.call_errors = Mutex::new(VecDeque::from([SinkError::fatal(
        "ResourceNotFoundException: Stream nope not found",
    )]));
    let sink = Arc::new(fake);
    let report = run_with(config(vec![reader(lines(1_200, "a").join("\n"))]), &sink).await;
    assert_eq!(
        report.fatal_error.as_deref(),
        Some("ResourceNotFoundException: Stream nope not found")
    );
    // One call only: nothing is sent after a fatal error.
    assert_eq!(sink.calls().len(), 1);
    assert_eq!(report.counters.records_sent, 0);
    assert!(report.counters.failed >= 500);
    assert_accounted(&report);
}

#[tokio::test(start_paused = true)]
async fn oversize_records_are_counted_and_not_sent() {
    let sink = Arc::new(FakeSink::accepting());
    let key = "acme/api";
    // Exactly at the limit with its key: sent. One byte more: oversize. Far more: oversize,
    // without being buffered whole.
    let fits = format!(
        r#"{{"tenant":"acme","service":"api","p":"{}"}}"#,
        "x".repeat(MAX_RECORD_BYTES - key.len() - 40)
    );
    let pad = MAX_RECORD_BYTES - key.len() - fits.len();
    let fits = fits.replace("\"p\":\"", &format!("\"p\":\"{}", "x".repeat(pad)));
    assert_eq!(fits.len() + key.len(), MAX_RECORD_BYTES);
    let over_by_one = fits.replace("\"p\":\"", "\"p\":\"x");
    let huge = "y".repeat(3 * MAX_RECORD_BYTES);
    let text = [
        fits.as_str(),
        "{\"tenant\":\"acme\",\"service\":\"api\"}",
        &over_by_one,
        &huge,
    ]
    .join("\n");
    let report = run_with(config(vec![reader(text)]), &sink).await;
    let c = report.counters;
    assert_eq!((c.records_read, c.records_sent, c.oversize), (4, 2, 2));
    assert_eq!(sink.written().len(), 2);
    assert!(!report.is_clean());
    assert_accounted(&report);
}

#[tokio::test(start_paused = true)]
async fn memory_stays_bounded_while_the_sink_is_stuck() -> anyhow::Result<()> {
    let gate = Arc::new(Semaphore::new(0));
    let mut fake = FakeSink::accepting();
    fake.gate = Some(Arc::clone(&gate));
    let sink = Arc::new(fake);
    let line = format!(r#"{{"tenant":"acme","pad":"{}"}}"#, "z".repeat(1_000));
    let total = 50_000;
    let text = vec![line.as_str(); total].join("\n");
    let mut cfg = config(vec![reader(text)]);
    cfg.buffer_bytes = 2 * MAX_RECORD_BYTES;
    let counters = Arc::new(Counters::default());
    let (_stop, shutdown) = watch::channel(false);
    let agent = tokio::spawn(run(
        cfg,
        Arc::clone(&sink) as Arc<dyn RecordSink>,
        Arc::clone(&counters),
        shutdown,
    ));
    // On the paused clock this returns only once every task is blocked.
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    let read = counters.snapshot().records_read;
    // 2 MiB of budget holds about 2,000 such lines; one 64 KiB read adds a few dozen.
    let bound = (2 * MAX_RECORD_BYTES) / line.len() + 64 * 1024 / line.len() + 2;
    assert!(read <= bound as u64, "read {read} lines, bound {bound}");
    assert!(read > 0);
    assert_eq!(counters.snapshot().records_sent, 0);

    // Let Kinesis through: everything arrives.
    gate.add_permits(1_000_000);
    let report = agent.await?;
    assert_eq!(report.counters.records_sent, total as u64);
    assert!(report.is_clean());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn kpl_aggregates_unpack_to_exactly_the_lines_read_grouped_by_key() -> anyhow::Result<()> {
    use sluice_core::decode::kpl;
    let sink = Arc::new(FakeSink::accepting());
    let mut input = Vec::new();
    for i in 0..3_000 {
        let tenant = ["acme", "globex", "initech"][i % 3];
        input.push(format!(
            r#"{{"tenant":"{tenant}","service":"api","i":{i}}}"#
        ));
    }
    let mut cfg = config(vec![reader(input.join("\n"))]);
    cfg.limits.kpl_max_bytes = Some(8_192);
    let report = run_with(cfg, &sink).await;
    let mut unpacked: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, data) in sink.written() {
        assert!(data.len() <= 8_192);
        let subs = kpl::decode(&data).map_err(anyhow::Error::msg)?;
        for sub in subs {
            assert_eq!(sub.partition_key, key);
            unpacked
                .entry(key.clone())
                .or_default()
                .push(String::from_utf8(sub.data.to_vec())?);
        }
    }
    for tenant in ["acme", "globex", "initech"] {
        let want: Vec<String> = input
            .iter()
            .filter(|l| l.contains(&format!("\"{tenant}\"")))
            .cloned()
            .collect();
        assert_eq!(
            unpacked.get(&format!("{tenant}/api")),
            Some(&want),
            "{tenant}"
        );
    }
    let c = report.counters;
    assert_eq!(c.records_sent, 3_000);
    assert!(
        c.kinesis_records < 100,
        "{} Kinesis records",
        c.kinesis_records
    );
    assert_eq!(c.kinesis_records, sink.written().len() as u64);
    Ok(())
}

#[tokio::test]
async fn shutdown_flushes_what_was_read_and_stops_following() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("app.log");
    std::fs::write(&path, lines(5, "acme").join("\n") + "\n")?;
    let sink = Arc::new(FakeSink::accepting());
    let mut cfg = config(vec![Input::File(path)]);
    cfg.follow = true;
    cfg.from_start = true;
    cfg.poll = Duration::from_millis(10);
    // Far longer than the test: only the shutdown can flush the batch.
    cfg.limits.linger = Duration::from_secs(3_600);
    let counters = Arc::new(Counters::default());
    let (stop, shutdown) = watch::channel(false);
    let agent = tokio::spawn(run(
        cfg,
        Arc::clone(&sink) as Arc<dyn RecordSink>,
        Arc::clone(&counters),
        shutdown,
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while counters.snapshot().records_read < 5 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the lines were never read"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sink.calls().is_empty());
    stop.send(true)?;
    let report = tokio::time::timeout(Duration::from_secs(20), agent).await??;
    assert_eq!(sink.written_data(), lines(5, "acme"));
    assert!(report.is_clean(), "{report:?}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn partition_keys_come_from_the_record_else_from_the_flags() {
    let sink = Arc::new(FakeSink::accepting());
    let mut cfg = config(vec![reader(
        "{\"tenant\":\"acme\",\"service.name\":\"checkout\"}\nplain text line\n{\"msg\":\"no tenant\"}".into(),
    )]);
    cfg.keys = KeyConfig {
        tenant: Some("fallback".into()),
        service: Some("agent".into()),
        hot_key_suffixes: 0,
    };
    run_with(cfg, &sink).await;
    let keys: Vec<String> = sink.written().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        vec!["acme/checkout", "fallback/agent", "fallback/agent"]
    );
}
