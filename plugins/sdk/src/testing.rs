//! Building windows in tests: terse constructors for services, patterns and windows.
//!
//! ```
//! use sluice_rule_sdk::testing::{service, window};
//! let w = window(0, 1, vec![service("api", 1000, 50).with_http(900, 10, 40).with_latency(
//!     [20.0, 80.0, 120.0, 300.0, 900.0],
//! )]);
//! assert_eq!(w.service("api").map(|s| s.errors()), Some(50));
//! ```

use crate::window::{Latency, Level, LogPattern, ServiceStats, Window, ratio};

/// A window of `minutes` minutes starting at `start_ms`, for tenant `"t"`.
pub fn window(start_ms: i64, minutes: i64, services: Vec<ServiceStats>) -> Window {
    Window {
        tenant: "t".into(),
        start_ms,
        end_ms: start_ms + minutes * 60_000,
        services,
        patterns: Vec::new(),
    }
}

/// A service with `count` records, `errors` of them at level `error` and the rest at `info`.
pub fn service(name: &str, count: u64, errors: u64) -> ServiceStats {
    let mut s = ServiceStats::named(name);
    s.count = count;
    s.levels.error = errors.min(count);
    s.levels.info = count - s.levels.error;
    s.error_rate = ratio(s.levels.error, count);
    s
}

/// A pattern with a template derived from its id.
pub fn pattern(id: &str, service: &str, level: Level, count: u64, first_seen: bool) -> LogPattern {
    LogPattern {
        id: id.into(),
        template: format!("{id} happened <*>"),
        service: service.into(),
        level,
        count,
        first_seen,
        sample: format!("{id} happened 42"),
    }
}

impl ServiceStats {
    /// Sets the HTTP counts.
    pub fn with_http(mut self, requests: u64, status4xx: u64, status5xx: u64) -> ServiceStats {
        self.requests = requests;
        self.status4xx = status4xx;
        self.status5xx = status5xx;
        self
    }

    /// Sets latency quantiles `[p50, p90, p95, p99, max]`, counted over every record.
    pub fn with_latency(mut self, [p50, p90, p95, p99, max]: [f64; 5]) -> ServiceStats {
        self.latency = Some(Latency {
            count: self.count,
            p50,
            p90,
            p95,
            p99,
            max,
        });
        self
    }
}

impl Window {
    /// Adds patterns.
    pub fn with_patterns(mut self, patterns: Vec<LogPattern>) -> Window {
        self.patterns = patterns;
        self
    }

    /// The same window shifted `minutes` later (for windows in a row).
    pub fn shifted(&self, minutes: i64) -> Window {
        let mut w = self.clone();
        w.start_ms += minutes * 60_000;
        w.end_ms += minutes * 60_000;
        w
    }
}
