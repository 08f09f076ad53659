//! Lambda's Kinesis event decoded straight into [`StreamRecord`]s, in one pass over the JSON.
//!
//! Going through [`aws_lambda_events::kinesis::KinesisEvent`] (and, for exact arrival times, a
//! `serde_json::Value` first) allocates a dozen strings per record and a buffer per payload,
//! then copies them again: about 5.5 µs a record, four times what decoding and writing the
//! record as Parquet costs. Here:
//! - the event is taken as raw JSON text past lambda_runtime's deserializer ([`raw_event`]),
//!   which copies every key it passes into a new String (path tracking for its error messages);
//! - sluice's own JSON scanner walks it, as it walks log records: strings borrowed, long ones
//!   (the base64 payloads) searched with SIMD, fields sluice does not use skipped unread;
//! - every payload is base64-decoded into one buffer that the records share as [`Bytes`]
//!   slices, and records of one shard share its name.
//!
//! The result is the same as [`crate::kinesis::into_stream_records`] of
//! [`crate::kinesis::ExactKinesisEvent`]: the same required fields (`Records`, `kinesis`,
//! `data`, `approximateArrivalTimestamp`), the same defaults, the same shard fallback, and
//! arrival times read exactly.

use std::ops::Range;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::value::RawValue;
use sluice_core::StreamRecord;
use sluice_core::decode::json::{JsonError, Scanner, Value};
use sluice_core::input::SequenceNumber;

use crate::error::AwsError;
use crate::kinesis::{UNKNOWN_SHARD, seconds_text_to_ms, shard_id_of};

/// A whole Lambda Kinesis event (`{"Records": [...]}`), as the ingest function's payload type:
/// `LambdaEvent<KinesisBatch>`. Other top-level fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KinesisBatch {
    pub records: Vec<StreamRecord>,
}

impl<'de> Deserialize<'de> for KinesisBatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = raw_event(deserializer)?;
        let (records, _) = read_event(raw.get()).map_err(de::Error::custom)?;
        Ok(KinesisBatch { records })
    }
}

/// The JSON text of a payload, for a payload type to read itself. lambda_runtime deserialises
/// payloads through `serde_path_to_error`, which copies every key it passes into a new String:
/// a dozen a record, which cost more than decoding the record. A raw value goes through it in
/// one quick pass (which also checks the JSON syntax), borrowed from the request body.
pub fn raw_event<'de, D: Deserializer<'de>>(deserializer: D) -> Result<&'de RawValue, D::Error> {
    <&'de RawValue>::deserialize(deserializer)
}

/// Reads a Lambda Kinesis event's JSON text: its records, and its other top-level members as
/// the text of a JSON object (the tumbling-window fields of the aggregate function's event).
pub fn read_event(json: &str) -> Result<(Vec<StreamRecord>, String), AwsError> {
    let mut reader = EventReader::default();
    let mut rest = String::from("{");
    let mut scanner = Scanner::new(json);
    let walked = scanner.object(0, |key, raw_key, s| {
        if key == "Records" {
            return reader.records(s);
        }
        let value = s.skip_value()?;
        if rest.len() > 1 {
            rest.push(',');
        }
        rest.push('"');
        rest.push_str(raw_key);
        rest.push_str("\":");
        rest.push_str(value);
        Ok(())
    });
    rest.push('}');
    if let Some(failure) = reader.failure {
        return Err(AwsError::KinesisEvent(failure));
    }
    walked.map_err(|e| AwsError::KinesisEvent(format!("invalid Kinesis event: {e}")))?;
    if !reader.found {
        return Err(AwsError::KinesisEvent("missing field `Records`".into()));
    }
    Ok((reader.finish(), rest))
}

/// One record as read, its payload a range of the shared buffer.
struct Parsed {
    shard_id: Option<Arc<str>>,
    sequence_number: SequenceNumber,
    partition_key: String,
    arrival_ms: i64,
    data: Range<usize>,
}

