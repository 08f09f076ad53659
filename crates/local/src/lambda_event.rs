//! The events Lambda delivers to a Kinesis function, built from records read by the runner:
//! the same fields, values and formats (`eventID` = `shardId:sequence`, base64 data, arrival in
//! seconds with millisecond precision), and, for a tumbling-window mapping, the window fields
//! (`window`, `state`, `shardId`, `eventSourceARN`, `isFinalInvokeForWindow`,
//! `isWindowTerminatedEarly`).

use std::collections::HashMap;

use aws_lambda_events::encodings::SecondTimestamp;
use aws_lambda_events::kinesis::{KinesisEvent, KinesisEventRecord, KinesisRecord};
use sluice_core::normalize::timestamp::format_rfc3339_ms;

use crate::stream_source::SourceRecord;

/// What every record of a mapping's events shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSource {
    pub stream_arn: String,
    pub region: String,
    /// The role Lambda invokes with (`invokeIdentityArn`).
    pub invoke_identity_arn: String,
}

impl EventSource {
    /// The source for a stream, with a placeholder execution role named after the function.
    pub fn new(stream_arn: &str, region: &str, function: &str) -> Self {
        let account = stream_arn.split(':').nth(4).unwrap_or("000000000000");
        Self {
            stream_arn: stream_arn.to_owned(),
            region: region.to_owned(),
            invoke_identity_arn: format!("arn:aws:iam::{account}:role/{function}"),
        }
    }
}

/// One record as Lambda delivers it.
pub fn event_record(
    source: &EventSource,
    shard_id: &str,
    record: &SourceRecord,
) -> KinesisEventRecord {
    let mut kinesis = KinesisRecord::default();
    kinesis.kinesis_schema_version = Some("1.0".into());
    kinesis.partition_key.clone_from(&record.partition_key);
    kinesis.sequence_number.clone_from(&record.sequence_number);
    // `Base64Data` is non-exhaustive: fill the default one through `DerefMut`.
    *kinesis.data = record.data.clone();
    kinesis.approximate_arrival_timestamp = SecondTimestamp(
        chrono::DateTime::from_timestamp_millis(record.arrival_ms).unwrap_or_default(),
    );
    let mut out = KinesisEventRecord::default();
    out.kinesis = kinesis;
    out.event_source = Some("aws:kinesis".into());
    out.event_version = Some("1.0".into());
    out.event_id = Some(format!("{shard_id}:{}", record.sequence_number));
    out.event_name = Some("aws:kinesis:record".into());
    out.invoke_identity_arn = Some(source.invoke_identity_arn.clone());
    out.aws_region = Some(source.region.clone());
    out.event_source_arn = Some(source.stream_arn.clone());
    out
}

/// A batch as Lambda delivers it.
pub fn kinesis_event(
    source: &EventSource,
    shard_id: &str,
    records: &[SourceRecord],
) -> KinesisEvent {
    let mut event = KinesisEvent::default();
    event.records = records
        .iter()
        .map(|r| event_record(source, shard_id, r))
        .collect();
    event
}

/// The tumbling-window fields of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowFields {
    pub start_ms: i64,
    pub end_ms: i64,
    pub state: HashMap<String, String>,
    pub is_final_invoke_for_window: bool,
    pub is_window_terminated_early: bool,
}

/// The whole tumbling-window event as JSON, exactly as Lambda sends it to a function with
/// `TumblingWindowInSeconds` (the Kinesis records plus the window fields).
pub fn window_event_json(
    source: &EventSource,
    shard_id: &str,
    records: &[SourceRecord],
    window: &WindowFields,
) -> serde_json::Value {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let mut value =
                serde_json::to_value(event_record(source, shard_id, r)).unwrap_or_default();
            // Seconds with the milliseconds as a fraction, as Lambda writes them.
            if let Some(ts) = value
                .get_mut("kinesis")
                .and_then(|k| k.get_mut("approximateArrivalTimestamp"))
            {
                *ts = seconds_json(r.arrival_ms);
            }
            value
        })
        .collect();
    serde_json::json!({
        "Records": records,
        "window": {
            "start": format_rfc3339_ms(window.start_ms),
            "end": format_rfc3339_ms(window.end_ms),
        },
        "state": window.state,
        "shardId": shard_id,
        "eventSourceARN": source.stream_arn,
        "isFinalInvokeForWindow": window.is_final_invoke_for_window,
        "isWindowTerminatedEarly": window.is_window_terminated_early,
    })
}

/// Arrival ms as the JSON number Lambda writes: seconds, with up to three decimals.
fn seconds_json(ms: i64) -> serde_json::Value {
    let text = format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
    serde_json::from_str(&text).unwrap_or_else(|_| serde_json::Value::from(ms / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> EventSource {
        EventSource::new(
            "arn:aws:kinesis:us-east-1:123456789012:stream/sluice-logs",
            "us-east-1",
            "sluice-ingest",
        )
    }

    fn record(seq: &str, arrival_ms: i64) -> SourceRecord {
        SourceRecord {
            sequence_number: seq.into(),
            partition_key: "acme/checkout".into(),
            data: b"{\"message\":\"hi\"}".to_vec(),
            arrival_ms,
        }
    }

    #[test]
    fn records_carry_lambdas_fields_and_read_back_exactly() -> Result<(), Box<dyn std::error::Error>>
    {
        let event = kinesis_event(
            &source(),
            "shardId-000000000003",
            &[record("4959", 1_736_937_000_987)],
        );
        let json = serde_json::to_value(&event)?;
        let r = &json["Records"][0];
        assert_eq!(r["eventID"], "shardId-000000000003:4959");
        assert_eq!(r["eventSource"], "aws:kinesis");
        assert_eq!(r["eventName"], "aws:kinesis:record");
        assert_eq!(r["eventSourceARN"], source().stream_arn);
        assert_eq!(
            r["invokeIdentityArn"],
            "arn:aws:iam::123456789012:role/sluice-ingest"
        );
        assert_eq!(r["kinesis"]["data"], "eyJtZXNzYWdlIjoiaGkifQ==");
        assert_eq!(r["kinesis"]["partitionKey"], "acme/checkout");
        // What the function converts the event to: the shard, and the arrival to the ms.
        let converted = sluice_aws::kinesis::into_stream_records(event);
        assert_eq!(&*converted[0].shard_id, "shardId-000000000003");
        assert_eq!(converted[0].arrival_ms, 1_736_937_000_987);
        Ok(())
    }

    #[test]
    fn window_event_is_what_the_aggregate_function_parses() -> Result<(), Box<dyn std::error::Error>>
    {
        let fields = WindowFields {
            start_ms: 1_736_937_000_000,
            end_ms: 1_736_937_060_000,
            state: [("partials".to_owned(), "abc".to_owned())].into(),
            is_final_invoke_for_window: true,
            is_window_terminated_early: false,
        };
        let json = window_event_json(
            &source(),
            "shardId-000000000001",
            &[record("7", 1_736_937_001_050)],
            &fields,
        );
        assert_eq!(
            json["Records"][0]["kinesis"]["approximateArrivalTimestamp"].as_f64(),
            Some(1_736_937_001.05)
        );
        let (records, props) = sluice_aggregate::parse_event(json)?;
        assert_eq!(records[0].arrival_ms, 1_736_937_001_050);
        assert_eq!(props.window.start, "2025-01-15T10:30:00.000Z");
        assert_eq!(props.shard_id.as_deref(), Some("shardId-000000000001"));
        assert!(props.is_final_invoke_for_window);
        assert_eq!(props.state["partials"], "abc");
        Ok(())
    }
}
