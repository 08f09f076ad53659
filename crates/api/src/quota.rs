//! The per-tenant request-rate quota: a token bucket per tenant, refilled at the configured
//! rate up to the burst. A request over it is answered 429 with the seconds until a token is
//! back in `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Token buckets by tenant.
#[derive(Debug)]
pub struct Quotas {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Quotas {
    pub fn new(rate_per_second: f64, burst: f64) -> Self {
        Self {
            rate: rate_per_second.max(f64::MIN_POSITIVE),
            burst: burst.max(1.0),
            buckets: Mutex::default(),
        }
    }

    /// Takes a token for one request of `tenant`, or says how many whole seconds until one.
    pub fn take(&self, tenant: &str) -> Result<(), u64> {
        self.take_at(tenant, Instant::now())
    }

    /// [`Self::take`] at a given instant.
    pub fn take_at(&self, tenant: &str, now: Instant) -> Result<(), u64> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let (tokens, last) = buckets
            .entry(tenant.to_owned())
            .or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - *tokens) / self.rate;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_tenant_over_its_burst_waits_for_the_refill_and_others_are_not_affected() {
        let quotas = Quotas::new(0.5, 2.0);
        let start = Instant::now();
        assert_eq!(quotas.take_at("acme", start), Ok(()));
        assert_eq!(quotas.take_at("acme", start), Ok(()));
        assert_eq!(quotas.take_at("acme", start), Err(2));
        assert_eq!(quotas.take_at("globex", start), Ok(()));
        assert_eq!(
            quotas.take_at("acme", start + Duration::from_secs(2)),
            Ok(())
        );
        assert_eq!(
            quotas.take_at("acme", start + Duration::from_secs(2)),
            Err(2)
        );
    }
}
