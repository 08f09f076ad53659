//! OTLP/JSON logs read into the protobuf shape ([`crate::otlp_proto`]), in one typed pass.
//!
//! The mapping is the OTLP specification's (proto3 JSON with its OTLP exceptions):
//! lowerCamelCase names (snake_case accepted too, one of the two per field), trace and span ids
//! as hex (16 and 8 bytes), 64-bit integers as decimal strings or numbers, `severityNumber` as
//! a number or its enum name (`SEVERITY_NUMBER_INFO2`), `AnyValue` as an object holding at most
//! one of `stringValue`, `boolValue`, `intValue`, `doubleValue` (a number, or `"NaN"`,
//! `"Infinity"`, `"-Infinity"`), `arrayValue`, `kvlistValue`, `bytesValue` (base64). A `null`
//! field reads as an absent one; fields the front door does not read are skipped (their JSON
//! is still checked).
//!
//! Strict: the body must be one JSON text (serde_json's grammar, nesting bounded), a field of
//! the wrong type, a field given twice, a bad id or a value with two kinds is a 400 with the
//! exact reason and position.
//!
//! Speed: the text is deserialised straight into typed structs (no generic JSON tree, no map
//! per object); integers and ids are read from the borrowed text without a copy. It is the
//! OTLP JSON line of the intake bench (docs/ARCHITECTURE.md §8).

use std::fmt;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::otlp_proto::{
    AnyValue, ArrayValue, ExportLogsServiceRequest, KeyValue, KeyValueList, LogRecord, Resource,
    ResourceLogs, ScopeLogs, any_value,
};

/// Reads an OTLP/JSON logs request.
pub fn from_json(body: &[u8]) -> Result<ExportLogsServiceRequest, String> {
    let request: JsonRequest = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(ExportLogsServiceRequest {
        resource_logs: list(request.resource_logs)
            .into_iter()
            .map(JsonResourceLogs::into_proto)
            .collect(),
    })
}

fn list<T>(items: Option<Vec<T>>) -> Vec<T> {
    items.unwrap_or_default()
}

#[derive(Deserialize)]
struct JsonRequest {
    #[serde(default, rename = "resourceLogs", alias = "resource_logs")]
    resource_logs: Option<Vec<JsonResourceLogs>>,
}

#[derive(Deserialize)]
struct JsonResourceLogs {
    #[serde(default)]
    resource: Option<JsonResource>,
    #[serde(default, rename = "scopeLogs", alias = "scope_logs")]
    scope_logs: Option<Vec<JsonScopeLogs>>,
}

impl JsonResourceLogs {
    fn into_proto(self) -> ResourceLogs {
        ResourceLogs {
            resource: self.resource.map(|r| Resource {
                attributes: key_values(r.attributes),
            }),
            scope_logs: list(self.scope_logs)
                .into_iter()
                .map(|s| ScopeLogs {
                    log_records: list(s.log_records)
                        .into_iter()
                        .map(JsonLogRecord::into_proto)
                        .collect(),
                })
                .collect(),
        }
    }
}

#[derive(Deserialize)]
struct JsonResource {
    #[serde(default)]
    attributes: Option<Vec<JsonKeyValue>>,
}

#[derive(Deserialize)]
struct JsonScopeLogs {
    #[serde(default, rename = "logRecords", alias = "log_records")]
    log_records: Option<Vec<JsonLogRecord>>,
}

#[derive(Deserialize)]
struct JsonLogRecord {
    #[serde(default, rename = "timeUnixNano", alias = "time_unix_nano")]
    time_unix_nano: Option<Nanos>,
    #[serde(
        default,
        rename = "observedTimeUnixNano",
        alias = "observed_time_unix_nano"
    )]
    observed_time_unix_nano: Option<Nanos>,
    #[serde(default, rename = "severityNumber", alias = "severity_number")]
    severity_number: Option<Severity>,
    #[serde(default, rename = "severityText", alias = "severity_text")]
    severity_text: Option<String>,
    #[serde(default)]
    body: Option<JsonAnyValue>,
    #[serde(default)]
    attributes: Option<Vec<JsonKeyValue>>,
    #[serde(default, rename = "traceId", alias = "trace_id")]
    trace_id: Option<Id<16>>,
    #[serde(default, rename = "spanId", alias = "span_id")]
    span_id: Option<Id<8>>,
    #[serde(default, rename = "eventName", alias = "event_name")]
    event_name: Option<String>,
}

