//! `cargo xtask bench`: sluice ingest against DuckDB (and pyarrow), one thread each, on the
//! same generated NDJSON file, plus the peak RSS of ingesting one full Kinesis batch.
//!
//! Throughput per core is records divided by CPU seconds (user + system, all threads), so a
//! tool that uses more than one core gains nothing from it. sluice's own `cpu_s`/`elapsed_s`
//! from `sluice ingest --json` are used when present (they exclude process start-up); else the
//! process's rusage. The baselines time only the conversion inside Python.
//! Peak RSS is measured as described in [`crate::measure`].

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::measure::{self, Usage};
use crate::util::{self, note};
use crate::venv;

/// Targets from DESIGN.md §6.
const INGEST_TARGET_PER_CORE: f64 = 1_000_000.0;
const RSS_TARGET_BYTES: u64 = 64 * 1024 * 1024;

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Records in the generated input file.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Records in the batch whose peak RSS is measured (a full Kinesis batch).
    #[arg(long, default_value_t = 10_000)]
    pub batch_records: u64,
    /// Size the batch is padded to (an extra `pad` field per record), as a full 6 MB batch.
    #[arg(long, default_value_t = 6_000_000)]
    pub batch_bytes: u64,
    /// Print the results as one JSON object on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Skip the Python baselines (DuckDB, pyarrow).
    #[arg(long)]
    pub no_baselines: bool,
    /// Run the criterion benchmarks instead (`cargo bench -p sluice-core`).
    #[arg(long)]
    pub criterion: bool,
    /// Extra arguments for `cargo bench` with --criterion, after `--`.
    #[arg(last = true)]
    pub extra: Vec<String>,
}

#[derive(Debug)]
struct Measurement {
    tool: String,
    records: u64,
    elapsed_s: f64,
    cpu_s: f64,
    bytes_out: Option<u64>,
    error: Option<String>,
}

