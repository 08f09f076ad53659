//! Rules in the rules bucket: the registry (validate an upload, precompile it, record it, write
//! its status) and the runner the evaluator uses (load a tenant's accepted rules and evaluate
//! them).
//!
//! Layout (docs/ARCHITECTURE.md §3, §10): tenants write `rules/<tenant>/<rule>/module.wasm` and
//! `rule.toml`; the registry writes `rules/<tenant>/<rule>/status.json` and, only for accepted
//! rules, `compiled/<engine fingerprint>/<tenant>/<rule>.cwasm` and
//! `control/registry/<tenant>/<rule>/` (the accepted component and the record of both
//! digests). An artifact is deserialised only when its digest is the recorded one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluice_core::alerting::lifecycle::LifecycleConfig;
use sluice_core::alerting::model::{RuleAlert, RuleOutput};
use sluice_core::evaluate::{RuleRunner, TenantRule};
use sluice_core::tenancy::limits::TenantLimits;
use sluice_core::tenancy::rule_registry::{active_version, counted_rules};
use sluice_core::window::summary::WindowSummary;
use sluice_core::{BlobStore, StoreError};

use crate::accepted::{AcceptedRecord, sha256_hex};
use crate::lru::Lru;
use crate::rule_versions::{self, Verdict};
pub use crate::verified_load::LoadStats;
use crate::verified_load::{LoadCounters, load_accepted};
use crate::window::{Latency, Level, LevelCounts, LogPattern, ServiceStats, Window};
use crate::{
    Host, Limits, LoadedRule, Manifest, Params, Policy, RuleError, RuleId, Severity,
    TrustedArtifact,
};

/// What the registry concluded about an upload, written to `status.json` next to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryStatus {
    /// `accepted` or `rejected`.
    pub status: String,
    /// Why it was rejected, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A stable code for the reason (`forbidden_import`, `out_of_fuel`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub size_bytes: usize,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Fuel used on the canned window.
    pub fuel_used: u64,
    pub compile_ms: u64,
    /// Where the precompiled artifact was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiled_key: Option<String>,
    pub engine_fingerprint: String,
    /// The version this upload became (none for an upload that could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The version that runs now: a rejected upload leaves the previous one active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_version: Option<u64>,
}

impl RegistryStatus {
    fn rejected(host: &Host, size: usize, code: &str, reason: String) -> Self {
        Self {
            status: "rejected".into(),
            reason: Some(reason),
            code: Some(code.into()),
            size_bytes: size,
            imports: Vec::new(),
            exports: Vec::new(),
            fuel_used: 0,
            compile_ms: 0,
            compiled_key: None,
            engine_fingerprint: host.fingerprint().to_owned(),
            version: None,
            active_version: None,
        }
    }

    /// What [`register`] answers for a rule whose upload is gone (it writes no status).
    fn removed(host: &Host) -> Self {
        Self {
            status: "removed".into(),
            ..Self::rejected(host, 0, "", String::new())
        }
        .without_reason()
    }

    fn without_reason(mut self) -> Self {
        self.reason = None;
        self.code = None;
        self
    }

    pub fn accepted(&self) -> bool {
        self.status == "accepted"
    }
}

/// Why registration could not even conclude.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Name(#[from] crate::InvalidName),
    #[error("serialising the status: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the registry is busy: {0}")]
    Busy(String),
}

/// The largest `rule.toml` the registry reads.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 10;

