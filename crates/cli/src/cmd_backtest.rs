//! `sluice backtest`: replay a rule over a tenant's stored window summaries and show when it
//! would have fired and resolved, before uploading it.
//!
//! The summaries are the evaluator's metrics (`metrics/tenant=T/dt=…/hour=…/<start>.parquet`),
//! read back with [`metrics_out::decode`]. Windows are replayed in time order through the same
//! sandbox as in production, the rule's state carried from one window to the next, and the
//! host's alert lifecycle ([`apply`]) turns what the rule returns into transitions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use comfy_table::Cell;
use sluice_core::alerting::lifecycle::{LifecycleConfig, Transition, TransitionKind, apply};
use sluice_core::alerting::model::{AlertRecord, AlertStatus, RuleAlert, Severity};
use sluice_core::alerting::tenant_config::{RuleOverride, TenantConfig};
use sluice_core::normalize::timestamp::parse_rfc3339_ms;
use sluice_core::partition;
use sluice_core::window::metrics_out;
use sluice_core::window::summary::WindowSummary;
use sluice_rules::tenant_rules::to_contract_window;
use sluice_rules::{Params, Policy, RuleId};

use crate::cmd_rules::Refused;
use crate::stores::Location;
use crate::{report, ui};

/// The long `--help` text (clap takes the short one from the command's doc comment).
pub const LONG_ABOUT: &str = "Replay a rule over a tenant's stored window summaries and print when each alert would \
have fired and resolved: try a rule (or new params) on real history before uploading it.\n\n\
The summaries are the metrics the evaluator writes, \
metrics/tenant=<T>/dt=<YYYY-MM-DD>/hour=<HH>/<window start>.parquet, in a directory (the \
embedded default, e.g. the output of `sluice demo`) or a bucket (s3://bucket[/prefix]). \
Windows starting in [--from, --to) are replayed in time order through the same sandbox and \
limits as in production; the rule's state is carried from one window to the next, and the \
host's alert lifecycle applies: an alert fires once the rule has returned it for --for \
windows in a row, repeats after --repeat-minutes, and resolves in the first window without \
it. Windows with no stored summary (no traffic) are not evaluated, as in production. The \
tenant's [rules.<name>] overrides apply as the evaluator applies them, from --tenant-config (a \
copy of tenants/<T>.toml) or, for a directory, from its own tenants/<T>.toml.\n\n\
Limitation: metrics keep per-service statistics only, not log patterns, so the rule sees no \
patterns: pattern rules (like the new-pattern example) never fire in a backtest.";

#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// The rule component (.wasm).
    #[arg(long)]
    rule: PathBuf,
    /// The rule's manifest (rule.toml: its [params], [limits] and name), or params as a JSON
    /// object file (*.json).
    #[arg(long)]
    params: PathBuf,
    /// Where the metrics are: a directory, or s3://bucket[/prefix].
    #[arg(long)]
    data: Location,
    /// The tenant whose windows to replay.
    #[arg(long)]
    tenant: String,
    /// Replay windows starting at or after this time (RFC 3339, e.g. 2026-05-01T12:00:00Z).
    #[arg(long, value_parser = parse_time)]
    from: i64,
    /// ...and starting before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    to: i64,
    /// Windows an alert must be returned in a row before it fires (the lifecycle's `for`);
    /// default: the tenant configuration's for_windows, else 1.
    #[arg(long = "for", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    for_windows: Option<u32>,
    /// A firing alert is notified again after this many minutes; default: the tenant
    /// configuration's repeat_interval_minutes, else 240.
    #[arg(long)]
    repeat_minutes: Option<i64>,
    /// The tenant's configuration (a copy of tenants/<tenant>.toml): its [rules.<rule name>]
    /// entry applies as in production, params merged over the manifest's, for_windows and
    /// repeat_interval_minutes (--for and --repeat-minutes still win). Its webhooks and
    /// silences are not used: the backtest shows what the rule would raise. Default, when
    /// --data is a directory: its tenants/<tenant>.toml, if there is one (as `sluice demo`
    /// writes).
    #[arg(long, value_name = "FILE")]
    tenant_config: Option<PathBuf>,
    /// Ignore the data directory's tenants/<tenant>.toml: the manifest's params only.
    #[arg(long, conflicts_with = "tenant_config")]
    no_tenant_config: bool,
    /// S3 endpoint for s3:// data (moto, LocalStack, MinIO...); default: SLUICE_ENDPOINT_URL,
    /// then the SDK's own settings (AWS_ENDPOINT_URL).
    #[arg(long)]
    endpoint: Option<String>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Also write the replayed windows and where the rule would have fired as an HTML report
    /// (the page `sluice report` writes, with this rule's alerts as the bands).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

