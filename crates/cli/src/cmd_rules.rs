//! `sluice rules`: the tools of a rule author, from an empty directory to an accepted upload.
//!
//! - `new`: scaffold a rule crate in the plugins workspace;
//! - `build`: `cargo build --target wasm32-wasip2` in `plugins/`, listing the components;
//! - `check`: validate a component as the registry would (imports, exports, contract, size,
//!   compile time, fuel on the canned window);
//! - `test`: evaluate a component on a window of your own, given as JSON;
//! - `upload`: put a component and its manifest in the rules bucket (or a local directory) and
//!   show what the registry concluded; with `--api` (or `SLUICE_API_URL`) through the tenant API;
//! - `status`: the registry's verdicts through the tenant API.

mod cargo_build;
mod check;
mod evaluate;
mod scaffold;
mod upload;

use std::path::Path;

use anyhow::Context as _;
use sluice_rules::{EngineConfig, Host, Manifest, Params, RuleError};

#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    command: RulesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RulesCommand {
    /// Scaffold a new rule crate (Rust, `sluice-rule-sdk`) that builds with one command.
    #[command(long_about = scaffold::LONG_ABOUT)]
    New(scaffold::NewArgs),
    /// Build the rule crates into WebAssembly components (`cargo build --target wasm32-wasip2`).
    #[command(long_about = cargo_build::LONG_ABOUT)]
    Build(cargo_build::BuildArgs),
    /// Validate a component as the registry does: contract, imports, size, a canned test run.
    #[command(long_about = check::LONG_ABOUT)]
    Check(check::CheckArgs),
    /// Evaluate a component on a window given as JSON and print its alerts.
    #[command(long_about = evaluate::LONG_ABOUT)]
    Test(evaluate::TestArgs),
    /// Upload a component and its manifest to the rules bucket (or a local directory).
    #[command(long_about = upload::LONG_ABOUT)]
    Upload(upload::UploadArgs),
    /// The registry's verdict on the key's tenant's rules, through the API.
    Status(crate::tenant_api::StatusArgs),
    /// Every version of a rule (each upload the registry judged) and the active one, through the API.
    Versions(crate::tenant_api::VersionsArgs),
    /// Make an earlier accepted version of a rule active again, through the API.
    Rollback(crate::tenant_api::RollbackArgs),
}

pub fn run(args: RulesArgs) -> anyhow::Result<()> {
    match args.command {
        RulesCommand::New(a) => scaffold::run(a),
        RulesCommand::Build(a) => cargo_build::run(a),
        RulesCommand::Check(a) => check::run(a),
        RulesCommand::Test(a) => evaluate::run(a),
        RulesCommand::Upload(a) => upload::run(a),
        RulesCommand::Status(a) => crate::tenant_api::run_status(a),
        RulesCommand::Versions(a) => crate::tenant_api::run_versions(a),
        RulesCommand::Rollback(a) => crate::tenant_api::run_rollback(a),
    }
}

/// A rule the sandbox refused, or an evaluation that failed, with its stable code
/// ([`RuleError::code`]) and the exact reason. The command exits non-zero with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub what: &'static str,
    pub code: String,
    pub reason: String,
}

impl Refused {
    pub fn rejected(e: &RuleError) -> Refused {
        Refused {
            what: "rule rejected",
            code: e.code().to_owned(),
            reason: e.to_string(),
        }
    }

    pub fn failed(e: &RuleError) -> Refused {
        Refused {
            what: "evaluation failed",
            code: e.code().to_owned(),
            reason: e.to_string(),
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.what, self.code, self.reason)
    }
}

impl std::error::Error for Refused {}

/// The rules engine, configured as in production.
pub(crate) fn host() -> anyhow::Result<Host> {
    Host::new(EngineConfig::default()).context("starting the rules engine")
}

/// The bytes of a component file.
pub(crate) fn read_wasm(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "reading the rule component {} (build it with `sluice rules build`)",
            path.display()
        )
    })
}

/// A parsed `rule.toml`.
pub(crate) fn read_manifest(path: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the manifest {}", path.display()))?;
    Manifest::parse(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Parameters from a manifest (`rule.toml`, its `[params]`) or a JSON object file (`.json`),
/// with the manifest when there is one (for its `[limits]`).
pub(crate) fn read_params(path: &Path) -> anyhow::Result<(Params, Option<Manifest>)> {
    if path.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the params {}", path.display()))?;
        let params =
            Params::from_json(&text).with_context(|| format!("parsing {}", path.display()))?;
        return Ok((params, None));
    }
    let manifest = read_manifest(path)?;
    Ok((manifest.params.clone(), Some(manifest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_their_code_and_reason() {
        let r = Refused::rejected(&RuleError::ForbiddenImport("wasi:filesystem/types".into()));
        let text = r.to_string();
        assert!(
            text.starts_with("rule rejected (forbidden_import): "),
            "{text}"
        );
        assert!(text.contains("wasi:filesystem/types"), "{text}");
    }
}
