//! The runner over an in-memory stream: every shard, reshards, restarts, tumbling windows.

use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::handler::{FunctionError, Invocation, InvocationResult};
use crate::stream_source::{IteratorPosition, RecordsPage, SourceError, SourceRecord};

#[derive(Debug, Default)]
struct FakeShard {
    info: Option<ShardInfo>,
    records: Vec<SourceRecord>,
    closed: bool,
}

/// A stream in memory. Iterators are `shard@position`.
#[derive(Debug, Default)]
struct FakeStream {
    shards: Mutex<Vec<FakeShard>>,
    /// Report the lag as LocalStack does: from the page's last record to the newest record
    /// of the shard, so a page ending on a record that ties with the newest says 0.
    lag_by_arrival: bool,
}

impl FakeStream {
    fn add_shard(&self, info: ShardInfo, records: Vec<SourceRecord>, closed: bool) {
        if let Ok(mut shards) = self.shards.lock() {
            shards.push(FakeShard {
                info: Some(info),
                records,
                closed,
            });
        }
    }

    fn append(&self, shard: &str, records: Vec<SourceRecord>) {
        if let Ok(mut shards) = self.shards.lock()
            && let Some(s) = shards
                .iter_mut()
                .find(|s| s.info.as_ref().is_some_and(|i| i.shard_id == shard))
        {
            s.records.extend(records);
        }
    }
}

#[async_trait]
impl StreamSource for FakeStream {
    fn stream_arn(&self) -> &str {
        "arn:aws:kinesis:us-east-1:000000000000:stream/fake"
    }

    fn region(&self) -> &str {
        "us-east-1"
    }

    async fn list_shards(&self) -> Result<Vec<ShardInfo>, SourceError> {
        Ok(self
            .shards
            .lock()
            .map(|s| s.iter().filter_map(|s| s.info.clone()).collect())
            .unwrap_or_default())
    }

    async fn shard_iterator(
        &self,
        shard_id: &str,
        position: &IteratorPosition,
    ) -> Result<String, SourceError> {
        let shards = self
            .shards
            .lock()
            .map_err(|e| SourceError::Other(e.to_string()))?;
        let shard = shards
            .iter()
            .find(|s| s.info.as_ref().is_some_and(|i| i.shard_id == shard_id))
            .ok_or_else(|| SourceError::NotFound(shard_id.to_owned()))?;
        let pos = match position {
            IteratorPosition::TrimHorizon => 0,
            IteratorPosition::Latest => shard.records.len(),
            IteratorPosition::AfterSequenceNumber(seq) => {
                shard
                    .records
                    .iter()
                    .position(|r| &r.sequence_number == seq)
                    .ok_or_else(|| SourceError::Other(format!("no record {seq}")))?
                    + 1
            }
        };
        Ok(format!("{shard_id}@{pos}"))
    }

    async fn get_records(&self, iterator: &str, limit: usize) -> Result<RecordsPage, SourceError> {
        let (shard_id, pos) = iterator
            .split_once('@')
            .ok_or_else(|| SourceError::Other(iterator.to_owned()))?;
        let pos: usize = pos
            .parse()
            .map_err(|_| SourceError::Other(iterator.to_owned()))?;
        let shards = self
            .shards
            .lock()
            .map_err(|e| SourceError::Other(e.to_string()))?;
        let shard = shards
            .iter()
            .find(|s| s.info.as_ref().is_some_and(|i| i.shard_id == shard_id))
            .ok_or_else(|| SourceError::NotFound(shard_id.to_owned()))?;
        let end = (pos + limit).min(shard.records.len());
        let records = shard.records[pos.min(end)..end].to_vec();
        let at_end = end == shard.records.len();
        Ok(RecordsPage {
            next_iterator: (!(shard.closed && at_end)).then(|| format!("{shard_id}@{end}")),
            millis_behind_latest: Some(match (self.lag_by_arrival, records.last()) {
                (true, Some(last)) => {
                    shard.records.last().map_or(0, |newest| newest.arrival_ms) - last.arrival_ms
                }
                _ if at_end => 0,
                _ => 1_000,
            }),
            records,
        })
    }
}

/// What a fake function saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    shard: String,
    seqs: Vec<String>,
    window: Option<(i64, bool, String)>,
}

#[derive(Debug, Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
}

