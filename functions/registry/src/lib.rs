//! # sluice-registry
//!
//! The registry Lambda function, as a library: S3 object-created events under
//! `rules/<tenant>/<rule>/` (the module or its manifest) trigger
//! [`sluice_rules::tenant_rules::register`], which validates the component, test-evaluates it on
//! a canned window, precompiles it to `compiled/…` and writes `status.json` next to the upload.

use aws_lambda_events::s3::S3Event;

/// The (tenant, rule) pairs an S3 event names: uploads of `rules/<tenant>/<rule>/module.wasm`
/// or `rule.toml`. The registry's own `status.json` writes are ignored (no loops).
pub fn uploads(event: &S3Event) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = event
        .records
        .iter()
        .filter_map(|r| r.s3.object.key.as_deref())
        .filter_map(rule_of_key)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `rules/<tenant>/<rule>/module.wasm|rule.toml` → (tenant, rule). S3 event keys are URL-encoded.
pub fn rule_of_key(key: &str) -> Option<(String, String)> {
    let key = key.replace('+', " ");
    let mut parts = key.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("rules"), Some(tenant), Some(rule), Some("module.wasm" | "rule.toml"), None)
            if !tenant.is_empty() && !rule.is_empty() =>
        {
            Some((tenant.to_owned(), rule.to_owned()))
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
            Some(("acme".into(), "threshold".into()))
        );
        assert_eq!(
            rule_of_key("rules/acme/threshold/rule.toml"),
            Some(("acme".into(), "threshold".into()))
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
            vec![("acme".to_owned(), "threshold".to_owned())]
        );
    }
}
