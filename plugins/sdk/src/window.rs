//! What a rule sees: one tenant's merged window. Plain Rust mirrors of the WIT `types`
//! interface (see `wit/since_v0.1.0/rules.wit` for the meaning of every field), with helpers.

use serde::{Deserialize, Serialize};

/// The canonical level of a log record, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    /// `error` or `fatal`.
    pub fn is_error(self) -> bool {
        self >= Level::Error
    }

    /// The lowercase name, as in the WIT file and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
}

/// The number of records at each level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelCounts {
    pub trace: u64,
    pub debug: u64,
    pub info: u64,
    pub warn: u64,
    pub error: u64,
    pub fatal: u64,
}

impl LevelCounts {
    /// Records at `level`.
    pub fn get(&self, level: Level) -> u64 {
        match level {
            Level::Trace => self.trace,
            Level::Debug => self.debug,
            Level::Info => self.info,
            Level::Warn => self.warn,
            Level::Error => self.error,
            Level::Fatal => self.fatal,
        }
    }

    /// Error-level records: `error` + `fatal`.
    pub fn errors(&self) -> u64 {
        self.error.saturating_add(self.fatal)
    }
}

/// A latency quantile, as named in manifests (`"p99"`, `"max"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantile {
    P50,
    P90,
    P95,
    P99,
    Max,
}

impl Quantile {
    /// The name used in manifests and alert labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantile::P50 => "p50",
            Quantile::P90 => "p90",
            Quantile::P95 => "p95",
            Quantile::P99 => "p99",
            Quantile::Max => "max",
        }
    }

    /// The fraction of records at or below this quantile (1.0 for `max`).
    pub fn fraction(self) -> f64 {
        match self {
            Quantile::P50 => 0.50,
            Quantile::P90 => 0.90,
            Quantile::P95 => 0.95,
            Quantile::P99 => 0.99,
            Quantile::Max => 1.0,
        }
    }
}

/// Latency quantiles in milliseconds, over the records that carried a latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// The value of one quantile.
    pub fn get(&self, quantile: Quantile) -> f64 {
        match quantile {
            Quantile::P50 => self.p50,
            Quantile::P90 => self.p90,
            Quantile::P95 => self.p95,
            Quantile::P99 => self.p99,
            Quantile::Max => self.max,
        }
    }

    /// Estimates the fraction of records slower than `threshold_ms` by interpolating the
    /// distribution linearly between the known quantiles. Under p50 the shape is unknown and
    /// the estimate is 0.5 (at least half the records are slower).
    pub fn fraction_above(&self, threshold_ms: f64) -> f64 {
        if self.count == 0 || threshold_ms >= self.max {
            return 0.0;
        }
        // (latency, fraction at or below) from the top down.
        let points = [
            (self.max, 1.0),
            (self.p99, 0.99),
            (self.p95, 0.95),
            (self.p90, 0.90),
            (self.p50, 0.50),
        ];
        for pair in points.windows(2) {
            let (hi_ms, hi_frac) = pair[0];
            let (lo_ms, lo_frac) = pair[1];
            if threshold_ms >= lo_ms {
                let span = hi_ms - lo_ms;
                let below = if span > 0.0 {
                    lo_frac + (hi_frac - lo_frac) * (threshold_ms - lo_ms) / span
                } else {
                    hi_frac
                };
                return (1.0 - below).clamp(0.0, 1.0);
            }
        }
        // Below the median: all we know is that at least half the records are slower.
        0.5
    }
}

/// One service's statistics over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceStats {
    pub service: String,
    pub count: u64,
    pub levels: LevelCounts,
    pub requests: u64,
    pub status4xx: u64,
    pub status5xx: u64,
    pub error_rate: f64,
    pub latency: Option<Latency>,
}

impl ServiceStats {
    /// A service with no records, to fill in (mostly for tests).
    pub fn named(service: impl Into<String>) -> ServiceStats {
        ServiceStats {
            service: service.into(),
            ..ServiceStats::default()
        }
    }

    /// Error-level records (`error` + `fatal`).
    pub fn errors(&self) -> u64 {
        self.levels.errors()
    }

    /// 5xx responses divided by requests; 0.0 with no requests.
    pub fn rate_5xx(&self) -> f64 {
        ratio(self.status5xx, self.requests)
    }

    /// 4xx responses divided by requests; 0.0 with no requests.
    pub fn rate_4xx(&self) -> f64 {
        ratio(self.status4xx, self.requests)
    }
}

/// A log pattern in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogPattern {
    pub id: String,
    pub template: String,
    pub service: String,
    pub level: Level,
    pub count: u64,
    pub first_seen: bool,
    pub sample: String,
}

/// One tenant's merged window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub tenant: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub services: Vec<ServiceStats>,
    pub patterns: Vec<LogPattern>,
}

impl Window {
    /// The window's length in milliseconds (0 if end is not after start).
    pub fn duration_ms(&self) -> i64 {
        self.end_ms.saturating_sub(self.start_ms).max(0)
    }

