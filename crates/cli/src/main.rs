//! `sluice`: the command line of the sluice log pipeline.
//!
//! - `sluice agent`: follow log files (or stdin) and ship every line to a Kinesis stream
//!   (the library part, [`sluice_cli::agent`]).
//! - `sluice demo`: the whole pipeline on the embedded default, on synthetic traffic with an
//!   incident in it.
//! - `sluice ingest`: the ingest core over a file or stdin, into a local directory.
//! - `sluice local up|run`: the pipeline on one machine against any Kinesis/S3/SQS endpoint,
//!   with an event-source-mapping runner that has Lambda's semantics (`sluice-local`).
//! - `sluice gen`: synthetic NDJSON log traffic, for benchmarks and experiments.
//! - `sluice rules`: scaffold, build, check, test and upload tenant alert rules.
//! - `sluice alerts redrive`: re-send notifications that could not be delivered.
//! - `sluice backtest`: replay a rule over stored window metrics.
//! - `sluice report`: a tenant's windows and alerts as charts, in one self-contained HTML file.
//! - `sluice serve`: the front door (tenant-key authenticated HTTP intake) on 127.0.0.1.
//! - `sluice tenants`: tenants, their API keys and their limits.

mod cmd_alerts;
mod cmd_backtest;
mod cmd_compact;
mod cmd_demo;
mod cmd_gen;
mod cmd_ingest;
mod cmd_local;
mod cmd_report;
mod cmd_rules;
mod cmd_serve;
mod cmd_storage_cost;
mod cmd_tenants;
mod demo_door;
mod demo_rules;
mod line_reader;
mod report;
mod stdout_closed;
mod stores;
mod tenant_api;
mod tiers;
mod ui;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Multi-tenant log pipeline: Kinesis → Parquet on S3, windowed metrics, WASM alert rules."
)]
struct Cli {
    /// Log filter, e.g. `info` or `sluice_core=debug` (also RUST_LOG).
    #[arg(long, global = true, env = "SLUICE_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Follow log files (tail -F) or stdin and ship each line to a Kinesis stream.
    #[command(after_help = sluice_cli::agent::cli::AFTER_HELP)]
    Agent(sluice_cli::agent::cli::AgentArgs),
    /// Run the whole pipeline on the embedded default (no AWS) over synthetic traffic with an incident.
    Demo(cmd_demo::DemoArgs),
    /// Ingest a file (or stdin) of records, one per line, into Parquet under a local directory.
    Ingest(cmd_ingest::IngestArgs),
    /// The pipeline on one machine against any endpoint: `local up`, then `local run`.
    #[command(long_about = cmd_local::LOCAL_ABOUT)]
    Local(cmd_local::LocalArgs),
    /// One compaction pass over a data directory: closed raw hours into one Parquet object per
    /// tenant-hour under logs/.
    Compact(cmd_compact::CompactArgs),
    /// The S3 request cost of the storage layout for a day of skewed tenants (`cargo xtask bench`).
    #[command(name = "storage-cost", hide = true)]
    StorageCost(cmd_storage_cost::StorageCostArgs),
    /// Generate synthetic NDJSON log records (about 400 bytes each).
    Gen(cmd_gen::GenArgs),
    /// Tenant alert rules (WebAssembly components): new, build, check, test, upload.
    Rules(cmd_rules::RulesArgs),
    /// Alert notifications: re-send the ones that could not be delivered.
    Alerts(cmd_alerts::AlertsArgs),
    /// Replay a rule over a tenant's stored window metrics: when would it have fired and resolved?
    #[command(long_about = cmd_backtest::LONG_ABOUT)]
    Backtest(cmd_backtest::BacktestArgs),
    /// A tenant's windows and alerts as charts (error rate, 5xx, latency, alert bands, log
    /// patterns) in one self-contained HTML file.
    Report(cmd_report::ReportArgs),
    /// The front door on 127.0.0.1: NDJSON, OTLP, Loki, Elasticsearch bulk and Splunk HEC
    /// intake, authenticated by tenant keys.
    Serve(cmd_serve::ServeArgs),
    /// Tenants, their API keys (create, list, revoke) and their limits.
    #[command(long_about = cmd_tenants::TENANTS_ABOUT)]
    Tenants(cmd_tenants::TenantsArgs),
    /// The tenant's configuration through the API (webhooks, silences, rule overrides).
    Config(tenant_api::ConfigArgs),
}

fn main() -> std::process::ExitCode {
    stdout_closed::exit_quietly_when_printing_fails();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `sluice gen | head`: the reader has all it wanted.
        Err(e) if e.downcast_ref::<stdout_closed::StdoutClosed>().is_some() => {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{}", error_report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, laid out as anyhow's `{:?}` does but without the stack backtrace
/// anyhow adds when `RUST_BACKTRACE` is set: a user's mistake (a missing file, a bad flag) is
/// not a bug, and panics still get their backtrace.
fn error_report(e: &anyhow::Error) -> String {
    let mut report = format!("Error: {e}\n");
    let causes: Vec<String> = e.chain().skip(1).map(ToString::to_string).collect();
    if !causes.is_empty() {
        report.push_str("\nCaused by:\n");
    }
    for (i, cause) in causes.iter().enumerate() {
        match causes.len() {
            1 => report.push_str(&format!("    {cause}\n")),
            _ => report.push_str(&format!("    {i}: {cause}\n")),
        }
    }
    report
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Agent(args) => sluice_cli::agent::cli::run(args),
        Command::Demo(args) => cmd_demo::run(args),
        Command::Ingest(args) => cmd_ingest::run(args),
        Command::Local(args) => cmd_local::run(args),
        Command::Gen(args) => cmd_gen::run(args),
        Command::Compact(args) => cmd_compact::run(args),
        Command::StorageCost(args) => cmd_storage_cost::run(args),
        Command::Rules(args) => cmd_rules::run(args),
        Command::Alerts(args) => cmd_alerts::run(args),
        Command::Backtest(args) => cmd_backtest::run(args),
        Command::Report(args) => cmd_report::run(args),
        Command::Serve(args) => cmd_serve::run(args),
        Command::Tenants(args) => cmd_tenants::run(args),
        Command::Config(args) => tenant_api::run_config(args),
    }
}
