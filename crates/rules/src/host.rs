//! [`Host`]: the engine built once, and the four things done with a rule — validate an
//! upload, precompile it, load it, evaluate it.

use std::time::{Duration, Instant};

use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store, Trap};

use crate::alert::{Evaluation, GuestError};
use crate::artifact::{self, TrustedArtifact};
use crate::contract::{self, Shape};
use crate::engine::{self, EngineConfig, EngineError, EpochTicker};
use crate::error::RuleError;
use crate::manifest::Params;
use crate::output::{self, Outcome};
use crate::policy::Policy;
use crate::sample::sample_window;
use crate::sandbox::Sandbox;
use crate::window::Window;

/// The typed signature of the contract's `evaluate`.
type EvaluateParams<'a> = (&'a Window, &'a str, Option<&'a [u8]>);
type EvaluateResults = (Result<Evaluation, GuestError>,);

/// The rules host. Build one per process and share it; it is `Send + Sync`, and cheap to
/// clone (the clones share the engine and its ticker), so work can be moved to another thread
/// (the registry's bounded compile).
///
/// Evaluation is synchronous and CPU-bound. Called from async code, [`Host::evaluate`] takes
/// the rule off the runtime (wasmtime-wasi's synchronous WASI bindings cannot run on a tokio
/// runtime thread); the thread it runs on, the caller's included, needs a stack larger than
/// [`EngineConfig::max_stack_bytes`] (Rust's and tokio's default 2 MiB is).
#[derive(Clone)]
pub struct Host {
    engine: Engine,
    linker: Linker<Sandbox>,
    config: EngineConfig,
    fingerprint: String,
    _ticker: std::sync::Arc<EpochTicker>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("fingerprint", &self.fingerprint)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A rule ready to evaluate: compiled, checked against the contract, pre-linked. Cheap to
/// clone; keep one per (tenant, rule) for as long as its upload does not change.
#[derive(Clone)]
pub struct LoadedRule {
    component: Component,
    pre: InstancePre<Sandbox>,
    shape: Shape,
    fingerprint: String,
}

impl std::fmt::Debug for LoadedRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedRule")
            .field("imports", &self.shape.imports)
            .field("exports", &self.shape.exports)
            .finish_non_exhaustive()
    }
}

impl LoadedRule {
    /// The interfaces the component imports (all on the allowlist).
    pub fn imports(&self) -> &[String] {
        &self.shape.imports
    }

    /// The names the component exports.
    pub fn exports(&self) -> &[String] {
        &self.shape.exports
    }

    /// The compiled code, to store under `compiled/<fingerprint>/…`.
    pub fn artifact(&self) -> Result<TrustedArtifact, RuleError> {
        let bytes = self
            .component
            .serialize()
            .map_err(|e| RuleError::Load(format!("serialising: {e:#}")))?;
        Ok(TrustedArtifact::new(self.fingerprint.clone(), bytes))
    }
}

/// What validating an upload found, for `status.json` and `sluice rules check`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ValidationReport {
    /// The module's size in bytes.
    pub size_bytes: usize,
    /// The interface the component exports (`sluice:rules/rule@0.1.0`).
    pub contract: String,
    /// Everything the component imports.
    pub imports: Vec<String>,
    /// Everything the component exports.
    pub exports: Vec<String>,
    /// How long compiling took.
    pub compile_time: Duration,
    /// The test evaluation on the canned window ([`sample_window`]).
    pub canned: Outcome,
}

/// A validated upload: the report, and the rule ready to precompile or evaluate.
#[derive(Debug, Clone)]
pub struct Validated {
    pub report: ValidationReport,
    pub rule: LoadedRule,
}

