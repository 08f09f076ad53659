//! Stamping: the front door's one step between a sender's record and the stream
//! (docs/ARCHITECTURE.md §8).
//!
//! [`Stamper::stamp`] takes the tenant of the key that sent a record and the record as one JSON
//! object text. It runs the core's own normaliser on it, so the front door rejects exactly what
//! ingest would reject (with the same reason) and agrees with ingest on what every field
//! means, and emits the record to put on the stream, with the key's tenant in it:
//!
//! - the body names no tenant (the usual case): `"tenant":"T",` is spliced in after the
//!   opening brace, and the rest of the bytes are kept as they were;
//! - the body names one (under any alias: `tenant`, `tenant_id`, `tenantId`, `tenant.id`, a
//!   `tenant` object): the claim is moved to `claimed_tenant`, which no canonical column reads
//!   (so it lands in `attrs`), and the key's tenant is written in its place;
//! - the body's tenant, as the normaliser reads it, is the key's own tenant: that is no claim
//!   of another tenant, and the record is kept as it was (trimmed).
//!
//! A claimed tenant never wins. The stamped record is checked with the normaliser again on
//! that path, so what goes out reads as the key's tenant, whatever the body held.

use std::borrow::Cow;

use crate::decode::json::Scanner;
use crate::encode_batch::IngestConfig;
use crate::error::RejectReason;
use crate::normalize::aliases::{Field, lookup};
use crate::normalize::{AttrsBuf, normalize_json};
use crate::resolve::{DEFAULT_SERVICE, check_event_time, check_service};

/// The key a tenant claim found in a body is moved to.
pub const CLAIMED_TENANT: &str = "claimed_tenant";

/// Kinesis partition keys hold at most 256 bytes.
const MAX_PARTITION_KEY: usize = 256;

/// Stamps records; holds the normaliser's buffer, so keep one per thread or request.
#[derive(Debug)]
pub struct Stamper {
    attrs: AttrsBuf,
    config: IngestConfig,
}

impl Default for Stamper {
    fn default() -> Self {
        Self::new(IngestConfig::default())
    }
}

impl Stamper {
    /// A stamper that applies ingest's limits from `config` (record size, event-time window).
    pub fn new(config: IngestConfig) -> Self {
        Self {
            attrs: AttrsBuf::default(),
            config,
        }
    }

    /// Appends the stamped form of `object` to `out` and returns the record's service (for the
    /// partition key `tenant/service`). `tenant` must be a valid tenant name (it comes from a
    /// key record). On a rejection `out` is left as it was.
    pub fn stamp<'a>(
        &mut self,
        tenant: &str,
        object: &'a str,
        now_ms: i64,
        out: &mut Vec<u8>,
    ) -> Result<Cow<'a, str>, RejectReason> {
        let fields = normalize_json(object, &mut self.attrs)?;
        let service = fields.service.unwrap_or(Cow::Borrowed(DEFAULT_SERVICE));
        check_service(&service)?;
        check_event_time(&self.config, fields.ts_ms.unwrap_or(now_ms), now_ms)?;
        let start = out.len();
        let stamped = if fields.tenant.is_none() {
            splice(tenant, object, out);
            Ok(())
        } else if fields.tenant.as_deref() == Some(tenant) {
            out.extend_from_slice(object.trim().as_bytes());
            Ok(())
        } else {
            self.move_claim(tenant, object, start, out)
        };
        let size = out.len() - start;
        if stamped.is_ok() && size > self.config.limits.max_record_bytes {
            out.truncate(start);
            return Err(RejectReason::Oversized {
                size,
                limit: self.config.limits.max_record_bytes,
            });
        }
        if stamped.is_err() {
            out.truncate(start);
        }
        stamped?;
        Ok(service)
    }

    /// Rewrites `object` into `out` with every tenant claim moved to [`CLAIMED_TENANT`], then
    /// checks the result reads as `tenant`.
    fn move_claim(
        &mut self,
        tenant: &str,
        object: &str,
        start: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), RejectReason> {
        let mut claims: Vec<&str> = Vec::new();
        let mut rest = String::new();
        let mut scanner = Scanner::new(object);
        scanner
            .object(0, |key, raw_key, s| {
                let raw = s.skip_value()?;
                if key == "tenant" || lookup(key) == Some(Field::Tenant) {
                    claims.push(raw);
                } else {
                    rest.push_str(",\"");
                    rest.push_str(raw_key);
                    rest.push_str("\":");
                    rest.push_str(raw);
                }
                Ok(())
            })
            .map_err(|e| RejectReason::NotJson {
                detail: e.to_string(),
            })?;
        out.extend_from_slice(b"{\"tenant\":\"");
        out.extend_from_slice(tenant.as_bytes());
        out.extend_from_slice(b"\",\"");
        out.extend_from_slice(CLAIMED_TENANT.as_bytes());
        out.extend_from_slice(b"\":");
        match claims.as_slice() {
            [one] => out.extend_from_slice(one.as_bytes()),
            many => {
                out.push(b'[');
                out.extend_from_slice(many.join(",").as_bytes());
                out.push(b']');
            }
        }
        out.extend_from_slice(rest.as_bytes());
        out.push(b'}');
        let text = std::str::from_utf8(&out[start..]).map_err(|e| RejectReason::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        let reread = normalize_json(text, &mut self.attrs)?;
        if reread.tenant.as_deref() != Some(tenant) {
            // Cannot happen while every alias is looked up above; refuse rather than pass a
            // record whose tenant is in doubt.
            return Err(RejectReason::NotJson {
                detail: "tenant claim could not be separated from the record".to_owned(),
            });
        }
        Ok(())
    }
}

