//! `new-pattern`: watches the log patterns of the window.
//!
//! - A pattern at an error level that the tenant's logs never showed before (the host marks
//!   it `first_seen`) raises an alert.
//! - A pattern whose per-minute rate jumps to `spike_factor` times its usual rate raises an
//!   alert. The usual rate is an EWMA kept in state per pattern id, updated only in windows
//!   where the pattern is among the window's top patterns (absence from the top list does not
//!   mean zero). A pattern needs `warmup_windows` sightings before it can spike.

use serde::{Deserialize, Serialize};
use sluice_rule_sdk::{Alert, Level, LogPattern, Rule, Severity, Window, export_rule};
use std::collections::BTreeMap;

/// The rule.
#[derive(Debug)]
pub struct NewPattern;

fn default_new_levels() -> Vec<Level> {
    vec![Level::Error, Level::Fatal]
}

fn default_spike_levels() -> Vec<Level> {
    vec![Level::Warn, Level::Error, Level::Fatal]
}

/// The `[params]` of `rule.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub new_levels: Vec<Level>,
    pub new_severity: Severity,
    pub spike_levels: Vec<Level>,
    pub spike_factor: f64,
    pub spike_min_count: u64,
    pub spike_severity: Severity,
    pub alpha: f64,
    pub warmup_windows: u32,
    pub services: Vec<String>,
    pub max_patterns: usize,
    pub forget_after_minutes: u32,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            new_levels: default_new_levels(),
            new_severity: Severity::Warning,
            spike_levels: default_spike_levels(),
            spike_factor: 5.0,
            spike_min_count: 20,
            spike_severity: Severity::Warning,
            alpha: 0.2,
            warmup_windows: 5,
            services: Vec::new(),
            max_patterns: 1000,
            forget_after_minutes: 1440,
        }
    }
}

/// What the rule remembers about one pattern.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// EWMA of the per-minute rate.
    pub rate: f64,
    /// Windows the pattern was seen in.
    pub seen: u32,
    /// End of the last window it was seen in.
    pub last_ms: i64,
}

/// Baselines by pattern id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub patterns: BTreeMap<String, Baseline>,
}

impl Rule for NewPattern {
    type Params = Params;
    type State = State;

    fn check_params(p: &Params) -> Result<(), String> {
        if !(p.alpha > 0.0 && p.alpha <= 1.0) {
            return Err(format!("alpha must be in (0, 1], not {}", p.alpha));
        }
        if !(p.spike_factor > 1.0 && p.spike_factor.is_finite()) {
            return Err("spike_factor must be a number above 1".into());
        }
        if p.max_patterns == 0 {
            return Err("max_patterns must be at least 1".into());
        }
        Ok(())
    }

    fn evaluate(window: &Window, p: &Params, state: &mut State) -> Vec<Alert> {
        let minutes = window.minutes();
        let mut alerts = Vec::new();
        for pattern in window
            .patterns
            .iter()
            .filter(|x| p.services.is_empty() || p.services.contains(&x.service))
        {
            if pattern.first_seen && p.new_levels.contains(&pattern.level) {
                alerts.push(new_pattern_alert(p, pattern));
            }
            let rate = pattern.count as f64 / minutes;
            let baseline = state.patterns.entry(pattern.id.clone()).or_default();
            if let Some(a) = spike(p, pattern, baseline, rate, minutes) {
                alerts.push(a);
            }
            baseline.rate = if baseline.seen == 0 {
                rate
            } else {
                p.alpha * rate + (1.0 - p.alpha) * baseline.rate
            };
            baseline.seen = baseline.seen.saturating_add(1);
            baseline.last_ms = window.end_ms;
        }
        forget(p, state, window.end_ms);
        alerts
    }
}

fn new_pattern_alert(p: &Params, pattern: &LogPattern) -> Alert {
    Alert::new(
        format!("new/{}", pattern.id),
        p.new_severity,
        format!(
            "{}: new {} pattern: {}",
            pattern.service,
            pattern.level.as_str(),
            pattern.template
        ),
    )
    .description(format!(
        "First seen in this window, {} records. Example: {}",
        pattern.count, pattern.sample
    ))
    .label("service", pattern.service.clone())
    .label("pattern", pattern.id.clone())
    .label("level", pattern.level.as_str())
    .value(pattern.count as f64)
}

fn spike(
    p: &Params,
    pattern: &LogPattern,
    baseline: &Baseline,
    rate: f64,
    minutes: f64,
) -> Option<Alert> {
    if baseline.seen < p.warmup_windows
        || pattern.count < p.spike_min_count
        || !p.spike_levels.contains(&pattern.level)
    {
        return None;
    }
    // A baseline below one record per window would make any sighting a spike.
    let usual = baseline.rate.max(1.0 / minutes);
    let factor = rate / usual;
    if factor < p.spike_factor {
        return None;
    }
    Some(
        Alert::new(
            format!("spike/{}", pattern.id),
            p.spike_severity,
            format!(
                "{}: {} pattern {factor:.1}x its usual rate: {}",
                pattern.service,
                pattern.level.as_str(),
                pattern.template
            ),
        )
        .description(format!(
            "{:.1} records/min in this window against a usual {usual:.2}/min ({} records). Example: {}",
            rate, pattern.count, pattern.sample
        ))
        .label("service", pattern.service.clone())
        .label("pattern", pattern.id.clone())
        .label("level", pattern.level.as_str())
        .value(factor),
    )
}