/// Reads the records of one event.
#[derive(Default)]
struct EventReader {
    found: bool,
    parsed: Vec<Parsed>,
    /// Every payload, decoded, back to back.
    payloads: Vec<u8>,
    /// The last shard named, so that a batch's records share one `Arc`.
    shard: Option<Arc<str>>,
    /// Why the event was refused, when the JSON was fine but the event was not.
    failure: Option<String>,
}

impl EventReader {
    /// Records `why` (with the record it concerns) and returns the error that stops the walk.
    fn fail(&mut self, why: impl std::fmt::Display, s: &Scanner<'_>) -> JsonError {
        self.failure = Some(format!("record {}: {why}", self.parsed.len()));
        JsonError {
            what: "invalid Kinesis record",
            offset: s.pos(),
        }
    }

    fn records(&mut self, s: &mut Scanner<'_>) -> Result<(), JsonError> {
        self.found = true;
        if s.peek() != Some(b'[') {
            self.failure =
                Some("invalid type: expected the Records array of a Kinesis event".into());
            return Err(JsonError {
                what: "invalid Kinesis event",
                offset: s.pos(),
            });
        }
        s.array(1, |s| self.record(s))
    }

    fn record(&mut self, s: &mut Scanner<'_>) -> Result<(), JsonError> {
        let (mut kinesis, mut shard_id) = (None, None);
        s.object(2, |key, _, s| match key {
            "kinesis" => {
                kinesis = Some(self.kinesis(s)?);
                Ok(())
            }
            "eventID" => {
                shard_id = self.shard(s)?;
                Ok(())
            }
            _ => s.skip_value().map(drop),
        })?;
        let Some(kinesis) = kinesis else {
            return Err(self.fail("missing field `kinesis`", s));
        };
        self.parsed.push(Parsed {
            shard_id,
            ..kinesis
        });
        Ok(())
    }

    /// The `kinesis` object of a record: everything but its shard, which `eventID` names.
    fn kinesis(&mut self, s: &mut Scanner<'_>) -> Result<Parsed, JsonError> {
        let (mut data, mut arrival_ms) = (None, None);
        let mut sequence_number = SequenceNumber::default();
        let mut partition_key = String::new();
        s.object(3, |key, _, s| {
            match key {
                "data" => data = Some(self.payload(s)?),
                "partitionKey" => partition_key = s.string()?.into_owned(),
                "sequenceNumber" => sequence_number = SequenceNumber::from(s.string()?.as_ref()),
                "approximateArrivalTimestamp" => arrival_ms = Some(self.arrival_ms(s)?),
                _ => {
                    s.skip_value()?;
                }
            }
            Ok(())
        })?;
        let Some(data) = data else {
            return Err(self.fail("missing field `data`", s));
        };
        let Some(arrival_ms) = arrival_ms else {
            return Err(self.fail("missing field `approximateArrivalTimestamp`", s));
        };
        Ok(Parsed {
            shard_id: None,
            sequence_number,
            partition_key,
            arrival_ms,
            data,
        })
    }

    /// A base64 payload, decoded onto the end of the shared buffer; its range there.
    fn payload(&mut self, s: &mut Scanner<'_>) -> Result<Range<usize>, JsonError> {
        let text = s.string()?;
        let start = self.payloads.len();
        match base64::engine::general_purpose::STANDARD
            .decode_vec(text.as_bytes(), &mut self.payloads)
        {
            Ok(()) => Ok(start..self.payloads.len()),
            Err(e) => {
                self.payloads.truncate(start);
                Err(self.fail(format_args!("record data is not base64: {e}"), s))
            }
        }
    }

    /// The shard named by an `eventID` (`shardId-…:sequence`), shared with the record before
    /// when it is the same shard.
    fn shard(&mut self, s: &mut Scanner<'_>) -> Result<Option<Arc<str>>, JsonError> {
        let event_id = match s.value()? {
            Value::Str(id) => id,
            Value::Null => return Ok(None),
            _ => return Err(self.fail("invalid type: eventID is not a string", s)),
        };
        let Some(shard) = shard_id_of(&event_id) else {
            return Ok(None);
        };
        Ok(Some(match &self.shard {
            Some(last) if **last == *shard => Arc::clone(last),
            _ => Arc::clone(self.shard.insert(shard.into())),
        }))
    }

