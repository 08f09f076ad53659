//! The compact function on its schedule (every 15 minutes in the template), wired as
//! `functions/compact` wires it (docs/ARCHITECTURE.md §11): closed raw hours of the data
//! bucket into one object per tenant-hour under `logs/`. A task of its own, stopped with the
//! runner.

use std::sync::Arc;
use std::time::Duration;

use sluice_core::BlobStore;
use sluice_core::compact::{CompactConfig, compact};
use tokio::sync::watch;

use crate::batch_delivery::Clock;

/// What the compactor needs.
#[derive(Debug, Clone)]
pub struct CompactorSetup {
    pub data: Arc<dyn BlobStore>,
    pub config: CompactConfig,
    pub every: Duration,
}

/// Starts the compactor task: a pass every `setup.every` until `stop`.
pub fn start(
    setup: CompactorSetup,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tracing::info!(
            every_s = setup.every.as_secs_f64(),
            lateness_ms = setup.config.lateness_ms,
            "compactor scheduled"
        );
        // A zero period would make `interval` panic.
        let mut ticker = tokio::time::interval(setup.every.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => break,
            }
            match compact(setup.data.as_ref(), &setup.config, clock.now_ms()).await {
                Ok(pass) if pass.hours > 0 => tracing::info!(
                    hours = pass.hours,
                    raw_objects = pass.raw_objects,
                    written = pass.written.len(),
                    duplicates = pass.duplicates,
                    "compaction pass finished"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "compaction pass failed"),
            }
        }
    })
}
