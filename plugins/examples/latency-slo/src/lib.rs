//! `latency-slo`: multi-window, multi-burn-rate alerting on a latency SLO (SRE workbook,
//! chapter 5).
//!
//! A request is bad when it is slower than `threshold_ms` (and, optionally, when it got a
//! 5xx). The window gives latency quantiles, not per-request latencies, so the number of slow
//! requests is estimated by interpolating between the quantiles. The burn rate over a span
//! is the bad fraction over that span divided by the error budget (`1 - objective`): 1.0
//! spends the budget exactly over the SLO period, 14.4 spends 2% of a 30-day budget in an
//! hour.
//!
//! The rule keeps, per SLO, request and bad counts in two rings: 5-minute buckets over the
//! last 6 hours and 1-hour buckets over the longest window (up to 7 days), so spans are
//! measured in whole buckets. That keeps the state small (a few KiB per service).

use serde::{Deserialize, Serialize};
use sluice_rule_sdk::{Alert, Rule, ServiceStats, Severity, Window, export_rule};
use std::collections::BTreeMap;

/// The rule.
#[derive(Debug)]
pub struct LatencySlo;

const MINUTE_MS: i64 = 60_000;
const FINE_BUCKET_MS: i64 = 5 * MINUTE_MS;
const FINE_SPAN_MINUTES: u32 = 6 * 60;
const COARSE_BUCKET_MS: i64 = 60 * MINUTE_MS;
const MAX_LONG_MINUTES: u32 = 7 * 24 * 60;

/// One SLO per service, or one for the selected services together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Each,
    All,
}

/// A burn-rate alert tier.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub severity: Severity,
    pub burn_rate: f64,
    pub long_minutes: u32,
    pub short_minutes: u32,
}

fn default_tiers() -> Vec<Tier> {
    let tier = |severity, burn_rate, long_minutes, short_minutes| Tier {
        severity,
        burn_rate,
        long_minutes,
        short_minutes,
    };
    vec![
        tier(Severity::Critical, 14.4, 60, 5),
        tier(Severity::Critical, 6.0, 360, 30),
        tier(Severity::Warning, 1.0, 4320, 360),
    ]
}

fn default_true() -> bool {
    true
}

/// The `[params]` of `rule.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub objective: f64,
    pub threshold_ms: f64,
    #[serde(default = "default_true")]
    pub count_5xx_as_bad: bool,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub min_events: u64,
    #[serde(default = "default_tiers")]
    pub tiers: Vec<Tier>,
}

/// Request and bad counts in consecutive buckets of a fixed width; the last bucket is the
/// newest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ring {
    /// Index (start / width) of the first bucket.
    pub first: i64,
    pub total: Vec<u64>,
    pub bad: Vec<u64>,
}

impl Ring {
    /// Adds counts to the bucket holding `at_ms`, keeping at most `slots` buckets.
    fn add(&mut self, width_ms: i64, slots: usize, at_ms: i64, total: u64, bad: u64) {
        let index = at_ms.div_euclid(width_ms);
        if self.total.is_empty() {
            self.first = index;
        }
        let last = self.first + self.total.len() as i64 - 1;
        if index < self.first {
            return; // Older than what the ring holds: a late window; ignore it.
        }
        if index > last {
            // Fill the gap with empty buckets (capped: a long gap just resets the ring).
            let gap = usize::try_from(index - last).unwrap_or(usize::MAX);
            if gap >= slots || self.total.is_empty() {
                self.first = index;
                self.total = vec![0];
                self.bad = vec![0];
            } else {
                self.total.extend(std::iter::repeat_n(0, gap));
                self.bad.extend(std::iter::repeat_n(0, gap));
            }
        }
        let i = usize::try_from(index - self.first).unwrap_or(0);
        self.total[i] = self.total[i].saturating_add(total);
        self.bad[i] = self.bad[i].saturating_add(bad);
        if self.total.len() > slots {
            let drop = self.total.len() - slots;
            self.total.drain(..drop);
            self.bad.drain(..drop);
            self.first += drop as i64;
        }
    }

