//! Finding this checkout, and starting a nested cargo cleanly, from a program that cargo runs:
//! `cargo xtask`, and the support code of the tests that build plugins or the `sluice` binary.
//!
//! Both matter when one target directory is shared by several clones (CI's cache):
//! - cargo names workspace artifacts by their path inside the workspace, so a binary built in
//!   another clone counts as fresh here, while `env!("CARGO_MANIFEST_DIR")` compiled into it
//!   still names the other clone. The directory cargo sets at run time is the true one.
//! - `cargo run` and `cargo test` set `CARGO_PKG_*`, `CARGO_MANIFEST_DIR`, … for the program.
//!   Passed on to a nested cargo, they differ from what a shell passes, and build scripts that
//!   watch them (ring's does) run again, so every build recompiled ring, rustls and the AWS SDK.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The calling package's directory: `CARGO_MANIFEST_DIR` as cargo or the test runner set it at
/// run time, else `compiled_in`; pass `env!("CARGO_MANIFEST_DIR")`.
pub fn manifest_dir(compiled_in: &str) -> PathBuf {
    choose_manifest_dir(std::env::var_os("CARGO_MANIFEST_DIR"), compiled_in)
}

/// The run-time directory when it holds a `Cargo.toml`, else the compiled-in one.
fn choose_manifest_dir(at_run_time: Option<OsString>, compiled_in: &str) -> PathBuf {
    at_run_time
        .map(PathBuf::from)
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .unwrap_or_else(|| Path::new(compiled_in).to_path_buf())
}

/// Prefixes of the variables `cargo run` and `cargo test` set for the program they run.
pub const SET_BY_CARGO_RUN: [&str; 8] = [
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

/// Removes from `cmd` every variable this process inherited whose name starts with one of
/// [`SET_BY_CARGO_RUN`] or `extra`, so a cargo started by `cmd` sees what a shell gives it.
pub fn remove_cargo_run_vars(cmd: &mut Command, extra: &[&str]) {
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if SET_BY_CARGO_RUN
            .iter()
            .chain(extra)
            .any(|prefix| name.starts_with(prefix))
        {
            cmd.env_remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_time_directory_wins_only_when_it_holds_a_cargo_toml() {
        // This checkout, found the way the crate finds it: the compiled-in path may name another
        // clone when the target directory is shared (see the crate's overview).
        let here = manifest_dir(env!("CARGO_MANIFEST_DIR"));
        let here = here.to_str().expect("a UTF-8 checkout path");
        let elsewhere = "/nonexistent/clone/crates/cargo-env";
        assert_eq!(
            choose_manifest_dir(Some(here.into()), elsewhere),
            PathBuf::from(here)
        );
        assert_eq!(
            choose_manifest_dir(Some(elsewhere.into()), here),
            PathBuf::from(here)
        );
        assert_eq!(choose_manifest_dir(None, here), PathBuf::from(here));
    }

    #[test]
    fn removes_what_cargo_test_set_and_the_extra_prefixes_and_keeps_the_rest() {
        // `cargo test` runs this with CARGO_PKG_NAME and CARGO_MANIFEST_DIR set.
        let mut cmd = Command::new("cargo");
        remove_cargo_run_vars(&mut cmd, &["PATH"]);
        let removed: Vec<String> = cmd
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(key, _)| key.to_string_lossy().into_owned())
            .collect();
        for name in ["CARGO_PKG_NAME", "CARGO_MANIFEST_DIR", "PATH"] {
            assert!(removed.iter().any(|r| r == name), "{name}: {removed:?}");
        }
        assert!(
            !removed.iter().any(|r| r == "CARGO" || r == "HOME"),
            "{removed:?}"
        );
    }
}
