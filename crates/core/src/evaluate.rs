//! The evaluate use case, run on a schedule: find the windows that have closed (end plus allowed
//! lateness, and every busy shard's aggregation past that: [`crate::window::progress`]), merge
//! their per-shard partials per tenant, write the window summary as Parquet, run
//! the tenant's rules, apply the alert lifecycle, write the audit trail and deliver one signed
//! notification per tenant. Tenants without partials but with an open alert (found by their
//! [`open_markers`]) are evaluated on an empty window, so their alerts can resolve.
//!
//! Running it twice for the same window sends nothing twice: each tenant's state records the last
//! window evaluated and is written with a conditional write before anything is delivered.
//! Deliveries are written ahead under `alerts/undelivered/` and removed once delivered, so what
//! still fails stays there for `sluice alerts redrive`.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::aggregate::{decode_partials, window_prefix};
use crate::alerting::delivery::{Delivery, DeliveryResult, HttpPoster, RetryPolicy, deliver};
use crate::alerting::lifecycle::{LifecycleConfig, Transition, apply};
use crate::alerting::model::{AlertRecord, AlertStatus, RuleOutput};
use crate::alerting::open_markers;
use crate::alerting::tenant_config::TenantConfig;
use crate::alerting::webhook::{idempotency_key, payload};
use crate::error::CoreError;
use crate::partition;
use crate::store::{BlobStore, Precondition, StoreError};
use crate::tenancy::limits::{OTHER_SERVICE, TenantLimits};
use crate::window::progress::{self, ShardProgress};
use crate::window::summary::{KnownPatterns, WindowSummary};
use crate::window::{TenantWindow, WindowConfig};
use crate::window::{metrics_out, patterns_out};

/// A rule a tenant has, as the rule store knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRule {
    pub name: String,
    /// Parameters from the rule's manifest.
    pub params: toml::Table,
    /// Lifecycle from the manifest (the tenant's configuration may override it).
    pub lifecycle: LifecycleConfig,
}

/// The port to the rules sandbox.
#[async_trait]
pub trait RuleRunner: Send + Sync + std::fmt::Debug {
    /// The tenant's accepted rules.
    async fn rules(&self, tenant: &str) -> Result<Vec<TenantRule>, String>;
    /// Evaluates one rule on one window. Errors are the rule's failure in words.
    async fn run(
        &self,
        tenant: &str,
        rule: &TenantRule,
        window: &WindowSummary,
        params: &toml::Table,
        state: Option<&[u8]>,
    ) -> Result<RuleOutput, String>;
}

/// Evaluator settings.
#[derive(Debug, Clone)]
pub struct EvaluateConfig {
    pub window: WindowConfig,
    /// Windows evaluated per run at most (a backlog drains over several runs).
    pub max_windows_per_run: usize,
    /// How far back the first run looks for partials.
    pub lookback_hours: i64,
    pub retry: RetryPolicy,
    pub shard_wait: ShardWait,
    pub delivery: DeliveryBudget,
}

impl Default for EvaluateConfig {
    fn default() -> Self {
        Self {
            window: WindowConfig::default(),
            max_windows_per_run: 30,
            lookback_hours: 6,
            retry: RetryPolicy::default(),
            shard_wait: ShardWait::default(),
            delivery: DeliveryBudget::default(),
        }
    }
}

/// What each tenant's deliveries of one window get, on their own: every tenant's run at the
/// same time, so one tenant's dead webhook never delays another tenant's alert
/// (docs/ARCHITECTURE.md §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryBudget {
    /// Webhooks of one tenant delivered at once.
    pub per_tenant_concurrency: usize,
    /// How long one tenant's deliveries (retries included) may take in all; what is not
    /// delivered by then stays under `alerts/undelivered/` for `sluice alerts redrive`.
    pub per_tenant_time: std::time::Duration,
}

