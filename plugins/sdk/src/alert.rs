//! What a rule returns: alerts, each a condition that holds in this window.

use serde::{Deserialize, Serialize};

/// How urgent an alert is, ordered `Info` < `Warning` < `Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// The lowercase name, as in the WIT file and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A condition that holds in this window. The host tracks its lifecycle by tenant, rule and
/// `key`: keep returning the same key while the condition holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Identifies the condition within the rule, e.g. `checkout/error-rate`.
    pub key: String,
    pub severity: Severity,
    /// One line for humans.
    pub title: String,
    /// More detail for humans.
    pub description: String,
    /// Extra labels (name, value) for the notification.
    pub labels: Vec<(String, String)>,
    /// The measured value that triggered the alert.
    pub value: f64,
}

impl Alert {
    /// An alert with no description, no labels and a value of 0.
    pub fn new(key: impl Into<String>, severity: Severity, title: impl Into<String>) -> Alert {
        Alert {
            key: key.into(),
            severity,
            title: title.into(),
            description: String::new(),
            labels: Vec::new(),
            value: 0.0,
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Alert {
        self.description = description.into();
        self
    }

    /// Adds a label.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Alert {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// Sets the measured value.
    pub fn value(mut self, value: f64) -> Alert {
        self.value = value;
        self
    }

    /// The value of a label, if set.
    pub fn label_value(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_every_field() {
        let a = Alert::new("api/error-rate", Severity::Critical, "api errors")
            .description("12% > 10%")
            .label("service", "api")
            .value(0.12);
        assert_eq!(a.key, "api/error-rate");
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.description, "12% > 10%");
        assert_eq!(a.label_value("service"), Some("api"));
        assert_eq!(a.label_value("missing"), None);
        assert_eq!(a.value, 0.12);
    }

    #[test]
    fn severities_are_ordered_by_urgency() {
        assert!(Severity::Info < Severity::Warning);
        assert!(Severity::Warning < Severity::Critical);
    }
}