/// Judges `rules/<tenant>/<rule>/` and writes `status.json` (docs/ARCHITECTURE.md §10).
///
/// Every upload it can read becomes the next immutable version
/// ([`crate::rule_versions`]); an accepted one becomes the active version: the registry writes,
/// under prefixes only it may write, the artifact (`compiled/…`) and last the record with the
/// version and the digests of artifact, component and manifest that the evaluator checks
/// before loading anything ([`crate::accepted::AcceptedRecord`]). A rejected upload never
/// replaces the active version. When the upload is gone (both files removed) the rule is
/// removed with its versions.
///
/// The same upload notified again (S3 sends one event per file, and may send one twice) is
/// not a new version while it is the newest and, if accepted, the active one.
///
/// Sizes are checked with a HEAD before anything is downloaded, and compiling plus the test
/// evaluation run on a blocking thread for at most
/// [`EngineConfig::max_compile_time`](crate::EngineConfig::max_compile_time).
pub async fn register(
    host: &Host,
    store: &dyn BlobStore,
    policy: &Policy,
    tenant: &str,
    rule: &str,
) -> Result<RegistryStatus, RegistryError> {
    let id = RuleId::new(tenant, rule)?;
    if rule_versions::upload_gone(store, &id).await? {
        rule_versions::remove(store, &id, host.fingerprint()).await?;
        return Ok(RegistryStatus::removed(host));
    }
    let limits = tenant_limits(store, tenant).await;
    let policy = &policy.for_tenant(&limits);
    let mut status = match read_upload(host, store, &id).await? {
        Err(rejected) => rejected,
        Ok((wasm, manifest)) => judge(host, store, policy, &limits, &id, wasm, manifest).await?,
    };
    status.active_version = active_version(store, tenant, rule).await?;
    write_status(store, &id, &status).await?;
    tracing::info!(tenant, rule, status = %status.status, version = ?status.version,
        active_version = ?status.active_version,
        reason = status.reason.as_deref().unwrap_or(""), "rule registered");
    // A removal while this upload was judged wins: whichever ran last, the rule ends removed.
    if rule_versions::upload_gone(store, &id).await? {
        rule_versions::remove(store, &id, host.fingerprint()).await?;
        return Ok(RegistryStatus::removed(host));
    }
    Ok(status)
}

/// Judges an upload that was read, records it as a version, and makes it active if accepted.
async fn judge(
    host: &Host,
    store: &dyn BlobStore,
    policy: &Policy,
    limits: &TenantLimits,
    id: &RuleId,
    wasm: Bytes,
    manifest: Bytes,
) -> Result<RegistryStatus, RegistryError> {
    let active = active_version(store, id.tenant(), id.rule()).await?;
    if let Some(latest) = rule_versions::latest(store, id).await?
        && latest.module_sha256 == sha256_hex(&wasm)
        && latest.manifest_sha256 == sha256_hex(&manifest)
        && (!latest.accepted() || active == Some(latest.version))
    {
        tracing::info!(
            tenant = id.tenant(),
            rule = id.rule(),
            version = latest.version,
            "the newest version again: nothing to register"
        );
        let mut status = if latest.accepted() {
            RegistryStatus::rejected(host, wasm.len(), "", String::new()).without_reason()
        } else {
            RegistryStatus::rejected(
                host,
                wasm.len(),
                latest.code.as_deref().unwrap_or("rejected"),
                latest.reason.clone().unwrap_or_default(),
            )
        };
        status.status = latest.status.clone();
        status.version = Some(latest.version);
        if latest.accepted() {
            status.compiled_key = Some(id.compiled_key(host.fingerprint()));
        }
        return Ok(status);
    }
    let judged = if over_rule_limit(store, id, limits).await? {
        Err(RegistryStatus::rejected(
            host,
            wasm.len(),
            "too_many_rules",
            format!(
                "tenant {} already has {} accepted rules, its limit; remove one first",
                id.tenant(),
                limits.max_rules
            ),
        ))
    } else {
        compile(host, id, policy, &wasm, &manifest).await
    };
    match judged {
        Err(mut rejected) => {
            let version = rule_versions::record_new(
                store,
                id,
                Verdict {
                    status: "rejected",
                    code: rejected.code.as_deref(),
                    reason: rejected.reason.as_deref(),
                },
                &wasm,
                &manifest,
            )
            .await?;
            rejected.version = Some(version.version);
            Ok(rejected)
        }
        Ok((artifact, mut accepted)) => {
            let version = rule_versions::record_new(
                store,
                id,
                Verdict {
                    status: "accepted",
                    code: None,
                    reason: None,
                },
                &wasm,
                &manifest,
            )
            .await?;
            record_accepted(host, store, id, &version, &artifact).await?;
            accepted.version = Some(version.version);
            Ok(accepted)
        }
    }
}

