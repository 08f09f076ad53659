//! What a rule returns: alerts and its new state (the WIT `alert`, `evaluation` and
//! `rule-error`), lifted straight out of the component.

use serde::{Deserialize, Serialize};
use wasmtime::component::{ComponentType, Lift, Lower};

/// How urgent an alert is, ordered `Info` < `Warning` < `Critical`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ComponentType,
    Lift,
    Lower,
)]
#[serde(rename_all = "lowercase")]
#[component(enum)]
#[repr(u8)]
pub enum Severity {
    #[component(name = "info")]
    Info,
    #[component(name = "warning")]
    Warning,
    #[component(name = "critical")]
    Critical,
}

impl Severity {
    /// The lowercase name, as in the WIT file and in notifications.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A condition that holds in the window. The host tracks its lifecycle by tenant, rule and
/// `key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ComponentType, Lift, Lower)]
#[component(record)]
pub struct Alert {
    pub key: String,
    pub severity: Severity,
    pub title: String,
    pub description: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Alert {
    /// The value of a label, if the rule set it.
    pub fn label_value(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the component's `evaluate` returns on success.
#[derive(Debug, Clone, PartialEq, ComponentType, Lift, Lower)]
#[component(record)]
pub(crate) struct Evaluation {
    pub alerts: Vec<Alert>,
    pub state: Option<Vec<u8>>,
}

/// The component's `rule-error`.
#[derive(Debug, Clone, PartialEq, ComponentType, Lift, Lower)]
#[component(variant)]
pub(crate) enum GuestError {
    #[component(name = "invalid-params")]
    InvalidParams(String),
    #[component(name = "failed")]
    Failed(String),
}
