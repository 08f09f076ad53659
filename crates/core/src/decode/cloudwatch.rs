//! CloudWatch Logs subscription payloads: gzip JSON with `logEvents`, and the rules that map a
//! log group (and stream) to a tenant and a service.

use std::io::Read as _;

use serde::Deserialize;

/// The envelope CloudWatch Logs puts on the stream.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub message_type: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub log_group: String,
    #[serde(default)]
    pub log_stream: String,
    #[serde(default)]
    pub log_events: Vec<LogEvent>,
}

/// One log event of an envelope.
#[derive(Debug, Deserialize)]
pub struct LogEvent {
    #[serde(default)]
    pub id: String,
    pub timestamp: i64,
    pub message: String,
}

/// True for gzip data.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}

/// Why [`gunzip_capped`] gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GunzipError {
    /// The data would decompress to more than the limit (it stopped there).
    #[error("decompresses to more than {limit} bytes")]
    TooLarge { limit: usize },
    /// The data is not valid gzip.
    #[error("gzip: {0}")]
    Corrupt(String),
}

/// Decompresses gzip, refusing to produce more than `limit` bytes (a gzip bomb stops there).
pub fn gunzip_capped(data: &[u8], limit: usize) -> Result<Vec<u8>, GunzipError> {
    let mut out = Vec::with_capacity((data.len() * 8).min(limit));
    let mut decoder = flate2::read::MultiGzDecoder::new(data).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| GunzipError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(GunzipError::TooLarge { limit });
    }
    Ok(out)
}

/// Parses a decompressed payload as a CloudWatch Logs envelope; `None` when it is not one.
pub fn parse_envelope(json: &[u8]) -> Option<Envelope> {
    let envelope: Envelope = serde_json::from_slice(json).ok()?;
    matches!(
        envelope.message_type.as_str(),
        "DATA_MESSAGE" | "CONTROL_MESSAGE"
    )
    .then_some(envelope)
}

/// Maps log groups to tenant and service. Rules are tried in order; the first match wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudWatchMapping {
    pub rules: Vec<LogGroupRule>,
}

/// One mapping rule: a log-group pattern with `{tenant}`, `{service}` and `{*}` placeholders,
/// and optional fixed values (`tenant=acme`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroupRule {
    pub pattern: String,
    pub tenant: Option<String>,
    pub service: Option<String>,
}

impl Default for CloudWatchMapping {
    /// `/sluice/{tenant}/{service}` and `/aws/lambda/{service}`: the second leaves the tenant to
    /// the record or the partition key.
    fn default() -> Self {
        Self::parse("/sluice/{tenant}/{service}; /aws/lambda/{service}; /ecs/{tenant}/{service}")
            .unwrap_or(Self { rules: Vec::new() })
    }
}

/// Tenant and service taken from a log group.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub tenant: Option<String>,
    pub service: Option<String>,
}

impl CloudWatchMapping {
    /// Parses rules separated by `;` or newlines: `PATTERN [tenant=NAME] [service=NAME]`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for part in spec
            .split([';', '\n'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let mut words = part.split_whitespace();
            let pattern = words.next().unwrap_or_default().to_owned();
            let mut rule = LogGroupRule {
                pattern,
                tenant: None,
                service: None,
            };
            for word in words {
                match word.split_once('=') {
                    Some(("tenant", v)) => rule.tenant = Some(v.to_owned()),
                    Some(("service", v)) => rule.service = Some(v.to_owned()),
                    _ => {
                        return Err(format!(
                            "unknown option {word:?} in rule {part:?} (use tenant=… or service=…)"
                        ));
                    }
                }
            }
            rules.push(rule);
        }
        Ok(Self { rules })
    }

    /// Applies the first rule whose pattern matches `log_group`.
    pub fn map(&self, log_group: &str) -> Mapped {
        for rule in &self.rules {
            if let Some(mut mapped) = match_pattern(&rule.pattern, log_group) {
                if rule.tenant.is_some() {
                    mapped.tenant.clone_from(&rule.tenant);
                }
                if rule.service.is_some() {
                    mapped.service.clone_from(&rule.service);
                }
                return mapped;
            }
        }
        Mapped::default()
    }
}

/// Matches `{name}` placeholders against the text; each captures up to the next literal part
/// (the last one captures the rest), and no capture may be empty.
fn match_pattern(pattern: &str, text: &str) -> Option<Mapped> {
    let mut mapped = Mapped::default();
    let mut rest_pat = pattern;
    let mut rest = text;
    loop {
        match rest_pat.find('{') {
            None => return (rest_pat == rest).then_some(mapped),
            Some(open) => {
                let literal = &rest_pat[..open];
                rest = rest.strip_prefix(literal)?;
                let close = rest_pat[open..].find('}')? + open;
                let name = &rest_pat[open + 1..close];
                rest_pat = &rest_pat[close + 1..];
                let next_literal_end = rest_pat.find('{').unwrap_or(rest_pat.len());
                let next_literal = &rest_pat[..next_literal_end];
                let capture_len = if next_literal.is_empty() {
                    if rest_pat.is_empty() {
                        rest.len()
                    } else {
                        return None;
                    }
                } else {
                    rest.find(next_literal)?
                };
                let value = &rest[..capture_len];
                if value.is_empty() {
                    return None;
                }
                match name {
                    "tenant" => mapped.tenant = Some(value.to_owned()),
                    "service" => mapped.service = Some(value.to_owned()),
                    _ => {}
                }
                rest = &rest[capture_len..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_log_groups_by_pattern_and_fixed_values() -> Result<(), String> {
        let m = CloudWatchMapping::parse(
            "/sluice/{tenant}/{service}; /aws/lambda/{service} tenant=acme; /k8s/{*}/{service}",
        )?;
        assert_eq!(
            m.map("/sluice/beta/web"),
            Mapped {
                tenant: Some("beta".into()),
                service: Some("web".into())
            }
        );
        assert_eq!(
            m.map("/aws/lambda/checkout"),
            Mapped {
                tenant: Some("acme".into()),
                service: Some("checkout".into())
            }
        );
        assert_eq!(m.map("/k8s/prod/api").service.as_deref(), Some("api"));
        assert_eq!(m.map("/other/x"), Mapped::default());
        assert!(CloudWatchMapping::parse("/x/{service} owner=me").is_err());
        Ok(())
    }

    #[test]
    fn gzip_bomb_stops_at_the_cap() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&zeros).expect("in-memory write");
        }
        let bomb = gz.finish().expect("in-memory gzip");
        assert!(bomb.len() < 100_000, "the bomb is small: {}", bomb.len());
        let err = gunzip_capped(&bomb, 8 << 20)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("more than 8388608 bytes"), "{err}");
    }
}