impl JsonLogRecord {
    fn into_proto(self) -> LogRecord {
        LogRecord {
            time_unix_nano: self.time_unix_nano.map_or(0, |n| n.0),
            observed_time_unix_nano: self.observed_time_unix_nano.map_or(0, |n| n.0),
            severity_number: self.severity_number.map_or(0, |s| s.0),
            severity_text: self.severity_text.unwrap_or_default(),
            body: self.body.map(JsonAnyValue::into_proto),
            attributes: key_values(self.attributes),
            trace_id: self.trace_id.map(|id| id.0).unwrap_or_default(),
            span_id: self.span_id.map(|id| id.0).unwrap_or_default(),
            event_name: self.event_name.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct JsonKeyValue {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<JsonAnyValue>,
}

fn key_values(items: Option<Vec<JsonKeyValue>>) -> Vec<KeyValue> {
    list(items)
        .into_iter()
        .map(|kv| KeyValue {
            key: kv.key.unwrap_or_default(),
            value: kv.value.map(JsonAnyValue::into_proto),
        })
        .collect()
}

/// An `AnyValue`, read from [`AnyValueFields`] (at most one kind).
#[derive(Deserialize)]
#[serde(try_from = "AnyValueFields")]
struct JsonAnyValue(AnyValue);

impl JsonAnyValue {
    fn into_proto(self) -> AnyValue {
        self.0
    }
}

/// The fields of an `AnyValue` object, as given.
#[derive(Deserialize)]
struct AnyValueFields {
    #[serde(default, rename = "stringValue", alias = "string_value")]
    string_value: Option<String>,
    #[serde(default, rename = "boolValue", alias = "bool_value")]
    bool_value: Option<bool>,
    #[serde(default, rename = "intValue", alias = "int_value")]
    int_value: Option<Int64>,
    #[serde(default, rename = "doubleValue", alias = "double_value")]
    double_value: Option<Double>,
    #[serde(default, rename = "arrayValue", alias = "array_value")]
    array_value: Option<JsonArrayValue>,
    #[serde(default, rename = "kvlistValue", alias = "kvlist_value")]
    kvlist_value: Option<JsonKeyValueList>,
    #[serde(default, rename = "bytesValue", alias = "bytes_value")]
    bytes_value: Option<Base64>,
}

#[derive(Deserialize)]
struct JsonArrayValue {
    #[serde(default)]
    values: Option<Vec<JsonAnyValue>>,
}

#[derive(Deserialize)]
struct JsonKeyValueList {
    #[serde(default)]
    values: Option<Vec<JsonKeyValue>>,
}

impl TryFrom<AnyValueFields> for JsonAnyValue {
    type Error = &'static str;

    fn try_from(fields: AnyValueFields) -> Result<Self, Self::Error> {
        if fields.kinds() > 1 {
            return Err(
                "an AnyValue holds more than one of stringValue, boolValue, intValue, \
                 doubleValue, arrayValue, kvlistValue, bytesValue",
            );
        }
        Ok(JsonAnyValue(fields.into_proto()))
    }
}

impl AnyValueFields {
    fn into_proto(self) -> AnyValue {
        use any_value::Value as V;
        let value = if let Some(s) = self.string_value {
            Some(V::StringValue(s))
        } else if let Some(b) = self.bool_value {
            Some(V::BoolValue(b))
        } else if let Some(i) = self.int_value {
            Some(V::IntValue(i.0))
        } else if let Some(d) = self.double_value {
            Some(V::DoubleValue(d.0))
        } else if let Some(a) = self.array_value {
            Some(V::ArrayValue(ArrayValue {
                values: list(a.values)
                    .into_iter()
                    .map(JsonAnyValue::into_proto)
                    .collect(),
            }))
        } else if let Some(kv) = self.kvlist_value {
            Some(V::KvlistValue(KeyValueList {
                values: key_values(kv.values),
            }))
        } else {
            self.bytes_value.map(|b| V::BytesValue(b.0))
        };
        AnyValue { value }
    }

    fn kinds(&self) -> usize {
        usize::from(self.string_value.is_some())
            + usize::from(self.bool_value.is_some())
            + usize::from(self.int_value.is_some())
            + usize::from(self.double_value.is_some())
            + usize::from(self.array_value.is_some())
            + usize::from(self.kvlist_value.is_some())
            + usize::from(self.bytes_value.is_some())
    }
}

/// An integer given as a JSON number or a decimal string, within `i128` (then narrowed).
fn integer<'de, D: Deserializer<'de>>(d: D, what: &'static str) -> Result<i128, D::Error> {
    struct IntVisitor(&'static str);
    impl Visitor<'_> for IntVisitor {
        type Value = i128;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}: an integer, as a number or a decimal string", self.0)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i128, E> {
            Ok(i128::from(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i128, E> {
            Ok(i128::from(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i128, E> {
            v.parse::<i128>()
                .map_err(|_| E::custom(format!("{}: {v:?} is not an integer", self.0)))
        }
    }
    d.deserialize_any(IntVisitor(what))
}

/// A time in nanoseconds since the epoch (a negative or too large one reads as none).
struct Nanos(u64);

impl<'de> Deserialize<'de> for Nanos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        integer(d, "timeUnixNano").map(|n| Nanos(u64::try_from(n).unwrap_or(0)))
    }
}

/// `intValue`: an int64 (out of range reads as 0).
struct Int64(i64);

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        integer(d, "intValue").map(|n| Int64(i64::try_from(n).unwrap_or(0)))
    }
}

/// `doubleValue`: a number, a numeric string, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
struct Double(f64);

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DoubleVisitor;
        impl Visitor<'_> for DoubleVisitor {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("doubleValue: a number, or \"NaN\", \"Infinity\", \"-Infinity\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                match v {
                    "NaN" => Ok(f64::NAN),
                    "Infinity" => Ok(f64::INFINITY),
                    "-Infinity" => Ok(f64::NEG_INFINITY),
                    _ => v
                        .parse::<f64>()
                        .ok()
                        .filter(|d| d.is_finite())
                        .ok_or_else(|| E::custom(format!("doubleValue: {v:?} is not a number"))),
                }
            }
        }
        d.deserialize_any(DoubleVisitor).map(Double)
    }
}

