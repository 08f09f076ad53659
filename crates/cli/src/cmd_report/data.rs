//! What a report shows, gathered from stored windows and alert transitions: each service's
//! points over time, the alerts as spans from firing to resolved, the patterns in the range,
//! and the notifications. Built from a data location by [`super::load`] or from a backtest's
//! replayed windows.

use std::collections::BTreeMap;

use serde::Serialize;
use sluice_core::alerting::lifecycle::{Transition, TransitionKind};
use sluice_core::window::patterns_out::StoredPattern;
use sluice_core::window::summary::WindowSummary;

/// One window of one service, as the charts draw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Events in the window.
    pub events: u64,
    /// Events at level error or fatal.
    pub errors: u64,
    pub http_5xx: u64,
    /// The evaluator's error rate (0 to 1).
    pub error_rate: f64,
    pub latency_p50: f64,
    pub latency_p99: f64,
}

/// An alert from the window it fired in to the one it resolved in (`None`: still firing at
/// the end of the range).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertSpan {
    pub rule: String,
    pub key: String,
    pub title: String,
    pub severity: String,
    /// The service its `service` label names, if any: its band is drawn on that chart.
    pub service: Option<String>,
    pub fired_ms: i64,
    pub resolved_ms: Option<i64>,
    /// The largest value it was notified with.
    pub peak_value: f64,
    /// Notifications it caused (firing, repeats, resolved).
    pub notifications: usize,
}

/// A log pattern over the whole range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatternTotal {
    pub service: String,
    pub level: String,
    pub template: String,
    pub sample: String,
    pub count: u64,
    pub windows: u64,
    /// The window it was first seen in, when that is inside the range.
    pub new_at_ms: Option<i64>,
}

/// Everything one report shows.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    pub tenant: String,
    /// Where the data came from (a directory, a bucket, or a backtest).
    pub source: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub services: BTreeMap<String, Vec<Point>>,
    pub alerts: Vec<AlertSpan>,
    pub patterns: Vec<PatternTotal>,
    /// Notifications sent for the alerts (each signed with the tenant's webhook secret).
    pub notifications: usize,
    /// Notifications still kept under `alerts/undelivered/` for a redrive.
    pub undelivered: usize,
}

impl ReportData {
    /// A report of `windows` (any order), the `transitions` they caused (with the start of
    /// the window each happened in) and the `patterns` stored for them.
    pub fn build(
        tenant: &str,
        source: String,
        windows: &[WindowSummary],
        transitions: &[(i64, Transition)],
        patterns: &[StoredPattern],
    ) -> ReportData {
        let mut services: BTreeMap<String, Vec<Point>> = BTreeMap::new();
        for w in windows {
            for s in &w.services {
                services.entry(s.name.clone()).or_default().push(Point {
                    start_ms: w.start_ms,
                    end_ms: w.end_ms,
                    events: s.count,
                    errors: s.levels.error + s.levels.fatal,
                    http_5xx: s.http_5xx,
                    error_rate: s.error_rate,
                    latency_p50: s.latency_p50,
                    latency_p99: s.latency_p99,
                });
            }
        }
        for points in services.values_mut() {
            points.sort_by_key(|p| p.start_ms);
            points.dedup_by_key(|p| p.start_ms);
        }
        let from_ms = windows.iter().map(|w| w.start_ms).min().unwrap_or(0);
        let to_ms = windows.iter().map(|w| w.end_ms).max().unwrap_or(from_ms);
        ReportData {
            tenant: tenant.to_owned(),
            source,
            from_ms,
            to_ms,
            services,
            alerts: spans(transitions),
            patterns: pattern_totals(patterns),
            notifications: transitions.len(),
            undelivered: 0,
        }
    }

    /// The spans of alerts that concern `service`, or that name no service.
    pub fn alerts_on<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a AlertSpan> + 'a {
        self.alerts
            .iter()
            .filter(move |a| a.service.as_deref().is_none_or(|s| s == service))
    }
}

