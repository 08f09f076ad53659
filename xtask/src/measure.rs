//! Resource usage of one child process: wall time, CPU time and peak RSS.
//!
//! How: xtask re-executes itself as `xtask __measure --report FILE -- CMD ARGS...`. That helper
//! process has exactly one child, CMD; after waiting for it, it calls
//! `getrusage(RUSAGE_CHILDREN)`, whose `ru_maxrss` is then the peak resident set size of CMD
//! alone (the kernel's high-water mark, so no sampling can miss a peak), and whose user and
//! system times are CMD's CPU time over all its threads. The helper is needed because the main
//! xtask process has other children (cargo, rustc) whose peaks would be mixed in.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nix::sys::resource::{UsageWho, getrusage};
use serde_json::json;

/// What [`run_measured`] reports about the child.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub max_rss_bytes: u64,
}

/// Arguments of the hidden `__measure` subcommand.
#[derive(Debug, clap::Args)]
pub struct MeasureArgs {
    /// Where to write the JSON report.
    #[arg(long)]
    report: PathBuf,
    /// The command to run.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// The `__measure` helper: runs the command, writes its usage, exits with its exit code.
pub fn helper(args: &MeasureArgs) -> Result<ExitCode> {
    let (program, rest) = args
        .command
        .split_first()
        .context("no command to measure")?;
    let start = Instant::now();
    let status = Command::new(program)
        .args(rest)
        .status()
        .with_context(|| format!("starting {program}"))?;
    let wall_s = start.elapsed().as_secs_f64();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage(RUSAGE_CHILDREN)")?;
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    let report = json!({
        "wall_s": wall_s,
        "cpu_s": tv(usage.user_time()) + tv(usage.system_time()),
        // Linux reports ru_maxrss in KiB.
        "max_rss_bytes": usage.max_rss().max(0) * 1024,
        "exit_code": status.code(),
    });
    fs::write(&args.report, report.to_string())
        .with_context(|| format!("writing {}", args.report.display()))?;
    Ok(ExitCode::from(
        u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
    ))
}

/// Runs `program args` under the `__measure` helper, capturing its stdout (stderr is
/// inherited). Fails if it does not exit successfully.
pub fn run_measured(program: &std::path::Path, args: &[String]) -> Result<(String, Usage)> {
    let report = tempfile::NamedTempFile::new().context("creating a report file")?;
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("__measure")
        .arg("--report")
        .arg(report.path())
        .arg("--")
        .arg(program)
        .args(args);
    let shown = format!(
        "{} {}",
        program.display(),
        args.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("$ {shown}");
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {shown}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("`{shown}` failed ({})\n{stdout}", out.status);
    }
    let text = fs::read_to_string(report.path()).context("reading the usage report")?;
    let v: serde_json::Value = serde_json::from_str(&text).context("parsing the usage report")?;
    let usage = Usage {
        wall_s: v["wall_s"].as_f64().unwrap_or(0.0),
        cpu_s: v["cpu_s"].as_f64().unwrap_or(0.0),
        max_rss_bytes: v["max_rss_bytes"].as_u64().unwrap_or(0),
    };
    Ok((stdout, usage))
}
