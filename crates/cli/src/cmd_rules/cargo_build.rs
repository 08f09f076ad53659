//! `sluice rules build`: `cargo build --target wasm32-wasip2` in the plugins workspace, then
//! the components it produced.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;
use comfy_table::Cell;

use crate::report;

/// The target rules are built for: it produces components directly.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The long `--help` text (clap takes the short one from the command's doc comment).
pub const LONG_ABOUT: &str = "Build rule crates into WebAssembly components: runs `cargo build --target wasm32-wasip2` \
in the plugins workspace, with CARGO_TARGET_DIR set to its target/ directory whatever the \
environment says, so components always land in \
<plugins>/target/wasm32-wasip2/<debug|release>/<crate>.wasm. Cargo's own output goes to \
stderr; the components built are listed with their sizes (or as JSON with --json).\n\n\
Needs the target: rustup target add wasm32-wasip2";

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Build only this rule crate (repeatable); default: every crate of the workspace.
    #[arg(long, short = 'p', value_name = "NAME")]
    package: Vec<String>,
    /// Build optimised components (smaller and faster; what you upload).
    #[arg(long)]
    release: bool,
    /// The plugins workspace.
    #[arg(long, default_value = "plugins")]
    plugins_dir: PathBuf,
    /// Where cargo builds; default: <plugins-dir>/target.
    #[arg(long)]
    target_dir: Option<PathBuf>,
    /// List the components as JSON.
    #[arg(long)]
    json: bool,
}

/// One component cargo produced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Built {
    /// The library target's name (the crate name with `-` as `_`).
    pub name: String,
    pub path: PathBuf,
    pub size_bytes: u64,
}

pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let plugins = absolute(&args.plugins_dir)?;
    if !plugins.join("Cargo.toml").is_file() {
        anyhow::bail!(
            "{} is not the plugins workspace (no Cargo.toml); run from the repository root or pass --plugins-dir",
            plugins.display()
        );
    }
    let target_dir = match &args.target_dir {
        Some(dir) => absolute(dir)?,
        None => plugins.join("target"),
    };
    let built = build(&plugins, &target_dir, &args.package, args.release)?;
    if args.json {
        println!("{}", serde_json::to_string(&built)?);
        return Ok(());
    }
    if built.is_empty() {
        println!("cargo built no components (no crate with crate-type = [\"cdylib\"] selected)");
        return Ok(());
    }
    let mut t = report::table(&["crate", "component", "size"]);
    for b in &built {
        t.add_row(vec![
            Cell::new(&b.name),
            Cell::new(b.path.display()),
            report::right(report::bytes(b.size_bytes)),
        ]);
    }
    println!("{t}");
    Ok(())
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// Runs cargo and returns the `.wasm` files it produced (fresh or rebuilt), in its order.
pub fn build(
    plugins: &Path,
    target_dir: &Path,
    packages: &[String],
    release: bool,
) -> anyhow::Result<Vec<Built>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(plugins)
        .args([
            "build",
            "--target",
            WASM_TARGET,
            "--message-format",
            "json-render-diagnostics",
        ])
        .env("CARGO_TARGET_DIR", target_dir)
        // These would override what plugins/.cargo/config.toml sets (the stack size).
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if release {
        cmd.arg("--release");
    }
    for p in packages {
        cmd.args(["-p", p]);
    }
    let mut child = cmd
        .spawn()
        .context("running cargo (is it on PATH, or set CARGO?)")?;
    let mut built = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.context("reading cargo's output")?;
            if let Some(b) = artifact(&line) {
                built.push(b);
            }
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        anyhow::bail!(
            "cargo build --target {WASM_TARGET} failed ({status}) in {}; if the target is missing: rustup target add {WASM_TARGET}",
            plugins.display()
        );
    }
    Ok(built)
}

/// A component from one line of cargo's JSON messages (`compiler-artifact` with a `.wasm`).
fn artifact(line: &str) -> Option<Built> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg["reason"] != "compiler-artifact" {
        return None;
    }
    let path = msg["filenames"]
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_str)
        .find(|f| f.ends_with(".wasm"))?;
    let name = msg["target"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let size_bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    Some(Built {
        name,
        path: PathBuf::from(path),
        size_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_read_from_cargo_artifact_messages() {
        let line = r#"{"reason":"compiler-artifact","package_id":"path+file:///p/examples/threshold#0.1.0","target":{"kind":["cdylib","rlib"],"name":"threshold"},"filenames":["/p/target/wasm32-wasip2/debug/threshold.wasm","/p/target/wasm32-wasip2/debug/libthreshold.rlib"],"fresh":true}"#;
        let b = artifact(line).expect("a component");
        assert_eq!(b.name, "threshold");
        assert_eq!(
            b.path,
            PathBuf::from("/p/target/wasm32-wasip2/debug/threshold.wasm")
        );
        let rlib_only = r#"{"reason":"compiler-artifact","target":{"name":"sluice_rule_sdk"},"filenames":["/p/libsluice_rule_sdk.rlib"]}"#;
        assert_eq!(artifact(rlib_only), None);
        assert_eq!(
            artifact(r#"{"reason":"build-finished","success":true}"#),
            None
        );
    }
}
