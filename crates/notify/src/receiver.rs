//! A webhook receiver bound to 127.0.0.1: it verifies `X-Sluice-Signature`, keeps every accepted
//! notification, and can be told to fail the next N requests (to exercise retries).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use sluice_core::alerting::webhook::{WebhookPayload, verify};

use crate::NotifyError;

/// One request the receiver accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub payload: WebhookPayload,
    pub idempotency_key: Option<String>,
    pub signature_valid: bool,
    /// When it arrived (ms since the epoch): latency measurements read it.
    pub received_at_ms: i64,
}

#[derive(Debug, Default)]
struct Inner {
    received: Vec<Received>,
    requests: usize,
    fail_next: usize,
}

/// A running receiver; it stops when dropped.
#[derive(Debug)]
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    secret: Arc<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
    notify: Arc<tokio::sync::Notify>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 at a free port, verifying signatures with `secret`.
    pub async fn start(secret: &[u8]) -> Result<Self, NotifyError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| NotifyError::Bind {
                addr: "127.0.0.1:0".into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| NotifyError::Bind {
            addr: "127.0.0.1:0".into(),
            source,
        })?;
        let inner = Arc::new(Mutex::new(Inner::default()));
        let secret = Arc::new(secret.to_vec());
        let notify = Arc::new(tokio::sync::Notify::new());
        let state = (inner.clone(), secret.clone(), notify.clone());
        let app = Router::new().route("/hook", post(handle)).with_state(state);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "webhook receiver stopped");
            }
        });
        Ok(Self {
            addr,
            inner,
            secret,
            task,
            notify,
        })
    }

    /// The URL to configure as the webhook.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Makes the next `n` requests fail with HTTP 500.
    pub fn fail_next(&self, n: usize) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.fail_next = n;
        }
    }

    /// Everything accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner
            .lock()
            .map(|i| i.received.clone())
            .unwrap_or_default()
    }

    /// Takes what was accepted so far, leaving the receiver empty.
    pub fn take(&self) -> Vec<Received> {
        self.inner
            .lock()
            .map(|mut i| std::mem::take(&mut i.received))
            .unwrap_or_default()
    }

    /// Requests seen, accepted or failed.
    pub fn requests(&self) -> usize {
        self.inner.lock().map(|i| i.requests).unwrap_or_default()
    }

    /// The secret signatures are checked against.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Waits until something is received or `timeout` passes.
    pub async fn wait(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }
}

type ReceiverState = (Arc<Mutex<Inner>>, Arc<Vec<u8>>, Arc<tokio::sync::Notify>);

async fn handle(
    State((inner, secret, notify)): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Ok(mut inner) = inner.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    inner.requests += 1;
    if inner.fail_next > 0 {
        inner.fail_next -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let Ok(payload) = serde_json::from_slice::<WebhookPayload>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let signature_valid = header("x-sluice-signature")
        .is_some_and(|sig| verify(&secret, &sig, &body, now, 300).is_ok());
    inner.received.push(Received {
        payload,
        idempotency_key: header("idempotency-key"),
        signature_valid,
        received_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    });
    notify.notify_waiters();
    StatusCode::OK
}
