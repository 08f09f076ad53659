//! Checks of the SAM template `infra/template.yaml`, run by `cargo xtask test` after cfn-lint:
//!
//! - `sam validate --lint` (SAM CLI, offline);
//! - checkov: no failed check, and every skipped check carries its reason in the template
//!   (`Metadata: checkov: skip: - id: ... comment: ...`);
//! - the template translated with samtranslator and deployed to moto CloudFormation on
//!   127.0.0.1, with assertions on what it created (`infra/tests/deploy_to_moto.py`).
//!
//! SAM CLI and checkov pin boto3 to versions that exclude each other, so each lives in its own
//! venv next to the tooling venv (see [`venv::ensure_extra`]).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::emulator::{self, Emulator, Kind};
use crate::steps::{Outcome, Steps};
use crate::util::{self, note};
use crate::venv::{self, Venv};

/// Step names, in the order `cargo xtask test` runs them.
pub const SAM_VALIDATE_STEP: &str = "sam validate --lint";
pub const CHECKOV_STEP: &str = "checkov infra/template.yaml";
pub const MOTO_STEP: &str = "template on moto CloudFormation";

const CFN_LINT_STEP: &str = "cfn-lint infra/template.yaml";

/// `cargo xtask infra`: the template checks of `cargo xtask test` alone (cfn-lint too), for
/// working on the template without the rest of the suite.
pub fn run_all() -> Result<()> {
    let names = [CFN_LINT_STEP, SAM_VALIDATE_STEP, CHECKOV_STEP, MOTO_STEP];
    let mut steps = Steps::new("cargo xtask infra", &names);
    let result = (|| {
        let tools = venv::ensure_venv()?;
        steps.run(CFN_LINT_STEP, || cfn_lint(&tools))?;
        steps.run(SAM_VALIDATE_STEP, sam_validate)?;
        steps.run(CHECKOV_STEP, checkov)?;
        steps.run(MOTO_STEP, || moto_deploy(&tools))
    })();
    steps.summary();
    result
}

/// `cfn-lint infra/template.yaml` from the tooling venv.
fn cfn_lint(tools: &Venv) -> Result<Outcome> {
    if let Some(skip) = missing_template() {
        return Ok(skip);
    }
    util::run(
        Command::new(tools.bin("cfn-lint"))
            .arg(template())
            .current_dir(util::repo_root()),
    )?;
    Ok(Outcome::Passed)
}

/// `<repo>/infra/template.yaml`.
pub fn template() -> PathBuf {
    util::repo_root().join("infra").join("template.yaml")
}

fn missing_template() -> Option<Outcome> {
    (!template().exists())
        .then(|| Outcome::Skipped("infra/template.yaml does not exist yet".into()))
}

/// `sam` from its venv, in the repository root (where `samconfig.toml` is), without telemetry.
pub fn sam_command(sam: &Venv) -> Command {
    let mut cmd = Command::new(sam.bin("sam"));
    cmd.current_dir(util::repo_root())
        .env("SAM_CLI_TELEMETRY", "0");
    cmd
}

/// `sam validate --lint --template-file infra/template.yaml`.
pub fn sam_validate() -> Result<Outcome> {
    if let Some(skip) = missing_template() {
        return Ok(skip);
    }
    let sam = venv::ensure_extra("sam")?;
    util::run(
        sam_command(&sam)
            .args(["validate", "--lint", "--template-file"])
            .arg(template()),
    )?;
    Ok(Outcome::Passed)
}

/// checkov on the template. Fails on any failed check, on a parsing error, and on a skipped
/// check whose suppression gives no reason.
pub fn checkov() -> Result<Outcome> {
    if let Some(skip) = missing_template() {
        return Ok(skip);
    }
    let tools = venv::ensure_extra("checkov")?;
    let root = util::repo_root();
    // --soft-fail: judge the JSON report here rather than by exit code, so that failures
    // print readably. --skip-download: no calls to the vendor's platform (offline).
    let out = util::output(
        Command::new(tools.bin("checkov"))
            .current_dir(&root)
            .args(["--file", "infra/template.yaml"])
            .args(["--framework", "cloudformation", "--output", "json"])
            .args(["--skip-download", "--soft-fail"])
            .env("BC_SKIP_MAPPING", "TRUE")
            .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")
            .stdout(Stdio::piped()),
    )?;
    let report = parse_checkov(&out)?;
    print_checkov(&report);
    let mut problems = Vec::new();
    if report.failed.len() + usize::try_from(report.parsing_errors).unwrap_or(usize::MAX) > 0 {
        problems.push(format!(
            "{} failed check(s), {} parsing error(s)",
            report.failed.len(),
            report.parsing_errors
        ));
    }
    let unexplained: Vec<String> = report
        .skipped
        .iter()
        .filter(|c| c.comment.trim().is_empty())
        .map(|c| format!("{} on {}", c.id, c.resource))
        .collect();
    if !unexplained.is_empty() {
        problems.push(format!(
            "suppressed without a reason (add `comment:`): {}",
            unexplained.join(", ")
        ));
    }
    if !problems.is_empty() {
        bail!("checkov: {}", problems.join("; "));
    }
    Ok(Outcome::Passed)
}

