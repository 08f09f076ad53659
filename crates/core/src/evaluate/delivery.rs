//! Delivery: one queued notification at a time, signed with the webhook's secret and retried
//! ([`crate::alerting::delivery`]), for the in-process driver, the SQS delivery function and
//! `sluice alerts redrive` alike (docs/ARCHITECTURE.md §12).
//!
//! A [`DeliveryItem`] names a record under `alerts/undelivered/`, written by the worker before
//! the tenant's state was committed. Delivered, the record is removed, so a re-delivered item
//! finds nothing and sends nothing twice; not delivered, it keeps why (and how many attempts)
//! for a retry or a redrive.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::queue::InProcessQueue;
use super::{DeliveryBudget, EvaluateError, Undelivered, json_bytes, read_json};
use crate::alerting::delivery::{Delivery, DeliveryResult, HttpPoster, RetryPolicy, deliver};
use crate::alerting::tenant_config::TenantConfig;
use crate::store::BlobStore;

/// One notification to send: the tenant, and its record under `alerts/undelivered/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryItem {
    pub tenant: String,
    pub key: String,
}

/// How one delivery ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Delivered {
        url: String,
    },
    /// Worth retrying; the record keeps the error.
    Failed {
        url: String,
        error: String,
    },
    /// Refused before anything was sent (final); the record keeps the reason.
    Refused {
        url: String,
        reason: String,
    },
    /// The record is gone: delivered already (a re-delivered item).
    Gone,
}

impl DeliveryOutcome {
    /// True when a retry may still deliver it.
    pub fn should_retry(&self) -> bool {
        matches!(self, DeliveryOutcome::Failed { .. })
    }
}

/// Sends queued notifications.
#[derive(Debug)]
pub struct Deliverer<'a> {
    pub data: &'a dyn BlobStore,
    pub rules_store: &'a dyn BlobStore,
    pub http: &'a dyn HttpPoster,
    pub retry: RetryPolicy,
}

