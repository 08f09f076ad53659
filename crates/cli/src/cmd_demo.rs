//! `sluice demo`: the pipeline on the embedded default (an in-process stream and a local
//! directory), over synthetic multi-tenant traffic with an incident in it.
//!
//! Traffic is replayed minute by minute, as the deployed pipeline would see it: each minute is
//! put on the stream, every shard is drained in Lambda-sized batches through ingest (Parquet)
//! and aggregate (window partials), then the evaluator runs on the windows that have closed:
//! it merges partials, writes metrics, runs the example rules (WebAssembly, in the sandbox) and
//! delivers signed webhooks to a receiver on 127.0.0.1, which the demo prints as alerts arrive.
//!
//! The incident tenant's JSON records go through the front door (a key made for it, the router
//! on 127.0.0.1, `POST /v1/ingest`; see [`crate::demo_door`]) onto the same stream; its plain
//! text lines, the deliberately malformed records and the other tenants' records are put on the
//! stream directly, as trusted producers do.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use sluice_core::aggregate::{aggregate_records, store_partials};
use sluice_core::embedded_stream::EmbeddedStream;
use sluice_core::evaluate::{EvaluateConfig, Evaluator, WindowReport};
use sluice_core::normalize::timestamp::format_rfc3339_ms;
use sluice_core::synth::{Generator, Incident, Shape, SynthConfig, TENANTS};
use sluice_core::window::{WindowAggregator, WindowConfig};
use sluice_core::{BlobStore as _, IngestPipeline, IngestStats, LocalDirStore};
use sluice_notify::receiver::{Received, Receiver};
use sluice_rules::tenant_rules::StoreRuleRunner;
use sluice_rules::{EngineConfig, Host, Policy};

use crate::report;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Output directory. What an earlier demo wrote there (logs, dead letters, windows, metrics,
    /// alerts, tenant configuration) is replaced; rules uploaded to it are kept.
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
    /// End of the hour of traffic, as RFC 3339 (`2026-11-26T12:00:00Z`) [default: now]. The
    /// hour starts on a window boundary, so the windows and alerts depend only on the seed and
    /// the other options, not on the second the demo starts in.
    #[arg(long, value_parser = parse_until)]
    until: Option<i64>,
    /// Print one JSON summary line at the end instead of tables.
    #[arg(long)]
    json: bool,
    /// Directory with the built rule components (`threshold.wasm`, `new_pattern.wasm`).
    #[arg(long, default_value_os_t = crate::demo_rules::default_rules_dir())]
    rules_dir: PathBuf,
    /// Directory with the example rules' manifests (`<rule>/rule.toml`), to try edited ones
    /// [default: the manifests built into sluice]
    #[arg(long)]
    examples_dir: Option<PathBuf>,
}