/// Drops patterns not seen for `forget_after_minutes`, then the least recently seen ones
/// beyond `max_patterns`.
fn forget(p: &Params, state: &mut State, now: i64) {
    let horizon = now - i64::from(p.forget_after_minutes) * 60_000;
    state.patterns.retain(|_, b| b.last_ms > horizon);
    if state.patterns.len() > p.max_patterns {
        let mut by_age: Vec<(i64, String)> = state
            .patterns
            .iter()
            .map(|(id, b)| (b.last_ms, id.clone()))
            .collect();
        by_age.sort();
        let excess = state.patterns.len() - p.max_patterns;
        for (_, id) in by_age.into_iter().take(excess) {
            state.patterns.remove(&id);
        }
    }
}

export_rule!(NewPattern);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use sluice_rule_sdk::Harness;
    use sluice_rule_sdk::testing::{pattern, window};

    fn harness() -> Harness<NewPattern> {
        Harness::from_manifest(include_str!("../rule.toml")).expect("rule.toml fits the rule")
    }

    fn minute(i: i64, patterns: Vec<LogPattern>) -> Window {
        window(i * 60_000, 1, vec![]).with_patterns(patterns)
    }

    #[test]
    fn a_new_error_pattern_alerts_with_its_sample() {
        let mut h = harness();
        let alerts = h
            .evaluate(&minute(
                0,
                vec![
                    pattern("boom", "api", Level::Error, 3, true),
                    pattern("hello", "api", Level::Info, 300, true),
                ],
            ))
            .expect("evaluates");
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].key, "new/boom");
        assert!(alerts[0].description.contains("boom happened 42"));
        assert_eq!(alerts[0].label_value("level"), Some("error"));
    }

    #[test]
    fn a_pattern_seen_before_does_not_alert_as_new() {
        let mut h = harness();
        let alerts = h
            .evaluate(&minute(
                0,
                vec![pattern("boom", "api", Level::Error, 3, false)],
            ))
            .expect("evaluates");
        assert!(alerts.is_empty());
    }

    #[test]
    fn a_rate_jump_after_warm_up_alerts_as_a_spike() {
        let mut h = harness();
        for i in 0..10 {
            let alerts = h
                .evaluate(&minute(
                    i,
                    vec![pattern("slow", "db", Level::Warn, 10, false)],
                ))
                .expect("evaluates");
            assert!(alerts.is_empty());
        }
        let alerts = h
            .evaluate(&minute(
                10,
                vec![pattern("slow", "db", Level::Warn, 80, false)],
            ))
            .expect("evaluates");
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].key, "spike/slow");
        assert!((alerts[0].value - 8.0).abs() < 1e-9, "{}", alerts[0].value);
    }

    #[test]
    fn no_spike_during_warm_up() {
        let mut h = harness();
        h.evaluate(&minute(
            0,
            vec![pattern("slow", "db", Level::Warn, 10, false)],
        ))
        .expect("evaluates");
        let alerts = h
            .evaluate(&minute(
                1,
                vec![pattern("slow", "db", Level::Warn, 500, false)],
            ))
            .expect("evaluates");
        assert!(alerts.is_empty());
    }

    #[test]
    fn small_counts_never_spike() {
        let mut h = Harness::<NewPattern>::with_params_json(r#"{"warmup_windows":1}"#)
            .expect("valid params");
        h.evaluate(&minute(
            0,
            vec![pattern("rare", "db", Level::Error, 1, false)],
        ))
        .expect("evaluates");
        let alerts = h
            .evaluate(&minute(
                1,
                vec![pattern("rare", "db", Level::Error, 15, false)],
            ))
            .expect("evaluates");
        assert!(alerts.is_empty(), "15 < spike_min_count");
    }

    #[test]
    fn state_is_bounded_by_max_patterns_keeping_the_most_recent() {
        let mut h =
            Harness::<NewPattern>::with_params_json(r#"{"max_patterns":3}"#).expect("valid params");
        for i in 0..5 {
            let id = format!("p{i}");
            h.evaluate(&minute(i, vec![pattern(&id, "api", Level::Info, 1, false)]))
                .expect("evaluates");
        }
        let kept: Vec<_> = h.state().patterns.keys().cloned().collect();
        assert_eq!(kept, ["p2", "p3", "p4"]);
    }

    #[test]
    fn services_filter_applies_to_patterns() {
        let mut h = Harness::<NewPattern>::with_params_json(r#"{"services":["web"]}"#)
            .expect("valid params");
        let alerts = h
            .evaluate(&minute(
                0,
                vec![pattern("boom", "api", Level::Error, 3, true)],
            ))
            .expect("evaluates");
        assert!(alerts.is_empty());
    }
}