/// The tenant configuration to apply: `--tenant-config`, else the data directory's own
/// `tenants/<tenant>.toml` when there is one and `--no-tenant-config` is not given.
fn tenant_config_path(args: &BacktestArgs) -> Option<PathBuf> {
    if args.tenant_config.is_some() || args.no_tenant_config {
        return args.tenant_config.clone();
    }
    match &args.data {
        Location::Dir(dir) => Some(dir.join("tenants").join(format!("{}.toml", args.tenant)))
            .filter(|path| path.is_file()),
        Location::S3 { .. } => None,
    }
}

/// The tenant configuration's override for `rule`; a rule the tenant has disabled is refused,
/// since production does not run it.
fn read_override(path: &Path, tenant: &str, rule: &str) -> anyhow::Result<RuleOverride> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the tenant configuration {}", path.display()))?;
    let config = TenantConfig::parse(tenant, &text)
        .with_context(|| format!("parsing {}", path.display()))?;
    let overrides = config.rule(rule);
    if overrides.disabled {
        anyhow::bail!(
            "{} disables rule {rule} ([rules.{rule}] disabled = true): production does not run it",
            path.display()
        );
    }
    Ok(overrides)
}

/// `params` with `overrides` merged over them (a key in both takes the override's value), as
/// the evaluator merges a tenant's `[rules.<name>] params`.
fn merge_params(params: &Params, overrides: &toml::Table) -> anyhow::Result<Params> {
    if overrides.is_empty() {
        return Ok(params.clone());
    }
    let mut merged: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(params.as_json()).context("reading the rule's params")?;
    for (key, value) in overrides {
        let value = serde_json::to_value(value)
            .with_context(|| format!("tenant configuration param {key}"))?;
        merged.insert(key.clone(), value);
    }
    let json = serde_json::Value::Object(merged).to_string();
    Params::from_json(&json).context("the merged params")
}

fn parse_time(s: &str) -> Result<i64, String> {
    parse_rfc3339_ms(s)
        .ok_or_else(|| format!("`{s}` is not an RFC 3339 time (2026-05-01T12:00:00Z)"))
}

/// Longest replay, in hours (a year): one listing per hour.
const MAX_HOURS: i64 = 24 * 366;

/// One transition, when it would have happened.
#[derive(Debug, Clone, serde::Serialize)]
struct Event {
    at: String,
    at_ms: i64,
    window_start_ms: i64,
    kind: TransitionKind,
    key: String,
    severity: Severity,
    title: String,
    value: f64,
    labels: BTreeMap<String, String>,
    fingerprint: String,
}

impl Event {
    fn new(t: &Transition, window: &WindowSummary) -> Event {
        let a = &t.alert;
        Event {
            at: ui::time(window.end_ms),
            at_ms: window.end_ms,
            window_start_ms: window.start_ms,
            kind: t.kind,
            key: a.key.clone(),
            severity: a.severity,
            title: a.title.clone(),
            value: a.value,
            labels: a.labels.clone(),
            fingerprint: a.fingerprint.clone(),
        }
    }
}

/// A window the rule failed on.
#[derive(Debug, Clone, serde::Serialize)]
struct Failure {
    window_start: String,
    code: String,
    reason: String,
}