impl Default for DeliveryBudget {
    fn default() -> Self {
        Self {
            per_tenant_concurrency: 4,
            per_tenant_time: std::time::Duration::from_secs(60),
        }
    }
}

/// How long a closed window waits for shards whose aggregation is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardWait {
    /// A shard counts as busy for one Lambda window plus this after its last progress record:
    /// the time a final invocation may take to come after its window ends.
    pub grace_ms: i64,
    /// A window is evaluated at most this long after its close even if shards still lag (their
    /// partials for it then arrive too late to count), so one stuck shard cannot hold back every
    /// tenant's alerts.
    pub max_wait_ms: i64,
    /// How long after a record arrives its shard's first aggregate invocation may come, and with
    /// it the progress record that says the shard is busy: Lambda gathers records for up to the
    /// batching window, then polls and may cold-start. A shard that was quiet has no fresh
    /// progress until then, so the progress path evaluates a window only once it has been
    /// closed this long: a record that arrived just before the close has marked its shard busy
    /// by then.
    pub first_report_ms: i64,
}

impl Default for ShardWait {
    fn default() -> Self {
        Self {
            grace_ms: 60_000,
            max_wait_ms: 600_000,
            // The template's default batching window for aggregate.
            first_report_ms: Self::first_report_after(5_000),
        }
    }
}

impl ShardWait {
    /// [`ShardWait::first_report_ms`] for aggregate's Lambda batching window: the window plus
    /// 10 s for polling and a cold start.
    pub fn first_report_after(batching_window_ms: i64) -> i64 {
        batching_window_ms + 10_000
    }
}

/// What one evaluation run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EvaluationRun {
    pub windows: Vec<WindowReport>,
    /// The next closed window, if it waits for shards whose aggregation is behind.
    pub waiting: Option<HeldBack>,
}

/// A closed window held back for busy shards that have not written its partials yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldBack {
    pub window_start_ms: i64,
    pub shards: Vec<String>,
}

/// Whether a closed window may be evaluated.
enum Gate {
    /// Yes; `left_behind` are shards still behind after the longest wait.
    Open { left_behind: Vec<String> },
    /// Not yet.
    Wait(HeldBack),
}

/// What the evaluator keeps per tenant, in `alerts/state/tenant=T.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantState {
    pub last_window_start: Option<i64>,
    pub alerts: BTreeMap<String, AlertRecord>,
    /// Rule name → the rule's opaque state, base64.
    pub rule_state: BTreeMap<String, String>,
    pub known_patterns: KnownPatterns,
}

impl TenantState {
    /// True while an alert is pending or firing.
    pub fn has_open_alerts(&self) -> bool {
        self.alerts
            .values()
            .any(|a| matches!(a.status, AlertStatus::Pending | AlertStatus::Firing))
    }
}

/// A delivery that failed (or has not been attempted yet), kept for re-driving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Undelivered {
    pub tenant: String,
    pub window_start_ms: i64,
    pub url: String,
    pub idempotency_key: String,
    pub payload: serde_json::Value,
    pub error: Option<String>,
    pub attempts: u32,
    /// Why the destination was refused before anything was sent (an address inside, a plain
    /// `http://` URL): final, not a failure to retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A delivery written ahead, to attempt once the tenant's state is committed.
#[derive(Debug)]
struct Pending {
    key: String,
    hook: crate::alerting::tenant_config::Webhook,
    record: Undelivered,
}

/// What happened for one tenant in one window.
#[derive(Debug, Clone, Serialize)]
pub struct TenantReport {
    pub tenant: String,
    pub summary: WindowSummary,
    pub rules_run: usize,
    pub rule_errors: Vec<(String, String)>,
    pub fuel_used: u64,
    pub transitions: Vec<Transition>,
    pub silenced: usize,
    pub delivered: Vec<String>,
    pub undelivered: Vec<String>,
    /// Deliveries refused before anything was sent: `<url>: <reason>`.
    pub refused: Vec<String>,
    /// Services folded into `other` at the tenant's cap (docs/ARCHITECTURE.md §10).
    pub folded_services: usize,
    /// Patterns counted as untracked at the tenant's cap.
    pub folded_patterns: usize,
    /// True when the window had already been evaluated for this tenant (nothing was sent).
    pub already_evaluated: bool,
}

