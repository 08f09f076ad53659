//! `cargo xtask bench`: sluice ingest against DuckDB (and pyarrow), one thread each, on the
//! same generated NDJSON file, plus the peak RSS of ingesting one full Kinesis batch.
//!
//! Throughput per core is records divided by CPU seconds (user + system, all threads), so a
//! tool that uses more than one core gains nothing from it. The conversions run `--runs` times,
//! sluice and the baselines taking turns, and each tool's median run (by CPU time) is reported
//! with the spread and the ratio of each round: one run of each moves by several percent.
//! sluice's own `cpu_s`/`elapsed_s` from `sluice ingest --json` are used when present (they
//! exclude process start-up); else the process's rusage. The baselines time only the conversion inside Python.
//! Peak RSS is measured as described in [`crate::measure`].
//!
//! "agent → emulator": `sluice agent --json` sends a generated file to a fresh Kinesis stream on
//! a moto server started for the run, once with plain records and once with KPL aggregation;
//! records/s and MiB/s are the agent's own (first line read to last record acknowledged). One
//! call in flight (`--concurrency 1`): moto loses records written to a shard concurrently, and
//! a benchmark that loses records measures nothing. Those rates are moto's speed more than the
//! agent's (against Kinesis the network and the shard limits bound them instead), so the
//! agent's CPU time is measured too ([`crate::measure`]): records per CPU second is its cost.
//! Then `sluice local run --until-idle` takes the plain stream through ingest, aggregate and
//! evaluate (10 s windows): its CPU time per record is the runner's end-to-end cost on a core.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::emulator::{self, Emulator, Kind};
use crate::measure::{self, Usage};
use crate::util::{self, note};
use crate::venv;

/// Targets from docs/ARCHITECTURE.md §6.
const INGEST_TARGET_PER_CORE: f64 = 1_000_000.0;
const RSS_TARGET_BYTES: u64 = 64 * 1024 * 1024;
const RATIO_TARGET: f64 = 3.0;

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Records in the generated input file.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Rounds of conversions (sluice, then the baselines); each tool's median run is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
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
    /// Records sent by `sluice agent` to the emulator (plain, then with KPL aggregation).
    #[arg(long, default_value_t = 50_000)]
    pub agent_records: u64,
    /// Skip the agent → emulator benchmark (it starts a moto server).
    #[arg(long)]
    pub no_agent: bool,
    /// Run the criterion benchmarks instead (`cargo bench -p sluice-core -p sluice-aws -p
    /// sluice-aggregate`: the ingest core, aggregation, and the ingest and aggregate Lambdas'
    /// paths from their event JSON).
    #[arg(long)]
    pub criterion: bool,
    /// Extra arguments for `cargo bench` with --criterion, after `--`.
    #[arg(last = true)]
    pub extra: Vec<String>,
}

/// What the conversions and the batch measured, for printing.
struct Report<'a> {
    args: &'a BenchArgs,
    input_bytes: u64,
    /// Each tool's median run.
    results: &'a [Measurement],
    /// sluice over DuckDB in each round.
    ratios: &'a [f64],
    /// DuckDB's median records/s/core.
    duckdb: Option<f64>,
    batch_bytes: u64,
    /// The one-batch run's usage (peak RSS).
    usage: &'a Usage,
}

#[derive(Debug)]
struct Measurement {
    tool: String,
    records: u64,
    elapsed_s: f64,
    cpu_s: f64,
    bytes_out: Option<u64>,
    error: Option<String>,
    /// CPU seconds of every successful run of this tool, in the order they ran.
    cpu_s_runs: Vec<f64>,
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
                .args([
                    "bench",
                    "-p",
                    "sluice-core",
                    "-p",
                    "sluice-aws",
                    "-p",
                    "sluice-aggregate",
                ])
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

    let mut rounds = Vec::new();
    for round in 1..=args.runs {
        note(format!("round {round} of {}", args.runs));
        let mut results = vec![ingest(&sluice, &input, &fresh_dir(tmp, "sluice-out")?)?];
        if !args.no_baselines {
            results.extend(baselines(&input, &fresh_dir(tmp, "baselines")?)?);
        }
        rounds.push(results);
    }
    let ratios = ratio_per_round(&rounds);
    let results = median_runs(rounds);

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

