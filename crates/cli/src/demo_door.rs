//! The front door inside `sluice demo` (docs/ARCHITECTURE.md §8): a tenant and an ingest key
//! made in the demo's directory (`control/`, as `sluice tenants` makes them), the router on
//! 127.0.0.1 over the demo's own embedded stream, and one tenant's JSON records shipped
//! through `POST /v1/ingest` with the key, as an off-the-shelf client would.
//!
//! The demo replays an hour that may lie in the past (`--until`): records put through the
//! door arrive at the replay's time (the last record's event time plus the demo's 150 ms),
//! not the wall clock's, so they fall in the same windows as the records put on the stream
//! directly; and the door leaves the event-time check to ingest, which makes it against that
//! arrival time, as for every other record of the demo.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use sluice_api::{ApiConfig, ApiState, EmbeddedSink};
use sluice_core::embedded_stream::EmbeddedStream;
use sluice_core::tenancy::{KeyCache, KeyError, NewKey, Scope};

use crate::cmd_tenants::store::KeyStoreArgs;

/// A request carries at most this much NDJSON (the door takes 6 MiB by default).
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// The demo's front door, its key, and what went through it.
#[derive(Debug)]
pub struct DemoDoor {
    pub url: String,
    pub tenant: String,
    pub key: NewKey,
    /// Records sent, and records the door answered as accepted.
    pub records: u64,
    pub accepted: u64,
    client: reqwest::Client,
    arrival: Arc<AtomicI64>,
    pending: Vec<u8>,
    pending_records: u64,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl DemoDoor {
    /// Makes `tenant` (if it is not there yet) and an ingest key for it under `out/control/`,
    /// and serves the router on 127.0.0.1 (a free port) onto `stream`. Call from within the
    /// runtime the demo drives.
    pub async fn start(
        out: &Path,
        tenant: &str,
        stream: Arc<Mutex<EmbeddedStream>>,
    ) -> anyhow::Result<Self> {
        let keys = KeyStoreArgs {
            data: Some(out.to_path_buf()),
            bucket: None,
            endpoint: None,
            state_dir: out.join(".sluice"),
        }
        .open()
        .await?;
        match keys.create_tenant(tenant).await {
            Ok(_) | Err(KeyError::TenantExists(_)) => {}
            Err(e) => return Err(e).with_context(|| format!("creating tenant {tenant}")),
        }
        let key = keys
            .create_key(tenant, Scope::Ingest, Some("sluice demo"))
            .await
            .with_context(|| format!("creating an ingest key for {tenant}"))?;
        let arrival = Arc::new(AtomicI64::new(0));
        let sink = Arc::new(EmbeddedSink::with_arrival_clock(
            stream,
            Arc::clone(&arrival),
        ));
        let mut config = ApiConfig::default();
        // A century either way: ingest checks event times against the replay's arrival.
        config.ingest.max_past_ms = 100 * 365 * 86_400_000;
        config.ingest.max_future_ms = 100 * 365 * 86_400_000;
        let state = Arc::new(ApiState::new(KeyCache::new(keys), sink, config));
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(sluice_api::serve(
            listener,
            sluice_api::router(state),
            async {
                let _ = stopped.await;
            },
        ));
        let client = reqwest::Client::builder()
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            url,
            tenant: tenant.to_owned(),
            key,
            records: 0,
            accepted: 0,
            client,
            arrival,
            pending: Vec::new(),
            pending_records: 0,
            stop: Some(stop),
            served: Some(served),
        })
    }

    /// The `curl` line that sends one more record through the door with the key.
    pub fn curl(&self) -> String {
        format!(
            "curl -sS -H 'Authorization: Bearer {}' --data-binary '{{\"service\":\"checkout\",\"level\":\"info\",\"message\":\"hello from curl\"}}' {}/v1/ingest",
            self.key.token, self.url
        )
    }

    /// Queues one record (a JSON object text) of event time `ts_ms`; sends the queue when it
    /// is a request's worth.
    pub async fn send(&mut self, payload: &[u8], ts_ms: i64) -> anyhow::Result<()> {
        self.pending.extend_from_slice(payload);
        self.pending.push(b'\n');
        self.pending_records += 1;
        self.arrival.store(ts_ms + 150, Ordering::Release);
        if self.pending.len() >= MAX_REQUEST_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends what is queued as one `POST /v1/ingest`, and returns once the door has answered
    /// (then the records are on the stream).
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let url = format!("{}/v1/ingest", self.url);
        let body = std::mem::take(&mut self.pending);
        let response = self
            .client
            .post(&url)
            .bearer_auth(&self.key.token)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        anyhow::ensure!(
            status.is_success(),
            "{url} answered {status}: {}",
            text.trim()
        );
        let answer: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{url} answered {status} with {text:?}"))?;
        self.records += std::mem::take(&mut self.pending_records);
        self.accepted += answer["accepted"].as_u64().unwrap_or(0);
        Ok(())
    }

    /// Stops the server, once every request has been answered.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.flush().await?;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served
                .await
                .context("the front door failed")?
                .context("serving the front door")?;
        }
        Ok(())
    }

    /// The `front_door` object of the demo's JSON summary.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "url": self.url,
            "tenant": self.tenant,
            "key_id": self.key.record.key_id,
            "key": self.key.token,
            "records": self.records,
            "accepted": self.accepted,
        })
    }
}