/// Parses the manifest, then compiles and test-evaluates the component under the tenant's
/// policy as the manifest restricts it: the artifact and the accepted status, or the rejection.
async fn compile(
    host: &Host,
    id: &RuleId,
    policy: &Policy,
    wasm: &Bytes,
    manifest: &[u8],
) -> Result<(TrustedArtifact, RegistryStatus), RegistryStatus> {
    let manifest = Manifest::parse(&String::from_utf8_lossy(manifest)).map_err(|e| {
        RegistryStatus::rejected(
            host,
            wasm.len(),
            "invalid_manifest",
            format!("rule.toml: {e}"),
        )
    })?;
    let policy = policy.restricted_by(&manifest.limits);
    let (artifact, report) = validate_bounded(host, wasm.clone(), manifest.params.clone(), policy)
        .await
        .map_err(|e| RegistryStatus::rejected(host, wasm.len(), e.code(), e.to_string()))?;
    let status = RegistryStatus {
        status: "accepted".into(),
        reason: None,
        code: None,
        size_bytes: report.size_bytes,
        imports: report.imports,
        exports: report.exports,
        fuel_used: report.canned.fuel_consumed,
        compile_ms: report.compile_time.as_millis() as u64,
        compiled_key: Some(id.compiled_key(host.fingerprint())),
        engine_fingerprint: host.fingerprint().to_owned(),
        version: None,
        active_version: None,
    };
    Ok((artifact, status))
}

/// Makes an earlier accepted version of `rules/<tenant>/<rule>/` active again, as its pending
/// `rollback.json` asks, and writes `status.json`; the request is removed either way. The
/// version is compiled and test-evaluated again under the tenant's policy of today; refused,
/// the active version stays.
pub async fn roll_back(
    host: &Host,
    store: &dyn BlobStore,
    policy: &Policy,
    tenant: &str,
    rule: &str,
) -> Result<RegistryStatus, RegistryError> {
    let id = RuleId::new(tenant, rule)?;
    let Some(request) = rule_versions::rollback_request(store, &id).await? else {
        return register(host, store, policy, tenant, rule).await;
    };
    let limits = tenant_limits(store, tenant).await;
    let policy = &policy.for_tenant(&limits);
    let outcome = match request {
        Err(reason) => Err(("invalid_rollback", reason)),
        Ok(request) => match rule_versions::read(store, &id, request.to).await? {
            None => Err((
                "no_such_version",
                format!("{tenant}/{rule} has no version {}", request.to),
            )),
            Some(v) if !v.accepted() => Err((
                "version_not_accepted",
                format!(
                    "version {} was rejected; only an accepted version can be made active",
                    v.version
                ),
            )),
            Some(v) => match rule_versions::contents(store, &id, &v).await {
                Err(reason) => Err(("version_damaged", reason)),
                Ok((wasm, manifest)) => match compile(host, &id, policy, &wasm, &manifest).await {
                    Err(rejected) => Err((
                        "rollback_refused",
                        format!(
                            "version {} no longer passes: {}",
                            v.version,
                            rejected.reason.unwrap_or_default()
                        ),
                    )),
                    Ok((artifact, mut status)) => {
                        record_accepted(host, store, &id, &v, &artifact).await?;
                        status.version = Some(v.version);
                        Ok(status)
                    }
                },
            },
        },
    };
    let mut status =
        outcome.unwrap_or_else(|(code, reason)| RegistryStatus::rejected(host, 0, code, reason));
    status.active_version = active_version(store, tenant, rule).await?;
    write_status(store, &id, &status).await?;
    store
        .delete(&sluice_core::tenancy::rule_registry::rollback_request_key(
            tenant, rule,
        ))
        .await?;
    tracing::info!(tenant, rule, status = %status.status, active_version = ?status.active_version,
        reason = status.reason.as_deref().unwrap_or(""), "rollback");
    Ok(status)
}

