//! The storage tiers as the demo and `sluice local run` show them (docs/ARCHITECTURE.md §11):
//! a compaction pass, then the compacted objects with their sizes, the raw objects not yet
//! compacted, and the one query that reads both without counting a row twice.

use anyhow::Context as _;
use sluice_core::compact::{self, CompactConfig, CompactStats};
use sluice_core::partition::{LOGS_PREFIX, RAW_PREFIX};
use sluice_core::{BlobStore, LocalDirStore};

use crate::report;

/// Objects and bytes under a prefix.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tier {
    pub objects: u64,
    pub bytes: u64,
}

/// What the tiers hold after a pass.
#[derive(Debug)]
pub struct TiersSummary {
    pub pass: CompactStats,
    /// Every compacted object: key and size.
    pub compacted: Vec<(String, u64)>,
    /// Raw objects at or after the watermark: the recent tier.
    pub recent: Tier,
    pub watermark_ms: i64,
}

/// Runs a compaction pass at `now_ms` with `lateness_ms`, then sizes up both tiers.
pub async fn compact_and_measure(
    store: &LocalDirStore,
    now_ms: i64,
    lateness_ms: i64,
) -> anyhow::Result<TiersSummary> {
    let config = CompactConfig {
        lateness_ms,
        ..CompactConfig::default()
    };
    let pass = compact::compact(store, &config, now_ms)
        .await
        .context("compacting the raw tier")?;
    let watermark_ms = compact::read_watermark(store)
        .await
        .context("reading the compaction watermark")?
        .map_or(0, |w| w.watermark_ms);
    let mut compacted = Vec::new();
    for key in store.list(LOGS_PREFIX).await.context("listing logs/")? {
        let size = store.size(&key).await.context("sizing logs/")?.unwrap_or(0);
        compacted.push((key, size));
    }
    let mut recent = Tier::default();
    for key in store.list(RAW_PREFIX).await.context("listing raw/")? {
        let hour = sluice_core::partition::parse_dt_hour(&key);
        if hour.is_some_and(|h| (h + 1) * 3_600_000 > watermark_ms) {
            recent.objects += 1;
            recent.bytes += store.size(&key).await.context("sizing raw/")?.unwrap_or(0);
        }
    }
    Ok(TiersSummary {
        pass,
        compacted,
        recent,
        watermark_ms,
    })
}

impl TiersSummary {
    /// The compacted files and their sizes, then the recent tier, as printed tables.
    pub fn print(&self) {
        println!(
            "\ncompaction: {} raw objects ({} rows) of {} closed hours folded into {} tenant-hour objects; {} duplicate rows dropped",
            report::count(self.pass.raw_objects),
            report::count(self.pass.raw_rows),
            self.pass.hours,
            report::count(self.pass.written.len() as u64),
            report::count(self.pass.duplicates)
        );
        let mut table = report::table(&["compacted object (logs/)", "size"]);
        for (key, size) in &self.compacted {
            let short = key.strip_prefix(LOGS_PREFIX).unwrap_or(key);
            table.add_row(vec![
                comfy_table::Cell::new(short),
                report::right(report::bytes(*size)),
            ]);
        }
        println!("{table}");
        let total: u64 = self.compacted.iter().map(|(_, s)| s).sum();
        let average = total.checked_div(self.compacted.len() as u64).unwrap_or(0);
        println!(
            "compacted tier: {} objects, {} in all, {} on average; recent tier (raw/, not yet compacted): {} objects, {}",
            self.compacted.len(),
            report::bytes(total),
            report::bytes(average),
            self.recent.objects,
            report::bytes(self.recent.bytes)
        );
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "watermark_ms": self.watermark_ms,
            "compacted_objects": self.compacted.len(),
            "compacted_bytes": self.compacted.iter().map(|(_, s)| s).sum::<u64>(),
            "recent_objects": self.recent.objects,
            "recent_bytes": self.recent.bytes,
            "duplicates_dropped": self.pass.duplicates,
        })
    }
}

/// The documented query over both tiers (docs/ARCHITECTURE.md §11), for DuckDB on `root`.
pub fn union_query(root: &str) -> String {
    format!(
        "WITH w AS (SELECT watermark_ms AS ms FROM read_json('{root}/control/compaction/watermark.json')) \
         SELECT l.* FROM read_parquet('{root}/logs/**/*.parquet', hive_partitioning = false) l, w WHERE epoch_ms(l.received_at) < w.ms \
         UNION ALL BY NAME \
         SELECT r.* FROM read_parquet('{root}/raw/**/*.parquet', hive_partitioning = false) r, w WHERE epoch_ms(r.received_at) >= w.ms"
    )
}
