//! What an evaluation returns to the host, and the checks the rule's raw output must pass:
//! bounded in size and count, and well-formed for the alert lifecycle.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alert::{Alert, Evaluation};
use crate::error::RuleError;
use crate::policy::Policy;

/// The longest alert key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// Labels the host sets on every alert itself; a rule may not return them.
pub const RESERVED_LABELS: &[&str] = &["alertname", "tenant", "rule", "severity"];

/// A successful evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The conditions that hold in the window.
    pub alerts: Vec<Alert>,
    /// The state to pass to the rule's next evaluation (`None`: forget it).
    pub state: Option<Vec<u8>>,
    /// Fuel the evaluation used (instantiation included): deterministic for a given rule,
    /// window, params and state.
    pub fuel_consumed: u64,
    /// Wall-clock time of instantiation and call.
    pub duration: Duration,
    /// The size of the output (alert text and state), as counted against the policy.
    pub output_bytes: usize,
    /// What the rule printed (first 4 KiB).
    pub stdout: String,
    /// What the rule printed to stderr (first 4 KiB).
    pub stderr: String,
}

fn alert_bytes(a: &Alert) -> usize {
    let labels: usize = a.labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    a.key.len() + a.title.len() + a.description.len() + labels
}

/// A checked output: the alerts, the new state, and the output's size in bytes.
pub(crate) type Checked = (Vec<Alert>, Option<Vec<u8>>, usize);

/// Checks the rule's raw output against the policy and the contract; returns it with its
/// size.
pub(crate) fn check(evaluation: Evaluation, policy: &Policy) -> Result<Checked, RuleError> {
    let Evaluation { alerts, state } = evaluation;
    if alerts.len() > policy.max_alerts {
        return Err(RuleError::OutputTooLarge(format!(
            "{} alerts, the limit is {}",
            alerts.len(),
            policy.max_alerts
        )));
    }
    let state_bytes = state.as_ref().map_or(0, Vec::len);
    let bytes = alerts.iter().map(alert_bytes).sum::<usize>() + state_bytes;
    if bytes > policy.max_output_bytes {
        return Err(RuleError::OutputTooLarge(format!(
            "{bytes} bytes ({state_bytes} of state), the limit is {}",
            policy.max_output_bytes
        )));
    }
    let mut keys = HashSet::with_capacity(alerts.len());
    for a in &alerts {
        if a.key.is_empty() || a.key.len() > MAX_KEY_BYTES {
            return Err(RuleError::InvalidOutput(format!(
                "alert key `{}` must be 1 to {MAX_KEY_BYTES} bytes long",
                a.key.chars().take(64).collect::<String>()
            )));
        }
        if !keys.insert(a.key.as_str()) {
            return Err(RuleError::InvalidOutput(format!(
                "alert key `{}` is returned twice",
                a.key
            )));
        }
        if !a.value.is_finite() {
            return Err(RuleError::InvalidOutput(format!(
                "alert `{}` has a non-finite value ({})",
                a.key, a.value
            )));
        }
        for (name, _) in &a.labels {
            if name.is_empty() || RESERVED_LABELS.contains(&name.as_str()) {
                return Err(RuleError::InvalidOutput(format!(
                    "alert `{}` has label `{name}`, which is empty or reserved (reserved: {})",
                    a.key,
                    RESERVED_LABELS.join(", ")
                )));
            }
        }
    }
    Ok((alerts, state, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;

    fn alert(key: &str) -> Alert {
        Alert {
            key: key.into(),
            severity: Severity::Warning,
            title: "t".into(),
            description: String::new(),
            labels: vec![("service".into(), "api".into())],
            value: 1.0,
        }
    }

    fn eval(alerts: Vec<Alert>, state: Option<Vec<u8>>) -> Evaluation {
        Evaluation { alerts, state }
    }

    #[test]
    fn accepts_well_formed_output_and_counts_its_bytes() {
        let (alerts, state, bytes) = check(
            eval(vec![alert("a"), alert("b")], Some(vec![0; 10])),
            &Policy::default(),
        )
        .expect("valid");
        assert_eq!(alerts.len(), 2);
        assert_eq!(state.map(|s| s.len()), Some(10));
        assert_eq!(bytes, 2 * (1 + 1 + 7 + 3) + 10);
    }

    #[test]
    fn too_many_alerts_is_output_too_large() {
        let policy = Policy {
            max_alerts: 1,
            ..Policy::default()
        };
        let err = check(eval(vec![alert("a"), alert("b")], None), &policy).expect_err("2 > 1");
        assert!(matches!(err, RuleError::OutputTooLarge(_)), "{err}");
    }

    #[test]
    fn state_counts_towards_the_output_limit() {
        let policy = Policy {
            max_output_bytes: 100,
            ..Policy::default()
        };
        let err = check(eval(vec![], Some(vec![0; 101])), &policy).expect_err("101 > 100");
        assert!(matches!(err, RuleError::OutputTooLarge(m) if m.contains("101 of state")));
    }

    #[test]
    fn duplicate_or_empty_keys_are_invalid() {
        let p = Policy::default();
        assert!(matches!(
            check(eval(vec![alert("a"), alert("a")], None), &p),
            Err(RuleError::InvalidOutput(_))
        ));
        assert!(matches!(
            check(eval(vec![alert("")], None), &p),
            Err(RuleError::InvalidOutput(_))
        ));
    }

    #[test]
    fn non_finite_values_and_reserved_labels_are_invalid() {
        let p = Policy::default();
        let mut nan = alert("a");
        nan.value = f64::NAN;
        assert!(matches!(
            check(eval(vec![nan], None), &p),
            Err(RuleError::InvalidOutput(_))
        ));
        let mut reserved = alert("a");
        reserved.labels.push(("tenant".into(), "other".into()));
        assert!(matches!(
            check(eval(vec![reserved], None), &p),
            Err(RuleError::InvalidOutput(m)) if m.contains("tenant")
        ));
    }
}