const SLICES: usize = 60;

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    clear_previous_output(&args.out)?;
    let window_config = WindowConfig::default();
    let start_ms = traffic_start(args.until.unwrap_or_else(report::now_ms), &window_config);
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
        shape: Shape::Uniform,
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
    let host = Host::new(EngineConfig::default()).context("starting the rules engine")?;
    let receiver = runtime
        .block_on(Receiver::start(WEBHOOK_SECRET))
        .context("starting the demo webhook receiver")?;
    let tenants: Vec<&str> = TENANTS
        .iter()
        .copied()
        .take(args.tenants.clamp(1, 8))
        .collect();
    let mut installed = 0;
    for tenant in &tenants {
        let statuses = runtime.block_on(crate::demo_rules::install(
            &host,
            &store,
            &args.rules_dir,
            args.examples_dir.as_deref(),
            tenant,
        ))?;
        for (rule, status) in &statuses {
            if !status.accepted() {
                anyhow::bail!(
                    "rule {rule} was rejected: {}",
                    status.reason.as_deref().unwrap_or("?")
                );
            }
        }
        installed = statuses.len();
        runtime.block_on(configure_tenant(&store, tenant, &receiver.url()))?;
    }
    if !args.json {
        if installed == 0 {
            println!(
                "no rule components in {} (cargo xtask demo builds them): running without rules\n",
                args.rules_dir.display()
            );
        } else {
            println!(
                "rules: {} per tenant (WebAssembly, sandboxed); webhooks to {}\n",
                crate::demo_rules::DEMO_RULES.map(|r| r.name).join(", "),
                receiver.url()
            );
        }
    }
    let runner = StoreRuleRunner::new(&host, &store, Policy::default());
    // The demo's receiver listens on 127.0.0.1: loopback is allowed here, and only here and
    // in the local runner (docs/ARCHITECTURE.md §10).
    let http = sluice_notify::HttpPoster::allowing_loopback()?;
    let evaluator = Evaluator {
        data: &store,
        rules_store: &store,
        runner: &runner,
        http: &http,
        config: EvaluateConfig {
            window: window_config.clone(),
            max_windows_per_run: 1000,
            ..EvaluateConfig::default()
        },
    };
    let stream = Arc::new(Mutex::new(EmbeddedStream::new(args.shards)));
    let mut door = runtime.block_on(crate::demo_door::DemoDoor::start(
        &args.out,
        &incident.tenant,
        Arc::clone(&stream),
    ))?;
    if !args.json {
        println!(
            "front door: {} (tenant {}: its JSON records go through POST /v1/ingest)",
            door.url, door.tenant
        );
        println!(
            "{}\nSend one more record while the demo runs:\n  {}\n",
            crate::cmd_tenants::keys::shown_once(&door.key),
            door.curl()
        );
    }
    let lock = || {
        stream
            .lock()
            .map_err(|_| anyhow::anyhow!("the embedded stream is poisoned"))
    };
    let progress = if args.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(args.records as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} records {per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    };
    let started = Instant::now();
    let mut total = IngestStats::default();
    let mut alerts = AlertLog::default();
    let mut windows_evaluated = 0usize;
    let mut events = Generator::new(config).peekable();
    let slice_ms = 3_600_000 / SLICES as i64;
    for slice in 0..SLICES {
        let slice_start = start_ms + slice as i64 * slice_ms;
        let slice_end = slice_start + slice_ms;
        while let Some(event) = events.next_if(|e| e.ts_ms < slice_end || slice == SLICES - 1) {
            if through_door(&event, &door.tenant) {
                runtime.block_on(door.send(&event.payload, event.ts_ms))?;
            } else {
                lock()?.put(&event.partition_key, event.payload, event.ts_ms + 150);
            }
        }
        // The slice's records are on the stream once the door has answered.
        runtime.block_on(door.flush())?;
        let shards = lock()?.shard_count();
        for shard in 0..shards {
            let mut aggregator = WindowAggregator::new(window_config.clone());
            let shard_id = format!("shardId-{shard:012}");
            loop {
                let batch = lock()?.take_batch(shard, args.batch_size);
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
                aggregate_records(pipeline.config(), &mut aggregator, &batch, slice_end);
                progress.inc(outcome.stats.records);
                total.absorb(&outcome.stats);
            }
            runtime
                .block_on(store_partials(
                    &store,
                    &aggregator.drain(),
                    aggregator.config().tenant_buckets,
                    &shard_id,
                    &format!("{slice_start:013}"),
                ))
                .context("writing window partials")?;
        }
        // Every shard's partials of what arrived before the slice's end are stored by now.
        let run = runtime
            .block_on(evaluator.run_caught_up(slice_end))
            .context("evaluating windows")?;
        windows_evaluated += run.windows.len();
        report_windows(&progress, &run.windows, args.json);
        alerts.show(&progress, receiver.take(), args.json);
        progress.set_message(format!(
            "minute {:>2}/{SLICES}, {} alerts",
            slice + 1,
            alerts.total()
        ));
    }
    // Let the last windows close (end plus allowed lateness) and evaluate them.
    let flush_at =
        start_ms + 3_600_000 + window_config.window_ms + window_config.allowed_lateness_ms;
    let run = runtime
        .block_on(evaluator.run_caught_up(flush_at))
        .context("evaluating the last windows")?;
    windows_evaluated += run.windows.len();
    report_windows(&progress, &run.windows, args.json);
    alerts.show(&progress, receiver.take(), args.json);
    progress.finish_and_clear();
    runtime.block_on(door.stop())?;
    let elapsed = started.elapsed().as_secs_f64();
    // The incident tenant's windows and alerts as charts, from what the pipeline stored.
    let report_path = args.out.join("report.html");
    let report = runtime
        .block_on(crate::cmd_report::load(
            &store,
            "",
            &incident.tenant,
            None,
            None,
            args.out.display().to_string(),
        ))
        .context("reading the stored windows for the report")?;
    crate::cmd_report::write(&report, &report_path)?;
    // Ingest is over: the hours before the traffic's end are closed (no lateness to wait for),
    // so they go to the compacted tier and the last one stays recent (docs/ARCHITECTURE.md §11).
    let tiers = runtime.block_on(crate::tiers::compact_and_measure(
        &store,
        start_ms + 3_600_000,
        0,
    ))?;

    if args.json {
        let mut summary = report::ingest_json(&total, elapsed);
        summary["rejected_by_reason"] = serde_json::to_value(&total.rejected)?;
        summary["rejected"] = total.rejected_total().into();
        summary["out"] = args.out.display().to_string().into();
        summary["windows_evaluated"] = windows_evaluated.into();
        summary["alerts_firing"] = alerts.firing.into();
        summary["alerts_resolved"] = alerts.resolved.into();
        summary["report"] = report_path.display().to_string().into();
        summary["front_door"] = door.json();
        summary["tiers"] = tiers.json();
        println!("{summary}");
        return Ok(());
    }
    println!("{}", report::ingest_summary(&total, elapsed));
    println!(
        "front door: {} records of {} sent through POST /v1/ingest, {} accepted",
        report::count(door.records),
        door.tenant,
        report::count(door.accepted)
    );
    println!(
        "windows evaluated: {windows_evaluated}; notifications received: {} firing, {} resolved (signatures verified: {})",
        alerts.firing, alerts.resolved, alerts.all_signed
    );
    let mut tenants = report::table(&["tenant", "rows"]);
    for (tenant, rows) in &total.tenants {
        tenants.add_row(vec![
            comfy_table::Cell::new(tenant),
            report::right(report::count(*rows)),
        ]);
    }
    println!("{tenants}");
    println!(
        "ingest wrote {} objects: one Parquet object per batch under raw/, and a dead-letter object for batches with rejected records",
        report::count(total.objects)
    );
    tiers.print();
    println!(
        "\nReport of {} (charts, alert bands, log patterns): {}",
        incident.tenant,
        report_path.display()
    );
    print_next_steps(&args.out);
    println!(
        "Serve the front door on this directory (the key above works there too):\n  sluice serve --data {} --listen 127.0.0.1:8080",
        args.out.display()
    );
    Ok(())
}

