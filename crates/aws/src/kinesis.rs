//! Lambda's Kinesis event, converted to the core's [`StreamRecord`].
//!
//! Two details matter here:
//!
//! - **Shard id.** Lambda does not send the shard as a field; it is the part of `eventID` before
//!   the colon (`shardId-000000000006:49590338271490256608559692538361571095921575989136588898`).
//!   All records of one Lambda batch come from one shard, so a record without a usable `eventID`
//!   takes the shard of its neighbours (else [`UNKNOWN_SHARD`]).
//! - **Arrival time.** `approximateArrivalTimestamp` is seconds since the epoch with millisecond
//!   precision (`1545084650.987`). `aws_lambda_events` 1.x reads the fraction's digits as a
//!   count of milliseconds (so `.9` becomes 9 ms, not 900 ms) and rejects fractions with more
//!   than three digits. [`ExactKinesisEvent`] (and [`parse_kinesis_event`]) read the number
//!   exactly instead.
//!
//! The Lambda functions take their payload as [`crate::kinesis_records::KinesisBatch`], which
//! reads the same JSON to the same records several times faster; this module's conversion
//! serves events built in memory (the embedded stream) and is what that one is tested against.

use std::sync::Arc;

use aws_lambda_events::encodings::SecondTimestamp;
use aws_lambda_events::kinesis::{KinesisEvent, KinesisEventRecord};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use sluice_core::StreamRecord;

use crate::error::AwsError;

/// Shard id used when no record of the batch names one.
pub const UNKNOWN_SHARD: &str = "shardId-unknown";

/// The shard id in a Kinesis `eventID` (`shardId-…:sequence`), if there is one.
pub fn shard_id_of(event_id: &str) -> Option<&str> {
    event_id
        .split_once(':')
        .map(|(shard, _)| shard)
        .filter(|shard| !shard.is_empty())
}

/// The arrival time of one record, in ms since the epoch.
pub fn arrival_ms(record: &KinesisEventRecord) -> i64 {
    record
        .kinesis
        .approximate_arrival_timestamp
        .timestamp_millis()
}

/// Converts one Lambda Kinesis record, copying its payload. `fallback_shard` is used when the
/// record's `eventID` names no shard.
pub fn stream_record(record: &KinesisEventRecord, fallback_shard: &str) -> StreamRecord {
    StreamRecord {
        shard_id: record_shard(record).unwrap_or(fallback_shard).into(),
        sequence_number: record.kinesis.sequence_number.as_str().into(),
        partition_key: record.kinesis.partition_key.clone(),
        arrival_ms: arrival_ms(record),
        data: record.kinesis.data.0.clone().into(),
    }
}

fn record_shard(record: &KinesisEventRecord) -> Option<&str> {
    record.event_id.as_deref().and_then(shard_id_of)
}

/// The shard of a batch: the first shard any record names, else [`UNKNOWN_SHARD`].
pub fn batch_shard(event: &KinesisEvent) -> String {
    event
        .records
        .iter()
        .find_map(record_shard)
        .unwrap_or(UNKNOWN_SHARD)
        .to_owned()
}

/// Converts a whole event, moving the payloads out of it (no copy of the data).
pub fn into_stream_records(event: KinesisEvent) -> Vec<StreamRecord> {
    let fallback: Arc<str> = batch_shard(&event).into();
    // Records of one batch share their shard's name.
    let mut last: Arc<str> = Arc::clone(&fallback);
    event
        .records
        .into_iter()
        .map(|record| {
            let shard_id = match record_shard(&record) {
                Some(shard) if shard != &*last => {
                    last = shard.into();
                    Arc::clone(&last)
                }
                Some(_) => Arc::clone(&last),
                None => Arc::clone(&fallback),
            };
            let arrival_ms = arrival_ms(&record);
            let kinesis = record.kinesis;
            StreamRecord {
                shard_id,
                sequence_number: kinesis.sequence_number.into(),
                partition_key: kinesis.partition_key,
                arrival_ms,
                data: kinesis.data.0.into(),
            }
        })
        .collect()
}

