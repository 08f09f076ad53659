//! The record scanner against `serde_json`, the reference (docs/ARCHITECTURE.md §9).
//!
//! Over generated records and byte-level mutations of them: the same accept/reject verdict on
//! every input; for accepted objects the same values (every member's raw text, as the scanner
//! copies it, parses to the reference's value), and `attrs` re-parses to exactly the fields no
//! canonical column took. Every disagreement found is kept in `tests/json_corpus/` and checked
//! here on every run.

use proptest::prelude::*;
use serde_json::{Map, Value};
use sluice_core::RejectReason;
use sluice_core::decode::json::Scanner;
use sluice_core::normalize::aliases::{Field, container, lookup, lookup_in};
use sluice_core::normalize::{AttrsBuf, normalize_json};

/// Checks one input against the reference; `Err` describes the disagreement.
fn agree(text: &str) -> Result<(), String> {
    let reference = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    let mut attrs = AttrsBuf::default();
    let ours = normalize_json(text, &mut attrs);
    let ours_json = !matches!(ours, Err(RejectReason::NotJson { .. }));
    match (&reference, ours_json) {
        (None, false) => return Ok(()),
        (None, true) => return Err(format!("accepted what serde_json rejects: {ours:?}")),
        (Some(_), false) => return Err(format!("rejected what serde_json accepts: {ours:?}")),
        (Some(_), true) => {}
    }
    let Some(reference) = reference else {
        return Ok(());
    };
    let members = members(text)?;
    // serde_json keeps the last of duplicate keys; compare values only without duplicates.
    if members.len() != reference.len() {
        return Ok(());
    }
    for (key, value) in &members {
        if reference.get(key) != Some(value) {
            return Err(format!(
                "member {key:?}: scanner {value}, reference {:?}",
                reference.get(key)
            ));
        }
    }
    let Ok(fields) = ours else {
        // Valid JSON refused for another reason (an unreadable timestamp): nothing stored.
        return Ok(());
    };
    // The message, where `message` is the only member that names one.
    let messages = reference
        .keys()
        .filter(|k| lookup(k) == Some(Field::Message))
        .count();
    if let (Some(Value::String(want)), 1) = (reference.get("message"), messages)
        && fields.message.as_deref() != Some(want.as_str())
    {
        return Err(format!("message {:?}, want {want:?}", fields.message));
    }
    check_attrs(attrs.as_json(), &reference)
}

/// The top-level members as the scanner walks them, each raw value parsed by the reference.
fn members(text: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let mut bad = None;
    Scanner::new(text)
        .object(0, |key, _, s| {
            let raw = s.skip_value()?;
            match serde_json::from_str::<Value>(raw) {
                Ok(v) => {
                    out.insert(key.to_owned(), v);
                }
                Err(e) => bad = Some(format!("raw value {raw:?} of {key:?} is not JSON: {e}")),
            }
            Ok(())
        })
        .map_err(|e| format!("scanner walk failed after normalize accepted: {e}"))?;
    bad.map_or(Ok(out), Err)
}

/// `attrs` is a JSON object holding exactly the members no canonical field took, with their
/// values: every member whose key is no alias must be there; alias members may be (when their
/// value did not fit the column), and then with their value.
fn check_attrs(attrs: Option<&str>, reference: &Map<String, Value>) -> Result<(), String> {
    let attrs = match attrs {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            _ => return Err(format!("attrs is not a JSON object: {text:?}")),
        },
    };
    let mut required = Map::new();
    let mut allowed = Map::new();
    for (key, value) in reference {
        match (container(key), value) {
            (Some(c), Value::Object(inner)) => {
                for (sub, v) in inner {
                    let target = if lookup_in(Some(c), sub).is_some() {
                        &mut allowed
                    } else {
                        &mut required
                    };
                    target.insert(format!("{key}.{sub}"), v.clone());
                }
            }
            _ if lookup(key).is_some() => {
                allowed.insert(key.clone(), value.clone());
            }
            _ => {
                required.insert(key.clone(), value.clone());
            }
        }
    }
    for (key, want) in &required {
        if attrs.get(key) != Some(want) {
            return Err(format!(
                "attrs[{key:?}] = {:?}, want {want}",
                attrs.get(key)
            ));
        }
    }
    for (key, got) in &attrs {
        match required.get(key).or_else(|| allowed.get(key)) {
            Some(want) if want == got => {}
            _ => {
                return Err(format!(
                    "attrs has {key:?} = {got}, which is no leftover field"
                ));
            }
        }
    }
    Ok(())
}