    /// Totals over the buckets that start within `span_ms` before `end_ms` (at least the
    /// newest bucket).
    fn sum(&self, width_ms: i64, end_ms: i64, span_ms: i64) -> (u64, u64) {
        let from = (end_ms - span_ms).div_euclid(width_ms);
        let newest = self.first + self.total.len() as i64 - 1;
        let from = from.min(newest);
        self.total
            .iter()
            .zip(&self.bad)
            .enumerate()
            .filter(|(i, _)| self.first + *i as i64 >= from)
            .fold((0, 0), |(t, b), (_, (ti, bi))| {
                (t.saturating_add(*ti), b.saturating_add(*bi))
            })
    }
}

/// One SLO's history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub fine: Ring,
    pub coarse: Ring,
    pub last_ms: i64,
}

/// Per SLO (service name, or `*`), its history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub series: BTreeMap<String, Series>,
}

impl Params {
    fn budget(&self) -> f64 {
        1.0 - self.objective
    }

    fn longest_minutes(&self) -> u32 {
        self.tiers
            .iter()
            .map(|t| t.long_minutes)
            .max()
            .unwrap_or(60)
    }

    /// Requests and bad requests of one service in the window.
    fn events(&self, s: &ServiceStats) -> (u64, u64) {
        let (latency_total, slow) = s.latency.map_or((0, 0.0), |l| {
            (
                l.count,
                l.fraction_above(self.threshold_ms) * l.count as f64,
            )
        });
        let (total, errors) = if self.count_5xx_as_bad {
            (latency_total.max(s.requests), s.status5xx)
        } else {
            (latency_total, 0)
        };
        let bad = (slow.round() as u64).saturating_add(errors).min(total);
        (total, bad)
    }
}

impl Rule for LatencySlo {
    type Params = Params;
    type State = State;

    fn check_params(p: &Params) -> Result<(), String> {
        if !(p.objective > 0.0 && p.objective < 1.0) {
            return Err(format!(
                "objective must be between 0 and 1, not {}",
                p.objective
            ));
        }
        if !(p.threshold_ms > 0.0 && p.threshold_ms.is_finite()) {
            return Err("threshold_ms must be a positive number".into());
        }
        if p.tiers.is_empty() {
            return Err("set at least one tier".into());
        }
        for t in &p.tiers {
            if t.short_minutes == 0 || t.short_minutes >= t.long_minutes {
                return Err(format!(
                    "a tier's short window ({} min) must be shorter than its long window ({} min) and not zero",
                    t.short_minutes, t.long_minutes
                ));
            }
            if t.long_minutes > MAX_LONG_MINUTES {
                return Err(format!(
                    "long windows are limited to {MAX_LONG_MINUTES} minutes"
                ));
            }
            if !(t.burn_rate > 0.0 && t.burn_rate.is_finite()) {
                return Err("burn_rate must be a positive number".into());
            }
        }
        Ok(())
    }

    fn evaluate(window: &Window, p: &Params, state: &mut State) -> Vec<Alert> {
        let now = window.end_ms;
        let mut observed: Vec<(String, u64, u64)> = match p.scope {
            Scope::Each => window
                .selected_services(&p.services)
                .map(|s| {
                    let (t, b) = p.events(s);
                    (s.service.clone(), t, b)
                })
                .collect(),
            Scope::All => {
                let (t, b) = window
                    .selected_services(&p.services)
                    .map(|s| p.events(s))
                    .fold((0u64, 0u64), |(t, b), (ti, bi)| {
                        (t.saturating_add(ti), b.saturating_add(bi))
                    });
                vec![("*".to_string(), t, b)]
            }
        };
        let fine_slots = (FINE_SPAN_MINUTES as i64 * MINUTE_MS / FINE_BUCKET_MS) as usize;
        let coarse_slots = (u64::from(p.longest_minutes()) * MINUTE_MS as u64)
            .div_ceil(COARSE_BUCKET_MS as u64) as usize
            + 1;
        // Record this window (a window's counts go to the bucket holding its last instant).
        for (name, total, bad) in observed.drain(..) {
            let series = state.series.entry(name).or_default();
            series
                .fine
                .add(FINE_BUCKET_MS, fine_slots, now - 1, total, bad);
            series
                .coarse
                .add(COARSE_BUCKET_MS, coarse_slots, now - 1, total, bad);
            series.last_ms = now;
        }
        // Forget SLOs that have seen nothing for longer than the longest window.
        let horizon = now - i64::from(p.longest_minutes()) * MINUTE_MS;
        state.series.retain(|_, s| s.last_ms > horizon);

        state
            .series
            .iter()
            .filter_map(|(name, series)| judge(p, name, series, now))
            .collect()
    }
}

