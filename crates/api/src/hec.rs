//! Splunk HTTP Event Collector: `Authorization: Splunk <key>`.
//!
//! - `POST /services/collector/event` (also `/services/collector` and `…/event/1.0`): one or
//!   more JSON events, concatenated. An event's `event` is the record (an object's members are
//!   its fields, a string is its `message`); `time` (epoch seconds) becomes `ts`; `host`,
//!   `source`, `sourcetype`, `index` and the members of `fields` are added where the event does
//!   not have them already.
//! - `POST /services/collector/raw`: one record per line (a JSON object, or plain text as its
//!   `message`).
//! - `GET /services/collector/health`.
//!
//! Answers are HEC's: `{"text":"Success","code":0}`; a rejected event gives 400 with its
//! reason, `code` 6 and `invalid-event-number` (the events before and after it are stored).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value};
use sluice_core::RejectReason;
use sluice_core::tenancy::Scope;

use crate::error::{ApiError, Dialect};
use crate::intake::{Intake, IntakeBuilder};
use crate::router::ApiState;

/// The routes of this module.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/services/collector", post(event))
        .route("/services/collector/event", post(event))
        .route("/services/collector/event/1.0", post(event))
        .route("/services/collector/raw", post(raw))
        .route("/services/collector/raw/1.0", post(raw))
        .route("/services/collector/health", get(health))
        .route("/services/collector/health/1.0", get(health))
}

async fn health() -> Response {
    axum::Json(serde_json::json!({"text": "HEC is healthy", "code": 17})).into_response()
}

async fn event(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Body) -> Response {
    run(&state, &headers, body, parse_events).await
}

async fn raw(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Body) -> Response {
    run(&state, &headers, body, parse_raw).await
}

type Parser = fn(&str, &[u8], &sluice_core::IngestConfig) -> Result<Intake, ApiError>;

async fn run(state: &ApiState, headers: &HeaderMap, body: Body, parse: Parser) -> Response {
    let result = async {
        let principal = state.authorize(headers, Scope::Ingest).await?;
        let body = crate::body::read(body, headers, &state.config).await?;
        let intake = parse(&principal.tenant, &body, &state.config.ingest)?;
        let first_rejected = intake.rejected().next().map(|(i, r)| (i, r.to_string()));
        state.deliver(&principal.tenant, intake.records).await?;
        Ok::<_, ApiError>(match first_rejected {
            None => axum::Json(serde_json::json!({"text": "Success", "code": 0})).into_response(),
            Some((i, reason)) => (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({
                    "text": format!("Invalid data format: {reason}"),
                    "code": 6,
                    "invalid-event-number": i,
                })),
            )
                .into_response(),
        })
    }
    .await;
    result.unwrap_or_else(|e| e.render(Dialect::Splunk))
}

/// Concatenated HEC events to an intake.
pub fn parse_events(
    tenant: &str,
    body: &[u8],
    config: &sluice_core::IngestConfig,
) -> Result<Intake, ApiError> {
    let mut builder = IntakeBuilder::new(tenant, config);
    let events = serde_json::Deserializer::from_slice(body).into_iter::<Map<String, Value>>();
    for (i, event) in events.enumerate() {
        let event = event
            .map_err(|e| ApiError::BadRequest(format!("event {i} is not a JSON object: {e}")))?;
        match record_of(event) {
            Ok(object) => builder.push(&object),
            Err(reason) => builder.reject(reason),
        }
    }
    let intake = builder.finish();
    if intake.outcomes.is_empty() {
        return Err(ApiError::BadRequest("No data".into()));
    }
    Ok(intake)
}

/// One HEC event as a record object text.
fn record_of(mut event: Map<String, Value>) -> Result<String, RejectReason> {
    let mut record = match event.remove("event") {
        Some(Value::Object(fields)) => fields,
        Some(Value::String(text)) if !text.is_empty() => {
            let mut m = Map::new();
            m.insert("message".into(), Value::String(text));
            m
        }
        Some(Value::Null) | None => {
            return Err(RejectReason::NotJson {
                detail: "Event field is required".into(),
            });
        }
        Some(Value::String(_)) => {
            return Err(RejectReason::NotJson {
                detail: "Event field cannot be blank".into(),
            });
        }
        Some(other) => {
            let mut m = Map::new();
            m.insert("message".into(), Value::String(other.to_string()));
            m
        }
    };
    if let Some(time) = event.remove("time") {
        let time = match time {
            // HEC sends epoch seconds as a number or a string.
            Value::String(s) => s
                .parse::<f64>()
                .map(Value::from)
                .unwrap_or(Value::String(s)),
            other => other,
        };
        record.entry("ts").or_insert(time);
    }
    if let Some(Value::Object(fields)) = event.remove("fields") {
        for (k, v) in fields {
            record.entry(k).or_insert(v);
        }
    }
    for (k, v) in event {
        record.entry(k).or_insert(v);
    }
    Ok(Value::Object(record).to_string())
}

/// Raw HEC: one record per line (an object, or plain text as its message).
pub fn parse_raw(
    tenant: &str,
    body: &[u8],
    config: &sluice_core::IngestConfig,
) -> Result<Intake, ApiError> {
    let (intake, _) = crate::ndjson::parse(tenant, body, config);
    if intake.outcomes.is_empty() {
        return Err(ApiError::BadRequest("No data".into()));
    }
    Ok(intake)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_becomes_its_fields_with_time_host_and_fields_added() {
        let event: Map<String, Value> = serde_json::from_str(
            r#"{"time":"1714566896.5","host":"h1","sourcetype":"app","event":{"msg":"x","host":"own"},"fields":{"service":"web"}}"#,
        )
        .unwrap_or_default();
        let record: Value = record_of(event)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        assert_eq!(record["msg"], "x");
        assert_eq!(record["host"], "own");
        assert_eq!(record["ts"], 1_714_566_896.5);
        assert_eq!(record["service"], "web");
        assert_eq!(record["sourcetype"], "app");
        let text: Map<String, Value> =
            serde_json::from_str(r#"{"event":"plain words"}"#).unwrap_or_default();
        assert_eq!(
            record_of(text).ok().as_deref(),
            Some(r#"{"message":"plain words"}"#)
        );
        assert!(record_of(Map::new()).is_err());
    }
}
