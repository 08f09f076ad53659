//! The two storage tiers read back by pyarrow and DuckDB (docs/ARCHITECTURE.md §11): batches of
//! generated traffic over three arrival hours ingested into a data directory, a compaction pass
//! that closes the first two, then the compacted tier (`logs/`, one object per tenant-hour),
//! the recent tier (`raw/` from the watermark on) and the documented query over both must each
//! hold exactly their rows, none twice.

use std::collections::BTreeMap;

use sluice_core::compact::{self, CompactConfig};
use sluice_core::embedded_stream::EmbeddedStream;
use sluice_core::synth::{Generator, SynthConfig};
use sluice_core::{BlobStore as _, IngestPipeline, LocalDirStore};
use sluice_e2e::{parquet_rows, verify_parquet_tier};

/// 2024-05-01T10:00:00Z.
const START_MS: i64 = 1_714_557_600_000;
const HOUR_MS: i64 = 3_600_000;

#[tokio::test]
async fn compacted_and_recent_tiers_each_read_back_exactly_their_rows() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = LocalDirStore::new(dir.path());
    // Three hours of traffic, arriving as it happens; a few records are malformed.
    let events: Vec<_> = Generator::new(SynthConfig {
        tenants: 6,
        services_per_tenant: 4,
        events: 9_000,
        start_ms: START_MS,
        duration_ms: 3 * HOUR_MS,
        malformed_every: Some(500),
        text_services: true,
        ..SynthConfig::default()
    })
    .collect();
    let mut stream = EmbeddedStream::new(2);
    for e in &events {
        stream.put(&e.partition_key, e.payload.clone(), e.ts_ms + 100);
    }
    // Each record is one event, stored unless it is one of the malformed ones.
    let mut rows_by_arrival_hour: BTreeMap<i64, u64> = BTreeMap::new();
    for e in events.iter().filter(|e| !e.malformed) {
        *rows_by_arrival_hour
            .entry((e.ts_ms + 100).div_euclid(HOUR_MS))
            .or_default() += 1;
    }
    let pipeline = IngestPipeline::default();
    let (mut objects, mut stored) = (0, 0);
    for shard in 0..stream.shard_count() {
        loop {
            let batch = stream.take_batch(shard, 400);
            if batch.is_empty() {
                break;
            }
            let outcome = pipeline
                .process(&store, &batch, START_MS + 3 * HOUR_MS)
                .await;
            anyhow::ensure!(outcome.retry_from.is_none(), "{:?}", outcome.errors);
            objects += 1;
            stored += outcome.stats.rows;
        }
    }
    let total: u64 = rows_by_arrival_hour.values().sum();
    assert_eq!(stored, total);
    assert_eq!(
        store.list("raw/").await?.len(),
        objects,
        "one data object per batch"
    );

    // At 13:00 with no lateness, the hours of 10:00 and 11:00 are closed; 12:00 stays recent.
    let config = CompactConfig {
        lateness_ms: 0,
        ..CompactConfig::default()
    };
    let pass = compact::compact(&store, &config, START_MS + 3 * HOUR_MS - 1).await?;
    assert_eq!(pass.hours, 2);
    let watermark = START_MS + 2 * HOUR_MS;
    assert_eq!(pass.watermark_ms, Some(watermark));
    let first_hour = START_MS / HOUR_MS;
    let compacted_rows =
        rows_by_arrival_hour[&first_hour] + rows_by_arrival_hour[&(first_hour + 1)];
    let recent_rows = rows_by_arrival_hour[&(first_hour + 2)];

    // One object per tenant-hour: 6 tenants over the two closed hours, and the 12:00 hour of
    // those whose batches began before 12:00 (their rows are compacted with that batch, and
    // read from the recent tier until the watermark passes them).
    let logs = store.list("logs/").await?;
    assert!((12..=18).contains(&logs.len()), "{logs:?}");
    assert!(logs.iter().all(|k| k.ends_with("/part-0.parquet")));

    verify_parquet_tier(dir.path(), "logs", compacted_rows)?;
    verify_parquet_tier(dir.path(), "recent", recent_rows)?;
    verify_parquet_tier(dir.path(), "all", total)?;

    // Compacted objects are sorted by service, then time.
    let rows = parquet_rows(dir.path(), &["service", "ts"])?;
    for key in &logs {
        let mine: Vec<(String, i64)> = rows
            .iter()
            .filter(|r| r["_key"] == key.as_str())
            .map(|r| {
                (
                    r["service"].as_str().unwrap_or_default().to_owned(),
                    r["ts"].as_i64().unwrap_or_default(),
                )
            })
            .collect();
        assert!(!mine.is_empty(), "{key}");
        assert!(mine.windows(2).all(|w| w[0] <= w[1]), "{key} is not sorted");
    }
    Ok(())
}
