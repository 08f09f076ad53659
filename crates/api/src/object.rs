//! Building record object texts: what each protocol decoder writes its records as, with the
//! keys the normaliser reads (`ts`, `service`, `level`, `message`, `trace_id`, `span_id`,
//! attributes as other keys), for [`crate::intake`] to stamp.

/// One JSON object being written; reused from record to record.
#[derive(Debug, Default)]
pub struct ObjectWriter {
    buf: String,
}

impl ObjectWriter {
    /// Starts a new object (the previous one is dropped).
    pub fn begin(&mut self) {
        self.buf.clear();
        self.buf.push('{');
    }

    fn key(&mut self, key: &str) {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        push_json_str(&mut self.buf, key);
        self.buf.push(':');
    }

    /// `"key": "value"`.
    pub fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        push_json_str(&mut self.buf, value);
    }

    /// `"key": value` for a value that is JSON text already.
    pub fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.buf.push_str(json);
    }

    /// `"key": n`.
    pub fn int(&mut self, key: &str, value: i128) {
        self.key(key);
        self.buf.push_str(&value.to_string());
    }

    /// The object, closed.
    pub fn finish(&mut self) -> &str {
        self.buf.push('}');
        &self.buf
    }
}

/// Appends `s` as a JSON string, quoted and escaped.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A severity number (OTLP's 1-24) as a level name.
pub fn level_of_severity(number: i32) -> Option<&'static str> {
    Some(match number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json_whatever_the_strings_hold() {
        let mut w = ObjectWriter::default();
        w.begin();
        w.str("k\"ey", "a \"q\" \\ \n \u{1} é");
        w.int("n", -5);
        w.raw("o", "{\"x\":[1]}");
        let text = w.finish().to_owned();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(value["k\"ey"], "a \"q\" \\ \n \u{1} é");
        assert_eq!(value["n"], -5);
        assert_eq!(value["o"]["x"][0], 1);
    }
}
