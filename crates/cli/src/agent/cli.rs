//! `sluice agent`: the command line over [`super::run`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sluice_aws::AwsSettings;
use tokio::sync::watch;

use super::batcher::{BatchLimits, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_RECORD_BYTES};
use super::counters::{Counters, Report};
use super::kpl_encode;
use super::partition::KeyConfig;
use super::put_records::{KinesisSink, StreamRef};
use super::rate::RateDisplay;
use super::retry::RetryPolicy;
use super::{AgentConfig, Input};

/// Shown by `sluice agent --help` after the options.
pub const AFTER_HELP: &str = "\
Each line is one record (NDJSON log lines; plain text works too). The partition key is
`tenant/service`, read from the record's own fields (tenant, tenant_id, service, service.name,
... as the ingest function reads them), else from --tenant/--service.

Files are followed like `tail -F`: from their end (--from-start: from their beginning),
across rotation (a new file under the name is opened once the old one is read to its end) and
truncation (read again from the start). `-` reads stdin to its end. --no-follow reads files
once and exits. SIGTERM or Ctrl-C: stop reading, deliver what was read, print the counters
(a second signal exits at once).

Through the front door (producers outside the platform's account): --api URL --key KEY posts
each batch to URL/v1/ingest with the tenant key; the front door stamps the key's tenant on
every line (a tenant written in a line does not count). Without --api, records go straight to
the Kinesis stream (trusted producers, docs/ARCHITECTURE.md §8).

Endpoint: --endpoint, else SLUICE_ENDPOINT_URL or AWS_ENDPOINT_URL (moto, LocalStack), else
AWS with the usual credential chain and region.

Exit status: 0 when every line read was delivered; 1 when any failed (retries used up),
was oversize (over 1 MiB with its key), or an input or the stream failed.

Examples:
  sluice agent --stream sluice-logs /var/log/app/*.log
  my-service | sluice agent --stream sluice-logs --tenant acme --service api -
  sluice agent --stream sluice-logs --kpl --no-follow --json big.ndjson
  sluice agent --api https://front-door.example --key \"$SLUICE_API_KEY\" /var/log/app/*.log";

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Files to follow; `-` is stdin. Default: stdin.
    #[arg(value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Kinesis stream name or ARN (direct mode, for trusted producers).
    #[arg(long, env = "SLUICE_STREAM", required_unless_present = "api")]
    pub stream: Option<String>,
    /// Ship through the front door at this URL instead of straight to Kinesis.
    #[arg(long, env = "SLUICE_API_URL", conflicts_with_all = ["stream", "kpl"], requires = "key")]
    pub api: Option<String>,
    /// The tenant key for --api (`sluice tenants keys create`).
    #[arg(long, env = "SLUICE_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Endpoint URL (moto, LocalStack); else SLUICE_ENDPOINT_URL / AWS_ENDPOINT_URL, else AWS.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// AWS region (else AWS_REGION, the profile, or us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// Read files that exist at start-up from their beginning instead of their end.
    #[arg(long)]
    pub from_start: bool,
    /// Read each file once, from its beginning to its end, then exit (no tail -F).
    #[arg(long)]
    pub no_follow: bool,
    /// How often a followed file is checked for new data, rotation and truncation.
    #[arg(long, default_value_t = 250, value_name = "MS")]
    pub poll_ms: u64,
    /// Tenant for records that do not name one.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Service for records that do not name one.
    #[arg(long)]
    pub service: Option<String>,
    /// Append a random `/0`..`/N-1` to partition keys, spreading a hot key over N shards.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub hot_key_suffixes: u32,
    /// How long a record may wait for its batch to fill before it is sent.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    pub linger_ms: u64,
    /// Records per PutRecords call (at most 500).
    #[arg(long, default_value_t = MAX_BATCH_RECORDS, value_name = "N")]
    pub batch_records: usize,
    /// Pack small records into KPL aggregates (many records per Kinesis record).
    #[arg(long)]
    pub kpl: bool,
    /// Largest KPL aggregate, in bytes (at most 1 MiB with its key).
    #[arg(long, default_value_t = kpl_encode::DEFAULT_MAX_BYTES, value_name = "BYTES")]
    pub kpl_max_bytes: usize,
    /// Attempts per record, the first included, before it counts as failed.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_attempts: u32,
    /// Backoff before the first retry (doubling up to --backoff-max-ms, with full jitter).
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub backoff_base_ms: u64,
    /// Longest backoff between two attempts.
    #[arg(long, default_value_t = 5_000, value_name = "MS")]
    pub backoff_max_ms: u64,
    /// PutRecords calls in flight at once. Use 1 against moto: it loses records written to
    /// one shard by concurrent calls.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Memory for records read but not yet delivered; readers wait when it is used up.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub buffer_mib: usize,
    /// No live rate on stderr (it is only drawn on a terminal anyway).
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the final counters as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

impl AgentArgs {
    /// The agent's configuration from the flags.
    pub fn config(&self) -> AgentConfig {
        let inputs = if self.inputs.is_empty() {
            vec![Input::Stdin]
        } else {
            self.inputs
                .iter()
                .map(|p| {
                    if p.as_os_str() == "-" {
                        Input::Stdin
                    } else {
                        Input::File(p.clone())
                    }
                })
                .collect()
        };
        AgentConfig {
            inputs,
            follow: !self.no_follow,
            from_start: self.from_start,
            poll: Duration::from_millis(self.poll_ms.max(1)),
            keys: KeyConfig {
                tenant: self.tenant.clone().filter(|t| !t.is_empty()),
                service: self.service.clone().filter(|s| !s.is_empty()),
                hot_key_suffixes: self.hot_key_suffixes,
            },
            limits: BatchLimits {
                max_records: self.batch_records,
                max_bytes: MAX_BATCH_BYTES,
                max_record_bytes: MAX_RECORD_BYTES,
                linger: Duration::from_millis(self.linger_ms),
                kpl_max_bytes: self.kpl.then_some(self.kpl_max_bytes),
            },
            retry: RetryPolicy {
                max_attempts: self.max_attempts.max(1),
                base: Duration::from_millis(self.backoff_base_ms),
                cap: Duration::from_millis(self.backoff_max_ms.max(self.backoff_base_ms)),
            },
            concurrency: self.concurrency.max(1),
            buffer_bytes: self.buffer_mib.saturating_mul(1024 * 1024),
        }
    }
}

/// Builds the Kinesis sink for `stream`: endpoint and region from the settings, and no SDK
/// retries (the agent retries entry by entry and counts it).
pub async fn kinesis_sink(settings: AwsSettings, stream: &str) -> KinesisSink {
    let settings = AwsSettings {
        max_attempts: Some(1),
        ..settings
    };
    let sdk = sluice_aws::load_sdk_config(&settings).await;
    KinesisSink::new(sluice_aws::kinesis_client(&sdk), StreamRef::parse(stream))
}

/// `sluice agent`.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_BATCH_RECORDS).contains(&args.batch_records),
        "--batch-records must be 1 to {MAX_BATCH_RECORDS}"
    );
    let stream = args.stream.clone().unwrap_or_default();
    anyhow::ensure!(
        args.api.is_some() || !stream.trim().is_empty(),
        "--stream is empty"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut settings = AwsSettings::from_env()
        .context("reading the AWS settings")?
        .with_endpoint(args.endpoint.clone());
    if let Some(region) = &args.region {
        settings = settings.with_region(region);
    }
    let report = runtime.block_on(async {
        let sink: Arc<dyn super::put_records::RecordSink> = match (&args.api, &args.key) {
            (Some(url), Some(key)) => Arc::new(super::api_sink::ApiSink::new(url, key)?),
            _ => Arc::new(kinesis_sink(settings, &stream).await),
        };
        let (stop, shutdown) = watch::channel(false);
        let signals = tokio::spawn(watch_signals(stop));
        let counters = Arc::new(Counters::default());
        let display = RateDisplay::start(Arc::clone(&counters), args.quiet);
        let report = super::run(args.config(), sink, counters, shutdown).await;
        display.finish();
        signals.abort();
        Ok::<_, anyhow::Error>(report)
    })?;
    // stdin may still be blocked in a read on the blocking pool: do not wait for it.
    runtime.shutdown_background();
    finish(&args, &report)
}

/// Prints the report; an error when anything was not delivered.
fn finish(args: &AgentArgs, report: &Report) -> anyhow::Result<()> {
    if args.json {
        println!(
            "{}",
            serde_json::to_string(report).context("serialising the report")?
        );
    }
    if !args.quiet || !report.is_clean() {
        eprintln!("{}", report.human());
    }
    if report.is_clean() {
        return Ok(());
    }
    let c = &report.counters;
    if let Some(fatal) = &report.fatal_error {
        anyhow::bail!(
            "stopped: {fatal} ({} records not delivered)",
            report.undelivered()
        );
    }
    anyhow::bail!(
        "{} of {} records were not delivered ({} failed, {} oversize){}",
        report.undelivered(),
        c.records_read,
        c.failed,
        c.oversize,
        if report.input_errors.is_empty() {
            String::new()
        } else {
            format!("; {} inputs failed", report.input_errors.len())
        }
    )
}

/// Sets `stop` on the first SIGTERM or Ctrl-C; exits at once on the second.
async fn watch_signals(stop: watch::Sender<bool>) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => Some(term),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            None
        }
    };
    let mut signals = 0;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_err() { return },
            Some(()) = async {
                match &mut term {
                    Some(t) => t.recv().await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        signals += 1;
        if signals == 1 {
            eprintln!("stopping: delivering what was read (signal again to exit at once)");
            let _ = stop.send(true);
        } else {
            eprintln!("second signal: exiting without waiting for records in flight");
            std::process::exit(130);
        }
    }
}
