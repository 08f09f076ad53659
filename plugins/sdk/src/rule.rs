//! The `Rule` trait a rule implements, and the driver that runs it on encoded input (JSON
//! params, opaque state bytes) exactly as the component export does.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::alert::Alert;
use crate::window::Window;

/// An alert rule. Implement it on a unit struct and export it with
/// [`export_rule!`](crate::export_rule).
///
/// The logic is plain Rust: test it natively with [`Harness`](crate::Harness) or by calling
/// [`Rule::evaluate`] directly.
pub trait Rule {
    /// The rule's parameters, parsed from the `[params]` table of its manifest (`rule.toml`).
    /// Use `#[serde(default)]` for optional ones and `#[serde(deny_unknown_fields)]` to catch
    /// typos.
    type Params: DeserializeOwned;

    /// What the rule remembers from one window to the next (`()` for none). Stored by the
    /// host as JSON bytes between evaluations. State that no longer decodes (after the rule
    /// changed its shape) starts again from `Default`.
    type State: Serialize + DeserializeOwned + Default;

    /// Checks parameters beyond their types (e.g. warning below critical). The message is
    /// shown to the rule's author.
    fn check_params(_params: &Self::Params) -> Result<(), String> {
        Ok(())
    }

    /// Returns the conditions that hold in `window`, updating `state` for the next window.
    fn evaluate(window: &Window, params: &Self::Params, state: &mut Self::State) -> Vec<Alert>;
}

/// Why an evaluation could not run (the WIT `rule-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleFailure {
    /// The parameters do not fit the rule.
    InvalidParams(String),
    /// Anything else the rule or the SDK detected.
    Failed(String),
}

impl std::fmt::Display for RuleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleFailure::InvalidParams(m) => write!(f, "invalid params: {m}"),
            RuleFailure::Failed(m) => write!(f, "rule failed: {m}"),
        }
    }
}

impl std::error::Error for RuleFailure {}

/// What one evaluation returns (the WIT `evaluation`).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub alerts: Vec<Alert>,
    /// The encoded new state.
    pub state: Option<Vec<u8>>,
}

/// Parses a rule's parameters from the JSON object text the host passes (an empty text reads
/// as `{}`), then checks them with [`Rule::check_params`].
pub fn parse_params<R: Rule>(params_json: &str) -> Result<R::Params, RuleFailure> {
    let text = if params_json.trim().is_empty() {
        "{}"
    } else {
        params_json
    };
    let params: R::Params =
        serde_json::from_str(text).map_err(|e| RuleFailure::InvalidParams(e.to_string()))?;
    R::check_params(&params).map_err(RuleFailure::InvalidParams)?;
    Ok(params)
}

/// Decodes the state from the previous window: `Default` when there is none, or when it no
/// longer decodes.
pub fn decode_state<S: DeserializeOwned + Default>(state: Option<&[u8]>) -> S {
    state
        .and_then(|bytes| serde_json::from_slice(bytes).ok())
        .unwrap_or_default()
}

/// Runs `R` on encoded input, as the exported component function does: parse the params,
/// decode the state, evaluate, encode the new state.
pub fn evaluate_encoded<R: Rule>(
    window: &Window,
    params_json: &str,
    state: Option<&[u8]>,
) -> Result<Evaluation, RuleFailure> {
    let params = parse_params::<R>(params_json)?;
    let mut state: R::State = decode_state(state);
    let alerts = R::evaluate(window, &params, &mut state);
    let state = serde_json::to_vec(&state)
        .map_err(|e| RuleFailure::Failed(format!("cannot encode the rule's state: {e}")))?;
    Ok(Evaluation {
        alerts,
        state: Some(state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;
    use serde::Deserialize;

    /// Counts its evaluations and alerts once `every` is reached.
    struct Counter;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CounterParams {
        every: u32,
    }

    #[derive(Serialize, Deserialize, Default)]
    struct CounterState {
        seen: u32,
    }

    impl Rule for Counter {
        type Params = CounterParams;
        type State = CounterState;

        fn check_params(params: &CounterParams) -> Result<(), String> {
            if params.every == 0 {
                return Err("every must be at least 1".into());
            }
            Ok(())
        }

        fn evaluate(_: &Window, params: &CounterParams, state: &mut CounterState) -> Vec<Alert> {
            state.seen += 1;
            if state.seen.is_multiple_of(params.every) {
                vec![Alert::new("count", Severity::Info, "tick").value(f64::from(state.seen))]
            } else {
                Vec::new()
            }
        }
    }

    #[test]
    fn state_is_carried_between_evaluations_as_bytes() {
        let w = Window::default();
        let first = evaluate_encoded::<Counter>(&w, r#"{"every":2}"#, None).expect("valid");
        assert!(first.alerts.is_empty());
        let second =
            evaluate_encoded::<Counter>(&w, r#"{"every":2}"#, first.state.as_deref()).expect("ok");
        assert_eq!(second.alerts.len(), 1);
        assert_eq!(second.alerts[0].value, 2.0);
    }

    #[test]
    fn state_that_no_longer_decodes_starts_from_default() {
        let e = evaluate_encoded::<Counter>(&Window::default(), r#"{"every":1}"#, Some(b"\xff"))
            .expect("valid");
        assert_eq!(e.alerts[0].value, 1.0);
    }

    #[test]
    fn unknown_params_are_invalid() {
        let err = evaluate_encoded::<Counter>(&Window::default(), r#"{"evry":2}"#, None)
            .expect_err("typo");
        assert!(matches!(err, RuleFailure::InvalidParams(m) if m.contains("evry")));
    }

    #[test]
    fn check_params_rejects_values_the_types_allow() {
        let err = evaluate_encoded::<Counter>(&Window::default(), r#"{"every":0}"#, None)
            .expect_err("zero");
        assert_eq!(
            err,
            RuleFailure::InvalidParams("every must be at least 1".into())
        );
    }
}
