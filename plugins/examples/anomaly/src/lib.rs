//! `anomaly`: compares each service's error rate and latency with its own recent past.
//!
//! Per service and metric the rule keeps an exponentially weighted mean and variance (EWMA,
//! weight `alpha` for the newest window). A window's value is scored as a z-score against the
//! baseline *before* the window is added: `(value - mean) / max(stddev, floor)`. Only
//! increases alert (a falling error rate is good news). No alert during warm-up, and windows
//! with too little traffic are neither scored nor learnt from.
//!
//! Every scored window is then learnt, anomalous ones included: a lasting change becomes the
//! new normal after roughly `2 / alpha` windows, and the alert resolves.

use serde::{Deserialize, Serialize};
use sluice_rule_sdk::{Alert, Quantile, Rule, ServiceStats, Severity, Window, export_rule};
use std::collections::BTreeMap;

/// The rule.
#[derive(Debug)]
pub struct Anomaly;

/// What is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Metric {
    #[serde(rename = "error_rate")]
    ErrorRate,
    #[serde(rename = "5xx_rate")]
    Rate5xx,
    #[serde(rename = "latency_p50")]
    LatencyP50,
    #[serde(rename = "latency_p90")]
    LatencyP90,
    #[serde(rename = "latency_p95")]
    LatencyP95,
    #[serde(rename = "latency_p99")]
    LatencyP99,
    #[serde(rename = "latency_max")]
    LatencyMax,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::Rate5xx => "5xx_rate",
            Metric::LatencyP50 => "latency_p50",
            Metric::LatencyP90 => "latency_p90",
            Metric::LatencyP95 => "latency_p95",
            Metric::LatencyP99 => "latency_p99",
            Metric::LatencyMax => "latency_max",
        }
    }

    fn quantile(self) -> Option<Quantile> {
        match self {
            Metric::LatencyP50 => Some(Quantile::P50),
            Metric::LatencyP90 => Some(Quantile::P90),
            Metric::LatencyP95 => Some(Quantile::P95),
            Metric::LatencyP99 => Some(Quantile::P99),
            Metric::LatencyMax => Some(Quantile::Max),
            Metric::ErrorRate | Metric::Rate5xx => None,
        }
    }

    /// The value and the number of records it rests on.
    fn measure(self, s: &ServiceStats) -> Option<(f64, u64)> {
        match (self, self.quantile()) {
            (_, Some(q)) => s.latency.map(|l| (l.get(q), l.count)),
            (Metric::ErrorRate, None) => Some((s.error_rate, s.count)),
            (_, None) => Some((s.rate_5xx(), s.requests)),
        }
    }

    fn format(self, v: f64) -> String {
        if self.quantile().is_some() {
            format!("{v:.1} ms")
        } else {
            format!("{:.2}%", v * 100.0)
        }
    }
}

/// The `[params]` of `rule.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub metrics: Vec<Metric>,
    pub alpha: f64,
    pub z_warning: f64,
    pub z_critical: f64,
    pub warmup_windows: u32,
    pub min_count: u64,
    pub min_stddev_rate: f64,
    pub min_stddev_ms: f64,
    pub services: Vec<String>,
    pub forget_after_minutes: u32,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            metrics: vec![Metric::ErrorRate, Metric::LatencyP99],
            alpha: 0.1,
            z_warning: 4.0,
            z_critical: 8.0,
            warmup_windows: 30,
            min_count: 50,
            min_stddev_rate: 0.005,
            min_stddev_ms: 5.0,
            services: Vec::new(),
            forget_after_minutes: 1440,
        }
    }
}

/// An exponentially weighted mean and variance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Ewma {
    pub mean: f64,
    pub var: f64,
    /// Windows learnt.
    pub n: u32,
    pub last_ms: i64,
}

impl Ewma {
    /// Learns one value (West's incremental EW variance).
    fn learn(&mut self, alpha: f64, x: f64) {
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let diff = x - self.mean;
            let incr = alpha * diff;
            self.mean += incr;
            self.var = (1.0 - alpha) * (self.var + diff * incr);
        }
        self.n = self.n.saturating_add(1);
    }
}

/// Baselines by `service/metric`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub baselines: BTreeMap<String, Ewma>,
}

impl Rule for Anomaly {
    type Params = Params;
    type State = State;

    fn check_params(p: &Params) -> Result<(), String> {
        if !(p.alpha > 0.0 && p.alpha < 1.0) {
            return Err(format!("alpha must be in (0, 1), not {}", p.alpha));
        }
        if !(p.z_warning > 0.0 && p.z_warning <= p.z_critical && p.z_critical.is_finite()) {
            return Err("need 0 < z_warning <= z_critical".into());
        }
        if !(p.min_stddev_rate > 0.0 && p.min_stddev_ms > 0.0) {
            return Err("the stddev floors must be positive".into());
        }
        if p.metrics.is_empty() {
            return Err("set at least one metric".into());
        }
        Ok(())
    }

