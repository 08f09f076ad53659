//! `cargo xtask test`: everything CI runs, in order, failing fast.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::arm64;
use crate::browser;
use crate::emulator::{self, Choice, Emulator};
use crate::infra;
use crate::node;
use crate::steps::{Outcome, Steps};
use crate::util::{self, note};
use crate::venv::{self, Venv};

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Records for the demo smoke check.
    #[arg(long, default_value_t = 20_000)]
    pub demo_records: u64,
    /// Extra arguments for `cargo nextest run` (or `cargo test`), after `--`.
    #[arg(last = true)]
    pub test_args: Vec<String>,
}

pub const WASM_TARGET: &str = "wasm32-wasip2";

const TARGET: &str = "rustup target wasm32-wasip2";
const FMT: &str = "cargo fmt --check";
const CLIPPY: &str = "cargo clippy";
const PLUGINS: &str = "plugins (wasm32-wasip2)";
const VENV: &str = "python venv";
const EMULATOR_UP: &str = "emulator up";
const TESTS: &str = "workspace tests";
const EMULATOR_DOWN: &str = "emulator down";
const CFN_LINT: &str = "cfn-lint infra/template.yaml";
const DEMO: &str = "demo smoke check";

/// The steps, in the order they run.
const STEPS: &[&str] = &[
    TARGET,
    FMT,
    CLIPPY,
    PLUGINS,
    VENV,
    node::STEP,
    EMULATOR_UP,
    browser::STEP,
    TESTS,
    EMULATOR_DOWN,
    arm64::STEP,
    CFN_LINT,
    infra::SAM_VALIDATE_STEP,
    infra::CHECKOV_STEP,
    infra::MOTO_STEP,
    DEMO,
];

/// Runs every step; prints the summary whether it passes or fails.
pub fn run(args: &TestArgs) -> Result<()> {
    let mut steps = Steps::new("cargo xtask test", STEPS);
    let result = run_steps(&mut steps, args);
    steps.summary();
    result
}

fn run_steps(steps: &mut Steps, args: &TestArgs) -> Result<()> {
    let root = util::repo_root();
    steps.run(TARGET, ensure_wasm_target)?;
    steps.run(FMT, || {
        util::run(util::cargo().args(["fmt", "--all", "--check"]))?;
        Ok(Outcome::Passed)
    })?;
    steps.run(CLIPPY, || {
        util::run(util::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        Ok(Outcome::Passed)
    })?;
    // Before the workspace tests, which may load the built rule components.
    steps.run(PLUGINS, || plugins(&root.join("plugins")))?;

    let mut tools: Option<Venv> = None;
    steps.run(VENV, || {
        tools = Some(venv::ensure_venv()?);
        Ok(Outcome::Passed)
    })?;
    let tools = tools.context("the venv step did not produce a venv")?;
    let mut node_modules = None;
    steps.run(node::STEP, || {
        node_modules = Some(node::ensure_node_modules()?);
        Ok(Outcome::Passed)
    })?;

    // The emulator lives until EMULATOR_DOWN, or until this function returns early (its Drop
    // stops it).
    let mut endpoint = String::new();
    let mut running: Option<Emulator> = None;
    steps.run(EMULATOR_UP, || match Choice::from_env()? {
        Choice::External(url) => {
            emulator::check_endpoint(&url)?;
            endpoint = url.clone();
            Ok(Outcome::Skipped(format!(
                "SLUICE_EMULATOR=external, using {url}"
            )))
        }
        Choice::Start(kind) => {
            let emu = Emulator::start(kind, false)?;
            endpoint = emu.endpoint.clone();
            running = Some(emu);
            Ok(Outcome::Passed)
        }
    })?;
    steps.run(browser::STEP, browser::ensure_chromium)?;
    steps.run(TESTS, || {
        workspace_tests(&endpoint, &tools, node_modules.as_deref(), &args.test_args)?;
        Ok(Outcome::Passed)
    })?;
    steps.run(EMULATOR_DOWN, || match running.take() {
        Some(mut emu) => {
            emu.stop();
            Ok(Outcome::Passed)
        }
        None => Ok(Outcome::Skipped("external endpoint".to_string())),
    })?;
    steps.run(arm64::STEP, || arm64::core_tests(&tools))?;

    steps.run(CFN_LINT, || {
        let template = root.join("infra").join("template.yaml");
        if !template.exists() {
            return Ok(Outcome::Skipped(
                "infra/template.yaml does not exist yet".into(),
            ));
        }
        util::run(
            Command::new(tools.bin("cfn-lint"))
                .arg(&template)
                .current_dir(&root),
        )?;
        Ok(Outcome::Passed)
    })?;
    steps.run(infra::SAM_VALIDATE_STEP, infra::sam_validate)?;
    steps.run(infra::CHECKOV_STEP, infra::checkov)?;
    steps.run(infra::MOTO_STEP, || infra::moto_deploy(&tools))?;
    steps.run(DEMO, || {
        demo_smoke(&tools, args.demo_records)?;
        Ok(Outcome::Passed)
    })?;
    Ok(())
}

/// `rustup target add wasm32-wasip2`, unless it is already installed.
pub fn ensure_wasm_target() -> Result<Outcome> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::inherit())
        .output();
    match installed {
        Err(_) => Ok(Outcome::Skipped("rustup not found".to_string())),
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET) =>
        {
            note(format!("{WASM_TARGET} already installed"));
            Ok(Outcome::Passed)
        }
        Ok(_) => {
            util::run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
            Ok(Outcome::Passed)
        }
    }
}

