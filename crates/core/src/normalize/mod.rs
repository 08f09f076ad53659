//! Normalisation: one JSON log event to the canonical fields of docs/ARCHITECTURE.md §3.
//!
//! Known fields are taken (under any of their aliases, flat, dotted or nested in `http`,
//! `service`, …); every other field is copied, as its original JSON text, into `attrs`.

pub mod aliases;
pub mod timestamp;

use std::borrow::Cow;

use crate::decode::json::{JsonError, KeyMemo, Scanner, Value, parse_f64};
use crate::error::RejectReason;
use crate::level::Level;
use aliases::{CONTAINER_SLOTS, Container, Field, lookup_in};

/// The canonical fields found in one event. Strings borrow from the input where they can.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fields<'a> {
    pub ts_ms: Option<i64>,
    pub tenant: Option<Cow<'a, str>>,
    pub service: Option<Cow<'a, str>>,
    pub level: Option<Level>,
    pub message: Option<Cow<'a, str>>,
    pub trace_id: Option<Cow<'a, str>>,
    pub span_id: Option<Cow<'a, str>>,
    pub http_method: Option<Cow<'a, str>>,
    pub http_path: Option<Cow<'a, str>>,
    pub http_status: Option<u16>,
    pub latency_ms: Option<f64>,
    pub host: Option<Cow<'a, str>>,
    pub region: Option<Cow<'a, str>>,
    pub event_id: Option<Cow<'a, str>>,
}

/// Builds the `attrs` JSON object text from the fields no canonical column took. It also
/// remembers, for the top level and each container, the keys of the last records and what
/// they mean ([`KeyMemo`]), so the next record of the same shape skips their lookup.
#[derive(Debug, Default)]
pub struct AttrsBuf {
    text: String,
    keys: [KeyMemo<KeyMeaning>; CONTAINER_SLOTS],
}

/// What a member's key means, found once per key and position by [`KeyMemo`].
#[derive(Debug, Clone, Copy)]
struct KeyMeaning {
    /// The canonical field the key names inside its object.
    field: Option<Field>,
    /// The container it opens when its value is an object (top-level keys only).
    container: Option<Container>,
}

impl AttrsBuf {
    pub fn clear(&mut self) {
        self.text.clear();
    }

    /// The JSON object text, or `None` when there were no extra fields.
    pub fn as_json(&mut self) -> Option<&str> {
        if self.text.is_empty() {
            None
        } else {
            self.text.push('}');
            Some(&self.text)
        }
    }

    /// Adds a top-level member as its input text (`"key":value`).
    fn push_member(&mut self, member: &str) {
        self.text.push(if self.text.is_empty() { '{' } else { ',' });
        self.text.push_str(member);
    }

    /// Adds `"prefix.key": raw` (the key keeps its original escapes).
    fn push(&mut self, prefix: Option<&str>, raw_key: &str, raw_value: &str) {
        self.text.push(if self.text.is_empty() { '{' } else { ',' });
        self.text.push('"');
        if let Some(p) = prefix {
            self.text.push_str(p);
            self.text.push('.');
        }
        self.text.push_str(raw_key);
        self.text.push_str("\":");
        self.text.push_str(raw_value);
    }
}

/// Normalises one JSON object. `src` must be exactly one object (whitespace around is allowed).
pub fn normalize_json<'a>(src: &'a str, attrs: &mut AttrsBuf) -> Result<Fields<'a>, RejectReason> {
    let mut scanner = Scanner::new(src);
    let fields = normalize_object(&mut scanner, attrs)?;
    if !scanner.at_end() {
        return Err(RejectReason::NotJson {
            detail: format!("trailing characters at byte {}", scanner.pos()),
        });
    }
    Ok(fields)
}

/// Normalises the object at the scanner's position, leaving it after the object.
pub fn normalize_object<'a>(
    scanner: &mut Scanner<'a>,
    attrs: &mut AttrsBuf,
) -> Result<Fields<'a>, RejectReason> {
    let mut fields = Fields::default();
    normalize_object_into(scanner, attrs, &mut fields)?;
    Ok(fields)
}

/// [`normalize_object`] into `fields` (which should start empty): the decoder's hot path, where
/// the fields are built in place instead of being moved through return values.
pub fn normalize_object_into<'a>(
    scanner: &mut Scanner<'a>,
    attrs: &mut AttrsBuf,
    fields: &mut Fields<'a>,
) -> Result<(), RejectReason> {
    attrs.clear();
    let mut bad_ts: Option<String> = None;
    walk(scanner, None, fields, attrs, &mut bad_ts).map_err(|e| RejectReason::NotJson {
        detail: e.to_string(),
    })?;
    match bad_ts {
        Some(detail) => Err(RejectReason::TimestampOutOfRange { detail }),
        None => Ok(()),
    }
}