impl Recorder {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Every invocation with a tumbling window: (window start, final?, the records seen in the
    /// window so far, records in this invocation).
    fn windows(&self) -> Vec<(i64, bool, String, usize)> {
        self.calls()
            .into_iter()
            .filter_map(|c| {
                c.window
                    .map(|(start, last, seen)| (start, last, seen, c.seqs.len()))
            })
            .collect()
    }

    fn delivered(&self) -> Vec<String> {
        let mut all: Vec<String> = self.calls().into_iter().flat_map(|c| c.seqs).collect();
        all.sort();
        all
    }
}

#[async_trait]
impl BatchHandler for Recorder {
    async fn invoke(&self, inv: Invocation<'_>) -> Result<InvocationResult, FunctionError> {
        let seqs: Vec<String> = inv
            .records
            .iter()
            .map(|r| r.sequence_number.clone())
            .collect();
        let mut state = inv.window.map(|w| w.state.clone()).unwrap_or_default();
        let seen = state.entry("seen".into()).or_default();
        for s in &seqs {
            seen.push_str(s);
            seen.push(' ');
        }
        let window = inv
            .window
            .map(|w| (w.start_ms, w.is_final_invoke_for_window, seen.clone()));
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(Call {
                shard: inv.shard_id.to_owned(),
                seqs,
                window,
            });
        }
        Ok(InvocationResult {
            state,
            ..InvocationResult::default()
        })
    }
}

#[derive(Debug)]
struct FarFuture;

impl Clock for FarFuture {
    fn now_ms(&self) -> i64 {
        // Long after every record: windows end as soon as a shard is read to its end.
        4_000_000_000_000
    }
}

fn recs(prefix: &str, n: usize, arrival_ms: i64) -> Vec<SourceRecord> {
    (0..n)
        .map(|i| SourceRecord {
            sequence_number: format!("{prefix}{i:03}"),
            partition_key: "acme/api".into(),
            data: b"{}".to_vec(),
            arrival_ms: arrival_ms + i as i64,
        })
        .collect()
}

fn config(state_dir: &std::path::Path) -> RunConfig {
    let mut c = RunConfig::new("fake", "data", "rules", state_dir.to_path_buf());
    c.evaluate_every = None;
    c.until_idle = Some(Duration::from_millis(50));
    c.max_runtime = Some(Duration::from_secs(60));
    c.poll = PollSettings {
        idle_poll: Duration::from_millis(5),
        error_backoff: Duration::from_millis(5),
    };
    c.discovery_interval = Duration::from_millis(20);
    c
}

fn mapping(name: &str, window: Option<Duration>) -> MappingConfig {
    let mut m = MappingConfig::ingest();
    m.name = name.into();
    m.batch_size = 2;
    m.batching_window = Duration::ZERO;
    m.tumbling_window = window;
    m.retry_backoff = Duration::ZERO;
    // The fake clock is far ahead of the records.
    m.max_record_age = None;
    m
}

async fn run(
    stream: &Arc<FakeStream>,
    recorder: &Arc<Recorder>,
    window: Option<Duration>,
    dir: &std::path::Path,
) -> RunReport {
    let parts = RunParts {
        source: stream.clone(),
        mappings: vec![(mapping("fake", window), recorder.clone())],
        destination: Arc::new(LogOnly),
        evaluator: None,
        clock: Arc::new(FarFuture),
    };
    Runner::from_parts(config(dir), parts)
        .run(std::future::pending())
        .await
        .expect("the run ends")
}

