//! The registry's record of an accepted rule: what the evaluator trusts, and the only thing.
//!
//! A precompiled artifact is native code, so the evaluator loads one only when its SHA-256
//! equals the digest the registry recorded when it compiled it (docs/ARCHITECTURE.md §10).
//! The record, and the copy of the accepted component the evaluator recompiles from when
//! the artifact does not match, live under `control/registry/<tenant>/<rule>/`, a prefix that
//! only the registry writes (the bucket policy denies it, and `compiled/`, to every other
//! principal). Tenants write `rules/` only, and nothing there is ever deserialised.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache::RuleId;

pub use sluice_core::tenancy::rule_registry::{REGISTRY_PREFIX, VersionRecord, accepted_rules};
use sluice_core::tenancy::rule_registry::{registry_dir, version_dir};

/// What the registry recorded for the active version of a rule
/// (`control/registry/<tenant>/<rule>/accepted.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedRecord {
    /// The engine that compiled the artifact.
    pub engine_fingerprint: String,
    /// Where the artifact is (`compiled/<fingerprint>/<tenant>/<rule>.cwasm`).
    pub compiled_key: String,
    /// Hex SHA-256 of the artifact's bytes: nothing else is ever loaded.
    pub artifact_sha256: String,
    /// Hex SHA-256 of the accepted component ([`RuleId::version_module_key`]).
    pub module_sha256: String,
    /// The active version: its component and manifest are under `versions/<version>/`.
    pub version: u64,
    /// Hex SHA-256 of the version's `rule.toml` ([`RuleId::version_manifest_key`]), whose
    /// parameters and limits the rule runs with (never the tenant's upload under `rules/`).
    pub manifest_sha256: String,
}

/// Hex SHA-256 of an artifact (or any bytes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl RuleId {
    /// `control/registry/<tenant>/<rule>/`: written by the registry only.
    pub fn registry_dir(&self) -> String {
        registry_dir(self.tenant(), self.rule())
    }

    /// `control/registry/<tenant>/<rule>/accepted.json`: the [`AcceptedRecord`].
    pub fn accepted_record_key(&self) -> String {
        format!("{}accepted.json", self.registry_dir())
    }

    /// `control/registry/<tenant>/<rule>/versions/<version>/module.wasm`: the component as
    /// judged.
    pub fn version_module_key(&self, version: u64) -> String {
        format!(
            "{}module.wasm",
            version_dir(self.tenant(), self.rule(), version)
        )
    }

    /// `control/registry/<tenant>/<rule>/versions/<version>/rule.toml`: the manifest as judged.
    pub fn version_manifest_key(&self, version: u64) -> String {
        format!(
            "{}rule.toml",
            version_dir(self.tenant(), self.rule(), version)
        )
    }

    /// `control/registry/<tenant>/<rule>/versions/<version>/version.json`: the
    /// [`VersionRecord`].
    pub fn version_record_key(&self, version: u64) -> String {
        format!(
            "{}version.json",
            version_dir(self.tenant(), self.rule(), version)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_live_under_the_registry_prefix() {
        let id = RuleId::new("acme", "errors").expect("valid");
        assert_eq!(
            id.accepted_record_key(),
            "control/registry/acme/errors/accepted.json"
        );
        assert_eq!(
            id.version_module_key(3),
            "control/registry/acme/errors/versions/3/module.wasm"
        );
    }
}
