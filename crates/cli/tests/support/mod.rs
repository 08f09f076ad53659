//! Shared by the CLI's integration tests: running the built `sluice` binary, and the rule
//! components it is run on.
//!
//! The components come from `SLUICE_PLUGINS_WASM_DIR` (set by `cargo xtask test`, which has just
//! built them); without it, the first test that needs one builds every guest in `plugins/` with
//! `cargo build --target wasm32-wasip2` (a no-op when nothing changed), as the rules host's own
//! tests do (`crates/rules/tests/support`).

#![allow(dead_code)] // Not every test uses every helper.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// This package's directory (see [`sluice_cargo_env::manifest_dir`]).
pub fn manifest_dir() -> PathBuf {
    sluice_cargo_env::manifest_dir(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's plugins workspace.
pub fn plugins_dir() -> PathBuf {
    manifest_dir().join("../../plugins")
}

/// A shipped example's directory (`plugins/examples/<name>`).
pub fn example(name: &str) -> PathBuf {
    plugins_dir().join("examples").join(name)
}

/// Where cargo builds the plugins (`plugins/target`).
pub fn plugins_target() -> PathBuf {
    plugins_dir().join("target")
}

/// The directory of the debug-built rule components.
pub fn wasm_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("SLUICE_PLUGINS_WASM_DIR").map(PathBuf::from)
            && dir.join("threshold.wasm").is_file()
        {
            return dir;
        }
        build_guests()
    })
    .clone()
}

/// The path of a component (crate name, `-` or `_`).
pub fn wasm(name: &str) -> PathBuf {
    let path = wasm_dir().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

fn build_guests() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(plugins_dir())
        .args(["build", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(plugins_target())
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        // RUSTFLAGS would replace plugins/.cargo/config.toml's flags (the stack size).
        .env_remove("RUSTFLAGS")
        .output()
        .expect("running cargo to build the rule components in plugins/");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("wasm32-wasip2") && stderr.contains("target") {
            "\nhint: install the target with `rustup target add wasm32-wasip2`"
        } else {
            ""
        };
        panic!("building the rule components in plugins/ failed:\n{stderr}{hint}");
    }
    plugins_target().join("wasm32-wasip2").join("debug")
}

/// The `sluice` binary as a command, run from this crate's directory, with quiet logs and no
/// backtraces in error messages.
pub fn sluice() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.current_dir(manifest_dir())
        .env("RUST_BACKTRACE", "0")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("SLUICE_LOG");
    cmd
}

/// Runs a command to completion.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running the sluice binary")
}

/// stdout and stderr, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "sluice failed:\n{}", show(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts failure and returns (stdout, stderr).
pub fn fails(out: &Output) -> (String, String) {
    assert!(
        !out.status.success(),
        "sluice should have failed:\n{}",
        show(out)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The last line of stdout that is a JSON object.
pub fn last_json(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| panic!("no JSON object in the output:\n{stdout}"))
}
