//! The registry's side of rule versions (docs/ARCHITECTURE.md §10): every upload it judges
//! becomes an immutable version under `control/registry/<tenant>/<rule>/versions/<V>/`; the
//! active one is whatever `accepted.json` names; a rollback makes an earlier accepted version
//! active again; a removal takes the whole rule away.
//!
//! Order of a removal (the upload's `module.wasm` and `rule.toml` both gone): `accepted.json`
//! first (from then on nothing runs), then the artifact, the versions and the rest of the
//! registry's directory, then a pending `rollback.json`, and `status.json` last. A registration
//! that was judging the upload while it was removed checks again after writing its verdict and
//! removes the rule itself, so whichever runs last, the rule ends removed.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sluice_core::store::Precondition;
use sluice_core::tenancy::rule_registry::{
    RollbackRequest, VersionRecord, registry_dir, rollback_request_key, version_numbers,
    versions_dir,
};
use sluice_core::{BlobStore, StoreError};

use crate::RuleId;
use crate::accepted::{AcceptedRecord, sha256_hex};
use crate::tenant_rules::RegistryError;

/// How many times a version number is tried when another registration takes it first.
const NUMBER_ATTEMPTS: u64 = 8;

/// The newest version the registry recorded for `id`, if any.
pub async fn latest(
    store: &dyn BlobStore,
    id: &RuleId,
) -> Result<Option<VersionRecord>, StoreError> {
    let keys = store.list(&versions_dir(id.tenant(), id.rule())).await?;
    let Some(&newest) = version_numbers(id.tenant(), id.rule(), &keys).last() else {
        return Ok(None);
    };
    read(store, id, newest).await
}

/// Version `version` of `id`, if the registry recorded it.
pub async fn read(
    store: &dyn BlobStore,
    id: &RuleId,
    version: u64,
) -> Result<Option<VersionRecord>, StoreError> {
    let key = id.version_record_key(version);
    Ok(match store.get(&key).await? {
        None => None,
        Some(body) => match serde_json::from_slice(&body) {
            Ok(record) => Some(record),
            Err(e) => {
                tracing::warn!(%key, error = %e, "unreadable version record");
                None
            }
        },
    })
}

/// The verdict to record for a new version.
#[derive(Debug)]
pub struct Verdict<'a> {
    pub status: &'a str,
    pub code: Option<&'a str>,
    pub reason: Option<&'a str>,
}

/// Records an upload as the next version of `id` and keeps its component and manifest beside
/// the record. The number is claimed with a conditional write of `version.json`, so two
/// registrations never share one.
pub async fn record_new(
    store: &dyn BlobStore,
    id: &RuleId,
    verdict: Verdict<'_>,
    wasm: &[u8],
    manifest: &[u8],
) -> Result<VersionRecord, RegistryError> {
    let keys = store.list(&versions_dir(id.tenant(), id.rule())).await?;
    let mut version = version_numbers(id.tenant(), id.rule(), &keys)
        .last()
        .map_or(1, |v| v + 1);
    let registered_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for _ in 0..NUMBER_ATTEMPTS {
        let record = VersionRecord {
            version,
            status: verdict.status.to_owned(),
            code: verdict.code.map(str::to_owned),
            reason: verdict.reason.map(str::to_owned),
            module_sha256: sha256_hex(wasm),
            manifest_sha256: sha256_hex(manifest),
            registered_at_ms,
        };
        match store
            .put_if(
                &id.version_record_key(version),
                Bytes::from(serde_json::to_vec_pretty(&record)?),
                "application/json",
                Precondition::Absent,
            )
            .await
        {
            Ok(()) => {
                store
                    .put(
                        &id.version_module_key(version),
                        Bytes::copy_from_slice(wasm),
                        "application/wasm",
                    )
                    .await?;
                store
                    .put(
                        &id.version_manifest_key(version),
                        Bytes::copy_from_slice(manifest),
                        "application/toml",
                    )
                    .await?;
                return Ok(record);
            }
            Err(StoreError::PreconditionFailed { .. }) => version += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Err(RegistryError::Busy(format!(
        "{}/{}: {NUMBER_ATTEMPTS} version numbers were taken while registering",
        id.tenant(),
        id.rule()
    )))
}

/// A version's component and manifest, each checked against the digests its record holds.
pub async fn contents(
    store: &dyn BlobStore,
    id: &RuleId,
    record: &VersionRecord,
) -> Result<(Bytes, Bytes), String> {
    let fetch = |key: String, digest: String| async move {
        let body = store
            .get(&key)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{key} is missing"))?;
        let found = sha256_hex(&body);
        if found.eq_ignore_ascii_case(&digest) {
            Ok(body)
        } else {
            Err(format!(
                "{key} has SHA-256 {found}, the registry recorded {digest}"
            ))
        }
    };
    let wasm = fetch(
        id.version_module_key(record.version),
        record.module_sha256.clone(),
    )
    .await?;
    let manifest = fetch(
        id.version_manifest_key(record.version),
        record.manifest_sha256.clone(),
    )
    .await?;
    Ok((wasm, manifest))
}

/// The manifest of the active version, checked against `accepted.json`'s digest: the only
/// `rule.toml` the evaluator reads parameters and limits from.
pub async fn accepted_manifest(
    store: &dyn BlobStore,
    id: &RuleId,
    record: &AcceptedRecord,
) -> Result<String, String> {
    let key = id.version_manifest_key(record.version);
    let body = store
        .get(&key)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{key} is missing; register the rule again"))?;
    let found = sha256_hex(&body);
    if !found.eq_ignore_ascii_case(&record.manifest_sha256) {
        return Err(format!(
            "{key} has SHA-256 {found}, the registry recorded {}; not using it",
            record.manifest_sha256
        ));
    }
    String::from_utf8(body.to_vec()).map_err(|_| format!("{key} is not UTF-8"))
}

/// The pending rollback request of `id`, if a tenant made one.
pub async fn rollback_request(
    store: &dyn BlobStore,
    id: &RuleId,
) -> Result<Option<Result<RollbackRequest, String>>, StoreError> {
    let key = rollback_request_key(id.tenant(), id.rule());
    Ok(store
        .get(&key)
        .await?
        .map(|body| serde_json::from_slice(&body).map_err(|e| format!("{key}: {e}"))))
}

/// True when the tenant's upload (both `module.wasm` and `rule.toml`) is gone: the rule was
/// removed.
pub async fn upload_gone(store: &dyn BlobStore, id: &RuleId) -> Result<bool, StoreError> {
    Ok(store.size(&id.module_key()).await?.is_none()
        && store.size(&id.manifest_key()).await?.is_none())
}

/// Removes everything the registry holds for `id`, in the order of this module's overview.
pub async fn remove(
    store: &dyn BlobStore,
    id: &RuleId,
    fingerprint: &str,
) -> Result<(), StoreError> {
    store.delete(&id.accepted_record_key()).await?;
    store.delete(&id.compiled_key(fingerprint)).await?;
    for key in store.list(&registry_dir(id.tenant(), id.rule())).await? {
        store.delete(&key).await?;
    }
    store
        .delete(&rollback_request_key(id.tenant(), id.rule()))
        .await?;
    store
        .delete(&format!("rules/{}/{}/status.json", id.tenant(), id.rule()))
        .await?;
    tracing::info!(
        tenant = id.tenant(),
        rule = id.rule(),
        "rule removed with its versions"
    );
    Ok(())
}
