//! # sluice-notify
//!
//! Webhook delivery for sluice:
//!
//! - [`HttpPoster`]: the `reqwest` implementation of the core's
//!   [`sluice_core::alerting::delivery::HttpPoster`] port (one POST with a timeout);
//! - [`receiver`]: a small webhook receiver on 127.0.0.1 that verifies signatures and keeps what
//!   it received, used by `sluice demo` to show alerts and by tests as the real HTTP server.

pub mod receiver;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

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

/// Posts webhooks over HTTP(S). Build once and reuse: it pools connections.
#[derive(Debug, Clone)]
pub struct HttpPoster {
    client: reqwest::Client,
}

impl HttpPoster {
    pub fn new() -> Result<Self, NotifyError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { client })
    }
}

#[async_trait]
impl sluice_core::alerting::delivery::HttpPoster for HttpPoster {
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<u16, String> {
        let mut request = self.client.post(url).timeout(timeout).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) if e.is_timeout() => Err(format!("timed out after {timeout:?}")),
            Err(e) => Err(format!("{e}")),
        }
    }
}
