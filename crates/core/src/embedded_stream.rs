//! The embedded default's stream: an in-process stand-in for Kinesis with the same shape.
//!
//! Records are routed to shards by the MD5 of their partition key (as Kinesis does), get
//! increasing decimal sequence numbers per shard, and are read back in batches per shard, so the
//! ingest path sees exactly what Lambda would hand it.

use md5::{Digest, Md5};

use crate::input::StreamRecord;

/// An in-memory stream with a fixed number of shards.
#[derive(Debug)]
pub struct EmbeddedStream {
    shards: Vec<Shard>,
}

#[derive(Debug)]
struct Shard {
    id: String,
    next_sequence: u128,
    records: std::collections::VecDeque<StreamRecord>,
}

impl EmbeddedStream {
    /// A stream with `shards` shards (at least one), named like Kinesis shards.
    pub fn new(shards: usize) -> Self {
        let shards = (0..shards.max(1))
            .map(|i| Shard {
                id: format!("shardId-{i:012}"),
                next_sequence: 49_590_000_000_000_000_000_000_000_000u128
                    + (i as u128) * 1_000_000_000_000_000_000_000_000,
                records: std::collections::VecDeque::new(),
            })
            .collect();
        Self { shards }
    }

    /// Shard ids.
    pub fn shard_ids(&self) -> Vec<String> {
        self.shards.iter().map(|s| s.id.clone()).collect()
    }

    /// Which shard a partition key lands on: the top bits of its MD5 split evenly over shards.
    pub fn shard_for(&self, partition_key: &str) -> usize {
        let digest = Md5::digest(partition_key.as_bytes());
        let top = u64::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ]);
        ((u128::from(top) * self.shards.len() as u128) >> 64) as usize
    }

    /// Appends a record and returns its shard id and sequence number.
    pub fn put(&mut self, partition_key: &str, data: Vec<u8>, arrival_ms: i64) -> (String, String) {
        let index = self.shard_for(partition_key);
        let shard = &mut self.shards[index];
        shard.next_sequence += 1;
        let record = StreamRecord {
            shard_id: shard.id.as_str().into(),
            sequence_number: crate::input::sequence_number(shard.next_sequence),
            partition_key: partition_key.to_owned(),
            arrival_ms,
            data: data.into(),
        };
        let ids = (shard.id.clone(), record.sequence_number.to_string());
        shard.records.push_back(record);
        ids
    }

    /// Takes up to `max` records from the front of a shard.
    pub fn take_batch(&mut self, shard: usize, max: usize) -> Vec<StreamRecord> {
        let Some(shard) = self.shards.get_mut(shard) else {
            return Vec::new();
        };
        let n = max.min(shard.records.len());
        shard.records.drain(..n).collect()
    }

    /// Records waiting in all shards.
    pub fn pending(&self) -> usize {
        self.shards.iter().map(|s| s.records.len()).sum()
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::cmp_sequence;

    #[test]
    fn routes_by_key_and_numbers_records_in_order() {
        let mut stream = EmbeddedStream::new(4);
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            let key = format!("tenant{}/svc", i % 20);
            let (shard, _) = stream.put(&key, vec![b'x'], 1);
            assert_eq!(
                shard,
                format!("shardId-{:012}", stream.shard_for(&key)),
                "stable routing"
            );
            seen.insert(shard);
        }
        assert!(seen.len() >= 3, "keys spread over shards: {seen:?}");
        let batch = stream.take_batch(0, 1000);
        assert!(
            batch
                .windows(2)
                .all(|w| cmp_sequence(&w[0].sequence_number, &w[1].sequence_number).is_lt())
        );
        assert_eq!(stream.pending(), 200 - batch.len());
    }
}
