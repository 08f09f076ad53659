//! A byte budget for everything the agent holds in memory: lines waiting in the channel, the
//! batch being filled, open KPL aggregates and calls in flight.
//!
//! A reader reserves a line's size before handing the line on; the reservation travels with
//! the line (and with the Kinesis record it becomes) and is given back when that record is
//! acknowledged or given up on. When the budget is spent, readers wait: that is the agent's
//! backpressure, and why its memory stays bounded however slow Kinesis is.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// The shared budget.
#[derive(Debug, Clone)]
pub struct Budget {
    semaphore: Arc<Semaphore>,
    total: u32,
}

impl Budget {
    /// A budget of `bytes` (at most `u32::MAX`).
    pub fn new(bytes: usize) -> Self {
        let total = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
        Self {
            semaphore: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// The whole budget, in bytes.
    pub fn total(&self) -> usize {
        self.total as usize
    }

    /// Bytes not reserved right now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Reserves `bytes` (at least 1, at most the whole budget), waiting until they are free.
    pub async fn reserve(&self, bytes: usize) -> Reservation {
        let n = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.total);
        match self.semaphore.acquire_many(n).await {
            Ok(permit) => {
                permit.forget();
                Reservation {
                    semaphore: Some(Arc::clone(&self.semaphore)),
                    bytes: n,
                }
            }
            // The semaphore is never closed; an empty reservation is harmless if it were.
            Err(_) => Reservation::none(),
        }
    }
}

/// Bytes of the budget held by a line or a record; given back on drop.
#[derive(Debug, Default)]
pub struct Reservation {
    semaphore: Option<Arc<Semaphore>>,
    bytes: u32,
}

impl Reservation {
    /// A reservation of nothing (tests, records built outside the pipeline).
    pub fn none() -> Self {
        Self::default()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }

    /// Takes over `other`'s bytes (records packed into one aggregate).
    pub fn merge(&mut self, mut other: Reservation) {
        if other.bytes == 0 {
            return;
        }
        if self.semaphore.is_none() {
            self.semaphore = other.semaphore.take();
        }
        self.bytes = self.bytes.saturating_add(other.bytes);
        other.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(semaphore) = &self.semaphore
            && self.bytes > 0
        {
            semaphore.add_permits(self.bytes as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_come_back_when_dropped_even_after_merging() {
        let budget = Budget::new(100);
        let mut a = budget.reserve(30).await;
        let b = budget.reserve(50).await;
        assert_eq!(budget.available(), 20);
        a.merge(b);
        assert_eq!(a.bytes(), 80);
        assert_eq!(budget.available(), 20);
        drop(a);
        assert_eq!(budget.available(), 100);
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_takes_the_whole_budget_instead_of_waiting_forever() {
        let budget = Budget::new(10);
        let r = budget.reserve(1_000).await;
        assert_eq!((r.bytes(), budget.available()), (10, 0));
    }
}
