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

/// Where the registry's records live; one directory per tenant and rule.
pub const REGISTRY_PREFIX: &str = "control/registry/";

/// What the registry recorded for the accepted version of a rule
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
    /// Hex SHA-256 of the accepted component, kept beside this record
    /// ([`RuleId::accepted_module_key`]).
    pub module_sha256: String,
}

/// Hex SHA-256 of an artifact (or any bytes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl RuleId {
    /// `control/registry/<tenant>/<rule>/`: written by the registry only.
    pub fn registry_dir(&self) -> String {
        format!("{REGISTRY_PREFIX}{}/{}/", self.tenant(), self.rule())
    }

    /// `control/registry/<tenant>/<rule>/accepted.json`: the [`AcceptedRecord`].
    pub fn accepted_record_key(&self) -> String {
        format!("{}accepted.json", self.registry_dir())
    }

    /// `control/registry/<tenant>/<rule>/module.wasm`: the accepted component, as validated.
    pub fn accepted_module_key(&self) -> String {
        format!("{}module.wasm", self.registry_dir())
    }
}

/// The rule names a listing of `control/registry/<tenant>/` shows as accepted.
pub fn accepted_rules(tenant: &str, keys: &[String]) -> Vec<String> {
    let prefix = format!("{REGISTRY_PREFIX}{tenant}/");
    keys.iter()
        .filter_map(|k| k.strip_prefix(&prefix))
        .filter_map(|k| k.strip_suffix("/accepted.json"))
        .filter(|rule| !rule.contains('/'))
        .map(str::to_owned)
        .collect()
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
            id.accepted_module_key(),
            "control/registry/acme/errors/module.wasm"
        );
    }

    #[test]
    fn only_accepted_json_of_the_tenant_names_a_rule() {
        let keys = [
            "control/registry/acme/errors/accepted.json",
            "control/registry/acme/errors/module.wasm",
            "control/registry/acme/a/b/accepted.json",
            "control/registry/acmex/latency/accepted.json",
        ]
        .map(String::from);
        assert_eq!(accepted_rules("acme", &keys), vec!["errors".to_owned()]);
    }
}
