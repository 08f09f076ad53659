//! `sluice alerts`: operating on alert notifications.
//!
//! - `redrive`: re-send the notifications that could not be delivered (kept under
//!   `alerts/undelivered/` by the evaluator) through [`sluice_core::evaluate::redrive`].

use std::path::PathBuf;

use anyhow::Context as _;
use comfy_table::Cell;
use sluice_core::alerting::delivery::RetryPolicy;
use sluice_core::{BlobStore, LocalDirStore};

use crate::{report, stores, ui};

#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    command: AlertsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AlertsCommand {
    /// Re-send notifications that could not be delivered (alerts/undelivered/).
    #[command(long_about = LONG_ABOUT)]
    Redrive(RedriveArgs),
}

/// The long `--help` text (clap takes the short one from the command's doc comment).
pub const LONG_ABOUT: &str = "Re-send the webhook notifications the evaluator could not deliver. They are kept under \
alerts/undelivered/tenant=<tenant>/ in the data store, each with its target URL, payload and \
Idempotency-Key; the signing secret is looked up again in the tenant's configuration \
(tenants/<tenant>.toml in the rules store), so a rotated secret is used. Each one is sent \
with retries and backoff; delivered ones are removed, the others are kept with the new error \
and attempt count.\n\n\
On the embedded default (--dir) the data and the rules share one directory. On AWS, give the \
data bucket and the rules bucket.\n\n\
Exits non-zero when some notifications still fail.";

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["dir", "bucket"])))]
pub struct RedriveArgs {
    /// Only this tenant's notifications (default: every tenant's).
    #[arg(long)]
    tenant: Option<String>,
    /// A local directory holding both data and rules (the embedded default).
    #[arg(long, conflicts_with_all = ["bucket", "rules_bucket"])]
    dir: Option<PathBuf>,
    /// The data bucket (alerts/undelivered/).
    #[arg(long, requires = "rules_bucket")]
    bucket: Option<String>,
    /// The rules bucket (tenants/<tenant>.toml: webhooks and their secrets).
    #[arg(long, requires = "bucket")]
    rules_bucket: Option<String>,
    /// S3 endpoint (moto, LocalStack, MinIO...); default: SLUICE_ENDPOINT_URL, then the SDK's
    /// own settings (AWS_ENDPOINT_URL).
    #[arg(long, requires = "bucket")]
    endpoint: Option<String>,
    /// Also deliver to loopback addresses over plain HTTP (a local receiver); off by default,
    /// as on AWS (docs/ARCHITECTURE.md §10).
    #[arg(long)]
    allow_loopback_webhooks: bool,
    /// Attempts per notification (with exponential backoff between them).
    #[arg(long, default_value_t = RetryPolicy::default().attempts, value_parser = clap::value_parser!(u32).range(1..))]
    attempts: u32,
    /// Print the counts as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: AlertsArgs) -> anyhow::Result<()> {
    match args.command {
        AlertsCommand::Redrive(a) => redrive(a),
    }
}

fn redrive(args: RedriveArgs) -> anyhow::Result<()> {
    if let Some(t) = &args.tenant {
        // Tenant names follow the rules bucket's naming (they are key segments).
        sluice_rules::RuleId::new(t, "redrive")?;
    }
    let runtime = stores::runtime()?;
    let http = if args.allow_loopback_webhooks {
        sluice_notify::HttpPoster::allowing_loopback()
    } else {
        sluice_notify::HttpPoster::new()
    }
    .context("building the HTTP client")?;
    let retry = RetryPolicy {
        attempts: args.attempts,
        ..RetryPolicy::default()
    };
    let (data, rules, location): (Box<dyn BlobStore>, Box<dyn BlobStore>, String) =
        match (&args.dir, &args.bucket, &args.rules_bucket) {
            (Some(dir), _, _) => (
                Box::new(LocalDirStore::new(dir)),
                Box::new(LocalDirStore::new(dir)),
                dir.display().to_string(),
            ),
            (None, Some(bucket), Some(rules_bucket)) => runtime.block_on(async {
                let data = stores::s3(bucket, args.endpoint.clone()).await?;
                let rules = stores::s3(rules_bucket, args.endpoint.clone()).await?;
                anyhow::Ok((
                    Box::new(data) as Box<dyn BlobStore>,
                    Box::new(rules) as Box<dyn BlobStore>,
                    format!("s3://{bucket}"),
                ))
            })?,
            _ => anyhow::bail!("give --dir, or --bucket with --rules-bucket"),
        };
    let prefix = match &args.tenant {
        Some(t) => format!("alerts/undelivered/tenant={t}/"),
        None => "alerts/undelivered/".to_owned(),
    };
    let pending = runtime
        .block_on(data.list(&prefix))
        .with_context(|| format!("listing {location}/{prefix}"))?
        .len();
    let spinner = ui::spinner(
        args.json || pending == 0,
        format!("re-sending {pending} notification(s) from {location}/{prefix}"),
    );
    let started = std::time::Instant::now();
    let result = runtime.block_on(sluice_core::evaluate::redrive(
        data.as_ref(),
        rules.as_ref(),
        &http,
        args.tenant.as_deref(),
        retry,
    ));
    spinner.finish_and_clear();
    let (delivered, failed) = result.with_context(|| format!("re-driving {location}/{prefix}"))?;
    let elapsed = started.elapsed();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "location": location,
                "tenant": args.tenant,
                "delivered": delivered,
                "failed": failed,
                "elapsed_ms": elapsed.as_secs_f64() * 1000.0,
            })
        );
    } else if delivered + failed == 0 {
        println!("nothing to re-send under {location}/{prefix}");
    } else {
        let mut t = report::table(&["notifications", "count"]);
        t.add_row(vec![Cell::new("delivered"), report::right(delivered)]);
        t.add_row(vec![
            Cell::new("still failing (kept)"),
            report::right(failed),
        ]);
        t.add_row(vec![
            Cell::new("elapsed"),
            report::right(ui::millis(elapsed)),
        ]);
        println!("{t}");
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} notification(s) still fail; they stay under {location}/{prefix} with their last error"
        );
    }
    Ok(())
}
