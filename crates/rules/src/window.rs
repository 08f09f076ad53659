//! The window a rule receives: one tenant's merged, tenant-wide statistics.
//!
//! These are the host's mirror of the WIT `types` interface (`plugins/wit/since_v0.1.0/rules.wit`
//! documents every field). Each type is serde-serialisable (for JSON fixtures, `sluice rules
//! test --window`, and storage) and lowers directly into the component (the `Component*`
//! derives), so evaluating a rule copies the window straight into the guest with no
//! intermediate conversion. When sluice-core's aggregates exist, they convert into [`Window`]
//! once per tenant and window, and every rule of that tenant reuses it.

use serde::{Deserialize, Serialize};
use wasmtime::component::{ComponentType, Lift, Lower};

/// The canonical level of a log record, lowest first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ComponentType,
    Lift,
    Lower,
)]
#[serde(rename_all = "lowercase")]
#[component(enum)]
#[repr(u8)]
pub enum Level {
    #[component(name = "trace")]
    Trace,
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
    #[component(name = "error")]
    Error,
    #[component(name = "fatal")]
    Fatal,
}

/// The number of records at each level.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ComponentType, Lift, Lower,
)]
#[component(record)]
pub struct LevelCounts {
    pub trace: u64,
    pub debug: u64,
    pub info: u64,
    pub warn: u64,
    pub error: u64,
    pub fatal: u64,
}

impl LevelCounts {
    /// Error-level records: `error` + `fatal`.
    pub fn errors(&self) -> u64 {
        self.error.saturating_add(self.fatal)
    }

    /// All records.
    pub fn total(&self) -> u64 {
        [
            self.trace, self.debug, self.info, self.warn, self.error, self.fatal,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// Latency quantiles in milliseconds, over the records that carried a latency.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ComponentType, Lift, Lower,
)]
#[component(record)]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// One service's statistics over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ComponentType, Lift, Lower)]
#[component(record)]
pub struct ServiceStats {
    pub service: String,
    pub count: u64,
    pub levels: LevelCounts,
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub status4xx: u64,
    #[serde(default)]
    pub status5xx: u64,
    #[component(name = "error-rate")]
    pub error_rate: f64,
    #[serde(default)]
    pub latency: Option<Latency>,
}

/// A log pattern in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ComponentType, Lift, Lower)]
#[component(record)]
pub struct LogPattern {
    pub id: String,
    pub template: String,
    pub service: String,
    pub level: Level,
    pub count: u64,
    #[component(name = "first-seen")]
    #[serde(default)]
    pub first_seen: bool,
    #[serde(default)]
    pub sample: String,
}

/// One tenant's merged window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ComponentType, Lift, Lower)]
#[component(record)]
pub struct Window {
    pub tenant: String,
    #[component(name = "start-ms")]
    pub start_ms: i64,
    #[component(name = "end-ms")]
    pub end_ms: i64,
    #[serde(default)]
    pub services: Vec<ServiceStats>,
    #[serde(default)]
    pub patterns: Vec<LogPattern>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_counts_total_and_errors() {
        let l = LevelCounts {
            trace: 1,
            debug: 2,
            info: 3,
            warn: 4,
            error: 5,
            fatal: 6,
        };
        assert_eq!(l.total(), 21);
        assert_eq!(l.errors(), 11);
    }

    #[test]
    fn window_reads_from_json_with_optional_fields_missing() {
        let w: Window = serde_json::from_str(
            r#"{"tenant":"acme","start_ms":0,"end_ms":60000,
                "services":[{"service":"api","count":10,"error_rate":0.1,
                  "levels":{"trace":0,"debug":0,"info":9,"warn":0,"error":1,"fatal":0}}],
                "patterns":[{"id":"p1","template":"boom <*>","service":"api","level":"error","count":1}]}"#,
        )
        .expect("valid window JSON");
        assert_eq!(w.services[0].latency, None);
        assert_eq!(w.patterns[0].level, Level::Error);
        assert!(!w.patterns[0].first_seen);
    }
}
