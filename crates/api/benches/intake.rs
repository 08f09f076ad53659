//! Intake throughput per protocol, on one core: request parsing, re-encoding into record
//! objects and stamping (no stream), over the same generated logs (`sluice_core::synth`).
//! Targets (docs/ARCHITECTURE.md §8): at least 300,000 records/s for NDJSON, OTLP protobuf and
//! Elasticsearch bulk, and 150,000 for OTLP JSON and Loki (protobuf and JSON); Splunk HEC
//! (events and raw lines) has none. `cargo xtask bench` prints them against their targets.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;
use serde_json::{Map, Value};
use sluice_api::loki::{EntryAdapter, PushRequest, StreamAdapter, Timestamp};
use sluice_api::otlp::Encoding;
use sluice_api::otlp_proto::{
    AnyValue, ExportLogsServiceRequest, KeyValue, LogRecord, Resource, ResourceLogs, ScopeLogs,
    any_value,
};
use sluice_core::IngestConfig;
use sluice_core::synth::{Generator, SynthConfig};

const RECORDS: usize = 10_000;

fn records() -> Vec<(i64, Map<String, Value>, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let config = SynthConfig {
        events: RECORDS,
        start_ms: now - 3_600_000,
        duration_ms: 1_800_000,
        ..SynthConfig::default()
    };
    Generator::new(config)
        .filter_map(|e| {
            let line = String::from_utf8(e.payload).ok()?;
            let map: Map<String, Value> = serde_json::from_str(&line).ok()?;
            Some((e.ts_ms, map, line))
        })
        .collect()
}

fn any(v: &Value) -> Option<AnyValue> {
    let value = match v {
        Value::String(s) => any_value::Value::StringValue(s.clone()),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::Number(n) if n.is_i64() => any_value::Value::IntValue(n.as_i64().unwrap_or(0)),
        Value::Number(n) => any_value::Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
        other => any_value::Value::StringValue(other.to_string()),
    };
    Some(AnyValue { value: Some(value) })
}

fn otlp(records: &[(i64, Map<String, Value>, String)]) -> ExportLogsServiceRequest {
    let mut by_service: BTreeMap<String, Vec<LogRecord>> = BTreeMap::new();
    for (ts, map, _) in records {
        let service = map["service"].as_str().unwrap_or("unknown").to_owned();
        let attributes = map
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "service" | "tenant" | "ts" | "level" | "msg" | "message"
                )
            })
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: any(v),
            })
            .collect();
        by_service.entry(service).or_default().push(LogRecord {
            time_unix_nano: (*ts as u64) * 1_000_000,
            severity_text: map
                .get("level")
                .and_then(Value::as_str)
                .unwrap_or("info")
                .to_owned(),
            body: map.get("msg").or(map.get("message")).and_then(any),
            attributes,
            ..LogRecord::default()
        });
    }
    ExportLogsServiceRequest {
        resource_logs: by_service
            .into_iter()
            .map(|(service, log_records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: any(&Value::String(service)),
                    }],
                }),
                scope_logs: vec![ScopeLogs { log_records }],
            })
            .collect(),
    }
}

fn any_json(v: &Option<AnyValue>) -> Value {
    match v.as_ref().and_then(|a| a.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => serde_json::json!({"stringValue": s}),
        Some(any_value::Value::IntValue(i)) => serde_json::json!({"intValue": i.to_string()}),
        Some(any_value::Value::DoubleValue(d)) => serde_json::json!({"doubleValue": d}),
        Some(any_value::Value::BoolValue(b)) => serde_json::json!({"boolValue": b}),
        _ => Value::Null,
    }
}

fn otlp_json(request: &ExportLogsServiceRequest) -> Vec<u8> {
    let kvs = |kvs: &[KeyValue]| -> Vec<Value> {
        kvs.iter()
            .map(|kv| serde_json::json!({"key": kv.key, "value": any_json(&kv.value)}))
            .collect()
    };
    let resource_logs: Vec<Value> = request
        .resource_logs
        .iter()
        .map(|rl| {
            let records: Vec<Value> = rl.scope_logs[0]
                .log_records
                .iter()
                .map(|r| serde_json::json!({
                    "timeUnixNano": r.time_unix_nano.to_string(),
                    "severityText": r.severity_text,
                    "body": any_json(&r.body),
                    "attributes": kvs(&r.attributes),
                }))
                .collect();
            serde_json::json!({
                "resource": {"attributes": kvs(&rl.resource.as_ref().map(|r| r.attributes.clone()).unwrap_or_default())},
                "scopeLogs": [{"logRecords": records}],
            })
        })
        .collect();
    serde_json::json!({"resourceLogs": resource_logs})
        .to_string()
        .into_bytes()
}