/// The burn rate over `minutes` before `now`, and the requests it rests on.
fn burn(p: &Params, series: &Series, now: i64, minutes: u32) -> (f64, u64) {
    let span = i64::from(minutes) * MINUTE_MS;
    let (total, bad) = if minutes <= FINE_SPAN_MINUTES {
        series.fine.sum(FINE_BUCKET_MS, now, span)
    } else {
        series.coarse.sum(COARSE_BUCKET_MS, now, span)
    };
    if total == 0 {
        return (0.0, 0);
    }
    (bad as f64 / total as f64 / p.budget(), total)
}

fn judge(p: &Params, name: &str, series: &Series, now: i64) -> Option<Alert> {
    let mut best: Option<(&Tier, f64, f64)> = None;
    for tier in &p.tiers {
        let (long, events) = burn(p, series, now, tier.long_minutes);
        let (short, _) = burn(p, series, now, tier.short_minutes);
        if events < p.min_events || long < tier.burn_rate || short < tier.burn_rate {
            continue;
        }
        if best.is_none_or(|(b, _, _)| tier.severity > b.severity) {
            best = Some((tier, long, short));
        }
    }
    let (tier, long, short) = best?;
    let who = if name == "*" { "all services" } else { name };
    let budget_hours = |m: u32| f64::from(m) / 60.0;
    Some(
        Alert::new(
            format!("{name}/slo-burn"),
            tier.severity,
            format!(
                "{who}: latency SLO burning {long:.1}x its error budget over {}h",
                budget_hours(tier.long_minutes)
            ),
        )
        .description(format!(
            "Objective: {:.3}% of requests within {} ms{}. Burn rate {long:.2} over the last {} min and {short:.2} over the last {} min, both at or above {}.",
            p.objective * 100.0,
            p.threshold_ms,
            if p.count_5xx_as_bad { " and without a 5xx" } else { "" },
            tier.long_minutes,
            tier.short_minutes,
            tier.burn_rate
        ))
        .label("service", name)
        .label("long_window", format!("{}m", tier.long_minutes))
        .label("short_window", format!("{}m", tier.short_minutes))
        .value(long),
    )
}

