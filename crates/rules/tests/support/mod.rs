//! Shared by the integration tests: the rule components, built from source in `plugins/`.
//!
//! The first test that needs a guest runs `cargo build --target wasm32-wasip2` in `plugins/`
//! (cargo makes it a no-op when nothing changed), then reads
//! `plugins/target/wasm32-wasip2/debug/<name>.wasm`.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};

use sluice_rules::{
    EngineConfig, Host, LoadedRule, Manifest, Outcome, Params, Policy, sample_window,
};

/// This package's directory (see [`sluice_cargo_env::manifest_dir`]).
pub fn manifest_dir() -> PathBuf {
    sluice_cargo_env::manifest_dir(env!("CARGO_MANIFEST_DIR"))
}

/// The plugins workspace.
pub fn plugins_dir() -> PathBuf {
    manifest_dir().join("../../plugins")
}

/// Builds every guest once per test process in the given cargo profile (`"debug"` or
/// `"release"`); panics with the reason if that fails. Returns the directory of the `.wasm`s.
fn build_guests(profile: &'static str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<&'static str, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    built
        .entry(profile)
        .or_insert_with(|| {
            let dir = plugins_dir();
            let target_dir = dir.join("target");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(&dir)
                .args(["build", "--target", "wasm32-wasip2", "--target-dir"])
                .arg(&target_dir)
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET")
                // RUSTFLAGS would replace plugins/.cargo/config.toml's flags (the stack size).
                .env_remove("RUSTFLAGS");
            if profile == "release" {
                cmd.arg("--release");
            }
            let out = cmd
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
            target_dir.join("wasm32-wasip2").join(profile)
        })
        .clone()
}

/// The bytes of a guest component (crate name with `-` as `_`), built in the debug profile.
pub fn wasm(name: &str) -> Vec<u8> {
    wasm_built(name, "debug")
}

/// The bytes of a guest component built in `profile` (`"debug"` or `"release"`).
pub fn wasm_built(name: &str, profile: &'static str) -> Vec<u8> {
    let path = build_guests(profile).join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The manifest shipped with an example rule.
pub fn example_manifest(name: &str) -> Manifest {
    let path = plugins_dir().join("examples").join(name).join("rule.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Manifest::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The host every test of a binary shares (the same engine, as in production).
pub fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host::new(EngineConfig::default()).expect("building the rules host"))
}

/// A guest loaded into the shared host, compiled once per test binary.
pub fn rule(name: &str) -> LoadedRule {
    static RULES: OnceLock<Mutex<HashMap<String, LoadedRule>>> = OnceLock::new();
    let mut rules = RULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    rules
        .entry(name.to_string())
        .or_insert_with(|| {
            host()
                .load(&wasm(name))
                .unwrap_or_else(|e| panic!("loading {name}: {e}"))
        })
        .clone()
}

/// The threshold example, run for another tenant on the sample window. Its fuel is the default
/// budget; its wall-clock deadline is generous, since a test machine busy compiling can stall a
/// thread for longer than the default 100 ms, and what is asserted is the outcome, not the time.
pub fn evaluate_good_rule() -> Outcome {
    let window = sample_window("good-tenant", 1_700_000_000_000, 20, 25);
    let policy = Policy {
        deadline: std::time::Duration::from_secs(5),
        ..Policy::default()
    };
    host()
        .evaluate(
            &rule("threshold"),
            &window,
            &example_manifest("threshold").params,
            None,
            &policy,
        )
        .expect("the good rule evaluates")
}

/// Asserts that another tenant's good rule still evaluates exactly as it did before any
/// hostile rule ran: same alerts, same state, same fuel.
pub fn assert_other_tenants_unaffected() {
    static BASELINE: OnceLock<Outcome> = OnceLock::new();
    let baseline = BASELINE.get_or_init(evaluate_good_rule);
    let now = evaluate_good_rule();
    assert!(
        !now.alerts.is_empty(),
        "the good rule finds the sample's troubled services"
    );
    assert_eq!(now.alerts, baseline.alerts);
    assert_eq!(now.state, baseline.state);
    assert_eq!(now.fuel_consumed, baseline.fuel_consumed);
}

/// `misbehave` params.
pub fn misbehave(json: &str) -> Params {
    Params::from_json(json).expect("valid params JSON")
}

/// A policy small enough that hostile tests end quickly.
pub fn tight_policy() -> Policy {
    Policy {
        fuel: 20_000_000,
        deadline: std::time::Duration::from_millis(500),
        ..Policy::default()
    }
}

/// Writes a tenant's upload, `rules/<tenant>/<rule>/module.wasm` and `rule.toml`, as the API
/// or `sluice rules upload` does.
pub async fn upload(
    store: &dyn sluice_core::BlobStore,
    tenant: &str,
    rule: &str,
    module: Vec<u8>,
    toml: &str,
) {
    let id = sluice_rules::RuleId::new(tenant, rule).expect("valid id");
    store
        .put(
            &id.module_key(),
            bytes::Bytes::from(module),
            "application/wasm",
        )
        .await
        .expect("module stored");
    store
        .put(
            &id.manifest_key(),
            bytes::Bytes::from(toml.to_owned()),
            "application/toml",
        )
        .await
        .expect("manifest stored");
}