#[tokio::test]
async fn every_shard_is_delivered_once_and_children_start_after_their_parent_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = Arc::new(FakeStream::default());
    stream.add_shard(ShardInfo::root("shard-0"), recs("a", 5, 1_000), true);
    let child = |id: &str| ShardInfo {
        shard_id: id.into(),
        parent_shard_id: Some("shard-0".into()),
        adjacent_parent_shard_id: None,
    };
    stream.add_shard(child("shard-1"), recs("b", 3, 2_000), false);
    stream.add_shard(child("shard-2"), recs("c", 3, 2_000), false);
    stream.add_shard(ShardInfo::root("shard-3"), recs("d", 2, 1_000), false);
    let recorder = Arc::new(Recorder::default());
    let report = run(&stream, &recorder, None, dir.path()).await;
    assert_eq!(report.stop_reason, StopReason::Idle);

    let mut expected: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .zip([5, 3, 3, 2])
        .flat_map(|(p, n)| recs(p, n, 0).into_iter().map(|r| r.sequence_number))
        .collect();
    expected.sort();
    assert_eq!(recorder.delivered(), expected, "each record exactly once");

    let calls = recorder.calls();
    let last_parent = calls
        .iter()
        .rposition(|c| c.shard == "shard-0")
        .expect("parent read");
    let first_child = calls
        .iter()
        .position(|c| c.shard == "shard-1" || c.shard == "shard-2")
        .expect("children read");
    assert!(last_parent < first_child, "{calls:#?}");
    assert!(
        calls.iter().all(|c| c.seqs.len() <= 2),
        "BatchSize 2: {calls:#?}"
    );

    let store = CheckpointStore::open(dir.path()).expect("state dir");
    let parent = store
        .load("fake", "shard-0")
        .expect("load")
        .expect("checkpoint");
    assert!(parent.shard_finished);
    assert_eq!(parent.sequence_number.as_deref(), Some("a004"));
    let child = store
        .load("fake", "shard-1")
        .expect("load")
        .expect("checkpoint");
    assert_eq!(child.sequence_number.as_deref(), Some("b002"));
    assert_eq!(report.metrics.mappings["fake"].records, 13);
}

#[tokio::test]
async fn a_restart_resumes_after_the_checkpoint_without_redelivering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = Arc::new(FakeStream::default());
    stream.add_shard(ShardInfo::root("shard-0"), recs("a", 3, 1_000), false);
    let first = Arc::new(Recorder::default());
    run(&stream, &first, None, dir.path()).await;
    assert_eq!(first.delivered(), vec!["a000", "a001", "a002"]);

    stream.append("shard-0", recs("b", 2, 5_000));
    let second = Arc::new(Recorder::default());
    run(&stream, &second, None, dir.path()).await;
    assert_eq!(
        second.delivered(),
        vec!["b000", "b001"],
        "only the new records"
    );
}

#[tokio::test]
async fn a_window_closes_once_when_pages_of_tied_arrival_times_report_no_lag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = Arc::new(FakeStream {
        lag_by_arrival: true,
        ..FakeStream::default()
    });
    // One PutRecords call: five records with the same arrival time, read two at a time.
    let records = recs("a", 5, 1_000)
        .into_iter()
        .map(|r| SourceRecord {
            arrival_ms: 1_000,
            ..r
        })
        .collect();
    stream.add_shard(ShardInfo::root("shard-0"), records, false);
    let recorder = Arc::new(Recorder::default());
    run(
        &stream,
        &recorder,
        Some(Duration::from_secs(10)),
        dir.path(),
    )
    .await;

    let finals: Vec<(i64, String)> = recorder
        .windows()
        .into_iter()
        .filter(|(_, last, _, _)| *last)
        .map(|(start, _, seen, _)| (start, seen))
        .collect();
    assert_eq!(
        finals,
        vec![(0, "a000 a001 a002 a003 a004 ".to_owned())],
        "one final invocation, with every record of the window"
    );
}

#[tokio::test]
async fn tumbling_windows_carry_state_and_close_with_a_final_invocation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = Arc::new(FakeStream::default());
    // Three records in the window [0 s, 10 s), two in [10 s, 20 s).
    let mut records = recs("a", 3, 1_000);
    records.extend(recs("b", 2, 12_000));
    stream.add_shard(ShardInfo::root("shard-0"), records, false);
    let recorder = Arc::new(Recorder::default());
    run(
        &stream,
        &recorder,
        Some(Duration::from_secs(10)),
        dir.path(),
    )
    .await;

    assert_eq!(
        recorder.windows(),
        vec![
            (0, false, "a000 a001 ".into(), 2),
            (0, false, "a000 a001 a002 ".into(), 1),
            (0, true, "a000 a001 a002 ".into(), 0),
            // a002 and b000 came in one read: the batch is cut at the window's end.
            (10_000, false, "b000 ".into(), 1),
            (10_000, false, "b000 b001 ".into(), 1),
            (10_000, true, "b000 b001 ".into(), 0),
        ],
        "a batch never spans windows; the final invocation has no records and the whole state"
    );
    let store = CheckpointStore::open(dir.path()).expect("state dir");
    let cp = store
        .load("fake", "shard-0")
        .expect("load")
        .expect("checkpoint");
    assert_eq!(cp.window, None, "closed windows leave no state behind");
}
