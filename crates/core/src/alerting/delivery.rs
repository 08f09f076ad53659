//! Delivering a notification: signed POST, retried with exponential backoff and jitter on 5xx,
//! 429 and transport errors (timeouts included); other 4xx answers are final, and so is a
//! destination the egress check refuses ([`PostError::Refused`], docs/ARCHITECTURE.md §10):
//! nothing was sent, and trying again would not change that.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::webhook::sign;

/// Why a POST did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// The destination is not allowed (scheme, or an address inside): nothing was sent.
    #[error("refused: {0}")]
    Refused(String),
    /// Connecting, sending or waiting for the answer failed; worth retrying.
    #[error("{0}")]
    Transport(String),
}

impl From<String> for PostError {
    fn from(message: String) -> Self {
        PostError::Transport(message)
    }
}

/// The HTTP port: one POST, answering the status code, or why there is none.
#[async_trait]
pub trait HttpPoster: Send + Sync + std::fmt::Debug {
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<u16, PostError>;
}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Per attempt.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        }
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered {
        status: u16,
        attempts: u32,
    },
    Failed {
        error: String,
        attempts: u32,
    },
    /// The destination was refused before anything was sent; not retried.
    Refused {
        reason: String,
    },
}

/// One notification to send.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    pub url: &'a str,
    pub secret: Option<&'a [u8]>,
    pub body: Bytes,
    pub idempotency_key: &'a str,
}

/// Sends `delivery`, retrying as the policy says. Each attempt is signed afresh (the signature's
/// timestamp is the attempt's), with the same `Idempotency-Key`.
pub async fn deliver(
    poster: &dyn HttpPoster,
    delivery: &Delivery<'_>,
    policy: RetryPolicy,
) -> DeliveryResult {
    let mut backoff = policy.initial_backoff;
    let mut last_error = String::new();
    for attempt in 1..=policy.attempts.max(1) {
        let mut headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            (
                "Idempotency-Key".to_owned(),
                delivery.idempotency_key.to_owned(),
            ),
            (
                "User-Agent".to_owned(),
                concat!("sluice/", env!("CARGO_PKG_VERSION")).to_owned(),
            ),
        ];
        if let Some(secret) = delivery.secret {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            headers.push((
                "X-Sluice-Signature".to_owned(),
                sign(secret, now, &delivery.body),
            ));
        }
        match poster
            .post(
                delivery.url,
                &headers,
                delivery.body.clone(),
                policy.timeout,
            )
            .await
        {
            Ok(status @ 200..=299) => {
                return DeliveryResult::Delivered {
                    status,
                    attempts: attempt,
                };
            }
            Ok(status @ (429 | 500..=599)) => last_error = format!("HTTP {status}"),
            Ok(status) => {
                return DeliveryResult::Failed {
                    error: format!("HTTP {status} (not retried)"),
                    attempts: attempt,
                };
            }
            Err(PostError::Refused(reason)) => return DeliveryResult::Refused { reason },
            Err(PostError::Transport(e)) => last_error = e,
        }
        tracing::debug!(url = delivery.url, attempt, error = %last_error, "webhook delivery failed; retrying");
        if attempt < policy.attempts {
            let jitter = backoff.mul_f64(fastrand::f64() * 0.25);
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }
    DeliveryResult::Failed {
        error: last_error,
        attempts: policy.attempts.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug)]
    struct Scripted(Mutex<Vec<Result<u16, PostError>>>);

    #[async_trait]
    impl HttpPoster for Scripted {
        async fn post(
            &self,
            _: &str,
            _: &[(String, String)],
            _: Bytes,
            _: Duration,
        ) -> Result<u16, PostError> {
            self.0.lock().map_err(|e| e.to_string())?.remove(0)
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            timeout: Duration::from_secs(1),
        }
    }

    fn delivery() -> Delivery<'static> {
        Delivery {
            url: "http://127.0.0.1:9/",
            secret: Some(b"k"),
            body: Bytes::from_static(b"{}"),
            idempotency_key: "abc",
        }
    }

    #[tokio::test]
    async fn retries_server_errors_and_timeouts_until_success() {
        let poster = Scripted(Mutex::new(vec![
            Ok(503),
            Err(PostError::Transport("timed out".into())),
            Ok(429),
            Ok(200),
        ]));
        assert_eq!(
            deliver(&poster, &delivery(), quick()).await,
            DeliveryResult::Delivered {
                status: 200,
                attempts: 4
            }
        );
    }

    #[tokio::test]
    async fn gives_up_at_once_on_client_errors_and_after_the_last_attempt() {
        let poster = Scripted(Mutex::new(vec![Ok(404)]));
        assert!(matches!(
            deliver(&poster, &delivery(), quick()).await,
            DeliveryResult::Failed { attempts: 1, .. }
        ));
        let poster = Scripted(Mutex::new(vec![Ok(500); 4]));
        assert_eq!(
            deliver(&poster, &delivery(), quick()).await,
            DeliveryResult::Failed {
                error: "HTTP 500".into(),
                attempts: 4
            }
        );
    }

    #[tokio::test]
    async fn a_refused_destination_is_final_after_one_attempt() {
        let poster = Scripted(Mutex::new(vec![
            Err(PostError::Refused("10.0.0.1 is private".into())),
            Ok(200),
        ]));
        assert_eq!(
            deliver(&poster, &delivery(), quick()).await,
            DeliveryResult::Refused {
                reason: "10.0.0.1 is private".into()
            }
        );
        assert_eq!(
            poster.0.lock().map(|v| v.len()).unwrap_or(0),
            1,
            "never retried"
        );
    }
}
