//! The generated traffic the ingest benchmarks of several crates run on (included with
//! `#[path]`): 8 tenants of 8 services, about 400-byte records, spread over 40 minutes.

use sluice_core::synth::{Generator, SynthConfig, SynthEvent};

/// "Now" for every benchmark: records arrive then, and their events are up to 50 minutes old.
pub const NOW: i64 = 1_714_568_400_000;

/// `n` generated events.
pub fn events(n: usize) -> impl Iterator<Item = SynthEvent> {
    Generator::new(SynthConfig {
        tenants: 8,
        services_per_tenant: 8,
        events: n,
        start_ms: NOW - 3_000_000,
        duration_ms: 2_400_000,
        ..SynthConfig::default()
    })
}
