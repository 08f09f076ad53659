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

/// Builds an aggregate of records that may have different partition keys (for tests and
/// tools; the agent uses [`AggregateBuilder`], one key per aggregate).
pub fn encode(records: &[(&str, &[u8])]) -> Vec<u8> {
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
        put_varint(&mut rec, 1 << 3);
        put_varint(&mut rec, index as u64);
        put_bytes_field(&mut rec, 3, data);
        record_bodies.push(rec);
    }
    for key in &keys {
        put_bytes_field(&mut body, 1, key.as_bytes());
    }
    for rec in &record_bodies {
        put_bytes_field(&mut body, 3, rec);
    }
    frame(&body)
}

/// Bytes an aggregate adds around its protobuf body: the magic and the MD5 trailer.
pub const FRAME_BYTES: usize = MAGIC.len() + 16;

/// Builds one aggregate of user records that share one partition key, knowing its exact
/// encoded size at every step, so that a producer keeps it under a limit (Kinesis allows 1 MiB
/// of data plus partition key per record). This is how the KPL aggregates: the Kinesis record
/// carries the same partition key as every user record in it, so it lands on the same shard.
///
/// ```
/// use sluice_core::decode::kpl::{AggregateBuilder, decode};
/// let mut agg = AggregateBuilder::new("acme/api");
/// for line in [&b"{\"msg\":\"a\"}"[..], b"{\"msg\":\"b\"}"] {
///     if agg.len_with(line.len()) <= 51_200 {
///         agg.push(line);
///     }
/// }
/// let len = agg.len();
/// let bytes = agg.finish();
/// assert_eq!(bytes.len(), len);
/// assert_eq!(decode(&bytes).map(|r| r.len()), Ok(2));
/// ```
#[derive(Debug, Clone)]
pub struct AggregateBuilder {
    partition_key: String,
    body: Vec<u8>,
    records: usize,
}

impl AggregateBuilder {
    /// An empty aggregate for `partition_key`.
    pub fn new(partition_key: impl Into<String>) -> Self {
        let partition_key = partition_key.into();
        let mut body = Vec::with_capacity(partition_key.len() + 64);
        put_bytes_field(&mut body, 1, partition_key.as_bytes());
        Self {
            partition_key,
            body,
            records: 0,
        }
    }

    /// The partition key every record in the aggregate shares.
    pub fn partition_key(&self) -> &str {
        &self.partition_key
    }

    /// User records added so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// True when no record was added.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The encoded size of the aggregate as it stands (magic, body, MD5), in bytes.
    pub fn len(&self) -> usize {
        FRAME_BYTES + self.body.len()
    }

    /// The encoded size the aggregate would have with one more record of `data_len` bytes.
    pub fn len_with(&self, data_len: usize) -> usize {
        self.len() + record_field_len(data_len)
    }

    /// Adds one user record.
    pub fn push(&mut self, data: &[u8]) {
        let inner = record_inner_len(data.len());
        put_varint(&mut self.body, (3 << 3) | 2);
        put_varint(&mut self.body, inner as u64);
        // Record { partition_key_index = 0; data }
        put_varint(&mut self.body, 1 << 3);
        put_varint(&mut self.body, 0);
        put_bytes_field(&mut self.body, 3, data);
        self.records += 1;
    }

    /// The finished aggregate: magic, protobuf body, MD5 of the body.
    pub fn finish(self) -> Vec<u8> {
        frame(&self.body)
    }
}

