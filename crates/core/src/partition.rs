//! Storage keys (docs/ARCHITECTURE.md §3), Hive style so Athena, DuckDB and Spark read them as they are.

use crate::normalize::timestamp::civil_from_days;

/// The hour bucket of a timestamp: ms since the epoch truncated to the hour.
pub fn hour_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(3_600_000)
}

/// `dt=YYYY-MM-DD/hour=HH` for an hour bucket.
pub fn dt_hour(hour: i64) -> String {
    let (y, m, d) = civil_from_days(hour.div_euclid(24));
    format!("dt={y:04}-{m:02}-{d:02}/hour={:02}", hour.rem_euclid(24))
}

/// `logs/tenant=T/dt=YYYY-MM-DD/hour=HH/<shard>-<firstSeq>.parquet`.
///
/// The name is the batch's shard and first sequence number, so a re-delivered batch (which
/// Lambda and the local runner always restart at the same first record) overwrites its objects.
pub fn logs_key(tenant: &str, hour: i64, shard_id: &str, first_sequence: &str) -> String {
    format!(
        "logs/tenant={tenant}/{}/{shard_id}-{first_sequence}.parquet",
        dt_hour(hour)
    )
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
            logs_key("acme", hour_of(ts), "shardId-000000000001", "4959"),
            "logs/tenant=acme/dt=2024-05-01/hour=12/shardId-000000000001-4959.parquet"
        );
        assert_eq!(
            dead_letter_key(ts, "s", "1"),
            "dlq/dt=2024-05-01/hour=12/s-1.ndjson.gz"
        );
        assert_eq!(dt_hour(hour_of(-1)), "dt=1969-12-31/hour=23");
    }
}
