//! `sluice report`: a tenant's windows and alerts as charts, in one self-contained HTML file.
//!
//! It reads what sluice stored, from a directory (the embedded default) or a bucket: the
//! window metrics (`metrics/tenant=T/…`), the log patterns beside them (`patterns/tenant=T/…`),
//! the alert transitions (`alerts/tenant=T/…`) and what is still undelivered
//! (`alerts/undelivered/tenant=T/`). [`data`] gathers them, [`chart`] draws each service with
//! plotters (SVG), [`page`] writes the page. `sluice demo` and `sluice backtest --report` write
//! the same page.

pub mod chart;
pub mod data;
pub mod page;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sluice_core::BlobStore;
use sluice_core::alerting::lifecycle::Transition;
use sluice_core::normalize::timestamp::parse_rfc3339_ms;
use sluice_core::window::patterns_out::{self, StoredPattern};
use sluice_core::window::{metrics_out, summary::WindowSummary};

use crate::stores::Location;
use crate::ui;
use data::ReportData;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Where sluice stored its data: a directory (e.g. the demo's sluice-data) or
    /// s3://bucket[/prefix].
    #[arg(long, default_value = "sluice-data")]
    data: Location,
    /// The tenant to report on.
    #[arg(long)]
    tenant: String,
    /// Windows starting at or after this time (RFC 3339); default: the first stored.
    #[arg(long, value_parser = parse_time)]
    from: Option<i64>,
    /// ...and starting before this time (RFC 3339); default: the last stored.
    #[arg(long, value_parser = parse_time)]
    to: Option<i64>,
    /// The HTML file to write.
    #[arg(long, short, default_value = "report.html")]
    out: PathBuf,
    /// S3 endpoint for s3:// data (moto, LocalStack, MinIO...); default: SLUICE_ENDPOINT_URL,
    /// then the SDK's own settings (AWS_ENDPOINT_URL).
    #[arg(long)]
    endpoint: Option<String>,
    /// Print what was written as one JSON object.
    #[arg(long)]
    json: bool,
}

fn parse_time(s: &str) -> Result<i64, String> {
    parse_rfc3339_ms(s)
        .ok_or_else(|| format!("`{s}` is not an RFC 3339 time (2026-05-01T12:00:00Z)"))
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let runtime = crate::stores::runtime()?;
    let spinner = ui::spinner(args.json, format!("reading {}", args.data));
    let data = runtime.block_on(async {
        let (store, prefix) = args.data.open(args.endpoint.clone()).await?;
        load(
            &*store,
            &prefix,
            &args.tenant,
            args.from,
            args.to,
            args.data.to_string(),
        )
        .await
    })?;
    spinner.finish_and_clear();
    if data.services.is_empty() {
        anyhow::bail!(
            "no window metrics for tenant {} under {}{}",
            args.tenant,
            args.data
                .show_key(&format!("metrics/tenant={}/", args.tenant)),
            if args.from.is_some() || args.to.is_some() {
                " in that range"
            } else {
                ""
            }
        );
    }
    write(&data, &args.out)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "out": args.out.display().to_string(),
                "tenant": data.tenant,
                "services": data.services.keys().collect::<Vec<_>>(),
                "windows": data.services.values().map(Vec::len).max().unwrap_or(0),
                "alerts": data.alerts,
                "from": ui::time(data.from_ms),
                "to": ui::time(data.to_ms),
            })
        );
    } else {
        println!(
            "report for {}: {} service(s), {} alert(s), {} to {}\nwrote {}",
            data.tenant,
            data.services.len(),
            data.alerts.len(),
            ui::time(data.from_ms),
            ui::time(data.to_ms),
            args.out.display()
        );
    }
    Ok(())
}

/// Renders `data` and writes it to `out`.
pub fn write(data: &ReportData, out: &Path) -> anyhow::Result<()> {
    let html = page::render(data)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, html).with_context(|| format!("writing {}", out.display()))
}

/// The window start in a stored key's file name (`…/<start ms>[-…].<ext>`).
fn start_of_key(key: &str) -> Option<i64> {
    let name = key.rsplit('/').next()?;
    name.get(..13)?.parse().ok()
}

/// Reads every object under `prefix` whose window start is in range.
async fn read_in_range(
    store: &dyn BlobStore,
    prefix: &str,
    in_range: &impl Fn(i64) -> bool,
) -> anyhow::Result<Vec<(String, bytes::Bytes)>> {
    let keys = store
        .list(prefix)
        .await
        .with_context(|| format!("listing {prefix}"))?;
    let mut out = Vec::new();
    for key in keys {
        if !start_of_key(&key).is_some_and(in_range) {
            continue;
        }
        if let Some(body) = store
            .get(&key)
            .await
            .with_context(|| format!("reading {key}"))?
        {
            out.push((key, body));
        }
    }
    Ok(out)
}

/// Gathers a tenant's report from a store (`prefix`: where its keys start, `""` for a
/// directory), for windows starting in `[from, to)` (open ends: everything stored).
pub async fn load(
    store: &dyn BlobStore,
    prefix: &str,
    tenant: &str,
    from: Option<i64>,
    to: Option<i64>,
    source: String,
) -> anyhow::Result<ReportData> {
    let in_range = |start: i64| from.is_none_or(|f| start >= f) && to.is_none_or(|t| start < t);
    let mut windows: Vec<WindowSummary> = Vec::new();
    for (key, body) in read_in_range(
        store,
        &format!("{prefix}metrics/tenant={tenant}/"),
        &in_range,
    )
    .await?
    {
        let summaries = metrics_out::decode(body).with_context(|| format!("decoding {key}"))?;
        windows.extend(summaries.into_iter().filter(|s| s.tenant == tenant));
    }
    let mut patterns: Vec<StoredPattern> = Vec::new();
    for (key, body) in read_in_range(
        store,
        &format!("{prefix}patterns/tenant={tenant}/"),
        &in_range,
    )
    .await?
    {
        let rows = patterns_out::decode(body).with_context(|| format!("decoding {key}"))?;
        patterns.extend(rows.into_iter().filter(|p| p.tenant == tenant));
    }
    let mut transitions: Vec<(i64, Transition)> = Vec::new();
    for (key, body) in read_in_range(
        store,
        &format!("{prefix}alerts/tenant={tenant}/"),
        &in_range,
    )
    .await?
    {
        let t: Transition =
            serde_json::from_slice(&body).with_context(|| format!("decoding {key}"))?;
        if let Some(start) = start_of_key(&key) {
            transitions.push((start, t));
        }
    }
    let undelivered = store
        .list(&format!("{prefix}alerts/undelivered/tenant={tenant}/"))
        .await
        .context("listing alerts/undelivered/")?
        .len();
    let mut data = ReportData::build(tenant, source, &windows, &transitions, &patterns);
    data.undelivered = undelivered;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_starts_are_read_from_metrics_and_alert_keys() {
        assert_eq!(
            start_of_key("metrics/tenant=a/dt=2026-01-01/hour=00/1767225600000.parquet"),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            start_of_key("alerts/tenant=a/dt=2026-01-01/hour=00/1767225600000-abc-firing.json"),
            Some(1_767_225_600_000)
        );
        assert_eq!(start_of_key("alerts/tenant=a/x.json"), None);
    }
}
