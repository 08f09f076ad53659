//! `sluice local`: the pipeline on one machine against any Kinesis/S3/SQS endpoint (moto,
//! LocalStack, or real AWS with the usual credential chain). The logic lives in `sluice-local`;
//! this module only turns flags into its settings and prints what it reports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use comfy_table::Cell;
use sluice_aws::{AwsSettings, load_sdk_config};
use sluice_core::window::WindowConfig;
use sluice_local::provision::{self, Clients, Resources};
use sluice_local::runner::{RunConfig, Runner, summary_line};
use sluice_local::shard_worker::PollSettings;

pub const LOCAL_ABOUT: &str = "\
Run the whole pipeline on one machine. `up` creates the stream, buckets and on-failure queue;
`run` is the event source mappings (ingest and aggregate, with Lambda's batching, retries,
bisect, partial batch failures, on-failure destination and tumbling windows) plus the evaluate
schedule, calling the functions in-process.

The endpoint comes from --endpoint, else SLUICE_ENDPOINT_URL or AWS_ENDPOINT_URL; with none,
it is real AWS with the usual credential chain.

  eval \"$(cargo xtask emulator up)\"  # moto on a free port of 127.0.0.1; exports AWS_ENDPOINT_URL
                                   # and dummy credentials
  sluice local up --shards 2
  sluice local run --until-idle    # or leave it running; Ctrl-C stops it cleanly";

#[derive(Debug, Args)]
pub struct LocalArgs {
    #[command(subcommand)]
    command: LocalCommand,
}

#[derive(Debug, Subcommand)]
enum LocalCommand {
    /// Create the Kinesis stream, the data and rules buckets and the on-failure SQS queue
    /// (idempotent: what exists is reported as found).
    Up(UpArgs),
    /// Poll every shard and feed ingest and aggregate like Lambda's event source mappings;
    /// run evaluate on its schedule; serve Prometheus /metrics.
    Run(Box<RunArgs>),
}

/// Where and what.
#[derive(Debug, Args)]
struct Target {
    /// Endpoint of Kinesis, S3 and SQS (moto, LocalStack). Default: SLUICE_ENDPOINT_URL,
    /// AWS_ENDPOINT_URL, else real AWS.
    #[arg(long)]
    endpoint: Option<String>,
    /// Region (default: the SDK's chain, else us-east-1).
    #[arg(long)]
    region: Option<String>,
    /// The Kinesis stream.
    #[arg(long, env = "SLUICE_STREAM", default_value = "sluice-logs")]
    stream: String,
    /// The bucket for logs/, dlq/, windows/, metrics/ and alerts/.
    #[arg(long, env = "SLUICE_DATA_BUCKET", default_value = "sluice-data")]
    data_bucket: String,
    /// The bucket for rules/, compiled/ and tenants/.
    #[arg(long, env = "SLUICE_RULES_BUCKET", default_value = "sluice-rules")]
    rules_bucket: String,
    /// The SQS queue that receives batches the mappings give up on.
    #[arg(
        long,
        env = "SLUICE_FAILURE_QUEUE",
        default_value = "sluice-stream-failures"
    )]
    failure_queue: String,
}