fn walk<'a>(
    scanner: &mut Scanner<'a>,
    inside: Option<Container>,
    fields: &mut Fields<'a>,
    attrs: &mut AttrsBuf,
    bad_ts: &mut Option<String>,
) -> Result<(), JsonError> {
    let depth = usize::from(inside.is_some());
    let prefix = inside.map(|c| c.name);
    let slot = inside.map_or(0, Container::slot);
    // Out of `attrs` while the object is walked, which borrows `attrs` for the text.
    let mut memo = std::mem::take(&mut attrs.keys[slot]);
    let meaning = |key: &str| KeyMeaning {
        field: lookup_in(inside, key),
        container: if inside.is_none() {
            aliases::container(key)
        } else {
            None
        },
    };
    let walked = scanner.object_memo(depth, &mut memo, meaning, |_, raw_key, meaning, s| {
        if let Some(c) = meaning.container
            && s.peek() == Some(b'{')
        {
            return walk(s, Some(c), fields, attrs, bad_ts);
        }
        // A member that goes to `attrs` as it is: at the top level its input text is copied
        // whole, nested it gets its container's prefix.
        let keep = |s: &Scanner<'a>, start: usize, attrs: &mut AttrsBuf| match prefix {
            None => attrs.push_member(s.member_from(raw_key)),
            Some(_) => attrs.push(prefix, raw_key, s.slice_from(start).trim_start()),
        };
        let start = s.pos();
        let Some(field) = meaning.field else {
            s.skip_value()?;
            keep(s, start, attrs);
            return Ok(());
        };
        // The common cases first, with the variant known where `take` is inlined: the value
        // then never goes through memory.
        match s.peek() {
            Some(b'"') => {
                if let Some(text) = s.plain_string() {
                    if !take(field, Value::Str(Cow::Borrowed(text)), fields, bad_ts) {
                        keep(s, start, attrs);
                    }
                    return Ok(());
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                let text = s.number()?;
                if !take(field, Value::Num(text), fields, bad_ts) {
                    keep(s, start, attrs);
                }
                return Ok(());
            }
            _ => {}
        }
        let value = s.value()?;
        if !take(field, value, fields, bad_ts) {
            keep(s, start, attrs);
        }
        Ok(())
    });
    attrs.keys[slot] = memo;
    walked
}

/// Stores `value` as `field`; false when the value does not fit (it then goes to `attrs`).
/// Inlined into the field loop, so the value stays in registers.
#[inline(always)]
fn take<'a>(
    field: Field,
    value: Value<'a>,
    f: &mut Fields<'a>,
    bad_ts: &mut Option<String>,
) -> bool {
    let text = |v: Value<'a>| -> Option<Cow<'a, str>> {
        match v {
            Value::Str(s) => Some(s),
            Value::Num(n) => Some(Cow::Borrowed(n)),
            _ => None,
        }
    };
    match field {
        Field::Ts => {
            let parsed = match &value {
                Value::Num(n) => timestamp::parse_epoch_text_ms(n),
                Value::Str(s) => {
                    timestamp::parse_rfc3339_ms(s).or_else(|| timestamp::parse_epoch_text_ms(s))
                }
                _ => None,
            };
            match parsed {
                Some(ms) => f.ts_ms = Some(ms),
                None => {
                    *bad_ts = Some(match value {
                        Value::Str(s) => format!("unreadable timestamp {s:?}"),
                        Value::Num(n) => format!("unreadable timestamp {n}"),
                        _ => "timestamp is not a string or number".to_owned(),
                    });
                }
            }
            true
        }
        Field::Level => take_level(&value, f),
        Field::StatusOrLevel => match &value {
            Value::Num(_) => take_status(&value, f),
            Value::Str(s) if s.bytes().all(|c| c.is_ascii_digit()) => take_status(&value, f),
            Value::Str(_) => take_level(&value, f),
            _ => false,
        },
        Field::HttpStatus => take_status(&value, f),
        Field::Latency(unit) => {
            let v = match &value {
                Value::Num(n) => parse_f64(n),
                Value::Str(s) => parse_f64(s.trim_end_matches("ms")),
                _ => None,
            };
            match v.filter(|v| v.is_finite() && *v >= 0.0) {
                Some(v) => {
                    f.latency_ms = Some(unit.to_ms(v));
                    true
                }
                None => false,
            }
        }
        Field::Message => match value {
            Value::Str(s) => {
                f.message = Some(s);
                true
            }
            Value::Raw(r) => {
                f.message = Some(Cow::Borrowed(r));
                true
            }
            Value::Num(n) => {
                f.message = Some(Cow::Borrowed(n));
                true
            }
            _ => false,
        },
        other => {
            let Some(s) = text(value) else {
                return false;
            };
            let slot = match other {
                Field::Tenant => &mut f.tenant,
                Field::Service => &mut f.service,
                Field::TraceId => &mut f.trace_id,
                Field::SpanId => &mut f.span_id,
                Field::HttpMethod => &mut f.http_method,
                Field::HttpPath => &mut f.http_path,
                Field::Host => &mut f.host,
                Field::Region => &mut f.region,
                Field::EventId => &mut f.event_id,
                _ => return false,
            };
            if slot.is_some() {
                return false;
            }
            *slot = Some(s);
            true
        }
    }
}

