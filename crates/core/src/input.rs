//! What arrives from the stream: one Kinesis record, stripped of anything AWS-specific.

use std::sync::Arc;

use bytes::Bytes;

/// A Kinesis sequence number: a `str`, stored inline up to 24 bytes.
pub type SequenceNumber = compact_str::CompactString;

/// The sequence number `n` (as the CLI and the embedded stream number their records), without
/// an allocation. Numbers that fit in 64 bits are formatted as such: 128-bit formatting divides
/// by 10^19 first, a cost paid per record.
pub fn sequence_number(n: u128) -> SequenceNumber {
    use compact_str::ToCompactString as _;
    match u64::try_from(n) {
        Ok(small) => small.to_compact_string(),
        Err(_) => n.to_compact_string(),
    }
}

/// Decimal sequence numbers `1, 2, 3, …` counted up in place, for a caller that numbers every
/// record it reads (the CLI numbers lines): the next number costs an increment of its last
/// digits rather than formatting a whole number.
#[derive(Debug, Clone)]
pub struct SequenceCounter {
    /// The number's digits are `digits[start..]`.
    digits: [u8; 40],
    start: usize,
}

impl Default for SequenceCounter {
    fn default() -> Self {
        Self {
            digits: [b'0'; 40],
            start: 39,
        }
    }
}

impl SequenceCounter {
    /// Counts one up and returns the new number (the first call returns `1`).
    pub fn advance(&mut self) -> &str {
        let mut i = self.digits.len();
        while i > 0 {
            i -= 1;
            if self.digits[i] < b'9' {
                self.digits[i] += 1;
                break;
            }
            self.digits[i] = b'0';
            if i == self.start && i > 0 {
                // 99…9 becomes 100…0: one digit more.
                self.start -= 1;
                self.digits[self.start] = b'1';
                break;
            }
        }
        self.as_str()
    }

    /// The current number.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.digits[self.start..]).unwrap_or_default()
    }
}

/// One record as the stream delivered it. Lambda's `KinesisEventRecord`, the local runner and the
/// embedded stream all convert to this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// Shard the record came from (shared by every record of a batch), e.g. `shardId-000000000000`.
    pub shard_id: Arc<str>,
    /// The record's sequence number (a decimal string of up to 128 bits). Kept inline when it
    /// is short (the CLI's and the embedded stream's are), so a record costs no allocation.
    pub sequence_number: SequenceNumber,
    /// The partition key the producer chose; sluice producers use `tenant/service`.
    pub partition_key: String,
    /// When Kinesis accepted the record (`approximateArrivalTimestamp`), ms since the epoch.
    pub arrival_ms: i64,
    /// The payload, exactly as put. `Bytes`, so that many records can share one read buffer.
    pub data: Bytes,
}

impl StreamRecord {
    /// The record as decoding reads it.
    pub fn view(&self) -> RecordRef<'_> {
        RecordRef {
            shard_id: &self.shard_id,
            sequence_number: &self.sequence_number,
            partition_key: &self.partition_key,
            arrival_ms: self.arrival_ms,
            data: &self.data,
        }
    }
}

/// A [`StreamRecord`] borrowed: everything decoding one record reads. A caller whose bytes live
/// elsewhere (the CLI's line reader) builds one per record with no reference counting, which
/// costs a full memory barrier per atomic operation, at a million records a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    pub partition_key: &'a str,
    /// When Kinesis accepted the record, ms since the epoch (0 when unknown).
    pub arrival_ms: i64,
    pub data: &'a [u8],
}

impl RecordRef<'_> {
    /// The arrival time the record's events are judged against: its own, or `now_ms` when it
    /// has none.
    pub fn reference_ms(&self, now_ms: i64) -> i64 {
        if self.arrival_ms > 0 {
            self.arrival_ms
        } else {
            now_ms
        }
    }
}

/// Compares two Kinesis sequence numbers (decimal strings without leading zeros).
pub fn cmp_sequence(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Splits a partition key `tenant/service[/suffix]` into its tenant and service parts.
pub fn split_partition_key(key: &str) -> (Option<&str>, Option<&str>) {
    let mut parts = key.splitn(3, '/');
    let tenant = parts.next().filter(|t| !t.is_empty());
    let service = parts.next().filter(|s| !s.is_empty());
    (tenant, service)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn sequence_numbers_compare_numerically() {
        assert_eq!(cmp_sequence("9", "10"), Ordering::Less);
        assert_eq!(
            cmp_sequence(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Ordering::Less
        );
        assert_eq!(cmp_sequence("11", "11"), Ordering::Equal);
    }

    #[test]
    fn sequence_numbers_are_written_in_decimal_on_both_sides_of_64_bits() {
        let max = u128::from(u64::MAX);
        for n in [
            0,
            7,
            10,
            4_959_000_000_000,
            max - 1,
            max,
            max + 1,
            u128::MAX,
        ] {
            assert_eq!(sequence_number(n).as_str(), n.to_string());
        }
    }

    #[test]
    fn the_sequence_counter_counts_in_decimal_across_every_new_digit() {
        let mut counter = SequenceCounter::default();
        assert_eq!(counter.as_str(), "0");
        for n in 1..=100_001u32 {
            assert_eq!(counter.advance(), n.to_string());
        }
    }

    #[test]
    fn partition_key_gives_tenant_and_service() {
        assert_eq!(
            split_partition_key("acme/checkout"),
            (Some("acme"), Some("checkout"))
        );
        assert_eq!(
            split_partition_key("acme/checkout/7"),
            (Some("acme"), Some("checkout"))
        );
        assert_eq!(split_partition_key("acme"), (Some("acme"), None));
        assert_eq!(split_partition_key(""), (None, None));
    }
}
