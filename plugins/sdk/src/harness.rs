//! Native testing: run a rule window after window, carrying its encoded state and parameters
//! exactly as the host does, with no wasm involved.

use std::marker::PhantomData;

use crate::alert::Alert;
use crate::manifest;
use crate::rule::{Rule, RuleFailure, decode_state, evaluate_encoded, parse_params};
use crate::window::Window;

/// Runs a rule the way the host does: params from a manifest, state carried as bytes.
#[derive(Debug)]
pub struct Harness<R> {
    params_json: String,
    state: Option<Vec<u8>>,
    rule: PhantomData<R>,
}

impl<R: Rule> Harness<R> {
    /// A harness with the `[params]` of a manifest (e.g. `include_str!("../rule.toml")`).
    /// Fails if the manifest does not parse or its params do not fit the rule.
    pub fn from_manifest(manifest_toml: &str) -> Result<Harness<R>, RuleFailure> {
        let json = manifest::params_json(manifest_toml).map_err(RuleFailure::InvalidParams)?;
        Harness::with_params_json(&json)
    }

    /// A harness with params given as JSON object text.
    pub fn with_params_json(params_json: &str) -> Result<Harness<R>, RuleFailure> {
        parse_params::<R>(params_json)?;
        Ok(Harness {
            params_json: params_json.to_owned(),
            state: None,
            rule: PhantomData,
        })
    }

    /// Evaluates one window and keeps the new state for the next call.
    pub fn evaluate(&mut self, window: &Window) -> Result<Vec<Alert>, RuleFailure> {
        let out = evaluate_encoded::<R>(window, &self.params_json, self.state.as_deref())?;
        self.state = out.state;
        Ok(out.alerts)
    }

    /// The decoded state the next evaluation will receive.
    pub fn state(&self) -> R::State {
        decode_state(self.state.as_deref())
    }

    /// The encoded state's size in bytes (state counts towards the host's output limit).
    pub fn state_len(&self) -> usize {
        self.state.as_ref().map_or(0, Vec::len)
    }
}
