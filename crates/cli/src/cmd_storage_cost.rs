//! `sluice storage-cost`: the S3 request cost of the storage layout (docs/ARCHITECTURE.md §11)
//! for a day-shaped load of skewed tenants, against the layout it replaced (one object per
//! tenant-hour per batch) and against Firehose's list prices. `cargo xtask bench` prints it.
//!
//! Two parts:
//! 1. **Measured** on a sample: generated records of `--tenants` tenants (Zipf-skewed) put on an
//!    embedded stream of `--shards` shards, ingested batch by batch through a
//!    [`CountingStore`] over a local directory, then compacted. This gives bytes per row in both
//!    tiers, bytes per input GB, and the requests each step made; and the old layout's PUTs for
//!    the same batches (the distinct tenant-hours of each batch).
//! 2. **Scaled** to a day of `--gb-per-day` with the same per-batch rules: a batch every
//!    `--batch-seconds` per shard (more when a batch would pass 10,000 records or 6 MB), an
//!    hourly volume that follows a day curve, and the expected number of distinct tenants in
//!    `n` Zipf draws, `Σ 1 - (1 - p_t)^n`, for the old layout's PUTs and for the tenant-hours
//!    compaction writes.

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use sluice_core::compact::{self, CompactConfig};
use sluice_core::counting_store::{CountingStore, RequestCounts};
use sluice_core::embedded_stream::EmbeddedStream;
use sluice_core::synth::{Generator, SynthConfig, TENANTS};
use sluice_core::{IngestPipeline, IngestStats, LocalDirStore};

use crate::report;

/// S3 Standard list prices, us-east-1: PUT, COPY, POST, LIST per 1,000 requests.
const S3_PUT_PER_1000: f64 = 0.005;
/// GET, SELECT and all other requests per 1,000.
const S3_GET_PER_1000: f64 = 0.0004;
/// Firehose, us-east-1, Direct PUT ingestion per GB (first 500 TB a month; each record is
/// billed rounded up to the next 5 KB).
const FIREHOSE_INGEST_PER_GB: f64 = 0.029;
/// Firehose format conversion (to Parquet) per GB.
const FIREHOSE_CONVERSION_PER_GB: f64 = 0.018;
/// Firehose dynamic partitioning per GB processed.
const FIREHOSE_PARTITIONING_PER_GB: f64 = 0.020;
/// Firehose dynamic partitioning per 1,000 objects delivered.
const FIREHOSE_PER_1000_OBJECTS: f64 = 0.005;
/// Lambda's Kinesis batch limits.
const MAX_BATCH_RECORDS: f64 = 10_000.0;
const MAX_BATCH_BYTES: f64 = 6.0e6;
const HOUR_MS: i64 = 3_600_000;
const GB: f64 = 1e9;

#[derive(Debug, Args)]
pub struct StorageCostArgs {
    /// Tenants, Zipf-skewed (tenant k has weight 1/k^s).
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// The Zipf exponent s.
    #[arg(long, default_value_t = 1.1)]
    skew: f64,
    /// Shards of the stream.
    #[arg(long, default_value_t = 4)]
    shards: usize,
    /// Input (payload) gigabytes a day for the scaled day.
    #[arg(long, default_value_t = 100.0)]
    gb_per_day: f64,
    /// The ingest mapping's batching window (the template's default is 5 s).
    #[arg(long, default_value_t = 5.0)]
    batch_seconds: f64,
    /// Records in the measured sample (spread over two hours).
    #[arg(long, default_value_t = 200_000)]
    sample_records: usize,
    /// Records per batch in the measured sample.
    #[arg(long, default_value_t = 2_000)]
    sample_batch: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// The measured sample.
#[derive(Debug, Serialize)]
struct Sample {
    records: u64,
    rows: u64,
    batches: u64,
    payload_bytes: u64,
    raw_bytes: u64,
    compacted_bytes: u64,
    /// Bytes per row of the compacted objects with at least 1,000 rows: the sample's small
    /// tenant-hours are mostly footer, which a day's larger objects are not.
    compacted_bytes_per_row: f64,
    compacted_objects: u64,
    dead_letter_objects: u64,
    ingest: RequestCounts,
    compaction: RequestCounts,
    /// PUTs the old layout makes for the same batches (one per tenant-hour per batch).
    old_layout_puts: u64,
}

/// Requests and objects for one day, by step.
#[derive(Debug, Default, Serialize)]
struct Day {
    gb: f64,
    records: f64,
    batches: f64,
    ingest_put: f64,
    dead_letter_put: f64,
    compaction_get: f64,
    compaction_put: f64,
    compaction_list: f64,
    tenant_hours: f64,
    /// Tenant-hours with at least 64 MiB compacted, and their average object size.
    big_tenant_hours: f64,
    big_average_bytes: f64,
    compacted_bytes: f64,
    old_layout_put: f64,
}

pub fn run(args: StorageCostArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.tenants > 0 && args.shards > 0,
        "--tenants and --shards must be positive"
    );
    let weights = zipf(args.tenants, args.skew);
    let sample = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(measure(&args, &weights))?;
    let day = scale(&args, &weights, &sample);
    if args.json {
        println!(
            "{}",
            serde_json::json!({"sample": sample, "day": day, "per_gb": per_gb(&day), "prices": prices(&day)})
        );
    } else {
        print(&args, &sample, &day);
    }
    Ok(())
}

