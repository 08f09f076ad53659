//! `sluice rules check FILE.wasm`: what the registry would conclude about an upload.

use std::path::PathBuf;

use comfy_table::Cell;
use sluice_rules::{Limits, Params, Policy, ValidationReport};

use super::Refused;
use crate::{report, ui};

/// The long `--help` text (clap takes the short one from the command's doc comment).
pub const LONG_ABOUT: &str = "Validate a rule component exactly as the registry function does before it accepts an \
upload: the size cap, the exported contract version (sluice:rules/rule@0.1.0), the import \
allowlist (only the WASI 0.2 interfaces pure computation needs: no filesystem, network or \
environment), the signature of `evaluate`, and a test run on a canned window (20 services, \
25 patterns) with the manifest's params and limits, reporting the fuel it used.\n\n\
Prints a table (or JSON with --json). Exits non-zero when the component would be rejected, \
with the stable code and the exact reason, e.g. `rule rejected (forbidden_import): ...`.";

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The rule component, e.g. plugins/target/wasm32-wasip2/release/threshold.wasm.
    wasm: PathBuf,
    /// The rule's manifest: its [params] are used for the test run and its [limits] lower the
    /// default policy. Without it the rule gets `{}` as params.
    #[arg(long, short)]
    manifest: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let wasm = super::read_wasm(&args.wasm)?;
    let manifest = args
        .manifest
        .as_deref()
        .map(super::read_manifest)
        .transpose()?;
    let params = manifest
        .as_ref()
        .map_or_else(Params::empty, |m| m.params.clone());
    let limits = manifest.as_ref().map_or_else(Limits::default, |m| m.limits);
    let policy = Policy::default().restricted_by(&limits);
    let host = super::host()?;
    let spinner = ui::spinner(args.json, format!("checking {}", args.wasm.display()));
    let result = host.validate(&wasm, &params, &policy);
    spinner.finish_and_clear();
    let report = match result {
        Ok(v) => v.report,
        Err(e) => {
            let refused = Refused::rejected(&e);
            if args.json {
                let out = serde_json::json!({
                    "status": "rejected",
                    "file": args.wasm.display().to_string(),
                    "code": refused.code,
                    "reason": refused.reason,
                    "size_bytes": wasm.len(),
                    "engine_fingerprint": host.fingerprint(),
                });
                println!("{out}");
            } else if e.code() == "invalid_params" && args.manifest.is_none() {
                eprintln!(
                    "hint: the rule refused empty params; pass its manifest with --manifest rule.toml"
                );
            }
            return Err(refused.into());
        }
    };
    if args.json {
        println!("{}", json(&args, &report, &policy, host.fingerprint()));
    } else {
        println!("{}", table(&args, &report, &policy, host.fingerprint()));
        if !report.canned.stderr.is_empty() {
            println!(
                "rule stderr on the canned window:\n{}",
                report.canned.stderr
            );
        }
    }
    Ok(())
}

fn table(
    args: &CheckArgs,
    r: &ValidationReport,
    policy: &Policy,
    fingerprint: &str,
) -> comfy_table::Table {
    let mut t = report::table(&["check", "result"]);
    let canned = &r.canned;
    let rows: Vec<(&str, String)> = vec![
        ("status", "accepted".to_owned()),
        ("file", args.wasm.display().to_string()),
        (
            "size",
            format!(
                "{} ({} bytes)",
                report::bytes(r.size_bytes as u64),
                report::count(r.size_bytes as u64)
            ),
        ),
        ("contract", r.contract.clone()),
        ("exports", r.exports.join("\n")),
        (
            "imports",
            if r.imports.is_empty() {
                "(none)".to_owned()
            } else {
                r.imports.join("\n")
            },
        ),
        ("compile time", ui::millis(r.compile_time)),
        (
            "canned window",
            format!("20 services, 25 patterns: {} alert(s)", canned.alerts.len()),
        ),
        (
            "fuel used",
            format!(
                "{} of {} ({:.2}%)",
                report::count(canned.fuel_consumed),
                report::count(policy.fuel),
                canned.fuel_consumed as f64 * 100.0 / policy.fuel.max(1) as f64
            ),
        ),
        ("evaluation time", ui::millis(canned.duration)),
        (
            "output",
            format!(
                "{} (state {})",
                report::bytes(canned.output_bytes as u64),
                report::bytes(canned.state.as_ref().map_or(0, Vec::len) as u64)
            ),
        ),
        ("engine", fingerprint.to_owned()),
    ];
    for (name, value) in rows {
        t.add_row(vec![Cell::new(name), Cell::new(value)]);
    }
    t
}

fn json(
    args: &CheckArgs,
    r: &ValidationReport,
    policy: &Policy,
    fingerprint: &str,
) -> serde_json::Value {
    serde_json::json!({
        "status": "accepted",
        "file": args.wasm.display().to_string(),
        "size_bytes": r.size_bytes,
        "contract": r.contract,
        "exports": r.exports,
        "imports": r.imports,
        "compile_ms": r.compile_time.as_secs_f64() * 1000.0,
        "canned": {
            "alerts": r.canned.alerts.len(),
            "fuel_consumed": r.canned.fuel_consumed,
            "fuel_budget": policy.fuel,
            "duration_ms": r.canned.duration.as_secs_f64() * 1000.0,
            "output_bytes": r.canned.output_bytes,
            "stderr": r.canned.stderr,
        },
        "engine_fingerprint": fingerprint,
    })
}
