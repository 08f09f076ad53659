//! KPL aggregated records: magic `F3 89 9A C2`, a protobuf `AggregatedRecord`, and an MD5 of the
//! protobuf as a 16-byte trailer.
//!
//! ```text
//! message AggregatedRecord { repeated string partition_key_table = 1;
//!                            repeated string explicit_hash_key_table = 2;
//!                            repeated Record records = 3; }
//! message Record { required uint64 partition_key_index = 1; optional uint64 explicit_hash_key_index = 2;
//!                  required bytes data = 3; repeated Tag tags = 4; }
//! ```

use md5::{Digest, Md5};

/// The four bytes every KPL aggregate starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// One user record inside an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRecord<'a> {
    pub partition_key: &'a str,
    pub data: &'a [u8],
}

/// True when `data` starts with the KPL magic.
pub fn is_aggregate(data: &[u8]) -> bool {
    data.len() >= MAGIC.len() && data[..4] == MAGIC
}

/// Decodes an aggregate, checking its MD5. Errors are human-readable details.
pub fn decode(data: &[u8]) -> Result<Vec<SubRecord<'_>>, String> {
    if !is_aggregate(data) {
        return Err("missing KPL magic".into());
    }
    if data.len() < MAGIC.len() + 16 {
        return Err(format!(
            "{} bytes is too short for an aggregate",
            data.len()
        ));
    }
    let (body, digest) = data[MAGIC.len()..].split_at(data.len() - MAGIC.len() - 16);
    if Md5::digest(body).as_slice() != digest {
        return Err("MD5 trailer does not match the body".into());
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut raw_records: Vec<(u64, &[u8])> = Vec::new();
    let mut reader = Reader { buf: body, pos: 0 };
    while !reader.done() {
        let (field, wire) = reader.key()?;
        match (field, wire) {
            (1, 2) => {
                let bytes = reader.bytes()?;
                keys.push(
                    std::str::from_utf8(bytes)
                        .map_err(|_| "partition key is not UTF-8".to_owned())?,
                );
            }
            (3, 2) => {
                let bytes = reader.bytes()?;
                raw_records.push(decode_record(bytes)?);
            }
            _ => reader.skip(wire)?,
        }
    }
    raw_records
        .into_iter()
        .enumerate()
        .map(|(i, (key_index, data))| {
            let partition_key = usize::try_from(key_index)
                .ok()
                .and_then(|k| keys.get(k).copied())
                .ok_or_else(|| {
                    format!(
                        "record {i} names partition key {key_index}, the table has {}",
                        keys.len()
                    )
                })?;
            Ok(SubRecord {
                partition_key,
                data,
            })
        })
        .collect()
}

fn decode_record(buf: &[u8]) -> Result<(u64, &[u8]), String> {
    let mut reader = Reader { buf, pos: 0 };
    let (mut key_index, mut data) = (None, None);
    while !reader.done() {
        match reader.key()? {
            (1, 0) => key_index = Some(reader.varint()?),
            (3, 2) => data = Some(reader.bytes()?),
            (_, wire) => reader.skip(wire)?,
        }
    }
    match (key_index, data) {
        (Some(k), Some(d)) => Ok((k, d)),
        _ => Err("record lacks partition_key_index or data".into()),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn key(&mut self) -> Result<(u64, u8), String> {
        let key = self.varint()?;
        Ok((key >> 3, (key & 7) as u8))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length overflows")?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or("length runs past the end")?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, wire: u8) -> Result<(), String> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.advance(8),
            2 => self.bytes().map(drop),
            5 => self.advance(4),
            other => Err(format!("unsupported wire type {other}")),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), String> {
        if self.pos + n > self.buf.len() {
            return Err("truncated field".into());
        }
        self.pos += n;
        Ok(())
    }
}

/// Builds an aggregate (used by the agent's optional aggregation, and by tests).
pub fn encode(records: &[(&str, &[u8])]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn bytes_field(out: &mut Vec<u8>, field: u64, data: &[u8]) {
        varint(out, (field << 3) | 2);
        varint(out, data.len() as u64);
        out.extend_from_slice(data);
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut body = Vec::new();
    let mut record_bodies = Vec::new();
    for (key, data) in records {
        let index = match keys.iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                keys.push(key);
                keys.len() - 1
            }
        };
        let mut rec = Vec::with_capacity(data.len() + 8);
        varint(&mut rec, 1 << 3);
        varint(&mut rec, index as u64);
        bytes_field(&mut rec, 3, data);
        record_bodies.push(rec);
    }
    for key in &keys {
        bytes_field(&mut body, 1, key.as_bytes());
    }
    for rec in &record_bodies {
        bytes_field(&mut body, 3, rec);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_it_encodes() -> Result<(), String> {
        let agg = encode(&[
            ("acme/api", b"{\"msg\":\"a\"}"),
            ("beta/web", b"plain"),
            ("acme/api", b"x"),
        ]);
        let subs = decode(&agg)?;
        assert_eq!(subs.len(), 3);
        assert_eq!(
            subs[0],
            SubRecord {
                partition_key: "acme/api",
                data: b"{\"msg\":\"a\"}"
            }
        );
        assert_eq!(subs[1].partition_key, "beta/web");
        assert_eq!(subs[2].data, b"x");
        Ok(())
    }

    #[test]
    fn rejects_aggregate_with_bad_md5() {
        let mut agg = encode(&[("k", b"data")]);
        let last = agg.len() - 1;
        agg[last] ^= 1;
        assert_eq!(
            decode(&agg).err().as_deref(),
            Some("MD5 trailer does not match the body")
        );
    }

    #[test]
    fn rejects_truncated_or_inconsistent_aggregates() {
        assert!(decode(&MAGIC).is_err());
        // A body whose record names partition key 5 in a table of one.
        let mut body = vec![0x0a, 1, b'k', 0x1a, 5, 0x08, 5, 0x1a, 1, b'x'];
        let mut agg = MAGIC.to_vec();
        agg.append(&mut body.clone());
        agg.extend_from_slice(&Md5::digest(&body));
        let err = decode(&agg).err().unwrap_or_default();
        assert!(err.contains("partition key 5"), "{err}");
        // A length that runs past the end.
        body = vec![0x0a, 50, b'k'];
        let mut agg = MAGIC.to_vec();
        agg.extend_from_slice(&body);
        agg.extend_from_slice(&Md5::digest(&body));
        assert_eq!(
            decode(&agg).err().as_deref(),
            Some("length runs past the end")
        );
    }
}
