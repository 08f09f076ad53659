//! The wasmtime engine, built once per process: compilation settings, the pooling allocator,
//! fuel and epoch interruption, the epoch ticker thread, and the engine's fingerprint.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::policy::DEFAULT_MEMORY_BYTES;

/// Engine-wide settings. Those marked *fingerprinted* change how code is compiled, hence the
/// [engine fingerprint](crate::Host::fingerprint) and the key of every precompiled artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// The most linear memory any rule may have, whatever its policy says: the size of a pool
    /// slot. 64 MiB.
    pub max_memory_bytes: usize,
    /// The most native stack a rule's wasm may use (`max_wasm_stack`). 512 KiB. Evaluate on
    /// threads with a larger stack than this (Rust's default 2 MiB is fine).
    pub max_stack_bytes: usize,
    /// How often the ticker thread advances the epoch: the precision of deadlines. 1 ms.
    pub epoch_tick: Duration,
    /// How many rules may be instantiated at once (pool slots). 64.
    pub max_instances: u32,
    /// Linear memory kept resident in a pool slot between instantiations (no page faults
    /// for rules that stay under it). 1 MiB.
    pub keep_resident_bytes: usize,
    /// The largest module accepted, in bytes. 8 MiB.
    pub max_module_bytes: usize,
    /// How long the registry lets one upload compile and test-evaluate before it rejects it
    /// (`compile_timeout`). 20 s.
    pub max_compile_time: Duration,
    /// Virtual address space reserved per linear memory; `None` keeps wasmtime's default
    /// (4 GiB on 64-bit hosts, which lets compiled code skip bounds checks). *Fingerprinted.*
    pub memory_reservation: Option<u64>,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            max_memory_bytes: 4 * DEFAULT_MEMORY_BYTES,
            max_stack_bytes: 512 << 10,
            epoch_tick: Duration::from_millis(1),
            max_instances: 64,
            keep_resident_bytes: 1 << 20,
            max_module_bytes: 8 << 20,
            max_compile_time: Duration::from_secs(20),
            memory_reservation: None,
        }
    }
}

/// The engine could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot start the rules engine: {0}")]
pub struct EngineError(pub(crate) String);

/// Builds the engine: Cranelift, the component model, fuel, epoch interruption, a bounded
/// stack, and a pool of instances whose memory stays resident.
pub(crate) fn build(config: &EngineConfig) -> Result<Engine, EngineError> {
    let n = config.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        // A Rust component has a few core instances (the rule, and wit-component's shims),
        // one linear memory and a few tables.
        .max_core_instances_per_component(16)
        .total_core_instances(n.saturating_mul(8))
        .max_memories_per_component(1)
        .total_memories(n)
        .max_tables_per_component(8)
        .total_tables(n.saturating_mul(8))
        .max_memory_size(config.max_memory_bytes)
        .linear_memory_keep_resident(config.keep_resident_bytes)
        .table_keep_resident(64 << 10);

    let mut c = Config::new();
    c.wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(config.max_stack_bytes)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Some(bytes) = config.memory_reservation {
        c.memory_reservation(bytes);
    }
    Engine::new(&c).map_err(|e| EngineError(format!("{e:#}")))
}

/// A short, stable name for everything that makes precompiled code compatible with this
/// engine: the wasmtime version, the target, and the compilation settings (fuel and epoch
/// instrumentation included). Used as the directory of precompiled artifacts
/// (`compiled/<fingerprint>/…`).
pub(crate) fn fingerprint(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    format!(
        "{}-{}",
        std::env::consts::ARCH,
        hex::encode(&digest.as_slice()[..8])
    )
}

/// Feeds `Hash` into SHA-256 (so the fingerprint is stable across processes and builds).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        // Only `finalize` on the inner digest is used.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Advances the engine's epoch every tick on a background thread, so a running rule hits its
/// deadline. Stops (and joins) when dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine, tick: Duration) -> Result<EpochTicker, EngineError> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sluice-rules-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| EngineError(format!("cannot start the epoch ticker: {e}")))?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // The thread only sleeps and ticks; it cannot have panicked in a way worth
            // reporting from a destructor.
            let _ = t.join();
        }
    }
}

/// The number of epoch ticks that guarantees at least `deadline` of wall-clock time
/// (the current tick may be about to end).
pub(crate) fn deadline_ticks(deadline: Duration, tick: Duration) -> u64 {
    let tick_ns = tick.as_nanos().max(1);
    let ticks = deadline.as_nanos().div_ceil(tick_ns);
    u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_ticks_round_up_and_add_one_for_the_current_tick() {
        let ms = Duration::from_millis(1);
        assert_eq!(deadline_ticks(Duration::from_millis(100), ms), 101);
        assert_eq!(deadline_ticks(Duration::from_micros(1500), ms), 3);
        assert_eq!(deadline_ticks(Duration::ZERO, ms), 1);
    }

    #[test]
    fn fingerprint_is_stable_for_a_config_and_changes_with_compilation_settings() {
        let a = build(&EngineConfig::default()).expect("engine");
        let b = build(&EngineConfig::default()).expect("engine");
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let c = build(&EngineConfig {
            memory_reservation: Some(64 << 20),
            ..EngineConfig::default()
        })
        .expect("engine");
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