/// Any JSON value, a few levels deep, with strings that need every kind of escape.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z0-9 ]{0,12}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
        "[\"\\\\/\u{0}-\u{1f}\u{7f}é😀]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys: aliases and containers the normaliser knows, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "ts",
            "message",
            "level",
            "service",
            "tenant",
            "trace_id",
            "status",
            "latency_ms",
            "http",
            "host",
            "event_id",
            "method",
            "path",
            "span",
            "user",
            "attrs",
            "a.b",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z_][a-zA-Z0-9_.]{0,10}",
        any::<String>(),
    ]
}

/// A record: an object with some canonical fields and some others, printed compact or pretty.
fn record() -> impl Strategy<Value = String> {
    (
        prop::collection::btree_map(key(), value(), 0..8),
        "[a-z]{1,8}",
        any::<bool>(),
    )
        .prop_map(|(mut map, message, pretty)| {
            map.insert("tenant".into(), Value::from("acme"));
            map.insert("message".into(), Value::from(message));
            map.remove("ts");
            let object = Value::Object(map.into_iter().collect());
            if pretty {
                serde_json::to_string_pretty(&object)
            } else {
                serde_json::to_string(&object)
            }
            .unwrap_or_default()
        })
}

/// Bytes a mutation inserts: JSON's punctuation, number and escape characters, control bytes.
const INSERTS: &[u8] = b",:\"\\{}[]0123-+.eEu tnfx\t\n\x01\x1f/";

/// A record with one to four byte edits (insert, delete, replace, duplicate a slice); edits
/// that break UTF-8 are dropped.
fn mutated() -> impl Strategy<Value = String> {
    let edit = (
        any::<prop::sample::Index>(),
        0..4u8,
        prop::sample::select(INSERTS),
        1..6usize,
    );
    (record(), prop::collection::vec(edit, 1..5)).prop_map(|(text, edits)| {
        let mut bytes = text.into_bytes();
        for (at, kind, byte, len) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes.insert(i, byte),
                1 => {
                    bytes.remove(i);
                }
                2 => bytes[i] = byte,
                _ => {
                    let end = (i + len).min(bytes.len());
                    let slice = bytes[i..end].to_vec();
                    bytes.splice(i..i, slice);
                }
            }
        }
        String::from_utf8(bytes).unwrap_or_default()
    })
}

/// Texts made of the bytes numbers are made of, as a member and as an array element.
fn number_like() -> impl Strategy<Value = String> {
    ("[-+0-9.eE]{1,8}", any::<bool>()).prop_map(|(n, in_array)| {
        if in_array {
            format!(r#"{{"tenant":"acme","n":[{n}]}}"#)
        } else {
            format!(r#"{{"tenant":"acme","n":{n}}}"#)
        }
    })
}

/// Strings with escapes, valid or not, as a skipped member value and as the message.
fn escape_like() -> impl Strategy<Value = String> {
    (
        "(\\\\[\"\\\\/bfnrtux0-9a-fA-FdD]{1,6}|[a\u{1}\t])*",
        any::<bool>(),
    )
        .prop_map(|(s, as_message)| {
            if as_message {
                format!(r#"{{"tenant":"acme","message":"{s}"}}"#)
            } else {
                format!(r#"{{"tenant":"acme","x":["{s}"]}}"#)
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn generated_records_are_read_as_serde_json_reads_them(text in record()) {
        prop_assert_eq!(agree(&text), Ok(()), "{}", text);
    }

    #[test]
    fn mutated_records_get_serde_json_s_verdict_and_values(text in mutated()) {
        prop_assert_eq!(agree(&text), Ok(()), "{:?}", text);
    }

    #[test]
    fn number_texts_get_serde_json_s_verdict(text in number_like()) {
        prop_assert_eq!(agree(&text), Ok(()), "{}", text);
    }

    #[test]
    fn escapes_get_serde_json_s_verdict(text in escape_like()) {
        prop_assert_eq!(agree(&text), Ok(()), "{:?}", text);
    }
}

/// Every input that ever made the scanner and the reference disagree, one file each.
#[test]
fn every_past_disagreement_now_agrees() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/json_corpus");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        if let Err(why) = agree(text) {
            return Err(format!("{}: {why}\n{text:?}", path.display()).into());
        }
        checked += 1;
    }
    assert!(checked >= 5, "the corpus in {} went missing", dir.display());
    Ok(())
}