    fn evaluate(window: &Window, p: &Params, state: &mut State) -> Vec<Alert> {
        let mut alerts = Vec::new();
        for s in window.selected_services(&p.services) {
            for &metric in &p.metrics {
                let Some((value, basis)) = metric.measure(s) else {
                    continue;
                };
                if basis < p.min_count || !value.is_finite() {
                    continue;
                }
                let key = format!("{}/{}", s.service, metric.name());
                let baseline = state.baselines.entry(key.clone()).or_default();
                if let Some(a) = score(p, s, metric, baseline, value, key) {
                    alerts.push(a);
                }
                baseline.learn(p.alpha, value);
                baseline.last_ms = window.end_ms;
            }
        }
        let horizon = window.end_ms - i64::from(p.forget_after_minutes) * 60_000;
        state.baselines.retain(|_, b| b.last_ms > horizon);
        alerts
    }
}

fn score(
    p: &Params,
    s: &ServiceStats,
    metric: Metric,
    baseline: &Ewma,
    value: f64,
    key: String,
) -> Option<Alert> {
    if baseline.n < p.warmup_windows {
        return None;
    }
    let floor = if metric.quantile().is_some() {
        p.min_stddev_ms
    } else {
        p.min_stddev_rate
    };
    let stddev = baseline.var.max(0.0).sqrt().max(floor);
    let z = (value - baseline.mean) / stddev;
    let severity = if z >= p.z_critical {
        Severity::Critical
    } else if z >= p.z_warning {
        Severity::Warning
    } else {
        return None;
    };
    Some(
        Alert::new(
            key,
            severity,
            format!(
                "{}: {} {} is {z:.1} standard deviations above normal",
                s.service,
                metric.name(),
                metric.format(value)
            ),
        )
        .description(format!(
            "{} of {} was {} against a baseline of {} ± {} (z = {z:.2}; warning at {}, critical at {}).",
            metric.name(),
            s.service,
            metric.format(value),
            metric.format(baseline.mean),
            metric.format(stddev),
            p.z_warning,
            p.z_critical
        ))
        .label("service", s.service.clone())
        .label("metric", metric.name())
        .value(z),
    )
}

export_rule!(Anomaly);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use sluice_rule_sdk::Harness;
    use sluice_rule_sdk::testing::{service, window};

    fn harness() -> Harness<Anomaly> {
        Harness::from_manifest(include_str!("../rule.toml")).expect("rule.toml fits the rule")
    }

    /// A minute of `api` with `errors` errors in 1000 records and the given p99.
    fn minute(i: i64, errors: u64, p99: f64) -> Window {
        window(
            i * 60_000,
            1,
            vec![service("api", 1000, errors).with_latency([10.0, 20.0, 30.0, p99, p99 * 2.0])],
        )
    }

    /// Forty normal minutes: errors wobbling around 1%, p99 around 100 ms.
    fn warmed_up() -> Harness<Anomaly> {
        let mut h = harness();
        for i in 0..40 {
            let wobble = (i % 5) as u64;
            let alerts = h
                .evaluate(&minute(i, 8 + wobble, 95.0 + wobble as f64 * 2.0))
                .expect("evaluates");
            assert!(alerts.is_empty(), "minute {i}: {alerts:?}");
        }
        h
    }

    #[test]
    fn an_error_rate_jump_is_critical() {
        let mut h = warmed_up();
        let alerts = h.evaluate(&minute(40, 150, 100.0)).expect("evaluates");
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].key, "api/error_rate");
        assert_eq!(alerts[0].severity, Severity::Critical);
        assert!(alerts[0].value > 8.0);
    }

    #[test]
    fn a_p99_jump_alerts_on_latency() {
        let mut h = warmed_up();
        let alerts = h.evaluate(&minute(40, 10, 400.0)).expect("evaluates");
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].key, "api/latency_p99");
        assert_eq!(alerts[0].label_value("metric"), Some("latency_p99"));
    }

    #[test]
    fn a_drop_is_not_an_anomaly() {
        let mut h = warmed_up();
        assert!(
            h.evaluate(&minute(40, 0, 20.0))
                .expect("evaluates")
                .is_empty()
        );
    }

    #[test]
    fn nothing_alerts_during_warm_up() {
        let mut h = harness();
        for i in 0..5 {
            h.evaluate(&minute(i, 10, 100.0)).expect("evaluates");
        }
        assert!(
            h.evaluate(&minute(5, 900, 5000.0))
                .expect("evaluates")
                .is_empty()
        );
    }

    #[test]
    fn a_lasting_change_becomes_the_new_normal() {
        let mut h = warmed_up();
        let mut last = Vec::new();
        for i in 40..100 {
            last = h.evaluate(&minute(i, 50, 100.0)).expect("evaluates");
        }
        assert!(last.is_empty(), "{last:?}");
    }

    #[test]
    fn low_traffic_windows_are_neither_scored_nor_learnt() {
        let mut h = warmed_up();
        let before = h.state();
        let quiet = window(
            40 * 60_000,
            1,
            vec![service("api", 10, 10).with_latency([1.0, 1.0, 1.0, 9000.0, 9000.0])],
        );
        assert!(h.evaluate(&quiet).expect("evaluates").is_empty());
        assert_eq!(
            h.state().baselines["api/error_rate"].n,
            before.baselines["api/error_rate"].n
        );
    }

    #[test]
    fn ewma_tracks_mean_and_variance() {
        let mut e = Ewma::default();
        for i in 0..2000 {
            e.learn(0.05, if i % 2 == 0 { 1.0 } else { 3.0 });
        }
        assert!((e.mean - 2.0).abs() < 0.1, "{}", e.mean);
        assert!((e.var.sqrt() - 1.0).abs() < 0.1, "{}", e.var.sqrt());
    }
}