impl Host {
    /// Builds the engine, its linker and the epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Host, EngineError> {
        let engine = engine::build(&config)?;
        let linker = crate::sandbox::linker(&engine)?;
        let ticker = EpochTicker::start(&engine, config.epoch_tick)?;
        let fingerprint = engine::fingerprint(&engine);
        Ok(Host {
            engine,
            linker,
            config,
            fingerprint,
            _ticker: std::sync::Arc::new(ticker),
        })
    }

    /// The engine fingerprint: the directory of this engine's precompiled artifacts
    /// (`compiled/<fingerprint>/…`). It changes with the wasmtime version, the target and
    /// the compilation settings.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Compiles an uploaded component and checks it: size cap, contract version, import
    /// allowlist, and the signature of `evaluate` (by a trial instantiation).
    pub fn load(&self, wasm: &[u8]) -> Result<LoadedRule, RuleError> {
        if wasm.len() > self.config.max_module_bytes {
            return Err(RuleError::TooLarge {
                size: wasm.len(),
                limit: self.config.max_module_bytes,
            });
        }
        if !wasm.starts_with(b"\0asm") {
            return Err(RuleError::Compile(
                "the file is not WebAssembly (it does not start with \\0asm); give the .wasm that `sluice rules build` prints".into(),
            ));
        }
        if is_core_module(wasm) {
            return Err(RuleError::Compile(
                "this is a core module; build the rule with `cargo build --target wasm32-wasip2`, which produces a component".into(),
            ));
        }
        let component =
            Component::new(&self.engine, wasm).map_err(|e| RuleError::Compile(format!("{e:#}")))?;
        self.prepare(component)
    }

    /// Compiles, checks, and test-evaluates an upload on the canned window with its params:
    /// everything the registry needs to accept or reject it, and the rule to precompile.
    pub fn validate(
        &self,
        wasm: &[u8],
        params: &Params,
        policy: &Policy,
    ) -> Result<Validated, RuleError> {
        let started = Instant::now();
        let rule = self.load(wasm)?;
        let compile_time = started.elapsed();
        let window = sample_window("sluice-validation", 1_700_000_000_000, 20, 25);
        let canned = self.evaluate(&rule, &window, params, None, policy)?;
        Ok(Validated {
            report: ValidationReport {
                size_bytes: wasm.len(),
                contract: contract::RULE_INTERFACE.to_string(),
                imports: rule.shape.imports.clone(),
                exports: rule.shape.exports.clone(),
                compile_time,
                canned,
            },
            rule,
        })
    }

    /// Compiles and checks an upload, and returns its precompiled code.
    pub fn precompile(&self, wasm: &[u8]) -> Result<TrustedArtifact, RuleError> {
        self.load(wasm)?.artifact()
    }

    /// Loads precompiled code. Refuses an artifact compiled for another engine fingerprint
    /// ([`RuleError::FingerprintMismatch`]: recompile it from the module), and checks the
    /// contract again.
    pub fn load_precompiled(&self, artifact: &TrustedArtifact) -> Result<LoadedRule, RuleError> {
        let component = artifact::load(&self.engine, &self.fingerprint, artifact)?;
        self.prepare(component)
    }

    fn prepare(&self, component: Component) -> Result<LoadedRule, RuleError> {
        let shape = contract::check(&self.engine, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| RuleError::NotARule(format!("{e:#}")))?;
        let rule = LoadedRule {
            component,
            pre,
            shape,
            fingerprint: self.fingerprint.clone(),
        };
        self.check_signature(&rule)?;
        Ok(rule)
    }

    /// Instantiates the rule once, without calling it, to type-check `evaluate`.
    fn check_signature(&self, rule: &LoadedRule) -> Result<(), RuleError> {
        let policy = Policy::default();
        let mut store = self.store(&policy, 0);
        let instance = rule
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(e, &store, &policy))?;
        instance
            .get_typed_func::<EvaluateParams<'_>, EvaluateResults>(&mut store, &rule.shape.evaluate)
            .map_err(|e| {
                RuleError::NotARule(format!(
                    "`{}` does not match the contract: {e:#}",
                    contract::EVALUATE
                ))
            })?;
        Ok(())
    }

    fn store(&self, policy: &Policy, now_ms: i64) -> Store<Sandbox> {
        let memory = policy.memory_bytes.min(self.config.max_memory_bytes);
        let mut store = Store::new(&self.engine, Sandbox::new(memory, now_ms));
        store.limiter(|s| s.limiter());
        // Fuel is on in every engine this module builds, so this cannot fail.
        let _ = store.set_fuel(policy.fuel);
        store.set_epoch_deadline(engine::deadline_ticks(
            policy.deadline,
            self.config.epoch_tick,
        ));
        store
    }

    /// Evaluates a rule on a window in a fresh sandbox under `policy`. `state` is what the
    /// rule returned last time ([`Outcome::state`]); on any error the caller keeps the old
    /// state.
    ///
    /// Safe to call from async code: inside a multi-thread tokio runtime it runs in
    /// `block_in_place`; inside a current-thread runtime, on a short-lived thread of its own
    /// (see [`Host::evaluate_here`]).
    pub fn evaluate(
        &self,
        rule: &LoadedRule,
        window: &Window,
        params: &Params,
        state: Option<&[u8]>,
        policy: &Policy,
    ) -> Result<Outcome, RuleError> {
        // wasmtime-wasi's synchronous bindings run every WASI call (a rule printing to stdout,
        // or panicking, which prints to stderr) through `block_on` of the current tokio
        // runtime, which panics on a runtime thread. On a multi-thread runtime,
        // `block_in_place` makes this worker a blocking thread for the call; elsewhere (a
        // current-thread runtime) the rule runs on a thread of its own, which has no runtime.
        match tokio::runtime::Handle::try_current() {
            Err(_) => return self.evaluate_here(rule, window, params, state, policy),
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                return tokio::task::block_in_place(|| {
                    self.evaluate_here(rule, window, params, state, policy)
                });
            }
            Ok(_) => {}
        }
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("sluice-rule".into())
                .stack_size(
                    self.config
                        .max_stack_bytes
                        .saturating_add(EVALUATION_THREAD_STACK),
                )
                .spawn_scoped(scope, || {
                    self.evaluate_here(rule, window, params, state, policy)
                })
                .map_err(|e| RuleError::Instantiate(format!("no thread to evaluate on: {e}")))?
                .join()
                .map_err(|_| RuleError::Instantiate("the evaluation thread panicked".into()))?
        })
    }

    /// [`Host::evaluate`] on the calling thread, which must not be inside a tokio runtime if
    /// the rule may print (wasmtime-wasi would panic). The benchmarks call this.
    pub fn evaluate_here(
        &self,
        rule: &LoadedRule,
        window: &Window,
        params: &Params,
        state: Option<&[u8]>,
        policy: &Policy,
    ) -> Result<Outcome, RuleError> {
        let started = Instant::now();
        let mut store = self.store(policy, window.end_ms);
        let result = rule
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify_instantiation(e, &store, policy))
            .and_then(|instance| {
                instance
                    .get_typed_func::<EvaluateParams<'_>, EvaluateResults>(
                        &mut store,
                        &rule.shape.evaluate,
                    )
                    .map_err(|e| RuleError::NotARule(format!("{e:#}")))
            })
            .and_then(|func| {
                func.call(&mut store, (window, params.as_json(), state))
                    .map_err(|e| classify(e, &store, policy))
            });
        let duration = started.elapsed();
        let fuel_consumed = policy.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let (evaluation,) = result?;
        let evaluation = match evaluation {
            Ok(e) => e,
            Err(GuestError::InvalidParams(m)) => return Err(RuleError::InvalidParams(m)),
            Err(GuestError::Failed(m)) => return Err(RuleError::RuleFailed(m)),
        };
        let (alerts, state, output_bytes) = output::check(evaluation, policy)?;
        Ok(Outcome {
            alerts,
            state,
            fuel_consumed,
            duration,
            output_bytes,
            stdout: store.data().stdout.text(),
            stderr: store.data().stderr.text(),
        })
    }
}