/// Zipf weights 1/k^s, normalised.
fn zipf(n: usize, s: f64) -> Vec<f64> {
    let raw: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = raw.iter().sum();
    raw.into_iter().map(|w| w / total).collect()
}

/// Draws tenant indices by their weights.
struct TenantDraw {
    cumulative: Vec<f64>,
    rng: fastrand::Rng,
}

impl TenantDraw {
    fn new(weights: &[f64], seed: u64) -> Self {
        let mut sum = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                sum += w;
                sum
            })
            .collect();
        Self {
            cumulative,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    fn next(&mut self) -> usize {
        let x = self.rng.f64();
        self.cumulative
            .partition_point(|&c| c < x)
            .min(self.cumulative.len() - 1)
    }
}

/// Ingests and compacts the sample, counting requests.
async fn measure(args: &StorageCostArgs, weights: &[f64]) -> anyhow::Result<Sample> {
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let store = CountingStore::new(LocalDirStore::new(dir.path()));
    let start_ms = 1_714_564_800_000; // an hour boundary
    let generator = Generator::new(SynthConfig {
        tenants: TENANTS.len(),
        services_per_tenant: 6,
        events: args.sample_records,
        start_ms,
        duration_ms: 2 * HOUR_MS,
        seed: 11,
        malformed_every: Some(997),
        text_services: true,
        ..SynthConfig::default()
    });
    let mut draw = TenantDraw::new(weights, 5);
    let mut stream = EmbeddedStream::new(args.shards);
    for event in generator {
        let (tenant, service) = event
            .partition_key
            .split_once('/')
            .unwrap_or(("acme", "api"));
        let mine = format!("tenant-{:04}", draw.next());
        // The generator's tenant becomes the drawn one; a payload that is not UTF-8 (a
        // deliberately malformed one) stays as it is.
        let payload = match String::from_utf8(event.payload) {
            Ok(text) => text
                .replace(
                    &format!("\"tenant\":\"{tenant}\""),
                    &format!("\"tenant\":\"{mine}\""),
                )
                .into_bytes(),
            Err(e) => e.into_bytes(),
        };
        stream.put(&format!("{mine}/{service}"), payload, event.ts_ms + 150);
    }
    let pipeline = IngestPipeline::default();
    let mut total = IngestStats::default();
    let (mut batches, mut old_layout_puts, mut dead_letter_objects) = (0u64, 0u64, 0u64);
    let end_ms = start_ms + 2 * HOUR_MS;
    for shard in 0..stream.shard_count() {
        loop {
            let batch = stream.take_batch(shard, args.sample_batch);
            if batch.is_empty() {
                break;
            }
            let outcome = pipeline.process(&store, &batch, end_ms).await;
            anyhow::ensure!(
                outcome.retry_from.is_none(),
                "storing a sample batch failed: {:?}",
                outcome.errors
            );
            batches += 1;
            old_layout_puts += old_layout_objects(&batch);
            dead_letter_objects += u64::from(outcome.stats.rejected_total() > 0);
            total.absorb(&outcome.stats);
        }
    }
    let ingest = store.counts();
    let config = CompactConfig {
        lateness_ms: HOUR_MS,
        ..CompactConfig::default()
    };
    let pass = compact::compact(&store, &config, end_ms + 2 * HOUR_MS)
        .await
        .context("compacting the sample")?;
    let compaction = store.counts().since(&ingest);
    let raw_bytes = total.bytes_out;
    Ok(Sample {
        records: total.records,
        rows: total.rows,
        batches,
        payload_bytes: total.bytes_in,
        raw_bytes,
        compacted_bytes: pass.written.iter().map(|o| o.bytes).sum(),
        compacted_bytes_per_row: {
            let big = pass.written.iter().filter(|o| o.rows >= 1000);
            let (bytes, rows) = big.fold((0u64, 0u64), |(b, r), o| (b + o.bytes, r + o.rows));
            if rows > 0 {
                bytes as f64 / rows as f64
            } else {
                raw_bytes as f64 / total.rows.max(1) as f64
            }
        },
        compacted_objects: pass.written.len() as u64,
        dead_letter_objects,
        ingest,
        compaction,
        old_layout_puts,
    })
}