fn take_level(value: &Value<'_>, f: &mut Fields<'_>) -> bool {
    let level = match value {
        Value::Str(s) => Level::parse(s),
        Value::Num(n) => n.parse().ok().and_then(Level::from_number),
        _ => None,
    };
    f.level = level.or(f.level);
    level.is_some()
}

/// A status code's digits; three plain digits (nearly every code) without `str::parse`.
fn parse_status(text: &str) -> Option<u16> {
    match *text.as_bytes() {
        [a, b, c] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => text.parse().ok(),
    }
}

fn take_status(value: &Value<'_>, f: &mut Fields<'_>) -> bool {
    let code = match value {
        Value::Num(n) => parse_status(n),
        Value::Str(s) => parse_status(s),
        _ => None,
    };
    match code.filter(|c| (100..=599).contains(c)) {
        Some(c) => {
            f.http_status = Some(c);
            true
        }
        None => false,
    }
}

/// The bytes a tenant or service name may hold (ASCII letters, digits, `.`, `_`, `-`), as a
/// table: one load per byte, for a check that runs on every event.
static NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-';
        c += 1;
    }
    table
};

/// Checks a tenant or service name for use in storage keys: 1-64 of `[A-Za-z0-9._-]`, not
/// starting with a dot.
pub fn validate_name(field: &'static str, value: &str) -> Result<(), RejectReason> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && !value.starts_with('.')
        && value.bytes().all(|c| NAME_BYTES[usize::from(c)]);
    if ok {
        Ok(())
    } else {
        Err(RejectReason::InvalidName {
            field,
            value: value.chars().take(80).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(src: &str) -> (Fields<'_>, Option<String>) {
        let mut attrs = AttrsBuf::default();
        let f = normalize_json(src, &mut attrs).expect("valid record");
        (f, attrs.as_json().map(str::to_owned))
    }

    #[test]
    fn takes_aliases_flat_dotted_and_nested() {
        let (f, attrs) = norm(
            r#"{"@timestamp":"2024-05-01T12:34:56.789Z","severity":"ERROR","msg":"boom","service":{"name":"api","version":"1.2"},
                "http":{"method":"GET","target":"/v1/x","status_code":503,"duration_ms":12.5,"user_agent":"curl"},
                "trace.id":"abc","tenant_id":"acme","user":{"id":7}}"#,
        );
        assert_eq!(f.ts_ms, Some(1_714_566_896_789));
        assert_eq!(f.level, Some(Level::Error));
        assert_eq!(f.message.as_deref(), Some("boom"));
        assert_eq!(f.service.as_deref(), Some("api"));
        assert_eq!(f.http_method.as_deref(), Some("GET"));
        assert_eq!(f.http_path.as_deref(), Some("/v1/x"));
        assert_eq!(f.http_status, Some(503));
        assert_eq!(f.latency_ms, Some(12.5));
        assert_eq!(f.trace_id.as_deref(), Some("abc"));
        assert_eq!(f.tenant.as_deref(), Some("acme"));
        let attrs = attrs.expect("unknown fields kept");
        let parsed: serde_json::Value = serde_json::from_str(&attrs).expect("attrs is JSON");
        assert_eq!(parsed["service.version"], "1.2");
        assert_eq!(parsed["http.user_agent"], "curl");
        assert_eq!(parsed["user"]["id"], 7);
    }

    #[test]
    fn escaped_keys_and_values_are_unescaped_before_lookup() {
        let (f, attrs) =
            norm(r#"{"m\u0073g":"a \"quoted\" word","http":{"st\u0061tus_code":503,"x\"y":1}}"#);
        assert_eq!(f.message.as_deref(), Some(r#"a "quoted" word"#));
        assert_eq!(f.http_status, Some(503));
        // Unknown keys keep their original escapes in attrs, which stays valid JSON.
        let attrs = attrs.expect("unknown field kept");
        let parsed: serde_json::Value = serde_json::from_str(&attrs).expect("attrs is JSON");
        assert_eq!(parsed["http.x\"y"], 1);
    }

    #[test]
    fn records_of_alternating_shapes_read_the_same_with_a_reused_buffer() {
        // One buffer remembers the keys of earlier records; the result must not depend on them.
        let records = [
            r#"{"@timestamp":"2024-05-01T12:00:00Z","log.level":"info","message":"a","service":{"name":"api","version":"1"},"tenant":"acme","http":{"status_code":200,"duration_ms":5}}"#,
            r#"{"tenant":"acme","ts":1714564800000,"level":"warn","msg":"b","service":"web","status":503,"latency_ms":7.5,"cache":"miss"}"#,
            r#"{"@timestamp":"2024-05-01T12:00:01Z","log.level":"error","message":"c","service":"db","tenant":"acme","http":{"status":"x"}}"#,
            r#"{"tenant":"acme","ts":"2024-05-01T12:00:02Z","lvl":"debug","msg":"d","service":{"name":"q"},"status":"paid"}"#,
            r#"{"tenant":"acme","ts":1714564800000,"level":"warn","msg":"e","servic":"x","statu":404,"latency_ms_":1}"#,
            r#"{"tenan\u0074":"acme","t\u0073":1714564800000,"level":"info","msg":"f","a_key_longer_than_thirty_two_bytes_in_all":1}"#,
            r#"{"tenant":"acme","ts":1714564800000,"level":"info","msg":"g","a_key_longer_than_thirty_two_bytes_in_all":2}"#,
        ];
        let mut reused = AttrsBuf::default();
        for round in 0..3 {
            for src in records.iter().cycle().skip(round).take(records.len() * 2) {
                let want = norm(src);
                let got = normalize_json(src, &mut reused).expect("valid record");
                assert_eq!(got, want.0, "{src}");
                assert_eq!(reused.as_json().map(str::to_owned), want.1, "{src}");
            }
        }
    }

    #[test]
    fn status_is_http_when_numeric_and_level_otherwise() {
        assert_eq!(norm(r#"{"status":404}"#).0.http_status, Some(404));
        assert_eq!(norm(r#"{"status":"warn"}"#).0.level, Some(Level::Warn));
        let (f, attrs) = norm(r#"{"status":"paid"}"#);
        assert_eq!((f.http_status, f.level), (None, None));
        assert_eq!(attrs.as_deref(), Some(r#"{"status":"paid"}"#));
    }

    #[test]
    fn latency_units_are_converted_to_ms() {
        assert_eq!(norm(r#"{"duration_ns":2500000}"#).0.latency_ms, Some(2.5));
        assert_eq!(norm(r#"{"request_time":0.125}"#).0.latency_ms, Some(125.0));
        assert_eq!(norm(r#"{"latency":"40ms"}"#).0.latency_ms, Some(40.0));
    }

    #[test]
    fn rejects_unreadable_timestamp() {
        let mut attrs = AttrsBuf::default();
        let err = normalize_json(r#"{"ts":"last tuesday","msg":"x"}"#, &mut attrs);
        assert!(
            matches!(err, Err(RejectReason::TimestampOutOfRange { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_record_that_is_not_json() {
        let mut attrs = AttrsBuf::default();
        let err = normalize_json(r#"{"msg": "unterminated}"#, &mut attrs);
        assert!(matches!(err, Err(RejectReason::NotJson { .. })), "{err:?}");
        let err = normalize_json(r#"{"msg":"x"} trailing"#, &mut attrs);
        assert!(matches!(err, Err(RejectReason::NotJson { .. })), "{err:?}");
    }

    #[test]
    fn status_codes_are_read_from_their_digits_only() {
        for (text, want) in [
            ("200", Some(200)),
            ("503", Some(503)),
            ("099", Some(99)),
            ("0200", Some(200)),
            ("20", Some(20)),
            ("2x0", None),
            ("-20", None),
            ("", None),
            ("70000", None),
        ] {
            assert_eq!(parse_status(text), want, "{text:?}");
        }
    }

    #[test]
    fn validates_names_used_in_keys() {
        assert!(validate_name("tenant", "acme-prod_1.eu").is_ok());
        assert!(validate_name("tenant", "AZaz09._-").is_ok());
        for bad in [
            "",
            "a/b",
            "..",
            "x".repeat(65).as_str(),
            "tenant=x",
            "é",
            "a b",
            "a\0",
            "a:b",
            "a@b",
            "[a]",
            "a`b",
            "a{b",
        ] {
            assert!(validate_name("tenant", bad).is_err(), "{bad}");
        }
    }
}