/// `bytesValue`: standard base64.
struct Base64(Vec<u8>);

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Base64Visitor;
        impl Visitor<'_> for Base64Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytesValue: a base64 string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|e| E::custom(format!("bytesValue is not base64: {e}")))
            }
        }
        d.deserialize_str(Base64Visitor).map(Base64)
    }
}

/// A trace (16 bytes) or span (8 bytes) id as hex; `""` is no id.
struct Id<const LEN: usize>(Vec<u8>);

impl<'de, const LEN: usize> Deserialize<'de> for Id<LEN> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor<const LEN: usize>;
        impl<const LEN: usize> Visitor<'_> for IdVisitor<LEN> {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an id of {LEN} bytes as hex")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                if v.is_empty() {
                    return Ok(Vec::new());
                }
                let name = if LEN == 16 { "traceId" } else { "spanId" };
                match hex::decode(v) {
                    Ok(bytes) if bytes.len() == LEN => Ok(bytes),
                    _ => Err(E::custom(format!(
                        "{name} {v:?} is not {LEN} bytes of hex (OTLP/JSON ids are hex)"
                    ))),
                }
            }
        }
        d.deserialize_str(IdVisitor::<LEN>).map(Id)
    }
}

/// `severityNumber`: a number, a decimal string, or the enum's name (`SEVERITY_NUMBER_WARN3`;
/// an unknown name reads as unspecified).
struct Severity(i32);

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SeverityVisitor;
        impl Visitor<'_> for SeverityVisitor {
            type Value = i32;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("severityNumber: a number or a SEVERITY_NUMBER_ name")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
                Ok(i32::try_from(v).unwrap_or(0))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
                Ok(i32::try_from(v).unwrap_or(0))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<i32, E> {
                match v.strip_prefix("SEVERITY_NUMBER_") {
                    Some(name) => Ok(severity_of_name(name)),
                    None => v.parse::<i64>().map_or_else(
                        |_| {
                            Err(E::custom(format!(
                                "severityNumber: {v:?} is not a severity"
                            )))
                        },
                        |n| Ok(i32::try_from(n).unwrap_or(0)),
                    ),
                }
            }
        }
        d.deserialize_any(SeverityVisitor).map(Severity)
    }
}