/// Host stack of an evaluation thread, on top of the guest's `max_stack_bytes`.
const EVALUATION_THREAD_STACK: usize = 2 << 20;

/// Single phases, for the benchmarks.
pub mod phases {
    use super::*;

    /// Compiles a component (no checks).
    pub fn compile(host: &Host, wasm: &[u8]) -> Result<Component, RuleError> {
        Component::new(&host.engine, wasm).map_err(|e| RuleError::Compile(format!("{e:#}")))
    }

    /// Deserialises a trusted artifact (no checks beyond the fingerprint).
    pub fn deserialize(host: &Host, artifact: &TrustedArtifact) -> Result<Component, RuleError> {
        artifact::load(&host.engine, &host.fingerprint, artifact)
    }

    /// Links a component into an `InstancePre`.
    pub fn instance_pre(host: &Host, component: &Component) -> Result<(), RuleError> {
        host.linker
            .instantiate_pre(component)
            .map(drop)
            .map_err(|e| RuleError::NotARule(format!("{e:#}")))
    }

    /// A fresh store and instance, without calling the rule.
    pub fn instantiate(host: &Host, rule: &LoadedRule) -> Result<(), RuleError> {
        let policy = Policy::default();
        let mut store = host.store(&policy, 0);
        rule.pre
            .instantiate(&mut store)
            .map(drop)
            .map_err(|e| classify_instantiation(e, &store, &policy))
    }
}

