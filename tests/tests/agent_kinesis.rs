//! `sluice agent` end to end: lines from a file through the agent (called as a library, the
//! same code the binary runs) into a fresh Kinesis stream on the emulator, read back shard by
//! shard with GetRecords, directly with the SDK. Then the same through the fault-injecting
//! proxy (throttled and partially failed PutRecords, dropped connections), and with KPL
//! aggregation.
//!
//! Needs an emulator: `cargo xtask test`, or `cargo xtask emulator up` and
//! `export SLUICE_TEST_ENDPOINT=...`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::Credentials;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use sluice_cli::agent::{
    self, AgentConfig, BatchLimits, Counters, Input, KinesisSink, RecordSink, Report, RetryPolicy,
    StreamRef,
};
use sluice_core::decode::kpl;
use sluice_e2e::fault_proxy::FaultProxy;
use sluice_e2e::{REGION, endpoint};
use tokio::sync::watch;

type TestResult = anyhow::Result<()>;

/// A Kinesis client for `url` with dummy credentials. `retries: false` is how the agent's
/// client is built (it retries entry by entry itself).
async fn kinesis(url: &str, retries: bool) -> Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::from_static(REGION))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("test", "test", None, None, "sluice-e2e"))
        .retry_config(if retries {
            RetryConfig::standard()
        } else {
            RetryConfig::disabled()
        })
        .load()
        .await;
    sluice_aws::kinesis_client(&sdk)
}

/// A fresh stream on the emulator, with `shards` shards, active.
async fn create_stream(client: &Client, shards: i32) -> anyhow::Result<String> {
    let name = format!(
        "sluice-e2e-agent-{}-{:012x}",
        std::process::id(),
        fastrand::u64(..1 << 48)
    );
    client
        .create_stream()
        .stream_name(&name)
        .shard_count(shards)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("creating stream {name}: {}", DisplayErrorContext(&e)))?;
    for _ in 0..100 {
        let summary = client
            .describe_stream_summary()
            .stream_name(&name)
            .send()
            .await
            .with_context(|| format!("describing {name}"))?;
        if summary
            .stream_description_summary()
            .map(|s| s.stream_status())
            == Some(&StreamStatus::Active)
        {
            return Ok(name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("stream {name} never became active")
}

/// One record as read back: partition key, data, shard.
#[derive(Debug, Clone)]
struct Stored {
    partition_key: String,
    data: Vec<u8>,
    shard: String,
}

/// Every record of every shard, read from the start with GetRecords.
async fn read_all(client: &Client, stream: &str) -> anyhow::Result<Vec<Stored>> {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .with_context(|| format!("listing the shards of {stream}"))?;
    let mut out = Vec::new();
    for shard in shards.shards() {
        let shard_id = shard.shard_id();
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .with_context(|| format!("an iterator for {shard_id}"))?
            .shard_iterator()
            .map(str::to_owned);
        while let Some(it) = iterator.take() {
            let page = client
                .get_records()
                .shard_iterator(it)
                .limit(10_000)
                .send()
                .await
                .with_context(|| format!("reading {shard_id}"))?;
            if page.records().is_empty() {
                break;
            }
            for r in page.records() {
                out.push(Stored {
                    partition_key: r.partition_key().unwrap_or_default().to_owned(),
                    data: r.data().as_ref().to_vec(),
                    shard: shard_id.to_owned(),
                });
            }
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
    }
    Ok(out)
}

/// `n` NDJSON lines over three tenants and two services, each with a unique id; some name
/// their tenant and service under aliases, as real services do.
fn write_lines(path: &Path, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut lines = Vec::with_capacity(n);
    let mut text = String::new();
    for i in 0..n {
        let tenant = ["acme", "globex", "initech"][i % 3];
        let service = ["api", "checkout"][i % 2];
        let line = if i % 5 == 0 {
            format!(
                r#"{{"tenant_id":"{tenant}","service.name":"{service}","level":"info","msg":"request {i}","id":"line-{i:06}"}}"#
            )
        } else {
            format!(
                r#"{{"tenant":"{tenant}","service":"{service}","level":"info","message":"request {i}","id":"line-{i:06}"}}"#
            )
        };
        text.push_str(&line);
        text.push('\n');
        lines.push((format!("{tenant}/{service}"), line));
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(lines)
}

fn agent_config(file: &Path, kpl_max_bytes: Option<usize>) -> AgentConfig {
    AgentConfig {
        inputs: vec![Input::File(file.to_owned())],
        follow: false,
        limits: BatchLimits {
            linger: Duration::from_millis(50),
            kpl_max_bytes,
            ..BatchLimits::default()
        },
        retry: RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        },
        // One call at a time: moto 5.2.5 numbers a shard's records without a lock, so
        // concurrent PutRecords to one shard overwrite each other's records there (it answers
        // success for both). Real Kinesis has no such problem; the agent's default is 4.
        concurrency: 1,
        ..AgentConfig::default()
    }
}

async fn run_agent(config: AgentConfig, url: &str, stream: &str) -> Report {
    let sink: Arc<dyn RecordSink> = Arc::new(KinesisSink::new(
        kinesis(url, false).await,
        StreamRef::Name(stream.to_owned()),
    ));
    let (_stop, shutdown) = watch::channel(false);
    agent::run(config, sink, Arc::new(Counters::default()), shutdown).await
}

/// Sorted `(partition key, line)` pairs.
fn sorted(mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    pairs.sort();
    pairs
}

/// Records read back as `(partition key, line)`, unpacking KPL aggregates with the core
/// decoder (checking each user record's key against its Kinesis record's).
fn user_records(stored: &[Stored]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for record in stored {
        if kpl::is_aggregate(&record.data) {
            for sub in kpl::decode(&record.data).map_err(anyhow::Error::msg)? {
                anyhow::ensure!(sub.partition_key == record.partition_key);
                out.push((
                    sub.partition_key.to_owned(),
                    String::from_utf8(sub.data.to_vec())?,
                ));
            }
        } else {
            out.push((
                record.partition_key.clone(),
                String::from_utf8(record.data.clone())?,
            ));
        }
    }
    Ok(out)
}

#[tokio::test]
async fn every_line_of_a_file_arrives_once_with_its_tenant_service_partition_key() -> TestResult {
    let admin = kinesis(&endpoint(), true).await;
    let stream = create_stream(&admin, 2).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("app.log");
    let lines = write_lines(&file, 2_000)?;

    let report = run_agent(agent_config(&file, None), &endpoint(), &stream).await;
    assert!(report.is_clean(), "{}", report.human());
    let c = report.counters;
    assert_eq!(
        (c.records_read, c.records_sent, c.kinesis_records),
        (2_000, 2_000, 2_000)
    );
    assert!(c.put_records_calls >= 4, "{c:?}");

    let stored = read_all(&admin, &stream).await?;
    assert_eq!(stored.len(), 2_000);
    assert_eq!(sorted(user_records(&stored)?), sorted(lines));
    // Both shards got records: the keys spread the way Kinesis hashes them.
    let shards: BTreeMap<&str, usize> = stored.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.shard.as_str()).or_default() += 1;
        m
    });
    assert_eq!(shards.len(), 2, "{shards:?}");
    Ok(())
}

