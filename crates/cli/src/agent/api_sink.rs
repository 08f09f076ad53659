//! `sluice agent --api URL --key KEY`: batches shipped through the front door
//! (docs/ARCHITECTURE.md §8) instead of straight to Kinesis, for producers outside the
//! platform's account. Each batch is one `POST /v1/ingest` of its lines (NDJSON) with the
//! tenant key; the front door stamps the key's tenant on every line and answers once they are
//! on the stream.
//!
//! Answers map onto the agent's retry logic: 200 means every line was taken (lines the front
//! door rejected, with their reasons, are logged: sending them again would not help); 429,
//! 5xx and connection trouble are retried; 400, 401, 403 and 413 stop the agent.

use super::batcher::Entry;
use super::put_records::{EntryResult, RecordSink, SinkError};

/// The front door as a sink.
#[derive(Debug, Clone)]
pub struct ApiSink {
    client: reqwest::Client,
    url: String,
    authorization: String,
}

impl ApiSink {
    /// A sink posting to `<base>/v1/ingest` with `key`.
    pub fn new(base: &str, key: &str) -> Result<Self, SinkError> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| SinkError::fatal(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            client,
            url: format!("{}/v1/ingest", base.trim_end_matches('/')),
            authorization: format!("Bearer {}", key.trim()),
        })
    }
}

#[async_trait::async_trait]
impl RecordSink for ApiSink {
    async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryResult>, SinkError> {
        let mut body = Vec::with_capacity(entries.iter().map(|e| e.data.len() + 1).sum());
        for entry in entries {
            body.extend_from_slice(&entry.data);
            body.push(b'\n');
        }
        let response = self
            .client
            .post(&self.url)
            .header("authorization", &self.authorization)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .map_err(|e| SinkError::retryable(format!("POST {}: {e}", self.url)))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            if let Ok(answer) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(rejected) = answer["rejected"].as_array()
                && !rejected.is_empty()
            {
                tracing::warn!(count = rejected.len(), first = %rejected[0], "the front door rejected lines");
            }
            return Ok(vec![EntryResult::Ok; entries.len()]);
        }
        let message = format!("{} answered {status}: {}", self.url, text.trim());
        if status.as_u16() == 429 || status.is_server_error() {
            Err(SinkError::retryable(message))
        } else {
            Err(SinkError::fatal(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sluice_api::{ApiConfig, ApiState, MemorySink};
    use sluice_core::LocalDirStore;
    use sluice_core::tenancy::{KeyCache, KeyStore, Pepper, Scope};

    use super::*;
    use crate::agent::budget::Reservation;

    #[tokio::test]
    async fn ships_lines_through_the_front_door_under_the_keys_tenant()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let keys = KeyStore::new(
            Arc::new(LocalDirStore::new(dir.path())),
            Pepper::from_text("agent test pepper!")?,
        );
        keys.create_tenant("acme").await?;
        let key = keys.create_key("acme", Scope::Ingest, None).await?.token;
        let sink = Arc::new(MemorySink::default());
        let state = ApiState::new(
            KeyCache::new(keys),
            Arc::clone(&sink) as _,
            ApiConfig::default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(sluice_api::serve(
            listener,
            sluice_api::router(Arc::new(state)),
            std::future::pending(),
        ));
        let entries: Vec<Entry> = [r#"{"service":"web","tenant":"globex"}"#, "plain line"]
            .iter()
            .map(|l| {
                Entry::plain(
                    "ignored/key".into(),
                    l.as_bytes().to_vec(),
                    Reservation::none(),
                )
            })
            .collect();
        let results = ApiSink::new(&base, &key)?.put_records(&entries).await?;
        assert_eq!(results, vec![EntryResult::Ok, EntryResult::Ok]);
        let stored = sink.take();
        let keys: Vec<&str> = stored.iter().map(|r| r.partition_key.as_str()).collect();
        assert_eq!(keys, vec!["acme/web", "acme/unknown"]);
        let wrong = ApiSink::new(&base, "slk_wrong")?
            .put_records(&entries)
            .await;
        assert!(
            matches!(
                wrong,
                Err(SinkError {
                    retryable: false,
                    ..
                })
            ),
            "{wrong:?}"
        );
        assert!(sink.take().is_empty());
        server.abort();
        Ok(())
    }
}
