//! The tenant's own way in (docs/ARCHITECTURE.md §8, §10): its configuration and its rules,
//! always those of the key's tenant (a tenant named in the URL or the body never counts).
//!
//! - `GET /v1/config` (admin): `tenants/<tenant>.toml` as TOML text (`application/toml`),
//!   404 when the tenant has none;
//! - `PUT /v1/config` (admin): TOML text, checked with
//!   [`validate_tenant_config`] under [`EgressPolicy::public_only`] (400 with the exact reason),
//!   then stored as sent. Each webhook without a signing secret gets one, shown once in the
//!   answer `{"stored": true, "new_secrets": {"<id>": "whsec_..."}}`; the secrets of webhooks
//!   no longer named are removed;
//! - `POST /v1/config/webhooks/{id}/rotate-secret` (admin): `{"id", "secret"}`, shown once;
//! - `PUT /v1/rules/{name}` (rules or admin): JSON `{"manifest": "<rule.toml>",
//!   "component_base64": "<module.wasm, base64>"}` within the body limit; writes
//!   `rules/<tenant>/<name>/rule.toml` and `module.wasm` for the registry to judge (202,
//!   `pending`), refused (409) for a new rule when the tenant already has `max_rules` rules
//!   with an active version ([`counted_rules`], the registry's own count);
//! - `GET /v1/rules`, `GET /v1/rules/{name}`: the registry's verdict from `status.json`
//!   (`accepted`, or `rejected` with `code` and `reason`; `pending` when it has none yet), with
//!   the upload's `version` and the `active_version`;
//! - `GET /v1/rules/{name}/versions`: every version the registry recorded, and the active one;
//! - `POST /v1/rules/{name}/rollback?to=V`: makes accepted version `V` active again (through
//!   the registry: `rules/<tenant>/<name>/rollback.json`); 404 for no such version, 409 for a
//!   rejected one;
//! - `DELETE /v1/rules/{name}`: removes the upload; the registry then removes the active
//!   version, the versions and the verdict, in that order (docs/ARCHITECTURE.md §10); until
//!   it has, the rule reads `removing`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use bytes::Bytes;
use sluice_core::BlobStore;
use sluice_core::alerting::config_validation::validate_tenant_config;
use sluice_core::alerting::egress::EgressPolicy;
use sluice_core::alerting::webhook_secrets::{self, SecretError};
use sluice_core::tenancy::limits::TenantLimits;
use sluice_core::tenancy::rule_registry::{
    RollbackRequest, active_version, counted_rules, rollback_request_key, versions,
};
use sluice_core::tenancy::{Principal, Scope};

use crate::error::{ApiError, Dialect};
use crate::router::ApiState;

/// The largest `rule.toml` accepted (the registry reads no more).
pub const MAX_MANIFEST_BYTES: usize = 64 << 10;

/// Runs the registry on an upload right away, where there is no bucket notification to do it
/// (`sluice serve`, the local runner). On AWS there is none: S3 notifies the registry.
#[async_trait]
pub trait RegistryHook: Send + Sync + std::fmt::Debug {
    /// Judges `rules/<tenant>/<rule>/` (or notes its removal) and writes its `status.json`.
    async fn changed(&self, tenant: &str, rule: &str);
    /// Carries out the pending `rules/<tenant>/<rule>/rollback.json`.
    async fn rollback(&self, tenant: &str, rule: &str);
}

/// The tenant routes.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/config", get(get_config).put(put_config))
        .route(
            "/v1/config/webhooks/{id}/rotate-secret",
            post(rotate_secret),
        )
        .route("/v1/rules", get(list_rules))
        .route(
            "/v1/rules/{name}",
            get(rule_status).put(put_rule).delete(delete_rule),
        )
        .route("/v1/rules/{name}/versions", get(list_versions))
        .route("/v1/rules/{name}/rollback", post(rollback))
}

fn answer(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| e.render(Dialect::Plain))
}

