//! `cargo xtask latency`: how soon an incident pages (docs/ARCHITECTURE.md §12). Starts the
//! emulator (moto by default, as `cargo xtask test` does), builds the rule components, and runs
//! `sluice-latency` (tests/src/bin): `sluice local run`'s runner with the template's defaults,
//! a hundred tenants of which one has a webhook that never answers and one a rule that loops,
//! one line per run with the first, median and last tenant's page after the incident's first
//! record. A measurement, not a test: `cargo xtask test` runs the same scenario with short
//! windows and asserts only what must hold.

use anyhow::Result;

use crate::emulator::{self, Choice, Emulator};
use crate::test::{WASM_TARGET, plugins_target};
use crate::util;

/// Arguments of `cargo xtask latency`.
#[derive(Debug, clap::Args)]
pub struct LatencyArgs {
    /// Runs (each picks a random point of a window for the incident).
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// Tenants besides the two hostile ones.
    #[arg(long, default_value_t = 98)]
    tenants: u32,
    /// Also print one JSON object per run.
    #[arg(long)]
    json: bool,
}

/// Runs the measurement.
pub fn run(args: &LatencyArgs) -> Result<()> {
    let root = util::repo_root();
    util::run(
        util::cargo()
            .current_dir(root.join("plugins"))
            .env("CARGO_TARGET_DIR", plugins_target())
            .args(["build", "--workspace", "--target", WASM_TARGET]),
    )?;
    let tools = crate::venv::ensure_venv()?;
    let (endpoint, _running) = match Choice::from_env()? {
        Choice::External(url) => {
            emulator::check_endpoint(&url)?;
            (url, None)
        }
        Choice::Start(kind) => {
            let emu = Emulator::start(kind, false)?;
            (emu.endpoint.clone(), Some(emu))
        }
    };
    let mut cmd = util::cargo();
    // A measurement: the release build, as the functions run on AWS.
    cmd.args([
        "run",
        "--release",
        "-p",
        "sluice-e2e",
        "--bin",
        "sluice-latency",
        "--",
    ])
    .args(["--runs", &args.runs.to_string()])
    .args(["--tenants", &args.tenants.to_string()]);
    if args.json {
        cmd.arg("--json");
    }
    for (key, value) in crate::test::test_env(&endpoint, &tools) {
        cmd.env(key, value);
    }
    util::run(&mut cmd)
}
