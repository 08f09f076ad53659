//! The contract a rule component must meet when it is loaded: the version of the interface it
//! exports, and the imports it may have.
//!
//! ## The import allowlist, and why
//!
//! A Rust `wasm32-wasip2` rule imports some WASI 0.2 interfaces through its standard library
//! even when it only computes. Those are allowed, and each is made harmless:
//!
//! | interface | what the rule gets |
//! |---|---|
//! | `wasi:cli/environment` | no variables, no arguments, no working directory |
//! | `wasi:cli/exit` | `exit` ends the evaluation as a trap |
//! | `wasi:cli/stdin` | a closed stream |
//! | `wasi:cli/stdout`, `wasi:cli/stderr` | 4 KiB captured each (stderr reaches the author) |
//! | `wasi:cli/terminal-*` | "not a terminal" |
//! | `wasi:io/error`, `wasi:io/poll`, `wasi:io/streams` | streams above, always ready |
//! | `wasi:random/*` | a fixed, deterministic sequence (`HashMap` needs a seed; evaluations stay reproducible; never a secret) |
//! | `wasi:clocks/wall-clock` | frozen at the window's end (rules should use the window's times) |
//! | `wasi:clocks/monotonic-clock` | frozen at 0; `sleep` returns at once |
//!
//! Clocks are frozen rather than refused because Rust's `SystemTime::now` imports both of
//! them; frozen, they give no timing side channel, keep evaluations reproducible, and a
//! sleep cannot park the host thread where the epoch deadline would not reach it.
//!
//! Everything else is refused when the rule is loaded, naming every such import:
//! `wasi:filesystem/*` (no preopens would be offered anyway), `wasi:sockets/*`,
//! `wasi:http/*`, and any non-WASI import apart from the contract's own types-only
//! interface, which declares no functions.

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex};

use crate::error::RuleError;

/// The contract version this host speaks.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// The interface a rule exports, with its version.
pub const RULE_INTERFACE: &str = "sluice:rules/rule@0.1.0";

/// The exported interface's name without a version.
const RULE_INTERFACE_UNVERSIONED: &str = "sluice:rules/rule";

/// The contract's types-only interface, which a rule may import.
pub const TYPES_INTERFACE: &str = "sluice:rules/types@0.1.0";

/// [`TYPES_INTERFACE`] without a version.
const TYPES_INTERFACE_UNVERSIONED: &str = "sluice:rules/types";

/// The function the rule interface exports.
pub const EVALUATE: &str = "evaluate";

/// The WASI interfaces a rule may import, in any 0.2.x version.
pub const ALLOWED_WASI_IMPORTS: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
];

/// What a component imports and exports, once it passed the checks.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub evaluate: ComponentExportIndex,
}

/// Splits `ns:pkg/iface@1.2.3` into the name and the version.
fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (name, None),
    }
}

/// Is this import allowed?
pub fn is_allowed_import(name: &str) -> bool {
    let (base, version) = split_version(name);
    if base == TYPES_INTERFACE_UNVERSIONED {
        return version == Some(CONTRACT_VERSION);
    }
    ALLOWED_WASI_IMPORTS.contains(&base) && version.is_some_and(|v| v.starts_with("0.2."))
}

/// Checks the component's imports and exports, and finds its `evaluate`.
pub(crate) fn check(engine: &Engine, component: &Component) -> Result<Shape, RuleError> {
    let ty = component.component_type();
    let mut imports = Vec::new();
    let mut forbidden = Vec::new();
    for (name, item) in ty.imports(engine) {
        let allowed = is_allowed_import(name)
            && (split_version(name).0 != TYPES_INTERFACE_UNVERSIONED
                || matches!(&item.ty, ComponentItem::ComponentInstance(i)
                    if i.exports(engine).all(|(_, e)| matches!(e.ty, ComponentItem::Type(_)))));
        if allowed {
            imports.push(name.to_string());
        } else {
            forbidden.push(name.to_string());
        }
    }
    if !forbidden.is_empty() {
        forbidden.sort();
        return Err(RuleError::ForbiddenImport(forbidden.join(", ")));
    }
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    if !exports.iter().any(|e| e == RULE_INTERFACE) {
        if let Some(other) = exports
            .iter()
            .find(|e| split_version(e).0 == RULE_INTERFACE_UNVERSIONED)
        {
            return Err(RuleError::UnsupportedVersion {
                found: other.clone(),
                supported: RULE_INTERFACE.to_string(),
            });
        }
        return Err(RuleError::NotARule(format!(
            "it does not export `{RULE_INTERFACE}` (it exports: {})",
            if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            }
        )));
    }
    let instance = component
        .get_export_index(None, RULE_INTERFACE)
        .ok_or_else(|| RuleError::NotARule(format!("`{RULE_INTERFACE}` is not an instance")))?;
    let evaluate = component
        .get_export_index(Some(&instance), EVALUATE)
        .ok_or_else(|| {
            RuleError::NotARule(format!("`{RULE_INTERFACE}` does not export `{EVALUATE}`"))
        })?;
    imports.sort();
    Ok(Shape {
        imports,
        exports,
        evaluate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_02_interfaces_on_the_list_are_allowed_in_any_patch_version() {
        assert!(is_allowed_import("wasi:cli/stderr@0.2.0"));
        assert!(is_allowed_import("wasi:cli/stderr@0.2.6"));
        assert!(is_allowed_import("wasi:random/insecure-seed@0.2.3"));
    }

    #[test]
    fn filesystem_sockets_and_http_are_refused() {
        assert!(!is_allowed_import("wasi:filesystem/preopens@0.2.6"));
        assert!(!is_allowed_import("wasi:filesystem/types@0.2.6"));
        assert!(!is_allowed_import("wasi:sockets/tcp@0.2.6"));
        assert!(!is_allowed_import("wasi:http/outgoing-handler@0.2.6"));
    }

    #[test]
    fn other_wasi_major_versions_and_unversioned_names_are_refused() {
        assert!(!is_allowed_import("wasi:cli/stderr@0.3.0"));
        assert!(!is_allowed_import("wasi:cli/stderr"));
        assert!(!is_allowed_import("env"));
    }

    #[test]
    fn the_contract_types_interface_is_allowed_only_at_its_version() {
        assert!(is_allowed_import("sluice:rules/types@0.1.0"));
        assert!(!is_allowed_import("sluice:rules/types@0.2.0"));
    }
}