/// Decodes a Lambda Kinesis event from JSON, reading `approximateArrivalTimestamp` at full
/// millisecond precision (see the module docs).
pub fn parse_kinesis_event(mut value: Value) -> Result<KinesisEvent, AwsError> {
    let mut exact = Vec::new();
    if let Some(records) = value.get_mut("Records").and_then(Value::as_array_mut) {
        for record in records {
            let slot = record
                .get_mut("kinesis")
                .and_then(|k| k.get_mut("approximateArrivalTimestamp"));
            let ms = match slot {
                Some(ts) => {
                    let ms = seconds_to_ms(ts);
                    if let Some(ms) = ms {
                        // Whole seconds are read correctly by aws_lambda_events; the exact
                        // value is put back below.
                        *ts = Value::from(ms.div_euclid(1000));
                    }
                    ms
                }
                None => None,
            };
            exact.push(ms);
        }
    }
    let mut event: KinesisEvent =
        serde_json::from_value(value).map_err(|e| AwsError::KinesisEvent(e.to_string()))?;
    for (record, ms) in event.records.iter_mut().zip(exact) {
        if let Some(ts) = ms.and_then(chrono::DateTime::from_timestamp_millis) {
            record.kinesis.approximate_arrival_timestamp = SecondTimestamp(ts);
        }
    }
    Ok(event)
}

/// Decodes a Lambda Kinesis event from JSON bytes (see [`parse_kinesis_event`]).
pub fn kinesis_event_from_slice(json: &[u8]) -> Result<KinesisEvent, AwsError> {
    let value: Value =
        serde_json::from_slice(json).map_err(|e| AwsError::KinesisEvent(e.to_string()))?;
    parse_kinesis_event(value)
}

/// Seconds (a JSON number or numeric string) to whole milliseconds, rounded.
fn seconds_to_ms(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => seconds_text_to_ms(&n.to_string(), false),
        Value::String(s) => seconds_text_to_ms(s, true),
        _ => None,
    }
}

/// `approximateArrivalTimestamp`'s text to whole milliseconds: a JSON number (whole seconds
/// exactly, else read as f64), or the contents of a numeric string (`quoted`; trimmed, read as
/// f64).
pub(crate) fn seconds_text_to_ms(text: &str, quoted: bool) -> Option<i64> {
    let text = if quoted { text.trim() } else { text };
    if !quoted && let Ok(whole) = text.parse::<i64>() {
        return whole.checked_mul(1000);
    }
    seconds_f64_to_ms(text.parse::<f64>().ok()?)
}

/// Seconds to whole milliseconds, rounded; `None` when that is not a plausible time.
fn seconds_f64_to_ms(seconds: f64) -> Option<i64> {
    let ms = (seconds * 1000.0).round();
    // i64 covers ±292 million years in ms; anything outside is not a timestamp.
    (ms.is_finite() && ms.abs() < 9.0e15).then_some(ms as i64)
}

/// Lambda's Kinesis event, decoded with exact arrival times: the reference that
/// [`crate::kinesis_records::KinesisBatch`], the functions' payload type, is tested against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExactKinesisEvent(pub KinesisEvent);