/// Pairs each alert's firing with its resolution, in time order.
fn spans(transitions: &[(i64, Transition)]) -> Vec<AlertSpan> {
    let mut sorted: Vec<&(i64, Transition)> = transitions.iter().collect();
    sorted.sort_by_key(|(start, t)| (*start, t.kind == TransitionKind::Resolved));
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    let mut out: Vec<AlertSpan> = Vec::new();
    for (_, t) in sorted {
        let a = &t.alert;
        match t.kind {
            TransitionKind::Firing => {
                open.insert(a.fingerprint.clone(), out.len());
                out.push(AlertSpan {
                    rule: a.rule.clone(),
                    key: a.key.clone(),
                    title: a.title.clone(),
                    severity: format!("{:?}", a.severity).to_lowercase(),
                    service: a.labels.get("service").cloned(),
                    fired_ms: a.last_notified_ms.unwrap_or(a.starts_at_ms),
                    resolved_ms: None,
                    peak_value: a.value,
                    notifications: 1,
                });
            }
            TransitionKind::Repeat | TransitionKind::Resolved => {
                let Some(&i) = open.get(&a.fingerprint) else {
                    continue; // Fired before the range: nothing to pair it with.
                };
                let span = &mut out[i];
                span.notifications += 1;
                if t.kind == TransitionKind::Resolved {
                    span.resolved_ms = a.ends_at_ms;
                    open.remove(&a.fingerprint);
                } else {
                    span.peak_value = span.peak_value.max(a.value);
                    span.severity = format!("{:?}", a.severity).to_lowercase();
                }
            }
        }
    }
    out
}

/// Each pattern's totals over the range, most frequent first.
fn pattern_totals(patterns: &[StoredPattern]) -> Vec<PatternTotal> {
    let mut by_id: BTreeMap<(&str, &str), PatternTotal> = BTreeMap::new();
    let mut sorted: Vec<&StoredPattern> = patterns.iter().collect();
    sorted.sort_by_key(|p| p.window_start_ms);
    for p in sorted {
        let s = &p.pattern;
        let total = by_id
            .entry((s.service.as_str(), s.id.as_str()))
            .or_insert_with(|| PatternTotal {
                service: s.service.clone(),
                level: s.level.as_str().to_owned(),
                template: s.template.clone(),
                sample: s.sample.clone(),
                count: 0,
                windows: 0,
                new_at_ms: None,
            });
        total.count += s.count;
        total.windows += 1;
        if s.first_seen && total.new_at_ms.is_none() {
            total.new_at_ms = Some(p.window_start_ms);
        }
    }
    let mut out: Vec<PatternTotal> = by_id.into_values().collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.template.cmp(&b.template)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::alerting::model::{AlertRecord, AlertStatus, Severity};

    fn transition(kind: TransitionKind, fp: &str, at: i64, value: f64) -> (i64, Transition) {
        let mut labels = BTreeMap::new();
        labels.insert("service".to_owned(), "checkout".to_owned());
        (
            at - 60_000,
            Transition {
                kind,
                alert: AlertRecord {
                    fingerprint: fp.into(),
                    tenant: "acme".into(),
                    rule: "threshold".into(),
                    key: "checkout/error_rate".into(),
                    severity: Severity::Critical,
                    title: "error rate".into(),
                    description: String::new(),
                    labels,
                    value,
                    status: AlertStatus::Firing,
                    windows_seen: 1,
                    starts_at_ms: at,
                    ends_at_ms: (kind == TransitionKind::Resolved).then_some(at),
                    last_notified_ms: Some(at),
                },
            },
        )
    }

    #[test]
    fn pairs_each_firing_with_its_resolution_and_keeps_the_peak() {
        let transitions = vec![
            transition(TransitionKind::Resolved, "a", 900_000, 0.01),
            transition(TransitionKind::Firing, "a", 300_000, 0.3),
            transition(TransitionKind::Repeat, "a", 600_000, 0.4),
            transition(TransitionKind::Firing, "b", 800_000, 0.2),
            // Resolved without a firing in range: nothing to draw.
            transition(TransitionKind::Resolved, "c", 100_000, 0.0),
        ];
        let data = ReportData::build("acme", "test".into(), &[], &transitions, &[]);
        assert_eq!(data.alerts.len(), 2);
        let a = &data.alerts[0];
        assert_eq!((a.fired_ms, a.resolved_ms), (300_000, Some(900_000)));
        assert_eq!(a.peak_value, 0.4);
        assert_eq!(a.notifications, 3);
        assert_eq!(a.service.as_deref(), Some("checkout"));
        assert_eq!(data.alerts[1].resolved_ms, None, "b is still firing");
        assert_eq!(data.alerts_on("checkout").count(), 2);
        assert_eq!(data.alerts_on("search").count(), 0);
    }
}
