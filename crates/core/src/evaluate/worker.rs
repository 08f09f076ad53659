//! The evaluation worker: one [`WorkItem`] (one tenant bucket of one window) at a time
//! (docs/ARCHITECTURE.md §12). It merges the bucket's partials across shards, reads the bucket's
//! state (one object holding every tenant's [`TenantState`] of the bucket), adds the quiet
//! tenants that still have an open alert, and evaluates each tenant on its own: limits, metrics,
//! rules, lifecycle, audit trail, and its notifications written ahead under
//! `alerts/undelivered/`. Then it commits the bucket's state with one conditional write and only
//! then queues the notifications for [`super::delivery`]. So the state costs one GET and one PUT
//! per bucket and window, whatever the number of tenants.
//!
//! A tenant whose evaluation fails (a store error, a broken rule's host) is reported as failed
//! and keeps its previous state; the other tenants of the item go on. The item is then retried
//! (by SQS, or by the in-process driver): the tenants already done skip the window, since their
//! state says it is evaluated. A commit that loses a race with another attempt of the bucket
//! withdraws what it wrote ahead and fails the item, which is then retried on the new state.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt as _;
use serde::Serialize;

use super::delivery::DeliveryItem;
use super::planner::WorkItem;
use super::queue::WorkQueue;
use super::{
    BucketState, EvaluateConfig, EvaluateError, RuleRunner, STATE_PREFIX, TenantReport,
    TenantState, Undelivered, bucket_state_key, json_bytes, read_json,
};
use crate::aggregate::{bucket_prefix, decode_partials};
use crate::alerting::lifecycle::{Transition, apply};
use crate::alerting::tenant_config::TenantConfig;
use crate::alerting::webhook::{idempotency_key, payload};
use crate::error::CoreError;
use crate::partition;
use crate::store::{BlobStore, Precondition, StoreError};
use crate::tenancy::limits::{OTHER_SERVICE, TenantLimits};
use crate::tenant_bucket::TenantBuckets;
use crate::window::summary::WindowSummary;
use crate::window::{TenantWindow, metrics_out, patterns_out};

/// What one attempt at a work item did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ItemOutcome {
    pub item: Option<WorkItem>,
    /// One report per tenant of the bucket, failed ones included (with their error).
    pub tenants: Vec<TenantReport>,
    /// Partial objects read.
    pub partials_read: usize,
}

impl ItemOutcome {
    /// The tenants whose evaluation failed.
    pub fn failed(&self) -> impl Iterator<Item = &TenantReport> {
        self.tenants.iter().filter(|t| t.error.is_some())
    }
}

/// One tenant's evaluation within an item.
struct TenantOutcome {
    report: TenantReport,
    /// The state to commit; `None` when the tenant failed or had evaluated the window before.
    state: Option<TenantState>,
    /// Its notifications, written ahead, to queue once the state is committed.
    pending: Vec<DeliveryItem>,
    /// The rule state object the committed state no longer names, to delete after the commit.
    superseded: Option<String>,
}

/// Evaluates work items.
#[derive(Debug)]
pub struct Worker<'a> {
    pub data: &'a dyn BlobStore,
    pub rules_store: &'a dyn BlobStore,
    pub runner: &'a dyn RuleRunner,
    pub config: &'a EvaluateConfig,
}

