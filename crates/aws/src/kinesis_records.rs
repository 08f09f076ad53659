//! Lambda's Kinesis event decoded straight into [`StreamRecord`]s, in one pass over the JSON.
//!
//! Going through [`aws_lambda_events::kinesis::KinesisEvent`] (and, for exact arrival times, a
//! `serde_json::Value` first) allocates a dozen strings per record and a buffer per payload,
//! then copies them again: about 5.5 µs a record, four times what decoding and writing the
//! record as Parquet costs. Here every payload is base64-decoded into one buffer that the
//! batch's records share as [`Bytes`] slices, the fields sluice does not use are skipped
//! without being allocated, records of one shard share its name, and the event is read past
//! lambda_runtime's path-tracking deserializer ([`untracked`]).
//!
//! The result is the same as [`crate::kinesis::into_stream_records`] of
//! [`crate::kinesis::ExactKinesisEvent`]: the same required fields (`Records`, `kinesis`,
//! `data`, `approximateArrivalTimestamp`), the same defaults, the same shard fallback, and
//! arrival times read exactly.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use sluice_core::StreamRecord;
use sluice_core::input::SequenceNumber;

use crate::kinesis::{UNKNOWN_SHARD, shard_id_of};

/// A whole Lambda Kinesis event (`{"Records": [...]}`), as the ingest function's payload type:
/// `LambdaEvent<KinesisBatch>`. Other top-level fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KinesisBatch {
    pub records: Vec<StreamRecord>,
}

impl<'de> Deserialize<'de> for KinesisBatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Event {
            #[serde(rename = "Records")]
            records: KinesisRecords,
        }
        let event: Event = untracked(deserializer)?;
        Ok(KinesisBatch {
            records: event.records.0,
        })
    }
}

/// Deserialises `T` from the JSON text `deserializer` holds, without the deserializer's own
/// wrapping: lambda_runtime reads payloads through `serde_path_to_error`, which copies every
/// key it passes into a new String, a dozen a record, which cost more than decoding the record
/// did. The text is taken raw through it (one quick pass), then decoded directly.
pub fn untracked<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    let raw = <&'de serde_json::value::RawValue>::deserialize(deserializer)?;
    serde_json::from_str(raw.get()).map_err(de::Error::custom)
}

/// The `Records` array of a Lambda Kinesis event, to embed in an event type of its own (the
/// aggregate function's tumbling-window event has more top-level fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KinesisRecords(pub Vec<StreamRecord>);

impl<'de> Deserialize<'de> for KinesisRecords {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(RecordsVisitor)
    }
}

/// One record as read, its payload a range of the shared buffer.
struct Parsed {
    shard_id: Option<Arc<str>>,
    sequence_number: SequenceNumber,
    partition_key: String,
    arrival_ms: i64,
    data: Range<usize>,
}

/// What the records of one event share while it is read.
#[derive(Default)]
struct Shared {
    /// Every payload, decoded, back to back.
    payloads: Vec<u8>,
    /// The last shard named, so that a batch's records share one `Arc`.
    shard: Option<Arc<str>>,
}

struct RecordsVisitor;

impl<'de> Visitor<'de> for RecordsVisitor {
    type Value = KinesisRecords;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the Records array of a Kinesis event")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KinesisRecords, A::Error> {
        let mut shared = Shared::default();
        let mut parsed = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(record) = seq.next_element_seed(RecordSeed(&mut shared))? {
            parsed.push(record);
        }
        let payloads = Bytes::from(shared.payloads);
        // A record without a shard takes the batch's: the first one any record names.
        let fallback: Arc<str> = parsed
            .iter()
            .find_map(|p| p.shard_id.clone())
            .unwrap_or_else(|| UNKNOWN_SHARD.into());
        let records = parsed
            .into_iter()
            .map(|p| StreamRecord {
                shard_id: p.shard_id.unwrap_or_else(|| Arc::clone(&fallback)),
                sequence_number: p.sequence_number,
                partition_key: p.partition_key,
                arrival_ms: p.arrival_ms,
                data: payloads.slice(p.data),
            })
            .collect();
        Ok(KinesisRecords(records))
    }
}

/// The members of an event record and of its `kinesis` object that sluice reads.
#[allow(clippy::enum_variant_names)] // `PartitionKey` is the field's name.
enum Key {
    Kinesis,
    EventId,
    Data,
    PartitionKey,
    SequenceNumber,
    ArrivalTimestamp,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "kinesis" => Key::Kinesis,
                    "eventID" => Key::EventId,
                    "data" => Key::Data,
                    "partitionKey" => Key::PartitionKey,
                    "sequenceNumber" => Key::SequenceNumber,
                    "approximateArrivalTimestamp" => Key::ArrivalTimestamp,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// One element of `Records`.
struct RecordSeed<'s>(&'s mut Shared);

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = Parsed;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Parsed, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kinesis event record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut kinesis = None;
        let mut shard_id = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Kinesis => kinesis = Some(map.next_value_seed(KinesisSeed(&mut *self.0))?),
                Key::EventId => shard_id = map.next_value_seed(ShardSeed(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let kinesis = kinesis.ok_or_else(|| de::Error::missing_field("kinesis"))?;
        Ok(Parsed {
            shard_id,
            ..kinesis
        })
    }
}

