//! OTLP/HTTP logs and Loki push through the router.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Door, TestResult, gzip, json_of};
use prost::Message as _;
use sluice_api::loki::{EntryAdapter, LabelPair, PushRequest, StreamAdapter, Timestamp};
use sluice_api::otlp_proto::{
    AnyValue, ExportLogsServiceRequest, ExportLogsServiceResponse, KeyValue, LogRecord, Resource,
    ResourceLogs, ScopeLogs, any_value,
};

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: text(value),
    }
}

fn otlp_request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "checkout"), kv("tenant.id", "globex")],
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
            }],
        }],
    }
}

#[tokio::test]
async fn otlp_protobuf_maps_fields_and_stamps_the_keys_tenant() -> TestResult {
    let door = Door::new().await?;
    let record = LogRecord {
        time_unix_nano: now_ns(),
        severity_number: 17,
        body: text("payment failed"),
        attributes: vec![kv("http.method", "POST")],
        trace_id: vec![0xab; 16],
        span_id: vec![0xcd; 8],
        ..LogRecord::default()
    };
    let request = Request::post("/v1/logs")
        .header(header::AUTHORIZATION, format!("Bearer {}", door.ingest_key))
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(gzip(
            &otlp_request(vec![record]).encode_to_vec(),
        )))?;
    let (status, _, answer) = door.send(request).await?;
    assert_eq!(status, StatusCode::OK);
    let answer = ExportLogsServiceResponse::decode(answer.as_slice())?;
    assert_eq!(answer.partial_success, None);
    let stored = door.stored();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].partition_key, "acme/checkout");
    let json = json_of(&stored);
    assert_eq!(json[0]["tenant"], "acme");
    assert_eq!(json[0]["level"], "error");
    assert_eq!(json[0]["message"], "payment failed");
    assert_eq!(json[0]["trace_id"], "ab".repeat(16));
    assert_eq!(json[0]["span_id"], "cd".repeat(8));
    assert_eq!(json[0]["claimed_tenant"], "globex");
    Ok(())
}

#[tokio::test]
async fn otlp_json_with_hex_ids_answers_partial_success_for_a_rejected_record() -> TestResult {
    let door = Door::new().await?;
    let body = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
        "scopeLogs": [{"logRecords": [
            {"timeUnixNano": now_ns().to_string(), "severityText": "WARN",
             "body": {"kvlistValue": {"values": [{"key": "k", "value": {"intValue": "7"}}]}},
             "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"},
            {"timeUnixNano": "1000", "body": {"stringValue": "ancient"}}
        ]}]
    }]});
    let request = Request::post("/v1/logs")
        .header(header::AUTHORIZATION, format!("Bearer {}", door.ingest_key))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))?;
    let (status, _, answer) = door.send(request).await?;
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    assert_eq!(answer["partialSuccess"]["rejectedLogRecords"], "1");
    assert!(
        answer["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("timestamp")
    );
    let json = json_of(&door.stored());
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(json[0]["message"], serde_json::json!({"k": 7}));
    Ok(())
}

#[tokio::test]
async fn otlp_refuses_an_unreadable_payload_with_the_reason() -> TestResult {
    let door = Door::new().await?;
    let request = Request::post("/v1/logs")
        .header(header::AUTHORIZATION, format!("Bearer {}", door.ingest_key))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"xyz"}]}]}]}"#,
        ))?;
    let (status, _, answer) = door.send(request).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&answer).contains("hex"));
    assert!(door.stored().is_empty());
    Ok(())
}

fn loki_push(lines: &[&str]) -> PushRequest {
    let ns = now_ns() as i64;
    PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{job="api", tenant="globex", env="prod"}"#.into(),
            entries: lines
                .iter()
                .map(|line| EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: ns / 1_000_000_000,
                        nanos: (ns % 1_000_000_000) as i32,
                    }),
                    line: (*line).into(),
                    structured_metadata: vec![LabelPair {
                        name: "trace_id".into(),
                        value: "abc".into(),
                    }],
                })
                .collect(),
        }],
    }
}

#[tokio::test]
async fn loki_snappy_protobuf_is_stored_under_the_keys_tenant() -> TestResult {
    let door = Door::new().await?;
    let packed =
        snap::raw::Encoder::new().compress_vec(&loki_push(&["one", "two"]).encode_to_vec())?;
    let request = Request::post("/loki/api/v1/push")
        .header(header::AUTHORIZATION, format!("Bearer {}", door.ingest_key))
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Body::from(packed))?;
    let (status, _, _) = door.send(request).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stored = door.stored();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].partition_key, "acme/api");
    let json = json_of(&stored);
    assert_eq!(json[0]["message"], "one");
    assert_eq!(json[0]["env"], "prod");
    assert_eq!(json[0]["trace_id"], "abc");
    assert_eq!(json[0]["claimed_tenant"], "globex");
    Ok(())
}

#[tokio::test]
async fn loki_json_push_is_stored_and_a_bomb_is_refused() -> TestResult {
    let door = Door::with_config(sluice_api::ApiConfig {
        max_decoded_bytes: 1 << 20,
        ..sluice_api::ApiConfig::default()
    })
    .await?;
    let body = serde_json::json!({"streams": [{"stream": {"service_name": "web"},
        "values": [[now_ns().to_string(), "hello", {"user": "u1"}]]}]});
    let request = Request::post("/loki/api/v1/push")
        .header(header::AUTHORIZATION, format!("Bearer {}", door.ingest_key))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))?;
    let (status, _, _) = door.send(request).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let bomb = snap::raw::Encoder::new().compress_vec(&vec![0u8; 4 << 20])?;
    let request = Request::post("/loki/api/v1/push")
        .header(header::AUTHORIZATION, format!("Bearer {}", door.ingest_key))
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Body::from(bomb))?;
    let (status, _, _) = door.send(request).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let json = json_of(&door.stored());
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["user"], "u1");
    assert_eq!(door.stored().len(), 0);
    Ok(())
}