impl Deliverer<'_> {
    /// Sends one notification (signed, retried) and records how it ended. `time_left` bounds
    /// the attempt: what is not delivered by then is kept as failed.
    pub async fn deliver(
        &self,
        item: &DeliveryItem,
        time_left: Option<Duration>,
    ) -> Result<DeliveryOutcome, EvaluateError> {
        let Some(body) = self.data.get(&item.key).await? else {
            return Ok(DeliveryOutcome::Gone);
        };
        let mut record: Undelivered = read_json(&item.key, &body)?;
        let attempt = self.attempt(&record);
        let result = match time_left {
            Some(left) => tokio::time::timeout(left, attempt).await.ok(),
            None => Some(attempt.await),
        };
        let url = record.url.clone();
        let outcome = match result {
            Some(DeliveryResult::Delivered { .. }) => {
                self.data.delete(&item.key).await?;
                return Ok(DeliveryOutcome::Delivered { url });
            }
            Some(DeliveryResult::Failed { error, attempts }) => {
                tracing::warn!(tenant = %item.tenant, %url, %error, attempts, "webhook delivery failed; kept under alerts/undelivered/");
                record.attempts += attempts;
                record.refused = None;
                DeliveryOutcome::Failed { url, error }
            }
            Some(DeliveryResult::Refused { reason }) => {
                tracing::warn!(tenant = %item.tenant, %url, %reason, "webhook refused before sending; kept under alerts/undelivered/ with the reason");
                record.refused = Some(reason.clone());
                DeliveryOutcome::Refused { url, reason }
            }
            None => {
                let error = format!(
                    "not delivered within the tenant's delivery budget of {:?}",
                    time_left.unwrap_or_default()
                );
                tracing::warn!(tenant = %item.tenant, %url, "the tenant's delivery budget ran out; kept under alerts/undelivered/");
                DeliveryOutcome::Failed { url, error }
            }
        };
        record.error = Some(match &outcome {
            DeliveryOutcome::Refused { reason, .. } => format!("refused: {reason}"),
            DeliveryOutcome::Failed { error, .. } => error.clone(),
            _ => String::new(),
        });
        self.data
            .put(&item.key, json_bytes(&record)?, "application/json")
            .await?;
        Ok(outcome)
    }

    /// One signed POST, retried by the policy. The secret is the tenant's webhook's, found by
    /// its URL in the tenant's configuration.
    async fn attempt(&self, record: &Undelivered) -> DeliveryResult {
        let secret = match self.signing_key(record).await {
            Ok(secret) => secret,
            Err(error) => {
                return DeliveryResult::Failed { error, attempts: 0 };
            }
        };
        let body = match serde_json::to_vec(&record.payload) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                return DeliveryResult::Failed {
                    error: format!("payload: {e}"),
                    attempts: 0,
                };
            }
        };
        let delivery = Delivery {
            url: &record.url,
            secret: secret.as_deref(),
            body,
            idempotency_key: &record.idempotency_key,
        };
        deliver(self.http, &delivery, self.retry).await
    }

    async fn signing_key(&self, record: &Undelivered) -> Result<Option<Vec<u8>>, String> {
        let key = format!("tenants/{}.toml", record.tenant);
        let config = match self.rules_store.get(&key).await {
            Ok(Some(b)) => TenantConfig::parse(&record.tenant, &String::from_utf8_lossy(&b))
                .unwrap_or_default(),
            Ok(None) => TenantConfig::default(),
            Err(e) => return Err(format!("reading {key}: {e}")),
        };
        match config.webhooks.iter().find(|h| h.url == record.url) {
            Some(hook) => hook
                .signing_key(self.rules_store, &record.tenant)
                .await
                .map_err(|e| format!("signing secret: {e}")),
            None => Ok(None),
        }
    }

    /// Drains `queue` until it is closed and empty (the in-process delivery worker): each
    /// tenant's notifications with at most the budget's concurrency and within its time from
    /// the tenant's first notification, every tenant side by side, so one tenant's dead webhook
    /// never delays another's. Returns each item with how it ended (an error reading or
    /// writing its record is a failure of that item alone).
    pub async fn drain(
        &self,
        queue: &InProcessQueue<DeliveryItem>,
        budget: DeliveryBudget,
    ) -> Vec<(DeliveryItem, DeliveryOutcome)> {
        let mut tenants: HashMap<String, (Arc<Semaphore>, Instant)> = HashMap::new();
        let mut running = futures::stream::FuturesUnordered::new();
        let mut done = Vec::new();
        let mut open = true;
        loop {
            tokio::select! {
                item = queue.recv(), if open => match item {
                    Some(item) => {
                        let (gate, deadline) = tenants
                            .entry(item.tenant.clone())
                            .or_insert_with(|| {
                                (
                                    Arc::new(Semaphore::new(budget.per_tenant_concurrency.max(1))),
                                    Instant::now() + budget.per_tenant_time,
                                )
                            })
                            .clone();
                        running.push(self.deliver_gated(item, gate, deadline));
                    }
                    None => open = false,
                },
                Some(finished) = running.next(), if !running.is_empty() => done.push(finished),
                else => break,
            }
        }
        done
    }

    async fn deliver_gated(
        &self,
        item: DeliveryItem,
        gate: Arc<Semaphore>,
        deadline: Instant,
    ) -> (DeliveryItem, DeliveryOutcome) {
        let _permit = gate.acquire_owned().await;
        let left = deadline.saturating_duration_since(Instant::now());
        let outcome = match self.deliver(&item, Some(left)).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(tenant = %item.tenant, key = %item.key, error = %e, "delivery record unreadable or unwritable");
                DeliveryOutcome::Failed {
                    url: String::new(),
                    error: e.to_string(),
                }
            }
        };
        (item, outcome)
    }
}

/// Re-sends every undelivered notification of `tenant` (all tenants if `None`) through
/// [`Deliverer::deliver`]. Returns how many were delivered and how many still fail.
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
    let deliverer = Deliverer {
        data,
        rules_store,
        http,
        retry,
    };
    let (mut ok, mut failed) = (0, 0);
    for key in data.list(&prefix).await? {
        let Some(tenant) = key
            .strip_prefix("alerts/undelivered/tenant=")
            .and_then(|rest| rest.split('/').next())
        else {
            continue;
        };
        let item = DeliveryItem {
            tenant: tenant.to_owned(),
            key: key.clone(),
        };
        match deliverer.deliver(&item, None).await? {
            DeliveryOutcome::Delivered { .. } => ok += 1,
            DeliveryOutcome::Failed { .. } | DeliveryOutcome::Refused { .. } => failed += 1,
            DeliveryOutcome::Gone => {}
        }
    }
    Ok((ok, failed))
}