/// The rules store, and the principal with `needed`.
async fn open<'a>(
    state: &'a ApiState,
    headers: &HeaderMap,
    needed: Scope,
) -> Result<(Principal, &'a dyn BlobStore), ApiError> {
    let principal = state.authorize(headers, needed).await?;
    let store = state.rules.as_deref().ok_or_else(|| {
        ApiError::Unavailable("this front door has no rules store configured".into())
    })?;
    Ok((principal, store))
}

fn store_error(what: &str) -> impl Fn(sluice_core::StoreError) -> ApiError + '_ {
    move |e| {
        tracing::error!(what, error = %e, "rules store failed");
        ApiError::Unavailable(format!("{what}: {e}"))
    }
}

fn secret_error(e: SecretError) -> ApiError {
    match e {
        SecretError::InvalidName { .. } | SecretError::Exists { .. } => {
            ApiError::BadRequest(e.to_string())
        }
        SecretError::Missing { .. } => ApiError::NotFound(e.to_string()),
        other => {
            tracing::error!(error = %other, "webhook secret store failed");
            ApiError::Unavailable(other.to_string())
        }
    }
}

fn config_key(tenant: &str) -> String {
    format!("tenants/{tenant}.toml")
}

/// The webhook ids of the tenant's stored configuration (none when it has none or it no
/// longer parses).
async fn stored_webhook_ids(
    store: &dyn BlobStore,
    tenant: &str,
) -> Result<BTreeSet<String>, ApiError> {
    let Some(body) = store
        .get(&config_key(tenant))
        .await
        .map_err(store_error("reading the configuration"))?
    else {
        return Ok(BTreeSet::new());
    };
    let text = String::from_utf8_lossy(&body);
    Ok(
        sluice_core::alerting::tenant_config::TenantConfig::parse(tenant, &text)
            .map(|c| c.webhooks.into_iter().filter_map(|w| w.id).collect())
            .unwrap_or_default(),
    )
}

/// A new secret for each webhook of `ids` that the stored configuration (`previous`) does not
/// name, shown once. A secret already stored for such a webhook was never shown (a
/// configuration write that failed after generating it), so it is replaced, not kept: a retried
/// `PUT /v1/config` always shows the secret that signs.
async fn secrets_for_new_webhooks(
    store: &dyn BlobStore,
    tenant: &str,
    ids: &BTreeSet<String>,
    previous: &BTreeSet<String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut new_secrets = BTreeMap::new();
    for id in ids {
        let stored = webhook_secrets::lookup(store, tenant, id)
            .await
            .map_err(secret_error)?;
        let secret = match stored {
            Some(_) if previous.contains(id) => continue,
            Some(_) => {
                tracing::info!(tenant, webhook = %id, "replacing a secret that was never shown");
                webhook_secrets::rotate(store, tenant, id).await
            }
            None => webhook_secrets::create(store, tenant, id).await,
        }
        .map_err(secret_error)?;
        new_secrets.insert(id.clone(), secret.expose().to_owned());
    }
    Ok(new_secrets)
}

async fn get_config(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    answer(
        async {
            let (principal, store) = open(&state, &headers, Scope::Admin).await?;
            let body = store
                .get(&config_key(&principal.tenant))
                .await
                .map_err(store_error("reading the configuration"))?
                .ok_or_else(|| ApiError::NotFound("this tenant has no configuration".into()))?;
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/toml")],
                body,
            )
                .into_response())
        }
        .await,
    )
}