impl Measurement {
    fn per_core(&self) -> f64 {
        if self.cpu_s > 0.0 {
            self.records as f64 / self.cpu_s
        } else {
            0.0
        }
    }
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if args.criterion {
        return util::run(
            util::cargo()
                .args(["bench", "-p", "sluice-core"])
                .args(&args.extra),
        );
    }
    util::run(util::cargo().args(["build", "--release", "-p", "sluice-cli"]))?;
    let sluice = util::target_dir()?.join("release").join("sluice");
    if !sluice.exists() {
        bail!("{} was not built", sluice.display());
    }
    let tmp = tempfile::Builder::new()
        .prefix("sluice-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let tmp = tmp.path();

    let input = tmp.join("records.ndjson");
    generate(&sluice, args.records, &input)?;
    let input_bytes = fs::metadata(&input)
        .with_context(|| format!("reading {}", input.display()))?
        .len();
    note(format!(
        "input: {} records, {:.1} MB, {:.0} bytes/record",
        args.records,
        input_bytes as f64 / 1e6,
        input_bytes as f64 / args.records.max(1) as f64
    ));

    let mut results = vec![ingest(&sluice, &input, &tmp.join("sluice-out"))?];
    if !args.no_baselines {
        results.extend(baselines(&input, &tmp.join("baselines"))?);
    }

    let batch = tmp.join("batch.ndjson");
    generate(&sluice, args.batch_records, &batch)?;
    let batch_bytes = pad_records(&batch, args.batch_bytes)?;
    let (_, usage) = measure::run_measured(
        &sluice,
        &strings(&[
            "ingest",
            "--input",
            &batch.display().to_string(),
            "--out",
            &tmp.join("batch-out").display().to_string(),
            "--batch-size",
            &args.batch_records.to_string(),
            "--json",
        ]),
    )?;

    let duckdb = results
        .iter()
        .find(|r| r.tool.starts_with("DuckDB") && r.error.is_none())
        .map(Measurement::per_core);
    if args.json {
        print_json(args, input_bytes, &results, duckdb, batch_bytes, &usage);
    } else {
        print_table(args, input_bytes, &results, duckdb, batch_bytes, &usage);
    }
    Ok(())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(ToString::to_string).collect()
}

fn generate(sluice: &Path, records: u64, out: &Path) -> Result<()> {
    util::run(
        Command::new(sluice)
            .args(["gen", "--records", &records.to_string(), "--out"])
            .arg(out)
            .stdout(Stdio::null()),
    )
}

fn ingest(sluice: &Path, input: &Path, out: &Path) -> Result<Measurement> {
    let (stdout, usage) = measure::run_measured(
        sluice,
        &strings(&[
            "ingest",
            "--input",
            &input.display().to_string(),
            "--out",
            &out.display().to_string(),
            "--json",
        ]),
    )?;
    let summary = util::last_json_object(&stdout).context("reading `sluice ingest --json`")?;
    let records = summary["records"]
        .as_u64()
        .context("`sluice ingest --json` has no numeric `records`")?;
    Ok(Measurement {
        tool: "sluice ingest".to_string(),
        records,
        elapsed_s: summary["elapsed_s"].as_f64().unwrap_or(usage.wall_s),
        cpu_s: summary["cpu_s"].as_f64().unwrap_or(usage.cpu_s),
        bytes_out: summary["bytes_out"].as_u64(),
        error: None,
    })
}

fn baselines(input: &Path, out: &Path) -> Result<Vec<Measurement>> {
    let venv = venv::ensure_venv()?;
    let stdout = util::output(
        Command::new(venv.python())
            .arg(util::python_file("bench_baselines.py"))
            .arg(input)
            .arg(out)
            .stdout(Stdio::piped()),
    )?;
    let all = util::last_json_object(&stdout).context("reading bench_baselines.py output")?;
    let mut results = Vec::new();
    for (key, label) in [
        ("duckdb", "DuckDB (1 thread)"),
        ("pyarrow", "pyarrow (1 thread)"),
    ] {
        let v = &all[key];
        if v.is_null() {
            continue;
        }
        results.push(Measurement {
            tool: label.to_string(),
            records: v["records"].as_u64().unwrap_or(0),
            elapsed_s: v["elapsed_s"].as_f64().unwrap_or(0.0),
            cpu_s: v["cpu_s"].as_f64().unwrap_or(0.0),
            bytes_out: v["bytes_out"].as_u64(),
            error: v["error"].as_str().map(ToString::to_string),
        });
    }
    Ok(results)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn table_row(r: &Measurement, duckdb: Option<f64>) -> Vec<String> {
    if let Some(e) = &r.error {
        let mut row = vec![r.tool.clone()];
        row.extend(std::iter::repeat_n(String::new(), 7));
        row.push(format!(
            "failed: {}",
            e.chars().take(90).collect::<String>()
        ));
        return row;
    }
    vec![
        r.tool.clone(),
        r.records.to_string(),
        format!("{:.2}", r.elapsed_s),
        format!("{:.2}", r.cpu_s),
        format!("{:.0}", r.records as f64 / r.elapsed_s.max(1e-9)),
        format!("{:.0}", r.per_core()),
        duckdb.map_or_else(String::new, |d| format!("{:.2}x", r.per_core() / d)),
        r.bytes_out
            .map_or_else(String::new, |b| format!("{:.1} MB", b as f64 / 1e6)),
        String::new(),
    ]
}

/// Pads each JSON object line of `path` with a `"pad"` string field so the file reaches about
/// `target` bytes (generated records are ~400 bytes; a full Kinesis batch is up to 6 MB).
/// Returns the new size. Lines are left as they are when they are already large enough.
fn pad_records(path: &Path, target: u64) -> Result<u64> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let size = text.len() as u64;
    if lines.is_empty() || size >= target {
        return Ok(size);
    }
    let extra = ((target - size) / lines.len() as u64).saturating_sub(10) as usize;
    let mut out = String::with_capacity(target as usize + lines.len());
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for line in lines {
        match line.trim_end().strip_suffix('}') {
            Some(body) if extra > 0 => {
                out.push_str(body);
                out.push_str(",\"pad\":\"");
                for _ in 0..extra {
                    // xorshift: hex digits that do not compress away.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    out.push(char::from(b"0123456789abcdef"[(state & 15) as usize]));
                }
                out.push_str("\"}");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    fs::write(path, &out).with_context(|| format!("writing {}", path.display()))?;
    Ok(out.len() as u64)
}

fn print_table(
    args: &BenchArgs,
    input_bytes: u64,
    results: &[Measurement],
    duckdb: Option<f64>,
    batch_bytes: u64,
    usage: &Usage,
) {
    let rows: Vec<Vec<String>> = results.iter().map(|r| table_row(r, duckdb)).collect();
    println!();
    println!(
        "NDJSON -> Parquet (zstd), {} records, {:.1} MB input",
        args.records,
        input_bytes as f64 / 1e6
    );
    print!(
        "{}",
        util::table(
            &[
                "tool",
                ">records",
                ">seconds",
                ">cpu s",
                ">records/s",
                ">records/s/core",
                ">vs DuckDB",
                ">output",
                "note",
            ],
            &rows
        )
    );
    if let Some(sluice) = results.first() {
        let verdict = if sluice.per_core() >= INGEST_TARGET_PER_CORE {
            "meets"
        } else {
            "below"
        };
        println!("target: >= {INGEST_TARGET_PER_CORE:.0} records/s/core for ingest ({verdict})");
    }
    let verdict = if usage.max_rss_bytes < RSS_TARGET_BYTES {
        "meets"
    } else {
        "above"
    };
    println!(
        "peak RSS of `sluice ingest` on one batch ({} records, {:.1} MB): {:.1} MiB (target < {} MiB: {verdict})",
        args.batch_records,
        batch_bytes as f64 / 1e6,
        mib(usage.max_rss_bytes),
        RSS_TARGET_BYTES / (1024 * 1024)
    );
}

fn print_json(
    args: &BenchArgs,
    input_bytes: u64,
    results: &[Measurement],
    duckdb: Option<f64>,
    batch_bytes: u64,
    usage: &Usage,
) {
    let tools: Vec<Value> = results
        .iter()
        .map(|r| {
            if let Some(error) = &r.error {
                return json!({ "tool": r.tool, "error": error });
            }
            json!({
                "tool": r.tool,
                "records": r.records,
                "elapsed_s": r.elapsed_s,
                "cpu_s": r.cpu_s,
                "records_per_sec": r.records as f64 / r.elapsed_s.max(1e-9),
                "records_per_sec_per_core": r.per_core(),
                "ratio_vs_duckdb": duckdb.map(|d| r.per_core() / d),
                "bytes_out": r.bytes_out,
            })
        })
        .collect();
    let out = json!({
        "records": args.records,
        "input_bytes": input_bytes,
        "tools": tools,
        "batch": {
            "records": args.batch_records,
            "input_bytes": batch_bytes,
            "peak_rss_bytes": usage.max_rss_bytes,
            "wall_s": usage.wall_s,
            "cpu_s": usage.cpu_s,
        },
        "targets": {
            "ingest_records_per_sec_per_core": INGEST_TARGET_PER_CORE,
            "batch_peak_rss_bytes": RSS_TARGET_BYTES,
        },
    });
    println!("{out}");
}
