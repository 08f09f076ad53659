//! The clocks a rule sees: both frozen. The wall clock reads the end of the window being
//! evaluated; the monotonic clock reads 0 and never advances, and waiting on it (`sleep`)
//! returns at once. So evaluations are reproducible, a rule cannot time anything (no timing
//! side channels), and it cannot park the host thread in a sleep, where the epoch deadline
//! would not reach it.

use std::time::Duration;

use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::HostWallClock;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

/// A wall clock that always reads the same instant.
pub(crate) struct FrozenWallClock(pub(crate) i64);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }
}

/// `wasi:clocks/monotonic-clock`, frozen at 0.
pub(crate) struct FrozenMonotonicClock<'a> {
    table: &'a mut ResourceTable,
}

impl<'a> FrozenMonotonicClock<'a> {
    pub(crate) fn new(table: &'a mut ResourceTable) -> FrozenMonotonicClock<'a> {
        FrozenMonotonicClock { table }
    }

    fn ready(&mut self) -> wasmtime::Result<Resource<DynPollable>> {
        let ready = self.table.push(AlwaysReady)?;
        subscribe(self.table, ready)
    }
}

/// [`HasData`] for [`FrozenMonotonicClock`].
pub(crate) struct FrozenMonotonic;

impl HasData for FrozenMonotonic {
    type Data<'a> = FrozenMonotonicClock<'a>;
}

impl monotonic_clock::Host for FrozenMonotonicClock<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(0)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(1)
    }

    fn subscribe_instant(
        &mut self,
        _when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.ready()
    }

    fn subscribe_duration(
        &mut self,
        _duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.ready()
    }
}

/// A pollable that is always ready.
struct AlwaysReady;

#[wasmtime_wasi::async_trait]
impl Pollable for AlwaysReady {
    async fn ready(&mut self) {}
}
