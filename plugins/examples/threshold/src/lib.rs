//! `threshold`: the classic alert. A metric (error rate, error count, 4xx/5xx count or rate,
//! or a latency quantile) above (or below) a warning and/or a critical threshold, per service
//! or for the selected services added together, ignoring services with too little traffic.
//!
//! Stateless: each window is judged on its own (the host's `for` setting adds persistence).

use serde::Deserialize;
use sluice_rule_sdk::{Alert, Quantile, Rule, ServiceStats, Severity, Window, export_rule, fmt};

/// The rule.
#[derive(Debug)]
pub struct Threshold;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Metric {
    /// Error-level records / records (0.0 to 1.0).
    #[serde(rename = "error_rate")]
    ErrorRate,
    /// Error-level records.
    #[serde(rename = "errors")]
    Errors,
    /// Responses with a 5xx status.
    #[serde(rename = "5xx")]
    Status5xx,
    /// 5xx responses / requests (0.0 to 1.0).
    #[serde(rename = "5xx_rate")]
    Rate5xx,
    /// Responses with a 4xx status.
    #[serde(rename = "4xx")]
    Status4xx,
    /// 4xx responses / requests (0.0 to 1.0).
    #[serde(rename = "4xx_rate")]
    Rate4xx,
    /// A latency quantile, in milliseconds.
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
            Metric::Errors => "errors",
            Metric::Status5xx => "5xx",
            Metric::Rate5xx => "5xx_rate",
            Metric::Status4xx => "4xx",
            Metric::Rate4xx => "4xx_rate",
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
            _ => None,
        }
    }

    /// The metric's value and the number of records it rests on; `None` when the service has
    /// no data for it (no latencies).
    fn measure(self, s: &ServiceStats) -> Option<(f64, u64)> {
        if let Some(q) = self.quantile() {
            return s.latency.map(|l| (l.get(q), l.count));
        }
        Some(match self {
            Metric::ErrorRate => (s.error_rate, s.count),
            Metric::Errors => (s.errors() as f64, s.count),
            Metric::Status5xx => (s.status5xx as f64, s.requests),
            Metric::Rate5xx => (s.rate_5xx(), s.requests),
            Metric::Status4xx => (s.status4xx as f64, s.requests),
            Metric::Rate4xx => (s.rate_4xx(), s.requests),
            _ => return None,
        })
    }

    /// The value for humans.
    fn format(self, v: f64) -> String {
        match self {
            Metric::ErrorRate | Metric::Rate5xx | Metric::Rate4xx => fmt::percent(v),
            Metric::Errors | Metric::Status5xx | Metric::Status4xx => fmt::fixed(v, 0),
            _ => fmt::millis(v),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error rate",
            Metric::Errors => "error count",
            Metric::Status5xx => "5xx responses",
            Metric::Rate5xx => "5xx rate",
            Metric::Status4xx => "4xx responses",
            Metric::Rate4xx => "4xx rate",
            Metric::LatencyP50 => "latency p50",
            Metric::LatencyP90 => "latency p90",
            Metric::LatencyP95 => "latency p95",
            Metric::LatencyP99 => "latency p99",
            Metric::LatencyMax => "latency max",
        }
    }
}

/// Which side of a threshold is bad.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Above,
    Below,
}

/// One alert per service, or one for the selected services added together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Each,
    All,
}

/// The `[params]` of `rule.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub metric: Metric,
    #[serde(default)]
    pub warning: Option<f64>,
    #[serde(default)]
    pub critical: Option<f64>,
    #[serde(default)]
    pub direction: Direction,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default)]
    pub min_count: u64,
}

impl Params {
    fn breaches(&self, value: f64, threshold: f64) -> bool {
        match self.direction {
            Direction::Above => value > threshold,
            Direction::Below => value < threshold,
        }
    }

    /// The severity `value` deserves, and the threshold it crossed.
    fn judge(&self, value: f64) -> Option<(Severity, f64)> {
        if let Some(c) = self.critical.filter(|&c| self.breaches(value, c)) {
            return Some((Severity::Critical, c));
        }
        self.warning
            .filter(|&w| self.breaches(value, w))
            .map(|w| (Severity::Warning, w))
    }
}

impl Rule for Threshold {
    type Params = Params;
    type State = ();

    fn check_params(p: &Params) -> Result<(), String> {
        let (w, c) = match (p.warning, p.critical) {
            (None, None) => return Err("set `warning`, `critical` or both".into()),
            (Some(w), Some(c)) => (w, c),
            _ => return Ok(()),
        };
        if !w.is_finite() || !c.is_finite() {
            return Err("thresholds must be finite numbers".into());
        }
        let ordered = match p.direction {
            Direction::Above => w <= c,
            Direction::Below => w >= c,
        };
        if !ordered {
            return Err(format!(
                "with direction = \"{}\", warning ({w}) must come before critical ({c})",
                if p.direction == Direction::Above {
                    "above"
                } else {
                    "below"
                }
            ));
        }
        Ok(())
    }

    fn evaluate(window: &Window, p: &Params, _: &mut ()) -> Vec<Alert> {
        let selected = window.selected_services(&p.services);
        match p.scope {
            Scope::Each => selected.filter_map(|s| judge_service(p, s)).collect(),
            Scope::All => judge_service(p, &Window::total(selected))
                .into_iter()
                .collect(),
        }
    }
}

