//! Rules in the rules bucket: the registry (validate an upload, precompile it, write its
//! status) and the runner the evaluator uses (load a tenant's accepted rules from `compiled/` and
//! evaluate them).
//!
//! Layout (docs/ARCHITECTURE.md §3): tenants write `rules/<tenant>/<rule>/module.wasm` and `rule.toml`; the
//! registry writes `rules/<tenant>/<rule>/status.json` and, only for accepted rules,
//! `compiled/<engine fingerprint>/<tenant>/<rule>.cwasm`. Only that prefix is ever deserialised.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluice_core::alerting::lifecycle::LifecycleConfig;
use sluice_core::alerting::model::{RuleAlert, RuleOutput};
use sluice_core::evaluate::{RuleRunner, TenantRule};
use sluice_core::window::summary::WindowSummary;
use sluice_core::{BlobStore, StoreError};

use crate::window::{Latency, Level, LevelCounts, LogPattern, ServiceStats, Window};
use crate::{
    Host, LoadedRule, Manifest, Params, Policy, RuleError, RuleId, Severity, TrustedArtifact,
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
        }
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
}

/// Validates `rules/<tenant>/<rule>/`, precompiles it when it is acceptable, and writes
/// `status.json`. A rejected rule's old artifact is removed, so it never runs.
pub async fn register(
    host: &Host,
    store: &dyn BlobStore,
    policy: &Policy,
    tenant: &str,
    rule: &str,
) -> Result<RegistryStatus, RegistryError> {
    let id = RuleId::new(tenant, rule)?;
    let compiled_key = id.compiled_key(host.fingerprint());
    let wasm = store.get(&id.module_key()).await?;
    let manifest = store.get(&id.manifest_key()).await?;
    let status = match (wasm, manifest) {
        (None, _) => RegistryStatus::rejected(
            host,
            0,
            "missing_module",
            format!("{} is missing", id.module_key()),
        ),
        (Some(w), None) => RegistryStatus::rejected(
            host,
            w.len(),
            "missing_manifest",
            format!("{} is missing", id.manifest_key()),
        ),
        (Some(wasm), Some(manifest)) => {
            match Manifest::parse(&String::from_utf8_lossy(&manifest)) {
                Err(e) => RegistryStatus::rejected(
                    host,
                    wasm.len(),
                    "invalid_manifest",
                    format!("rule.toml: {e}"),
                ),
                Ok(manifest) => {
                    let policy = policy.restricted_by(&manifest.limits);
                    match host
                        .validate(&wasm, &manifest.params, &policy)
                        .and_then(|v| Ok((v.rule.artifact()?, v.report)))
                    {
                        Err(e) => {
                            RegistryStatus::rejected(host, wasm.len(), e.code(), e.to_string())
                        }
                        Ok((artifact, report)) => {
                            store
                                .put(
                                    &compiled_key,
                                    Bytes::from(artifact.bytes().to_vec()),
                                    "application/octet-stream",
                                )
                                .await?;
                            RegistryStatus {
                                status: "accepted".into(),
                                reason: None,
                                code: None,
                                size_bytes: report.size_bytes,
                                imports: report.imports,
                                exports: report.exports,
                                fuel_used: report.canned.fuel_consumed,
                                compile_ms: report.compile_time.as_millis() as u64,
                                compiled_key: Some(compiled_key.clone()),
                                engine_fingerprint: host.fingerprint().to_owned(),
                            }
                        }
                    }
                }
            }
        }
    };
    if !status.accepted() {
        store.delete(&compiled_key).await?;
    }
    let status_key = format!("rules/{tenant}/{rule}/status.json");
    store
        .put(
            &status_key,
            Bytes::from(serde_json::to_vec_pretty(&status)?),
            "application/json",
        )
        .await?;
    tracing::info!(tenant, rule, status = %status.status, reason = status.reason.as_deref().unwrap_or(""), "rule registered");
    Ok(status)
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

/// A loaded rule, the tag of the artifact it came from ([`BlobStore::head`]), and its policy.
type CachedRule = (sluice_core::store::ETag, Arc<LoadedRule>, Policy);

/// Runs a tenant's accepted rules out of a rules store, caching loaded artifacts.
#[derive(Debug)]
pub struct StoreRuleRunner<'a> {
    host: &'a Host,
    store: &'a dyn BlobStore,
    policy: Policy,
    loaded: Mutex<HashMap<String, CachedRule>>,
}

impl<'a> StoreRuleRunner<'a> {
    pub fn new(host: &'a Host, store: &'a dyn BlobStore, policy: Policy) -> Self {
        Self {
            host,
            store,
            policy,
            loaded: Mutex::default(),
        }
    }

    async fn load(&self, tenant: &str, rule: &str) -> Result<(Arc<LoadedRule>, Policy), String> {
        let id = RuleId::new(tenant, rule).map_err(|e| e.to_string())?;
        let key = id.compiled_key(self.host.fingerprint());
        let gone = || format!("{key} is gone (rule rejected or removed)");
        // Artifacts are megabytes: only their tag is read while the cached one is current.
        let tag = self
            .store
            .head(&key)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(gone)?;
        if let Ok(cache) = self.loaded.lock()
            && let Some((cached, rule, policy)) = cache.get(&key)
            && *cached == tag
        {
            return Ok((rule.clone(), *policy));
        }
        let bytes = self
            .store
            .get(&key)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(gone)?;
        let manifest = match self
            .store
            .get(&id.manifest_key())
            .await
            .map_err(|e| e.to_string())?
        {
            Some(text) => {
                Manifest::parse(&String::from_utf8_lossy(&text)).map_err(|e| e.to_string())?
            }
            None => return Err(format!("{} is missing", id.manifest_key())),
        };
        let policy = self.policy.restricted_by(&manifest.limits);
        // Only the registry writes under compiled/, so these bytes are trusted.
        let artifact = TrustedArtifact::from_trusted_store(self.host.fingerprint(), bytes.to_vec());
        let loaded = Arc::new(
            self.host
                .load_precompiled(&artifact)
                .map_err(|e| e.to_string())?,
        );
        if let Ok(mut cache) = self.loaded.lock() {
            cache.insert(key, (tag, loaded.clone(), policy));
        }
        Ok((loaded, policy))
    }
}

#[async_trait]
impl RuleRunner for StoreRuleRunner<'_> {
    async fn rules(&self, tenant: &str) -> Result<Vec<TenantRule>, String> {
        let prefix = format!("compiled/{}/{tenant}/", self.host.fingerprint());
        let keys = self.store.list(&prefix).await.map_err(|e| e.to_string())?;
        let mut rules = Vec::new();
        for key in keys {
            let Some(name) = key
                .strip_prefix(&prefix)
                .and_then(|k| k.strip_suffix(".cwasm"))
            else {
                continue;
            };
            let manifest_key = format!("rules/{tenant}/{name}/rule.toml");
            let params = match self
                .store
                .get(&manifest_key)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(text) => {
                    let table: toml::Table = toml::from_str(&String::from_utf8_lossy(&text))
                        .map_err(|e| format!("{manifest_key}: {e}"))?;
                    table
                        .get("params")
                        .and_then(|p| p.as_table())
                        .cloned()
                        .unwrap_or_default()
                }
                None => toml::Table::new(),
            };
            rules.push(TenantRule {
                name: name.to_owned(),
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
        let (loaded, policy) = self.load(tenant, &rule.name).await?;
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
