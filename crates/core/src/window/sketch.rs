//! A mergeable quantile sketch (DDSketch-style): values fall into logarithmic buckets whose
//! width guarantees a relative error of at most 1% for every quantile, and merging two sketches
//! adds bucket counts, so merging per-shard sketches gives exactly the sketch of all the values.
//!
//! Written here rather than taken from a crate because the partials it lives in are stored and
//! merged across processes: the serialised form (sorted `(bucket, count)` pairs) must stay stable
//! and compact, and merging must be exact.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Relative accuracy: every quantile is within 1% of a value that was actually inserted.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// Values at or below this are counted as zero (latencies under a nanosecond).
const MIN_VALUE: f64 = 1e-6;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// The sketch. Negative values are not expected (latencies) and count as zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QuantileSketch {
    /// Count of values at or below [`MIN_VALUE`].
    #[serde(default)]
    zeros: u64,
    /// Bucket index → count. Bucket `i` covers `(gamma^(i-1), gamma^i]`.
    #[serde(default)]
    buckets: BTreeMap<i32, u64>,
    #[serde(default)]
    count: u64,
    #[serde(default)]
    max: f64,
}

impl QuantileSketch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value.
    pub fn insert(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        self.count += 1;
        if value > self.max {
            self.max = value;
        }
        if value <= MIN_VALUE {
            self.zeros += 1;
        } else {
            let index = (value.ln() / gamma().ln()).ceil() as i32;
            *self.buckets.entry(index).or_default() += 1;
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &QuantileSketch) {
        self.zeros += other.zeros;
        for (index, count) in &other.buckets {
            *self.buckets.entry(*index).or_default() += count;
        }
        self.count += other.count;
        if other.max > self.max {
            self.max = other.max;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> f64 {
        self.max
    }

    /// The `q`-quantile (0 ≤ q ≤ 1), within 1% relative error; 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).floor() as u64;
        if rank < self.zeros {
            return 0.0;
        }
        let mut seen = self.zeros;
        let g = gamma();
        for (index, count) in &self.buckets {
            seen += count;
            if seen > rank {
                // The bucket's midpoint in relative terms: 2·gamma^i / (gamma + 1).
                let value = 2.0 * g.powi(*index) / (g + 1.0);
                return value.min(self.max);
            }
        }
        self.max
    }

    /// Buckets in use (a measure of the sketch's size).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    #[test]
    fn quantiles_are_within_one_percent_of_exact_values() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut values: Vec<f64> = (0..50_000)
            .map(|_| {
                5.0 + 40.0 * -(rng.f64().max(1e-12)).ln()
                    + if rng.f64() < 0.02 {
                        2000.0 * rng.f64()
                    } else {
                        0.0
                    }
            })
            .collect();
        let mut sketch = QuantileSketch::new();
        for v in &values {
            sketch.insert(*v);
        }
        values.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.95, 0.99, 0.999] {
            let (got, want) = (sketch.quantile(q), exact(&values, q));
            assert!(
                (got - want).abs() <= want * RELATIVE_ACCURACY,
                "q{q}: {got} vs {want}"
            );
        }
        assert_eq!(sketch.max(), values[values.len() - 1]);
        assert!(
            sketch.bucket_count() < 1000,
            "{} buckets",
            sketch.bucket_count()
        );
    }

    #[test]
    fn merging_shards_equals_one_pass() {
        let mut rng = fastrand::Rng::with_seed(9);
        let values: Vec<f64> = (0..10_000).map(|_| rng.f64() * 900.0).collect();
        let mut whole = QuantileSketch::new();
        let mut shards = vec![QuantileSketch::new(); 4];
        for (i, v) in values.iter().enumerate() {
            whole.insert(*v);
            shards[i % 4].insert(*v);
        }
        let mut merged = QuantileSketch::new();
        for s in &shards {
            merged.merge(s);
        }
        assert_eq!(merged.buckets, whole.buckets);
        assert_eq!((merged.count(), merged.max()), (whole.count(), whole.max()));
        assert_eq!(merged.quantile(0.99), whole.quantile(0.99));
    }

    #[test]
    fn empty_and_zero_values_are_handled() {
        let mut s = QuantileSketch::new();
        assert_eq!(s.quantile(0.5), 0.0);
        s.insert(0.0);
        s.insert(f64::NAN);
        assert_eq!((s.count(), s.quantile(0.99)), (1, 0.0));
    }
}
