//! `cargo xtask`: sluice's own automation (the `xtask` alias is in `.cargo/config.toml`).
//!
//! - `cargo xtask test`: everything CI runs, in order, failing fast: the wasm32-wasip2 target,
//!   `cargo fmt --check`, clippy with `-D warnings`, the Python venv, a local AWS emulator
//!   (moto) for the workspace tests, plugin builds, cfn-lint, and a demo smoke check whose
//!   Parquet output is read back with both pyarrow and DuckDB.
//! - `cargo xtask demo`: runs `sluice demo` on the embedded default and queries the result.
//! - `cargo xtask bench`: sluice ingest against DuckDB single-threaded, and peak RSS; the
//!   front door's intake throughput and latency (`--intake-only`, `--no-intake`).
//! - `cargo xtask emulator up|down|status`: a moto (or LocalStack) server on a free port.
//! - `cargo xtask infra`: the template checks of `test` alone (cfn-lint, sam validate, checkov,
//!   moto CloudFormation).
//! - `cargo xtask package`: `sam build` of the Lambda functions for arm64 and x86_64.
//! - `cargo xtask invoke FUNCTION --event FILE`: one invocation through the Lambda runtime API.
//! - `cargo xtask venv`: creates/updates the Python tooling venv and prints its python.
//!
//! Module map: [`util`] (paths, processes), [`venv`] (Python venvs), [`emulator`],
//! [`infra`] (template checks), [`lambda`] (package, invoke), [`node`] (the tests' Node clients),
//! [`steps`] (timed fail-fast steps), [`test`], [`demo`], [`bench`], [`measure`] (rusage of a
//! child). Progress goes to stderr, results to stdout.
//!
//! Environment: `SLUICE_VENV` (tooling venv, default `.sluice/venv`), `SLUICE_EMULATOR`
//! (`moto` default, `localstack`, or `external` with `SLUICE_TEST_ENDPOINT`/`AWS_ENDPOINT_URL`),
//! `SLUICE_BASE_PYTHON` (Python used to create the venv, default `python3`),
//! `SLUICE_LOCALSTACK_PYTHON`, `SLUICE_LOCALSTACK_VENV`.

mod arm64;
mod bench;
mod bench_intake;
mod bench_scale;
mod bench_storage;
mod browser;
mod demo;
mod emulator;
mod infra;
mod lambda;
mod latency;
mod measure;
mod node;
mod steps;
mod test;
mod util;
mod venv;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "sluice's own automation: tests, demo, benchmarks, local AWS emulator",
    after_help = "Environment:\n  \
        SLUICE_VENV               Python tooling venv [default: <repo>/.sluice/venv]\n  \
        SLUICE_EMULATOR           moto (default) | localstack | external\n  \
        SLUICE_TEST_ENDPOINT      endpoint for SLUICE_EMULATOR=external (or AWS_ENDPOINT_URL)\n  \
        SLUICE_BASE_PYTHON        Python that creates the venv [default: python3]\n  \
        SLUICE_LOCALSTACK_PYTHON  Python >= 3.13 for LocalStack [default: searched]"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run everything CI runs: fmt, clippy, tests against a local emulator, plugins,
    /// cfn-lint, demo smoke check. Fails fast; prints a timed summary.
    Test(test::TestArgs),
    /// Run the demo (dev build, hot path optimised) into ./sluice-data and read the result with
    /// DuckDB/pyarrow.
    Demo(demo::DemoArgs),
    /// Compare `sluice ingest` with DuckDB (1 thread) on the same NDJSON; measure peak RSS.
    Bench(bench::BenchArgs),
    /// How soon an incident pages: five runs of `sluice local run` on the emulator with the
    /// template's defaults and a hundred tenants (two of them hostile).
    Latency(latency::LatencyArgs),
    /// Start, stop or inspect a local AWS emulator (moto by default; SLUICE_EMULATOR=localstack).
    Emulator {
        #[command(subcommand)]
        action: EmulatorAction,
    },
    /// Only the checks of infra/template.yaml: cfn-lint, sam validate --lint, checkov, and a
    /// deployment of the translated template to moto CloudFormation.
    Infra,
    /// `sam build` every function of infra/template.yaml for arm64 and x86_64 (cargo-lambda).
    Package(lambda::PackageArgs),
    /// Invoke a function through the Lambda runtime API (`cargo lambda watch` + `invoke`).
    Invoke(lambda::InvokeArgs),
    /// Create or update the Python tooling venv; print the path of its python on stdout.
    Venv,
    /// Internal: run a command and report its rusage (used by `bench`).
    #[command(name = "__measure", hide = true)]
    Measure(measure::MeasureArgs),
}

#[derive(Debug, Subcommand)]
enum EmulatorAction {
    /// Start the emulator detached on a free port; print `export AWS_ENDPOINT_URL=...` lines
    /// (use: eval "$(cargo xtask emulator up)").
    Up,
    /// Stop the emulator started by `up`.
    Down,
    /// Say whether it runs (exit 0 and print the exports) or not (exit 1).
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Cmd) -> Result<ExitCode> {
    match command {
        Cmd::Test(args) => test::run(&args).map(|()| ExitCode::SUCCESS),
        Cmd::Demo(args) => demo::run(&args).map(|()| ExitCode::SUCCESS),
        Cmd::Bench(args) => bench::run(&args).map(|()| ExitCode::SUCCESS),
        Cmd::Latency(args) => latency::run(&args).map(|()| ExitCode::SUCCESS),
        Cmd::Emulator { action } => match action {
            EmulatorAction::Up => emulator::up(),
            EmulatorAction::Down => emulator::down(),
            EmulatorAction::Status => emulator::status(),
        },
        Cmd::Infra => infra::run_all().map(|()| ExitCode::SUCCESS),
        Cmd::Package(args) => lambda::package(&args).map(|()| ExitCode::SUCCESS),
        Cmd::Invoke(args) => lambda::invoke(&args).map(|()| ExitCode::SUCCESS),
        Cmd::Venv => {
            let venv = venv::ensure_venv()?;
            println!("{}", venv.python().display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Measure(args) => measure::helper(&args),
    }
}
