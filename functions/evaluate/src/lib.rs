//! # sluice-evaluate
//!
//! The evaluate Lambda function, as a library. One binary, three roles
//! (docs/ARCHITECTURE.md §12), chosen by `SLUICE_EVALUATE_ROLE`:
//! - `planner` (on its schedule): queues one work item per (ready window, tenant bucket);
//! - `worker` and `delivery` (on their SQS queues): [`sqs_roles`];
//! - `all` (no queues): each scheduled run evaluates the windows that have closed in-process
//!   ([`sluice_core::evaluate::Evaluator`]) with the tenants' accepted rules
//!   ([`sluice_rules::tenant_rules::StoreRuleRunner`]) and reports metrics for the run.

pub mod sqs_roles;

use sluice_aws::emf::{self, Metric, Unit};
use sluice_core::evaluate::EvaluationRun;

/// Counts of one run, for logs and CloudWatch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunCounts {
    pub windows: u64,
    pub tenants: u64,
    pub rules_run: u64,
    pub rule_failures: u64,
    pub transitions: u64,
    pub delivered: u64,
    pub undelivered: u64,
    /// Deliveries refused before anything was sent (a webhook pointing inside, §10).
    pub refused_deliveries: u64,
    /// Services folded into `other` at the tenants' caps.
    pub folded_services: u64,
    /// Shards the next closed window waits for (their aggregation is behind).
    pub shards_waited_for: u64,
    /// Shards left out of an evaluated window because they were still behind after the
    /// longest wait.
    pub shards_left_behind: u64,
    /// Precompiled artifacts whose SHA-256 was not the registry's: never loaded
    /// (docs/ARCHITECTURE.md §10). Anything but zero means someone wrote `compiled/`.
    pub artifact_digest_mismatches: u64,
    /// Rules compiled from their accepted component instead of loaded from an artifact.
    pub rules_recompiled: u64,
    /// Tenants whose evaluation failed after every attempt (their state is not advanced; no
    /// other tenant was affected, docs/ARCHITECTURE.md §12).
    pub tenant_failures: u64,
}

/// Adds up a run's reports.
pub fn counts(run: &EvaluationRun) -> RunCounts {
    let mut c = RunCounts {
        windows: run.windows.len() as u64,
        shards_waited_for: run.waiting.as_ref().map_or(0, |w| w.shards.len() as u64),
        shards_left_behind: run
            .windows
            .iter()
            .map(|w| w.lagging_shards.len() as u64)
            .sum(),
        ..RunCounts::default()
    };
    for t in run.windows.iter().flat_map(|w| &w.tenants) {
        c.tenants += 1;
        c.rules_run += t.rules_run as u64;
        c.rule_failures += t.rule_errors.len() as u64;
        c.transitions += t.transitions.len() as u64;
        c.delivered += t.delivered.len() as u64;
        c.undelivered += t.undelivered.len() as u64;
        c.refused_deliveries += t.refused.len() as u64;
        c.folded_services += t.folded_services as u64;
        c.tenant_failures += u64::from(t.error.is_some());
    }
    c
}

/// The run's EMF line (`RuleFailures` feeds the template's rule-failure alarm).
pub fn metrics_line(function: &str, c: &RunCounts, now_ms: i64) -> String {
    emf::render(
        function,
        &[
            Metric::int("WindowsEvaluated", Unit::Count, c.windows),
            Metric::int("RulesRun", Unit::Count, c.rules_run),
            Metric::int("RuleFailures", Unit::Count, c.rule_failures),
            Metric::int("AlertTransitions", Unit::Count, c.transitions),
            Metric::int("NotificationsDelivered", Unit::Count, c.delivered),
            Metric::int("NotificationsUndelivered", Unit::Count, c.undelivered),
            Metric::int("NotificationsRefused", Unit::Count, c.refused_deliveries),
            Metric::int("ServicesFolded", Unit::Count, c.folded_services),
            Metric::int("ShardsWaitedFor", Unit::Count, c.shards_waited_for),
            Metric::int("ShardsLeftBehind", Unit::Count, c.shards_left_behind),
            Metric::int(
                "ArtifactDigestMismatches",
                Unit::Count,
                c.artifact_digest_mismatches,
            ),
            Metric::int("RulesRecompiled", Unit::Count, c.rules_recompiled),
            Metric::int("TenantFailures", Unit::Count, c.tenant_failures),
        ],
        now_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_line_is_emf_with_the_rule_failure_metric() {
        let c = RunCounts {
            windows: 2,
            rule_failures: 3,
            artifact_digest_mismatches: 1,
            ..RunCounts::default()
        };
        let line: serde_json::Value =
            serde_json::from_str(&metrics_line("sluice-evaluate", &c, 1_700_000_000_000))
                .expect("JSON");
        assert_eq!(line["RuleFailures"], 3);
        assert_eq!(line["ArtifactDigestMismatches"], 1);
        assert_eq!(line["WindowsEvaluated"], 2);
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "sluice");
    }
}