impl<'de> Deserialize<'de> for ExactKinesisEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        parse_kinesis_event(value)
            .map(ExactKinesisEvent)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn event_json(timestamps: &[&str], event_ids: &[Option<&str>]) -> String {
        let records: Vec<String> = timestamps
            .iter()
            .zip(event_ids)
            .enumerate()
            .map(|(i, (ts, id))| {
                let id = id.map_or(String::new(), |id| format!(r#""eventID": "{id}","#));
                format!(
                    r#"{{
                        "kinesis": {{
                            "kinesisSchemaVersion": "1.0",
                            "partitionKey": "acme/checkout",
                            "sequenceNumber": "4959033827149025660855969253836157109592157598913658889{i}",
                            "data": "aGVsbG8=",
                            "approximateArrivalTimestamp": {ts}
                        }},
                        {id}
                        "eventSource": "aws:kinesis",
                        "eventVersion": "1.0",
                        "eventName": "aws:kinesis:record",
                        "awsRegion": "us-east-1",
                        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/logs"
                    }}"#
                )
            })
            .collect();
        format!(r#"{{"Records": [{}]}}"#, records.join(","))
    }

    #[test]
    fn shard_id_is_the_event_id_before_the_colon() {
        assert_eq!(
            shard_id_of(
                "shardId-000000000006:49590338271490256608559692538361571095921575989136588898"
            ),
            Some("shardId-000000000006")
        );
        assert_eq!(shard_id_of("no-colon"), None);
        assert_eq!(shard_id_of(":123"), None);
    }

    #[test]
    fn arrival_times_keep_their_milliseconds() -> Result<(), AwsError> {
        let json = event_json(
            &[
                "1545084650.987",
                "1545084650.9",
                "1545084650.05",
                "\"1545084650.5\"",
                "1545084650",
                "1545084650.12345",
            ],
            &[Some("shardId-000000000006:1"); 6],
        );
        let event = kinesis_event_from_slice(json.as_bytes())?;
        let arrivals: Vec<i64> = event.records.iter().map(arrival_ms).collect();
        assert_eq!(
            arrivals,
            vec![
                1_545_084_650_987,
                1_545_084_650_900,
                1_545_084_650_050,
                1_545_084_650_500,
                1_545_084_650_000,
                1_545_084_650_123
            ]
        );
        Ok(())
    }

    #[test]
    fn records_convert_with_shard_sequence_key_arrival_and_decoded_data() -> Result<(), AwsError> {
        let json = event_json(&["1545084650.987"], &[Some("shardId-000000000006:x")]);
        let event: ExactKinesisEvent =
            serde_json::from_str(&json).map_err(|e| AwsError::KinesisEvent(e.to_string()))?;
        let by_ref = stream_record(&event.0.records[0], UNKNOWN_SHARD);
        let records = into_stream_records(event.0);
        assert_eq!(records, vec![by_ref]);
        assert_eq!(
            records[0],
            StreamRecord {
                shard_id: "shardId-000000000006".into(),
                sequence_number: "49590338271490256608559692538361571095921575989136588890".into(),
                partition_key: "acme/checkout".to_owned(),
                arrival_ms: 1_545_084_650_987,
                data: Bytes::from_static(b"hello"),
            }
        );
        Ok(())
    }

    #[test]
    fn a_record_without_event_id_takes_the_shard_of_its_batch() -> Result<(), AwsError> {
        let json = event_json(&["1", "2"], &[None, Some("shardId-000000000003:5")]);
        let records = into_stream_records(kinesis_event_from_slice(json.as_bytes())?);
        assert_eq!(&*records[0].shard_id, "shardId-000000000003");
        assert_eq!(&*records[1].shard_id, "shardId-000000000003");

        let json = event_json(&["1"], &[None]);
        let records = into_stream_records(kinesis_event_from_slice(json.as_bytes())?);
        assert_eq!(&*records[0].shard_id, UNKNOWN_SHARD);

        // Records share their shard's name, but each keeps its own.
        let json = event_json(
            &["1", "2", "3"],
            &[
                Some("shardId-000000000001:1"),
                Some("shardId-000000000002:2"),
                None,
            ],
        );
        let records = into_stream_records(kinesis_event_from_slice(json.as_bytes())?);
        let shards: Vec<&str> = records.iter().map(|r| &*r.shard_id).collect();
        assert_eq!(
            shards,
            [
                "shardId-000000000001",
                "shardId-000000000002",
                "shardId-000000000001"
            ]
        );
        Ok(())
    }

    #[test]
    fn an_event_that_is_not_kinesis_is_an_error_not_a_panic() {
        let err = kinesis_event_from_slice(br#"{"Records": [{"kinesis": {"data": 5}}]}"#);
        assert!(matches!(err, Err(AwsError::KinesisEvent(_))), "{err:?}");
        let err = kinesis_event_from_slice(b"not json");
        assert!(matches!(err, Err(AwsError::KinesisEvent(_))), "{err:?}");
    }
}
