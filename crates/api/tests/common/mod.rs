//! What the router tests share: a key store in a temporary directory, a router over a memory
//! sink, and requests sent through it without a socket.
#![allow(dead_code)]

use std::io::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use sluice_api::{ApiConfig, ApiState, MemorySink, OutRecord, RecordSink, SinkError};
use sluice_core::LocalDirStore;
use sluice_core::tenancy::{KeyCache, KeyStore, Pepper, Scope};
use tower::ServiceExt as _;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A front door with two tenants and keys of each scope.
pub struct Door {
    _dir: tempfile::TempDir,
    pub keys: KeyStore,
    pub sink: Arc<MemorySink>,
    pub router: axum::Router,
    pub ingest_key: String,
    pub rules_key: String,
    pub admin_key: String,
    pub other_tenant_key: String,
    /// The rules store (the same directory as the keys, as on AWS the same bucket).
    pub rules: Arc<LocalDirStore>,
    /// A hostile tenant's keys.
    pub mallory_admin_key: String,
    pub mallory_rules_key: String,
}

impl Door {
    pub async fn new() -> Result<Door, Box<dyn std::error::Error>> {
        Self::with_config(ApiConfig::default()).await
    }

    pub async fn with_config(config: ApiConfig) -> Result<Door, Box<dyn std::error::Error>> {
        let sink = Arc::new(MemorySink::default());
        Self::with_sink(config, Arc::clone(&sink) as Arc<dyn RecordSink>, sink).await
    }

    pub async fn with_sink(
        config: ApiConfig,
        put_to: Arc<dyn RecordSink>,
        sink: Arc<MemorySink>,
    ) -> Result<Door, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let rules = Arc::new(LocalDirStore::new(dir.path()));
        let keys = KeyStore::new(
            Arc::clone(&rules) as Arc<dyn sluice_core::BlobStore>,
            Pepper::from_text("test pepper, long enough")?,
        );
        keys.create_tenant("acme").await?;
        keys.create_tenant("globex").await?;
        let ingest_key = keys.create_key("acme", Scope::Ingest, None).await?.token;
        let rules_key = keys.create_key("acme", Scope::Rules, None).await?.token;
        let admin_key = keys.create_key("acme", Scope::Admin, None).await?.token;
        let other_tenant_key = keys.create_key("globex", Scope::Ingest, None).await?.token;
        keys.create_tenant("mallory").await?;
        let mallory_admin_key = keys.create_key("mallory", Scope::Admin, None).await?.token;
        let mallory_rules_key = keys.create_key("mallory", Scope::Rules, None).await?.token;
        let cache = KeyCache::with_ttl(
            keys.clone(),
            std::time::Duration::ZERO,
            std::time::Duration::ZERO,
        );
        let state = Arc::new(
            ApiState::new(cache, put_to, config)
                .with_rules_store(Arc::clone(&rules) as Arc<dyn sluice_core::BlobStore>),
        );
        Ok(Door {
            _dir: dir,
            keys,
            sink,
            router: sluice_api::router(state),
            ingest_key,
            rules_key,
            admin_key,
            other_tenant_key,
            rules,
            mallory_admin_key,
            mallory_rules_key,
        })
    }

    /// Sends a request; returns the status, the headers and the body.
    pub async fn send(
        &self,
        request: Request<Body>,
    ) -> Result<(StatusCode, axum::http::HeaderMap, Vec<u8>), Box<dyn std::error::Error>> {
        let response = self.router.clone().oneshot(request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes().to_vec();
        Ok((status, headers, body))
    }

    /// What reached the stream, taken out.
    pub fn stored(&self) -> Vec<OutRecord> {
        self.sink.take()
    }
}

/// The stamped records' JSON.
pub fn json_of(records: &[OutRecord]) -> Vec<serde_json::Value> {
    records
        .iter()
        .map(|r| serde_json::from_slice(&r.data).unwrap_or(serde_json::Value::Null))
        .collect()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// A sink that always fails.
#[derive(Debug)]
pub struct BrokenSink;

#[async_trait::async_trait]
impl RecordSink for BrokenSink {
    async fn put(&self, _records: Vec<OutRecord>) -> Result<(), SinkError> {
        Err(SinkError("stream unavailable".into()))
    }
}