/// One evaluated window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    pub start_ms: i64,
    pub end_ms: i64,
    pub tenants: Vec<TenantReport>,
    /// Shards still behind when the longest wait ran out: their partials of this window, written
    /// later, are not in it.
    pub lagging_shards: Vec<String>,
}

/// Why an evaluation run stopped.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt {key}: {detail}")]
    Corrupt { key: String, detail: String },
}

const WATERMARK_KEY: &str = "windows/state/watermark.json";

#[derive(Debug, Serialize, Deserialize)]
struct Watermark {
    next_window_start: i64,
}

/// Where each tenant's [`TenantState`] lives: this, the tenant, `.json`.
const STATE_PREFIX: &str = "alerts/state/tenant=";

/// The JSON object stored under `key`; one that does not parse is [`EvaluateError::Corrupt`].
fn read_json<T: serde::de::DeserializeOwned>(key: &str, body: &[u8]) -> Result<T, EvaluateError> {
    serde_json::from_slice(body).map_err(|e| EvaluateError::Corrupt {
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

fn state_key(tenant: &str) -> String {
    format!("{STATE_PREFIX}{tenant}.json")
}

/// Runs evaluations against a data store (partials, metrics, alerts) and a rules store
/// (`tenants/*.toml`).
#[derive(Debug)]
pub struct Evaluator<'a> {
    pub data: &'a dyn BlobStore,
    pub rules_store: &'a dyn BlobStore,
    pub runner: &'a dyn RuleRunner,
    pub http: &'a dyn HttpPoster,
    pub config: EvaluateConfig,
}

impl Evaluator<'_> {
    /// Evaluates every closed window not evaluated yet (up to the per-run cap), in order. A window
    /// waits while a busy shard's aggregation has not reached its close ([`ShardWait`]).
    pub async fn run(&self, now_ms: i64) -> Result<EvaluationRun, EvaluateError> {
        self.run_windows(now_ms, None).await
    }

    /// Like [`Evaluator::run`], for a caller that knows every shard's aggregation is complete
    /// (the local runner once every shard is read to the end with no window open): progress
    /// records are not consulted.
    pub async fn run_caught_up(&self, now_ms: i64) -> Result<EvaluationRun, EvaluateError> {
        self.run_windows(now_ms, Some(now_ms)).await
    }

    /// Like [`Evaluator::run`], for a caller that tracks every shard itself (the local runner):
    /// every record that arrived before `complete_through_ms` is aggregated and its partials
    /// are stored. A window is evaluated once it has closed by then; progress records are not
    /// consulted.
    pub async fn run_through(
        &self,
        now_ms: i64,
        complete_through_ms: i64,
    ) -> Result<EvaluationRun, EvaluateError> {
        self.run_windows(now_ms, Some(complete_through_ms)).await
    }

    /// `complete_through`: `None` to wait on the shards' progress records, as Lambda does.
    async fn run_windows(
        &self,
        now_ms: i64,
        complete_through: Option<i64>,
    ) -> Result<EvaluationRun, EvaluateError> {
        let closed_by = match complete_through {
            Some(t) => t.min(now_ms),
            None => now_ms - self.config.shard_wait.first_report_ms,
        };
        let wait_for_shards = complete_through.is_none();
        let w = &self.config.window;
        let mut next = match self.data.get(WATERMARK_KEY).await? {
            Some(body) => read_json::<Watermark>(WATERMARK_KEY, &body)?.next_window_start,
            None => match self.earliest_partial(now_ms).await? {
                Some(start) => start,
                None => return Ok(EvaluationRun::default()),
            },
        };
        let mut run = EvaluationRun::default();
        let mut shards: Option<Vec<ShardProgress>> = None;
        while w.is_closed(next, closed_by) && run.windows.len() < self.config.max_windows_per_run {
            let lagging = if wait_for_shards {
                let shards = match &shards {
                    Some(s) => s,
                    None => shards.insert(progress::load_all(self.data).await?),
                };
                match self.shard_gate(shards, next, now_ms) {
                    Gate::Open { left_behind } => left_behind,
                    Gate::Wait(held) => {
                        run.waiting = Some(held);
                        break;
                    }
                }
            } else {
                Vec::new()
            };
            let mut report = self.evaluate_window(next).await?;
            report.lagging_shards = lagging;
            run.windows.push(report);
            next += w.window_ms;
            let mark = serde_json::to_vec(&Watermark {
                next_window_start: next,
            })
            .map_err(std::io::Error::from)
            .map_err(CoreError::from)?;
            self.data
                .put(WATERMARK_KEY, Bytes::from(mark), "application/json")
                .await?;
        }
        Ok(run)
    }

    /// Whether the window starting at `start_ms` may be evaluated now, given the shards'
    /// progress.
    fn shard_gate(&self, shards: &[ShardProgress], start_ms: i64, now_ms: i64) -> Gate {
        let wait = self.config.shard_wait;
        let close = self.config.window.close_ms(start_ms);
        let lagging = progress::lagging(shards, close, now_ms, wait.grace_ms);
        if lagging.is_empty() {
            return Gate::Open {
                left_behind: lagging,
            };
        }
        if now_ms < close + wait.max_wait_ms {
            tracing::info!(window_start = start_ms, shards = ?lagging, "window waits for shards whose aggregation is behind");
            return Gate::Wait(HeldBack {
                window_start_ms: start_ms,
                shards: lagging,
            });
        }
        tracing::warn!(window_start = start_ms, shards = ?lagging, waited_ms = now_ms - close,
            "evaluating without shards still behind after the longest wait; their partials of this window will not count");
        Gate::Open {
            left_behind: lagging,
        }
    }

    async fn earliest_partial(&self, now_ms: i64) -> Result<Option<i64>, EvaluateError> {
        let first_hour = partition::hour_of(now_ms) - self.config.lookback_hours;
        for hour in first_hour..=partition::hour_of(now_ms) {
            let prefix = format!("windows/partials/{}/", partition::dt_hour(hour));
            let keys = self.data.list(&prefix).await?;
            if let Some(start) = keys.iter().filter_map(|k| window_of_key(k)).min() {
                return Ok(Some(start));
            }
        }
        Ok(None)
    }

    /// Evaluates one window for every tenant that has partials in it.
    pub async fn evaluate_window(&self, start_ms: i64) -> Result<WindowReport, EvaluateError> {
        let w = &self.config.window;
        let mut merged: BTreeMap<String, TenantWindow> = BTreeMap::new();
        for key in self.data.list(&window_prefix(start_ms)).await? {
            let Some(body) = self.data.get(&key).await? else {
                continue;
            };
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
        // A tenant that has gone quiet still has its open alerts evaluated, on an empty window:
        // an alert whose service stopped logging then resolves (and a rule that watches for
        // silence can fire) instead of staying as it was for ever.
        let open = self.tenants_with_open_alerts().await?;
        for tenant in &open {
            if !merged.contains_key(tenant) {
                let window = TenantWindow::new(tenant, start_ms, start_ms + w.window_ms);
                merged.insert(tenant.clone(), window);
            }
        }
        let mut tenants = Vec::with_capacity(merged.len());
        let mut pending = Vec::with_capacity(merged.len());
        for window in merged.values() {
            let marked = open.contains(&window.tenant);
            let (report, deliveries) = self.evaluate_tenant(window, marked).await?;
            tenants.push(report);
            pending.push(deliveries);
        }
        // Every tenant's state is committed; now every tenant's deliveries, side by side.
        futures::future::try_join_all(
            tenants
                .iter_mut()
                .zip(pending)
                .map(|(report, deliveries)| self.deliver_tenant(report, deliveries)),
        )
        .await?;
        Ok(WindowReport {
            start_ms,
            end_ms: start_ms + w.window_ms,
            tenants,
            lagging_shards: Vec::new(),
        })
    }

    /// Tenants with a pending or firing alert, from their markers ([`open_markers`]). The
    /// first run on a store without markers builds them from every tenant's state.
    async fn tenants_with_open_alerts(&self) -> Result<BTreeSet<String>, EvaluateError> {
        if let Some(open) = open_markers::marked_tenants(self.data).await? {
            return Ok(open);
        }
        let mut open = BTreeSet::new();
        for key in self.data.list(STATE_PREFIX).await? {
            let Some(tenant) = key
                .strip_prefix(STATE_PREFIX)
                .and_then(|k| k.strip_suffix(".json"))
            else {
                continue;
            };
            let Some(body) = self.data.get(&key).await? else {
                continue;
            };
            if read_json::<TenantState>(&key, &body)?.has_open_alerts() {
                open_markers::reconcile(self.data, tenant, false, true).await?;
                open.insert(tenant.to_owned());
            }
        }
        open_markers::mark_complete(self.data).await?;
        tracing::info!(
            tenants = open.len(),
            "open-alert markers built from every tenant's state"
        );
        Ok(open)
    }

    /// Evaluates one tenant's window and commits its state; `marked` is whether the tenant
    /// has an open-alert marker. Returns the deliveries written ahead, for
    /// [`Evaluator::deliver_tenant`].
    async fn evaluate_tenant(
        &self,
        window: &TenantWindow,
        marked: bool,
    ) -> Result<(TenantReport, Vec<Pending>), EvaluateError> {
        let tenant = window.tenant.as_str();
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
        let key = state_key(tenant);
        let (mut state, version) = match self.data.get_versioned(&key).await? {
            Some((body, tag)) => (read_json::<TenantState>(&key, &body)?, Some(tag)),
            None => (TenantState::default(), None),
        };
        let summary = WindowSummary::from_window(window, |id| state.known_patterns.contains(id));
        let mut report = TenantReport {
            tenant: tenant.to_owned(),
            summary,
            rules_run: 0,
            rule_errors: Vec::new(),
            fuel_used: 0,
            transitions: Vec::new(),
            silenced: 0,
            delivered: Vec::new(),
            undelivered: Vec::new(),
            refused: Vec::new(),
            folded_services,
            folded_patterns,
            already_evaluated: false,
        };
        if state
            .last_window_start
            .is_some_and(|last| last >= window.start_ms)
        {
            // The run that evaluated this window wrote its metrics before it advanced the
            // state, so a retry writes nothing at all (but puts a marker it missed right).
            self.mark_open(tenant, marked, &state).await;
            report.already_evaluated = true;
            return Ok((report, Vec::new()));
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
                self.put_json(&key, &record).await?;
                pending.push(Pending {
                    key,
                    hook: hook.clone(),
                    record,
                });
            }
        }
        let state_body = Bytes::from(
            serde_json::to_vec(&state)
                .map_err(std::io::Error::from)
                .map_err(CoreError::from)?,
        );
        let condition = match version {
            Some(tag) => Precondition::Matches(tag),
            None => Precondition::Absent,
        };
        if let Err(e) = self
            .data
            .put_if(&key, state_body, "application/json", condition)
            .await
        {
            for p in &pending {
                self.data.delete(&p.key).await?;
            }
            if matches!(e, StoreError::PreconditionFailed { .. }) {
                tracing::info!(
                    tenant,
                    "another evaluator committed this window first; sending nothing"
                );
                report.already_evaluated = true;
                report.transitions.clear();
                return Ok((report, Vec::new()));
            }
            return Err(e.into());
        }
        self.mark_open(tenant, marked, &state).await;
        Ok((report, pending))
    }

    /// Delivers one tenant's notifications of a window under the tenant's own
    /// [`DeliveryBudget`], and records how each ended: delivered ones are removed from
    /// `alerts/undelivered/`, the rest keep their error (or refusal) there.
    async fn deliver_tenant(
        &self,
        report: &mut TenantReport,
        pending: Vec<Pending>,
    ) -> Result<(), EvaluateError> {
        if pending.is_empty() {
            return Ok(());
        }
        let budget = self.config.delivery;
        let tenant = report.tenant.as_str();
        let mut outcomes: Vec<Option<DeliveryResult>> = vec![None; pending.len()];
        {
            use futures::StreamExt as _;
            // Boxed as `Send` futures: a lazy `map` over borrowed deliveries would not be
            // provably `Send` for every lifetime, which a spawned evaluator needs.
            type Attempt<'f> = std::pin::Pin<
                Box<dyn std::future::Future<Output = (usize, DeliveryResult)> + Send + 'f>,
            >;
            let mut each: Vec<Attempt<'_>> = Vec::with_capacity(pending.len());
            for (i, p) in pending.iter().enumerate() {
                each.push(Box::pin(
                    async move { (i, self.deliver_one(tenant, p).await) },
                ));
            }
            let attempts =
                futures::stream::iter(each).buffer_unordered(budget.per_tenant_concurrency.max(1));
            let all = async {
                futures::pin_mut!(attempts);
                while let Some((i, outcome)) = attempts.next().await {
                    outcomes[i] = Some(outcome);
                }
            };
            if tokio::time::timeout(budget.per_tenant_time, all)
                .await
                .is_err()
            {
                tracing::warn!(
                    tenant,
                    budget_s = budget.per_tenant_time.as_secs_f64(),
                    "the tenant's delivery budget ran out; the rest stay undelivered"
                );
            }
        }
        for (
            Pending {
                key,
                hook,
                mut record,
            },
            outcome,
        ) in pending.into_iter().zip(outcomes)
        {
            match outcome {
                Some(DeliveryResult::Delivered { .. }) => {
                    self.data.delete(&key).await?;
                    report.delivered.push(hook.url.clone());
                    continue;
                }
                Some(DeliveryResult::Failed { error, attempts }) => {
                    tracing::warn!(tenant, url = %hook.url, %error, attempts, "webhook delivery failed; kept under alerts/undelivered/");
                    record.error = Some(error);
                    record.attempts = attempts;
                }
                Some(DeliveryResult::Refused { reason }) => {
                    tracing::warn!(tenant, url = %hook.url, %reason, "webhook refused before sending; kept under alerts/undelivered/ with the reason");
                    record.error = Some(format!("refused: {reason}"));
                    report.refused.push(format!("{}: {reason}", hook.url));
                    record.refused = Some(reason);
                }
                None => {
                    record.error = Some(format!(
                        "not delivered within the tenant's delivery budget of {:?}",
                        budget.per_tenant_time
                    ));
                }
            }
            self.put_json(&key, &record).await?;
            report.undelivered.push(hook.url.clone());
        }
        Ok(())
    }

    /// One delivery, signed with the webhook's secret.
    async fn deliver_one(&self, tenant: &str, p: &Pending) -> DeliveryResult {
        let secret = match p.hook.signing_key(self.rules_store, tenant).await {
            Ok(secret) => secret,
            Err(e) => {
                return DeliveryResult::Failed {
                    error: format!("signing secret: {e}"),
                    attempts: 0,
                };
            }
        };
        let body = match serde_json::to_vec(&p.record.payload) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                return DeliveryResult::Failed {
                    error: format!("payload: {e}"),
                    attempts: 0,
                };
            }
        };
        let delivery = Delivery {
            url: &p.hook.url,
            secret: secret.as_deref(),
            body,
            idempotency_key: &p.record.idempotency_key,
        };
        deliver(self.http, &delivery, self.config.retry).await
    }

    /// Puts the tenant's open-alert marker right. A failure only warns: the state is committed
    /// and its notifications must still go out, and the next read of the state retries.
    async fn mark_open(&self, tenant: &str, marked: bool, state: &TenantState) {
        let open = state.has_open_alerts();
        if let Err(e) = open_markers::reconcile(self.data, tenant, marked, open).await {
            tracing::warn!(tenant, open, error = %e, "could not update the open-alert marker; the next evaluation retries");
        }
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

    async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), EvaluateError> {
        let body = serde_json::to_vec_pretty(value)
            .map_err(std::io::Error::from)
            .map_err(CoreError::from)?;
        self.data
            .put(key, Bytes::from(body), "application/json")
            .await?;
        Ok(())
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
        .map(|(_, s)| decoded_len(s) as u64)
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

/// The length of what a padded base64 string decodes to: three bytes per four characters,
/// less the padding.
pub fn decoded_len(base64: &str) -> usize {
    let padding = base64.bytes().rev().take_while(|b| *b == b'=').count();
    (base64.len() / 4 * 3).saturating_sub(padding)
}

/// The window start named in a partial's key (`…/window=<ms>/…`).
pub fn window_of_key(key: &str) -> Option<i64> {
    key.split('/')
        .find_map(|part| part.strip_prefix("window="))
        .and_then(|ms| ms.parse().ok())
}

/// Re-sends every undelivered notification of `tenant` (all tenants if `None`). Returns how many
/// were delivered and how many still fail.
pub async fn redrive(
    data: &dyn BlobStore,
    rules_store: &dyn BlobStore,
    http: &dyn HttpPoster,
    tenant: Option<&str>,
    retry: RetryPolicy,
) -> Result<(usize, usize), EvaluateError> {
    let prefix = match tenant {
        Some(t) => format!("alerts/undelivered/tenant={t}/"),
        None => "alerts/undelivered/".to_owned(),
    };
    let (mut ok, mut failed) = (0, 0);
    for key in data.list(&prefix).await? {
        let Some(body) = data.get(&key).await? else {
            continue;
        };
        let mut record: Undelivered = read_json(&key, &body)?;
        let config = match rules_store
            .get(&format!("tenants/{}.toml", record.tenant))
            .await?
        {
            Some(b) => TenantConfig::parse(&record.tenant, &String::from_utf8_lossy(&b))
                .unwrap_or_default(),
            None => TenantConfig::default(),
        };
        let secret = match config.webhooks.iter().find(|h| h.url == record.url) {
            Some(hook) => hook
                .signing_key(rules_store, &record.tenant)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let payload_body = Bytes::from(
            serde_json::to_vec(&record.payload)
                .map_err(std::io::Error::from)
                .map_err(CoreError::from)?,
        );
        let delivery = Delivery {
            url: &record.url,
            secret: secret.as_deref(),
            body: payload_body,
            idempotency_key: &record.idempotency_key,
        };
        match deliver(http, &delivery, retry).await {
            DeliveryResult::Delivered { .. } => {
                data.delete(&key).await?;
                ok += 1;
            }
            DeliveryResult::Failed { error, attempts } => {
                record.error = Some(error);
                record.attempts += attempts;
                record.refused = None;
                rewrite(data, &key, &record).await?;
                failed += 1;
            }
            DeliveryResult::Refused { reason } => {
                record.error = Some(format!("refused: {reason}"));
                record.refused = Some(reason);
                rewrite(data, &key, &record).await?;
                failed += 1;
            }
        }
    }
    Ok((ok, failed))
}

/// Writes an undelivered record back with how its last attempt ended.
async fn rewrite(
    data: &dyn BlobStore,
    key: &str,
    record: &Undelivered,
) -> Result<(), EvaluateError> {
    let body = serde_json::to_vec_pretty(record)
        .map_err(std::io::Error::from)
        .map_err(CoreError::from)?;
    data.put(key, Bytes::from(body), "application/json").await?;
    Ok(())
}
