//! [`WindowAggregator`]: assigns events to event-time windows (with allowed lateness) and
//! counts them into per (tenant, window) partials.
//!
//! It works on a structure of its own, built for the hot path: tenants, windows and services
//! are found by borrowed `&str` lookups in Fx hash maps (no allocation per event), and
//! patterns by their 64-bit hash. [`WindowAggregator::drain`] turns it into the
//! [`TenantWindow`]s that are serialised and merged elsewhere (sorted maps, hex ids).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use rustc_hash::FxHashMap;

use super::{AggEvent, PatternStats, ServiceStats, TenantWindow, WindowConfig, patterns};

/// Builds partial windows from events.
#[derive(Debug, Default)]
pub struct WindowAggregator {
    config: WindowConfig,
    /// tenant → window start → partial.
    tenants: FxHashMap<Box<str>, FxHashMap<i64, Working>>,
    /// Scratch buffer for templates.
    template: String,
}

/// One tenant's partial window while events are being added.
#[derive(Debug)]
struct Working {
    start_ms: i64,
    end_ms: i64,
    services: FxHashMap<Box<str>, ServiceStats>,
    /// [`patterns::lookup_hash`] → (stable [`patterns::pattern_hash`], pattern).
    patterns: FxHashMap<u64, (u64, PatternStats)>,
    untracked_patterns: u64,
}

impl Working {
    fn new(start_ms: i64, end_ms: i64) -> Self {
        Self {
            start_ms,
            end_ms,
            services: FxHashMap::default(),
            patterns: FxHashMap::default(),
            untracked_patterns: 0,
        }
    }

    fn into_tenant_window(self, tenant: &str) -> TenantWindow {
        TenantWindow {
            tenant: tenant.to_owned(),
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            services: self
                .services
                .into_iter()
                .map(|(k, v)| (k.into_string(), v))
                .collect(),
            patterns: self.patterns.into_values().fold(
                BTreeMap::new(),
                |mut patterns, (hash, p)| {
                    // Two templates with one stable hash (a 64-bit collision) count as one.
                    match patterns.entry(format!("{hash:016x}")) {
                        Entry::Vacant(v) => {
                            v.insert(p);
                        }
                        Entry::Occupied(mut o) => o.get_mut().merge(&p),
                    }
                    patterns
                },
            ),
            untracked_patterns: self.untracked_patterns,
        }
    }

    fn from_tenant_window(w: TenantWindow) -> Self {
        Self {
            start_ms: w.start_ms,
            end_ms: w.end_ms,
            services: w
                .services
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v))
                .collect(),
            patterns: w
                .patterns
                .into_iter()
                .map(|(id, p)| {
                    // Ids are 16 hex digits of the pattern hash; recompute it if one is not.
                    let hash = u64::from_str_radix(&id, 16)
                        .unwrap_or_else(|_| patterns::pattern_hash(&p.service, &p.template));
                    (patterns::lookup_hash(&p.service, &p.template), (hash, p))
                })
                .collect(),
            untracked_patterns: w.untracked_patterns,
        }
    }
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
        let windows = match self.tenants.get_mut(e.tenant) {
            Some(w) => w,
            None => self.tenants.entry(e.tenant.into()).or_default(),
        };
        let window = windows
            .entry(start)
            .or_insert_with(|| Working::new(start, start + window_ms));
        let stats = match window.services.get_mut(e.service) {
            Some(s) => s,
            None => window.services.entry(e.service.into()).or_default(),
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
        let lookup = patterns::lookup_hash(e.service, &self.template);
        if let Some((_, p)) = window.patterns.get_mut(&lookup) {
            p.count += 1;
            p.level = p.level.max(e.level);
            if (e.ts_ms, e.message) < (p.sample_ts, p.sample.as_str()) {
                e.message.clone_into(&mut p.sample);
                p.sample_ts = e.ts_ms;
            }
        } else if window.patterns.len() < max_patterns {
            let hash = patterns::pattern_hash(e.service, &self.template);
            window.patterns.insert(
                lookup,
                (
                    hash,
                    PatternStats {
                        template: self.template.clone(),
                        service: e.service.to_owned(),
                        level: e.level,
                        count: 1,
                        sample: e.message.to_owned(),
                        sample_ts: e.ts_ms,
                    },
                ),
            );
        } else {
            window.untracked_patterns += 1;
        }
    }

    /// Merges partials built elsewhere (a previous invocation's state) into this aggregator.
    pub fn absorb(&mut self, partials: Vec<TenantWindow>) {
        let max_patterns = self.config.max_patterns;
        for partial in partials {
            let windows = self
                .tenants
                .entry(partial.tenant.as_str().into())
                .or_default();
            let merged = match windows.remove(&partial.start_ms) {
                Some(mine) => {
                    let mut mine = mine.into_tenant_window(&partial.tenant);
                    mine.merge(&partial, max_patterns);
                    mine
                }
                None => partial,
            };
            windows.insert(merged.start_ms, Working::from_tenant_window(merged));
        }
    }

    /// The partial windows built so far, sorted by tenant and window start, leaving the
    /// aggregator empty.
    pub fn drain(&mut self) -> Vec<TenantWindow> {
        let mut out: Vec<TenantWindow> = std::mem::take(&mut self.tenants)
            .into_iter()
            .flat_map(|(tenant, windows)| {
                windows
                    .into_values()
                    .map(move |w| w.into_tenant_window(&tenant))
            })
            .collect();
        out.sort_by(|a, b| (&a.tenant, a.start_ms).cmp(&(&b.tenant, b.start_ms)));
        out
    }

    /// Partial windows held.
    pub fn len(&self) -> usize {
        self.tenants.values().map(FxHashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.values().all(FxHashMap::is_empty)
    }
}
