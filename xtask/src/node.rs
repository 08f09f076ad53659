//! The Node.js clients of the front door's end-to-end tests (the OpenTelemetry JS SDK's
//! OTLP/HTTP JSON exporter, `winston-loki`): `xtask/node/package.json` and its lock file,
//! installed with `npm ci` into a cache directory next to the tooling venv
//! (`$SLUICE_NODE_DIR`, default `<tools venv>-node`). Like the venvs, it is reinstalled only
//! when the MD5 of the manifest and lock file differs from the stamp kept there. The tests find
//! the packages through `SLUICE_NODE_MODULES` (used as `NODE_PATH`).

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use md5::{Digest, Md5};

use crate::util::{self, note};
use crate::venv;

const STAMP: &str = ".sluice-package-lock.md5";
const FILES: [&str; 2] = ["package.json", "package-lock.json"];

/// The step's name in `cargo xtask test`'s summary.
pub const STEP: &str = "node clients (npm ci)";

/// Where the packages are installed: `$SLUICE_NODE_DIR`, else `<tools venv>-node`.
pub fn install_dir() -> PathBuf {
    match std::env::var_os("SLUICE_NODE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let mut name = venv::tools_dir().into_os_string();
            name.push("-node");
            PathBuf::from(name)
        }
    }
}

/// Installs the pinned packages unless the stamp says they are there; returns the
/// `node_modules` directory.
pub fn ensure_node_modules() -> Result<PathBuf> {
    let source = util::repo_root().join("xtask").join("node");
    let dir = install_dir();
    let modules = dir.join("node_modules");
    let mut hash = Md5::new();
    for file in FILES {
        let path = source.join(file);
        hash.update(fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
    }
    let want = hex::encode(hash.finalize());
    let have = fs::read_to_string(dir.join(STAMP)).unwrap_or_default();
    if have.trim() == want && modules.is_dir() {
        note(format!(
            "node clients in {} are up to date",
            modules.display()
        ));
        return Ok(modules);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in FILES {
        fs::copy(source.join(file), dir.join(file))
            .with_context(|| format!("copying {file} into {}", dir.display()))?;
    }
    note(format!(
        "installing the pinned Node clients into {}",
        dir.display()
    ));
    util::run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir),
    )
    .context("npm ci of xtask/node (needs Node.js 20 with npm, and the npm registry)")?;
    fs::write(dir.join(STAMP), want)
        .with_context(|| format!("writing the stamp in {}", dir.display()))?;
    Ok(modules)
}