/// `INFO` → 9, `INFO2` → 10, ... (`SEVERITY_NUMBER_` stripped); unknown → 0.
fn severity_of_name(name: &str) -> i32 {
    let (base, step) = match name.char_indices().find(|(_, c)| c.is_ascii_digit()) {
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
        _ => return 0,
    };
    if (1..=4).contains(&step) {
        first + step - 1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use any_value::Value as V;

    fn value(v: Option<&AnyValue>) -> Option<&V> {
        v.and_then(|a| a.value.as_ref())
    }

    fn first_record(request: &ExportLogsServiceRequest) -> Option<&LogRecord> {
        request
            .resource_logs
            .first()?
            .scope_logs
            .first()?
            .log_records
            .first()
    }

    #[test]
    fn reads_hex_ids_string_and_number_int64s_and_resource_attributes() -> Result<(), String> {
        let request = from_json(
            br#"{"resourceLogs":[{
                "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
                "scopeLogs":[{"scope":{"name":"ignored"},"logRecords":[{
                    "timeUnixNano":"1700000000000000001","observedTimeUnixNano":1700000000000000002,
                    "severityNumber":17,"severityText":"ERROR","body":{"stringValue":"boom"},
                    "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174",
                    "eventName":"checkout.failed","flags":1,"droppedAttributesCount":0}]}]}]}"#,
        )?;
        let resource = request.resource_logs[0].resource.as_ref();
        assert_eq!(
            resource.map(|r| r.attributes[0].key.as_str()),
            Some("service.name")
        );
        let record = first_record(&request).ok_or("no record")?;
        assert_eq!(record.time_unix_nano, 1_700_000_000_000_000_001);
        assert_eq!(record.observed_time_unix_nano, 1_700_000_000_000_000_002);
        assert_eq!(record.severity_number, 17);
        assert_eq!(record.severity_text, "ERROR");
        assert_eq!(
            value(record.body.as_ref()),
            Some(&V::StringValue("boom".into()))
        );
        assert_eq!(
            hex::encode(&record.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(hex::encode(&record.span_id), "eee19b7ec3c1b174");
        assert_eq!(record.event_name, "checkout.failed");
        Ok(())
    }

    #[test]
    fn reads_every_any_value_kind_and_snake_case_names() -> Result<(), String> {
        let request = from_json(
            br#"{"resource_logs":[{"scope_logs":[{"log_records":[{"attributes":[
                {"key":"s","value":{"string_value":"x\u00e9\n"}},
                {"key":"b","value":{"boolValue":true}},
                {"key":"i","value":{"intValue":"-9223372036854775808"}},
                {"key":"i2","value":{"intValue":42}},
                {"key":"d","value":{"doubleValue":1.5}},
                {"key":"nan","value":{"doubleValue":"NaN"}},
                {"key":"a","value":{"arrayValue":{"values":[{"intValue":"1"},{"stringValue":"two"}]}}},
                {"key":"kv","value":{"kvlistValue":{"values":[{"key":"k","value":{"boolValue":false}}]}}},
                {"key":"raw","value":{"bytesValue":"AAEC"}},
                {"key":"empty","value":{}},
                {"key":"none"}
            ]}]}]}]}"#,
        )?;
        let record = first_record(&request).ok_or("no record")?;
        let attr = |k: &str| {
            record
                .attributes
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| value(kv.value.as_ref()))
        };
        assert_eq!(attr("s"), Some(&V::StringValue("xé\n".into())));
        assert_eq!(attr("b"), Some(&V::BoolValue(true)));
        assert_eq!(attr("i"), Some(&V::IntValue(i64::MIN)));
        assert_eq!(attr("i2"), Some(&V::IntValue(42)));
        assert_eq!(attr("d"), Some(&V::DoubleValue(1.5)));
        assert!(matches!(attr("nan"), Some(V::DoubleValue(d)) if d.is_nan()));
        let Some(V::ArrayValue(a)) = attr("a") else {
            return Err(format!("a: {:?}", attr("a")));
        };
        assert_eq!(value(a.values.get(1)), Some(&V::StringValue("two".into())));
        let Some(V::KvlistValue(kv)) = attr("kv") else {
            return Err(format!("kv: {:?}", attr("kv")));
        };
        assert_eq!(kv.values[0].key, "k");
        assert_eq!(attr("raw"), Some(&V::BytesValue(vec![0, 1, 2])));
        assert_eq!(attr("empty"), None);
        assert_eq!(attr("none"), None);
        Ok(())
    }

    #[test]
    fn reads_severity_enum_names_and_null_fields_as_absent() -> Result<(), String> {
        let request = from_json(
            br#"{"resourceLogs":[{"resource":null,"scopeLogs":[{"logRecords":[
                {"severityNumber":"SEVERITY_NUMBER_WARN3","body":null,"attributes":null,"traceId":null},
                {"severityNumber":"SEVERITY_NUMBER_INFO"},
                {"severityNumber":"SEVERITY_NUMBER_UNSPECIFIED","traceId":""},
                {"severityNumber":"21"}
            ]}]}]}"#,
        )?;
        let records = &request.resource_logs[0].scope_logs[0].log_records;
        let numbers: Vec<i32> = records.iter().map(|r| r.severity_number).collect();
        assert_eq!(numbers, vec![15, 9, 0, 21]);
        assert!(request.resource_logs[0].resource.is_none());
        assert!(records[0].body.is_none() && records[0].trace_id.is_empty());
        assert!(records[2].trace_id.is_empty());
        assert!(from_json(b"{}")?.resource_logs.is_empty());
        Ok(())
    }

    fn refusal(body: &str) -> String {
        match from_json(body.as_bytes()) {
            Ok(request) => format!("accepted: {request:?}"),
            Err(reason) => reason,
        }
    }

    #[test]
    fn refuses_malformed_requests_with_the_reason() {
        let record = |fields: &str| {
            format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{{fields}}}]}}]}}]}}"#)
        };
        for (body, reason) in [
            (record(r#""traceId":"xyz""#), "is not 16 bytes of hex"),
            (
                record(r#""spanId":"abcd""#),
                "spanId \"abcd\" is not 8 bytes of hex",
            ),
            (
                record(r#""timeUnixNano":"soon""#),
                "\"soon\" is not an integer",
            ),
            (record(r#""timeUnixNano":1.5"#), "an integer"),
            (record(r#""severityText":5"#), "invalid type"),
            (
                record(r#""body":{"stringValue":"a","intValue":"1"}"#),
                "more than one",
            ),
            (record(r#""body":{"intValue":"1e3"}"#), "is not an integer"),
            (
                record(r#""body":{"doubleValue":"fast"}"#),
                "is not a number",
            ),
            (record(r#""body":{"bytesValue":"%%"}"#), "not base64"),
            (
                record(r#""severityText":"a","severity_text":"b""#),
                "duplicate field",
            ),
            (record(r#""attributes":{}"#), "invalid type"),
            (r#"{"resourceLogs":[]} x"#.into(), "trailing characters"),
            (
                r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"a}}"#
                    .into(),
                "EOF",
            ),
            ("\"logs\"".into(), "invalid type"),
        ] {
            let got = refusal(&body);
            assert!(got.contains(reason), "{body}: {got}");
        }
    }

    #[test]
    fn refuses_nesting_past_the_parsers_limit() {
        let deep = format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{}"x"{}}}]}}]}}]}}"#,
            r#"{"arrayValue":{"values":["#.repeat(200),
            "]}}".repeat(200)
        );
        assert!(
            refusal(&deep).contains("recursion limit"),
            "{}",
            refusal(&deep)
        );
    }
}