pub fn run(args: BacktestArgs) -> anyhow::Result<()> {
    if args.to <= args.from {
        anyhow::bail!("--to must be after --from");
    }
    let hours = partition::hour_of(args.to - 1) - partition::hour_of(args.from) + 1;
    if hours > MAX_HOURS {
        anyhow::bail!("the range spans {hours} hours; replay at most {MAX_HOURS} at a time");
    }
    let wasm = crate::cmd_rules::read_wasm(&args.rule)?;
    let (params, manifest) = crate::cmd_rules::read_params(&args.params)?;
    let rule_name = match &manifest {
        Some(m) => m.rule.name.clone(),
        None => args
            .rule
            .file_stem()
            .map_or_else(|| "rule".to_owned(), |s| s.to_string_lossy().into_owned()),
    };
    RuleId::new(&args.tenant, &rule_name)?;
    let policy = manifest.as_ref().map_or_else(Policy::default, |m| {
        Policy::default().restricted_by(&m.limits)
    });
    let tenant_config = tenant_config_path(&args);
    let overrides = match &tenant_config {
        Some(path) => read_override(path, &args.tenant, &rule_name)?,
        None => RuleOverride::default(),
    };
    if let Some(path) = tenant_config
        .as_ref()
        .filter(|_| args.tenant_config.is_none())
    {
        eprintln!(
            "using the tenant configuration {} ([rules.{rule_name}] overrides apply; \
             --no-tenant-config ignores it)",
            path.display()
        );
    }
    let params = merge_params(&params, &overrides.params)?;
    let mut lifecycle = overrides.lifecycle(LifecycleConfig::default());
    if let Some(n) = args.for_windows {
        lifecycle.for_windows = n;
    }
    if let Some(m) = args.repeat_minutes {
        lifecycle.repeat_interval_ms = m.max(1) * 60_000;
    }

    let runtime = crate::stores::runtime()?;
    let windows = runtime.block_on(load_windows(&args, hours))?;
    if windows.is_empty() {
        anyhow::bail!(
            "no window summaries for tenant {} starting between {} and {} under {}",
            args.tenant,
            ui::time(args.from),
            ui::time(args.to),
            args.data
                .show_key(&format!("metrics/tenant={}/", args.tenant))
        );
    }

    let host = crate::cmd_rules::host()?;
    let spinner = ui::spinner(args.json, format!("loading {}", args.rule.display()));
    let rule = host.load(&wasm);
    spinner.finish_and_clear();
    let rule = rule.map_err(|e| Refused::rejected(&e))?;

    let progress = ui::bar(args.json, windows.len() as u64, "windows");
    let mut state: Option<Vec<u8>> = None;
    let mut alerts: BTreeMap<String, AlertRecord> = BTreeMap::new();
    let mut events = Vec::new();
    let mut replayed: Vec<(i64, Transition)> = Vec::new();
    let mut failures = Vec::new();
    let (mut fuel_total, mut fuel_max) = (0u64, 0u64);
    for window in windows.values() {
        let outcome = host.evaluate(
            &rule,
            &to_contract_window(window),
            &params,
            state.as_deref(),
            &policy,
        );
        progress.inc(1);
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                // As in production: the rule keeps its previous state and its alerts stay as
                // they were.
                failures.push(Failure {
                    window_start: ui::time(window.start_ms),
                    code: e.code().to_owned(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        fuel_total += outcome.fuel_consumed;
        fuel_max = fuel_max.max(outcome.fuel_consumed);
        state = outcome.state;
        let produced: Vec<RuleAlert> = outcome
            .alerts
            .into_iter()
            .map(|a| RuleAlert {
                key: a.key,
                severity: match a.severity {
                    sluice_rules::Severity::Info => Severity::Info,
                    sluice_rules::Severity::Warning => Severity::Warning,
                    sluice_rules::Severity::Critical => Severity::Critical,
                },
                title: a.title,
                description: a.description,
                labels: a.labels.into_iter().collect(),
                value: a.value,
            })
            .collect();
        let transitions = apply(
            &mut alerts,
            &args.tenant,
            &rule_name,
            lifecycle,
            &produced,
            window.end_ms,
        );
        events.extend(transitions.iter().map(|t| Event::new(t, window)));
        replayed.extend(transitions.into_iter().map(|t| (window.start_ms, t)));
    }
    progress.finish_and_clear();
    if let Some(path) = &args.report {
        let summaries: Vec<WindowSummary> = windows.values().cloned().collect();
        let source = format!("a backtest of {rule_name} on {}", args.data);
        let data = crate::cmd_report::data::ReportData::build(
            &args.tenant,
            source,
            &summaries,
            &replayed,
            &[],
        );
        crate::cmd_report::write(&data, path)?;
        if !args.json {
            eprintln!("wrote the report {}", path.display());
        }
    }

    let evaluated = windows.len() - failures.len();
    let firing_at_end: Vec<&AlertRecord> = alerts
        .values()
        .filter(|a| a.status == AlertStatus::Firing)
        .collect();
    let count = |k: TransitionKind| events.iter().filter(|e| e.kind == k).count();
    let (first, last) = (
        windows.keys().next().copied().unwrap_or(args.from),
        windows.values().last().map_or(args.to, |w| w.end_ms),
    );
    if args.json {
        let out = serde_json::json!({
            "tenant": args.tenant,
            "rule": rule_name,
            "data": args.data.to_string(),
            "from": ui::time(args.from),
            "to": ui::time(args.to),
            "for_windows": lifecycle.for_windows,
            "tenant_config": tenant_config.as_ref().map(|p| p.display().to_string()),
            "windows": windows.len(),
            "first_window_start_ms": first,
            "last_window_end_ms": last,
            "evaluated": evaluated,
            "fired": count(TransitionKind::Firing),
            "resolved": count(TransitionKind::Resolved),
            "repeats": count(TransitionKind::Repeat),
            "transitions": events,
            "firing_at_end": firing_at_end.iter().map(|a| serde_json::json!({
                "key": a.key, "severity": a.severity, "title": a.title,
                "since": ui::time(a.starts_at_ms), "fingerprint": a.fingerprint,
            })).collect::<Vec<_>>(),
            "failures": failures,
            "fuel_total": fuel_total,
            "fuel_max": fuel_max,
            "patterns_available": false,
        });
        println!("{out}");
        return Ok(());
    }

    println!(
        "rule {rule_name} ({}) on tenant {}: {} window(s) from {} to {}, for = {} window(s)",
        args.rule.display(),
        args.tenant,
        windows.len(),
        ui::time(first),
        ui::time(last),
        lifecycle.for_windows
    );
    if events.is_empty() {
        println!("no alert would have fired");
    } else {
        let mut t = report::table(&["time", "transition", "key", "severity", "title"]);
        for e in &events {
            t.add_row(vec![
                Cell::new(&e.at),
                Cell::new(match e.kind {
                    TransitionKind::Firing => "FIRING",
                    TransitionKind::Repeat => "repeat",
                    TransitionKind::Resolved => "resolved",
                }),
                Cell::new(&e.key),
                Cell::new(e.severity.as_str()),
                Cell::new(&e.title),
            ]);
        }
        println!("{t}");
    }
    println!(
        "{} fired, {} resolved, {} repeat(s); still firing at the end: {}",
        count(TransitionKind::Firing),
        count(TransitionKind::Resolved),
        count(TransitionKind::Repeat),
        if firing_at_end.is_empty() {
            "none".to_owned()
        } else {
            firing_at_end
                .iter()
                .map(|a| a.key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!(
        "fuel per window: {} on average, {} at most (budget {})",
        report::count(fuel_total / evaluated.max(1) as u64),
        report::count(fuel_max),
        report::count(policy.fuel)
    );
    if !failures.is_empty() {
        println!("the rule failed on {} window(s):", failures.len());
        for f in failures.iter().take(10) {
            println!("  {}  ({}) {}", f.window_start, f.code, f.reason);
        }
    }
    println!(
        "note: metrics keep no log patterns, so the rule saw none (pattern rules cannot fire here)"
    );
    Ok(())
}

/// The tenant's window summaries starting in `[from, to)`, by window start.
async fn load_windows(
    args: &BacktestArgs,
    hours: i64,
) -> anyhow::Result<BTreeMap<i64, WindowSummary>> {
    let (store, prefix) = args.data.open(args.endpoint.clone()).await?;
    let first_hour = partition::hour_of(args.from);
    let spinner = ui::spinner(
        args.json,
        format!("listing {hours} hour(s) of metrics under {}", args.data),
    );
    let mut keys = Vec::new();
    for hour in first_hour..first_hour + hours {
        let hour_dir = format!(
            "metrics/tenant={}/{}/",
            args.tenant,
            partition::dt_hour(hour)
        );
        let listed = store
            .list(&format!("{prefix}{hour_dir}"))
            .await
            .with_context(|| format!("listing {}", args.data.show_key(&hour_dir)))?;
        keys.extend(listed.into_iter().filter(|k| {
            // `<window start ms>.parquet`: skip files outside the range without reading them.
            k.rsplit('/')
                .next()
                .and_then(|name| name.strip_suffix(".parquet"))
                .and_then(|ms| ms.parse::<i64>().ok())
                .is_none_or(|start| (args.from..args.to).contains(&start))
        }));
    }
    spinner.set_message(format!("reading {} metrics file(s)", keys.len()));
    let mut windows = BTreeMap::new();
    for key in keys {
        let Some(body) = store
            .get(&key)
            .await
            .with_context(|| format!("reading {key}"))?
        else {
            continue;
        };
        let summaries = metrics_out::decode(body).with_context(|| format!("decoding {key}"))?;
        for s in summaries {
            if s.tenant == args.tenant && (args.from..args.to).contains(&s.start_ms) {
                windows.insert(s.start_ms, s);
            }
        }
    }
    spinner.finish_and_clear();
    Ok(windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_states_the_lifecycles_default_repeat_interval() {
        let mut command =
            <BacktestArgs as clap::Args>::augment_args(clap::Command::new("backtest"));
        let help = command.render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let minutes = LifecycleConfig::default().repeat_interval_ms / 60_000;
        assert!(
            help.contains(&format!("repeat_interval_minutes, else {minutes} ")),
            "{help}"
        );
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(parse_time("2024-05-01T12:00:00Z"), Ok(1_714_564_800_000));
        assert!(parse_time("yesterday").is_err());
    }
}
