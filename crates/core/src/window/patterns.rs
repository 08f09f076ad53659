//! Log-pattern mining, Drain-style: variable parts of a message are masked (numbers, hex, UUIDs,
//! IPs, paths, quoted values, identifiers with digits) and what is left is the template. A
//! pattern's id is a hash of its service and template, so every shard and every invocation gives
//! the same id to the same pattern, and per-shard pattern counts merge by adding.

/// Masks a message into `out` (cleared first). Returns nothing; `out` holds the template.
pub fn template_into(message: &str, out: &mut String) {
    out.clear();
    let mut rest = trim(message);
    let mut first = true;
    while !rest.is_empty() {
        // Quoted values may contain spaces: mask them whole.
        let quote = rest.as_bytes()[0];
        let (token, tail) = if quote == b'"' || quote == b'\'' {
            match memchr::memchr(quote, &rest.as_bytes()[1..]) {
                Some(end) => (&rest[..end + 2], &rest[end + 2..]),
                None => split_token(rest),
            }
        } else {
            split_token(rest)
        };
        if !first {
            out.push(' ');
        }
        first = false;
        mask_token(token, out);
        rest = tail.trim_start();
        if out.len() > 240 {
            out.push_str(" …");
            break;
        }
    }
}

/// `str::trim`, without scanning when the message starts and ends with visible ASCII (the
/// usual case).
fn trim(s: &str) -> &str {
    let plain = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_graphic());
    let b = s.as_bytes();
    if plain(b.first()) && plain(b.last()) {
        s
    } else {
        s.trim()
    }
}

/// Splits at the first whitespace character (Unicode `White_Space`, as `char::is_whitespace`),
/// scanning bytes and decoding only non-ASCII characters.
fn split_token(s: &str) -> (&str, &str) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c < 0x80 {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
                return (&s[..i], &s[i..]);
            }
            i += 1;
        } else {
            // `i` is on a character boundary: only whole characters are skipped.
            match s[i..].chars().next() {
                Some(ch) if ch.is_whitespace() => return (&s[..i], &s[i..]),
                Some(ch) => i += ch.len_utf8(),
                None => break,
            }
        }
    }
    (s, "")
}

/// Masks one whitespace-separated token, keeping surrounding punctuation and `key=`/`key:`.
fn mask_token(token: &str, out: &mut String) {
    let b = token.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        out.push_str("<*>");
        return;
    }
    // Leading and trailing punctuation stay as they are. The sets are ASCII, so byte positions
    // are character boundaries (a multi-byte character's bytes are never in them).
    let start = b
        .iter()
        .position(|c| !matches!(c, b'(' | b'[' | b'{' | b'<' | b',' | b';'))
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| {
            !matches!(
                c,
                b')' | b']' | b'}' | b'>' | b',' | b';' | b'.' | b':' | b'!' | b'?'
            )
        })
        .map_or(start, |i| i + 1)
        .max(start);
    out.push_str(&token[..start]);
    let core = &token[start..end];
    // key=value and key:value keep the key.
    if let Some(sep) = memchr::memchr2(b'=', b':', core.as_bytes())
        .filter(|&i| i > 0 && i + 1 < core.len() && !core.starts_with('/'))
        && core[..sep]
            .bytes()
            .all(|c| c.is_ascii_alphabetic() || c == b'_' || c == b'-' || c == b'.')
        && !is_ip(core)
    {
        out.push_str(&core[..=sep]);
        out.push_str(mask_word(&core[sep + 1..]));
    } else {
        out.push_str(mask_word(core));
    }
    out.push_str(&token[end..]);
}

/// The mask for a bare word, or the word itself when it is constant text.
fn mask_word(w: &str) -> &str {
    if w.is_empty() {
        return w;
    }
    if w.starts_with('/') && w.len() > 1 {
        return "<path>";
    }
    let b = w.as_bytes();
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        // Every mask below but the UUID needs a decimal digit.
        return if is_uuid(w) { "<uuid>" } else { w };
    }
    if is_uuid(w) {
        return "<uuid>";
    }
    if is_ip(w) {
        return "<ip>";
    }
    if is_number(w) {
        return "<num>";
    }
    if (w.starts_with("0x") && w.len() > 2 && b[2..].iter().all(u8::is_ascii_hexdigit))
        || (w.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit))
    {
        return "<hex>";
    }
    if b.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':' | b'#'))
    {
        return "<*>";
    }
    w
}

