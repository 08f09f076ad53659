//! # sluice-notify
//!
//! Webhook delivery for sluice:
//!
//! - [`HttpPoster`]: the `reqwest` implementation of the core's
//!   [`sluice_core::alerting::delivery::HttpPoster`] port (one POST with a timeout), which
//!   sends only where the [`EgressPolicy`] allows: it checks the URL, resolves names itself
//!   and connects only to the addresses it checked ([`guarded_dns`], docs/ARCHITECTURE.md
//!   §10), follows no redirect, uses no proxy, and reads at most [`MAX_RESPONSE_BYTES`] of
//!   an answer;
//! - [`receiver`]: a small webhook receiver on 127.0.0.1 that verifies signatures and keeps what
//!   it received, used by `sluice demo` to show alerts and by tests as the real HTTP server.

pub mod guarded_dns;
pub mod receiver;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sluice_core::alerting::delivery::PostError;
pub use sluice_core::alerting::egress::EgressPolicy;
use sluice_core::alerting::egress::{EgressRefusal, check_url};

use crate::guarded_dns::{GuardedResolver, Lookup, SystemLookup};

/// The most of a webhook's answer that is read; the rest is dropped with the connection.
pub const MAX_RESPONSE_BYTES: usize = 64 << 10;

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("starting the webhook receiver on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Posts webhooks over HTTPS (HTTP to loopback where allowed), only to addresses the policy
/// allows. Build once and reuse: it pools connections.
#[derive(Debug, Clone)]
pub struct HttpPoster {
    client: reqwest::Client,
    policy: EgressPolicy,
}

impl HttpPoster {
    /// Public HTTPS destinations only: what runs on AWS.
    pub fn new() -> Result<Self, NotifyError> {
        Self::with_policy(EgressPolicy::public_only())
    }

    /// Loopback too: for the local runner and the demo, whose receivers listen on 127.0.0.1.
    pub fn allowing_loopback() -> Result<Self, NotifyError> {
        Self::with_policy(EgressPolicy::allowing_loopback())
    }

    pub fn with_policy(policy: EgressPolicy) -> Result<Self, NotifyError> {
        Self::with_lookup(policy, Arc::new(SystemLookup))
    }

    /// With another name lookup than the system's (tests resolve names of their own).
    pub fn with_lookup(policy: EgressPolicy, lookup: Arc<dyn Lookup>) -> Result<Self, NotifyError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(policy, lookup)))
            .build()?;
        Ok(Self { client, policy })
    }
}

/// The refusal somewhere in an error's chain (the resolver's, wrapped by reqwest and hyper).
fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<EgressRefusal> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(refusal) = e.downcast_ref::<EgressRefusal>() {
            return Some(refusal.clone());
        }
        current = e.source();
    }
    None
}

/// Reads at most `limit` bytes of the answer, so a webhook cannot make sluice read without
/// end.
async fn drain_capped(mut response: reqwest::Response, limit: usize) {
    let mut read = 0usize;
    while read < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) | Err(_) => return,
        }
    }
    tracing::debug!(limit, "webhook answer truncated");
}

#[async_trait]
impl sluice_core::alerting::delivery::HttpPoster for HttpPoster {
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<u16, PostError> {
        // Scheme and address literals here (a literal is never resolved); names in the
        // resolver, on every connection.
        let checked = check_url(url, self.policy).map_err(|e| PostError::Refused(e.to_string()))?;
        let mut request = self.client.post(checked.url).timeout(timeout).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                drain_capped(response, MAX_RESPONSE_BYTES).await;
                Ok(status)
            }
            Err(e) => match refusal_in(&e) {
                Some(refusal) => Err(PostError::Refused(refusal.to_string())),
                None if e.is_timeout() => {
                    Err(PostError::Transport(format!("timed out after {timeout:?}")))
                }
                None => Err(PostError::Transport(format!("{e}"))),
            },
        }
    }
}
