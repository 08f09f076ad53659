//! How the evaluator turns the registry's record of an accepted rule into a loaded rule,
//! without ever running native code that someone else wrote (docs/ARCHITECTURE.md §10):
//!
//! 1. the artifact under `compiled/<fingerprint>/<tenant>/<rule>.cwasm` is deserialised only
//!    when this engine's fingerprint is the record's and the bytes' SHA-256 is the record's;
//! 2. otherwise (a tampered or foreign artifact, or none) the mismatch is logged and counted,
//!    and the rule is recompiled from the accepted component the registry kept beside the
//!    record, itself checked against the record's module digest. Compiling WebAssembly is
//!    safe whatever the bytes: the component runs in the sandbox, not as native code.

use std::sync::atomic::{AtomicU64, Ordering};

use sluice_core::BlobStore;

use crate::accepted::{AcceptedRecord, sha256_hex};
use crate::{Host, LoadedRule, RuleId, TrustedArtifact};

/// What the evaluator's loads did since the counters were last taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoadStats {
    /// Artifacts whose digest matched and were deserialised.
    pub artifacts_loaded: u64,
    /// Artifacts whose SHA-256 was not the registry's: never loaded.
    pub artifact_digest_mismatches: u64,
    /// Rules compiled from their accepted component instead.
    pub recompiled: u64,
}

/// The counters behind [`LoadStats`].
#[derive(Debug, Default)]
pub(crate) struct LoadCounters {
    loaded: AtomicU64,
    mismatches: AtomicU64,
    recompiled: AtomicU64,
}

impl LoadCounters {
    /// The counts so far, reset to zero.
    pub(crate) fn take(&self) -> LoadStats {
        LoadStats {
            artifacts_loaded: self.loaded.swap(0, Ordering::Relaxed),
            artifact_digest_mismatches: self.mismatches.swap(0, Ordering::Relaxed),
            recompiled: self.recompiled.swap(0, Ordering::Relaxed),
        }
    }
}

/// Loads the accepted version of `id` as `record` describes it.
pub(crate) async fn load_accepted(
    host: &Host,
    store: &dyn BlobStore,
    id: &RuleId,
    record: &AcceptedRecord,
    counters: &LoadCounters,
) -> Result<LoadedRule, String> {
    let (tenant, rule) = (id.tenant(), id.rule());
    if record.engine_fingerprint == host.fingerprint() {
        let key = id.compiled_key(host.fingerprint());
        match store.get(&key).await.map_err(|e| e.to_string())? {
            Some(bytes) => {
                match TrustedArtifact::from_verified_store(
                    host.fingerprint(),
                    bytes.to_vec(),
                    &record.artifact_sha256,
                ) {
                    Ok(artifact) => match host.load_precompiled(&artifact) {
                        Ok(loaded) => {
                            counters.loaded.fetch_add(1, Ordering::Relaxed);
                            return Ok(loaded);
                        }
                        Err(e) => tracing::warn!(tenant, rule, %key, error = %e,
                            "the recorded artifact does not load; recompiling from the component"),
                    },
                    Err(mismatch) => {
                        counters.mismatches.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(tenant, rule, %key, recorded = %mismatch.recorded,
                            found = %mismatch.found,
                            "artifact digest does not match the registry's record: not loading it; recompiling from the accepted component");
                    }
                }
            }
            None => tracing::info!(tenant, rule, %key,
                "no artifact for this engine; recompiling from the accepted component"),
        }
    } else {
        tracing::info!(tenant, rule, recorded = %record.engine_fingerprint, engine = host.fingerprint(),
            "the artifact was compiled for another engine; recompiling from the accepted component");
    }
    let module_key = id.version_module_key(record.version);
    let wasm = store
        .get(&module_key)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{module_key} is missing; register the rule again"))?;
    let found = sha256_hex(&wasm);
    if !found.eq_ignore_ascii_case(&record.module_sha256) {
        return Err(format!(
            "{module_key} has SHA-256 {found}, the registry recorded {}; register the rule again",
            record.module_sha256
        ));
    }
    let loaded = host
        .load(&wasm)
        .map_err(|e| format!("{e} ({})", e.code()))?;
    counters.recompiled.fetch_add(1, Ordering::Relaxed);
    Ok(loaded)
}
