//! OTLP/HTTP logs: `POST /v1/logs`, `application/x-protobuf` or `application/json`, gzip
//! accepted; the key as `Authorization: Bearer <key>` (the exporters' `headers` setting).
//!
//! Each log record becomes one record: `service.name` of its resource → `service`, severity
//! text (else the severity number's level) → `level`, body → `message` (a string as it is,
//! structured bodies as JSON), trace and span ids as hex, time (else observed time) → `ts`,
//! the record's and the resource's other attributes as fields (they go to `attrs`, unless
//! the normaliser knows them, like `http.method`).
//!
//! Answers follow the OTLP specification: 200 with an `ExportLogsServiceResponse` in the
//! request's encoding, whose `partial_success` counts the rejected records and gives the
//! first reason; 400 for a payload that cannot be read; 401/403/413/429/503 otherwise.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use prost::Message as _;
use sluice_core::tenancy::Scope;

use crate::error::{ApiError, Dialect};
use crate::intake::{Intake, IntakeBuilder};
use crate::object::{ObjectWriter, level_of_severity};
use crate::otlp_proto::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse, push_any_json,
};
use crate::router::ApiState;

/// The request's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Result<Encoding, ApiError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/x-protobuf");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        match mime.to_ascii_lowercase().as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
            "application/json" => Ok(Encoding::Json),
            other => Err(ApiError::Unsupported(format!(
                "Content-Type {other:?}: OTLP/HTTP is application/x-protobuf or application/json"
            ))),
        }
    }
}

/// The route's handler.
pub async fn logs(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Body) -> Response {
    match handle(&state, &headers, body).await {
        Ok(response) => response,
        Err(e) => e.render(Dialect::Plain),
    }
}

async fn handle(state: &ApiState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let encoding = Encoding::of(headers)?;
    let principal = state.authorize(headers, Scope::Ingest).await?;
    let body = crate::body::read(body, headers, &state.config).await?;
    let intake = parse(&principal.tenant, &body, encoding, &state.config.ingest)?;
    let rejected = intake.rejected_count();
    let first_reason = intake.rejected().next().map(|(_, r)| r.to_string());
    state.deliver(&principal.tenant, intake.records).await?;
    let partial_success = first_reason.map(|reason| ExportLogsPartialSuccess {
        rejected_log_records: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: format!("{rejected} log records rejected; the first: {reason}"),
    });
    Ok(answer(encoding, partial_success))
}

fn answer(encoding: Encoding, partial_success: Option<ExportLogsPartialSuccess>) -> Response {
    match encoding {
        Encoding::Protobuf => {
            let body = ExportLogsServiceResponse { partial_success }.encode_to_vec();
            let mut response = (StatusCode::OK, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            );
            response
        }
        Encoding::Json => {
            let body = match partial_success {
                None => serde_json::json!({}),
                Some(p) => serde_json::json!({"partialSuccess": {
                    "rejectedLogRecords": p.rejected_log_records.to_string(),
                    "errorMessage": p.error_message,
                }}),
            };
            (StatusCode::OK, axum::Json(body)).into_response()
        }
    }
}

/// Decodes a request and stamps each of its log records.
pub fn parse(
    tenant: &str,
    body: &[u8],
    encoding: Encoding,
    config: &sluice_core::IngestConfig,
) -> Result<Intake, ApiError> {
    let request = match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(body)
            .map_err(|e| ApiError::BadRequest(format!("not an OTLP logs request: {e}")))?,
        Encoding::Json => crate::otlp_json::from_json(body)
            .map_err(|e| ApiError::BadRequest(format!("not an OTLP/JSON logs request: {e}")))?,
    };
    Ok(stamp_request(tenant, &request, config))
}

/// Stamps every log record of a decoded request.
pub fn stamp_request(
    tenant: &str,
    request: &ExportLogsServiceRequest,
    config: &sluice_core::IngestConfig,
) -> Intake {
    let mut builder = IntakeBuilder::new(tenant, config);
    let mut w = ObjectWriter::default();
    let mut value = String::new();
    for resource_logs in &request.resource_logs {
        let resource_attrs = resource_logs
            .resource
            .as_ref()
            .map_or(&[][..], |r| r.attributes.as_slice());
        let service = resource_attrs.iter().find(|kv| kv.key == "service.name");
        for record in resource_logs.scope_logs.iter().flat_map(|s| &s.log_records) {
            w.begin();
            let ts = if record.time_unix_nano != 0 {
                record.time_unix_nano
            } else {
                record.observed_time_unix_nano
            };
            if ts != 0 {
                w.int("ts", i128::from(ts));
            }
            if let Some(service) = service {
                value.clear();
                push_any_json(&mut value, service.value.as_ref());
                w.raw("service", &value);
            }
            if !record.severity_text.is_empty() {
                w.str("level", &record.severity_text);
            } else if let Some(level) = level_of_severity(record.severity_number) {
                w.str("level", level);
            }
            if record.body.is_some() {
                value.clear();
                push_any_json(&mut value, record.body.as_ref());
                w.raw("message", &value);
            }
            if !record.trace_id.is_empty() {
                w.str("trace_id", &hex::encode(&record.trace_id));
            }
            if !record.span_id.is_empty() {
                w.str("span_id", &hex::encode(&record.span_id));
            }
            if !record.event_name.is_empty() {
                w.str("event_name", &record.event_name);
            }
            let others = record
                .attributes
                .iter()
                .chain(resource_attrs.iter().filter(|kv| kv.key != "service.name"));
            for kv in others {
                value.clear();
                push_any_json(&mut value, kv.value.as_ref());
                w.raw(&kv.key, &value);
            }
            builder.push(w.finish());
        }
    }
    builder.finish()
}