#[derive(Debug, Default)]
struct CheckovReport {
    passed: u64,
    parsing_errors: u64,
    failed: Vec<CheckovCheck>,
    skipped: Vec<CheckovCheck>,
}

#[derive(Debug)]
struct CheckovCheck {
    id: String,
    name: String,
    resource: String,
    lines: String,
    comment: String,
}

/// checkov prints one JSON object for one framework, a list of them for several, and a bare
/// summary when nothing was scanned.
fn parse_checkov(stdout: &str) -> Result<CheckovReport> {
    let start = stdout
        .find(['{', '['])
        .with_context(|| format!("checkov printed no JSON:\n{stdout}"))?;
    let value: Value =
        serde_json::from_str(&stdout[start..]).context("parsing checkov's JSON report")?;
    let reports = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut out = CheckovReport::default();
    for report in &reports {
        let summary = &report["summary"];
        out.passed += summary["passed"].as_u64().unwrap_or(0);
        out.parsing_errors += summary["parsing_errors"].as_u64().unwrap_or(0);
        let checks = |key: &str| -> Vec<CheckovCheck> {
            report["results"][key]
                .as_array()
                .map(|a| a.iter().map(check_of).collect())
                .unwrap_or_default()
        };
        out.failed.extend(checks("failed_checks"));
        out.skipped.extend(checks("skipped_checks"));
    }
    if reports.iter().all(|r| r.get("results").is_none()) {
        bail!("checkov scanned nothing (is infra/template.yaml a CloudFormation template?)");
    }
    Ok(out)
}

fn check_of(v: &Value) -> CheckovCheck {
    let text = |key: &str| v[key].as_str().unwrap_or_default().to_string();
    let lines = match v["file_line_range"].as_array().map(Vec::as_slice) {
        Some([a, b]) => format!("{a}-{b}"),
        _ => String::new(),
    };
    CheckovCheck {
        id: text("check_id"),
        name: text("check_name"),
        resource: text("resource"),
        lines,
        comment: v["check_result"]["suppress_comment"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

fn print_checkov(report: &CheckovReport) {
    let rows: Vec<Vec<String>> = report
        .skipped
        .iter()
        .map(|c| vec![c.id.clone(), c.resource.clone(), shorten(&c.comment, 90)])
        .collect();
    if !rows.is_empty() {
        eprint!(
            "{}",
            util::table(
                &["skipped check", "resource", "reason (from the template)"],
                &rows
            )
        );
    }
    for c in &report.failed {
        eprintln!(
            "FAILED {} {} on {} (infra/template.yaml lines {})",
            c.id, c.name, c.resource, c.lines
        );
    }
    note(format!(
        "checkov: {} passed, {} failed, {} skipped with a reason, {} parsing errors",
        report.passed,
        report.failed.len(),
        report.skipped.len(),
        report.parsing_errors
    ));
}

fn shorten(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Translates the template and deploys it to a moto server of its own (started here on
/// 127.0.0.1 and stopped on return), then checks what was created.
pub fn moto_deploy(tools: &Venv) -> Result<Outcome> {
    if let Some(skip) = missing_template() {
        return Ok(skip);
    }
    let mut moto = Emulator::start(Kind::Moto, false)?;
    let result = run_deploy_script(tools, &moto.endpoint);
    moto.stop();
    result.map(|()| Outcome::Passed)
}

fn run_deploy_script(tools: &Venv, endpoint: &str) -> Result<()> {
    let script = deploy_script();
    let mut cmd = Command::new(tools.python());
    cmd.current_dir(util::repo_root())
        .arg(&script)
        .args(["--endpoint", endpoint]);
    for (key, value) in emulator::sdk_env(endpoint) {
        cmd.env(key, value);
    }
    util::run(&mut cmd).with_context(|| format!("{} against moto", script.display()))
}

fn deploy_script() -> PathBuf {
    util::repo_root()
        .join("infra")
        .join("tests")
        .join("deploy_to_moto.py")
}
