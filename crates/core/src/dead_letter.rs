//! The dead-letter object: one gzip NDJSON file per batch with every rejected record or event,
//! its raw bytes (base64) and the reason, so nothing is lost and everything can be replayed.

use std::io::Write as _;

use base64::Engine as _;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::error::RejectReason;

/// One line of a dead-letter object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub shard_id: String,
    pub sequence_number: String,
    /// Index of the rejected event inside its record; absent when the record was rejected whole
    /// (oversized, not UTF-8, corrupt gzip or KPL, …) before it was split into events.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sub_sequence: Option<u32>,
    pub partition_key: String,
    pub arrival_ms: i64,
    /// Stable short name of the reason (`not_json`, `no_tenant`, …).
    pub reason_kind: String,
    /// The reason in words.
    pub reason: String,
    /// The rejected bytes, base64.
    pub data: String,
}

impl DeadLetter {
    pub fn new(
        record: crate::input::RecordRef<'_>,
        sub_sequence: Option<u32>,
        reason: &RejectReason,
        data: &[u8],
    ) -> Self {
        Self {
            shard_id: record.shard_id.to_string(),
            sequence_number: record.sequence_number.to_string(),
            sub_sequence,
            partition_key: record.partition_key.to_owned(),
            arrival_ms: record.arrival_ms,
            reason_kind: reason.kind().to_owned(),
            reason: reason.to_string(),
            data: base64::engine::general_purpose::STANDARD.encode(data),
        }
    }

    /// The rejected bytes.
    pub fn raw(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.data)
    }
}

/// Encodes dead letters as gzip NDJSON.
pub fn encode(letters: &[DeadLetter]) -> std::io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    for letter in letters {
        serde_json::to_writer(&mut gz, letter)?;
        gz.write_all(b"\n")?;
    }
    gz.finish()
}

/// Decodes a dead-letter object (for tools and tests).
pub fn decode(body: &[u8]) -> std::io::Result<Vec<DeadLetter>> {
    use std::io::BufRead as _;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(body));
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::StreamRecord;

    #[test]
    fn dead_letters_round_trip_with_raw_bytes() -> std::io::Result<()> {
        let record = StreamRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: "42".into(),
            partition_key: "acme/api".into(),
            arrival_ms: 1,
            data: vec![0xff, 0xfe].into(),
        };
        let letter = DeadLetter::new(
            record.view(),
            None,
            &RejectReason::NotUtf8 { offset: 0 },
            &record.data,
        );
        let decoded = decode(&encode(std::slice::from_ref(&letter))?)?;
        assert_eq!(decoded, vec![letter]);
        assert_eq!(decoded[0].raw().ok(), Some(vec![0xff, 0xfe]));
        assert_eq!(decoded[0].reason_kind, "not_utf8");
        Ok(())
    }
}
