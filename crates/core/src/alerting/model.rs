//! What rules produce and what the host keeps about each alert.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Alert severity, as a rule reports it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One alert as a rule returned it for one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleAlert {
    /// What the alert is about, stable across windows (`checkout/error-rate`).
    pub key: String,
    pub severity: Severity,
    pub title: String,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// What one rule evaluation returned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleOutput {
    pub alerts: Vec<RuleAlert>,
    /// The rule's opaque state for the next window.
    pub state: Option<Vec<u8>>,
    /// CPU budget used (wasmtime fuel).
    pub fuel_used: u64,
}

/// Where an alert is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Seen, but not yet for `for` windows in a row.
    Pending,
    Firing,
    Resolved,
}

/// The host's record of one alert (one fingerprint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub fingerprint: String,
    pub tenant: String,
    pub rule: String,
    pub key: String,
    pub severity: Severity,
    pub title: String,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub status: AlertStatus,
    /// Consecutive windows the alert has been produced in.
    pub windows_seen: u32,
    /// End of the first window it was produced in (Alertmanager's `startsAt`).
    pub starts_at_ms: i64,
    /// End of the window it resolved in.
    pub ends_at_ms: Option<i64>,
    /// When it was last notified as firing.
    pub last_notified_ms: Option<i64>,
}

/// The fingerprint of an alert: rule, key and labels, hashed (16 hex digits).
pub fn fingerprint(rule: &str, key: &str, labels: &BTreeMap<String, String>) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for part in [rule, key] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([b'=']);
        h.update(v.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..8])
}