async fn write_status(
    store: &dyn BlobStore,
    id: &RuleId,
    status: &RegistryStatus,
) -> Result<(), RegistryError> {
    store
        .put(
            &format!("rules/{}/{}/status.json", id.tenant(), id.rule()),
            Bytes::from(serde_json::to_vec_pretty(status)?),
            "application/json",
        )
        .await?;
    Ok(())
}

/// The tenant's limits; the defaults (with a warning) when they cannot be read.
async fn tenant_limits(store: &dyn BlobStore, tenant: &str) -> TenantLimits {
    match TenantLimits::load(store, tenant).await {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(tenant, error = %e, "tenant limits unreadable; using the defaults");
            TenantLimits::default()
        }
    }
}

/// True when `id` is a new rule and its tenant already has as many rules as its limit
/// allows (counted as [`counted_rules`] defines, like the API does).
async fn over_rule_limit(
    store: &dyn BlobStore,
    id: &RuleId,
    limits: &TenantLimits,
) -> Result<bool, RegistryError> {
    let counted = counted_rules(store, id.tenant()).await?;
    Ok(!counted.contains(id.rule()) && counted.len() >= limits.rules())
}

/// The upload's module and manifest, each checked for size with a HEAD before it is read; or
/// the rejection.
async fn read_upload(
    host: &Host,
    store: &dyn BlobStore,
    id: &RuleId,
) -> Result<Result<(Bytes, Bytes), RegistryStatus>, RegistryError> {
    let module_limit = host.config().max_module_bytes as u64;
    let (module_key, manifest_key) = (id.module_key(), id.manifest_key());
    let too_large = |key: &str, size: u64, limit: u64| {
        RegistryStatus::rejected(
            host,
            usize::try_from(size).unwrap_or(usize::MAX),
            "too_large",
            format!("{key} is {size} bytes, over the cap of {limit} bytes"),
        )
    };
    let module_size = match store.size(&module_key).await? {
        None => {
            return Ok(Err(RegistryStatus::rejected(
                host,
                0,
                "missing_module",
                format!("{module_key} is missing"),
            )));
        }
        Some(size) if size > module_limit => {
            return Ok(Err(too_large(&module_key, size, module_limit)));
        }
        Some(size) => size,
    };
    match store.size(&manifest_key).await? {
        None => {
            return Ok(Err(RegistryStatus::rejected(
                host,
                usize::try_from(module_size).unwrap_or(usize::MAX),
                "missing_manifest",
                format!("{manifest_key} is missing"),
            )));
        }
        Some(size) if size > MAX_MANIFEST_BYTES => {
            return Ok(Err(too_large(&manifest_key, size, MAX_MANIFEST_BYTES)));
        }
        Some(_) => {}
    }
    // Either may have changed since the HEAD; the host checks the module's size again.
    match (store.get(&module_key).await?, store.get(&manifest_key).await?) {
        (Some(wasm), Some(manifest)) if manifest.len() as u64 <= MAX_MANIFEST_BYTES => {
            Ok(Ok((wasm, manifest)))
        }
        _ => Ok(Err(RegistryStatus::rejected(
            host,
            usize::try_from(module_size).unwrap_or(usize::MAX),
            "changed_during_registration",
            "the module or rule.toml changed while the registry read it; it registers again on the new upload".into(),
        ))),
    }
}

