//! Small helpers shared by the commands: repository paths, running processes with the command
//! line echoed, and printing.
//!
//! Progress goes to stderr so that stdout stays usable for results (`eval "$(cargo xtask
//! emulator up)"`, `cargo xtask bench --json`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The workspace root (the directory holding the root `Cargo.toml`). `cargo xtask` (`cargo
/// run`) sets `CARGO_MANIFEST_DIR` when it runs the binary; that is preferred over the path
/// compiled in, which is stale when a shared target directory holds a build from another clone.
pub fn repo_root() -> PathBuf {
    let manifest_dir = sluice_cargo_env::manifest_dir(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), Path::to_path_buf)
}

/// `<repo>/.sluice`, the git-ignored directory for local state (venv, emulator pid file, logs).
pub fn state_dir() -> PathBuf {
    repo_root().join(".sluice")
}

/// `<repo>/xtask/python/<name>`.
pub fn python_file(name: &str) -> PathBuf {
    repo_root().join("xtask").join("python").join(name)
}

/// A `cargo` command, using the same cargo binary that runs xtask.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_root());
    // `cargo xtask` runs this binary with the variables cargo sets for a package: builds
    // started here see the environment a shell gives them (see sluice_cargo_env).
    sluice_cargo_env::remove_cargo_run_vars(&mut cmd, &[]);
    cmd
}

/// Prints a line to stderr prefixed with the xtask marker.
pub fn note(msg: impl AsRef<str>) {
    eprintln!("[xtask] {}", msg.as_ref());
}

/// Renders a command for display: program and arguments, shell-quoted where needed.
pub fn display_cmd(cmd: &Command) -> String {
    let program = cmd.get_program();
    let program = if Path::new(program).file_name() == Some(OsStr::new("cargo")) {
        OsStr::new("cargo")
    } else {
        program
    };
    let mut parts = vec![quote(program)];
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs a command with inherited stdio; fails if it does not exit successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display_cmd(cmd);
    eprintln!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs a command and returns its stdout (stderr is inherited); fails if it does not succeed.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = display_cmd(cmd);
    eprintln!("$ {shown}");
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("`{shown}` failed ({})\n{stdout}", out.status);
    }
    Ok(stdout)
}

/// Whether a command can be started and exits successfully (output discarded).
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The last line of `text` that parses as a JSON object.
pub fn last_json_object(text: &str) -> Result<serde_json::Value> {
    text.lines()
        .rev()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(serde_json::Value::is_object)
        .with_context(|| format!("no JSON object found in output:\n{text}"))
}

/// The cargo target directory (honours `CARGO_TARGET_DIR` and cargo config).
pub fn target_dir() -> Result<PathBuf> {
    let meta = output(
        cargo()
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .stdout(Stdio::piped()),
    )?;
    let meta: serde_json::Value =
        serde_json::from_str(&meta).context("parsing `cargo metadata` output")?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("`cargo metadata` has no target_directory")
}

/// Resolves a user-supplied path against the current directory.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("reading the current directory")?
            .join(path))
    }
}

/// Renders rows as a plain text table with a header and aligned columns.
/// Columns whose header starts with `>` are right-aligned (the marker is dropped).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let right: Vec<bool> = header.iter().map(|h| h.starts_with('>')).collect();
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim_start_matches('>').to_string())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let fmt_row = |cells: &[String]| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i > 0 {
                line.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                line.push_str(&format!("{cell:>w$}"));
            } else {
                line.push_str(&format!("{cell:<w$}"));
            }
        }
        line.trim_end().to_string()
    };
    let mut out = fmt_row(&header);
    out.push('\n');
    let total: usize = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for row in rows {
        out.push_str(&fmt_row(row));
        out.push('\n');
    }
    out
}
