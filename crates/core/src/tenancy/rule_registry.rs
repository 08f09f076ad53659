//! The layout of the registry's records of a tenant's rules, shared by the registry (which alone
//! writes them), the evaluator and the tenant API (which read them) (docs/ARCHITECTURE.md §10):
//!
//! - `control/registry/<tenant>/<rule>/accepted.json`: the active version (the record the
//!   evaluator trusts: artifact and component digests, and since versions the version number
//!   and the manifest's digest);
//! - `control/registry/<tenant>/<rule>/versions/<V>/`: every upload the registry judged, as
//!   immutable version `V` (1, 2, …): `module.wasm`, `rule.toml`, and `version.json`
//!   ([`VersionRecord`]: the verdict and both digests);
//! - `rules/<tenant>/<rule>/rollback.json` ([`RollbackRequest`]): written by the tenant API, read
//!   and removed by the registry, which makes that accepted version active again.
//!
//! What counts against a tenant's `max_rules` is defined once, here: [`counted_rules`], the
//! rules with an active (accepted) version.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::store::{BlobStore, StoreError};

/// Where the registry's records live; one directory per tenant and rule.
pub const REGISTRY_PREFIX: &str = "control/registry/";

/// `control/registry/<tenant>/<rule>/`.
pub fn registry_dir(tenant: &str, rule: &str) -> String {
    format!("{REGISTRY_PREFIX}{tenant}/{rule}/")
}

/// `control/registry/<tenant>/<rule>/versions/`.
pub fn versions_dir(tenant: &str, rule: &str) -> String {
    format!("{}versions/", registry_dir(tenant, rule))
}

/// `control/registry/<tenant>/<rule>/versions/<version>/`.
pub fn version_dir(tenant: &str, rule: &str, version: u64) -> String {
    format!("{}{version}/", versions_dir(tenant, rule))
}

/// `rules/<tenant>/<rule>/rollback.json`: a tenant's request to make an earlier version active.
pub fn rollback_request_key(tenant: &str, rule: &str) -> String {
    format!("rules/{tenant}/{rule}/rollback.json")
}

/// What the registry concluded about one version (`versions/<V>/version.json`); never rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u64,
    /// `accepted` or `rejected`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Hex SHA-256 of the component and of the manifest kept beside this record.
    pub module_sha256: String,
    pub manifest_sha256: String,
    /// When the registry judged it (Unix milliseconds).
    pub registered_at_ms: u64,
}

impl VersionRecord {
    pub fn accepted(&self) -> bool {
        self.status == "accepted"
    }
}

/// The body of `rules/<tenant>/<rule>/rollback.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to make active again.
    pub to: u64,
}

/// Just the version of `accepted.json` (the rest is the rules crate's `AcceptedRecord`).
#[derive(Deserialize)]
struct ActiveVersion {
    #[serde(default)]
    version: u64,
}

/// The rule names a listing of `control/registry/<tenant>/` shows as having an active version.
pub fn accepted_rules(tenant: &str, keys: &[String]) -> Vec<String> {
    let prefix = format!("{REGISTRY_PREFIX}{tenant}/");
    keys.iter()
        .filter_map(|k| k.strip_prefix(&prefix))
        .filter_map(|k| k.strip_suffix("/accepted.json"))
        .filter(|rule| !rule.contains('/'))
        .map(str::to_owned)
        .collect()
}

/// The rules that count against the tenant's `max_rules`: those with an active version. The
/// API (to refuse early) and the registry (to reject) both ask this.
pub async fn counted_rules(
    store: &dyn BlobStore,
    tenant: &str,
) -> Result<BTreeSet<String>, StoreError> {
    let keys = store.list(&format!("{REGISTRY_PREFIX}{tenant}/")).await?;
    Ok(accepted_rules(tenant, &keys).into_iter().collect())
}

/// The version numbers a listing of `versions/` shows, ascending.
pub fn version_numbers(tenant: &str, rule: &str, keys: &[String]) -> Vec<u64> {
    let prefix = versions_dir(tenant, rule);
    let mut out: Vec<u64> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(&prefix)?.strip_suffix("/version.json"))
        .filter_map(|v| v.parse().ok())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Every version of a rule the registry recorded, oldest first (an unreadable record is
/// skipped with a warning).
pub async fn versions(
    store: &dyn BlobStore,
    tenant: &str,
    rule: &str,
) -> Result<Vec<VersionRecord>, StoreError> {
    let keys = store.list(&versions_dir(tenant, rule)).await?;
    let mut out = Vec::new();
    for v in version_numbers(tenant, rule, &keys) {
        let key = format!("{}version.json", version_dir(tenant, rule, v));
        if let Some(body) = store.get(&key).await? {
            match serde_json::from_slice::<VersionRecord>(&body) {
                Ok(record) => out.push(record),
                Err(e) => {
                    tracing::warn!(tenant, rule, key, error = %e, "unreadable version record")
                }
            }
        }
    }
    Ok(out)
}

/// The active version of a rule (`None` when it has none; `Some(0)` for a record from before
/// versions).
pub async fn active_version(
    store: &dyn BlobStore,
    tenant: &str,
    rule: &str,
) -> Result<Option<u64>, StoreError> {
    let key = format!("{}accepted.json", registry_dir(tenant, rule));
    Ok(store.get(&key).await?.map(|body| {
        serde_json::from_slice::<ActiveVersion>(&body)
            .map(|a| a.version)
            .unwrap_or_default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_accepted_json_of_the_tenant_names_a_rule() {
        let keys = [
            "control/registry/acme/errors/accepted.json",
            "control/registry/acme/errors/versions/1/version.json",
            "control/registry/acme/a/b/accepted.json",
            "control/registry/acmex/latency/accepted.json",
        ]
        .map(String::from);
        assert_eq!(accepted_rules("acme", &keys), vec!["errors".to_owned()]);
    }

    #[test]
    fn version_numbers_are_read_from_version_records_in_numeric_order() {
        let keys = [
            "control/registry/acme/errors/versions/10/version.json",
            "control/registry/acme/errors/versions/2/module.wasm",
            "control/registry/acme/errors/versions/2/version.json",
            "control/registry/acme/errors/versions/x/version.json",
            "control/registry/acme/errors/versions/3/rule.toml",
        ]
        .map(String::from);
        assert_eq!(version_numbers("acme", "errors", &keys), vec![2, 10]);
    }
}