/// Compiles, checks and test-evaluates an upload on a blocking thread, giving up after the
/// engine's compile deadline (the thread finishes on its own; its result is dropped).
async fn validate_bounded(
    host: &Host,
    wasm: Bytes,
    params: Params,
    policy: Policy,
) -> Result<(TrustedArtifact, crate::ValidationReport), RuleError> {
    let limit = host.config().max_compile_time;
    let worker = host.clone();
    let task = tokio::task::spawn_blocking(move || {
        let validated = worker.validate(&wasm, &params, &policy)?;
        Ok((validated.rule.artifact()?, validated.report))
    });
    match tokio::time::timeout(limit, task).await {
        Err(_) => Err(RuleError::CompileTimeout(limit)),
        Ok(Err(join)) => Err(RuleError::Instantiate(format!(
            "the validation thread failed: {join}"
        ))),
        Ok(Ok(result)) => result,
    }
}

/// Makes `version` the active one: writes its artifact, then the record of the version and
/// its digests; the record last, so the evaluator never sees a record without its artifact.
async fn record_accepted(
    host: &Host,
    store: &dyn BlobStore,
    id: &RuleId,
    version: &sluice_core::tenancy::rule_registry::VersionRecord,
    artifact: &TrustedArtifact,
) -> Result<(), RegistryError> {
    let compiled_key = id.compiled_key(host.fingerprint());
    store
        .put(
            &compiled_key,
            Bytes::from(artifact.bytes().to_vec()),
            "application/octet-stream",
        )
        .await?;
    let record = AcceptedRecord {
        engine_fingerprint: host.fingerprint().to_owned(),
        compiled_key,
        artifact_sha256: sha256_hex(artifact.bytes()),
        module_sha256: version.module_sha256.clone(),
        version: version.version,
        manifest_sha256: version.manifest_sha256.clone(),
    };
    store
        .put(
            &id.accepted_record_key(),
            Bytes::from(serde_json::to_vec_pretty(&record)?),
            "application/json",
        )
        .await?;
    Ok(())
}

/// The converter from the core's window summary to the contract's window.
pub fn to_contract_window(w: &WindowSummary) -> Window {
    Window {
        tenant: w.tenant.clone(),
        start_ms: w.start_ms,
        end_ms: w.end_ms,
        services: w
            .services
            .iter()
            .map(|s| ServiceStats {
                service: s.name.clone(),
                count: s.count,
                levels: LevelCounts {
                    trace: s.levels.trace,
                    debug: s.levels.debug,
                    info: s.levels.info,
                    warn: s.levels.warn,
                    error: s.levels.error,
                    fatal: s.levels.fatal,
                },
                requests: s.requests,
                status4xx: s.http_4xx,
                status5xx: s.http_5xx,
                error_rate: s.error_rate,
                latency: (s.latency_max > 0.0).then_some(Latency {
                    count: s.count,
                    p50: s.latency_p50,
                    p90: s.latency_p90,
                    p95: s.latency_p95,
                    p99: s.latency_p99,
                    max: s.latency_max,
                }),
            })
            .collect(),
        patterns: w
            .patterns
            .iter()
            .map(|p| LogPattern {
                id: p.id.clone(),
                template: p.template.clone(),
                service: p.service.clone(),
                level: match p.level {
                    sluice_core::level::Level::Trace => Level::Trace,
                    sluice_core::level::Level::Debug => Level::Debug,
                    sluice_core::level::Level::Info => Level::Info,
                    sluice_core::level::Level::Warn => Level::Warn,
                    sluice_core::level::Level::Error => Level::Error,
                    sluice_core::level::Level::Fatal => Level::Fatal,
                },
                count: p.count,
                first_seen: p.first_seen,
                sample: p.sample.clone(),
            })
            .collect(),
    }
}

/// A loaded rule, the registry's record it was loaded for, and its manifest's own limits.
#[derive(Debug, Clone)]
struct CachedRule {
    record: AcceptedRecord,
    rule: Arc<LoadedRule>,
    limits: Limits,
    /// The manifest's `[params]`, so listing a loaded rule reads only its record.
    params: toml::Table,
}

