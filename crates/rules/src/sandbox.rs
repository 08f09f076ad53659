//! What one evaluation's `Store` holds — the WASI context a rule sees, the memory limiter and
//! the captured output — and the linker that offers a rule only the allowlisted WASI
//! interfaces (see [`crate::contract`]).

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings::{cli, clocks, random, sync};
use wasmtime_wasi::p2::pipe::ClosedInputStream;
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{Deterministic, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::capture::{CAPTURE_BYTES, CapturedOutput};
use crate::clocks::{FrozenMonotonic, FrozenMonotonicClock, FrozenWallClock};
use crate::engine::EngineError;

/// The largest `get-random-bytes` a rule may ask for.
const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// The data of one evaluation's store.
pub(crate) struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// A fresh sandbox: no environment, arguments or preopens, stdin closed, stdout and
    /// stderr captured, a deterministic random source, clocks frozen (the wall clock at
    /// `now_ms`), and linear memory capped at `memory_bytes`.
    pub(crate) fn new(memory_bytes: usize, now_ms: i64) -> Sandbox {
        let stdout = CapturedOutput::new(CAPTURE_BYTES);
        let stderr = CapturedOutput::new(CAPTURE_BYTES);
        let wasi = WasiCtxBuilder::new()
            .stdin(ClosedInputStream)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .secure_random(Deterministic::new(SEED.to_vec()))
            .insecure_random(Deterministic::new(SEED.to_vec()))
            .insecure_random_seed(u128::from_le_bytes(SEED))
            .max_random_size(MAX_RANDOM_BYTES)
            .wall_clock(FrozenWallClock(now_ms))
            .build();
        Sandbox {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_bytes),
            stdout,
            stderr,
        }
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limiter
    }

    /// The memory limit, if the rule hit it.
    pub(crate) fn memory_limit_hit(&self) -> Option<usize> {
        self.limiter.hit.then_some(self.limiter.limit)
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Where the deterministic random bytes come from (any fixed value will do).
const SEED: [u8; 16] = *b"sluice-rules-rng";

/// [`StoreLimits`] with `trap_on_grow_failure`, remembering whether the memory cap was hit,
/// so the trap it causes can be reported as [`RuleError::MemoryLimit`](crate::RuleError).
#[derive(Debug)]
struct MemoryLimiter {
    inner: StoreLimits,
    limit: usize,
    hit: bool,
}

impl MemoryLimiter {
    fn new(limit: usize) -> MemoryLimiter {
        MemoryLimiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(limit)
                .trap_on_grow_failure(true)
                .build(),
            limit,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let result = self.inner.memory_growing(current, desired, maximum);
        if !matches!(result, Ok(true)) {
            self.hit = true;
        }
        result
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.hit = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// `wasi:io` resources live in the store's resource table.
struct IoTable;

impl HasData for IoTable {
    type Data<'a> = &'a mut ResourceTable;
}

fn io_table(s: &mut Sandbox) -> &mut ResourceTable {
    &mut s.table
}

fn random_ctx(s: &mut Sandbox) -> &mut wasmtime_wasi::random::WasiRandomCtx {
    s.wasi.random()
}

/// A linker offering exactly the allowlisted interfaces of [`crate::contract`].
pub(crate) fn linker(engine: &wasmtime::Engine) -> Result<Linker<Sandbox>, EngineError> {
    let mut l = Linker::<Sandbox>::new(engine);
    add_allowed(&mut l).map_err(|e| EngineError(format!("linking WASI: {e:#}")))?;
    Ok(l)
}

fn add_allowed(l: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    sync::io::error::add_to_linker::<Sandbox, IoTable>(l, io_table)?;
    sync::io::poll::add_to_linker::<Sandbox, IoTable>(l, io_table)?;
    sync::io::streams::add_to_linker::<Sandbox, IoTable>(l, io_table)?;

    let cli_view = <Sandbox as WasiCliView>::cli;
    cli::environment::add_to_linker::<Sandbox, WasiCli>(l, cli_view)?;
    cli::exit::add_to_linker::<Sandbox, WasiCli>(l, cli_view)?;
    cli::stdin::add_to_linker::<Sandbox, WasiCli>(l, cli_view)?;
    cli::stdout::add_to_linker::<Sandbox, WasiCli>(l, cli_view)?;
    cli::stderr::add_to_linker::<Sandbox, WasiCli>(l, cli_view)?;
    cli::terminal_input::add_to_linker::<Sandbox, WasiCli>(l, cli_view)?;
    cli::terminal_output::add_to_linker::<Sandbox, WasiCli>(l, cli_view)?;
    cli::terminal_stdin::add_to_linker::<Sandbox, WasiCli>(l, cli_view)?;
    cli::terminal_stdout::add_to_linker::<Sandbox, WasiCli>(l, cli_view)?;
    cli::terminal_stderr::add_to_linker::<Sandbox, WasiCli>(l, cli_view)?;

    clocks::wall_clock::add_to_linker::<Sandbox, WasiClocks>(
        l,
        <Sandbox as WasiClocksView>::clocks,
    )?;
    clocks::monotonic_clock::add_to_linker::<Sandbox, FrozenMonotonic>(l, |s| {
        FrozenMonotonicClock::new(&mut s.table)
    })?;

    random::random::add_to_linker::<Sandbox, WasiRandom>(l, random_ctx)?;
    random::insecure::add_to_linker::<Sandbox, WasiRandom>(l, random_ctx)?;
    random::insecure_seed::add_to_linker::<Sandbox, WasiRandom>(l, random_ctx)?;

    // The contract's types-only interface declares no functions; rules built by wit-bindgen
    // may still import it as an instance.
    l.instance(crate::contract::TYPES_INTERFACE)?;
    Ok(())
}