/// The objects the old layout wrote for a batch: one per (tenant, event hour) of its rows
/// (here the record's tenant and arrival hour: the sample's events arrive 150 ms after their
/// time), plus the dead-letter object.
fn old_layout_objects(batch: &[sluice_core::StreamRecord]) -> u64 {
    let groups: std::collections::HashSet<(&str, i64)> = batch
        .iter()
        .map(|r| {
            let tenant = r.partition_key.split('/').next().unwrap_or_default();
            (tenant, r.arrival_ms.div_euclid(HOUR_MS))
        })
        .collect();
    groups.len() as u64
}

/// Expected distinct tenants among `n` draws.
fn distinct(weights: &[f64], n: f64) -> f64 {
    weights.iter().map(|p| 1.0 - (1.0 - p).powf(n)).sum()
}

/// The day's share of each hour: a trough at night, a peak in the afternoon (0.4x to 1.6x the
/// mean).
fn hour_shares() -> [f64; 24] {
    let mut shares = [0.0; 24];
    for (h, share) in shares.iter_mut().enumerate() {
        let phase = (h as f64 - 9.0) / 24.0 * std::f64::consts::TAU;
        *share = 1.0 + 0.6 * phase.sin();
    }
    let total: f64 = shares.iter().sum();
    shares.map(|s| s / total)
}

fn scale(args: &StorageCostArgs, weights: &[f64], sample: &Sample) -> Day {
    let record_bytes = sample.payload_bytes as f64 / sample.records.max(1) as f64;
    let rows_per_record = sample.rows as f64 / sample.records.max(1) as f64;
    let reject_rate = 1.0 - rows_per_record.min(1.0);
    let compacted_per_row = sample.compacted_bytes_per_row;
    let records_per_day = args.gb_per_day * GB / record_bytes;
    let shards = args.shards as f64;
    let mut day = Day {
        gb: args.gb_per_day,
        records: records_per_day,
        ..Day::default()
    };
    // Compaction passes every 15 minutes, each reading the watermark.
    day.compaction_get += 96.0;
    for share in hour_shares() {
        let records = records_per_day * share;
        let per_shard = records / shards;
        let batches_per_shard = (3600.0 / args.batch_seconds)
            .max(per_shard / MAX_BATCH_RECORDS)
            .max(per_shard * record_bytes / MAX_BATCH_BYTES);
        let batches = batches_per_shard * shards;
        let per_batch = per_shard / batches_per_shard;
        let dead_letter = 1.0 - (1.0 - reject_rate).powf(per_batch);
        day.batches += batches;
        day.ingest_put += batches;
        day.dead_letter_put += batches * dead_letter;
        day.old_layout_put +=
            batches * (distinct(weights, per_batch * rows_per_record) + dead_letter);
        // Compaction of this hour: list the hour, read every batch object, read (or miss)
        // and write each tenant-hour, write the watermark.
        let tenant_hours = distinct(weights, records * rows_per_record);
        day.compaction_list += (batches / 1000.0).ceil();
        day.compaction_get += batches + tenant_hours;
        day.compaction_put += tenant_hours + 1.0;
        day.tenant_hours += tenant_hours;
        let hour_bytes = records * rows_per_record * compacted_per_row;
        day.compacted_bytes += hour_bytes;
        for p in weights {
            let bytes = hour_bytes * p;
            if bytes >= 64.0 * 1024.0 * 1024.0 {
                day.big_tenant_hours += 1.0;
                day.big_average_bytes += bytes;
            }
        }
    }
    if day.big_tenant_hours > 0.0 {
        day.big_average_bytes /= day.big_tenant_hours;
    }
    day
}

/// Requests (and objects) per input GB, by step.
fn per_gb(day: &Day) -> serde_json::Value {
    let g = day.gb;
    let total = day.ingest_put
        + day.dead_letter_put
        + day.compaction_get
        + day.compaction_put
        + day.compaction_list;
    serde_json::json!({
        "ingest_put": day.ingest_put / g,
        "dead_letter_put": day.dead_letter_put / g,
        "compaction_get": day.compaction_get / g,
        "compaction_put": day.compaction_put / g,
        "compaction_list": day.compaction_list / g,
        "total_requests": total / g,
        "old_layout_requests": day.old_layout_put / g,
        "reduction": day.old_layout_put / total.max(1.0),
        "objects_kept": day.tenant_hours / g,
    })
}