/// How many loaded rules a runner keeps by default (each holds compiled code).
pub const DEFAULT_LOADED_RULES: usize = 512;

/// Runs a tenant's accepted rules out of a rules store: the rules the registry recorded under
/// `control/registry/<tenant>/`, each loaded only as [`crate::accepted`] allows, and kept in a
/// bounded cache (least recently used out) while its record is unchanged.
#[derive(Debug)]
pub struct StoreRuleRunner<'a> {
    host: &'a Host,
    store: &'a dyn BlobStore,
    policy: Policy,
    loaded: Mutex<Lru<RuleId, CachedRule>>,
    /// Each tenant's limits, read again whenever its rules are listed (once per window).
    tenant_limits: Mutex<HashMap<String, TenantLimits>>,
    /// The records read when the rules were listed, taken by the run that follows, so a
    /// window reads each rule's record once.
    listed: Mutex<HashMap<RuleId, AcceptedRecord>>,
    counters: LoadCounters,
}

impl<'a> StoreRuleRunner<'a> {
    pub fn new(host: &'a Host, store: &'a dyn BlobStore, policy: Policy) -> Self {
        Self::with_capacity(host, store, policy, DEFAULT_LOADED_RULES)
    }

    /// A runner that keeps at most `capacity` loaded rules.
    pub fn with_capacity(
        host: &'a Host,
        store: &'a dyn BlobStore,
        policy: Policy,
        capacity: usize,
    ) -> Self {
        Self {
            host,
            store,
            policy,
            loaded: Mutex::new(Lru::new(capacity)),
            tenant_limits: Mutex::default(),
            listed: Mutex::default(),
            counters: LoadCounters::default(),
        }
    }

    /// What loading did since the last call (digest mismatches, recompilations), for metrics.
    pub fn take_load_stats(&self) -> LoadStats {
        self.counters.take()
    }

    /// The policy `tenant`'s rules run under: the runner's, with the tenant's limits.
    fn tenant_policy(&self, tenant: &str) -> Policy {
        let limits = self
            .tenant_limits
            .lock()
            .ok()
            .and_then(|l| l.get(tenant).copied())
            .unwrap_or_default();
        self.policy.for_tenant(&limits)
    }

    /// The `[params]` of the active version's manifest (never of the tenant's upload).
    async fn accepted_params(&self, tenant: &str, rule: &str) -> Result<toml::Table, String> {
        let id = RuleId::new(tenant, rule).map_err(|e| e.to_string())?;
        let record = self.record(&id).await?;
        let cached = self
            .loaded
            .lock()
            .ok()
            .and_then(|mut c| c.get(&id))
            .filter(|c| c.record == record)
            .map(|c| c.params);
        if let Ok(mut listed) = self.listed.lock() {
            listed.insert(id.clone(), record.clone());
        }
        if let Some(params) = cached {
            return Ok(params);
        }
        let text = rule_versions::accepted_manifest(self.store, &id, &record).await?;
        params_of(&id, &text)
    }

