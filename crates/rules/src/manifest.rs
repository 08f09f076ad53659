//! A rule's manifest, `rule.toml`, uploaded next to its component:
//!
//! ```toml
//! [rule]
//! name = "threshold"
//! description = "..."
//! api = "0.1.0"          # the contract version the component exports
//!
//! [limits]               # optional; each only lowers the tenant's policy
//! fuel = 10_000_000
//! deadline_ms = 50
//! memory_mib = 8
//!
//! [params]               # anything; handed to the rule as a JSON object
//! metric = "error_rate"
//! warning = 0.05
//! ```

use serde::{Deserialize, Serialize};

use crate::contract::CONTRACT_VERSION;
use crate::policy::Limits;

/// A parsed `rule.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub rule: RuleInfo,
    pub limits: Limits,
    pub params: Params,
}

/// The `[rule]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleInfo {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The contract version the component exports; defaults to the current one.
    #[serde(default = "default_api")]
    pub api: String,
}

fn default_api() -> String {
    CONTRACT_VERSION.to_string()
}

/// A rule's parameters: a JSON object, as the rule receives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Params(String);

impl Params {
    /// No parameters (`{}`).
    pub fn empty() -> Params {
        Params("{}".into())
    }

    /// Parameters from JSON object text.
    pub fn from_json(text: &str) -> Result<Params, ManifestError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ManifestError(format!("params: {e}")))?;
        if !value.is_object() {
            return Err(ManifestError("params must be a JSON object".into()));
        }
        Ok(Params(value.to_string()))
    }

    /// The JSON object text handed to the rule.
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

impl Default for Params {
    fn default() -> Params {
        Params::empty()
    }
}

/// `rule.toml` does not parse or breaks the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule.toml: {0}")]
pub struct ManifestError(String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    rule: RuleInfo,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    params: toml::Table,
}

impl Manifest {
    /// Parses `rule.toml`.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError(e.to_string()))?;
        if raw.rule.api != CONTRACT_VERSION {
            return Err(ManifestError(format!(
                "api = \"{}\" is not supported; this host supports \"{CONTRACT_VERSION}\"",
                raw.rule.api
            )));
        }
        let json = serde_json::to_string(&raw.params)
            .map_err(|e| ManifestError(format!("params: {e}")))?;
        Ok(Manifest {
            rule: raw.rule,
            limits: raw.limits,
            params: Params(json),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rule_limits_and_params() {
        let m = Manifest::parse(
            "[rule]\nname = \"t\"\n[limits]\nfuel = 10\n[params]\nwarning = 0.5\nservices = [\"a\"]\n",
        )
        .expect("valid manifest");
        assert_eq!(m.rule.name, "t");
        assert_eq!(m.rule.api, CONTRACT_VERSION);
        assert_eq!(m.limits.fuel, Some(10));
        let v: serde_json::Value = serde_json::from_str(m.params.as_json()).expect("json");
        assert_eq!(v, serde_json::json!({"warning": 0.5, "services": ["a"]}));
    }

    #[test]
    fn missing_params_are_an_empty_object() {
        let m = Manifest::parse("[rule]\nname = \"t\"\n").expect("valid manifest");
        assert_eq!(m.params, Params::empty());
    }

    #[test]
    fn unknown_api_version_is_refused() {
        let err = Manifest::parse("[rule]\nname = \"t\"\napi = \"0.2.0\"\n").expect_err("0.2");
        assert!(err.to_string().contains("0.2.0"), "{err}");
    }

    #[test]
    fn unknown_limit_is_refused() {
        assert!(Manifest::parse("[rule]\nname = \"t\"\n[limits]\ncpu = 1\n").is_err());
    }

    #[test]
    fn params_must_be_a_json_object() {
        assert!(Params::from_json("[1]").is_err());
        assert!(Params::from_json("{\"a\": 1}").is_ok());
    }
}
