//! When to try a `PutRecords` again: a bounded number of attempts, with exponential backoff
//! and full jitter between them (a random wait in `[0, min(cap, base × 2^(retry-1))]`), as AWS
//! recommends so that many producers throttled together do not retry together.

use std::time::Duration;

/// Attempts and backoff for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per entry, the first one included (at least 1).
    pub max_attempts: u32,
    /// The backoff ceiling of the first retry.
    pub base: Duration,
    /// The largest backoff ceiling.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the wait before retry number `retry` (1 for the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before retry number `retry`: uniform in `[0, ceiling(retry)]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        self.backoff_with(&mut fastrand::Rng::new(), retry)
    }

    /// [`Self::backoff`] with a given random source.
    pub fn backoff_with(&self, rng: &mut fastrand::Rng, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry).as_micros();
        let ceiling = u64::try_from(ceiling).unwrap_or(u64::MAX);
        Duration::from_micros(rng.u64(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_per_retry_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        let ceilings: Vec<u128> = (1..=6).map(|r| policy.ceiling(r).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.ceiling(200), Duration::from_secs(1));
    }

    #[test]
    fn full_jitter_spreads_waits_over_the_whole_range_below_the_ceiling() {
        let policy = RetryPolicy::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let waits: Vec<Duration> = (0..1_000)
            .map(|_| policy.backoff_with(&mut rng, 3))
            .collect();
        let ceiling = policy.ceiling(3);
        assert!(waits.iter().all(|w| *w <= ceiling));
        // Full jitter, not "ceiling plus a little noise": some waits are short, some long.
        assert!(waits.iter().any(|w| *w < ceiling / 10));
        assert!(waits.iter().any(|w| *w > ceiling * 9 / 10));
    }
}
