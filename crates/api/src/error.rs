//! Why a request failed, and how each protocol's clients expect to be told.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use sluice_core::tenancy::Scope;

/// A request the front door did not accept as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No key, or a key that is unknown, forged or revoked (401).
    #[error("missing or invalid API key")]
    Unauthorized,
    /// A valid key without the scope the route needs (403).
    #[error("this key does not have the {0} scope")]
    Forbidden(Scope),
    /// The body is over a limit, as sent or decompressed (413).
    #[error("{what} is over the {limit}-byte limit")]
    TooLarge { what: &'static str, limit: usize },
    /// The payload cannot be read (400), with the exact reason.
    #[error("{0}")]
    BadRequest(String),
    /// A content type or encoding the route does not speak (415).
    #[error("unsupported {0}")]
    Unsupported(String),
    /// The tenant is over its request-rate quota (429, with `Retry-After`).
    #[error("tenant {tenant} is over its request-rate quota; retry after {retry_after_secs} s")]
    RateLimited {
        tenant: String,
        retry_after_secs: u64,
    },
    /// Nothing of the tenant's by that name (404).
    #[error("{0}")]
    NotFound(String),
    /// Refused by the tenant's limits or state (409), with the exact reason.
    #[error("{0}")]
    Conflict(String),
    /// The records could not be put on the stream, or keys could not be read (503): nothing of
    /// the request is acknowledged; send it again.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The front door's settings are unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// The shape a protocol's clients expect an error in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{"error": "..."}` (NDJSON, OTLP, Loki).
    Plain,
    /// Elasticsearch's `{"error": {"type", "reason"}, "status"}`.
    Elastic,
    /// Splunk HEC's `{"text", "code"}`.
    Splunk,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ApiError::Unavailable(_) => Some(1),
            _ => None,
        }
    }

    /// The response in the dialect of the route's clients.
    pub fn render(&self, dialect: Dialect) -> Response {
        let status = self.status();
        let message = self.to_string();
        let body = match dialect {
            Dialect::Plain => serde_json::json!({ "error": message }),
            Dialect::Elastic => {
                let kind = match self {
                    ApiError::Unauthorized | ApiError::Forbidden(_) => "security_exception",
                    ApiError::RateLimited { .. } => "es_rejected_execution_exception",
                    ApiError::TooLarge { .. } => "content_too_long_exception",
                    _ => "illegal_argument_exception",
                };
                let cause = serde_json::json!({ "type": kind, "reason": message });
                serde_json::json!({
                    "error": { "root_cause": [cause.clone()], "type": kind, "reason": message },
                    "status": status.as_u16(),
                })
            }
            Dialect::Splunk => {
                let code = match self {
                    ApiError::Unauthorized => 4,
                    ApiError::Forbidden(_) => 10,
                    ApiError::BadRequest(_)
                    | ApiError::Unsupported(_)
                    | ApiError::NotFound(_)
                    | ApiError::Conflict(_) => 6,
                    ApiError::RateLimited { .. } | ApiError::Unavailable(_) => 9,
                    ApiError::TooLarge { .. } => 27,
                    ApiError::Config(_) => 8,
                };
                serde_json::json!({ "text": message, "code": code })
            }
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status.is_server_error() {
            tracing::warn!(error = %self, "front door request failed");
        } else {
            tracing::debug!(error = %self, "front door request refused");
        }
        response
    }
}
