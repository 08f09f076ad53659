//! Per-tenant limits (docs/ARCHITECTURE.md §10), set by operators and stored through the
//! [`BlobStore`] port at `control/tenants/<tenant>/limits.json`, beside the tenant's keys.
//!
//! They bound what one tenant can take from every other: the sandbox's fuel, memory and
//! deadline per evaluation; how many rules it runs and how much state they keep; how many
//! alerts, distinct services and patterns one window carries (beyond the caps, services fold
//! into an `other` service and patterns into the untracked count, both counted); and the ingest
//! quota the API enforces at the front door. A tenant without a file gets
//! [`TenantLimits::default`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::{BlobStore, StoreError};

/// One tenant's limits. Unknown fields are refused, so a typo never silently means "default".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantLimits {
    /// Sandbox fuel per evaluation of one rule (about one unit per wasm instruction).
    pub fuel: u64,
    /// Linear memory one rule may grow to, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock deadline of one rule's evaluation, in milliseconds.
    pub deadline_ms: u64,
    /// Accepted rules the tenant may have; the registry refuses more, the evaluator runs no
    /// more.
    pub max_rules: u32,
    /// The state all the tenant's rules keep, together, in bytes.
    pub max_state_bytes: u64,
    /// Alerts the tenant's rules may raise in one window, together.
    pub max_alerts_per_window: u32,
    /// Distinct services one window keeps; the rest fold into [`OTHER_SERVICE`].
    pub max_services_per_window: u32,
    /// Distinct patterns one window keeps; the rest are counted as untracked.
    pub max_patterns_per_window: u32,
    /// Ingest quota, records per second (enforced by the API at the front door).
    pub ingest_records_per_s: u64,
    /// Ingest quota, bytes per second (enforced by the API at the front door).
    pub ingest_bytes_per_s: u64,
}

/// The service that services beyond [`TenantLimits::max_services_per_window`] fold into.
pub const OTHER_SERVICE: &str = "other";

impl Default for TenantLimits {
    /// Enough for a real tenant, small enough that one tenant cannot slow every other: the
    /// sandbox defaults (50 M fuel, 16 MiB, 100 ms), 50 rules with 4 MiB of state between them,
    /// 500 alerts, 500 services and 500 patterns per window, 5,000 records and 5 MiB per second.
    fn default() -> Self {
        Self {
            fuel: 50_000_000,
            memory_bytes: 16 << 20,
            deadline_ms: 100,
            max_rules: 50,
            max_state_bytes: 4 << 20,
            max_alerts_per_window: 500,
            max_services_per_window: 500,
            max_patterns_per_window: 500,
            ingest_records_per_s: 5_000,
            ingest_bytes_per_s: 5 << 20,
        }
    }
}

/// Limits could not be read, parsed or set.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("invalid tenant `{0}`: use 1 to 64 letters, digits, `-` or `_`")]
    InvalidTenant(String),
    #[error("{key}: {message}")]
    Corrupt { key: String, message: String },
    #[error("`{0}` is not key=value")]
    NotAnAssignment(String),
    #[error("unknown limit `{key}`; the limits are: {known}")]
    UnknownLimit { key: String, known: String },
    #[error("limit `{key}`: `{value}` is not a whole number ≥ 1")]
    InvalidValue { key: String, value: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `control/tenants/<tenant>/limits.json`.
pub fn limits_key(tenant: &str) -> Result<String, LimitsError> {
    let ok = (1..=64).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(LimitsError::InvalidTenant(
            tenant.chars().take(80).collect(),
        ));
    }
    Ok(format!("control/tenants/{tenant}/limits.json"))
}

impl TenantLimits {
    /// The names `set` accepts, in field order.
    pub const KEYS: [&'static str; 10] = [
        "fuel",
        "memory_bytes",
        "deadline_ms",
        "max_rules",
        "max_state_bytes",
        "max_alerts_per_window",
        "max_services_per_window",
        "max_patterns_per_window",
        "ingest_records_per_s",
        "ingest_bytes_per_s",
    ];

    /// The tenant's limits, or the defaults when none are stored.
    pub async fn load(store: &dyn BlobStore, tenant: &str) -> Result<Self, LimitsError> {
        let key = limits_key(tenant)?;
        match store.get(&key).await? {
            None => Ok(Self::default()),
            Some(body) => serde_json::from_slice(&body).map_err(|e| LimitsError::Corrupt {
                key,
                message: e.to_string(),
            }),
        }
    }