impl Worker<'_> {
    /// Evaluates one tenant bucket of one window and queues its notifications on `deliveries`.
    /// Fails only when the bucket's partials cannot be read (then no tenant was evaluated);
    /// a tenant's own failure is in its report.
    pub async fn evaluate_item(
        &self,
        item: WorkItem,
        deliveries: &dyn WorkQueue<DeliveryItem>,
    ) -> Result<ItemOutcome, EvaluateError> {
        let w = &self.config.window;
        let start_ms = item.window_start_ms;
        let (mut merged, partials_read) = self.merged_partials(item).await?;
        let key = bucket_state_key(item.bucket);
        let (mut states, version) = match self.data.get_versioned(&key).await? {
            Some((body, tag)) => (read_json::<BucketState>(&key, &body)?, Some(tag)),
            None => (self.states_before_buckets(item.bucket).await?, None),
        };
        // A tenant that has gone quiet still has its open alerts evaluated, on an empty window:
        // an alert whose service stopped logging then resolves (and a rule that watches for
        // silence can fire) instead of staying as it was for ever.
        for (tenant, state) in &states.tenants {
            if state.has_open_alerts() && !merged.contains_key(tenant) {
                let window = TenantWindow::new(tenant, start_ms, start_ms + w.window_ms);
                merged.insert(tenant.clone(), window);
            }
        }
        let mut each: Vec<super::in_process::Boxed<'_, TenantOutcome>> = Vec::new();
        for window in merged.values() {
            let prior = states.tenants.get(&window.tenant).cloned();
            each.push(Box::pin(self.tenant_or_failure(window, prior)));
        }
        let outcomes: Vec<TenantOutcome> = futures::stream::iter(each)
            .buffer_unordered(self.config.tenant_concurrency.max(1))
            .collect()
            .await;
        let mut tenants = Vec::with_capacity(outcomes.len());
        let mut pending = Vec::new();
        let mut changed = false;
        let mut superseded = Vec::new();
        for outcome in outcomes {
            superseded.extend(outcome.superseded);
            if let Some(state) = outcome.state {
                states.tenants.insert(outcome.report.tenant.clone(), state);
                changed = true;
            }
            pending.extend(outcome.pending);
            tenants.push(outcome.report);
        }
        tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        if changed || version.is_none() {
            let condition = match version {
                Some(tag) => Precondition::Matches(tag),
                None => Precondition::Absent,
            };
            if let Err(e) = self
                .data
                .put_if(&key, json_bytes(&states)?, "application/json", condition)
                .await
            {
                // Nothing of this attempt may go out: withdraw what was written ahead.
                for p in &pending {
                    self.data.delete(&p.key).await?;
                }
                if matches!(e, StoreError::PreconditionFailed { .. }) {
                    tracing::info!(
                        ?item,
                        "another attempt committed this bucket first; retrying on its state"
                    );
                }
                return Err(e.into());
            }
        }
        for key in superseded {
            if let Err(e) = self.data.delete(&key).await {
                tracing::warn!(%key, error = %e, "could not delete a superseded rule state object");
            }
        }
        // Committed: queue each tenant's notifications (they stay under alerts/undelivered/
        // for a redrive if queueing fails).
        let mut by_tenant: BTreeMap<String, Vec<DeliveryItem>> = BTreeMap::new();
        for p in pending {
            by_tenant.entry(p.tenant.clone()).or_default().push(p);
        }
        for (tenant, items) in by_tenant {
            if let Err(e) = deliveries.send_all(items).await {
                tracing::error!(%tenant, error = %e, "could not queue the tenant's notifications; they stay under alerts/undelivered/");
            }
        }
        Ok(ItemOutcome {
            item: Some(item),
            tenants,
            partials_read,
        })
    }

    /// The states of the bucket's tenants from before state was kept per bucket (one object
    /// per tenant under `alerts/state/tenant=`): read once, the first time the bucket is
    /// evaluated, so an upgrade keeps every open alert.
    async fn states_before_buckets(&self, bucket: u32) -> Result<BucketState, EvaluateError> {
        let buckets: TenantBuckets = self.config.window.tenant_buckets;
        let mut states = BucketState::default();
        for key in self.data.list(STATE_PREFIX).await? {
            let Some(tenant) = key
                .strip_prefix(STATE_PREFIX)
                .and_then(|k| k.strip_suffix(".json"))
            else {
                continue;
            };
            if buckets.of(tenant) != bucket {
                continue;
            }
            if let Some(body) = self.data.get(&key).await? {
                states
                    .tenants
                    .insert(tenant.to_owned(), read_json::<TenantState>(&key, &body)?);
            }
        }
        Ok(states)
    }

    /// One tenant's evaluation; a failure is in the report, with no new state.
    async fn tenant_or_failure(
        &self,
        window: &TenantWindow,
        prior: Option<TenantState>,
    ) -> TenantOutcome {
        match self
            .evaluate_tenant(window, prior.unwrap_or_default())
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(tenant = %window.tenant, window_start = window.start_ms, error = %e, "tenant evaluation failed; the item will be retried for it");
                TenantOutcome {
                    report: TenantReport {
                        error: Some(e.to_string()),
                        ..TenantReport::new(
                            &window.tenant,
                            WindowSummary::from_window(window, |_| false),
                        )
                    },
                    state: None,
                    pending: Vec::new(),
                    superseded: None,
                }
            }
        }
    }

    /// The bucket's partials of the window, merged per tenant across shards and batches.
    async fn merged_partials(
        &self,
        item: WorkItem,
    ) -> Result<(BTreeMap<String, TenantWindow>, usize), EvaluateError> {
        let w = &self.config.window;
        let mut merged: BTreeMap<String, TenantWindow> = BTreeMap::new();
        let keys = self
            .data
            .list(&bucket_prefix(item.window_start_ms, item.bucket))
            .await?;
        let mut read = 0;
        for key in &keys {
            let Some(body) = self.data.get(key).await? else {
                continue;
            };
            read += 1;
            let partials = decode_partials(&body).map_err(|e| EvaluateError::Corrupt {
                key: key.clone(),
                detail: e.to_string(),
            })?;
            for p in partials {
                match merged.get_mut(&p.tenant) {
                    Some(m) => m.merge(&p, w.max_patterns),
                    None => {
                        merged.insert(p.tenant.clone(), p);
                    }
                }
            }
        }
        Ok((merged, read))
    }

    /// Evaluates one tenant's window from its state before it: the report, the new state to
    /// commit (none when the window was evaluated before), and the deliveries written ahead.
    async fn evaluate_tenant(
        &self,
        window: &TenantWindow,
        mut state: TenantState,
    ) -> Result<TenantOutcome, EvaluateError> {
        let tenant = window.tenant.as_str();
        let spilled = state.rule_state_object.clone();
        if let Some(key) = &spilled {
            let body = self
                .data
                .get(key)
                .await?
                .ok_or_else(|| EvaluateError::Corrupt {
                    key: key.clone(),
                    detail: "the tenant's rule state object is missing".into(),
                })?;
            state.rule_state = read_json(key, &body)?;
        }
        let limits = match TenantLimits::load(self.rules_store, tenant).await {
            Ok(limits) => limits,
            Err(e) => {
                tracing::warn!(tenant, error = %e, "tenant limits unreadable; using the defaults");
                TenantLimits::default()
            }
        };
        // A flood of distinct services or patterns is folded at the tenant's caps (§10).
        let capped;
        let (window, folded_services, folded_patterns) = match cap_window(window, &limits) {
            Some((w, services, patterns)) => {
                capped = w;
                tracing::info!(
                    tenant,
                    services,
                    patterns,
                    "window over the tenant's caps; folded"
                );
                (&capped, services, patterns)
            }
            None => (window, 0, 0),
        };
        let summary = WindowSummary::from_window(window, |id| state.known_patterns.contains(id));
        let mut report = TenantReport {
            folded_services,
            folded_patterns,
            ..TenantReport::new(tenant, summary)
        };
        if state
            .last_window_start
            .is_some_and(|last| last >= window.start_ms)
        {
            // The attempt that evaluated this window wrote its metrics before it committed
            // the state, so a retry writes nothing at all.
            report.already_evaluated = true;
            return Ok(TenantOutcome {
                report,
                state: None,
                pending: Vec::new(),
                superseded: None,
            });
        }
        let metrics = metrics_out::encode(&[&report.summary])?;
        self.data
            .put(
                &metrics_out::metrics_key(tenant, window.start_ms),
                Bytes::from(metrics),
                "application/vnd.apache.parquet",
            )
            .await?;
        if !report.summary.patterns.is_empty() {
            let patterns = patterns_out::encode(&report.summary)?;
            self.data
                .put(
                    &patterns_out::patterns_key(tenant, window.start_ms),
                    Bytes::from(patterns),
                    "application/vnd.apache.parquet",
                )
                .await?;
        }
        let config = self.tenant_config(tenant, &mut report).await?;
        let mut rules = match self.runner.rules(tenant).await {
            Ok(rules) => rules,
            Err(e) => {
                report.rule_errors.push(("*".into(), e));
                Vec::new()
            }
        };
        if rules.len() > limits.rules() {
            rules.sort_by(|a, b| a.name.cmp(&b.name));
            report.rule_errors.push((
                "*".into(),
                format!(
                    "{} rules, over the tenant's limit of {}; only the first {} by name run",
                    rules.len(),
                    limits.max_rules,
                    limits.max_rules
                ),
            ));
            rules.truncate(limits.rules());
        }
        let mut alerts_left = limits.max_alerts_per_window as usize;
        let mut transitions = Vec::new();
        for rule in &rules {
            let overrides = config.rule(&rule.name);
            if overrides.disabled {
                continue;
            }
            let mut params = rule.params.clone();
            params.extend(overrides.params.clone());
            let prior = state
                .rule_state
                .get(&rule.name)
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
            report.rules_run += 1;
            match self
                .runner
                .run(tenant, rule, &report.summary, &params, prior.as_deref())
                .await
            {
                Ok(output) if output.alerts.len() > alerts_left => {
                    report.fuel_used += output.fuel_used;
                    let e = format!(
                        "raised {} alerts with {} left of the tenant's limit of {} per window; its alerts keep their state",
                        output.alerts.len(),
                        alerts_left,
                        limits.max_alerts_per_window
                    );
                    tracing::warn!(tenant, rule = %rule.name, error = %e, "rule over the alert limit");
                    report.rule_errors.push((rule.name.clone(), e));
                }
                Ok(output) => {
                    report.fuel_used += output.fuel_used;
                    alerts_left -= output.alerts.len();
                    match &output.state {
                        Some(s) => {
                            if let Err(e) =
                                keep_state(&mut state.rule_state, &rule.name, s, &limits)
                            {
                                tracing::warn!(tenant, rule = %rule.name, error = %e, "rule state over the tenant's limit");
                                report.rule_errors.push((rule.name.clone(), e));
                            }
                        }
                        None => {
                            state.rule_state.remove(&rule.name);
                        }
                    }
                    transitions.extend(apply(
                        &mut state.alerts,
                        tenant,
                        &rule.name,
                        overrides.lifecycle(rule.lifecycle),
                        &output.alerts,
                        window.end_ms,
                    ));
                }
                Err(e) => {
                    tracing::warn!(tenant, rule = %rule.name, error = %e, "rule failed; its alerts keep their state");
                    report.rule_errors.push((rule.name.clone(), e));
                }
            }
        }
        state.known_patterns.remember(window);
        state.last_window_start = Some(window.start_ms);

        for t in &transitions {
            let audit = format!(
                "alerts/tenant={tenant}/{}/{:013}-{}-{:?}.json",
                partition::dt_hour(partition::hour_of(window.start_ms)),
                window.start_ms,
                t.alert.fingerprint,
                t.kind
            )
            .to_lowercase();
            let body = serde_json::to_vec(t)
                .map_err(std::io::Error::from)
                .map_err(CoreError::from)?;
            self.data
                .put(&audit, Bytes::from(body), "application/json")
                .await?;
        }
        let now = window.end_ms;
        let (muted, to_send): (Vec<Transition>, Vec<Transition>) = transitions
            .iter()
            .cloned()
            .partition(|t| config.silenced(&t.alert.labels, now));
        report.silenced = muted.len();
        report.transitions = transitions;

        // Write ahead what is about to be delivered, then commit the state, then deliver.
        let mut pending = Vec::new();
        if !to_send.is_empty() {
            let body = serde_json::to_vec(&payload(tenant, &to_send))
                .map_err(std::io::Error::from)
                .map_err(CoreError::from)?;
            let idem = idempotency_key(tenant, window.start_ms, &to_send);
            for (i, hook) in config.webhooks.iter().enumerate() {
                let record = Undelivered {
                    tenant: tenant.to_owned(),
                    window_start_ms: window.start_ms,
                    url: hook.url.clone(),
                    idempotency_key: idem.clone(),
                    payload: serde_json::from_slice(&body).unwrap_or_default(),
                    error: None,
                    attempts: 0,
                    refused: None,
                };
                let key = format!(
                    "alerts/undelivered/tenant={tenant}/{:013}-{idem}-{i}.json",
                    window.start_ms
                );
                self.data
                    .put(&key, json_bytes(&record)?, "application/json")
                    .await?;
                pending.push(DeliveryItem {
                    tenant: tenant.to_owned(),
                    key,
                });
            }
        }
        // Large rule state goes to an object of its own, named for the window so that an
        // attempt that loses the commit never overwrites the one the committed state names.
        let inline: usize = state.rule_state.values().map(String::len).sum();
        state.rule_state_object = None;
        if inline > super::INLINE_RULE_STATE_BYTES {
            let key = format!(
                "alerts/state/rules/tenant={tenant}/{:013}.json",
                window.start_ms
            );
            self.data
                .put(&key, json_bytes(&state.rule_state)?, "application/json")
                .await?;
            state.rule_state.clear();
            state.rule_state_object = Some(key);
        }
        let superseded = spilled.filter(|old| state.rule_state_object.as_ref() != Some(old));
        Ok(TenantOutcome {
            report,
            state: Some(state),
            pending,
            superseded,
        })
    }

    async fn tenant_config(
        &self,
        tenant: &str,
        report: &mut TenantReport,
    ) -> Result<TenantConfig, EvaluateError> {
        let key = format!("tenants/{tenant}.toml");
        let Some(body) = self.rules_store.get(&key).await? else {
            return Ok(TenantConfig::default());
        };
        let text = String::from_utf8_lossy(&body);
        match TenantConfig::parse(tenant, &text) {
            Ok(c) => Ok(c),
            Err(e) => {
                tracing::warn!(tenant, error = %e, "tenant configuration refused; using defaults");
                report
                    .rule_errors
                    .push(("tenants.toml".into(), e.to_string()));
                Ok(TenantConfig::default())
            }
        }
    }
}

