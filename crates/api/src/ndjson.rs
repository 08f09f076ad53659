//! `POST /v1/ingest`: one JSON object, or one plain text line (it becomes the `message`), per
//! line; `Content-Encoding: gzip` accepted; `Authorization: Bearer <key>`.
//!
//! The answer is `{"accepted": N, "rejected": [{"line": L, "reason": "..."}]}` (lines counted
//! from 1, blank lines skipped but counted): 200 when any line was accepted or none was
//! rejected, 400 when every line was rejected. Accepted lines are on the stream when it comes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use sluice_core::RejectReason;
use sluice_core::stamp::plain_text_object;
use sluice_core::tenancy::Scope;

use crate::error::{ApiError, Dialect};
use crate::intake::{Intake, IntakeBuilder};
use crate::router::ApiState;

/// The route's handler.
pub async fn ingest(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle(&state, &headers, body).await {
        Ok(response) => response,
        Err(e) => e.render(Dialect::Plain),
    }
}

async fn handle(state: &ApiState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let principal = state.authorize(headers, Scope::Ingest).await?;
    let body = crate::body::read(body, headers, &state.config).await?;
    let (intake, lines) = parse(&principal.tenant, &body, &state.config.ingest);
    if intake.outcomes.is_empty() {
        return Err(ApiError::BadRequest("no records in the body".into()));
    }
    let status = if intake.accepted() == 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let rejected: Vec<serde_json::Value> = intake
        .rejected()
        .map(|(i, reason)| serde_json::json!({ "line": lines[i], "reason": reason.to_string() }))
        .collect();
    let accepted = intake.accepted();
    state.deliver(&principal.tenant, intake.records).await?;
    Ok((
        status,
        axum::Json(serde_json::json!({ "accepted": accepted, "rejected": rejected })),
    )
        .into_response())
}

/// Stamps every non-blank line; returns the intake and each item's line number (from 1).
pub fn parse(
    tenant: &str,
    body: &[u8],
    config: &sluice_core::IngestConfig,
) -> (Intake, Vec<usize>) {
    let mut builder = IntakeBuilder::new(tenant, config);
    let mut lines = Vec::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines.push(n + 1);
        match std::str::from_utf8(line) {
            Err(e) => builder.reject(RejectReason::NotUtf8 {
                offset: e.valid_up_to(),
            }),
            Ok(text) if text.trim_start().starts_with('{') => builder.push(text),
            Ok(text) => builder.push(&plain_text_object(text)),
        }
    }
    (builder.finish(), lines)
}
