//! # sluice-registry
//!
//! The registry Lambda function, as a library: S3 object-created events under
//! `rules/<tenant>/<rule>/` (the module or its manifest) trigger
//! [`sluice_rules::tenant_rules::register`], which validates the component, test-evaluates it on
//! a canned window, precompiles it to `compiled/…` and writes `status.json` next to the upload;
//! removals of either file trigger it too (the rule is removed once both are gone), and a
//! tenant's `rollback.json` triggers [`sluice_rules::tenant_rules::roll_back`].

use aws_lambda_events::s3::S3Event;

/// What an event asks of the registry for one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// `module.wasm` or `rule.toml` was written or removed: judge the upload (or remove the rule).
    Register,
    /// `rollback.json` was written: make the version it names active again.
    Rollback,
}

/// The (tenant, rule, action) triples an S3 event names: `rules/<tenant>/<rule>/module.wasm`,
/// `rule.toml` or `rollback.json`. The registry's own `status.json` writes are ignored (no
/// loops).
pub fn uploads(event: &S3Event) -> Vec<(String, String, Action)> {
    let mut out: Vec<(String, String, Action)> = event
        .records
        .iter()
        .filter_map(|r| r.s3.object.key.as_deref())
        .filter_map(rule_of_key)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `rules/<tenant>/<rule>/module.wasm|rule.toml|rollback.json` → (tenant, rule, action). S3
/// event keys are URL-encoded.
pub fn rule_of_key(key: &str) -> Option<(String, String, Action)> {
    let key = key.replace('+', " ");
    let mut parts = key.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("rules"), Some(tenant), Some(rule), Some(file), None)
            if !tenant.is_empty() && !rule.is_empty() =>
        {
            let action = match file {
                "module.wasm" | "rule.toml" => Action::Register,
                "rollback.json" => Action::Rollback,
                _ => return None,
            };
            Some((tenant.to_owned(), rule.to_owned(), action))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_module_and_manifest_uploads_trigger_registration() {
        assert_eq!(
            rule_of_key("rules/acme/threshold/module.wasm"),
            Some(("acme".into(), "threshold".into(), Action::Register))
        );
        assert_eq!(
            rule_of_key("rules/acme/threshold/rule.toml"),
            Some(("acme".into(), "threshold".into(), Action::Register))
        );
        assert_eq!(
            rule_of_key("rules/acme/threshold/rollback.json"),
            Some(("acme".into(), "threshold".into(), Action::Rollback))
        );
        assert_eq!(
            rule_of_key("rules/acme/threshold/status.json"),
            None,
            "no loop on our own writes"
        );
        assert_eq!(rule_of_key("compiled/x/acme/threshold.cwasm"), None);
        assert_eq!(rule_of_key("rules/acme/module.wasm"), None);
    }

    #[test]
    fn deduplicates_the_rules_of_one_event() {
        let record = |key: &str| {
            serde_json::json!({
                "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                "eventTime": "2026-11-25T12:00:00.000Z", "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:EXAMPLE"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "1", "x-amz-id-2": "2"},
                "s3": {"s3SchemaVersion": "1.0", "configurationId": "registry",
                       "bucket": {"name": "rules", "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": "arn:aws:s3:::rules"},
                       "object": {"key": key, "size": 1, "eTag": "e", "sequencer": "0A"}}
            })
        };
        let event: S3Event = serde_json::from_value(serde_json::json!({"Records": [
            record("rules/acme/threshold/module.wasm"),
            record("rules/acme/threshold/rule.toml"),
            record("rules/acme/threshold/status.json"),
        ]}))
        .expect("an S3 event");
        assert_eq!(
            uploads(&event),
            vec![("acme".to_owned(), "threshold".to_owned(), Action::Register)]
        );
    }
}