/// Whether a record goes through the front door: the door's tenant's well-formed JSON records
/// (its plain text lines and malformed records are put on the stream directly).
fn through_door(event: &sluice_core::synth::SynthEvent, tenant: &str) -> bool {
    !event.malformed
        && event.payload.first() == Some(&b'{')
        && event
            .partition_key
            .split_once('/')
            .is_some_and(|(t, _)| t == tenant)
}

/// Where the hour of traffic ending at `until_ms` starts: on the window boundary at or before
/// `until_ms`, minus an hour. Minute slices then line up with windows, and the same seed puts
/// the same events in the same windows whenever the demo runs.
fn traffic_start(until_ms: i64, window: &WindowConfig) -> i64 {
    window.window_start(until_ms) - 3_600_000
}

fn parse_until(text: &str) -> Result<i64, String> {
    sluice_core::normalize::timestamp::parse_rfc3339_ms(text)
        .ok_or_else(|| format!("not an RFC 3339 time (like 2026-11-26T12:00:00Z): {text}"))
}

/// The secret the demo's webhook receiver verifies signatures with.
const WEBHOOK_SECRET: &[u8] = b"sluice-demo-secret";

/// Points the tenant's webhook at the demo receiver, and lowers the example rules' minimum
/// counts to the demo's traffic (about 90 events per service and minute).
async fn configure_tenant(store: &LocalDirStore, tenant: &str, url: &str) -> anyhow::Result<()> {
    let config = format!(
        "[[webhooks]]\nurl = \"{url}\"\nsecret = \"{}\"\n\n[rules.threshold]\nfor_windows = 2\nparams = {{ min_count = 30 }}\n\n[rules.new-pattern]\nparams = {{ new_levels = [\"fatal\"], spike_min_count = 10, warmup_windows = 3 }}\n",
        String::from_utf8_lossy(WEBHOOK_SECRET)
    );
    store
        .put(
            &format!("tenants/{tenant}.toml"),
            config.into(),
            "application/toml",
        )
        .await
        .context("writing the tenant configuration")?;
    Ok(())
}

/// One line per evaluated window: events, and the tenant with the highest error rate.
fn report_windows(progress: &ProgressBar, reports: &[WindowReport], quiet: bool) {
    if quiet {
        return;
    }
    for w in reports.iter().filter(|w| !w.tenants.is_empty()) {
        let events: u64 = w.tenants.iter().map(|t| t.summary.totals().0).sum();
        let worst = w
            .tenants
            .iter()
            .map(|t| (t.tenant.as_str(), t.summary.totals()))
            .max_by(|a, b| a.1.1.total_cmp(&b.1.1));
        if let Some((tenant, (_, rate, p99))) = worst {
            let errors: Vec<String> = w
                .tenants
                .iter()
                .flat_map(|t| {
                    t.rule_errors
                        .iter()
                        .map(|(r, e)| format!("{}/{r}: {e}", t.tenant))
                })
                .collect();
            say(
                progress,
                format!(
                    "  window {}  {:>6} events  worst: {tenant:<8} error rate {:>5.1}%  p99 {:>6.0} ms{}",
                    &format_rfc3339_ms(w.start_ms)[11..16],
                    report::count(events),
                    rate * 100.0,
                    p99,
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!("  rule errors: {}", errors.join("; "))
                    }
                ),
            );
        }
    }
}