    let (agent, runner) = if args.no_agent {
        (Vec::new(), None)
    } else {
        let file = tmp.join("agent.ndjson");
        generate(&sluice, args.agent_records, &file)?;
        agent_runs(&sluice, &file, &tmp.join("runner-state"))?
    };

    let duckdb = per_core_of(&results, "DuckDB");
    let report = Report {
        args,
        input_bytes,
        results: &results,
        ratios: &ratios,
        duckdb,
        batch_bytes,
        usage: &usage,
    };
    if args.json {
        print_json(&report, (&agent, runner.as_ref()));
    } else {
        print_table(&report);
        print_agent_table(&agent);
        if let Some(r) = &runner {
            print_runner(r);
        }
    }
    Ok(())
}

/// One `sluice agent` run into the emulator.
#[derive(Debug)]
struct AgentRun {
    mode: &'static str,
    /// The agent's `--json` report.
    report: Value,
    /// The agent process's CPU time and peak RSS.
    usage: Usage,
}

impl AgentRun {
    fn number(&self, key: &str) -> f64 {
        self.report[key].as_f64().unwrap_or(0.0)
    }

    /// Records per CPU second of the agent itself: its cost, whatever the emulator's speed.
    fn per_cpu_second(&self) -> f64 {
        if self.usage.cpu_s > 0.0 {
            self.number("records_sent") / self.usage.cpu_s
        } else {
            0.0
        }
    }
}

/// Shards of each benchmark stream: moto's cost per record grows with the records already in
/// the shard, so more shards keep it from dominating.
const AGENT_SHARDS: &str = "8";

/// Starts moto, creates a stream per mode, and sends `file` with `sluice agent`, plain and
/// with `--kpl`, measuring the agent process; then runs `sluice local run` over the plain
/// stream ([`runner_run`]).
fn agent_runs(
    sluice: &Path,
    file: &Path,
    state_dir: &Path,
) -> Result<(Vec<AgentRun>, Option<RunnerRun>)> {
    let emulator = Emulator::start(Kind::Moto, false)?;
    let venv = venv::ensure_venv()?;
    let mut runs = Vec::new();
    for (mode, extra) in [("plain", None), ("KPL", Some("--kpl"))] {
        let stream = format!("sluice-bench-agent-{}", mode.to_ascii_lowercase());
        util::run(
            Command::new(venv.python())
                .args([
                    "-c",
                    CREATE_STREAM,
                    &emulator.endpoint,
                    &stream,
                    AGENT_SHARDS,
                ])
                .stdout(Stdio::null()),
        )
        .with_context(|| format!("creating the stream {stream} on moto"))?;
        // `env` sets the emulator's credentials and execs the agent, so the measured process
        // is the agent itself.
        let mut args: Vec<String> = emulator::sdk_env(&emulator.endpoint)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        args.push(sluice.display().to_string());
        args.extend(strings(&[
            "agent",
            "--stream",
            &stream,
            "--no-follow",
            "--quiet",
            "--json",
            "--concurrency",
            "1",
        ]));
        args.extend(extra.map(ToString::to_string));
        args.push(file.display().to_string());
        let (stdout, usage) = measure::run_measured(Path::new("env"), &args)?;
        let report = util::last_json_object(&stdout).context("reading `sluice agent --json`")?;
        note(format!(
            "agent ({mode}): {} records in {:.2}s, {:.2} CPU s",
            report["records_sent"],
            report["elapsed_s"].as_f64().unwrap_or(0.0),
            usage.cpu_s
        ));
        runs.push(AgentRun {
            mode,
            report,
            usage,
        });
    }
    let runner = runner_run(
        sluice,
        &emulator.endpoint,
        "sluice-bench-agent-plain",
        state_dir,
    )?;
    drop(emulator);
    Ok((runs, Some(runner)))
}