    /// `approximateArrivalTimestamp`: seconds since the epoch (a number, or a numeric string),
    /// to whole milliseconds, read exactly.
    fn arrival_ms(&mut self, s: &mut Scanner<'_>) -> Result<i64, JsonError> {
        let ms = match s.value()? {
            Value::Num(n) => seconds_text_to_ms(n, false),
            Value::Str(text) => seconds_text_to_ms(&text, true),
            _ => None,
        };
        ms.ok_or_else(|| self.fail("approximateArrivalTimestamp is not a time in seconds", s))
    }

    /// The records, a record without a shard taking the batch's: the first one any names.
    fn finish(self) -> Vec<StreamRecord> {
        let payloads = Bytes::from(self.payloads);
        let fallback: Arc<str> = self
            .parsed
            .iter()
            .find_map(|p| p.shard_id.clone())
            .unwrap_or_else(|| UNKNOWN_SHARD.into());
        self.parsed
            .into_iter()
            .map(|p| StreamRecord {
                shard_id: p.shard_id.unwrap_or_else(|| Arc::clone(&fallback)),
                sequence_number: p.sequence_number,
                partition_key: p.partition_key,
                arrival_ms: p.arrival_ms,
                data: payloads.slice(p.data),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinesis::{ExactKinesisEvent, into_stream_records};

    const FIXTURE: &str = include_str!("../../../infra/events/kinesis.json");

    /// The records of `json` through `aws_lambda_events` (the reference) and through
    /// [`KinesisBatch`].
    fn both(json: &str) -> (Vec<StreamRecord>, Vec<StreamRecord>) {
        let reference: ExactKinesisEvent =
            serde_json::from_str(json).expect("the reference reads the event");
        let fast: KinesisBatch = serde_json::from_str(json).expect("KinesisBatch reads the event");
        (into_stream_records(reference.0), fast.records)
    }

    fn record(event_id: Option<&str>, kinesis: &str) -> String {
        let id = event_id.map_or(String::new(), |id| format!(r#""eventID": {id},"#));
        format!(
            r#"{{{id} "eventSource": "aws:kinesis", "eventName": "aws:kinesis:record",
                 "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/logs",
                 "kinesis": {{{kinesis}}}, "awsRegion": "us-east-1"}}"#
        )
    }

    fn kinesis(sequence: u32, data: &str, arrival: &str) -> String {
        format!(
            r#""kinesisSchemaVersion": "1.0", "partitionKey": "acme/checkout",
               "sequenceNumber": "4959033827149025660855969253836157109592157598913{sequence:07}",
               "data": "{data}", "approximateArrivalTimestamp": {arrival},
               "encryptionType": "NONE""#
        )
    }

    fn event(records: &[String]) -> String {
        format!(
            r#"{{"Records": [{}], "window": {{"start": "x"}}}}"#,
            records.join(",")
        )
    }

    #[test]
    fn reads_the_fixture_as_the_reference_conversion_does() {
        let (reference, fast) = both(FIXTURE);
        assert!(!fast.is_empty());
        assert_eq!(fast, reference);
    }

    #[test]
    fn reads_shards_arrival_times_and_payloads_as_the_reference_conversion_does() {
        let json = event(&[
            record(None, &kinesis(1, "aGVsbG8=", "1545084650.987")),
            record(
                Some(r#""shardId-000000000003:5""#),
                &kinesis(2, "", "\"1545084650.9\""),
            ),
            record(Some("null"), &kinesis(3, "eyJhIjoxfQ==", "1545084650")),
            record(
                Some(r#""shardId-000000000004:6""#),
                &kinesis(4, "aGk/Pz8/", "1545084650.12345"),
            ),
            record(
                Some(r#""no-colon""#),
                &kinesis(5, "aGk\\/Pz8\\/", "1545084650.05"),
            ),
            record(
                Some(r#""shardId-000000000004:7""#),
                &kinesis(6, "AAEC/w==", "1545084650.0005"),
            ),
        ]);
        let (reference, fast) = both(&json);
        assert_eq!(fast, reference);
        let shards: Vec<&str> = fast.iter().map(|r| &*r.shard_id).collect();
        assert_eq!(
            shards,
            [
                "shardId-000000000003",
                "shardId-000000000003",
                "shardId-000000000003",
                "shardId-000000000004",
                "shardId-000000000003",
                "shardId-000000000004",
            ]
        );
        assert_eq!(&fast[0].data[..], b"hello");
        assert_eq!(&fast[3].data[..], b"hi????");
        assert_eq!(fast[3].data, fast[4].data, "an escaped / in base64 is a /");
        assert_eq!(&fast[5].data[..], [0, 1, 2, 255]);
        assert_eq!(fast[1].arrival_ms, 1_545_084_650_900);
        // The records of one shard share its name.
        assert!(Arc::ptr_eq(&fast[3].shard_id, &fast[5].shard_id));
    }

    #[test]
    fn a_batch_naming_no_shard_uses_the_unknown_shard() {
        let json = event(&[record(None, &kinesis(1, "aGVsbG8=", "1"))]);
        let (reference, fast) = both(&json);
        assert_eq!(fast, reference);
        assert_eq!(&*fast[0].shard_id, UNKNOWN_SHARD);
        assert_eq!(fast[0].arrival_ms, 1000);
    }

    #[test]
    fn an_empty_batch_has_no_records() {
        let (reference, fast) = both(r#"{"Records": []}"#);
        assert!(fast.is_empty() && reference.is_empty());
    }

    #[test]
    fn rejects_events_the_reference_rejects_with_the_reason() {
        let missing_data = event(&[record(
            None,
            r#""sequenceNumber": "1", "approximateArrivalTimestamp": 1"#,
        )]);
        let missing_arrival = event(&[record(None, r#""sequenceNumber": "1", "data": "aGk=""#)]);
        let bad_base64 = event(&[record(None, &kinesis(1, "not base64!", "1"))]);
        let cases = [
            (missing_data.as_str(), "missing field `data`"),
            (
                missing_arrival.as_str(),
                "missing field `approximateArrivalTimestamp`",
            ),
            (bad_base64.as_str(), "record data is not base64"),
            (r#"{"records": []}"#, "missing field `Records`"),
            (
                r#"{"Records": [{"eventID": "s:1"}]}"#,
                "missing field `kinesis`",
            ),
            (r#"{"Records": {}}"#, "the Records array of a Kinesis event"),
            ("not json", "expected ident"),
        ];
        for (json, reason) in cases {
            assert!(
                serde_json::from_str::<ExactKinesisEvent>(json).is_err(),
                "the reference accepts {json}"
            );
            match serde_json::from_str::<KinesisBatch>(json) {
                Ok(batch) => panic!("accepted {json}: {batch:?}"),
                Err(e) => assert!(e.to_string().contains(reason), "{json}: {e}"),
            }
        }
    }

    #[test]
    fn hands_back_the_other_top_level_members_as_a_json_object() -> Result<(), AwsError> {
        let json = r#"{"window": {"start": "a\"b"}, "Records": [], "state": {}, "isFinalInvokeForWindow": true}"#;
        let (records, rest) = read_event(json)?;
        assert!(records.is_empty());
        let rest: serde_json::Value = serde_json::from_str(&rest).expect("a JSON object");
        assert_eq!(
            rest,
            serde_json::json!({"window": {"start": "a\"b"}, "state": {}, "isFinalInvokeForWindow": true})
        );
        Ok(())
    }

    #[test]
    fn reads_the_event_through_lambda_runtimes_path_tracking_deserializer() {
        let read = |json: &str| -> Result<KinesisBatch, String> {
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(json))
                .map_err(|e| e.to_string())
        };
        assert_eq!(read(FIXTURE).map(|b| b.records), Ok(both(FIXTURE).0));
        let missing_data = event(&[record(None, r#""approximateArrivalTimestamp": 1"#)]);
        let err = read(&missing_data).expect_err("no data");
        assert!(err.contains("missing field `data`"), "{err}");
    }
}
