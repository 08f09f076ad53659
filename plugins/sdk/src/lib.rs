//! # sluice-rule-sdk: write sluice alert rules in Rust
//!
//! A rule is a plain Rust type implementing [`Rule`]: it receives one tenant's merged
//! [`Window`], its typed parameters (from the `[params]` table of its `rule.toml`) and its
//! typed state from the previous window, and returns the [`Alert`]s that hold now.
//! [`export_rule!`] turns it into a WebAssembly component exporting
//! `sluice:rules/rule@0.1.0` (see `plugins/wit/since_v0.1.0/rules.wit`).
//!
//! ```ignore
//! use serde::Deserialize;
//! use sluice_rule_sdk::{Alert, Rule, Severity, Window, export_rule};
//!
//! pub struct TooManyErrors;
//!
//! #[derive(Deserialize)]
//! pub struct Params { max_errors: u64 }
//!
//! impl Rule for TooManyErrors {
//!     type Params = Params;
//!     type State = ();
//!     fn evaluate(window: &Window, params: &Params, _: &mut ()) -> Vec<Alert> {
//!         window.services.iter()
//!             .filter(|s| s.errors() > params.max_errors)
//!             .map(|s| Alert::new(&s.service, Severity::Warning, "too many errors")
//!                 .value(s.errors() as f64))
//!             .collect()
//!     }
//! }
//!
//! export_rule!(TooManyErrors);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2` (crate type `cdylib`): the `.wasm` in
//! `target/wasm32-wasip2/` is the component to upload with its `rule.toml`.
//!
//! Test natively with `cargo test`: the bindings exist only in the wasm build, and
//! [`Harness`] runs a rule window after window with its manifest's params and its state
//! carried as bytes, exactly as the host does.
//!
//! The sandbox: no filesystem, environment, network or clock to speak of; a fuel budget, a
//! deadline and 16 MiB of memory by default. A panic ends the evaluation and its message
//! (from stderr) is shown to the rule's author; the previous state is kept.

mod alert;
pub mod fmt;
#[cfg(not(target_arch = "wasm32"))]
mod harness;
#[cfg(not(target_arch = "wasm32"))]
pub mod manifest;
mod rule;
pub mod testing;
mod window;

pub use alert::{Alert, Severity};
#[cfg(not(target_arch = "wasm32"))]
pub use harness::Harness;
pub use rule::{Evaluation, Rule, RuleFailure, decode_state, evaluate_encoded, parse_params};
pub use window::{Latency, Level, LevelCounts, LogPattern, Quantile, ServiceStats, Window, ratio};

/// What [`export_rule!`] expands to. Not a public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::guest::{bindings, evaluate_export};
}

#[cfg(target_arch = "wasm32")]
mod guest;

/// Exports a [`Rule`] as the component's `sluice:rules/rule@0.1.0` interface. Use it once, in
/// the rule crate's `lib.rs` (crate type `cdylib`). On other targets it only checks that the
/// type implements [`Rule`], so native tests build without any wasm tooling.
#[macro_export]
macro_rules! export_rule {
    ($rule:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct SluiceRuleExport;

            impl $crate::__private::bindings::exports::sluice::rules::rule::Guest
                for SluiceRuleExport
            {
                fn evaluate(
                    window: $crate::__private::bindings::sluice::rules::types::Window,
                    params: ::std::string::String,
                    state: ::std::option::Option<::std::vec::Vec<u8>>,
                ) -> ::std::result::Result<
                    $crate::__private::bindings::sluice::rules::types::Evaluation,
                    $crate::__private::bindings::sluice::rules::types::RuleError,
                > {
                    $crate::__private::evaluate_export::<$rule>(window, params, state)
                }
            }

            $crate::__private::bindings::__export_alert_rule!(
                SluiceRuleExport with_types_in $crate::__private::bindings
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            const fn assert_is_rule<R: $crate::Rule>() {}
            assert_is_rule::<$rule>();
        };
    };
}