export_rule!(LatencySlo);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use sluice_rule_sdk::Harness;
    use sluice_rule_sdk::testing::{service, window};

    const T0: i64 = 1_700_000_000_000 / 3_600_000 * 3_600_000; // on the hour

    /// A 1-minute window where `slow_fraction` of 1000 requests exceed 500 ms.
    fn minute(i: i64, p99: f64) -> Window {
        let s = service("api", 1000, 0).with_http(1000, 0, 0).with_latency([
            50.0,
            100.0,
            200.0,
            p99,
            p99 * 2.0,
        ]);
        window(T0 + i * MINUTE_MS, 1, vec![s])
    }

    fn harness() -> Harness<LatencySlo> {
        Harness::from_manifest(include_str!("../rule.toml")).expect("rule.toml fits the rule")
    }

    #[test]
    fn healthy_traffic_never_alerts() {
        let mut h = harness();
        for i in 0..120 {
            assert!(h.evaluate(&minute(i, 300.0)).expect("evaluates").is_empty());
        }
    }

    #[test]
    fn a_fast_burn_pages_once_both_windows_burn() {
        let mut h = harness();
        // More than six healthy hours, so the 6h tier has a full window of history.
        for i in 0..400 {
            h.evaluate(&minute(i, 300.0)).expect("healthy hours");
        }
        // Now every request is slow (p50 above the threshold): bad fraction 0.5 or more, a
        // burn rate of at least 50 against a 1% budget.
        let mut fired_at = None;
        for i in 400..420 {
            let w = window(
                T0 + i * MINUTE_MS,
                1,
                vec![
                    service("api", 1000, 0)
                        .with_http(1000, 0, 0)
                        .with_latency([900.0, 1000.0, 1100.0, 1500.0, 3000.0]),
                ],
            );
            let alerts = h.evaluate(&w).expect("evaluates");
            assert!(alerts.len() <= 1, "one alert per SLO: {alerts:?}");
            if let Some(a) = alerts.iter().find(|a| a.severity == Severity::Critical) {
                assert_eq!(a.key, "api/slo-burn");
                assert_eq!(a.label_value("long_window"), Some("60m"));
                fired_at.get_or_insert(i);
            }
        }
        // A bad fraction of 0.5 against a 1% budget is a 50x burn: the hour's burn rate
        // reaches 14.4 after about 0.144 * 60 / 0.5 = 17 bad minutes (the slower ticket tier
        // may fire earlier, as a warning).
        let at = fired_at.expect("the fast burn paged");
        assert!(
            (15..=19).contains(&(at - 400)),
            "paged after {} bad minutes",
            at - 400
        );
    }

    #[test]
    fn five_xx_count_as_bad_when_asked() {
        let mut h = Harness::<LatencySlo>::with_params_json(
            r#"{"objective":0.99,"threshold_ms":500,"tiers":[{"severity":"critical","burn_rate":10,"long_minutes":10,"short_minutes":5}]}"#,
        )
        .expect("valid params");
        let mut last = Vec::new();
        for i in 0..10 {
            let s = service("api", 1000, 0)
                .with_http(1000, 0, 200)
                .with_latency([10.0, 20.0, 30.0, 40.0, 50.0]);
            last = h
                .evaluate(&window(T0 + i * MINUTE_MS, 1, vec![s]))
                .expect("evaluates");
        }
        assert_eq!(last.len(), 1, "20% 5xx is a 20x burn");
        assert!((last[0].value - 20.0).abs() < 1e-9, "{}", last[0].value);
    }

    #[test]
    fn state_stays_small_over_a_week_of_windows() {
        let mut h = harness();
        for i in 0..(7 * 24 * 12) {
            // One window every 5 minutes for a week, for 20 services.
            let services = (0..20)
                .map(|n| {
                    service(&format!("svc-{n}"), 1000, 0)
                        .with_http(1000, 0, 1)
                        .with_latency([50.0, 100.0, 200.0, 300.0, 600.0])
                })
                .collect();
            h.evaluate(&window(T0 + i * 5 * MINUTE_MS, 5, services))
                .expect("evaluates");
        }
        assert!(h.state_len() < 200_000, "state is {} bytes", h.state_len());
        let state = h.state();
        let series = &state.series["svc-0"];
        assert_eq!(series.fine.total.len(), 72);
        assert!(series.coarse.total.len() <= 73);
    }

    #[test]
    fn services_that_stop_logging_are_forgotten() {
        let mut h = Harness::<LatencySlo>::with_params_json(
            r#"{"objective":0.99,"threshold_ms":500,"tiers":[{"severity":"critical","burn_rate":10,"long_minutes":60,"short_minutes":5}]}"#,
        )
        .expect("valid params");
        h.evaluate(&minute(0, 100.0)).expect("evaluates");
        h.evaluate(&window(T0 + 120 * MINUTE_MS, 1, vec![]))
            .expect("evaluates");
        assert!(h.state().series.is_empty());
    }

    #[test]
    fn ring_sums_whole_buckets_within_the_span() {
        let mut r = Ring::default();
        for m in 0..30 {
            r.add(FINE_BUCKET_MS, 72, T0 + m * MINUTE_MS, 10, 1);
        }
        assert_eq!(r.total.len(), 6);
        // The last 10 minutes: the two newest 5-minute buckets.
        assert_eq!(
            r.sum(FINE_BUCKET_MS, T0 + 30 * MINUTE_MS, 10 * MINUTE_MS),
            (100, 10)
        );
    }

    #[test]
    fn tiers_with_a_short_window_not_shorter_than_the_long_are_invalid() {
        let err = Harness::<LatencySlo>::with_params_json(
            r#"{"objective":0.99,"threshold_ms":500,"tiers":[{"severity":"critical","burn_rate":1,"long_minutes":5,"short_minutes":5}]}"#,
        )
        .expect_err("short == long");
        assert!(err.to_string().contains("shorter"), "{err}");
    }
}