/// `{"tenant":"T",` + the object after its opening brace (`{"tenant":"T"}` for `{}`).
fn splice(tenant: &str, object: &str, out: &mut Vec<u8>) {
    let trimmed = object.trim();
    let inner = trimmed.strip_prefix('{').unwrap_or(trimmed).trim_start();
    out.extend_from_slice(b"{\"tenant\":\"");
    out.extend_from_slice(tenant.as_bytes());
    out.push(b'"');
    if !inner.starts_with('}') {
        out.push(b',');
    }
    out.extend_from_slice(inner.as_bytes());
}

/// The partition key `tenant/service`, cut to Kinesis's 256 bytes (at a character boundary).
pub fn partition_key(tenant: &str, service: &str) -> String {
    let mut key = String::with_capacity(tenant.len() + 1 + service.len());
    key.push_str(tenant);
    key.push('/');
    for c in service.chars() {
        if key.len() + c.len_utf8() > MAX_PARTITION_KEY {
            break;
        }
        key.push(c);
    }
    key
}

/// A plain text line as a record object: `{"message":"<line>"}`.
pub fn plain_text_object(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 16);
    out.push_str("{\"message\":");
    out.push_str(&serde_json::Value::from(line).to_string());
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_714_566_896_000;

    fn stamp(object: &str) -> Result<(String, String), RejectReason> {
        let mut out = Vec::new();
        let service = Stamper::default().stamp("acme", object, NOW, &mut out)?;
        let service = service.into_owned();
        Ok((String::from_utf8(out).unwrap_or_default(), service))
    }

    fn tenant_as_ingest_reads_it(record: &str) -> Option<String> {
        let mut attrs = AttrsBuf::default();
        normalize_json(record, &mut attrs)
            .ok()
            .and_then(|f| f.tenant.map(Cow::into_owned))
    }

    #[test]
    fn splices_the_tenant_into_a_record_that_names_none() -> Result<(), RejectReason> {
        let (out, service) = stamp(r#"{"msg":"hi","service":"web"}"#)?;
        assert_eq!(out, r#"{"tenant":"acme","msg":"hi","service":"web"}"#);
        assert_eq!(service, "web");
        let (out, service) = stamp(" { } ")?;
        assert_eq!(out, r#"{"tenant":"acme"}"#);
        assert_eq!(service, "unknown");
        Ok(())
    }

    #[test]
    fn a_claimed_tenant_never_wins_under_any_alias() -> Result<(), RejectReason> {
        for body in [
            r#"{"tenant":"evil","msg":"x"}"#,
            r#"{"msg":"x","tenant_id":"evil"}"#,
            r#"{"tenantId":"evil","msg":"x"}"#,
            r#"{"tenant.id":"evil","msg":"x"}"#,
            r#"{"tenant":{"id":"evil","plan":"gold"},"msg":"x"}"#,
            r#"{"tenan\u0074":"evil","msg":"x"}"#,
            r#"{"tenant":"evil","tenant_id":"evil2","msg":"x"}"#,
            r#"{"tenant":7,"msg":"x"}"#,
        ] {
            let (out, _) = stamp(body)?;
            assert_eq!(
                tenant_as_ingest_reads_it(&out).as_deref(),
                Some("acme"),
                "{body} -> {out}"
            );
            assert!(out.contains("\"claimed_tenant\":"), "{out}");
            let value: serde_json::Value =
                serde_json::from_str(&out).map_err(|e| RejectReason::NotJson {
                    detail: e.to_string(),
                })?;
            assert_eq!(value["msg"], "x", "{out}");
        }
        Ok(())
    }

    #[test]
    fn a_record_naming_the_keys_own_tenant_is_kept_as_it_was() -> Result<(), RejectReason> {
        for body in [
            r#"{"tenant":"acme","msg":"x","service":"web"}"#,
            r#"{"msg":"x","tenant_id":"acme","service":"web"}"#,
        ] {
            let (out, service) = stamp(&format!(" {body} "))?;
            assert_eq!(out, body);
            assert_eq!(service, "web");
            assert!(!out.contains("claimed_tenant"), "{out}");
        }
        Ok(())
    }

    #[test]
    fn a_tenant_object_without_id_stays_in_attrs_and_the_key_wins() -> Result<(), RejectReason> {
        let (out, _) = stamp(r#"{"tenant":{"plan":"gold"},"msg":"x"}"#)?;
        assert_eq!(tenant_as_ingest_reads_it(&out).as_deref(), Some("acme"));
        Ok(())
    }

    #[test]
    fn rejects_what_ingest_rejects_with_its_reason() {
        let err = stamp(r#"{"msg": "unterminated}"#);
        assert!(matches!(err, Err(RejectReason::NotJson { .. })), "{err:?}");
        let err = stamp(r#"{"ts":"last tuesday"}"#);
        assert!(
            matches!(err, Err(RejectReason::TimestampOutOfRange { .. })),
            "{err:?}"
        );
        let err = stamp(r#"{"ts":"1999-01-01T00:00:00Z"}"#);
        assert!(
            matches!(err, Err(RejectReason::TimestampOutOfRange { .. })),
            "{err:?}"
        );
        let long = format!(r#"{{"service":"{}"}}"#, "s".repeat(300));
        assert!(matches!(
            stamp(&long),
            Err(RejectReason::InvalidName { .. })
        ));
    }

    #[test]
    fn rejects_a_record_over_the_size_limit_and_leaves_the_output_alone() {
        let mut config = IngestConfig::default();
        config.limits.max_record_bytes = 40;
        let mut stamper = Stamper::new(config);
        let mut out = b"previous".to_vec();
        let body = format!(r#"{{"msg":"{}"}}"#, "x".repeat(40));
        let err = stamper.stamp("acme", &body, NOW, &mut out);
        assert!(
            matches!(err, Err(RejectReason::Oversized { .. })),
            "{err:?}"
        );
        assert_eq!(out, b"previous");
    }

    #[test]
    fn partition_keys_fit_kinesis() {
        assert_eq!(partition_key("acme", "web"), "acme/web");
        assert_eq!(partition_key("acme", &"é".repeat(200)).len(), 255);
    }

    #[test]
    fn plain_text_becomes_a_message() -> Result<(), RejectReason> {
        let object = plain_text_object("disk \"full\"\t!");
        let (out, _) = stamp(&object)?;
        let mut attrs = AttrsBuf::default();
        let fields = normalize_json(&out, &mut attrs)?;
        assert_eq!(fields.message.as_deref(), Some("disk \"full\"\t!"));
        Ok(())
    }
}
