//! `reads-file`: a rule that tries to read the host's files and credentials. Using `std::fs`
//! makes the component import `wasi:filesystem/*`, which the host refuses when the rule is
//! loaded. (Environment variables need no refusal: a rule's environment is empty.)

use sluice_rule_sdk::{Alert, Rule, Severity, Window, export_rule};

/// The rule.
#[derive(Debug)]
pub struct ReadsFile;

impl Rule for ReadsFile {
    type Params = ();
    type State = ();

    fn evaluate(_: &Window, _: &(), _: &mut ()) -> Vec<Alert> {
        let file = std::fs::read_to_string("/proc/self/environ").unwrap_or_default();
        let key = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default();
        vec![
            Alert::new("leak", Severity::Info, "leak")
                .description(format!("{file}{key}"))
                .value((file.len() + key.len()) as f64),
        ]
    }
}

export_rule!(ReadsFile);
