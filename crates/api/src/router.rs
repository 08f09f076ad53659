//! The routes, and the state every handler shares.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use sluice_core::BlobStore;
use sluice_core::tenancy::{KeyCache, Principal, Scope};

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::quota::Quotas;
use crate::sink::{OutRecord, RecordSink};
use crate::tenant::RegistryHook;

/// What the handlers share: the keys, the stream, the limits and quotas, and the rules store
/// (the rules bucket: `rules/`, `tenants/`, `control/tenants/`) the tenant routes use.
#[derive(Debug)]
pub struct ApiState {
    pub keys: KeyCache,
    pub sink: Arc<dyn RecordSink>,
    pub quotas: Quotas,
    pub config: ApiConfig,
    /// Where tenant rules and configurations live; without it the tenant routes answer 503.
    pub rules: Option<Arc<dyn BlobStore>>,
    /// Judges an upload in-process where no bucket notification does (`sluice serve`).
    pub registry: Option<Arc<dyn RegistryHook>>,
}

impl ApiState {
    pub fn new(keys: KeyCache, sink: Arc<dyn RecordSink>, config: ApiConfig) -> Self {
        Self {
            keys,
            sink,
            quotas: Quotas::new(config.rate_per_second, config.burst),
            config,
            rules: None,
            registry: None,
        }
    }

    /// The same, with the rules store the tenant routes read and write.
    pub fn with_rules_store(mut self, store: Arc<dyn BlobStore>) -> Self {
        self.rules = Some(store);
        self
    }

    /// The same, running the registry in-process on every upload and removal.
    pub fn with_registry(mut self, hook: Arc<dyn RegistryHook>) -> Self {
        self.registry = Some(hook);
        self
    }

    /// The request's principal, with the scope checked and a quota token taken.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        needed: Scope,
    ) -> Result<Principal, ApiError> {
        crate::auth::authorize(&self.keys, &self.quotas, headers, needed).await
    }

    /// Puts the records on the stream; returns once they are all there.
    pub async fn deliver(&self, tenant: &str, records: Vec<OutRecord>) -> Result<(), ApiError> {
        if records.is_empty() {
            return Ok(());
        }
        let count = records.len();
        self.sink.put(records).await.map_err(|e| {
            tracing::error!(tenant, count, error = %e, "records not put on the stream");
            ApiError::Unavailable(format!("the stream did not take the records: {e}"))
        })?;
        tracing::debug!(tenant, count, "records put on the stream");
        Ok(())
    }
}

/// Every route of the front door.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1/ingest", post(crate::ndjson::ingest))
        .route("/v1/logs", post(crate::otlp::logs))
        .route("/loki/api/v1/push", post(crate::loki::push))
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::elastic::routes())
        .merge(crate::hec::routes())
        .merge(crate::tenant::routes())
        .with_state(state)
}

/// Serves the router on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
