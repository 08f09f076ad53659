//! The partition key of a line: `tenant/service`, read from the record the way the ingest
//! function reads it (every alias `sluice-core` knows: `tenant_id`, `service.name`, nested
//! `service: {name}`, ...), else from `--tenant` / `--service`. With `--hot-key-suffixes N`,
//! a random `/0` … `/N-1` is appended, spreading one busy `tenant/service` over up to N shards;
//! the ingest side ignores anything after the second `/`.
//!
//! A line that names no tenant anywhere still gets a key (`/service`): Kinesis needs one, and
//! the ingest function then dead-letters it with its reason instead of it vanishing here.

use sluice_core::normalize::{AttrsBuf, normalize_json};

/// Kinesis's limit on a partition key, in Unicode scalar values.
pub const MAX_KEY_CHARS: usize = 256;

/// Where keys come from besides the record itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyConfig {
    /// Tenant for lines that name none.
    pub tenant: Option<String>,
    /// Service for lines that name none.
    pub service: Option<String>,
    /// Spread each key over this many random suffixes (0 or 1: no suffix).
    pub hot_key_suffixes: u32,
}

/// Computes partition keys, reusing its scratch buffer between lines.
#[derive(Debug, Default)]
pub struct Partitioner {
    config: KeyConfig,
    attrs: AttrsBuf,
    rng: fastrand::Rng,
}

impl Partitioner {
    pub fn new(config: KeyConfig) -> Self {
        Self {
            config,
            attrs: AttrsBuf::default(),
            rng: fastrand::Rng::new(),
        }
    }

    /// The partition key for one line.
    pub fn key(&mut self, line: &[u8]) -> String {
        let (tenant, service) = self.identity(line);
        let tenant = tenant.or_else(|| self.config.tenant.clone());
        let service = service.or_else(|| self.config.service.clone());
        let mut key = format!(
            "{}/{}",
            tenant.as_deref().unwrap_or_default(),
            service.as_deref().unwrap_or_default()
        );
        if self.config.hot_key_suffixes > 1 {
            let suffix = self.rng.u32(0..self.config.hot_key_suffixes);
            key = format!("{key}/{suffix}");
        }
        truncate_chars(key, MAX_KEY_CHARS)
    }

    /// Tenant and service as the record itself names them, if it is a JSON object.
    fn identity(&mut self, line: &[u8]) -> (Option<String>, Option<String>) {
        let starts_as_object = line
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'{');
        if !starts_as_object {
            return (None, None);
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return (None, None);
        };
        self.attrs.clear();
        match normalize_json(text, &mut self.attrs) {
            Ok(fields) => (
                fields.tenant.map(|t| t.into_owned()),
                fields.service.map(|s| s.into_owned()),
            ),
            Err(_) => (None, None),
        }
    }
}

fn truncate_chars(mut s: String, max: usize) -> String {
    if let Some((cut, _)) = s.char_indices().nth(max) {
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(config: KeyConfig, line: &str) -> String {
        Partitioner::new(config).key(line.as_bytes())
    }

    #[test]
    fn the_record_names_tenant_and_service_under_any_alias_core_accepts() {
        let none = KeyConfig::default();
        assert_eq!(
            key(
                none.clone(),
                r#"{"tenant":"acme","service":"checkout","msg":"x"}"#
            ),
            "acme/checkout"
        );
        assert_eq!(
            key(none.clone(), r#"{"tenant_id":"acme","service.name":"api"}"#),
            "acme/api"
        );
        assert_eq!(
            key(none, r#"{"tenantId":"globex","service":{"name":"search"}}"#),
            "globex/search"
        );
    }

    #[test]
    fn flags_fill_in_what_the_record_does_not_say_and_never_override_it() {
        let flags = KeyConfig {
            tenant: Some("flagco".into()),
            service: Some("flagsvc".into()),
            hot_key_suffixes: 0,
        };
        assert_eq!(
            key(flags.clone(), r#"{"tenant":"acme","msg":"x"}"#),
            "acme/flagsvc"
        );
        assert_eq!(key(flags.clone(), "GET /healthz 200"), "flagco/flagsvc");
        assert_eq!(key(flags, r#"{"tenant":"acme","#), "flagco/flagsvc");
    }

    #[test]
    fn a_line_with_no_tenant_anywhere_keeps_an_empty_tenant_for_the_dead_letter_queue() {
        assert_eq!(key(KeyConfig::default(), "plain text"), "/");
        assert_eq!(
            key(KeyConfig::default(), r#"{"service":"api","msg":"who"}"#),
            "/api"
        );
    }

    #[test]
    fn hot_key_suffixes_spread_one_key_over_n_suffixes() {
        let mut p = Partitioner::new(KeyConfig {
            hot_key_suffixes: 4,
            ..KeyConfig::default()
        });
        let keys: std::collections::BTreeSet<String> = (0..400)
            .map(|_| p.key(br#"{"tenant":"acme","service":"api"}"#))
            .collect();
        let want: std::collections::BTreeSet<String> =
            (0..4).map(|i| format!("acme/api/{i}")).collect();
        assert_eq!(keys, want);
    }

    #[test]
    fn keys_are_cut_to_the_kinesis_limit_on_a_character_boundary() {
        let long = "é".repeat(300);
        let k = key(
            KeyConfig::default(),
            &format!(r#"{{"tenant":"{long}","service":"s"}}"#),
        );
        assert_eq!(k.chars().count(), MAX_KEY_CHARS);
    }
}