/// The window with its services and patterns folded at the tenant's caps, and how many of
/// each were folded; `None` when it is within them.
fn cap_window(
    window: &TenantWindow,
    limits: &TenantLimits,
) -> Option<(TenantWindow, usize, usize)> {
    let (max_services, max_patterns) = (
        limits.max_services_per_window as usize,
        limits.max_patterns_per_window as usize,
    );
    if window.services.len() <= max_services && window.patterns.len() <= max_patterns {
        return None;
    }
    let mut capped = window.clone();
    let services = capped.fold_services(max_services, OTHER_SERVICE);
    let patterns = capped.cap_patterns(max_patterns);
    Some((capped, services, patterns))
}

/// Stores a rule's new state unless all the tenant's rule state would then be over its limit
/// (the rule's previous state is kept).
fn keep_state(
    rule_state: &mut BTreeMap<String, String>,
    rule: &str,
    new: &[u8],
    limits: &TenantLimits,
) -> Result<(), String> {
    let others: u64 = rule_state
        .iter()
        .filter(|(name, _)| name.as_str() != rule)
        .map(|(_, s)| super::decoded_len(s) as u64)
        .sum();
    let total = others + new.len() as u64;
    if total > limits.max_state_bytes {
        return Err(format!(
            "its state of {} bytes would bring the tenant's rule state to {total} bytes, over the limit of {}; its previous state is kept",
            new.len(),
            limits.max_state_bytes
        ));
    }
    rule_state.insert(
        rule.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(new),
    );
    Ok(())
}