/// A core module starts with the wasm magic and version 1; a component with the magic and
/// layer 1.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

/// Instantiation fails for the rule's reasons (a start function that traps) or the host's
/// (no free slot in the pool).
fn classify_instantiation(
    err: wasmtime::Error,
    store: &Store<Sandbox>,
    policy: &Policy,
) -> RuleError {
    if err.downcast_ref::<Trap>().is_some() || store.data().memory_limit_hit().is_some() {
        classify(err, store, policy)
    } else {
        RuleError::Instantiate(format!("{err:#}"))
    }
}

/// Why a call into the rule stopped.
fn classify(err: wasmtime::Error, store: &Store<Sandbox>, policy: &Policy) -> RuleError {
    let sandbox = store.data();
    if let Some(limit) = sandbox.memory_limit_hit() {
        return RuleError::MemoryLimit { limit };
    }
    let stderr = sandbox.stderr.text();
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => RuleError::OutOfFuel(policy.fuel),
            Trap::Interrupt => RuleError::Timeout(policy.deadline),
            Trap::StackOverflow => RuleError::StackOverflow,
            Trap::UnreachableCodeReached if stderr.contains("panicked at") => {
                RuleError::Panic(stderr.trim().to_string())
            }
            other if stderr.trim().is_empty() => RuleError::Trap(other.to_string()),
            other => RuleError::Trap(format!("{other}; stderr: {}", stderr.trim())),
        };
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return RuleError::Trap(format!("the rule called exit({})", exit.0));
    }
    // Not a trap: the canonical ABI refused what the rule handed back (bad pointers, invalid
    // UTF-8, a bad enum discriminant, ...).
    RuleError::InvalidOutput(format!("{err:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_modules_are_told_apart_from_components() {
        assert!(is_core_module(b"\0asm\x01\0\0\0"));
        assert!(!is_core_module(b"\0asm\x0d\0\x01\0"));
    }

    #[test]
    fn garbage_is_a_compile_error() {
        let host = Host::new(EngineConfig::default()).expect("host");
        let err = host.load(b"\0asm\x0d\0\x01\0garbage").expect_err("garbage");
        assert_eq!(err.code(), "compile");
    }

    #[test]
    fn a_file_that_is_not_webassembly_is_named_as_such_in_one_line() {
        let host = Host::new(EngineConfig::default()).expect("host");
        let err = host.load(b"garbage line\n").expect_err("not wasm");
        assert_eq!(err.code(), "compile");
        let text = err.to_string();
        assert!(text.contains("not WebAssembly"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn oversized_modules_are_refused_before_compiling() {
        let host = Host::new(EngineConfig {
            max_module_bytes: 16,
            ..EngineConfig::default()
        })
        .expect("host");
        let err = host.load(&[0u8; 17]).expect_err("too large");
        assert_eq!(
            err,
            RuleError::TooLarge {
                size: 17,
                limit: 16
            }
        );
    }
}
