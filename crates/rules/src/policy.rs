//! Per-tenant sandbox limits ([`Policy::for_tenant`], from the tenant's
//! [`TenantLimits`], docs/ARCHITECTURE.md §10), and a rule's own (lower) limits from its
//! manifest.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_core::tenancy::limits::TenantLimits;

/// 16 MiB, the default memory cap of a rule.
pub const DEFAULT_MEMORY_BYTES: usize = 16 << 20;

/// The limits one evaluation runs under. A tenant's policy gives the defaults for all its
/// rules; a rule's manifest may lower them ([`Policy::restricted_by`]) but never raise them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// CPU budget in fuel units (about one per wasm instruction): deterministic, so the same
    /// rule on the same window always uses the same fuel. Reported in every outcome.
    pub fuel: u64,
    /// Wall-clock deadline, enforced by epoch interruption (precision: one engine tick).
    #[serde(with = "millis")]
    pub deadline: Duration,
    /// The most linear memory the rule may grow to, in bytes. Capped by the engine's
    /// [`max_memory_bytes`](crate::EngineConfig::max_memory_bytes).
    pub memory_bytes: usize,
    /// The most output (alert strings and labels plus state) one evaluation may return.
    pub max_output_bytes: usize,
    /// The most alerts one evaluation may return.
    pub max_alerts: usize,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            fuel: 50_000_000,
            deadline: Duration::from_millis(100),
            memory_bytes: DEFAULT_MEMORY_BYTES,
            max_output_bytes: 1 << 20,
            max_alerts: 1000,
        }
    }
}

/// A rule's own limits, from the `[limits]` table of its manifest. Each one only lowers the
/// tenant's policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub fuel: Option<u64>,
    pub deadline_ms: Option<u64>,
    pub memory_mib: Option<u32>,
    pub max_output_bytes: Option<usize>,
    pub max_alerts: Option<usize>,
}

impl Policy {
    /// The policy a tenant's rules run under: this one with the fuel, deadline and memory the
    /// tenant's limits set (operators may raise them above the defaults; memory stays capped
    /// by the engine's pool slot).
    pub fn for_tenant(&self, limits: &TenantLimits) -> Policy {
        Policy {
            fuel: limits.fuel,
            deadline: Duration::from_millis(limits.deadline_ms),
            memory_bytes: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            ..*self
        }
    }

    /// This policy, lowered where the rule's own limits are lower.
    pub fn restricted_by(&self, limits: &Limits) -> Policy {
        fn lower<T: Ord + Copy>(policy: T, rule: Option<T>) -> T {
            rule.map_or(policy, |r| r.min(policy))
        }
        Policy {
            fuel: lower(self.fuel, limits.fuel),
            deadline: lower(self.deadline, limits.deadline_ms.map(Duration::from_millis)),
            memory_bytes: lower(
                self.memory_bytes,
                limits.memory_mib.map(|m| {
                    usize::try_from(m)
                        .unwrap_or(usize::MAX)
                        .saturating_mul(1 << 20)
                }),
            ),
            max_output_bytes: lower(self.max_output_bytes, limits.max_output_bytes),
            max_alerts: lower(self.max_alerts, limits.max_alerts),
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_limits_lower_the_policy_but_never_raise_it() {
        let policy = Policy::default();
        let limits = Limits {
            fuel: Some(1_000),
            deadline_ms: Some(10_000),
            memory_mib: Some(4),
            max_output_bytes: None,
            max_alerts: Some(1_000_000),
        };
        let p = policy.restricted_by(&limits);
        assert_eq!(p.fuel, 1_000);
        assert_eq!(p.deadline, policy.deadline);
        assert_eq!(p.memory_bytes, 4 << 20);
        assert_eq!(p.max_output_bytes, policy.max_output_bytes);
        assert_eq!(p.max_alerts, policy.max_alerts);
    }

    #[test]
    fn a_tenants_limits_set_its_sandbox_budget() {
        let limits = TenantLimits {
            fuel: 1_000,
            deadline_ms: 5,
            memory_bytes: 1 << 20,
            ..TenantLimits::default()
        };
        let p = Policy::default().for_tenant(&limits);
        assert_eq!(
            (p.fuel, p.deadline, p.memory_bytes),
            (1_000, Duration::from_millis(5), 1 << 20)
        );
        assert_eq!(p.max_alerts, Policy::default().max_alerts);
        let d = Policy::default().for_tenant(&TenantLimits::default());
        assert_eq!(
            d,
            Policy::default(),
            "the default tenant runs under the default policy"
        );
    }

    #[test]
    fn policy_reads_from_json_with_deadline_in_milliseconds() {
        let p: Policy = serde_json::from_str(r#"{"fuel": 5, "deadline": 20}"#).expect("valid");
        assert_eq!(p.fuel, 5);
        assert_eq!(p.deadline, Duration::from_millis(20));
        assert_eq!(p.memory_bytes, DEFAULT_MEMORY_BYTES);
    }
}