impl Target {
    async fn sdk(&self) -> anyhow::Result<aws_config::SdkConfig> {
        let mut settings = AwsSettings::from_env()
            .context("reading the AWS settings from the environment")?
            .with_endpoint(self.endpoint.clone());
        if let Some(region) = &self.region {
            settings = settings.with_region(region.clone());
        }
        Ok(load_sdk_config(&settings).await)
    }
}

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    target: Target,
    /// Shards of the stream when it is created.
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// Skip the on-failure queue: batches given up on are only logged.
    #[arg(long)]
    no_failure_queue: bool,
    /// Checkpoints (one JSON file per mapping and shard); a restart resumes from them.
    #[arg(long, default_value = ".sluice/local")]
    state_dir: PathBuf,
    /// Serve Prometheus /metrics here (loopback only; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_addr: SocketAddr,
    /// BatchSize of both mappings.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
    /// MaximumBatchingWindowInSeconds of both mappings.
    #[arg(long, default_value_t = 5.0)]
    batching_window_seconds: f64,
    /// MaximumRetryAttempts (-1: until the records expire).
    #[arg(long, default_value_t = 10, allow_negative_numbers = true)]
    max_retry_attempts: i64,
    /// MaximumRecordAgeInSeconds (-1: no limit).
    #[arg(long, default_value_t = 86_400, allow_negative_numbers = true)]
    max_record_age_seconds: i64,
    /// Turn BisectBatchOnFunctionError off.
    #[arg(long)]
    no_bisect: bool,
    /// Rehearse a Lambda re-delivery on every ingest batch (docs/ARCHITECTURE.md §11): the
    /// batch (identical), its first half (longer) or the batch then its halves (bisect) is
    /// invoked first and its answer thrown away, as after a time-out.
    #[arg(long, default_value = "none", value_parser = ["none", "identical", "longer", "bisect"])]
    redelivery: String,
    /// Where to start shards without a checkpoint.
    #[arg(long, value_parser = ["trim-horizon", "latest"], default_value = "trim-horizon")]
    starting_position: String,
    /// TumblingWindowInSeconds of aggregate, and the window evaluate merges.
    #[arg(long, env = "SLUICE_WINDOW_SECONDS", default_value_t = 60)]
    window_seconds: u64,
    /// How long after its end a window still takes records (by arrival time) before it is
    /// evaluated; later ones count, marked late, in the window they arrive in. 0 pages soonest.
    #[arg(long, env = "SLUICE_ALLOWED_LATENESS_SECONDS", default_value_t = 0)]
    allowed_lateness_seconds: u64,
    /// How often evaluate runs (the template's schedule is every minute).
    #[arg(long, default_value_t = 60.0)]
    evaluate_every_seconds: f64,
    /// Do not run evaluate.
    #[arg(long)]
    no_evaluate: bool,
    /// How often compaction runs (docs/ARCHITECTURE.md §11; the template's schedule is every
    /// 15 minutes).
    #[arg(long, default_value_t = 900.0)]
    compact_every_seconds: f64,
    /// How long after its end a raw hour waits before it is compacted.
    #[arg(long, default_value_t = 3600.0)]
    compact_lateness_seconds: f64,
    /// Do not run compaction.
    #[arg(long)]
    no_compact: bool,
    /// Stop once everything read is processed, every window closed and evaluated, and nothing
    /// new arrived for --idle-seconds.
    #[arg(long)]
    until_idle: bool,
    /// Quiet period before --until-idle stops.
    #[arg(long, default_value_t = 2.0)]
    idle_seconds: f64,
    /// Stop after this many seconds whatever happens.
    #[arg(long)]
    max_runtime_seconds: Option<f64>,
    /// Pause between reads of a shard that had nothing new (Lambda: about 1 s).
    #[arg(long, default_value_t = 1000)]
    poll_interval_ms: u64,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 5.0)]
    progress_seconds: f64,
    /// Print the final report as JSON (records/s, every counter).
    #[arg(long)]
    json: bool,
    /// Also serve the front door (tenant-key authenticated HTTP intake onto the stream) here,
    /// e.g. 127.0.0.1:8080; keys from the rules bucket (see `sluice tenants`).
    #[arg(long)]
    api_listen: Option<SocketAddr>,
}

pub fn run(args: LocalArgs) -> anyhow::Result<()> {
    match args.command {
        LocalCommand::Up(args) => up(args),
        LocalCommand::Run(args) => run_mappings(*args),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn up(args: UpArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let provisioned = runtime.block_on(async {
        let sdk = args.target.sdk().await?;
        let resources = Resources {
            stream: args.target.stream.clone(),
            shards: args.shards,
            data_bucket: args.target.data_bucket.clone(),
            rules_bucket: args.target.rules_bucket.clone(),
            failure_queue: args.target.failure_queue.clone(),
        };
        let endpoint = sdk.endpoint_url().unwrap_or("AWS").to_owned();
        provision::up(&Clients::new(&sdk), &resources)
            .await
            .with_context(|| format!("provisioning on {endpoint}"))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&provisioned)?);
        return Ok(());
    }
    let mut table = crate::report::table(&["resource", "name", "status", "detail"]);
    for p in &provisioned {
        let status = serde_json::to_value(p.status)?
            .as_str()
            .unwrap_or_default()
            .to_owned();
        table.add_row(vec![
            Cell::new(p.kind),
            Cell::new(&p.name),
            Cell::new(status),
            Cell::new(&p.detail),
        ]);
    }
    println!("{table}");
    Ok(())
}

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("--{name} {value} is not a duration"))
}

