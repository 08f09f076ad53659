//! # sluice-rules: the sandbox for tenant alert rules
//!
//! Tenants write alert rules as WebAssembly components (see `plugins/` for the WIT contract
//! `sluice:rules@0.1.0`, the guest SDK and example rules). This crate runs them:
//!
//! - [`Host::new`] builds the engine once: Cranelift, the component model, the pooling
//!   allocator with memory kept resident, fuel (a deterministic CPU budget), epoch
//!   interruption with a ticker thread (a wall-clock deadline), a bounded stack.
//! - [`Host::validate`] checks an upload — size cap, the exported contract version, the
//!   import allowlist ([`contract`]), the signature of `evaluate` — and test-evaluates it on a
//!   canned window ([`sample_window`]), reporting imports, exports, size and fuel
//!   ([`ValidationReport`]).
//! - [`Host::precompile`] / [`LoadedRule::artifact`] give the `.cwasm` to store under
//!   `compiled/<fingerprint>/…`; [`Host::load_precompiled`] loads it back, and only from a
//!   [`TrustedArtifact`] (deserialising is `unsafe`: never from a tenant), which from a store
//!   means bytes whose SHA-256 matches the registry's [`accepted::AcceptedRecord`].
//! - [`Host::evaluate`] runs a rule on a [`Window`] with its [`Params`] and previous state, in
//!   a fresh store under the tenant's [`Policy`] (fuel, deadline, memory, output bounds), and
//!   returns an [`Outcome`] or a typed [`RuleError`].
//!
//! ```no_run
//! use sluice_rules::{EngineConfig, Host, Manifest, Policy, sample_window};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = Host::new(EngineConfig::default())?;
//! let wasm = std::fs::read("threshold.wasm")?;
//! let manifest = Manifest::parse(&std::fs::read_to_string("rule.toml")?)?;
//! let policy = Policy::default().restricted_by(&manifest.limits);
//! let validated = host.validate(&wasm, &manifest.params, &policy)?;
//! let artifact = validated.rule.artifact()?; // store under compiled/<fingerprint>/…
//! let rule = host.load_precompiled(&artifact)?;
//! let window = sample_window("acme", 1_700_000_000_000, 20, 25);
//! let outcome = host.evaluate(&rule, &window, &manifest.params, None, &policy)?;
//! println!("{} alerts, {} fuel", outcome.alerts.len(), outcome.fuel_consumed);
//! # Ok(()) }
//! ```

pub mod accepted;
mod alert;
mod artifact;
mod cache;
mod capture;
mod clocks;
pub mod contract;
mod engine;
mod error;
mod host;
mod lru;
mod manifest;
mod output;
mod policy;
pub mod rule_versions;
mod sample;
mod sandbox;
pub mod tenant_rules;
mod verified_load;
mod window;

/// Each phase of loading and evaluating on its own, for the benchmarks. Not a stable API.
#[doc(hidden)]
pub mod phases {
    pub use crate::host::phases::*;
}

pub use alert::{Alert, Severity};
pub use artifact::{DigestMismatch, TrustedArtifact};
pub use cache::{ArtifactCache, CacheError, InvalidName, RuleId, module_digest};
pub use capture::CAPTURE_BYTES;
pub use engine::{EngineConfig, EngineError};
pub use error::RuleError;
pub use host::{Host, LoadedRule, Validated, ValidationReport};
pub use manifest::{Manifest, ManifestError, Params, RuleInfo};
pub use output::{MAX_KEY_BYTES, Outcome, RESERVED_LABELS};
pub use policy::{DEFAULT_MEMORY_BYTES, Limits, Policy};
pub use sample::sample_window;
pub use window::{Latency, Level, LevelCounts, LogPattern, ServiceStats, Window};
