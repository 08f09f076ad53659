//! The tenant-wide window as rules see it: per-service statistics with quantiles read off the
//! sketches, and the top log patterns with whether each is new.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::TenantWindow;
use crate::level::Level;

/// Patterns handed to rules: the most frequent, plus new error patterns beyond them.
pub const TOP_PATTERNS: usize = 25;
const MAX_EXTRA_NEW_ERROR_PATTERNS: usize = 25;

/// Counts per level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelCounts {
    pub trace: u64,
    pub debug: u64,
    pub info: u64,
    pub warn: u64,
    pub error: u64,
    pub fatal: u64,
}

/// One service's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub name: String,
    pub count: u64,
    pub levels: LevelCounts,
    /// Events with an HTTP status.
    pub requests: u64,
    pub http_4xx: u64,
    pub http_5xx: u64,
    /// Errors (level error/fatal, or HTTP 5xx, whichever is more) over count.
    pub error_rate: f64,
    pub latency_p50: f64,
    pub latency_p90: f64,
    pub latency_p95: f64,
    pub latency_p99: f64,
    pub latency_max: f64,
    /// Events that arrived too late for their own window and were counted in this one.
    pub late: u64,
}

/// One log pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternSummary {
    pub id: String,
    pub template: String,
    pub service: String,
    pub level: Level,
    pub count: u64,
    /// First seen in this window (never in an earlier one the evaluator remembers).
    pub first_seen: bool,
    pub sample: String,
}

/// The window a tenant's rules evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    pub tenant: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub services: Vec<ServiceSummary>,
    pub patterns: Vec<PatternSummary>,
}

impl WindowSummary {
    /// Summarises a merged window; `is_known(id)` tells whether a pattern was seen before.
    pub fn from_window(window: &TenantWindow, is_known: impl Fn(&str) -> bool) -> Self {
        let services = window
            .services
            .iter()
            .map(|(name, s)| ServiceSummary {
                name: name.clone(),
                count: s.count,
                levels: LevelCounts {
                    trace: s.levels[Level::Trace as usize],
                    debug: s.levels[Level::Debug as usize],
                    info: s.levels[Level::Info as usize],
                    warn: s.levels[Level::Warn as usize],
                    error: s.levels[Level::Error as usize],
                    fatal: s.levels[Level::Fatal as usize],
                },
                requests: s.http_2xx + s.http_3xx + s.http_4xx + s.http_5xx,
                http_4xx: s.http_4xx,
                http_5xx: s.http_5xx,
                error_rate: s.error_rate(),
                latency_p50: s.latency.quantile(0.5),
                latency_p90: s.latency.quantile(0.9),
                latency_p95: s.latency.quantile(0.95),
                latency_p99: s.latency.quantile(0.99),
                latency_max: s.latency.max(),
                late: s.late,
            })
            .collect();
        let mut ranked: Vec<(&String, &super::PatternStats)> = window.patterns.iter().collect();
        ranked.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
        let mut patterns: Vec<PatternSummary> = Vec::new();
        let mut extra = 0;
        for (i, (id, p)) in ranked.into_iter().enumerate() {
            let first_seen = !is_known(id);
            let wanted = i < TOP_PATTERNS
                || (first_seen && p.level.is_error() && extra < MAX_EXTRA_NEW_ERROR_PATTERNS);
            if !wanted {
                continue;
            }
            if i >= TOP_PATTERNS {
                extra += 1;
            }
            patterns.push(PatternSummary {
                id: id.clone(),
                template: p.template.clone(),
                service: p.service.clone(),
                level: p.level,
                count: p.count,
                first_seen,
                sample: p.sample.clone(),
            });
        }
        Self {
            tenant: window.tenant.clone(),
            start_ms: window.start_ms,
            end_ms: window.end_ms,
            services,
            patterns,
        }
    }

    /// Services by name.
    pub fn service(&self, name: &str) -> Option<&ServiceSummary> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Total events and errors across services (for displays).
    pub fn totals(&self) -> (u64, f64, f64) {
        let count: u64 = self.services.iter().map(|s| s.count).sum();
        let errors: f64 = self
            .services
            .iter()
            .map(|s| s.error_rate * s.count as f64)
            .sum();
        let p99 = self
            .services
            .iter()
            .map(|s| s.latency_p99)
            .fold(0.0, f64::max);
        (
            count,
            if count == 0 {
                0.0
            } else {
                errors / count as f64
            },
            p99,
        )
    }
}

/// Keeps the ids of patterns seen in earlier windows, bounded, forgetting the least recent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KnownPatterns {
    /// Pattern id → end of the last window it was seen in.
    pub last_seen: BTreeMap<String, i64>,
}

impl KnownPatterns {
    pub const CAPACITY: usize = 5000;

    pub fn contains(&self, id: &str) -> bool {
        self.last_seen.contains_key(id)
    }

    /// Records every pattern of `window` as seen at its end.
    pub fn remember(&mut self, window: &TenantWindow) {
        for id in window.patterns.keys() {
            self.last_seen.insert(id.clone(), window.end_ms);
        }
        if self.last_seen.len() > Self::CAPACITY {
            let mut by_age: Vec<(i64, String)> = self
                .last_seen
                .iter()
                .map(|(k, v)| (*v, k.clone()))
                .collect();
            by_age.sort();
            for (_, id) in by_age
                .into_iter()
                .take(self.last_seen.len() - Self::CAPACITY)
            {
                self.last_seen.remove(&id);
            }
        }
    }
}