#[tokio::test]
async fn through_throttling_partial_failures_and_dropped_connections_nothing_is_lost_or_doubled()
-> TestResult {
    let admin = kinesis(&endpoint(), true).await;
    let stream = create_stream(&admin, 2).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("app.log");
    let lines = write_lines(&file, 3_000)?;

    let proxy = FaultProxy::start(&endpoint()).await?;
    let plan = proxy.plan();
    plan.kinesis_throttle_next.store(3, Ordering::SeqCst);
    plan.drop_next.store(2, Ordering::SeqCst);
    plan.kinesis_partial_next.store(2, Ordering::SeqCst);

    let report = run_agent(agent_config(&file, None), &proxy.endpoint(), &stream).await;
    assert!(report.is_clean(), "{}", report.human());

    let injected = plan.injected();
    assert_eq!(
        (
            injected.kinesis_throttles,
            injected.drops,
            injected.kinesis_partial_calls
        ),
        (3, 2, 2),
        "{injected:?}"
    );
    assert!(injected.kinesis_failed_entries > 0);
    let c = report.counters;
    assert_eq!(c.records_sent, 3_000);
    // Five whole calls failed (three throttled, two dropped); the partially failed entries
    // were retried on their own.
    assert_eq!(c.call_errors, 5, "{c:?}");
    assert_eq!(c.entry_errors, injected.kinesis_failed_entries, "{c:?}");
    assert!(c.retried_entries >= c.entry_errors, "{c:?}");

    // Exactly once each: the failed calls and entries never reached the emulator.
    let stored = read_all(&admin, &stream).await?;
    assert_eq!(sorted(user_records(&stored)?), sorted(lines));
    Ok(())
}

#[tokio::test]
async fn with_kpl_the_aggregates_unpack_to_exactly_the_lines_of_the_file() -> TestResult {
    let admin = kinesis(&endpoint(), true).await;
    let stream = create_stream(&admin, 2).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("app.log");
    let lines = write_lines(&file, 5_000)?;

    let proxy = FaultProxy::start(&endpoint()).await?;
    proxy.plan().kinesis_partial_next.store(1, Ordering::SeqCst);
    proxy
        .plan()
        .kinesis_throttle_next
        .store(1, Ordering::SeqCst);

    let report = run_agent(
        agent_config(&file, Some(16 * 1024)),
        &proxy.endpoint(),
        &stream,
    )
    .await;
    assert!(report.is_clean(), "{}", report.human());
    let c = report.counters;
    assert_eq!(c.records_sent, 5_000);
    assert_eq!(
        (
            proxy.plan().injected().kinesis_partial_calls,
            proxy.plan().injected().kinesis_throttles
        ),
        (1, 1)
    );

    let stored = read_all(&admin, &stream).await?;
    // Far fewer Kinesis records than lines, each within the aggregate size.
    assert_eq!(stored.len() as u64, c.kinesis_records);
    assert!(stored.len() < 500, "{} Kinesis records", stored.len());
    assert!(stored.iter().all(|r| r.data.len() <= 16 * 1024));
    assert!(stored.iter().any(|r| kpl::is_aggregate(&r.data)));
    assert_eq!(sorted(user_records(&stored)?), sorted(lines));
    Ok(())
}

#[tokio::test]
async fn a_missing_stream_stops_the_agent_with_every_line_counted_as_failed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("app.log");
    write_lines(&file, 1_200)?;
    let report = run_agent(
        agent_config(&file, None),
        &endpoint(),
        &format!("sluice-e2e-no-such-stream-{:x}", fastrand::u64(..)),
    )
    .await;
    let fatal = report.fatal_error.clone().unwrap_or_default();
    assert!(fatal.contains("ResourceNotFound"), "{}", report.human());
    // The agent stops reading at the error; everything it had read counts as failed.
    let c = report.counters;
    assert_eq!(c.records_sent, 0);
    assert_eq!(c.failed, c.records_read, "{c:?}");
    assert!(c.records_read >= 500, "{c:?}");
    assert!(!report.is_clean());
    Ok(())
}
