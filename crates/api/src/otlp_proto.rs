//! The OTLP logs messages, written as prost structs from opentelemetry-proto's
//! `opentelemetry/proto/{collector/logs,logs,common,resource}/v1/*.proto` (the fields the
//! front door reads; unknown fields are skipped by prost), and OTLP/JSON read into them
//! (lowerCamelCase names, hex trace and span ids, 64-bit integers as strings or numbers, as
//! the OTLP specification says; snake_case names are accepted too).

use base64::Engine as _;
use serde_json::Value as Json;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ResourceLogs>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportLogsPartialSuccess>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsPartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_log_records: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceLogs {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ScopeLogs>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeLogs {
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LogRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LogRecord {
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    #[prost(int32, tag = "2")]
    pub severity_number: i32,
    #[prost(string, tag = "3")]
    pub severity_text: String,
    #[prost(message, optional, tag = "5")]
    pub body: Option<AnyValue>,
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<KeyValue>,
    #[prost(bytes = "vec", tag = "9")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "10")]
    pub span_id: Vec<u8>,
    #[prost(fixed64, tag = "11")]
    pub observed_time_unix_nano: u64,
    #[prost(string, tag = "12")]
    pub event_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<any_value::Value>,
}

pub mod any_value {
    //! The variants of an attribute or body value.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        #[prost(message, tag = "5")]
        ArrayValue(super::ArrayValue),
        #[prost(message, tag = "6")]
        KvlistValue(super::KeyValueList),
        #[prost(bytes = "vec", tag = "7")]
        BytesValue(Vec<u8>),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// Appends a value as JSON text (kvlists as objects, arrays as arrays, bytes as base64).
pub fn push_any_json(out: &mut String, value: Option<&AnyValue>) {
    use any_value::Value as V;
    match value.and_then(|v| v.value.as_ref()) {
        None => out.push_str("null"),
        Some(V::StringValue(s)) => crate::object::push_json_str(out, s),
        Some(V::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(V::IntValue(i)) => out.push_str(&i.to_string()),
        Some(V::DoubleValue(d)) if d.is_finite() => {
            out.push_str(&serde_json::Value::from(*d).to_string())
        }
        Some(V::DoubleValue(d)) => crate::object::push_json_str(out, &d.to_string()),
        Some(V::BytesValue(b)) => {
            crate::object::push_json_str(out, &base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(V::ArrayValue(a)) => {
            out.push('[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_any_json(out, Some(v));
            }
            out.push(']');
        }
        Some(V::KvlistValue(kv)) => {
            out.push('{');
            for (i, pair) in kv.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                crate::object::push_json_str(out, &pair.key);
                out.push(':');
                push_any_json(out, pair.value.as_ref());
            }
            out.push('}');
        }
    }
}

/// Reads an OTLP/JSON request.
pub fn from_json(body: &[u8]) -> Result<ExportLogsServiceRequest, String> {
    let root: Json = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let resource_logs = list(&root, "resourceLogs", "resource_logs")
        .iter()
        .map(|rl| {
            let resource = field(rl, "resource", "resource").map(|r| {
                Ok::<_, String>(Resource {
                    attributes: key_values(list(r, "attributes", "attributes"))?,
                })
            });
            let scopes = list(rl, "scopeLogs", "scope_logs")
                .iter()
                .map(|sl| {
                    let log_records = list(sl, "logRecords", "log_records")
                        .iter()
                        .map(log_record)
                        .collect::<Result<_, _>>()?;
                    Ok(ScopeLogs { log_records })
                })
                .collect::<Result<_, String>>()?;
            Ok(ResourceLogs {
                resource: resource.transpose()?,
                scope_logs: scopes,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(ExportLogsServiceRequest { resource_logs })
}

fn field<'a>(v: &'a Json, camel: &str, snake: &str) -> Option<&'a Json> {
    v.get(camel)
        .or_else(|| v.get(snake))
        .filter(|v| !v.is_null())
}

fn list<'a>(v: &'a Json, camel: &str, snake: &str) -> &'a [Json] {
    field(v, camel, snake)
        .and_then(Json::as_array)
        .map_or(&[], Vec::as_slice)
}

fn text(v: &Json, camel: &str, snake: &str) -> String {
    field(v, camel, snake)
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A 64-bit integer given as a number or a decimal string.
fn int(v: Option<&Json>, what: &str) -> Result<i128, String> {
    match v {
        None => Ok(0),
        Some(Json::Number(n)) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .ok_or_else(|| format!("{what}: {n} is not an integer")),
        Some(Json::String(s)) => s
            .parse::<i128>()
            .map_err(|_| format!("{what}: {s:?} is not an integer")),
        Some(other) => Err(format!("{what}: {other} is not an integer")),
    }
}

fn id(v: &Json, camel: &str, snake: &str, len: usize) -> Result<Vec<u8>, String> {
    let hex_text = text(v, camel, snake);
    if hex_text.is_empty() {
        return Ok(Vec::new());
    }
    match hex::decode(&hex_text) {
        Ok(bytes) if bytes.len() == len => Ok(bytes),
        _ => Err(format!(
            "{camel} {hex_text:?} is not {len} bytes of hex (OTLP/JSON ids are hex)"
        )),
    }
}

fn severity(v: Option<&Json>) -> Result<i32, String> {
    match v {
        // Enum names are accepted too: SEVERITY_NUMBER_INFO2 and the like.
        Some(Json::String(s)) if s.starts_with("SEVERITY_NUMBER_") => {
            let name = &s["SEVERITY_NUMBER_".len()..];
            let (base, digit) = match name.char_indices().find(|(_, c)| c.is_ascii_digit()) {
                Some((i, _)) => (&name[..i], name[i..].parse::<i32>().unwrap_or(1)),
                None => (name, 1),
            };
            let first = match base {
                "TRACE" => 1,
                "DEBUG" => 5,
                "INFO" => 9,
                "WARN" => 13,
                "ERROR" => 17,
                "FATAL" => 21,
                _ => return Ok(0),
            };
            Ok(first + digit - 1)
        }
        other => int(other, "severityNumber").map(|n| i32::try_from(n).unwrap_or(0)),
    }
}

fn log_record(v: &Json) -> Result<LogRecord, String> {
    let nanos =
        |camel, snake| int(field(v, camel, snake), camel).map(|n| u64::try_from(n).unwrap_or(0));
    Ok(LogRecord {
        time_unix_nano: nanos("timeUnixNano", "time_unix_nano")?,
        observed_time_unix_nano: nanos("observedTimeUnixNano", "observed_time_unix_nano")?,
        severity_number: severity(field(v, "severityNumber", "severity_number"))?,
        severity_text: text(v, "severityText", "severity_text"),
        body: field(v, "body", "body").map(any_value).transpose()?,
        attributes: key_values(list(v, "attributes", "attributes"))?,
        trace_id: id(v, "traceId", "trace_id", 16)?,
        span_id: id(v, "spanId", "span_id", 8)?,
        event_name: text(v, "eventName", "event_name"),
    })
}

fn key_values(items: &[Json]) -> Result<Vec<KeyValue>, String> {
    items
        .iter()
        .map(|kv| {
            Ok(KeyValue {
                key: text(kv, "key", "key"),
                value: field(kv, "value", "value").map(any_value).transpose()?,
            })
        })
        .collect()
}

fn any_value(v: &Json) -> Result<AnyValue, String> {
    use any_value::Value as V;
    let value = if let Some(s) = field(v, "stringValue", "string_value") {
        Some(V::StringValue(s.as_str().unwrap_or_default().to_owned()))
    } else if let Some(b) = field(v, "boolValue", "bool_value") {
        Some(V::BoolValue(b.as_bool().unwrap_or_default()))
    } else if let Some(i) = field(v, "intValue", "int_value") {
        Some(V::IntValue(
            i64::try_from(int(Some(i), "intValue")?).unwrap_or_default(),
        ))
    } else if let Some(d) = field(v, "doubleValue", "double_value") {
        Some(V::DoubleValue(d.as_f64().unwrap_or_default()))
    } else if let Some(a) = field(v, "arrayValue", "array_value") {
        Some(V::ArrayValue(ArrayValue {
            values: list(a, "values", "values")
                .iter()
                .map(any_value)
                .collect::<Result<_, _>>()?,
        }))
    } else if let Some(kv) = field(v, "kvlistValue", "kvlist_value") {
        Some(V::KvlistValue(KeyValueList {
            values: key_values(list(kv, "values", "values"))?,
        }))
    } else if let Some(b) = field(v, "bytesValue", "bytes_value") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b.as_str().unwrap_or_default())
            .map_err(|e| format!("bytesValue is not base64: {e}"))?;
        Some(V::BytesValue(decoded))
    } else {
        None
    };
    Ok(AnyValue { value })
}