/// `cargo nextest run --workspace` (or `cargo test --workspace` without nextest), with the
/// emulator's environment.
fn workspace_tests(
    endpoint: &str,
    tools: &Venv,
    node_modules: Option<&Path>,
    extra: &[String],
) -> Result<()> {
    let has_nextest = util::succeeds(util::cargo().args(["nextest", "--version"]));
    let mut cmd = util::cargo();
    if has_nextest {
        cmd.args(["nextest", "run", "--workspace"]);
    } else {
        note("cargo-nextest not found; falling back to `cargo test`");
        cmd.args(["test", "--workspace"]);
    }
    cmd.args(extra);
    for (key, value) in test_env(endpoint, tools) {
        note(format!("{key}={value}"));
        cmd.env(key, value);
    }
    // The run builds the `sluice` binary for the CLI's own tests before any test starts; the
    // end-to-end tests that run it as a process take it from here instead of asking cargo.
    let sluice = dev_sluice()?;
    note(format!("SLUICE_BIN={}", sluice.display()));
    cmd.env("SLUICE_BIN", sluice);
    if let Some(modules) = node_modules {
        note(format!("SLUICE_NODE_MODULES={}", modules.display()));
        cmd.env("SLUICE_NODE_MODULES", modules);
    }
    util::run(&mut cmd)
}

/// Environment for the workspace tests: the SDK's endpoint and dummy credentials, and the
/// Python that can read Parquet back (`SLUICE_PYTHON`) with the verification script.
pub fn test_env(endpoint: &str, tools: &Venv) -> Vec<(&'static str, String)> {
    let mut env = emulator::sdk_env(endpoint);
    env.push(("SLUICE_PYTHON", tools.python().display().to_string()));
    env.push((
        "SLUICE_VERIFY_PARQUET",
        util::python_file("verify_parquet.py").display().to_string(),
    ));
    env.push((
        "SLUICE_PLUGINS_WASM_DIR",
        plugins_target()
            .join(WASM_TARGET)
            .join("debug")
            .display()
            .to_string(),
    ));
    env.push(("SLUICE_CHROMIUM", browser::CHROMIUM.to_owned()));
    if let Ok(target) = util::target_dir() {
        env.push((
            "SLUICE_TEST_ARTIFACTS",
            target.join("test-artifacts").display().to_string(),
        ));
    }
    env
}

/// Where the plugins are built: always `plugins/target`, whatever `CARGO_TARGET_DIR` says, so
/// that the components are at a known place (`plugins/target/wasm32-wasip2/debug/*.wasm`).
/// The dev-profile `sluice` binary (the one the workspace tests build).
pub fn dev_sluice() -> Result<std::path::PathBuf> {
    Ok(util::target_dir()?.join("debug").join("sluice"))
}

