//! The arm64 step of `cargo xtask test`: sluice-core's tests built for
//! `aarch64-unknown-linux-gnu`, the template's default Lambda architecture, and run under qemu
//! user-mode emulation. The core has code that only arm64 runs (the NEON quote search of the
//! JSON scanner, the `prfm` write prefetch of the column builders), which the x86-64 tests
//! never execute.
//!
//! What it needs, set up here when missing:
//! - the Rust target (`rustup target add`);
//! - zig, from the cargo-lambda venv (`xtask/python/requirements-lambda.txt`, the same zig that
//!   `sam build` links the Lambda bootstraps with), as the C compiler of zstd-sys and as the
//!   linker, through two wrapper scripts written into that venv (`zig-aarch64/`: a path that
//!   stays the same from clone to clone with a cached venv, so the C code is not rebuilt);
//! - `qemu-aarch64` and an arm64 glibc under `/usr/aarch64-linux-gnu`, from Debian's
//!   `qemu-user` and `libc6-arm64-cross` (`apt-get install`, as root or through `sudo -n`).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::lambda;
use crate::steps::Outcome;
use crate::util::{self, note};
use crate::venv::{self, Venv};

pub const STEP: &str = "arm64 core tests (qemu)";

const TRIPLE: &str = "aarch64-unknown-linux-gnu";
/// Where `libc6-arm64-cross` puts the arm64 glibc; qemu looks up the program's loader there.
const SYSROOT: &str = "/usr/aarch64-linux-gnu";
const APT_PACKAGES: [&str; 2] = ["qemu-user", "libc6-arm64-cross"];

/// `cargo test --target aarch64-unknown-linux-gnu -p sluice-core`, run through qemu.
pub fn core_tests(tools: &Venv) -> Result<Outcome> {
    lambda::ensure_rust_target(TRIPLE)?;
    ensure_qemu()?;
    let zig = venv::ensure_extra("lambda")?;
    let (cc, ar) = zig_wrappers(&zig)?;
    let target_env = TRIPLE.replace('-', "_");
    let cargo_env = format!("CARGO_TARGET_{}", target_env.to_uppercase());
    util::run(
        util::cargo()
            .args(["test", "--target", TRIPLE, "-p", "sluice-core"])
            .env(format!("CC_{target_env}"), &cc)
            .env(format!("AR_{target_env}"), &ar)
            .env(format!("{cargo_env}_LINKER"), &cc)
            .env(
                format!("{cargo_env}_RUNNER"),
                format!("qemu-aarch64 -L {SYSROOT}"),
            )
            // Tests that read their Parquet back run the host's pyarrow and DuckDB.
            .env("SLUICE_PYTHON", tools.python())
            // The JSON differential test's cases run on the host in full; under qemu (about
            // twenty times slower) a tenth of them checks the arm64 string search as well.
            .env("PROPTEST_CASES", "200"),
    )?;
    Ok(Outcome::Passed)
}

fn qemu_ready() -> bool {
    util::succeeds(Command::new("qemu-aarch64").arg("--version"))
        && Path::new(SYSROOT)
            .join("lib/ld-linux-aarch64.so.1")
            .exists()
}

/// Installs qemu-user and the arm64 glibc with apt-get unless they are there; the package lists
/// are refreshed only when the first attempt fails.
fn ensure_qemu() -> Result<()> {
    if qemu_ready() {
        return Ok(());
    }
    note(format!(
        "installing {} with apt-get (qemu runs the arm64 tests)",
        APT_PACKAGES.join(" ")
    ));
    let mut install_args = vec!["install", "-y", "-q", "--no-install-recommends"];
    install_args.extend(APT_PACKAGES);
    let install = || apt_get(&install_args);
    if install().is_err() {
        apt_get(&["update", "-q"])?;
        install().with_context(|| {
            format!(
                "installing {} (the arm64 step needs qemu-aarch64 and {SYSROOT})",
                APT_PACKAGES.join(" ")
            )
        })?;
    }
    Ok(())
}

pub fn apt_get(args: &[&str]) -> Result<()> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let mut cmd = if is_root {
        Command::new("apt-get")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "apt-get"]);
        sudo
    };
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    util::run(&mut cmd)
}

/// `cc` and `ar` scripts that run zig for arm64 Linux. cc-rs passes `--target=<rust triple>`,
/// which zig does not know; the scripts drop it and name zig's own target.
fn zig_wrappers(zig: &Venv) -> Result<(PathBuf, PathBuf)> {
    let dir = zig.dir.join("zig-aarch64");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let python = zig.python().display().to_string().replace('\'', r"'\''");
    let cc = dir.join("cc");
    let ar = dir.join("ar");
    write_script(
        &cc,
        &format!(
            "#!/usr/bin/env bash\n\
             # Written by `cargo xtask test`: zig as C compiler and linker for {TRIPLE}.\n\
             args=()\n\
             for a in \"$@\"; do case \"$a\" in --target=*) ;; *) args+=(\"$a\") ;; esac; done\n\
             exec '{python}' -m ziglang cc -target aarch64-linux-gnu \"${{args[@]}}\"\n"
        ),
    )?;
    write_script(
        &ar,
        &format!(
            "#!/bin/sh\n\
             # Written by `cargo xtask test`: zig's ar, for {TRIPLE}.\n\
             exec '{python}' -m ziglang ar \"$@\"\n"
        ),
    )?;
    Ok((cc, ar))
}

fn write_script(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}
