//! Why loading or evaluating a rule failed. Every variant names what the rule did (or what
//! is wrong with the upload), so the message can go back to the rule's author as it is;
//! [`RuleError::code`] gives a stable machine-readable name for `status.json` and metrics.

use std::time::Duration;

/// Loading or evaluating a rule failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    // --- the upload ---
    /// The module is over the size cap.
    #[error("the module is {size} bytes, over the cap of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The bytes are not a valid WebAssembly component (a core module is refused too).
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// The component imports something outside the sandbox's allowlist (every such
    /// import, comma-separated).
    #[error(
        "forbidden import `{0}`: rules may only import the WASI 0.2 interfaces needed for pure computation (no filesystem, no network)"
    )]
    ForbiddenImport(String),
    /// The component exports the rule interface at a contract version this host does not
    /// support.
    #[error(
        "unsupported contract version: the component exports `{found}`, this host supports `{supported}`"
    )]
    UnsupportedVersion { found: String, supported: String },
    /// Compiling and test-evaluating the upload took longer than the registry allows
    /// ([`EngineConfig::max_compile_time`](crate::EngineConfig::max_compile_time)).
    #[error("compiling and checking the component took longer than {0:?}")]
    CompileTimeout(Duration),
    /// The component exports no rule interface at all, or one whose `evaluate` has another
    /// signature than the contract's.
    #[error("not a sluice rule: {0}")]
    NotARule(String),

    // --- precompiled artifacts ---
    /// The artifact was compiled by an engine with another fingerprint (another wasmtime
    /// version or configuration): recompile it from the module.
    #[error("the artifact was compiled for engine `{found}`, this engine is `{expected}`")]
    FingerprintMismatch { expected: String, found: String },
    /// The artifact could not be deserialised.
    #[error("cannot load the precompiled artifact: {0}")]
    Load(String),

    // --- the evaluation: limits ---
    /// The rule ran past its wall-clock deadline.
    #[error("the rule ran past its deadline of {0:?}")]
    Timeout(Duration),
    /// The rule used up its fuel (its CPU budget).
    #[error("the rule used up its fuel budget of {0} units")]
    OutOfFuel(u64),
    /// The rule tried to grow its memory past the limit.
    #[error("the rule tried to use more than its memory limit of {limit} bytes")]
    MemoryLimit { limit: usize },
    /// The rule exhausted its call stack (usually unbounded recursion).
    #[error("the rule overflowed its call stack (unbounded recursion?)")]
    StackOverflow,
    /// The rule returned more than the policy allows.
    #[error("the rule's output is too large: {0}")]
    OutputTooLarge(String),

    // --- the evaluation: the rule's own failures ---
    /// The rule panicked; the message is the start of its stderr.
    #[error("the rule panicked: {0}")]
    Panic(String),
    /// The rule trapped (e.g. `unreachable`, an out-of-bounds access, `exit`).
    #[error("the rule trapped: {0}")]
    Trap(String),
    /// The rule returned output that breaks the contract (an empty or duplicate key, a
    /// non-finite value, ...).
    #[error("the rule returned invalid output: {0}")]
    InvalidOutput(String),
    /// The rule refused its parameters.
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// The rule reported a failure of its own.
    #[error("the rule failed: {0}")]
    RuleFailed(String),

    // --- the host ---
    /// The rule could not be instantiated (e.g. every pooled instance slot is in use).
    #[error("cannot instantiate the rule: {0}")]
    Instantiate(String),
}

impl RuleError {
    /// A stable snake_case name for the error, for `status.json`, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RuleError::TooLarge { .. } => "too_large",
            RuleError::Compile(_) => "compile",
            RuleError::CompileTimeout(_) => "compile_timeout",
            RuleError::ForbiddenImport(_) => "forbidden_import",
            RuleError::UnsupportedVersion { .. } => "unsupported_version",
            RuleError::NotARule(_) => "not_a_rule",
            RuleError::FingerprintMismatch { .. } => "fingerprint_mismatch",
            RuleError::Load(_) => "load",
            RuleError::Timeout(_) => "timeout",
            RuleError::OutOfFuel(_) => "out_of_fuel",
            RuleError::MemoryLimit { .. } => "memory_limit",
            RuleError::StackOverflow => "stack_overflow",
            RuleError::OutputTooLarge(_) => "output_too_large",
            RuleError::Panic(_) => "panic",
            RuleError::Trap(_) => "trap",
            RuleError::InvalidOutput(_) => "invalid_output",
            RuleError::InvalidParams(_) => "invalid_params",
            RuleError::RuleFailed(_) => "rule_failed",
            RuleError::Instantiate(_) => "instantiate",
        }
    }

    /// True when the rule (or its upload) is at fault, false when the host is (an artifact
    /// to recompile, no free instance slot): a host fault is retried, a rule fault is
    /// reported to the tenant.
    pub fn is_rule_fault(&self) -> bool {
        !matches!(
            self,
            RuleError::FingerprintMismatch { .. } | RuleError::Load(_) | RuleError::Instantiate(_)
        )
    }
}
