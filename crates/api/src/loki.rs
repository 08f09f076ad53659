//! Loki push: `POST /loki/api/v1/push`, JSON (gzip accepted) or snappy-compressed protobuf
//! (`application/x-protobuf`, Loki's `push.proto`); the key as `Authorization: Bearer <key>`
//! or `Basic` with the key as the password (Promtail, Alloy, Fluent Bit's `loki` output).
//!
//! Each entry becomes one record: the line → `message`, its time → `ts`, the stream's labels
//! and the entry's structured metadata → fields (a `service_name`, `service` or `app` label is
//! the service, as the normaliser reads them; else `job`). Loki answers 204; so does this.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use prost::Message as _;
use sluice_core::tenancy::Scope;

use crate::error::{ApiError, Dialect};
use crate::intake::{Intake, IntakeBuilder};
use crate::object::ObjectWriter;
use crate::router::ApiState;

/// Loki's `logproto.PushRequest` (pkg/push/push.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// Prometheus label syntax: `{job="x", level="info"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPair>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The route's handler.
pub async fn push(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let protobuf = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("protobuf"));
        let principal = state.authorize(&headers, Scope::Ingest).await?;
        let intake = if protobuf {
            let raw = crate::body::read_raw(body, &headers, state.config.max_body_bytes).await?;
            let data = unsnappy(&raw, state.config.max_decoded_bytes)?;
            let request = PushRequest::decode(data.as_slice())
                .map_err(|e| ApiError::BadRequest(format!("not a Loki push request: {e}")))?;
            stamp_request(&principal.tenant, &request, &state.config.ingest)?
        } else {
            let body = crate::body::read(body, &headers, &state.config).await?;
            let request = from_json(&body).map_err(ApiError::BadRequest)?;
            stamp_request(&principal.tenant, &request, &state.config.ingest)?
        };
        let rejected = intake
            .rejected()
            .next()
            .map(|(i, r)| format!("entry {i}: {r}"));
        state.deliver(&principal.tenant, intake.records).await?;
        Ok::<_, ApiError>(match rejected {
            None => StatusCode::NO_CONTENT.into_response(),
            // Loki answers a partly bad push with 400 and the reason; the good entries are kept.
            Some(reason) => (StatusCode::BAD_REQUEST, reason).into_response(),
        })
    }
    .await;
    result.unwrap_or_else(|e| e.render(Dialect::Plain))
}

/// Decompresses a snappy block, refusing one that says it is larger than `limit` before any
/// memory is taken for it.
pub fn unsnappy(data: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let len = snap::raw::decompress_len(data)
        .map_err(|e| ApiError::BadRequest(format!("corrupt snappy body: {e}")))?;
    if len > limit {
        return Err(ApiError::TooLarge {
            what: "the decompressed body",
            limit,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(data)
        .map_err(|e| ApiError::BadRequest(format!("corrupt snappy body: {e}")))
}

/// Reads Loki's JSON push body into the protobuf shape.
pub fn from_json(body: &[u8]) -> Result<PushRequest, String> {
    #[derive(serde::Deserialize)]
    struct Push {
        streams: Vec<Stream>,
    }
    #[derive(serde::Deserialize)]
    struct Stream {
        #[serde(default)]
        stream: std::collections::BTreeMap<String, String>,
        values: Vec<Vec<serde_json::Value>>,
    }
    let push: Push = serde_json::from_slice(body).map_err(|e| format!("not a Loki push: {e}"))?;
    let mut streams = Vec::with_capacity(push.streams.len());
    for stream in push.streams {
        let mut labels = String::from("{");
        for (i, (k, v)) in stream.stream.iter().enumerate() {
            if i > 0 {
                labels.push_str(", ");
            }
            labels.push_str(k);
            labels.push('=');
            crate::object::push_json_str(&mut labels, v);
        }
        labels.push('}');
        let mut entries = Vec::with_capacity(stream.values.len());
        for value in stream.values {
            let (ts, line) = match value.as_slice() {
                [
                    serde_json::Value::String(ts),
                    serde_json::Value::String(line),
                    ..,
                ] => (ts, line),
                _ => return Err("a value is not [\"<unix ns>\", \"<line>\", ...]".into()),
            };
            let ns: i128 = ts
                .parse()
                .map_err(|_| format!("timestamp {ts:?} is not unix nanoseconds"))?;
            let structured_metadata = match value.get(2) {
                Some(serde_json::Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| LabelPair {
                        name: k.clone(),
                        value: v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            entries.push(EntryAdapter {
                timestamp: Some(Timestamp {
                    seconds: i64::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(0),
                    nanos: i32::try_from(ns.rem_euclid(1_000_000_000)).unwrap_or(0),
                }),
                line: line.clone(),
                structured_metadata,
            });
        }
        streams.push(StreamAdapter { labels, entries });
    }
    Ok(PushRequest { streams })
}

/// Parses Prometheus label syntax: `{a="x", b="y \"q\""}`.
pub fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("labels {text:?} are not {{name=\"value\", ...}}"))?;
    let mut out = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("labels {text:?}: a label has no '='"))?;
        let after = after.trim_start();
        let mut chars = after.char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("labels {text:?}: a value is not quoted"));
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (true, 'n') => {
                    value.push('\n');
                    escaped = false;
                }
                (true, c) => {
                    value.push(c);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        let end = end.ok_or_else(|| format!("labels {text:?}: an unterminated value"))?;
        out.push((name.trim().to_owned(), value));
        rest = after[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

/// Stamps every entry of a push.
pub fn stamp_request(
    tenant: &str,
    request: &PushRequest,
    config: &sluice_core::IngestConfig,
) -> Result<Intake, ApiError> {
    let mut builder = IntakeBuilder::new(tenant, config);
    let mut w = ObjectWriter::default();
    for stream in &request.streams {
        let labels = parse_labels(&stream.labels).map_err(ApiError::BadRequest)?;
        let has_service = labels
            .iter()
            .any(|(k, _)| matches!(k.as_str(), "service_name" | "service" | "app"));
        for entry in &stream.entries {
            w.begin();
            if let Some(ts) = &entry.timestamp {
                w.int(
                    "ts",
                    i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos),
                );
            }
            w.str("message", &entry.line);
            for (k, v) in &labels {
                if k == "job" && !has_service {
                    w.str("service", v);
                }
                w.str(k, v);
            }
            for pair in &entry.structured_metadata {
                w.str(&pair.name, &pair.value);
            }
            builder.push(w.finish());
        }
    }
    Ok(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prometheus_labels_with_escapes() {
        assert_eq!(
            parse_labels(r#"{job="api", msg="say \"hi\"\n", x = "a,b"}"#),
            Ok(vec![
                ("job".into(), "api".into()),
                ("msg".into(), "say \"hi\"\n".into()),
                ("x".into(), "a,b".into()),
            ])
        );
        assert_eq!(parse_labels("{}"), Ok(vec![]));
        assert!(parse_labels("job=api").is_err());
        assert!(parse_labels(r#"{job="api}"#).is_err());
    }

    #[test]
    fn refuses_a_snappy_bomb_before_decompressing_it() {
        let big = vec![b'a'; 8 << 20];
        let packed = snap::raw::Encoder::new()
            .compress_vec(&big)
            .unwrap_or_default();
        assert!(packed.len() < 1 << 20);
        let err = unsnappy(&packed, 1 << 20);
        assert!(matches!(err, Err(ApiError::TooLarge { .. })), "{err:?}");
        assert_eq!(
            unsnappy(&packed, 8 << 20).map(|v| v.len()).ok(),
            Some(8 << 20)
        );
    }
}