/// One `sluice local run --until-idle` over a stream the agent filled.
#[derive(Debug)]
struct RunnerRun {
    /// The runner's `--json` report.
    report: Value,
    /// The runner process's CPU time and peak RSS.
    usage: Usage,
}

impl RunnerRun {
    /// Records through ingest (each also goes through aggregate).
    fn records(&self) -> f64 {
        self.report["metrics"]["mappings"]["ingest"]["records"]
            .as_f64()
            .unwrap_or(0.0)
    }

    /// Records per CPU second of the whole runner (both mappings and the evaluator).
    fn per_cpu_second(&self) -> f64 {
        if self.usage.cpu_s > 0.0 {
            self.records() / self.usage.cpu_s
        } else {
            0.0
        }
    }
}

/// `sluice local up` (buckets) and `sluice local run --until-idle` on `stream`, with 10 s
/// windows and evaluate every 2 s, measuring the runner process. Its wall time includes
/// waiting for the last window to close; its CPU time is the cost.
fn runner_run(sluice: &Path, endpoint: &str, stream: &str, state_dir: &Path) -> Result<RunnerRun> {
    let env: Vec<String> = emulator::sdk_env(endpoint)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let target = [
        "--stream",
        stream,
        "--data-bucket",
        "sluice-bench-data",
        "--rules-bucket",
        "sluice-bench-rules",
        "--failure-queue",
        "sluice-bench-failures",
    ];
    let mut up = env.clone();
    up.push(sluice.display().to_string());
    up.extend(strings(&["local", "up", "--json"]));
    up.extend(strings(&target));
    measure::run_measured(Path::new("env"), &up).context("sluice local up")?;
    let mut run = env;
    run.push(sluice.display().to_string());
    run.extend(strings(&["local", "run"]));
    run.extend(strings(&target));
    run.extend(strings(&[
        "--until-idle",
        "--idle-seconds",
        "2",
        "--window-seconds",
        "10",
        "--allowed-lateness-seconds",
        "5",
        "--evaluate-every-seconds",
        "2",
        "--metrics-addr",
        "127.0.0.1:0",
        "--max-runtime-seconds",
        "600",
        "--json",
        "--state-dir",
        &state_dir.display().to_string(),
    ]));
    let (stdout, usage) = measure::run_measured(Path::new("env"), &run)?;
    // The runner prints its report pretty, over several lines: take the last JSON value.
    let report = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .filter_map(Result::ok)
        .last()
        .context("reading `sluice local run --json`: no JSON in its output")?;
    let runner = RunnerRun { report, usage };
    note(format!(
        "local run: {} records in {:.2}s, {:.2} CPU s",
        runner.records(),
        runner.report["elapsed_s"].as_f64().unwrap_or(0.0),
        runner.usage.cpu_s
    ));
    Ok(runner)
}

fn print_runner(r: &RunnerRun) {
    let ingest = &r.report["metrics"]["mappings"]["ingest"];
    println!();
    println!(
        "{}",
        util::table(
            &[
                "sluice local run (moto)",
                "records",
                "rows",
                "dead letters",
                "windows evaluated",
                "wall s",
                "cpu s",
                "records/cpu s",
                "peak RSS",
            ],
            &[vec![
                "ingest + aggregate + evaluate".to_string(),
                format!("{:.0}", r.records()),
                format!("{}", ingest["rows_stored"]),
                format!("{}", ingest["dead_lettered"]),
                format!("{}", r.report["metrics"]["evaluator"]["windows_evaluated"]),
                format!("{:.2}", r.report["elapsed_s"].as_f64().unwrap_or(0.0)),
                format!("{:.2}", r.usage.cpu_s),
                format!("{:.0}", r.per_cpu_second()),
                format!("{:.1} MiB", mib(r.usage.max_rss_bytes)),
            ]],
        )
    );
    println!(
        "the runner's wall time includes waiting for the last window to close; records/cpu s is \
         its cost on one core (every record goes through ingest and aggregate)"
    );
}