/// Dollars per input GB.
fn prices(day: &Day) -> serde_json::Value {
    let g = day.gb;
    let puts = day.ingest_put + day.dead_letter_put + day.compaction_put + day.compaction_list;
    let sluice = (puts * S3_PUT_PER_1000 + day.compaction_get * S3_GET_PER_1000) / 1000.0 / g;
    let old = day.old_layout_put * S3_PUT_PER_1000 / 1000.0 / g;
    let firehose_objects = day.tenant_hours / g * FIREHOSE_PER_1000_OBJECTS / 1000.0;
    let firehose = FIREHOSE_INGEST_PER_GB
        + FIREHOSE_CONVERSION_PER_GB
        + FIREHOSE_PARTITIONING_PER_GB
        + firehose_objects;
    serde_json::json!({
        "sluice_s3_requests_per_gb": sluice,
        "old_layout_s3_requests_per_gb": old,
        "firehose_per_gb": firehose,
    })
}

fn print(args: &StorageCostArgs, sample: &Sample, day: &Day) {
    let mb = |b: f64| format!("{:.1} MB", b / 1e6);
    println!(
        "storage cost: {} Zipf({}) tenants, {} shards, a batch every {} s per shard",
        args.tenants, args.skew, args.shards, args.batch_seconds
    );
    println!(
        "measured sample: {} records ({} rows) in {} batches of {}; {} B/record in, {:.1} B/row raw, {:.1} B/row compacted (objects of 1,000 rows or more); \
         ingest {} PUTs (old layout: {}), compaction {} GET / {} PUT / {} LIST into {} objects",
        report::count(sample.records),
        report::count(sample.rows),
        sample.batches,
        args.sample_batch,
        sample.payload_bytes / sample.records.max(1),
        sample.raw_bytes as f64 / sample.rows.max(1) as f64,
        sample.compacted_bytes_per_row,
        sample.ingest.put,
        sample.old_layout_puts + sample.dead_letter_objects,
        sample.compaction.get,
        sample.compaction.put,
        sample.compaction.list,
        sample.compacted_objects,
    );
    let g = day.gb;
    let mut table = report::table(&["per input GB", "PUT", "GET", "LIST", "objects written"]);
    let row = |name: &str, put: f64, get: f64, list: f64, objects: f64| {
        vec![
            comfy_table::Cell::new(name),
            report::right(format!("{:.1}", put / g)),
            report::right(format!("{:.1}", get / g)),
            report::right(format!("{:.2}", list / g)),
            report::right(format!("{:.1}", objects / g)),
        ]
    };
    table.add_row(row(
        "ingest (one object per batch)",
        day.ingest_put,
        0.0,
        0.0,
        day.ingest_put,
    ));
    table.add_row(row(
        "dead letters",
        day.dead_letter_put,
        0.0,
        0.0,
        day.dead_letter_put,
    ));
    table.add_row(row(
        "compaction",
        day.compaction_put,
        day.compaction_get,
        day.compaction_list,
        day.tenant_hours,
    ));
    table.add_row(row(
        "old layout (object per tenant-hour per batch)",
        day.old_layout_put,
        0.0,
        0.0,
        day.old_layout_put,
    ));
    println!(
        "\nscaled to a day of {} GB ({} records, {} batches):",
        args.gb_per_day,
        report::count(day.records as u64),
        report::count(day.batches as u64)
    );
    println!("{table}");
    let per = per_gb(day);
    let price = prices(day);
    println!(
        "requests per GB: {:.1} (old layout {:.1}: {:.0}x fewer; target at least 50x)",
        per["total_requests"].as_f64().unwrap_or_default(),
        per["old_layout_requests"].as_f64().unwrap_or_default(),
        per["reduction"].as_f64().unwrap_or_default(),
    );
    println!(
        "compacted objects: {} tenant-hours a day, {} on average; {} tenant-hours of 64 MiB or more, {} on average",
        report::count(day.tenant_hours as u64),
        mb(day.compacted_bytes / day.tenant_hours.max(1.0)),
        report::count(day.big_tenant_hours as u64),
        mb(day.big_average_bytes)
    );
    println!(
        "price per input GB at list prices: sluice S3 requests ${:.5} (old layout ${:.4}); \
         Firehose ingest + Parquet conversion + dynamic partitioning ${:.4} (records billed in 5 KB steps)",
        price["sluice_s3_requests_per_gb"]
            .as_f64()
            .unwrap_or_default(),
        price["old_layout_s3_requests_per_gb"]
            .as_f64()
            .unwrap_or_default(),
        price["firehose_per_gb"].as_f64().unwrap_or_default(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_tenants_grow_with_draws_and_stop_at_the_tenant_count() {
        let w = zipf(1000, 1.1);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(distinct(&w, 1.0) <= 1.0 + 1e-9);
        assert!(distinct(&w, 100.0) < distinct(&w, 1000.0));
        assert!(distinct(&w, 1e12) > 999.0);
    }

    #[test]
    fn the_day_curve_sums_to_one() {
        let shares = hour_shares();
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(shares.iter().all(|&s| s > 0.0));
    }
}
