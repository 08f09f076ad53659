//! `cargo xtask demo`: run `sluice demo` and show what it wrote. sluice is built in the dev
//! profile, as `cargo xtask test` builds it (the workspace's binaries, so features unify and the
//! tests reuse the build); the profile optimises the hot path, so the pipeline runs at release
//! speed.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::util::{self, note};
use crate::venv;

/// Options of `cargo xtask demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Output directory [default: <repo>/sluice-data, cleared before each run].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Number of log records the demo generates.
    #[arg(long)]
    pub records: Option<u64>,
    /// Skip the Python part (creating the venv and reading the output with DuckDB/pyarrow).
    #[arg(long)]
    pub no_python: bool,
    /// Extra arguments for `sluice demo`, after `--`.
    #[arg(last = true)]
    pub extra: Vec<String>,
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let out = match &args.out {
        Some(dir) => util::absolute(dir)?,
        // `sluice demo` replaces what an earlier demo wrote there and keeps the rules a user
        // uploaded (`sluice rules upload` defaults to the same directory).
        None => util::repo_root().join("sluice-data"),
    };

    // The example rules the demo installs, as WebAssembly components.
    crate::test::ensure_wasm_target()?;
    util::run(
        util::cargo()
            .current_dir(util::repo_root().join("plugins"))
            .env("CARGO_TARGET_DIR", crate::test::plugins_target())
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-p",
                "threshold",
                "-p",
                "new-pattern",
            ]),
    )?;
    let rules_dir = crate::test::plugins_target()
        .join("wasm32-wasip2")
        .join("release");

    // A Python with pyarrow and DuckDB, found first so that the demo's query hints name it.
    let python = if args.no_python {
        None
    } else {
        match venv::ensure_venv() {
            Ok(v) => Some(v.python()),
            Err(e) => {
                note(format!("could not set up the Python venv ({e:#})"));
                system_python_with_readers()
            }
        }
    };
    let mut cmd = Command::new(crate::test::build_dev_sluice()?);
    cmd.args(["demo", "--out"])
        .arg(&out)
        .arg("--rules-dir")
        .arg(&rules_dir);
    if let Some(n) = args.records {
        cmd.args(["--records", &n.to_string()]);
    }
    if let Some(python) = &python {
        cmd.env("SLUICE_PYTHON", python);
    }
    cmd.args(&args.extra);
    util::run(&mut cmd)?;

    match &python {
        Some(python) => {
            eprintln!();
            // Each tier, then both as the documented query reads them (docs/ARCHITECTURE.md
            // §11): the check fails on a row read twice.
            for tier in ["logs", "recent", "all"] {
                note(format!(
                    "reading the output back with pyarrow and DuckDB (--tier {tier}):"
                ));
                util::run(
                    Command::new(python)
                        .arg(util::python_file("verify_parquet.py"))
                        .arg(&out)
                        .args(["--tier", tier]),
                )?;
            }
        }
        None if !args.no_python => {
            note("no Python with pyarrow and duckdb available; skipping the read-back");
        }
        None => {}
    }
    Ok(())
}

/// `python3`, if it can import both pyarrow and duckdb.
fn system_python_with_readers() -> Option<PathBuf> {
    let ok = util::succeeds(Command::new("python3").args(["-c", "import duckdb, pyarrow"]));
    ok.then(|| PathBuf::from("python3"))
}