/// Prints above the progress bar, or plainly when there is none (not a terminal).
fn say(progress: &ProgressBar, line: String) {
    if progress.is_hidden() {
        println!("{line}");
    } else {
        progress.println(line);
    }
}

/// Alerts as the receiver got them.
#[derive(Debug, Default)]
struct AlertLog {
    firing: usize,
    resolved: usize,
    all_signed: bool,
    seen: usize,
}

impl AlertLog {
    fn total(&self) -> usize {
        self.firing + self.resolved
    }

    fn show(&mut self, progress: &ProgressBar, received: Vec<Received>, quiet: bool) {
        if self.seen == 0 {
            self.all_signed = true;
        }
        for r in received {
            self.seen += 1;
            self.all_signed &= r.signature_valid;
            for a in &r.payload.alerts {
                let firing = a.status == "firing";
                if firing {
                    self.firing += 1;
                } else {
                    self.resolved += 1;
                }
                if quiet {
                    continue;
                }
                let label = |k: &str| a.labels.get(k).map_or("", String::as_str);
                let clock = |t: &'_ str| t.get(11..16).unwrap_or(t).to_owned();
                let summary = a.annotations.get("summary").map_or("", String::as_str);
                let signed = if r.signature_valid { "ok" } else { "INVALID" };
                let alert = format!(
                    "{} {:<8} [{}] {}",
                    label("severity"),
                    label("tenant"),
                    label("alertname"),
                    label("key"),
                );
                // `startsAt` is when the rule first returned the alert (a `for` later it fires);
                // a resolved alert carries the summary of its last firing evaluation, as
                // Alertmanager's do, so it is shown as that and not as the current state.
                let line = if firing {
                    format!(
                        "  >> FIRING   {alert}: {summary}  (since {}, signed: {signed})",
                        clock(&a.starts_at)
                    )
                } else {
                    format!(
                        "  << RESOLVED {alert}  (at {}; last firing: {summary}; signed: {signed})",
                        clock(&a.ends_at)
                    )
                };
                say(progress, line);
            }
        }
    }
}

/// What the demo writes and replaces on every run: the evaluator's position and alert state
/// among them, or a second run would take the first one's windows as already evaluated.
const REPLACED_PREFIXES: [&str; 9] = [
    "raw",
    "logs",
    "control/compaction",
    "dlq",
    "windows",
    "metrics",
    "patterns",
    "alerts",
    "tenants",
];
/// Files an earlier demo wrote, replaced as the prefixes are.
const REPLACED_FILES: [&str; 1] = ["report.html"];

/// Removes what an earlier demo wrote ([`REPLACED_PREFIXES`], [`REPLACED_FILES`]; uploaded
/// rules, their compiled cache, the records under `control/` and the key pepper under
/// `.sluice/` stay), refusing to touch a directory with
/// anything else in it.
fn clear_previous_output(out: &Path) -> anyhow::Result<()> {
    if !out.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let known = REPLACED_PREFIXES
            .iter()
            .chain(&REPLACED_FILES)
            .chain(&["rules", "compiled", "control", ".sluice"]);
        if !known.into_iter().any(|k| name == *k) {
            anyhow::bail!(
                "{} contains {:?}, which sluice did not write; choose an empty or sluice-only --out",
                out.display(),
                name
            );
        }
    }
    for prefix in REPLACED_PREFIXES {
        let dir = out.join(prefix);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    for file in REPLACED_FILES {
        let path = out.join(file);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

fn print_next_steps(out: &Path) {
    // `cargo xtask demo` names its venv's Python, which has DuckDB and pyarrow; a bare
    // `python3` may have neither.
    let venv_python = std::env::var_os("SLUICE_PYTHON").map(PathBuf::from);
    let python = venv_python
        .as_ref()
        .map_or_else(|| "python3".to_owned(), |p| p.display().to_string());
    let both = crate::tiers::union_query(&out.display().to_string());
    println!(
        "\nQuery both tiers with DuckDB, each row once (compacted rows before the watermark, raw rows from it on):"
    );
    println!(
        "  {python} -c \"import duckdb; duckdb.sql(\\\"SELECT tenant, service, count(*) AS n, \
         count(*) FILTER (WHERE http_status >= 500) AS e5xx, round(quantile_cont(latency_ms, 0.99), 1) AS p99_ms \
         FROM ({both}) GROUP BY ALL ORDER BY e5xx DESC LIMIT 5\\\").show()\""
    );
    println!("or check both tiers with pyarrow and DuckDB:");
    println!(
        "  {python} xtask/python/verify_parquet.py {} --tier all",
        out.display()
    );
    if venv_python.is_none() {
        println!(
            "  (both need duckdb and pyarrow: `cargo xtask venv` sets up a venv with them and prints its python)"
        );
    }
    println!(
        "Rejected records, with their reasons: {}/dlq/ (gzip NDJSON)",
        out.display()
    );
}
