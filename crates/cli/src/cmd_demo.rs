//! `sluice demo`: the pipeline on the embedded default (an in-process stream and a local
//! directory), over synthetic multi-tenant traffic with an incident in it.
//!
//! Traffic is replayed in time slices: each slice is put on the stream, then every shard is
//! drained in Lambda-sized batches through the ingest path. Later stages (windows, rules,
//! alerts) plug into the same loop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use sluice_core::embedded_stream::EmbeddedStream;
use sluice_core::synth::{Generator, Incident, SynthConfig};
use sluice_core::{BlobStore as _, IngestPipeline, IngestStats, LocalDirStore};

use crate::report;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Output directory; its `logs/` and `dlq/` are replaced.
    #[arg(long, short, default_value = "sluice-data")]
    out: PathBuf,
    /// How many records of traffic to generate (spread over the last hour).
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    /// Tenants (1-8).
    #[arg(long, default_value_t = 6)]
    tenants: usize,
    /// Shards of the embedded stream.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Records per ingest batch (Lambda's BatchSize).
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
    /// Random seed for the traffic.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Print one JSON summary line at the end instead of tables.
    #[arg(long)]
    json: bool,
}

const SLICES: usize = 60;

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    clear_previous_output(&args.out)?;
    let now = report::now_ms();
    let start_ms = now - 3_600_000;
    let incident = Incident {
        tenant: "acme".into(),
        service: "checkout".into(),
        start_ms: start_ms + 35 * 60_000,
        end_ms: start_ms + 45 * 60_000,
        error_rate: 0.35,
        latency_factor: 6.0,
    };
    let config = SynthConfig {
        tenants: args.tenants,
        services_per_tenant: 6,
        events: args.records,
        start_ms,
        duration_ms: 3_600_000,
        seed: args.seed,
        incident: Some(incident.clone()),
        malformed_every: Some(997),
        text_services: true,
    };
    if !args.json {
        println!(
            "sluice demo: {} records from {} tenants over the last hour, into {}",
            report::count(args.records as u64),
            args.tenants.clamp(1, 8),
            args.out.display()
        );
        println!(
            "incident: {}/{} fails {:.0}% of requests with {}x latency from minute 35 to 45\n",
            incident.tenant,
            incident.service,
            incident.error_rate * 100.0,
            incident.latency_factor
        );
    }

    let pipeline = IngestPipeline::default();
    let store = LocalDirStore::new(&args.out);
    let mut stream = EmbeddedStream::new(args.shards);
    let progress = if args.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(args.records as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} ingest [{bar:30}] {pos}/{len} records {per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    };
    let started = Instant::now();
    let mut total = IngestStats::default();
    let mut events = Generator::new(config).peekable();
    let slice_ms = 3_600_000 / SLICES as i64;
    for slice in 0..SLICES {
        let slice_end = start_ms + (slice as i64 + 1) * slice_ms;
        while let Some(event) = events.next_if(|e| e.ts_ms < slice_end || slice == SLICES - 1) {
            stream.put(&event.partition_key, event.payload, event.ts_ms + 150);
        }
        for shard in 0..stream.shard_count() {
            loop {
                let batch = stream.take_batch(shard, args.batch_size);
                if batch.is_empty() {
                    break;
                }
                let outcome = runtime.block_on(pipeline.process(&store, &batch, slice_end));
                if let Some(from) = &outcome.retry_from {
                    anyhow::bail!(
                        "storing batch from {from} failed: {}",
                        outcome.errors.join("; ")
                    );
                }
                progress.inc(outcome.stats.records);
                total.absorb(&outcome.stats);
            }
        }
        progress.set_message(format!(
            "minute {:>2}, {} rejected",
            slice + 1,
            total.rejected_total()
        ));
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();

    if args.json {
        let mut summary = report::ingest_json(&total, elapsed);
        summary["rejected_by_reason"] = serde_json::to_value(&total.rejected)?;
        summary["rejected"] = total.rejected_total().into();
        summary["out"] = args.out.display().to_string().into();
        println!("{summary}");
        return Ok(());
    }
    println!("{}", report::ingest_summary(&total, elapsed));
    let objects = runtime.block_on(count_objects(&store))?;
    let mut tenants = report::table(&["tenant", "rows", "parquet objects"]);
    for (tenant, rows) in &total.tenants {
        let n = objects.get(tenant).copied().unwrap_or(0);
        tenants.add_row(vec![
            comfy_table::Cell::new(tenant),
            report::right(report::count(*rows)),
            report::right(n),
        ]);
    }
    println!("{tenants}");
    print_next_steps(&args.out);
    Ok(())
}

async fn count_objects(store: &LocalDirStore) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for key in store.list("logs/").await.context("listing the output")? {
        if let Some(tenant) = key
            .strip_prefix("logs/tenant=")
            .and_then(|k| k.split('/').next())
        {
            *counts.entry(tenant.to_owned()).or_default() += 1;
        }
    }
    Ok(counts)
}

/// Removes what an earlier demo wrote (`logs/`, `dlq/`), refusing to touch other directories.
fn clear_previous_output(out: &Path) -> anyhow::Result<()> {
    if !out.exists() {
        return Ok(());
    }
    let known = [
        "logs", "dlq", "windows", "metrics", "alerts", "rules", "compiled", "tenants",
    ];
    for entry in std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if !known.iter().any(|k| name == *k) {
            anyhow::bail!(
                "{} contains {:?}, which sluice did not write; choose an empty or sluice-only --out",
                out.display(),
                name
            );
        }
    }
    for prefix in ["logs", "dlq"] {
        let dir = out.join(prefix);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    Ok(())
}

fn print_next_steps(out: &Path) {
    let glob = format!("{}/logs/**/*.parquet", out.display());
    println!("\nQuery the result with DuckDB:");
    println!(
        "  duckdb -c \"SELECT tenant, service, count(*) AS n, count(*) FILTER (WHERE http_status >= 500) AS e5xx, \
         round(quantile_cont(latency_ms, 0.99), 1) AS p99_ms FROM read_parquet('{glob}', hive_partitioning = true) \
         GROUP BY ALL ORDER BY e5xx DESC LIMIT 5\""
    );
    println!("or pyarrow:");
    println!(
        "  python3 -c \"import pyarrow.dataset as ds; print(ds.dataset('{}/logs', partitioning='hive').to_table().num_rows)\"",
        out.display()
    );
    println!(
        "Rejected records, with their reasons: {}/dlq/ (gzip NDJSON)",
        out.display()
    );
}
