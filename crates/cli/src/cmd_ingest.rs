//! `sluice ingest`: the ingest core over a file or stdin, one record per line, into a directory
//! laid out exactly like the data bucket.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use sluice_core::{
    IngestConfig, IngestPipeline, IngestStats, LocalDirStore, RejectReason,
    input::{RecordRef, SequenceCounter},
};

use crate::line_reader::LineReader;
use crate::report;

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Input file with one record per line (NDJSON or text); `-` reads stdin.
    #[arg(value_name = "INPUT", required_unless_present = "input")]
    input_file: Option<PathBuf>,
    /// The input, as a flag (the same as INPUT).
    #[arg(long, short, value_name = "INPUT", conflicts_with = "input_file")]
    input: Option<PathBuf>,
    /// Output directory (same key layout as the S3 data bucket).
    #[arg(long, short, default_value = "sluice-data")]
    out: PathBuf,
    /// Records per batch (one Parquet object per tenant and hour per batch).
    #[arg(long, default_value_t = 100_000)]
    batch_size: usize,
    /// Partition key for every record (`tenant/service`); records without a tenant field need it.
    #[arg(long, default_value = "")]
    partition_key: String,
    /// Shard name used in object keys; re-ingesting the same file overwrites the same objects.
    #[arg(long, default_value = "local")]
    shard: String,
    /// Accept event times up to this many hours older than now.
    #[arg(long, default_value_t = 720)]
    max_past_hours: i64,
    /// Read the input file with read(2) instead of mapping it into memory. Mapping saves a copy
    /// of every byte, but a file that another process truncates meanwhile kills sluice (SIGBUS).
    #[arg(long)]
    no_mmap: bool,
    /// Print one JSON object with the figures instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(args: IngestArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let pipeline = IngestPipeline::new(IngestConfig {
        max_past_ms: args.max_past_hours.saturating_mul(3_600_000),
        ..IngestConfig::default()
    });
    let store = LocalDirStore::new(&args.out);
    let input = args
        .input
        .as_deref()
        .or(args.input_file.as_deref())
        .context("no input given")?;
    let (mut lines, total_bytes) = open_input(input, args.no_mmap)?;
    let progress = progress_bar(total_bytes, args.json);
    let started = Instant::now();
    let mut total = IngestStats::default();
    // Each line's sequence number is its line number.
    let mut line_no = SequenceCounter::default();
    loop {
        let now = report::now_ms();
        // Each record is decoded as soon as its line is found, while its bytes are in cache.
        let mut batch = pipeline.begin(now, args.batch_size);
        let mut batch_bytes = 0;
        let mut at_end = false;
        for _ in 0..args.batch_size.max(1) {
            let Some(data) = lines.next_line().context("reading input")? else {
                at_end = true;
                break;
            };
            let sequence_number = line_no.advance();
            batch_bytes += data.len() as u64 + 1;
            if data.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            batch.push(RecordRef {
                shard_id: &args.shard,
                sequence_number,
                partition_key: &args.partition_key,
                arrival_ms: now,
                data,
            });
        }
        progress.inc(batch_bytes);
        // A batch of blank lines only stores nothing; it is not taken for the end of the input.
        let outcome = runtime.block_on(pipeline.store(&store, batch));
        if let Some(from) = outcome.retry_from {
            anyhow::bail!(
                "writing to {} failed (batch from line {from}): {}",
                args.out.display(),
                outcome.errors.join("; ")
            );
        }
        total.absorb(&outcome.stats);
        progress.set_message(format!("{} rows", report::count(total.rows)));
        if at_end {
            break;
        }
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    if args.json {
        println!("{}", report::ingest_json(&total, elapsed));
    } else {
        println!("{}", report::ingest_summary(&total, elapsed));
        let out = args.out.display();
        match (total.rows, total.rejected_total()) {
            (0, 0) => println!("No records in the input."),
            (0, _) => println!("No rows written; rejected records under {out}/dlq/"),
            (_, 0) => println!("Parquet under {out}/raw/, one object per batch"),
            _ => println!(
                "Parquet under {out}/raw/, one object per batch; rejected records under {out}/dlq/"
            ),
        }
    }
    if let Some(hint) = rejection_hint(&total, &args.partition_key) {
        eprintln!("hint: {hint}");
    }
    if total.rows == 0 && total.rejected_total() > 0 {
        anyhow::bail!(
            "every record was rejected ({}); their reasons are in {}/dlq/",
            total.rejected_total(),
            args.out.display()
        );
    }
    Ok(())
}

type InputLines = LineReader<Box<dyn std::io::Read>>;

/// Lines of the input: a regular file is mapped (unless `no_mmap`), anything else is read.
fn open_input(input: &Path, no_mmap: bool) -> anyhow::Result<(InputLines, Option<u64>)> {
    if input.as_os_str() == "-" {
        return Ok((LineReader::new(Box::new(std::io::stdin().lock())), None));
    }
    let file =
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading the metadata of {}", input.display()))?;
    // A regular file of length 0 may still have content to read (`/proc`, `/sys`).
    let lines = if meta.is_file() && meta.len() > 0 && !no_mmap {
        LineReader::mapped(file, meta.len())
    } else {
        LineReader::new(Box::new(file) as Box<dyn std::io::Read>)
    };
    Ok((lines, meta.is_file().then_some(meta.len())))
}

/// What to try when records were rejected for a reason a flag can fix.
fn rejection_hint(stats: &IngestStats, partition_key: &str) -> Option<String> {
    let untenanted = stats
        .rejected
        .get(RejectReason::NoTenant.kind())
        .copied()
        .unwrap_or(0);
    (untenanted > 0 && partition_key.is_empty()).then(|| {
        format!(
            "{untenanted} records had no tenant field: give the tenant (and service) of the \
             whole input with --partition-key TENANT/SERVICE"
        )
    })
}

fn progress_bar(total_bytes: Option<u64>, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    match total_bytes {
        Some(len) => {
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar
        }
    }
}
