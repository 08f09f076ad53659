//! Storage keys (docs/ARCHITECTURE.md §3), Hive style so Athena, DuckDB and Spark read them as they are.

use crate::normalize::timestamp::{civil_from_days, days_from_civil};

/// The hour bucket of a timestamp: ms since the epoch truncated to the hour.
pub fn hour_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(3_600_000)
}

/// `dt=YYYY-MM-DD/hour=HH` for an hour bucket.
pub fn dt_hour(hour: i64) -> String {
    let (y, m, d) = civil_from_days(hour.div_euclid(24));
    format!("dt={y:04}-{m:02}-{d:02}/hour={:02}", hour.rem_euclid(24))
}

/// The prefix of the raw tier: one object per ingested batch.
pub const RAW_PREFIX: &str = "raw/";
/// The prefix of the compacted tier: one object per tenant-hour.
pub const LOGS_PREFIX: &str = "logs/";

/// `raw/dt=YYYY-MM-DD/hour=HH/<shard>-<firstSeq>.parquet`, dated by the arrival of the batch's
/// first record (docs/ARCHITECTURE.md §11).
///
/// Everything in the key comes from the batch's first record, so a batch re-delivered from the
/// same record (the same batch, a longer one, a bisect's first half) replaces the object.
pub fn raw_key(arrival_ms: i64, shard_id: &str, first_sequence: &str) -> String {
    format!(
        "{RAW_PREFIX}{}/{shard_id}-{first_sequence}.parquet",
        dt_hour(hour_of(arrival_ms))
    )
}

/// `raw/dt=YYYY-MM-DD/hour=HH/`: the raw objects of the batches whose first record arrived in
/// `hour`.
pub fn raw_hour_prefix(hour: i64) -> String {
    format!("{RAW_PREFIX}{}/", dt_hour(hour))
}

/// `logs/tenant=T/dt=YYYY-MM-DD/hour=HH/part-0.parquet`: the compacted object of one tenant's
/// events of one hour (docs/ARCHITECTURE.md §11).
pub fn compacted_key(tenant: &str, hour: i64) -> String {
    format!(
        "{LOGS_PREFIX}tenant={tenant}/{}/part-0.parquet",
        dt_hour(hour)
    )
}

/// The hour bucket named by the first `dt=YYYY-MM-DD/hour=HH` in `key`, if any.
pub fn parse_dt_hour(key: &str) -> Option<i64> {
    let at = key.find("dt=")?;
    let rest = key.get(at + 3..)?;
    let (y, m, d) = (
        rest.get(0..4)?.parse().ok()?,
        rest.get(5..7)?.parse().ok()?,
        rest.get(8..10)?.parse().ok()?,
    );
    let hour: i64 = rest
        .get(10..)?
        .strip_prefix("/hour=")?
        .get(0..2)?
        .parse()
        .ok()?;
    Some(days_from_civil(y, m, d) * 24 + hour)
}

/// `dlq/dt=YYYY-MM-DD/hour=HH/<shard>-<firstSeq>.ndjson.gz`, dated by the batch's arrival.
pub fn dead_letter_key(arrival_ms: i64, shard_id: &str, first_sequence: &str) -> String {
    format!(
        "dlq/{}/{shard_id}-{first_sequence}.ndjson.gz",
        dt_hour(hour_of(arrival_ms))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hive_partitioned() {
        let ts = 1_714_566_896_789; // 2024-05-01T12:34:56.789Z
        assert_eq!(
            raw_key(ts, "shardId-000000000001", "4959"),
            "raw/dt=2024-05-01/hour=12/shardId-000000000001-4959.parquet"
        );
        assert_eq!(
            compacted_key("acme", hour_of(ts)),
            "logs/tenant=acme/dt=2024-05-01/hour=12/part-0.parquet"
        );
        assert_eq!(raw_hour_prefix(hour_of(ts)), "raw/dt=2024-05-01/hour=12/");
        assert_eq!(
            dead_letter_key(ts, "s", "1"),
            "dlq/dt=2024-05-01/hour=12/s-1.ndjson.gz"
        );
        assert_eq!(dt_hour(hour_of(-1)), "dt=1969-12-31/hour=23");
        assert_eq!(
            parse_dt_hour("raw/dt=2024-05-01/hour=12/s-1.parquet"),
            Some(hour_of(ts))
        );
        assert_eq!(parse_dt_hour("raw/dt=2024-05-01/x"), None);
    }
}