/// `python -c CREATE_STREAM ENDPOINT NAME SHARDS`: a stream on the emulator, waited for.
const CREATE_STREAM: &str = r#"
import sys, time
import boto3
endpoint, name, shards = sys.argv[1], sys.argv[2], int(sys.argv[3])
kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
kinesis.create_stream(StreamName=name, ShardCount=shards)
for _ in range(100):
    if kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
        break
    time.sleep(0.1)
"#;

fn print_agent_table(runs: &[AgentRun]) {
    if runs.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                format!("sluice agent ({})", r.mode),
                format!("{:.0}", r.number("records_sent")),
                format!("{:.0}", r.number("kinesis_records")),
                format!("{:.0}", r.number("put_records_calls")),
                format!("{:.2}", r.number("elapsed_s")),
                format!("{:.0}", r.number("records_per_sec")),
                format!("{:.2}", r.number("mib_per_sec")),
                format!("{:.2}", r.usage.cpu_s),
                format!("{:.0}", r.per_cpu_second()),
                format!("{:.1} MiB", mib(r.usage.max_rss_bytes)),
                format!("{:.0}", r.number("failed") + r.number("oversize")),
            ]
        })
        .collect();
    println!();
    println!(
        "agent -> emulator (moto, {AGENT_SHARDS} shards, one PutRecords call in flight; \
         records/s and MiB/s are bound by moto, records/CPU s is the agent's own cost)"
    );
    print!(
        "{}",
        util::table(
            &[
                "mode",
                ">records",
                ">kinesis records",
                ">calls",
                ">seconds",
                ">records/s",
                ">MiB/s",
                ">agent cpu s",
                ">records/cpu s",
                ">peak RSS",
                ">not delivered",
            ],
            &rows
        )
    );
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

/// `tmp/name`, emptied of what an earlier round wrote there.
fn fresh_dir(tmp: &Path, name: &str) -> Result<std::path::PathBuf> {
    let dir = tmp.join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(dir)
}

/// Each tool's median run by CPU time (the upper one of an even count), with every run's CPU
/// seconds; a tool that failed in every round keeps its first failure.
fn median_runs(rounds: Vec<Vec<Measurement>>) -> Vec<Measurement> {
    // Every run of a tool, tools in the order they first ran.
    let mut by_tool: Vec<Vec<Measurement>> = Vec::new();
    for m in rounds.into_iter().flatten() {
        match by_tool.iter_mut().find(|runs| runs[0].tool == m.tool) {
            Some(runs) => runs.push(m),
            None => by_tool.push(vec![m]),
        }
    }
    by_tool
        .into_iter()
        .filter_map(|runs| {
            let (mut ok, failed): (Vec<_>, Vec<_>) =
                runs.into_iter().partition(|m| m.error.is_none());
            if ok.is_empty() {
                return failed.into_iter().next();
            }
            let cpu_s_runs: Vec<f64> = ok.iter().map(|m| m.cpu_s).collect();
            ok.sort_by(|a, b| a.cpu_s.total_cmp(&b.cpu_s));
            let mut median = ok.swap_remove(ok.len() / 2);
            median.cpu_s_runs = cpu_s_runs;
            Some(median)
        })
        .collect()
}

/// sluice's records/s/core over DuckDB's, in each round where both succeeded.
fn ratio_per_round(rounds: &[Vec<Measurement>]) -> Vec<f64> {
    rounds
        .iter()
        .filter_map(|round| Some(per_core_of(round, "sluice")? / per_core_of(round, "DuckDB")?))
        .collect()
}

