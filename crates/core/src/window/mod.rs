//! Windowed aggregates: per (tenant, window) partials that merge exactly, so per-shard partials
//! add up to the tenant-wide window the rules see.
//!
//! - [`sketch`]: the mergeable latency quantile sketch;
//! - [`patterns`]: log-pattern templates with stable ids;
//! - [`TenantWindow`]: one tenant's partial (or merged) window: per-service counts, levels,
//!   status classes, latency sketch, and pattern counts with one sample each;
//! - [`WindowAggregator`]: assigns events to event-time windows, with allowed lateness;
//! - [`progress`]: how far each shard's aggregation has got, so windows close complete.

mod aggregator;
pub mod metrics_out;
pub mod patterns;
pub mod patterns_out;
pub mod progress;
pub mod sketch;
pub mod summary;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::level::Level;
use sketch::QuantileSketch;

pub use aggregator::WindowAggregator;

/// Per-service counters of one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceStats {
    pub count: u64,
    /// Counts per level, in [`Level::ALL`] order.
    pub levels: [u64; 6],
    pub http_2xx: u64,
    pub http_3xx: u64,
    pub http_4xx: u64,
    pub http_5xx: u64,
    /// Latencies in ms.
    pub latency: QuantileSketch,
    /// Events that arrived after their own window had closed and were counted here instead.
    pub late: u64,
}

impl ServiceStats {
    fn merge(&mut self, other: &ServiceStats) {
        self.count += other.count;
        for (a, b) in self.levels.iter_mut().zip(other.levels) {
            *a += b;
        }
        self.http_2xx += other.http_2xx;
        self.http_3xx += other.http_3xx;
        self.http_4xx += other.http_4xx;
        self.http_5xx += other.http_5xx;
        self.latency.merge(&other.latency);
        self.late += other.late;
    }

    /// Error-level (error and fatal) events.
    pub fn errors(&self) -> u64 {
        self.levels[4] + self.levels[5]
    }

    /// Share of events that are errors or HTTP 5xx, whichever is larger.
    pub fn error_rate(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.errors().max(self.http_5xx) as f64 / self.count as f64
        }
    }
}

/// One log pattern's counts in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternStats {
    pub template: String,
    pub service: String,
    /// The most severe level seen with this pattern.
    pub level: Level,
    pub count: u64,
    /// One example message: the earliest (ties: the smallest), so merging is order-independent.
    pub sample: String,
    pub sample_ts: i64,
}

impl PatternStats {
    fn merge(&mut self, other: &PatternStats) {
        self.count += other.count;
        self.level = self.level.max(other.level);
        if (other.sample_ts, &other.sample) < (self.sample_ts, &self.sample) {
            self.sample.clone_from(&other.sample);
            self.sample_ts = other.sample_ts;
        }
    }
}

/// A tenant's window: partial (one shard) or merged (all shards).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantWindow {
    pub tenant: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub services: BTreeMap<String, ServiceStats>,
    /// Pattern id → counts.
    pub patterns: BTreeMap<String, PatternStats>,
    /// Events whose pattern was not tracked because the table was full.
    pub untracked_patterns: u64,
}

impl TenantWindow {
    pub fn new(tenant: &str, start_ms: i64, end_ms: i64) -> Self {
        Self {
            tenant: tenant.to_owned(),
            start_ms,
            end_ms,
            ..Self::default()
        }
    }

    /// Adds another partial of the same tenant and window. Pattern tables are capped at
    /// `max_patterns`: the most frequent survive (ties by id), the rest count as untracked.
    pub fn merge(&mut self, other: &TenantWindow, max_patterns: usize) {
        for (name, stats) in &other.services {
            self.services.entry(name.clone()).or_default().merge(stats);
        }
        for (id, p) in &other.patterns {
            match self.patterns.get_mut(id) {
                Some(mine) => mine.merge(p),
                None => {
                    self.patterns.insert(id.clone(), p.clone());
                }
            }
        }
        self.untracked_patterns += other.untracked_patterns;
        self.cap_patterns(max_patterns);
    }

    /// Keeps the `max_services` busiest services (ties by name) and folds the rest into one
    /// service named `other` (docs/ARCHITECTURE.md §10). Returns how many were folded.
    pub fn fold_services(&mut self, max_services: usize, other: &str) -> usize {
        if self.services.len() <= max_services {
            return 0;
        }
        let mut ranked: Vec<(u64, String)> = self
            .services
            .iter()
            .filter(|(name, _)| name.as_str() != other)
            .map(|(name, s)| (s.count, name.clone()))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        // `other` takes one of the places.
        let keep = max_services.saturating_sub(1);
        let mut folded = ServiceStats::default();
        let mut n = 0;
        for (_, name) in ranked.into_iter().skip(keep) {
            if let Some(stats) = self.services.remove(&name) {
                folded.merge(&stats);
                n += 1;
            }
        }
        self.services
            .entry(other.to_owned())
            .or_default()
            .merge(&folded);
        n
    }

    /// Keeps the `max_patterns` most frequent patterns (ties by id); the rest count as
    /// untracked. Returns how many were dropped.
    pub fn cap_patterns(&mut self, max_patterns: usize) -> usize {
        if self.patterns.len() <= max_patterns {
            return 0;
        }
        let mut ranked: Vec<(u64, String)> = self
            .patterns
            .iter()
            .map(|(id, p)| (p.count, id.clone()))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut dropped = 0;
        for (count, id) in ranked.into_iter().skip(max_patterns) {
            self.patterns.remove(&id);
            self.untracked_patterns += count;
            dropped += 1;
        }
        dropped
    }

    /// Total events in the window.
    pub fn count(&self) -> u64 {
        self.services.values().map(|s| s.count).sum()
    }

    /// All services' stats together.
    pub fn totals(&self) -> ServiceStats {
        let mut total = ServiceStats::default();
        for s in self.services.values() {
            total.merge(s);
        }
        total
    }
}

/// Aggregation settings.
#[derive(Debug, Clone)]
pub struct WindowConfig {
    /// Window length (60 s by default).
    pub window_ms: i64,
    /// How long after its end a window still accepts events.
    pub allowed_lateness_ms: i64,
    /// Patterns kept per tenant and window.
    pub max_patterns: usize,
    /// Tenant buckets partials are stored and evaluated in (docs/ARCHITECTURE.md §12).
    pub tenant_buckets: crate::tenant_bucket::TenantBuckets,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            window_ms: 60_000,
            allowed_lateness_ms: 0,
            max_patterns: 500,
            tenant_buckets: crate::tenant_bucket::TenantBuckets::DEFAULT,
        }
    }
}

impl WindowConfig {
    /// Start of the window containing `ts_ms`.
    pub fn window_start(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.window_ms) * self.window_ms
    }

    /// When a window starting at `start_ms` closes: its end plus the allowed lateness.
    pub fn close_ms(&self, start_ms: i64) -> i64 {
        start_ms + self.window_ms + self.allowed_lateness_ms
    }

    /// True when a window starting at `start_ms` is closed at `now_ms` (end plus lateness).
    pub fn is_closed(&self, start_ms: i64, now_ms: i64) -> bool {
        self.close_ms(start_ms) <= now_ms
    }
}

/// One event, as aggregation needs it.
#[derive(Debug, Clone, Copy)]
pub struct AggEvent<'a> {
    pub tenant: &'a str,
    pub service: &'a str,
    pub ts_ms: i64,
    pub arrival_ms: i64,
    pub level: Level,
    pub http_status: Option<u16>,
    pub latency_ms: Option<f64>,
    pub message: &'a str,
}