/// Builds the workspace's binaries in the dev profile and returns `sluice`'s path. The whole
/// workspace, so that features unify as they do for the tests and nothing (wasmtime, the AWS
/// SDK) is compiled a second time.
pub fn build_dev_sluice() -> Result<std::path::PathBuf> {
    util::run(util::cargo().args(["build", "--workspace", "--bins"]))?;
    dev_sluice()
}

pub fn plugins_target() -> std::path::PathBuf {
    util::repo_root().join("plugins").join("target")
}

/// Checks (fmt, clippy), builds for wasm32-wasip2 and tests on the host the rule plugins, if
/// `plugins/` is a cargo workspace with at least one package.
fn plugins(dir: &Path) -> Result<Outcome> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.exists() {
        return Ok(Outcome::Skipped(
            "plugins/Cargo.toml does not exist yet".into(),
        ));
    }
    let meta = util::output(
        util::cargo()
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(&manifest)
            .stdout(Stdio::piped()),
    )?;
    let meta: serde_json::Value =
        serde_json::from_str(&meta).context("parsing `cargo metadata` for plugins/")?;
    let members = meta["packages"].as_array().map_or(0, Vec::len);
    if members == 0 {
        return Ok(Outcome::Skipped("plugins/ has no members yet".into()));
    }
    note(format!("plugins/: {members} package(s)"));
    let cargo = || {
        let mut cmd = util::cargo();
        cmd.current_dir(dir)
            .env("CARGO_TARGET_DIR", plugins_target());
        cmd
    };
    util::run(cargo().args(["fmt", "--all", "--check"]))?;
    util::run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    util::run(cargo().args(["build", "--workspace", "--target", WASM_TARGET]))?;
    util::run(cargo().args(["test", "--workspace"]))?;
    Ok(Outcome::Passed)
}

/// `sluice demo --json` into a temporary directory, then both Parquet readers must agree with
/// the row count the demo reports. It runs from that directory, not the repository: the demo
/// must not need the sources at run time.
fn demo_smoke(tools: &Venv, records: u64) -> Result<()> {
    let work = tempfile::Builder::new()
        .prefix("sluice-demo-")
        .tempdir()
        .context("creating a temporary directory")?;
    let out = work.path().join("out");
    let sluice = build_dev_sluice()?;
    let stdout = util::output(
        Command::new(&sluice)
            .current_dir(work.path())
            .args(["demo", "--out"])
            .arg(&out)
            .args(["--records", &records.to_string(), "--json", "--rules-dir"])
            .arg(plugins_target().join(WASM_TARGET).join("debug"))
            .stdout(Stdio::piped()),
    )?;
    let summary = util::last_json_object(&stdout).context("reading `sluice demo --json` output")?;
    note(format!("demo summary: {summary}"));
    let rows = summary["rows"]
        .as_u64()
        .context("`sluice demo --json` summary has no numeric `rows`")?;
    if rows == 0 {
        bail!("the demo wrote no rows");
    }
    // The incident trips a circuit breaker the service never logs otherwise: the example
    // new-pattern rule must fire on it, and resolve, through the signed webhook.
    let (firing, resolved) = (
        summary["alerts_firing"].as_u64(),
        summary["alerts_resolved"].as_u64(),
    );
    if firing.unwrap_or(0) == 0 || resolved.unwrap_or(0) == 0 {
        bail!(
            "the demo's incident raised no alert that fired and resolved (firing {firing:?}, resolved {resolved:?})"
        );
    }
    let mut verify = Command::new(tools.python());
    verify
        .arg(util::python_file("verify_parquet.py"))
        .arg(&out)
        .args(["--expect-rows", &rows.to_string()]);
    if let Some(rejected) = rejected_total(&summary["rejected"]) {
        verify.args(["--expect-rejected", &rejected.to_string()]);
    }
    util::run(&mut verify)
}

/// `rejected` as a total: either a number or an object of reason -> count.
pub fn rejected_total(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::Object(map) => map.values().map(serde_json::Value::as_u64).sum(),
        _ => None,
    }
}
