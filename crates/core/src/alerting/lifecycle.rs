//! The alert lifecycle, kept by the host for every rule: pending for `for` windows, then firing,
//! notified again every repeat interval and whenever its severity changes (up or down: the
//! on-call must not be left believing an alert is still critical), resolved when the rule stops
//! producing it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{AlertRecord, AlertStatus, RuleAlert, fingerprint};

/// Lifecycle settings of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleConfig {
    /// Windows an alert must be produced in a row before it fires (1 fires at once).
    pub for_windows: u32,
    /// A firing alert is notified again after this long.
    pub repeat_interval_ms: i64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            for_windows: 1,
            repeat_interval_ms: 4 * 3_600_000,
        }
    }
}

/// A change worth notifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionKind {
    /// Started firing.
    Firing,
    /// Still firing: the repeat interval elapsed, or the severity changed.
    Repeat,
    Resolved,
}

/// One notified change, with the alert as it is after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub kind: TransitionKind,
    pub alert: AlertRecord,
}

/// Applies one rule's output for the window ending at `window_end_ms` to the tenant's alerts.
/// Alerts of other rules are untouched. Returns the transitions to notify.
pub fn apply(
    alerts: &mut BTreeMap<String, AlertRecord>,
    tenant: &str,
    rule: &str,
    config: LifecycleConfig,
    produced: &[RuleAlert],
    window_end_ms: i64,
) -> Vec<Transition> {
    let mut transitions = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for alert in produced {
        let fp = fingerprint(rule, &alert.key, &alert.labels);
        if !seen.insert(fp.clone()) {
            continue; // A rule returning the same alert twice counts once.
        }
        let record = alerts.entry(fp.clone()).or_insert_with(|| AlertRecord {
            fingerprint: fp,
            tenant: tenant.to_owned(),
            rule: rule.to_owned(),
            key: alert.key.clone(),
            severity: alert.severity,
            title: alert.title.clone(),
            description: alert.description.clone(),
            labels: alert.labels.clone(),
            value: alert.value,
            status: AlertStatus::Pending,
            windows_seen: 0,
            starts_at_ms: window_end_ms,
            ends_at_ms: None,
            last_notified_ms: None,
        });
        record.windows_seen += 1;
        record.value = alert.value;
        record.title.clone_from(&alert.title);
        record.description.clone_from(&alert.description);
        let severity_changed = alert.severity != record.severity;
        record.severity = alert.severity;
        match record.status {
            AlertStatus::Pending | AlertStatus::Resolved
                if record.windows_seen >= config.for_windows.max(1) =>
            {
                record.status = AlertStatus::Firing;
                record.ends_at_ms = None;
                record.last_notified_ms = Some(window_end_ms);
                transitions.push(Transition {
                    kind: TransitionKind::Firing,
                    alert: record.clone(),
                });
            }
            AlertStatus::Firing
                if severity_changed
                    || record
                        .last_notified_ms
                        .is_none_or(|t| window_end_ms - t >= config.repeat_interval_ms) =>
            {
                record.last_notified_ms = Some(window_end_ms);
                transitions.push(Transition {
                    kind: TransitionKind::Repeat,
                    alert: record.clone(),
                });
            }
            _ => {}
        }
    }
    let gone: Vec<String> = alerts
        .iter()
        .filter(|(fp, a)| a.rule == rule && !seen.contains(*fp))
        .map(|(fp, _)| fp.clone())
        .collect();
    for fp in gone {
        let Some(mut record) = alerts.remove(&fp) else {
            continue;
        };
        if record.status == AlertStatus::Firing {
            record.status = AlertStatus::Resolved;
            record.ends_at_ms = Some(window_end_ms);
            transitions.push(Transition {
                kind: TransitionKind::Resolved,
                alert: record,
            });
        }
    }
    transitions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::model::Severity;

    fn alert(key: &str, severity: Severity) -> RuleAlert {
        RuleAlert {
            key: key.into(),
            severity,
            title: format!("{key} is bad"),
            description: String::new(),
            labels: BTreeMap::from([("service".to_owned(), "checkout".to_owned())]),
            value: 0.4,
        }
    }

    const MIN: i64 = 60_000;

    #[test]
    fn pending_for_n_windows_then_firing_then_resolved() {
        let config = LifecycleConfig {
            for_windows: 2,
            repeat_interval_ms: 3_600_000,
        };
        let mut alerts = BTreeMap::new();
        let a = [alert("checkout/error-rate", Severity::Critical)];
        assert!(
            apply(&mut alerts, "acme", "threshold", config, &a, MIN).is_empty(),
            "pending first"
        );
        assert_eq!(
            alerts.values().next().map(|r| r.status),
            Some(AlertStatus::Pending)
        );
        let t = apply(&mut alerts, "acme", "threshold", config, &a, 2 * MIN);
        assert_eq!(
            t.iter().map(|t| t.kind).collect::<Vec<_>>(),
            vec![TransitionKind::Firing]
        );
        assert_eq!(t[0].alert.starts_at_ms, MIN);
        assert!(
            apply(&mut alerts, "acme", "threshold", config, &a, 3 * MIN).is_empty(),
            "no repeat yet"
        );
        let t = apply(&mut alerts, "acme", "threshold", config, &[], 4 * MIN);
        assert_eq!(
            t.iter().map(|t| t.kind).collect::<Vec<_>>(),
            vec![TransitionKind::Resolved]
        );
        assert_eq!(t[0].alert.ends_at_ms, Some(4 * MIN));
        assert!(alerts.is_empty());
    }

    #[test]
    fn pending_alert_that_disappears_is_dropped_silently() {
        let config = LifecycleConfig {
            for_windows: 3,
            repeat_interval_ms: MIN,
        };
        let mut alerts = BTreeMap::new();
        apply(
            &mut alerts,
            "acme",
            "r",
            config,
            &[alert("k", Severity::Warning)],
            MIN,
        );
        assert!(apply(&mut alerts, "acme", "r", config, &[], 2 * MIN).is_empty());
        assert!(alerts.is_empty());
    }

    #[test]
    fn repeats_after_the_interval_and_whenever_the_severity_changes() {
        let config = LifecycleConfig {
            for_windows: 1,
            repeat_interval_ms: 5 * MIN,
        };
        let mut alerts = BTreeMap::new();
        let kinds = |t: Vec<Transition>| t.into_iter().map(|t| t.kind).collect::<Vec<_>>();
        assert_eq!(
            kinds(apply(
                &mut alerts,
                "acme",
                "r",
                config,
                &[alert("k", Severity::Warning)],
                MIN
            )),
            vec![TransitionKind::Firing]
        );
        assert!(
            apply(
                &mut alerts,
                "acme",
                "r",
                config,
                &[alert("k", Severity::Warning)],
                2 * MIN
            )
            .is_empty()
        );
        assert_eq!(
            kinds(apply(
                &mut alerts,
                "acme",
                "r",
                config,
                &[alert("k", Severity::Critical)],
                3 * MIN
            )),
            vec![TransitionKind::Repeat]
        );
        assert!(
            apply(
                &mut alerts,
                "acme",
                "r",
                config,
                &[alert("k", Severity::Critical)],
                7 * MIN
            )
            .is_empty()
        );
        assert_eq!(
            kinds(apply(
                &mut alerts,
                "acme",
                "r",
                config,
                &[alert("k", Severity::Critical)],
                8 * MIN
            )),
            vec![TransitionKind::Repeat]
        );
        // Back down to warning: notified at once, with the new severity.
        let down = apply(
            &mut alerts,
            "acme",
            "r",
            config,
            &[alert("k", Severity::Warning)],
            9 * MIN,
        );
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].kind, TransitionKind::Repeat);
        assert_eq!(down[0].alert.severity, Severity::Warning);
    }

    #[test]
    fn rules_do_not_resolve_each_others_alerts() {
        let config = LifecycleConfig::default();
        let mut alerts = BTreeMap::new();
        apply(
            &mut alerts,
            "acme",
            "a",
            config,
            &[alert("k", Severity::Warning)],
            MIN,
        );
        assert!(apply(&mut alerts, "acme", "b", config, &[], 2 * MIN).is_empty());
        assert_eq!(alerts.len(), 1);
    }
}