    /// Stores the tenant's limits (replacing any).
    pub async fn save(&self, store: &dyn BlobStore, tenant: &str) -> Result<(), LimitsError> {
        let key = limits_key(tenant)?;
        let body = serde_json::to_vec_pretty(self).map_err(|e| LimitsError::Corrupt {
            key: key.clone(),
            message: e.to_string(),
        })?;
        store
            .put(&key, Bytes::from(body), "application/json")
            .await?;
        tracing::info!(tenant, limits = ?self, "tenant limits set");
        Ok(())
    }

    /// Sets one limit from `key=value` (a whole number ≥ 1).
    pub fn set(&mut self, assignment: &str) -> Result<(), LimitsError> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| LimitsError::NotAnAssignment(assignment.to_owned()))?;
        let (key, value) = (key.trim(), value.trim().replace('_', ""));
        let invalid = || LimitsError::InvalidValue {
            key: key.to_owned(),
            value: value.clone(),
        };
        let n: u64 = value.parse().ok().filter(|n| *n >= 1).ok_or_else(invalid)?;
        let small = || u32::try_from(n).map_err(|_| invalid());
        match key {
            "fuel" => self.fuel = n,
            "memory_bytes" => self.memory_bytes = n,
            "deadline_ms" => self.deadline_ms = n,
            "max_rules" => self.max_rules = small()?,
            "max_state_bytes" => self.max_state_bytes = n,
            "max_alerts_per_window" => self.max_alerts_per_window = small()?,
            "max_services_per_window" => self.max_services_per_window = small()?,
            "max_patterns_per_window" => self.max_patterns_per_window = small()?,
            "ingest_records_per_s" => self.ingest_records_per_s = n,
            "ingest_bytes_per_s" => self.ingest_bytes_per_s = n,
            _ => {
                return Err(LimitsError::UnknownLimit {
                    key: key.to_owned(),
                    known: Self::KEYS.join(", "),
                });
            }
        }
        Ok(())
    }

    /// [`TenantLimits::max_rules`] as a count.
    pub fn rules(&self) -> usize {
        self.max_rules as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalDirStore;

    #[tokio::test]
    async fn a_tenant_without_limits_gets_the_defaults_and_set_ones_round_trip()
    -> Result<(), LimitsError> {
        let dir = tempfile::tempdir().map_err(|e| LimitsError::InvalidTenant(e.to_string()))?;
        let store = LocalDirStore::new(dir.path());
        assert_eq!(
            TenantLimits::load(&store, "acme").await?,
            TenantLimits::default()
        );
        let mut limits = TenantLimits::default();
        limits.set("max_rules=10")?;
        limits.set("ingest_bytes_per_s = 1_000_000")?;
        limits.save(&store, "acme").await?;
        let back = TenantLimits::load(&store, "acme").await?;
        assert_eq!((back.max_rules, back.ingest_bytes_per_s), (10, 1_000_000));
        assert_eq!(
            TenantLimits::load(&store, "other").await?,
            TenantLimits::default()
        );
        Ok(())
    }

    #[test]
    fn set_refuses_unknown_limits_zero_and_garbage() {
        let mut l = TenantLimits::default();
        assert!(matches!(
            l.set("max_rulez=3"),
            Err(LimitsError::UnknownLimit { .. })
        ));
        assert!(matches!(
            l.set("max_rules=0"),
            Err(LimitsError::InvalidValue { .. })
        ));
        assert!(matches!(
            l.set("max_rules=-1"),
            Err(LimitsError::InvalidValue { .. })
        ));
        assert!(matches!(
            l.set("max_rules=99999999999"),
            Err(LimitsError::InvalidValue { .. })
        ));
        assert!(matches!(
            l.set("fuel"),
            Err(LimitsError::NotAnAssignment(_))
        ));
        assert_eq!(l, TenantLimits::default(), "nothing changed");
    }

    #[test]
    fn stored_limits_with_an_unknown_field_are_refused() {
        let parsed: Result<TenantLimits, _> = serde_json::from_str(r#"{"max_rulez": 1}"#);
        assert!(parsed.is_err());
        let partial: TenantLimits = serde_json::from_str(r#"{"max_rules": 3}"#).unwrap_or_default();
        assert_eq!(partial.max_rules, 3);
        assert_eq!(partial.fuel, TenantLimits::default().fuel);
    }

    #[test]
    fn keys_name_every_settable_limit() {
        let mut l = TenantLimits::default();
        for key in TenantLimits::KEYS {
            assert!(l.set(&format!("{key}=7")).is_ok(), "{key}");
        }
    }

    #[test]
    fn tenant_names_cannot_escape_their_key() {
        assert!(limits_key("../x").is_err());
        assert!(limits_key("a/b").is_err());
        assert!(limits_key("").is_err());
    }
}