    /// The registry's record of the active version of `id`.
    async fn record(&self, id: &RuleId) -> Result<AcceptedRecord, String> {
        let record_key = id.accepted_record_key();
        let body = self
            .store
            .get(&record_key)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "{}/{} has no accepted version (rejected or removed)",
                    id.tenant(),
                    id.rule()
                )
            })?;
        serde_json::from_slice(&body).map_err(|e| format!("{record_key}: {e}"))
    }

    async fn load(&self, tenant: &str, rule: &str) -> Result<(Arc<LoadedRule>, Limits), String> {
        let id = RuleId::new(tenant, rule).map_err(|e| e.to_string())?;
        // The record read moments ago when the rules were listed, or a fresh one.
        let listed = self.listed.lock().ok().and_then(|mut l| l.remove(&id));
        let record = match listed {
            Some(record) => record,
            None => self.record(&id).await?,
        };
        if let Ok(mut cache) = self.loaded.lock()
            && let Some(cached) = cache.get(&id)
            && cached.record == record
        {
            return Ok((cached.rule, cached.limits));
        }
        let text = rule_versions::accepted_manifest(self.store, &id, &record).await?;
        let manifest = Manifest::parse(&text).map_err(|e| e.to_string())?;
        let limits = manifest.limits;
        let params = params_of(&id, &text)?;
        let loaded =
            Arc::new(load_accepted(self.host, self.store, &id, &record, &self.counters).await?);
        if let Ok(mut cache) = self.loaded.lock() {
            cache.insert(
                id,
                CachedRule {
                    record,
                    rule: loaded.clone(),
                    limits,
                    params,
                },
            );
        }
        Ok((loaded, limits))
    }
}

/// The `[params]` table of a manifest's text.
fn params_of(id: &RuleId, manifest: &str) -> Result<toml::Table, String> {
    let table: toml::Table = toml::from_str(manifest).map_err(|e| format!("{id:?}: {e}"))?;
    Ok(table
        .get("params")
        .and_then(|p| p.as_table())
        .cloned()
        .unwrap_or_default())
}

#[async_trait]
impl RuleRunner for StoreRuleRunner<'_> {
    async fn rules(&self, tenant: &str) -> Result<Vec<TenantRule>, String> {
        // Records listed before and never run are stale now.
        if let Ok(mut listed) = self.listed.lock() {
            listed.retain(|id, _| id.tenant() != tenant);
        }
        let limits = tenant_limits(self.store, tenant).await;
        if let Ok(mut all) = self.tenant_limits.lock() {
            all.insert(tenant.to_owned(), limits);
        }
        let mut rules = Vec::new();
        for name in counted_rules(self.store, tenant)
            .await
            .map_err(|e| e.to_string())?
        {
            // A rule whose parameters cannot be read runs with none and fails in `run`, where
            // the same record is read again, with the reason in the tenant's report.
            let params = self.accepted_params(tenant, &name).await.unwrap_or_else(|e| {
                tracing::error!(tenant, rule = %name, error = %e, "accepted manifest unreadable");
                toml::Table::new()
            });
            rules.push(TenantRule {
                name,
                params,
                lifecycle: LifecycleConfig::default(),
            });
        }
        Ok(rules)
    }

    async fn run(
        &self,
        tenant: &str,
        rule: &TenantRule,
        window: &WindowSummary,
        params: &toml::Table,
        state: Option<&[u8]>,
    ) -> Result<RuleOutput, String> {
        let (loaded, limits) = self.load(tenant, &rule.name).await?;
        let policy = self.tenant_policy(tenant).restricted_by(&limits);
        let json = serde_json::to_string(params).map_err(|e| e.to_string())?;
        let params = Params::from_json(&json).map_err(|e| e.to_string())?;
        let outcome = self
            .host
            .evaluate(
                &loaded,
                &to_contract_window(window),
                &params,
                state,
                &policy,
            )
            .map_err(|e: RuleError| format!("{} ({})", e, e.code()))?;
        Ok(RuleOutput {
            alerts: outcome
                .alerts
                .into_iter()
                .map(|a| RuleAlert {
                    key: a.key,
                    severity: match a.severity {
                        Severity::Info => sluice_core::alerting::model::Severity::Info,
                        Severity::Warning => sluice_core::alerting::model::Severity::Warning,
                        Severity::Critical => sluice_core::alerting::model::Severity::Critical,
                    },
                    title: a.title,
                    description: a.description,
                    labels: a.labels.into_iter().collect(),
                    value: a.value,
                })
                .collect(),
            state: outcome.state,
            fuel_used: outcome.fuel_consumed,
        })
    }
}