/// The `kinesis` object of a record.
struct KinesisSeed<'s>(&'s mut Shared);

impl<'de> DeserializeSeed<'de> for KinesisSeed<'_> {
    type Value = Parsed;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Parsed, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for KinesisSeed<'_> {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the kinesis object of a record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let (mut data, mut arrival_ms) = (None, None);
        let mut sequence_number = SequenceNumber::default();
        let mut partition_key = String::new();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Data => data = Some(map.next_value_seed(Base64Seed(&mut self.0.payloads))?),
                Key::PartitionKey => partition_key = map.next_value()?,
                Key::SequenceNumber => sequence_number = map.next_value()?,
                Key::ArrivalTimestamp => arrival_ms = Some(map.next_value::<ArrivalMs>()?.0),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Parsed {
            shard_id: None,
            sequence_number,
            partition_key,
            arrival_ms: arrival_ms
                .ok_or_else(|| de::Error::missing_field("approximateArrivalTimestamp"))?,
            data: data.ok_or_else(|| de::Error::missing_field("data"))?,
        })
    }
}

/// A base64 payload, decoded onto the end of the shared buffer; its range there.
struct Base64Seed<'s>(&'s mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Base64Seed<'_> {
    type Value = Range<usize>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        // As bytes: serde_json then skips the UTF-8 check of the string (base64 is ASCII, and
        // the decoder rejects anything else).
        deserializer.deserialize_bytes(self)
    }
}

impl Visitor<'_> for Base64Seed<'_> {
    type Value = Range<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("base64 data")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Range<usize>, E> {
        self.visit_bytes(text.as_bytes())
    }

    fn visit_bytes<E: de::Error>(self, text: &[u8]) -> Result<Range<usize>, E> {
        let start = self.0.len();
        base64::engine::general_purpose::STANDARD
            .decode_vec(text, self.0)
            .map_err(|e| {
                self.0.truncate(start);
                E::custom(format_args!("record data is not base64: {e}"))
            })?;
        Ok(start..self.0.len())
    }
}

/// The shard named by an `eventID` (`shardId-…:sequence`), shared with the record before when
/// it is the same shard.
struct ShardSeed<'s>(&'s mut Shared);

impl<'de> DeserializeSeed<'de> for ShardSeed<'_> {
    type Value = Option<Arc<str>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for ShardSeed<'_> {
    type Value = Option<Arc<str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an eventID string or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }

    fn visit_str<E: de::Error>(self, event_id: &str) -> Result<Self::Value, E> {
        let Some(shard) = shard_id_of(event_id) else {
            return Ok(None);
        };
        Ok(Some(match &self.0.shard {
            Some(last) if **last == *shard => Arc::clone(last),
            _ => Arc::clone(self.0.shard.insert(shard.into())),
        }))
    }
}

/// `approximateArrivalTimestamp`: seconds since the epoch (a number, or a numeric string), to
/// whole milliseconds, read exactly.
struct ArrivalMs(i64);

impl<'de> Deserialize<'de> for ArrivalMs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ArrivalVisitor)
    }
}

struct ArrivalVisitor;

impl ArrivalVisitor {
    fn from_seconds<E: de::Error>(seconds: f64) -> Result<ArrivalMs, E> {
        crate::kinesis::seconds_f64_to_ms(seconds)
            .map(ArrivalMs)
            .ok_or_else(|| E::custom(format_args!("arrival time {seconds} is out of range")))
    }
}

impl Visitor<'_> for ArrivalVisitor {
    type Value = ArrivalMs;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("seconds since the epoch")
    }

    fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<ArrivalMs, E> {
        seconds
            .checked_mul(1000)
            .map(ArrivalMs)
            .ok_or_else(|| E::custom(format_args!("arrival time {seconds} is out of range")))
    }

    fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<ArrivalMs, E> {
        let seconds = i64::try_from(seconds)
            .map_err(|_| E::custom(format_args!("arrival time {seconds} is out of range")))?;
        self.visit_i64(seconds)
    }

    fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<ArrivalMs, E> {
        Self::from_seconds(seconds)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<ArrivalMs, E> {
        match text.trim().parse::<f64>() {
            Ok(seconds) => Self::from_seconds(seconds),
            Err(_) => Err(E::custom(format_args!(
                "arrival time {text:?} is not a number of seconds"
            ))),
        }
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
    fn reads_the_records_of_an_event_held_as_a_json_value() {
        let mut value: serde_json::Value = serde_json::from_str(FIXTURE).expect("fixture");
        let records: KinesisRecords =
            serde_json::from_value(value["Records"].take()).expect("from a Value");
        assert_eq!(records.0, both(FIXTURE).0);
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
