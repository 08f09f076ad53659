//! How far each shard's aggregation has got, so the evaluator closes a window only once every
//! busy shard has written its partials for it.
//!
//! A window's events are exactly those that *arrived* before its close (end plus allowed
//! lateness): later ones count in a later window (see [`super::WindowAggregator::add`]). Lambda
//! cuts its tumbling windows by arrival time too, so once a shard's aggregator has finished the
//! Lambda window that ends at or after the close, every partial of the window from that shard is
//! in the store. The aggregator records this per shard under `windows/progress/`:
//! - at the first invocation of a Lambda window, `through_ms` = the window's start (what arrived
//!   before it is stored) — this also marks the shard as busy;
//! - at the final invocation, `through_ms` = the window's end.
//!
//! A shard is waited for while it is *busy*: it wrote progress within one Lambda window plus a
//! grace period. A shard with no records gets no invocations, goes quiet, and stops holding
//! windows back; so does a closed parent shard after a reshard. The evaluator also never waits
//! more than a cap past the close, so one stuck shard cannot stop every tenant's alerts.
//!
//! A quiet shard that gets records just before a close is busy only from its first invocation
//! on, which Lambda makes up to its batching window (plus polling and a cold start) after the
//! records arrive. So the evaluator takes a window as closed only that long after its close
//! ([`crate::evaluate::ShardWait::first_report_ms`]); by then such a shard has said it is busy.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::store::{BlobStore, StoreError};

/// Where the progress records live: this, then `shard=<id>.json`.
pub const PROGRESS_PREFIX: &str = "windows/progress/";

/// One shard's aggregation progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardProgress {
    pub shard: String,
    /// Every record that arrived before this (ms since the epoch) is in stored partials.
    pub through_ms: i64,
    /// The length of the shard's Lambda tumbling window.
    pub window_ms: i64,
    /// When this record was written.
    pub written_at_ms: i64,
}

impl ShardProgress {
    /// True while the shard should be waited for: it wrote progress within one of its Lambda
    /// windows plus `grace_ms` (the time a final invocation may take to come after the end).
    pub fn is_busy(&self, now_ms: i64, grace_ms: i64) -> bool {
        now_ms - self.written_at_ms <= self.window_ms + grace_ms
    }
}

/// The key of a shard's progress record.
pub fn progress_key(shard: &str) -> String {
    format!("{PROGRESS_PREFIX}shard={shard}.json")
}

/// Writes a shard's progress.
pub async fn record(store: &dyn BlobStore, progress: &ShardProgress) -> Result<(), CoreError> {
    let body = serde_json::to_vec(progress).map_err(std::io::Error::from)?;
    store
        .put(
            &progress_key(&progress.shard),
            Bytes::from(body),
            "application/json",
        )
        .await?;
    Ok(())
}

/// Every shard's progress. A record that does not parse is skipped with a warning: it cannot
/// say what to wait for, and waiting for ever on it would stop every tenant's alerts.
pub async fn load_all(store: &dyn BlobStore) -> Result<Vec<ShardProgress>, StoreError> {
    let mut all = Vec::new();
    for key in store.list(PROGRESS_PREFIX).await? {
        let Some(body) = store.get(&key).await? else {
            continue;
        };
        match serde_json::from_slice::<ShardProgress>(&body) {
            Ok(p) => all.push(p),
            Err(e) => tracing::warn!(%key, error = %e, "unreadable shard progress; not waited for"),
        }
    }
    Ok(all)
}

/// The busy shards whose aggregation has not reached `close_ms` yet, sorted.
pub fn lagging(
    progress: &[ShardProgress],
    close_ms: i64,
    now_ms: i64,
    grace_ms: i64,
) -> Vec<String> {
    let mut shards: Vec<String> = progress
        .iter()
        .filter(|p| p.through_ms < close_ms && p.is_busy(now_ms, grace_ms))
        .map(|p| p.shard.clone())
        .collect();
    shards.sort();
    shards
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(name: &str, through_ms: i64, written_at_ms: i64) -> ShardProgress {
        ShardProgress {
            shard: name.into(),
            through_ms,
            window_ms: 60_000,
            written_at_ms,
        }
    }

    #[test]
    fn a_busy_shard_short_of_the_close_lags() {
        let p = [shard("b", 120_000, 150_000), shard("a", 180_000, 179_000)];
        assert_eq!(lagging(&p, 180_000, 180_000, 30_000), ["b"]);
    }

    #[test]
    fn a_shard_through_the_close_does_not_lag() {
        let p = [shard("a", 180_000, 181_000)];
        assert!(lagging(&p, 180_000, 181_000, 30_000).is_empty());
    }

    #[test]
    fn a_shard_quiet_for_a_window_and_the_grace_is_not_waited_for() {
        // Last wrote at 100 s; one 60 s window plus 30 s grace later it no longer counts.
        let p = [shard("a", 100_000, 100_000)];
        assert_eq!(lagging(&p, 180_000, 190_000, 30_000), ["a"]);
        assert!(lagging(&p, 180_000, 190_001, 30_000).is_empty());
    }
}