/// Groups `records` by partition key into aggregates of at most `max_bytes` each (encoded
/// size), keeping the order of records within a key. Returns `(partition key, aggregate,
/// user records in it)`, keys in order of first appearance. A record too large to fit in an
/// aggregate of `max_bytes` on its own still gets an aggregate of its own (larger than
/// `max_bytes`): check sizes first when that matters.
pub fn aggregate(records: &[(&str, &[u8])], max_bytes: usize) -> Vec<(String, Vec<u8>, usize)> {
    let mut open: Vec<AggregateBuilder> = Vec::new();
    let mut out = Vec::new();
    for (key, data) in records {
        let slot = match open.iter().position(|a| a.partition_key() == *key) {
            Some(i) => i,
            None => {
                open.push(AggregateBuilder::new(*key));
                open.len() - 1
            }
        };
        if !open[slot].is_empty() && open[slot].len_with(data.len()) > max_bytes {
            let full = std::mem::replace(&mut open[slot], AggregateBuilder::new(*key));
            let n = full.records();
            out.push((key.to_string(), full.finish(), n));
        }
        open[slot].push(data);
    }
    for agg in open {
        let n = agg.records();
        out.push((agg.partition_key.clone(), agg.finish(), n));
    }
    out
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Length of an encoded `Record { partition_key_index: 0, data }`.
fn record_inner_len(data_len: usize) -> usize {
    2 + 1 + varint_len(data_len as u64) + data_len
}

/// Length of the `records` field (tag, length, record) for data of `data_len` bytes.
fn record_field_len(data_len: usize) -> usize {
    let inner = record_inner_len(data_len);
    1 + varint_len(inner as u64) + inner
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u64, data: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_BYTES + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(body);
    out.extend_from_slice(&Md5::digest(body));
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

    #[test]
    fn the_builder_round_trips_through_the_decoder_and_knows_its_size() -> Result<(), String> {
        let mut agg = AggregateBuilder::new("acme/checkout/3");
        let lines: Vec<Vec<u8>> = (0..300)
            .map(|i| {
                format!(
                    "{{\"tenant\":\"acme\",\"n\":{i},\"pad\":\"{}\"}}",
                    "x".repeat(i)
                )
                .into_bytes()
            })
            .collect();
        for line in &lines {
            let predicted = agg.len_with(line.len());
            agg.push(line);
            assert_eq!(agg.len(), predicted);
        }
        assert_eq!(agg.records(), 300);
        let expected_len = agg.len();
        let bytes = agg.finish();
        assert_eq!(bytes.len(), expected_len);
        let subs = decode(&bytes)?;
        assert_eq!(subs.len(), lines.len());
        for (sub, line) in subs.iter().zip(&lines) {
            assert_eq!(sub.partition_key, "acme/checkout/3");
            assert_eq!(sub.data, line.as_slice());
        }
        Ok(())
    }

    #[test]
    fn sizes_are_exact_across_varint_boundaries() {
        for len in [
            0, 1, 120, 127, 128, 16_380, 16_383, 16_384, 2_097_151, 2_097_152,
        ] {
            let mut agg = AggregateBuilder::new("k");
            let data = vec![b'a'; len];
            let predicted = agg.len_with(len);
            agg.push(&data);
            assert_eq!(agg.len(), predicted, "{len}");
            assert_eq!(agg.finish().len(), predicted, "{len}");
        }
    }

    #[test]
    fn aggregate_groups_by_partition_key_and_keeps_each_under_the_limit() -> Result<(), String> {
        let payloads: Vec<(String, Vec<u8>)> = (0..2_000)
            .map(|i| {
                let key = ["acme/api", "beta/web", "acme/checkout"][i % 3].to_owned();
                (
                    key,
                    format!("{{\"i\":{i},\"msg\":\"hello world\"}}").into_bytes(),
                )
            })
            .collect();
        let input: Vec<(&str, &[u8])> = payloads
            .iter()
            .map(|(k, d)| (k.as_str(), d.as_slice()))
            .collect();
        let max = 4_096;
        let aggregates = aggregate(&input, max);
        assert!(aggregates.len() > 3, "{} aggregates", aggregates.len());
        let mut seen: Vec<(String, Vec<u8>)> = Vec::new();
        for (key, bytes, n) in &aggregates {
            assert!(bytes.len() <= max, "{} > {max}", bytes.len());
            let subs = decode(bytes)?;
            assert_eq!(subs.len(), *n);
            for sub in subs {
                assert_eq!(sub.partition_key, key);
                seen.push((sub.partition_key.to_owned(), sub.data.to_vec()));
            }
        }
        // Every record exactly once, in order within its key.
        for key in ["acme/api", "beta/web", "acme/checkout"] {
            let want: Vec<&Vec<u8>> = payloads
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, d)| d)
                .collect();
            let got: Vec<&Vec<u8>> = seen
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, d)| d)
                .collect();
            assert_eq!(got, want, "{key}");
        }
        Ok(())
    }
}