async fn put_config(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    answer(
        async {
            let (principal, store) = open(&state, &headers, Scope::Admin).await?;
            let tenant = principal.tenant.as_str();
            let raw = crate::body::read(body, &headers, &state.config).await?;
            let text = std::str::from_utf8(&raw)
                .map_err(|_| ApiError::BadRequest("the configuration is not UTF-8".into()))?;
            let config = validate_tenant_config(text, EgressPolicy::public_only())
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let ids: BTreeSet<String> = config.webhooks.into_iter().filter_map(|w| w.id).collect();
            let previous = stored_webhook_ids(store, tenant).await?;
            let new_secrets = secrets_for_new_webhooks(store, tenant, &ids, &previous).await?;
            if let Err(e) = store
                .put(
                    &config_key(tenant),
                    Bytes::copy_from_slice(text.as_bytes()),
                    "application/toml",
                )
                .await
            {
                // Nobody saw the new secrets: take them back (and if that fails too, the retry
                // replaces them, see `secrets_for_new_webhooks`).
                for id in new_secrets.keys() {
                    if let Err(e) = webhook_secrets::delete(store, tenant, id).await {
                        tracing::warn!(tenant, webhook = %id, error = %e, "an unshown secret stays until the retry replaces it");
                    }
                }
                return Err(store_error("storing the configuration")(e));
            }
            for gone in previous.difference(&ids) {
                webhook_secrets::delete(store, tenant, gone)
                    .await
                    .map_err(secret_error)?;
            }
            tracing::info!(
                tenant,
                webhooks = ids.len(),
                new_secrets = new_secrets.len(),
                "tenant configuration stored"
            );
            Ok(axum::Json(serde_json::json!({
                "stored": true,
                "new_secrets": new_secrets,
            }))
            .into_response())
        }
        .await,
    )
}

async fn rotate_secret(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    answer(
        async {
            let (principal, store) = open(&state, &headers, Scope::Admin).await?;
            let tenant = principal.tenant.as_str();
            webhook_secrets::check_id("webhook id", &id).map_err(secret_error)?;
            if !stored_webhook_ids(store, tenant).await?.contains(&id) {
                return Err(ApiError::NotFound(format!(
                    "the configuration has no webhook `{id}`"
                )));
            }
            let secret = match webhook_secrets::rotate(store, tenant, &id).await {
                Err(SecretError::Missing { .. }) => webhook_secrets::create(store, tenant, &id)
                    .await
                    .map_err(secret_error)?,
                other => other.map_err(secret_error)?,
            };
            Ok(
                axum::Json(serde_json::json!({ "id": id, "secret": secret.expose() }))
                    .into_response(),
            )
        }
        .await,
    )
}

/// Checks a rule name: 1 to 64 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn check_rule_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid rule name `{}`: use 1 to 64 letters, digits, `.`, `-` or `_`",
            name.chars().take(80).collect::<String>()
        )))
    }
}

fn rule_prefix(tenant: &str, rule: &str) -> String {
    format!("rules/{tenant}/{rule}/")
}

/// The names of the tenant's rules (those with an upload or a verdict).
async fn rule_names(store: &dyn BlobStore, tenant: &str) -> Result<BTreeSet<String>, ApiError> {
    let prefix = format!("rules/{tenant}/");
    let keys = store
        .list(&prefix)
        .await
        .map_err(store_error("listing rules"))?;
    Ok(keys
        .iter()
        .filter_map(|k| k.strip_prefix(&prefix)?.split_once('/').map(|(r, _)| r))
        .filter(|r| check_rule_name(r).is_ok())
        .map(str::to_owned)
        .collect())
}

/// The registry's verdict as JSON, `pending` when it has written none.
async fn verdict(
    store: &dyn BlobStore,
    tenant: &str,
    rule: &str,
) -> Result<serde_json::Value, ApiError> {
    let key = format!("{}status.json", rule_prefix(tenant, rule));
    let status = match store
        .get(&key)
        .await
        .map_err(store_error("reading a rule's status"))?
    {
        None => serde_json::json!({ "status": "pending" }),
        Some(body) => serde_json::from_slice(&body).unwrap_or_else(|e| {
            tracing::warn!(tenant, rule, error = %e, "unreadable status.json");
            serde_json::json!({ "status": "pending" })
        }),
    };
    let mut out = serde_json::json!({ "name": rule });
    if status.get("status").is_some_and(|s| s != "pending")
        && upload_gone(store, tenant, rule).await?
    {
        // Deleted; the registry has not yet removed the active version and the verdict.
        out["status"] = serde_json::json!("removing");
        return Ok(out);
    }
    if let (Some(out), Some(status)) = (out.as_object_mut(), status.as_object()) {
        for field in [
            "status",
            "code",
            "reason",
            "size_bytes",
            "fuel_used",
            "version",
            "active_version",
        ] {
            if let Some(v) = status.get(field) {
                out.insert(field.to_owned(), v.clone());
            }
        }
    }
    Ok(out)
}