fn is_number(w: &str) -> bool {
    let w = w.strip_prefix(['-', '+']).unwrap_or(w);
    let body = w.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '%');
    let suffix = &w[body.len()..];
    !body.is_empty()
        && body.as_bytes()[0].is_ascii_digit()
        && body
            .bytes()
            .all(|c| c.is_ascii_digit() || c == b'.' || c == b',')
        && suffix.len() <= 3
}

fn is_uuid(w: &str) -> bool {
    let b = w.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Four dot-separated groups of one to three digits, with an optional `:port`.
fn is_ip(w: &str) -> bool {
    let host = w
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|c| c.is_ascii_digit()))
        .map_or(w, |(h, _)| h);
    let mut groups = 0;
    for part in host.split('.') {
        groups += 1;
        if groups > 4
            || part.is_empty()
            || part.len() > 3
            || !part.bytes().all(|c| c.is_ascii_digit())
        {
            return false;
        }
    }
    groups == 4
}

/// The stable id of a pattern: 16 hex digits of FNV-1a over service and template.
pub fn pattern_id(service: &str, template: &str) -> String {
    format!("{:016x}", pattern_hash(service, template))
}

/// A fast 64-bit hash of service and template, for finding a pattern in memory (not stable
/// across versions: never store it; [`pattern_hash`] is the stable one).
pub fn lookup_hash(service: &str, template: &str) -> u64 {
    use std::hash::Hasher as _;
    let mut h = rustc_hash::FxHasher::default();
    h.write(service.as_bytes());
    h.write_u8(0xff);
    h.write(template.as_bytes());
    h.finish()
}

/// The 64-bit hash behind [`pattern_id`].
pub fn pattern_hash(service: &str, template: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in service
        .as_bytes()
        .iter()
        .chain(&[0u8])
        .chain(template.as_bytes())
    {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(message: &str) -> String {
        let mut out = String::new();
        template_into(message, &mut out);
        out
    }

    #[test]
    fn masks_variable_parts() {
        assert_eq!(
            t("GET /api/v1/orders/123 completed in 45ms"),
            "GET <path> completed in <num>"
        );
        assert_eq!(
            t("user u-48213 authenticated from 10.0.3.17"),
            "user <*> authenticated from <ip>"
        );
        assert_eq!(
            t("cache hit for key order:771 in region eu-west-1"),
            "cache hit for key order:<num> in region <*>"
        );
        assert_eq!(
            t("payment 9b2f6a1e-0c4d-4e8a-9f3b-2d7c1a0e5b6f failed: 'card declined' (code=51)"),
            "payment <uuid> failed: <*> (code=<num>)"
        );
        assert_eq!(
            t("upstream inventory returned 503 after 812ms"),
            "upstream inventory returned <num> after <num>"
        );
        assert_eq!(
            t("object 0x7ffd3a2b leaked, trace deadbeef42"),
            "object <hex> leaked, trace <hex>"
        );
        assert_eq!(
            t("connecting to 192.168.1.20:5432 as \"app user\""),
            "connecting to <ip> as <*>"
        );
    }

    #[test]
    fn same_template_gives_same_id_across_services_only_when_service_matches() {
        let (a, b) = (t("timeout after 10ms"), t("timeout after 9000ms"));
        assert_eq!(a, b);
        assert_eq!(pattern_id("api", &a), pattern_id("api", &b));
        assert_ne!(pattern_id("api", &a), pattern_id("web", &a));
        assert_eq!(pattern_id("api", &a).len(), 16);
    }

    #[test]
    fn non_ascii_words_and_punctuation_are_kept_whole() {
        assert_eq!(
            t("échec de connexion à la base"),
            "échec de connexion à la base"
        );
        assert_eq!(
            t("Zeitüberschreitung nach 30s für Anfrage"),
            "Zeitüberschreitung nach <num> für Anfrage"
        );
        assert_eq!(t("résultat: réussi."), "résultat: réussi.");
        assert_eq!(t("请求失败 用户 42"), "请求失败 用户 <num>");
    }

    #[test]
    fn unicode_whitespace_separates_tokens() {
        assert_eq!(t("took\u{a0}42ms"), "took <num>");
    }
}