fn run_config(args: &RunArgs) -> anyhow::Result<RunConfig> {
    anyhow::ensure!(
        args.metrics_addr.ip().is_loopback(),
        "--metrics-addr {} is not a loopback address",
        args.metrics_addr
    );
    anyhow::ensure!(
        args.window_seconds >= 1,
        "--window-seconds must be at least 1"
    );
    let t = &args.target;
    let mut config = RunConfig::new(
        &t.stream,
        &t.data_bucket,
        &t.rules_bucket,
        args.state_dir.clone(),
    );
    config.failure_queue = (!args.no_failure_queue).then(|| t.failure_queue.clone());
    config.metrics_addr = Some(args.metrics_addr);
    let window_ms = i64::try_from(args.window_seconds)
        .context("--window-seconds is too large")?
        .saturating_mul(1000);
    config.window = WindowConfig {
        window_ms,
        allowed_lateness_ms: i64::try_from(args.allowed_lateness_seconds)
            .context("--allowed-lateness-seconds is too large")?
            .saturating_mul(1000),
        ..WindowConfig::default()
    };
    let retries = u32::try_from(args.max_retry_attempts).ok();
    let max_age = u64::try_from(args.max_record_age_seconds)
        .ok()
        .map(Duration::from_secs);
    let batching_window = seconds("batching-window-seconds", args.batching_window_seconds)?;
    for m in [&mut config.ingest, &mut config.aggregate] {
        m.batch_size = args.batch_size;
        m.batching_window = batching_window;
        m.max_retry_attempts = retries;
        m.max_record_age = max_age;
        m.bisect_on_error = !args.no_bisect;
        m.starting_position = if args.starting_position == "latest" {
            sluice_local::StartingPosition::Latest
        } else {
            sluice_local::StartingPosition::TrimHorizon
        };
    }
    config.aggregate.tumbling_window = Some(Duration::from_secs(args.window_seconds));
    config.evaluate_every = if args.no_evaluate {
        None
    } else {
        Some(seconds(
            "evaluate-every-seconds",
            args.evaluate_every_seconds,
        )?)
    };
    config.ingest.redelivery = args
        .redelivery
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--redelivery {e}"))?;
    config.compact_every = if args.no_compact {
        None
    } else {
        Some(seconds(
            "compact-every-seconds",
            args.compact_every_seconds,
        )?)
    };
    config.compact_lateness = seconds("compact-lateness-seconds", args.compact_lateness_seconds)?;
    config.until_idle = if args.until_idle {
        Some(seconds("idle-seconds", args.idle_seconds)?)
    } else {
        None
    };
    config.max_runtime = args
        .max_runtime_seconds
        .map(|s| seconds("max-runtime-seconds", s))
        .transpose()?;
    config.poll = PollSettings {
        idle_poll: Duration::from_millis(args.poll_interval_ms),
        ..PollSettings::default()
    };
    if args.progress_seconds > 0.0 {
        config.progress_every = seconds("progress-seconds", args.progress_seconds)?;
    }
    Ok(config)
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal(what: &'static str) {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    eprintln!("{what}: stopping (finishing the batches in flight)...");
}

fn run_mappings(args: RunArgs) -> anyhow::Result<()> {
    let config = run_config(&args)?;
    let progress = args.progress_seconds > 0.0;
    let runtime = runtime()?;
    let report = runtime.block_on(async {
        let sdk = args.target.sdk().await?;
        let endpoint = sdk.endpoint_url().unwrap_or("AWS").to_owned();
        let mut runner = Runner::connect(&sdk, config).await.with_context(|| {
            format!("connecting to stream {} on {endpoint}", args.target.stream)
        })?;
        if progress {
            runner = runner.on_progress(Box::new(|snapshot, elapsed| {
                eprintln!("{}", summary_line(snapshot, elapsed));
            }));
        }
        eprintln!(
            "sluice local run: stream {} on {endpoint}, state in {}",
            args.target.stream,
            args.state_dir.display()
        );
        let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
        let api = match args.api_listen {
            Some(listen) => {
                let store = crate::cmd_tenants::store::KeyStoreArgs {
                    data: None,
                    bucket: Some(args.target.rules_bucket.clone()),
                    endpoint: args.target.endpoint.clone(),
                    state_dir: args.state_dir.clone(),
                };
                let stopped = async move {
                    let _ = api_stopped.await;
                };
                Some(
                    crate::cmd_serve::serve_kinesis(listen, &args.target.stream, &store, stopped)
                        .await?,
                )
            }
            None => None,
        };
        let report = runner
            .run(shutdown_signal("sluice local run"))
            .await
            .context("running the event source mappings");
        let _ = api_stop.send(());
        if let Some(api) = api {
            api.await
                .context("the front door task failed")?
                .context("serving the front door")?;
        }
        report
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}",
            summary_line(&report.metrics, Duration::from_secs_f64(report.elapsed_s))
        );
        println!(
            "stopped ({:?}) after {:.1}s: ingest {:.0} records/s over {} shards{}",
            report.stop_reason,
            report.elapsed_s,
            report.ingest_records_per_s,
            report.shards,
            report
                .metrics_addr
                .as_deref()
                .map(|a| format!("; metrics were at http://{a}/metrics"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
