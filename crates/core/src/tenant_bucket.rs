//! Tenant buckets: every tenant belongs to bucket `hash(tenant) mod B`, where the hash is
//! 64-bit FNV-1a over the tenant id's bytes (stable across processes, releases and machines,
//! unlike std's randomised hasher). Partials are stored, and evaluation is fanned out, per
//! (window, bucket), so the objects and work items of a window grow with B, not with the number
//! of tenants (docs/ARCHITECTURE.md §12).

use serde::{Deserialize, Serialize};

/// The number of tenant buckets (B). At least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantBuckets(u32);

impl TenantBuckets {
    /// The template's default.
    pub const DEFAULT: TenantBuckets = TenantBuckets(32);

    /// `count` buckets; 0 is taken as 1.
    pub fn new(count: u32) -> Self {
        Self(count.max(1))
    }

    pub fn count(self) -> u32 {
        self.0
    }

    /// The bucket `tenant` belongs to.
    pub fn of(self, tenant: &str) -> u32 {
        (fnv1a64(tenant.as_bytes()) % u64::from(self.0)) as u32
    }

    /// Every bucket, in order.
    pub fn all(self) -> impl Iterator<Item = u32> {
        0..self.0
    }
}

impl Default for TenantBuckets {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_published_fnv1a_value() {
        // Reference values of the FNV-1a 64-bit test suite.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn buckets_spread_tenants_evenly_and_stay_in_range() {
        let b = TenantBuckets::new(32);
        let mut counts = [0u32; 32];
        for i in 0..10_000 {
            let bucket = b.of(&format!("tenant-{i:05}"));
            counts[bucket as usize] += 1;
        }
        let (min, max) = (counts.iter().min(), counts.iter().max());
        assert!(min >= Some(&250) && max <= Some(&380), "{counts:?}");
    }

    #[test]
    fn zero_buckets_means_one() {
        assert_eq!(TenantBuckets::new(0).of("acme"), 0);
        assert_eq!(TenantBuckets::new(0).count(), 1);
    }
}
