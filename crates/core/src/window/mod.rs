//! Windowed aggregates: per (tenant, window) partials that merge exactly, so per-shard partials
//! add up to the tenant-wide window the rules see.
//!
//! - [`sketch`]: the mergeable latency quantile sketch;
//! - [`patterns`]: log-pattern templates with stable ids;
//! - [`TenantWindow`]: one tenant's partial (or merged) window: per-service counts, levels,
//!   status classes, latency sketch, and pattern counts with one sample each;
//! - [`WindowAggregator`]: assigns events to event-time windows, with allowed lateness.

pub mod metrics_out;
pub mod patterns;
pub mod sketch;
pub mod summary;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::level::Level;
use sketch::QuantileSketch;

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

    fn cap_patterns(&mut self, max_patterns: usize) {
        if self.patterns.len() <= max_patterns {
            return;
        }
        let mut ranked: Vec<(u64, String)> = self
            .patterns
            .iter()
            .map(|(id, p)| (p.count, id.clone()))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        for (count, id) in ranked.into_iter().skip(max_patterns) {
            self.patterns.remove(&id);
            self.untracked_patterns += count;
        }
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
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            window_ms: 60_000,
            allowed_lateness_ms: 120_000,
            max_patterns: 500,
        }
    }
}

impl WindowConfig {
    /// Start of the window containing `ts_ms`.
    pub fn window_start(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.window_ms) * self.window_ms
    }

    /// True when a window starting at `start_ms` is closed at `now_ms` (end plus lateness).
    pub fn is_closed(&self, start_ms: i64, now_ms: i64) -> bool {
        start_ms + self.window_ms + self.allowed_lateness_ms <= now_ms
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

/// Builds partial windows from events.
#[derive(Debug, Default)]
pub struct WindowAggregator {
    config: WindowConfig,
    windows: BTreeMap<(String, i64), TenantWindow>,
    /// Pattern hash → id per (tenant, window), to skip formatting ids for known patterns.
    known: HashMap<(u64, i64), String>,
    template: String,
}

impl WindowAggregator {
    pub fn new(config: WindowConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    /// Adds one event. Events later than the allowed lateness (by their arrival time) are
    /// counted in the window they arrived in, marked late, never dropped.
    pub fn add(&mut self, e: &AggEvent<'_>) {
        let c = &self.config;
        let mut start = c.window_start(e.ts_ms);
        let late = c.is_closed(start, e.arrival_ms);
        if late {
            start = c.window_start(e.arrival_ms - c.allowed_lateness_ms);
        }
        let window_ms = c.window_ms;
        let max_patterns = c.max_patterns;
        let key = (e.tenant.to_owned(), start);
        let window = self
            .windows
            .entry(key)
            .or_insert_with(|| TenantWindow::new(e.tenant, start, start + window_ms));
        let stats = match window.services.get_mut(e.service) {
            Some(s) => s,
            None => window.services.entry(e.service.to_owned()).or_default(),
        };
        stats.count += 1;
        stats.levels[e.level as usize] += 1;
        stats.late += u64::from(late);
        match e.http_status {
            Some(200..=299) => stats.http_2xx += 1,
            Some(300..=399) => stats.http_3xx += 1,
            Some(400..=499) => stats.http_4xx += 1,
            Some(500..=599) => stats.http_5xx += 1,
            _ => {}
        }
        if let Some(l) = e.latency_ms {
            stats.latency.insert(l);
        }
        if e.message.is_empty() {
            return;
        }
        patterns::template_into(e.message, &mut self.template);
        let hash = patterns::pattern_hash(e.service, &self.template);
        let id = self
            .known
            .entry((hash, start))
            .or_insert_with(|| format!("{hash:016x}"));
        if let Some(p) = window.patterns.get_mut(id.as_str()) {
            p.count += 1;
            p.level = p.level.max(e.level);
            if (e.ts_ms, e.message) < (p.sample_ts, p.sample.as_str()) {
                e.message.clone_into(&mut p.sample);
                p.sample_ts = e.ts_ms;
            }
        } else if window.patterns.len() < max_patterns {
            window.patterns.insert(
                id.clone(),
                PatternStats {
                    template: self.template.clone(),
                    service: e.service.to_owned(),
                    level: e.level,
                    count: 1,
                    sample: e.message.to_owned(),
                    sample_ts: e.ts_ms,
                },
            );
        } else {
            window.untracked_patterns += 1;
        }
    }

    /// Merges partials built elsewhere (a previous invocation's state) into this aggregator.
    pub fn absorb(&mut self, partials: Vec<TenantWindow>) {
        let max_patterns = self.config.max_patterns;
        for partial in partials {
            match self
                .windows
                .get_mut(&(partial.tenant.clone(), partial.start_ms))
            {
                Some(mine) => mine.merge(&partial, max_patterns),
                None => {
                    self.windows
                        .insert((partial.tenant.clone(), partial.start_ms), partial);
                }
            }
        }
    }

    /// The partial windows built so far, leaving the aggregator empty.
    pub fn drain(&mut self) -> Vec<TenantWindow> {
        self.known.clear();
        std::mem::take(&mut self.windows).into_values().collect()
    }

    /// Partial windows held.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}