    /// The window's length in minutes, never less than a millisecond's worth (so rates
    /// computed with it are finite).
    pub fn minutes(&self) -> f64 {
        (self.duration_ms().max(1)) as f64 / 60_000.0
    }

    /// The statistics of one service, if it logged in the window.
    pub fn service(&self, name: &str) -> Option<&ServiceStats> {
        self.services.iter().find(|s| s.service == name)
    }

    /// The services that `filter` selects (an empty filter selects every service).
    pub fn selected_services<'a>(
        &'a self,
        filter: &'a [String],
    ) -> impl Iterator<Item = &'a ServiceStats> + 'a {
        self.services
            .iter()
            .filter(move |s| filter.is_empty() || filter.iter().any(|f| f == &s.service))
    }

    /// All services added together as one service named `"*"`. Latency quantiles cannot be
    /// merged exactly from quantiles: the total uses, for each quantile, the worst service's
    /// value among those with latencies (a pessimistic bound), and the exact max.
    pub fn total<'a>(services: impl IntoIterator<Item = &'a ServiceStats>) -> ServiceStats {
        let mut total = ServiceStats::named("*");
        let mut latency: Option<Latency> = None;
        for s in services {
            total.count = total.count.saturating_add(s.count);
            let l = &mut total.levels;
            l.trace = l.trace.saturating_add(s.levels.trace);
            l.debug = l.debug.saturating_add(s.levels.debug);
            l.info = l.info.saturating_add(s.levels.info);
            l.warn = l.warn.saturating_add(s.levels.warn);
            l.error = l.error.saturating_add(s.levels.error);
            l.fatal = l.fatal.saturating_add(s.levels.fatal);
            total.requests = total.requests.saturating_add(s.requests);
            total.status4xx = total.status4xx.saturating_add(s.status4xx);
            total.status5xx = total.status5xx.saturating_add(s.status5xx);
            if let Some(sl) = s.latency {
                latency = Some(match latency {
                    None => sl,
                    Some(t) => Latency {
                        count: t.count.saturating_add(sl.count),
                        p50: t.p50.max(sl.p50),
                        p90: t.p90.max(sl.p90),
                        p95: t.p95.max(sl.p95),
                        p99: t.p99.max(sl.p99),
                        max: t.max.max(sl.max),
                    },
                });
            }
        }
        total.error_rate = ratio(total.levels.errors(), total.count);
        total.latency = latency;
        total
    }
}

/// `part / whole`, 0.0 when `whole` is 0.
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency() -> Latency {
        Latency {
            count: 1000,
            p50: 100.0,
            p90: 200.0,
            p95: 300.0,
            p99: 500.0,
            max: 1000.0,
        }
    }

    #[test]
    fn fraction_above_is_zero_at_or_over_the_max() {
        assert_eq!(latency().fraction_above(1000.0), 0.0);
        assert_eq!(latency().fraction_above(5000.0), 0.0);
    }

    #[test]
    fn fraction_above_matches_each_known_quantile() {
        let l = latency();
        assert!((l.fraction_above(500.0) - 0.01).abs() < 1e-9);
        assert!((l.fraction_above(300.0) - 0.05).abs() < 1e-9);
        assert!((l.fraction_above(200.0) - 0.10).abs() < 1e-9);
        assert!((l.fraction_above(100.0) - 0.50).abs() < 1e-9);
    }

    #[test]
    fn fraction_above_interpolates_between_quantiles() {
        // Halfway between p95 (300) and p99 (500): 3% above.
        assert!((latency().fraction_above(400.0) - 0.03).abs() < 1e-9);
    }

    #[test]
    fn total_adds_counts_and_takes_the_worst_quantiles() {
        let mut a = ServiceStats::named("a");
        a.count = 100;
        a.levels.error = 10;
        a.latency = Some(latency());
        let mut b = ServiceStats::named("b");
        b.count = 300;
        b.levels.fatal = 10;
        b.latency = Some(Latency {
            p99: 900.0,
            max: 950.0,
            ..latency()
        });
        let t = Window::total([&a, &b]);
        assert_eq!(t.count, 400);
        assert_eq!(t.errors(), 20);
        assert!((t.error_rate - 0.05).abs() < 1e-12);
        let l = t.latency.expect("both services have latencies");
        assert_eq!((l.count, l.p99, l.max), (2000, 900.0, 1000.0));
    }

    #[test]
    fn selected_services_with_an_empty_filter_selects_all() {
        let w = Window {
            services: vec![ServiceStats::named("a"), ServiceStats::named("b")],
            ..Window::default()
        };
        assert_eq!(w.selected_services(&[]).count(), 2);
        let only_b = vec!["b".to_string()];
        let names: Vec<_> = w
            .selected_services(&only_b)
            .map(|s| s.service.as_str())
            .collect();
        assert_eq!(names, ["b"]);
    }
}
