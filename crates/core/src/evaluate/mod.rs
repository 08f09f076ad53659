//! Evaluation, split for scale (docs/ARCHITECTURE.md §12): a [`planner`] finds the windows that
//! are ready and enqueues one [`planner::WorkItem`] per (window, tenant bucket); a [`worker`]
//! evaluates one such item (merges the bucket's partials across shards, runs each tenant's rules,
//! applies the lifecycle, writes metrics and the audit trail, commits each tenant's state) and
//! enqueues the notifications; [`delivery`] sends them, signed and retried, with per-tenant
//! concurrency. The queues are a [`queue::WorkQueue`]: in-process channels for `sluice local
//! run`, the demo and [`Evaluator`] ([`in_process`]), SQS on AWS (`sluice-aws`).
//!
//! Tenants without partials but with an open alert (their bucket's state says so) are evaluated
//! on an empty window, so their alerts can resolve.
//!
//! Running a work item twice sends nothing twice: each tenant's state records the last window
//! evaluated, and the bucket's states are written with one conditional write before anything is
//! enqueued for delivery.
//! Deliveries are written ahead under `alerts/undelivered/` and removed once delivered, so what
//! still fails stays there for `sluice alerts redrive`, which goes through [`delivery`] too.
//! One tenant's failure (a store error, a broken rule, a dead webhook) is recorded in its own
//! [`TenantReport`] and retried; it never fails or delays another tenant's evaluation.

pub mod delivery;
pub mod in_process;
pub mod planner;
pub mod queue;
pub mod worker;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::alerting::delivery::RetryPolicy;
use crate::alerting::lifecycle::{LifecycleConfig, Transition};
use crate::alerting::model::{AlertRecord, AlertStatus, RuleOutput};
use crate::error::CoreError;
use crate::store::StoreError;
use crate::window::WindowConfig;
use crate::window::summary::{KnownPatterns, WindowSummary};

pub use delivery::redrive;
pub use in_process::Evaluator;

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
    /// Work items evaluated at once by the in-process workers (`sluice local run`, the demo).
    pub workers: usize,
    /// Tenants of one work item evaluated at once.
    pub tenant_concurrency: usize,
    /// Attempts at a work item whose tenants failed (only the failed tenants are evaluated
    /// again: the others' state says the window is done). On SQS this is the queue's
    /// `maxReceiveCount`.
    pub item_attempts: u32,
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
            workers: 4,
            tenant_concurrency: 8,
            item_attempts: 3,
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

/// Every tenant's [`TenantState`] of one tenant bucket, in `alerts/state/bucket=<b>.json`: one
/// GET and one conditional PUT per bucket and window (docs/ARCHITECTURE.md §12).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketState {
    pub tenants: BTreeMap<String, TenantState>,
}

/// Where a tenant bucket's [`BucketState`] lives.
pub fn bucket_state_key(bucket: u32) -> String {
    format!("alerts/state/bucket={bucket:04}.json")
}

/// What the evaluator keeps per tenant, in its bucket's [`BucketState`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantState {
    pub last_window_start: Option<i64>,
    pub alerts: BTreeMap<String, AlertRecord>,
    /// Rule name → the rule's opaque state, base64.
    pub rule_state: BTreeMap<String, String>,
    pub known_patterns: KnownPatterns,
    /// Where `rule_state` is kept instead when it is too large to share its bucket's object
    /// ([`INLINE_RULE_STATE_BYTES`]): a tenant's large state is its own object, written only
    /// in the windows it changes, and never inflates its neighbours' reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_state_object: Option<String>,
}

/// Rule state up to this size (base64, all the tenant's rules) is kept in the bucket's object.
pub const INLINE_RULE_STATE_BYTES: usize = 16 * 1024;

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
    /// Why the tenant's evaluation failed after every attempt (its state is not advanced; no
    /// other tenant is affected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TenantReport {
    /// An empty report for `tenant`.
    pub fn new(tenant: &str, summary: WindowSummary) -> Self {
        Self {
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
            folded_services: 0,
            folded_patterns: 0,
            already_evaluated: false,
            error: None,
        }
    }
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
    #[error("queue: {0}")]
    Queue(String),
}

/// Where each tenant's [`TenantState`] lives: this, the tenant, `.json`.
/// Where each tenant's state lived before it was kept per bucket (read once, to upgrade).
pub(crate) const STATE_PREFIX: &str = "alerts/state/tenant=";

/// The JSON object stored under `key`; one that does not parse is [`EvaluateError::Corrupt`].
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    key: &str,
    body: &[u8],
) -> Result<T, EvaluateError> {
    serde_json::from_slice(body).map_err(|e| EvaluateError::Corrupt {
        key: key.to_owned(),
        detail: e.to_string(),
    })
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

/// `value` as JSON bytes.
pub(crate) fn json_bytes<T: Serialize>(value: &T) -> Result<bytes::Bytes, EvaluateError> {
    let body = serde_json::to_vec_pretty(value)
        .map_err(std::io::Error::from)
        .map_err(CoreError::from)?;
    Ok(bytes::Bytes::from(body))
}