fn loki(records: &[(i64, Map<String, Value>, String)]) -> Vec<u8> {
    let mut by_service: BTreeMap<String, Vec<EntryAdapter>> = BTreeMap::new();
    for (ts, map, line) in records {
        let service = map["service"].as_str().unwrap_or("unknown").to_owned();
        by_service.entry(service).or_default().push(EntryAdapter {
            timestamp: Some(Timestamp {
                seconds: ts / 1000,
                nanos: ((ts % 1000) * 1_000_000) as i32,
            }),
            line: line.clone(),
            structured_metadata: Vec::new(),
        });
    }
    let request = PushRequest {
        streams: by_service
            .into_iter()
            .map(|(service, entries)| StreamAdapter {
                labels: format!("{{service_name=\"{service}\", env=\"prod\"}}"),
                entries,
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap_or_default()
}

fn loki_json(records: &[(i64, Map<String, Value>, String)]) -> Vec<u8> {
    let mut by_service: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (ts, map, line) in records {
        let service = map["service"].as_str().unwrap_or("unknown").to_owned();
        let ns = (i128::from(*ts) * 1_000_000).to_string();
        by_service
            .entry(service)
            .or_default()
            .push(serde_json::json!([ns, line]));
    }
    let streams: Vec<Value> = by_service
        .into_iter()
        .map(|(service, values)| {
            serde_json::json!({"stream": {"service_name": service, "env": "prod"}, "values": values})
        })
        .collect();
    serde_json::json!({ "streams": streams })
        .to_string()
        .into_bytes()
}

/// Concatenated HEC events: each record as the `event`, its time in epoch seconds.
fn hec_events(records: &[(i64, Map<String, Value>, String)]) -> Vec<u8> {
    records
        .iter()
        .flat_map(|(ts, map, _)| {
            serde_json::json!({"time": *ts as f64 / 1000.0, "sourcetype": "_json", "event": map})
                .to_string()
                .into_bytes()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let records = records();
    let config = IngestConfig::default();
    let ndjson: Vec<u8> = records
        .iter()
        .flat_map(|(_, _, l)| format!("{l}\n").into_bytes())
        .collect();
    let bulk: Vec<u8> = records
        .iter()
        .flat_map(|(_, _, l)| format!("{{\"create\":{{}}}}\n{l}\n").into_bytes())
        .collect();
    let otlp_request = otlp(&records);
    let otlp_proto = otlp_request.encode_to_vec();
    let otlp_json = otlp_json(&otlp_request);
    let loki_body = loki(&records);
    let loki_json = loki_json(&records);
    let hec_events = hec_events(&records);
    // Every record must be accepted, or the bench would time the rejection path.
    let n = records.len();
    assert_eq!(
        sluice_api::ndjson::parse("acme", &ndjson, &config)
            .0
            .accepted(),
        n
    );
    let accepted = |r: Result<usize, sluice_api::ApiError>| r.unwrap_or_default();
    assert_eq!(
        accepted(
            sluice_api::otlp::parse("acme", &otlp_proto, Encoding::Protobuf, &config)
                .map(|i| i.accepted())
        ),
        n
    );
    assert_eq!(
        accepted(
            sluice_api::otlp::parse("acme", &otlp_json, Encoding::Json, &config)
                .map(|i| i.accepted())
        ),
        n
    );
    assert_eq!(
        accepted(
            sluice_api::elastic::parse("acme", &bulk, None, &config).map(|(_, i)| i.accepted())
        ),
        n
    );
    let loki_json_parse = || {
        sluice_api::loki::from_json(&loki_json)
            .map_err(sluice_api::ApiError::BadRequest)
            .and_then(|request| sluice_api::loki::stamp_request("acme", &request, &config))
            .map(|i| i.accepted())
    };
    assert_eq!(accepted(loki_json_parse()), n);
    assert_eq!(
        accepted(sluice_api::hec::parse_events("acme", &hec_events, &config).map(|i| i.accepted())),
        n
    );
    assert_eq!(
        accepted(sluice_api::hec::parse_raw("acme", &ndjson, &config).map(|i| i.accepted())),
        n
    );
    let mut group = c.benchmark_group("intake");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(20);
    group.bench_function("ndjson", |b| {
        b.iter(|| {
            black_box(
                sluice_api::ndjson::parse("acme", &ndjson, &config)
                    .0
                    .accepted(),
            )
        })
    });
    group.bench_function("otlp_protobuf", |b| {
        b.iter(|| {
            black_box(
                sluice_api::otlp::parse("acme", &otlp_proto, Encoding::Protobuf, &config)
                    .map(|i| i.accepted()),
            )
        })
    });
    group.bench_function("otlp_json", |b| {
        b.iter(|| {
            black_box(
                sluice_api::otlp::parse("acme", &otlp_json, Encoding::Json, &config)
                    .map(|i| i.accepted()),
            )
        })
    });
    group.bench_function("elasticsearch_bulk", |b| {
        b.iter(|| {
            black_box(
                sluice_api::elastic::parse("acme", &bulk, None, &config).map(|(_, i)| i.accepted()),
            )
        })
    });
    group.bench_function("loki_protobuf", |b| {
        b.iter(|| {
            let data = sluice_api::loki::unsnappy(&loki_body, 64 << 20).unwrap_or_default();
            let request = PushRequest::decode(data.as_slice()).unwrap_or_default();
            black_box(
                sluice_api::loki::stamp_request("acme", &request, &config).map(|i| i.accepted()),
            )
        })
    });
    group.bench_function("loki_json", |b| b.iter(|| black_box(loki_json_parse())));
    group.bench_function("hec_event", |b| {
        b.iter(|| {
            black_box(
                sluice_api::hec::parse_events("acme", &hec_events, &config).map(|i| i.accepted()),
            )
        })
    });
    group.bench_function("hec_raw", |b| {
        b.iter(|| {
            black_box(sluice_api::hec::parse_raw("acme", &ndjson, &config).map(|i| i.accepted()))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
