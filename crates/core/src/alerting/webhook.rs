//! Notifications in the JSON shape of the Prometheus Alertmanager webhook (version 4), so that
//! existing receivers accept them, signed with HMAC-SHA256 over a timestamp and the body.

use std::collections::BTreeMap;

use hmac::{KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};

use super::lifecycle::{Transition, TransitionKind};
use crate::normalize::timestamp::format_rfc3339_ms;

/// The Alertmanager webhook payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    pub version: String,
    pub group_key: String,
    pub truncated_alerts: u32,
    pub status: String,
    pub receiver: String,
    pub group_labels: BTreeMap<String, String>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<WebhookAlert>,
}

/// One alert of a payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

/// Alertmanager's "no end" time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Groups one tenant's transitions of one evaluation into one payload.
pub fn payload(tenant: &str, transitions: &[Transition]) -> WebhookPayload {
    let alerts: Vec<WebhookAlert> = transitions
        .iter()
        .map(|t| {
            let a = &t.alert;
            let mut labels = a.labels.clone();
            labels.insert("alertname".into(), a.rule.clone());
            labels.insert("tenant".into(), a.tenant.clone());
            labels.insert("severity".into(), a.severity.as_str().into());
            labels.insert("key".into(), a.key.clone());
            let annotations = BTreeMap::from([
                ("summary".to_owned(), a.title.clone()),
                ("description".to_owned(), a.description.clone()),
                ("value".to_owned(), format!("{}", a.value)),
            ]);
            let resolved = t.kind == TransitionKind::Resolved;
            WebhookAlert {
                status: if resolved { "resolved" } else { "firing" }.into(),
                labels,
                annotations,
                starts_at: format_rfc3339_ms(a.starts_at_ms),
                ends_at: a
                    .ends_at_ms
                    .map_or_else(|| ZERO_TIME.to_owned(), format_rfc3339_ms),
                generator_url: String::new(),
                fingerprint: a.fingerprint.clone(),
            }
        })
        .collect();
    let any_firing = alerts.iter().any(|a| a.status == "firing");
    let common_labels = common(alerts.iter().map(|a| &a.labels));
    let common_annotations = common(alerts.iter().map(|a| &a.annotations));
    WebhookPayload {
        version: "4".into(),
        group_key: format!("{{}}:{{tenant=\"{tenant}\"}}"),
        truncated_alerts: 0,
        status: if any_firing { "firing" } else { "resolved" }.into(),
        receiver: format!("sluice/{tenant}"),
        group_labels: BTreeMap::from([("tenant".to_owned(), tenant.to_owned())]),
        common_labels,
        common_annotations,
        external_url: String::new(),
        alerts,
    }
}

fn common<'a>(
    mut maps: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let Some(first) = maps.next() else {
        return BTreeMap::new();
    };
    let mut out = first.clone();
    for m in maps {
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

/// A stable key for one tenant's notification of one window: the same evaluation run twice
/// gives the same key, so receivers can drop the duplicate.
pub fn idempotency_key(tenant: &str, window_start_ms: i64, transitions: &[Transition]) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(tenant.as_bytes());
    h.update(window_start_ms.to_be_bytes());
    let mut parts: Vec<String> = transitions
        .iter()
        .map(|t| format!("{}:{:?}", t.alert.fingerprint, t.kind))
        .collect();
    parts.sort();
    for p in parts {
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// The `X-Sluice-Signature` header value: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>`.
pub fn sign(secret: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    format!(
        "t={unix_seconds},v1={}",
        hex::encode(mac(secret, unix_seconds, body))
    )
}

fn mac(secret: &[u8], unix_seconds: i64, body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable_hmac());
    m.update(unix_seconds.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

#[cold]
fn unreachable_hmac() -> hmac::Hmac<sha2::Sha256> {
    // `new_from_slice` only fails for fixed-size keys; HMAC has none. Kept total for the lint.
    hmac::Hmac::<sha2::Sha256>::new(&Default::default())
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("malformed signature header")]
    Malformed,
    #[error("signature is {age_s} s old, more than the {tolerance_s} s allowed")]
    Stale { age_s: i64, tolerance_s: i64 },
    #[error("signature does not match the body")]
    Mismatch,
}

/// Verifies a signature header as a receiver would (constant-time compare, replay window).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_s: i64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(SignatureError::Malformed);
    };
    if (now_unix - t).abs() > tolerance_s {
        return Err(SignatureError::Stale {
            age_s: now_unix - t,
            tolerance_s,
        });
    }
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .map_err(|_| SignatureError::Malformed)?;
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.verify_slice(&v1).map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_verifies_and_detects_tampering_and_replay() {
        let body = br#"{"status":"firing"}"#;
        let header = sign(b"s3cret", 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(verify(b"s3cret", &header, body, 1_700_000_030, 300), Ok(()));
        assert_eq!(
            verify(b"s3cret", &header, b"{}", 1_700_000_030, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &header, body, 1_700_000_030, 300),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify(b"s3cret", &header, body, 1_700_009_000, 300),
            Err(SignatureError::Stale { .. })
        ));
        assert_eq!(
            verify(b"s3cret", "v1=zz", body, 0, 300),
            Err(SignatureError::Malformed)
        );
    }
}