/// True when neither `module.wasm` nor `rule.toml` of the upload is there (the rule was deleted).
async fn upload_gone(store: &dyn BlobStore, tenant: &str, rule: &str) -> Result<bool, ApiError> {
    let prefix = rule_prefix(tenant, rule);
    for file in ["module.wasm", "rule.toml"] {
        if store
            .size(&format!("{prefix}{file}"))
            .await
            .map_err(store_error("reading the upload"))?
            .is_some()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn list_rules(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    answer(
        async {
            let (principal, store) = open(&state, &headers, Scope::Rules).await?;
            let mut rules = Vec::new();
            for rule in rule_names(store, &principal.tenant).await? {
                rules.push(verdict(store, &principal.tenant, &rule).await?);
            }
            Ok(axum::Json(serde_json::json!({ "rules": rules })).into_response())
        }
        .await,
    )
}

async fn rule_status(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    answer(
        async {
            let (principal, store) = open(&state, &headers, Scope::Rules).await?;
            check_rule_name(&name)?;
            if !rule_names(store, &principal.tenant).await?.contains(&name) {
                return Err(ApiError::NotFound(format!("no rule `{name}`")));
            }
            Ok(axum::Json(verdict(store, &principal.tenant, &name).await?).into_response())
        }
        .await,
    )
}

/// The body of `PUT /v1/rules/{name}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload {
    manifest: String,
    component_base64: String,
}

async fn put_rule(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    answer(
        async {
            let (principal, store) = open(&state, &headers, Scope::Rules).await?;
            let tenant = principal.tenant.as_str();
            check_rule_name(&name)?;
            let raw = crate::body::read(body, &headers, &state.config).await?;
            let upload: Upload = serde_json::from_slice(&raw).map_err(|e| {
                ApiError::BadRequest(format!(
                    "expected {{\"manifest\": \"<rule.toml>\", \"component_base64\": \"...\"}}: {e}"
                ))
            })?;
            if upload.manifest.len() > MAX_MANIFEST_BYTES {
                return Err(ApiError::TooLarge {
                    what: "the manifest",
                    limit: MAX_MANIFEST_BYTES,
                });
            }
            let component = base64::engine::general_purpose::STANDARD
                .decode(upload.component_base64.trim())
                .map_err(|e| ApiError::BadRequest(format!("component_base64: {e}")))?;
            if component.is_empty() {
                return Err(ApiError::BadRequest("the component is empty".into()));
            }
            let limits = TenantLimits::load(store, tenant).await.map_err(|e| {
                tracing::error!(tenant, error = %e, "tenant limits unreadable");
                ApiError::Unavailable(format!("reading the tenant's limits: {e}"))
            })?;
            let existing = counted_rules(store, tenant)
                .await
                .map_err(store_error("counting rules"))?;
            if !existing.contains(&name) && existing.len() >= limits.rules() {
                return Err(ApiError::Conflict(format!(
                    "tenant {tenant} already has {} rules, its limit of {}; remove one first",
                    existing.len(),
                    limits.max_rules
                )));
            }
            let prefix = rule_prefix(tenant, &name);
            // The old verdict first, so the rule reads `pending` until the registry judges it.
            store
                .delete(&format!("{prefix}status.json"))
                .await
                .map_err(store_error("clearing the rule's status"))?;
            store
                .put(
                    &format!("{prefix}rule.toml"),
                    Bytes::from(upload.manifest),
                    "application/toml",
                )
                .await
                .map_err(store_error("storing rule.toml"))?;
            store
                .put(
                    &format!("{prefix}module.wasm"),
                    Bytes::from(component),
                    "application/wasm",
                )
                .await
                .map_err(store_error("storing module.wasm"))?;
            tracing::info!(tenant, rule = %name, "rule uploaded");
            if let Some(hook) = &state.registry {
                hook.changed(tenant, &name).await;
            }
            let status = verdict(store, tenant, &name).await?;
            let code = if status["status"] == "pending" {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok((code, axum::Json(status)).into_response())
        }
        .await,
    )
}

async fn delete_rule(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    answer(
        async {
            let (principal, store) = open(&state, &headers, Scope::Rules).await?;
            let tenant = principal.tenant.as_str();
            check_rule_name(&name)?;
            if !rule_names(store, tenant).await?.contains(&name) {
                return Err(ApiError::NotFound(format!("no rule `{name}`")));
            }
            // The upload only: with it gone, the registry removes the active version, the
            // versions and `status.json`, in that order (here in-process, on AWS on the
            // bucket's removal events).
            let prefix = rule_prefix(tenant, &name);
            for file in ["module.wasm", "rule.toml"] {
                store
                    .delete(&format!("{prefix}{file}"))
                    .await
                    .map_err(store_error("removing the rule"))?;
            }
            if let Some(hook) = &state.registry {
                hook.changed(tenant, &name).await;
            }
            tracing::info!(tenant, rule = %name, "rule deleted");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn list_versions(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    answer(
        async {
            let (principal, store) = open(&state, &headers, Scope::Rules).await?;
            let tenant = principal.tenant.as_str();
            check_rule_name(&name)?;
            let all = versions(store, tenant, &name)
                .await
                .map_err(store_error("listing versions"))?;
            if all.is_empty() && !rule_names(store, tenant).await?.contains(&name) {
                return Err(ApiError::NotFound(format!("no rule `{name}`")));
            }
            let active = active_version(store, tenant, &name)
                .await
                .map_err(store_error("reading the active version"))?;
            Ok(axum::Json(serde_json::json!({
                "name": name,
                "active_version": active,
                "versions": all,
            }))
            .into_response())
        }
        .await,
    )
}

/// `to=V` out of the query string.
fn rollback_target(query: Option<&str>) -> Result<u64, ApiError> {
    query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("to="))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::BadRequest("expected ?to=<version>, a version number".into()))
}

async fn rollback(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    answer(
        async {
            let (principal, store) = open(&state, &headers, Scope::Rules).await?;
            let tenant = principal.tenant.as_str();
            check_rule_name(&name)?;
            let to = rollback_target(query.as_deref())?;
            let all = versions(store, tenant, &name)
                .await
                .map_err(store_error("listing versions"))?;
            match all.iter().find(|v| v.version == to) {
                None => {
                    return Err(ApiError::NotFound(format!(
                        "rule `{name}` has no version {to}"
                    )));
                }
                Some(v) if !v.accepted() => {
                    return Err(ApiError::Conflict(format!(
                        "version {to} of `{name}` was rejected ({}); only an accepted version can be made active",
                        v.reason.as_deref().unwrap_or("no reason recorded")
                    )));
                }
                Some(_) => {}
            }
            let request = serde_json::to_vec(&RollbackRequest { to })
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            store
                .put(
                    &rollback_request_key(tenant, &name),
                    Bytes::from(request),
                    "application/json",
                )
                .await
                .map_err(store_error("storing the rollback request"))?;
            tracing::info!(tenant, rule = %name, to, "rollback requested");
            let Some(hook) = &state.registry else {
                return Ok((
                    StatusCode::ACCEPTED,
                    axum::Json(serde_json::json!({ "name": name, "status": "pending", "to": to })),
                )
                    .into_response());
            };
            hook.rollback(tenant, &name).await;
            let status = verdict(store, tenant, &name).await?;
            if status["active_version"] == to {
                Ok(axum::Json(status).into_response())
            } else {
                Err(ApiError::Conflict(format!(
                    "version {to} was not made active: {}",
                    status["reason"].as_str().unwrap_or("the registry refused it")
                )))
            }
        }
        .await,
    )
}