fn judge_service(p: &Params, s: &ServiceStats) -> Option<Alert> {
    let (value, basis) = p.metric.measure(s)?;
    if basis < p.min_count || !value.is_finite() {
        return None;
    }
    let (severity, threshold) = p.judge(value)?;
    let side = match p.direction {
        Direction::Above => "above",
        Direction::Below => "below",
    };
    let who = if s.service == "*" {
        "all services"
    } else {
        &s.service
    };
    let m = p.metric;
    Some(
        Alert::new(
            format!("{}/{}", s.service, m.name()),
            severity,
            format!(
                "{who}: {} {} {side} {}",
                m.describe(),
                m.format(value),
                m.format(threshold)
            ),
        )
        .description(format!(
            "{} of {who} was {} over {basis} records in the window, {side} the {} threshold of {}.",
            m.describe(),
            m.format(value),
            severity.as_str(),
            m.format(threshold),
        ))
        .label("service", s.service.clone())
        .label("metric", m.name())
        .value(value),
    )
}

export_rule!(Threshold);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use sluice_rule_sdk::Harness;
    use sluice_rule_sdk::testing::{service, window};

    fn harness(params: &str) -> Harness<Threshold> {
        Harness::with_params_json(params).expect("valid params")
    }

    #[test]
    fn shipped_manifest_is_valid_and_quiet_on_a_healthy_window() {
        let mut h = Harness::<Threshold>::from_manifest(include_str!("../rule.toml"))
            .expect("rule.toml fits the rule");
        let alerts = h
            .evaluate(&window(0, 1, vec![service("api", 1000, 10)]))
            .expect("evaluates");
        assert!(alerts.is_empty(), "{alerts:?}");
    }

    #[test]
    fn error_rate_over_critical_is_critical_and_between_is_warning() {
        let mut h = harness(r#"{"metric":"error_rate","warning":0.05,"critical":0.1}"#);
        let w = window(
            0,
            1,
            vec![
                service("api", 1000, 200),
                service("web", 1000, 70),
                service("db", 1000, 10),
            ],
        );
        let alerts = h.evaluate(&w).expect("evaluates");
        assert_eq!(alerts.len(), 2);
        let api = alerts
            .iter()
            .find(|a| a.key == "api/error_rate")
            .expect("api");
        assert_eq!(api.severity, Severity::Critical);
        assert!((api.value - 0.2).abs() < 1e-12);
        assert_eq!(api.label_value("service"), Some("api"));
        let web = alerts
            .iter()
            .find(|a| a.key == "web/error_rate")
            .expect("web");
        assert_eq!(web.severity, Severity::Warning);
    }

    #[test]
    fn services_under_min_count_are_ignored() {
        let mut h = harness(r#"{"metric":"error_rate","critical":0.1,"min_count":100}"#);
        let alerts = h
            .evaluate(&window(0, 1, vec![service("api", 50, 50)]))
            .expect("evaluates");
        assert!(alerts.is_empty());
    }

    #[test]
    fn five_xx_count_uses_requests_as_its_basis() {
        let mut h = harness(r#"{"metric":"5xx","warning":10,"min_count":100}"#);
        let w = window(
            0,
            1,
            vec![
                service("api", 1000, 0).with_http(500, 0, 11),
                service("tiny", 1000, 0).with_http(50, 0, 40),
            ],
        );
        let alerts = h.evaluate(&w).expect("evaluates");
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].key, "api/5xx");
        assert_eq!(alerts[0].value, 11.0);
    }

    #[test]
    fn latency_quantile_thresholds_apply_to_the_chosen_quantile() {
        let mut h = harness(r#"{"metric":"latency_p99","warning":250,"critical":1000}"#);
        let w = window(
            0,
            1,
            vec![
                service("api", 100, 0).with_latency([10.0, 20.0, 30.0, 300.0, 5000.0]),
                service("no-latency", 100, 0),
            ],
        );
        let alerts = h.evaluate(&w).expect("evaluates");
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].severity, Severity::Warning);
        assert_eq!(alerts[0].value, 300.0);
        assert!(alerts[0].title.contains("300.0 ms"), "{}", alerts[0].title);
    }

    #[test]
    fn scope_all_adds_the_selected_services_together() {
        let mut h =
            harness(r#"{"metric":"error_rate","critical":0.1,"scope":"all","services":["a","b"]}"#);
        // a: 5%, b: 25%, c (not selected): 100%. a+b = 150/1000 = 15%.
        let w = window(
            0,
            1,
            vec![
                service("a", 500, 25),
                service("b", 500, 125),
                service("c", 500, 500),
            ],
        );
        let alerts = h.evaluate(&w).expect("evaluates");
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].key, "*/error_rate");
        assert!((alerts[0].value - 0.15).abs() < 1e-12);
    }

    #[test]
    fn direction_below_alerts_on_low_values() {
        let mut h = harness(r#"{"metric":"errors","direction":"below","warning":5,"critical":1}"#);
        let alerts = h
            .evaluate(&window(0, 1, vec![service("api", 100, 0)]))
            .expect("evaluates");
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].severity, Severity::Critical);
    }

    #[test]
    fn thresholds_in_the_wrong_order_are_invalid_params() {
        let err = Harness::<Threshold>::with_params_json(
            r#"{"metric":"error_rate","warning":0.5,"critical":0.1}"#,
        )
        .expect_err("warning above critical");
        assert!(err.to_string().contains("warning"), "{err}");
    }

    #[test]
    fn unknown_metric_is_invalid_params() {
        let err = Harness::<Threshold>::with_params_json(r#"{"metric":"p99","warning":1}"#)
            .expect_err("not a metric");
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}