/// Records/s/core of the tool whose name starts with `prefix`, if it ran and succeeded.
fn per_core_of(results: &[Measurement], prefix: &str) -> Option<f64> {
    results
        .iter()
        .find(|m| m.tool.starts_with(prefix) && m.error.is_none())
        .map(Measurement::per_core)
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
        cpu_s_runs: Vec::new(),
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
            cpu_s_runs: Vec::new(),
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
        spread(&r.cpu_s_runs),
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

/// "median of 3 runs, cpu s 0.77-0.80" (nothing for a single run).
fn spread(cpu_s_runs: &[f64]) -> String {
    if cpu_s_runs.len() < 2 {
        return String::new();
    }
    let min = cpu_s_runs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = cpu_s_runs.iter().copied().fold(0.0, f64::max);
    format!(
        "median of {} runs, cpu s {min:.2}-{max:.2}",
        cpu_s_runs.len()
    )
}

fn print_table(report: &Report<'_>) {
    let rows: Vec<Vec<String>> = report
        .results
        .iter()
        .map(|r| table_row(r, report.duckdb))
        .collect();
    println!();
    println!(
        "NDJSON -> Parquet (zstd), {} records, {:.1} MB input",
        report.args.records,
        report.input_bytes as f64 / 1e6
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
    if let Some(sluice) = report.results.first() {
        let verdict = if sluice.per_core() >= INGEST_TARGET_PER_CORE {
            "meets"
        } else {
            "below"
        };
        println!("target: >= {INGEST_TARGET_PER_CORE:.0} records/s/core for ingest ({verdict})");
        if let Some(duckdb) = report.duckdb {
            let median = sluice.per_core() / duckdb;
            let verdict = if median >= RATIO_TARGET {
                "meets"
            } else {
                "below"
            };
            let rounds: Vec<String> = report.ratios.iter().map(|r| format!("{r:.2}x")).collect();
            let met = report.ratios.iter().filter(|&&r| r >= RATIO_TARGET).count();
            println!(
                "target: >= {RATIO_TARGET}x DuckDB ({verdict}: {median:.2}x median; rounds {}, {met} of {} at or above)",
                rounds.join(" "),
                report.ratios.len()
            );
        }
    }
    let verdict = if report.usage.max_rss_bytes < RSS_TARGET_BYTES {
        "meets"
    } else {
        "above"
    };
    println!(
        "peak RSS of `sluice ingest` on one batch ({} records, {:.1} MB): {:.1} MiB (target < {} MiB: {verdict})",
        report.args.batch_records,
        report.batch_bytes as f64 / 1e6,
        mib(report.usage.max_rss_bytes),
        RSS_TARGET_BYTES / (1024 * 1024)
    );
}

fn print_json(report: &Report<'_>, agent_and_runner: (&[AgentRun], Option<&RunnerRun>)) {
    println!("{}", report_json(report, agent_and_runner));
}

fn report_json(report: &Report<'_>, (agent, runner): (&[AgentRun], Option<&RunnerRun>)) -> Value {
    let tools: Vec<Value> = report
        .results
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
                "ratio_vs_duckdb": report.duckdb.map(|d| r.per_core() / d),
                "bytes_out": r.bytes_out,
                "cpu_s_runs": r.cpu_s_runs,
            })
        })
        .collect();
    json!({
        "records": report.args.records,
        "input_bytes": report.input_bytes,
        "runs": report.args.runs,
        "tools": tools,
        "ratio_vs_duckdb_per_round": report.ratios,
        "batch": {
            "records": report.args.batch_records,
            "input_bytes": report.batch_bytes,
            "peak_rss_bytes": report.usage.max_rss_bytes,
            "wall_s": report.usage.wall_s,
            "cpu_s": report.usage.cpu_s,
        },
        "agent": agent
            .iter()
            .map(|r| {
                json!({
                    "mode": r.mode,
                    "report": r.report,
                    "cpu_s": r.usage.cpu_s,
                    "records_per_cpu_second": r.per_cpu_second(),
                    "peak_rss_bytes": r.usage.max_rss_bytes,
                })
            })
            .collect::<Vec<Value>>(),
        "runner": runner.map(|r| json!({
            "report": r.report,
            "cpu_s": r.usage.cpu_s,
            "records_per_cpu_second": r.per_cpu_second(),
            "peak_rss_bytes": r.usage.max_rss_bytes,
        })),
        "targets": {
            "ingest_records_per_sec_per_core": INGEST_TARGET_PER_CORE,
            "batch_peak_rss_bytes": RSS_TARGET_BYTES,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(tool: &str, cpu_s: f64) -> Measurement {
        Measurement {
            tool: tool.to_string(),
            records: 1_000,
            elapsed_s: cpu_s,
            cpu_s,
            bytes_out: Some(10),
            error: None,
            cpu_s_runs: Vec::new(),
        }
    }

    fn failed(tool: &str, error: &str) -> Measurement {
        Measurement {
            error: Some(error.to_string()),
            ..run(tool, 0.0)
        }
    }

    #[test]
    fn reports_each_tools_median_run_with_every_runs_cpu_time() {
        let rounds = vec![
            vec![run("sluice ingest", 0.9), run("DuckDB (1 thread)", 2.4)],
            vec![run("sluice ingest", 0.7), run("DuckDB (1 thread)", 2.6)],
            vec![run("sluice ingest", 0.8), run("DuckDB (1 thread)", 2.5)],
        ];
        let ratios = ratio_per_round(&rounds);
        let medians = median_runs(rounds);
        assert_eq!(medians.len(), 2);
        assert_eq!(medians[0].tool, "sluice ingest");
        assert_eq!(medians[0].cpu_s, 0.8);
        assert_eq!(medians[0].cpu_s_runs, vec![0.9, 0.7, 0.8]);
        assert_eq!(medians[1].cpu_s, 2.5);
        let expected = [2.4 / 0.9, 2.6 / 0.7, 2.5 / 0.8];
        assert_eq!(ratios.len(), 3);
        for (got, want) in ratios.iter().zip(expected) {
            assert!((got - want).abs() < 1e-9, "{ratios:?}");
        }
        assert_eq!(
            spread(&medians[0].cpu_s_runs),
            "median of 3 runs, cpu s 0.70-0.90"
        );
    }

    #[test]
    fn json_report_names_input_sizes_rounds_and_each_tools_runs() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: BenchArgs,
        }
        let cli = <Cli as clap::Parser>::parse_from(["bench", "--json"]);
        let rounds = vec![
            vec![run("sluice ingest", 0.7), run("DuckDB (1 thread)", 2.2)],
            vec![run("sluice ingest", 0.8), run("DuckDB (1 thread)", 2.1)],
        ];
        let ratios = ratio_per_round(&rounds);
        let results = median_runs(rounds);
        let usage = Usage {
            wall_s: 0.1,
            cpu_s: 0.1,
            max_rss_bytes: 23 << 20,
        };
        let report = Report {
            args: &cli.args,
            input_bytes: 400_000,
            results: &results,
            ratios: &ratios,
            duckdb: per_core_of(&results, "DuckDB"),
            batch_bytes: 6_000,
            usage: &usage,
        };
        let json = report_json(&report, (&[], None));
        assert_eq!(json["records"], 1_000_000);
        assert_eq!(json["input_bytes"], 400_000);
        assert_eq!(json["runs"], 3);
        assert_eq!(json["batch"]["input_bytes"], 6_000);
        assert_eq!(json["batch"]["peak_rss_bytes"], 23 << 20);
        assert_eq!(
            json["ratio_vs_duckdb_per_round"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(json["tools"][0]["tool"], "sluice ingest");
        assert_eq!(json["tools"][0]["cpu_s_runs"], json!([0.7, 0.8]));
    }

    #[test]
    fn a_tool_that_fails_in_every_round_is_reported_once_with_its_error() {
        let rounds = vec![
            vec![
                run("sluice ingest", 0.8),
                failed("pyarrow (1 thread)", "parse error"),
            ],
            vec![
                run("sluice ingest", 0.9),
                failed("pyarrow (1 thread)", "parse error"),
            ],
        ];
        assert!(ratio_per_round(&rounds).is_empty(), "no DuckDB, no ratio");
        let medians = median_runs(rounds);
        assert_eq!(medians.len(), 2);
        assert_eq!(medians[1].error.as_deref(), Some("parse error"));
        assert_eq!(medians[0].cpu_s, 0.9, "the upper median of two runs");
    }
}
