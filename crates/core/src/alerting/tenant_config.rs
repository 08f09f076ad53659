//! Per-tenant configuration, `tenants/<tenant>.toml` in the rules bucket: webhooks, rule
//! overrides, and silences.
//!
//! A webhook's signing secret is never named here (no environment variable, no file): sluice
//! generates it for the webhook's `id` and keeps it where only the service reads
//! ([`super::webhook_secrets`], docs/ARCHITECTURE.md §10). An inline `secret` is accepted from
//! the local runner, the demo and tests only; a configuration written through the API is
//! checked by [`super::config_validation::validate_tenant_config`], which refuses it.
//!
//! ```toml
//! [[webhooks]]
//! id = "ops"
//! url = "https://hooks.example.com/sluice"
//!
//! [rules.threshold]
//! for_windows = 2
//! repeat_interval_minutes = 60
//! disabled = false
//! params = { error_rate_critical = 0.2 }
//!
//! [[silences]]
//! matchers = { service = "search" }
//! expires_at = "2030-01-01T00:00:00Z"
//! comment = "migration"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lifecycle::LifecycleConfig;
use crate::normalize::timestamp::parse_rfc3339_ms;

/// A tenant's configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
    #[serde(default)]
    pub rules: BTreeMap<String, RuleOverride>,
    #[serde(default)]
    pub silences: Vec<Silence>,
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The webhook's id: its signing secret is
    /// `control/tenants/<tenant>/webhook-secrets/<id>`. Required through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub url: String,
    /// The secret inline: the local runner, the demo and tests only (refused through the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Per-rule settings a tenant can override.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOverride {
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub for_windows: Option<u32>,
    #[serde(default)]
    pub repeat_interval_minutes: Option<i64>,
    /// Parameters merged over the rule manifest's.
    #[serde(default)]
    pub params: toml::Table,
}

impl RuleOverride {
    /// The lifecycle of a rule, with these overrides applied over `base`.
    pub fn lifecycle(&self, base: LifecycleConfig) -> LifecycleConfig {
        LifecycleConfig {
            for_windows: self.for_windows.unwrap_or(base.for_windows),
            repeat_interval_ms: self
                .repeat_interval_minutes
                .map_or(base.repeat_interval_ms, |m| m * 60_000),
        }
    }
}

/// Mutes alerts whose labels match every matcher, until it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    pub matchers: BTreeMap<String, String>,
    /// RFC 3339.
    pub expires_at: String,
    #[serde(default)]
    pub comment: String,
}

impl Silence {
    /// True when the silence is active at `now_ms` and every matcher equals the label (a value
    /// ending in `*` matches by prefix). An unreadable expiry never silences.
    pub fn mutes(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> bool {
        let active = parse_rfc3339_ms(&self.expires_at).is_some_and(|e| now_ms < e);
        active
            && self.matchers.iter().all(|(k, want)| {
                labels
                    .get(k)
                    .is_some_and(|have| match want.strip_suffix('*') {
                        Some(prefix) => have.starts_with(prefix),
                        None => have == want,
                    })
            })
    }
}

/// Why a tenant configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenantConfigError {
    #[error("tenants/{tenant}.toml: {source}")]
    Parse {
        tenant: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("tenants/{tenant}.toml: webhook {url}: {reason}")]
    Webhook {
        tenant: String,
        url: String,
        reason: String,
    },
}

impl TenantConfig {
    /// Parses and checks a tenant's TOML.
    pub fn parse(tenant: &str, text: &str) -> Result<Self, TenantConfigError> {
        let config: TenantConfig =
            toml::from_str(text).map_err(|source| TenantConfigError::Parse {
                tenant: tenant.to_owned(),
                source,
            })?;
        for w in &config.webhooks {
            let err = |reason: &str| TenantConfigError::Webhook {
                tenant: tenant.to_owned(),
                url: w.url.clone(),
                reason: reason.to_owned(),
            };
            if !(w.url.starts_with("https://") || w.url.starts_with("http://")) {
                return Err(err("the URL must be http(s)"));
            }
            if w.id.is_some() && w.secret.is_some() {
                return Err(err(
                    "a webhook with an id has a generated secret; remove `secret`",
                ));
            }
        }
        Ok(config)
    }

    /// The override for `rule`, or none.
    pub fn rule(&self, rule: &str) -> RuleOverride {
        self.rules.get(rule).cloned().unwrap_or_default()
    }

    /// True when an active silence mutes these labels.
    pub fn silenced(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> bool {
        self.silences.iter().any(|s| s.mutes(labels, now_ms))
    }
}

impl Webhook {
    /// The signing key: the generated secret of the webhook's id, from `store` (the rules
    /// bucket's `control/` prefix), or the inline secret; `None` means unsigned.
    pub async fn signing_key(
        &self,
        store: &dyn crate::store::BlobStore,
        tenant: &str,
    ) -> Result<Option<Vec<u8>>, String> {
        if let Some(id) = &self.id {
            return super::webhook_secrets::lookup(store, tenant, id)
                .await
                .map(|s| s.map(|s| s.signing_key().to_vec()))
                .map_err(|e| e.to_string());
        }
        Ok(self.secret.as_ref().map(|s| s.as_bytes().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_webhooks_overrides_and_silences() -> Result<(), TenantConfigError> {
        let c = TenantConfig::parse(
            "acme",
            r#"
            [[webhooks]]
            url = "http://127.0.0.1:9/hook"
            secret = "s"
            [rules.threshold]
            for_windows = 2
            params = { error_rate_critical = 0.2 }
            [[silences]]
            matchers = { service = "search*" }
            expires_at = "2030-01-01T00:00:00Z"
            "#,
        )?;
        assert_eq!(
            c.rule("threshold")
                .lifecycle(LifecycleConfig::default())
                .for_windows,
            2
        );
        assert_eq!(c.rule("other"), RuleOverride::default());
        let labels = BTreeMap::from([("service".to_owned(), "search-v2".to_owned())]);
        assert!(c.silenced(&labels, 1_700_000_000_000));
        assert!(!c.silenced(&labels, 1_900_000_000_000), "expired");
        assert_eq!(c.webhooks[0].secret.as_deref(), Some("s"));
        Ok(())
    }

    #[test]
    fn rejects_unknown_keys_and_bad_urls() {
        assert!(TenantConfig::parse("acme", "[[webhooks]]\nurl = \"ftp://x\"").is_err());
        assert!(TenantConfig::parse("acme", "webhook = 1").is_err());
        assert!(
            TenantConfig::parse(
                "acme",
                "[[webhooks]]\nurl = \"http://x\"\nsecret_env = \"AWS_SECRET_ACCESS_KEY\""
            )
            .is_err(),
            "a configuration never names an environment variable"
        );
        assert!(
            TenantConfig::parse(
                "acme",
                "[[webhooks]]\nurl = \"http://x\"\nsecret_file = \"/proc/self/environ\""
            )
            .is_err(),
            "nor a file"
        );
    }
}
