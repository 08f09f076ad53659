//! Optional KPL aggregation (`--kpl`): many small user records packed into one Kinesis record,
//! in the format the Kinesis Producer Library writes and `sluice-core` decodes
//! ([`sluice_core::decode::kpl`]). Kinesis limits a shard to 1,000 records/s but 1 MiB/s, so
//! with 400-byte lines aggregation is what lets a shard reach its byte limit.
//!
//! Records are grouped by partition key (an aggregate carries its records' key, so they land
//! on the shard they would have without aggregation). An aggregate is closed when the next
//! record would take it over `max_bytes` (data plus key never over Kinesis's 1 MiB), or at the
//! linger deadline. A record that cannot share an aggregate, or an aggregate that ends up with
//! a single record, goes out as a plain record: consumers read both.

use std::collections::HashMap;

use bytes::Bytes;
use sluice_core::decode::kpl::AggregateBuilder;

use super::batcher::Entry;
use super::budget::Reservation;

/// The KPL's own default aggregate size.
pub const DEFAULT_MAX_BYTES: usize = 51_200;

#[derive(Debug)]
struct Open {
    builder: AggregateBuilder,
    /// The first record, kept as it is in case it stays alone.
    first: Option<Bytes>,
    user_bytes: u64,
    reservation: Reservation,
}

impl Open {
    fn into_entry(self) -> Entry {
        let partition_key = self.builder.partition_key().to_owned();
        let records = self.builder.records() as u64;
        let data = match self.first {
            Some(only) if records == 1 => only,
            _ => Bytes::from(self.builder.finish()),
        };
        Entry {
            partition_key,
            data,
            user_records: records,
            user_bytes: self.user_bytes,
            reservation: self.reservation,
        }
    }
}

/// The open aggregates, one per partition key.
#[derive(Debug)]
pub struct Aggregator {
    max_bytes: usize,
    max_record_bytes: usize,
    open: HashMap<String, Open>,
}

impl Aggregator {
    /// Aggregates of at most `max_bytes` (and never over `max_record_bytes` with their key).
    pub fn new(max_bytes: usize, max_record_bytes: usize) -> Self {
        Self {
            max_bytes,
            max_record_bytes,
            open: HashMap::new(),
        }
    }

    /// True when no aggregate is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Adds one user record (already checked to fit a plain Kinesis record with its key).
    /// Appends to `out` whatever became ready to send.
    pub fn add(
        &mut self,
        partition_key: String,
        data: Vec<u8>,
        reservation: Reservation,
        out: &mut Vec<Entry>,
    ) {
        let limit = self
            .max_bytes
            .min(self.max_record_bytes.saturating_sub(partition_key.len()));
        if AggregateBuilder::new(partition_key.as_str()).len_with(data.len()) > limit {
            // Too large to share an aggregate: alone, as a plain record.
            out.push(Entry::plain(partition_key, data, reservation));
            return;
        }
        if let Some(open) = self.open.get(&partition_key)
            && open.builder.len_with(data.len()) > limit
            && let Some(full) = self.open.remove(&partition_key)
        {
            out.push(full.into_entry());
        }
        let open = self
            .open
            .entry(partition_key)
            .or_insert_with_key(|key| Open {
                builder: AggregateBuilder::new(key.as_str()),
                first: None,
                user_bytes: 0,
                reservation: Reservation::none(),
            });
        open.builder.push(&data);
        open.user_bytes += data.len() as u64;
        open.reservation.merge(reservation);
        if open.builder.records() == 1 {
            open.first = Some(Bytes::from(data));
        } else {
            open.first = None;
        }
    }

    /// Closes every open aggregate (linger deadline, or the end).
    pub fn flush(&mut self, out: &mut Vec<Entry>) {
        out.extend(self.open.drain().map(|(_, open)| open.into_entry()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::decode::kpl;

    #[test]
    fn aggregates_round_trip_through_the_core_decoder_grouped_by_key_and_under_the_limit()
    -> Result<(), String> {
        let mut agg = Aggregator::new(4_096, 1 << 20);
        let mut out = Vec::new();
        let mut sent: Vec<(String, Vec<u8>)> = Vec::new();
        for i in 0..1_000 {
            let key = ["acme/api", "globex/web"][i % 2].to_owned();
            let data = format!("{{\"tenant\":\"x\",\"i\":{i}}}").into_bytes();
            sent.push((key.clone(), data.clone()));
            agg.add(key, data, Reservation::none(), &mut out);
        }
        agg.flush(&mut out);
        assert!(agg.is_empty());
        let mut got: Vec<(String, Vec<u8>)> = Vec::new();
        let mut user_records = 0;
        for entry in &out {
            assert!(entry.data.len() <= 4_096, "{}", entry.data.len());
            user_records += entry.user_records;
            let subs = kpl::decode(&entry.data)?;
            assert_eq!(subs.len() as u64, entry.user_records);
            for sub in subs {
                assert_eq!(sub.partition_key, entry.partition_key);
                got.push((sub.partition_key.to_owned(), sub.data.to_vec()));
            }
        }
        assert_eq!(user_records, 1_000);
        assert!(
            out.len() < 100,
            "{} aggregates for 1000 small records",
            out.len()
        );
        // Exactly what was sent, in order within each key.
        for key in ["acme/api", "globex/web"] {
            let want: Vec<_> = sent.iter().filter(|(k, _)| k == key).collect();
            let have: Vec<_> = got.iter().filter(|(k, _)| k == key).collect();
            assert_eq!(have, want, "{key}");
        }
        Ok(())
    }

    #[test]
    fn a_record_alone_or_too_large_to_share_goes_out_plain() {
        let mut agg = Aggregator::new(1_000, 1 << 20);
        let mut out = Vec::new();
        agg.add(
            "k/a".into(),
            vec![b'x'; 2_000],
            Reservation::none(),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.len(), 2_000);
        assert!(!kpl::is_aggregate(&out[0].data));
        agg.add(
            "k/b".into(),
            b"lonely".to_vec(),
            Reservation::none(),
            &mut out,
        );
        agg.flush(&mut out);
        assert_eq!(out[1].data.as_ref(), b"lonely");
        assert_eq!(out[1].user_records, 1);
    }
}
