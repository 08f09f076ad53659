//! A small, fast JSON scanner for log records.
//!
//! It does not build a document: callers walk an object field by field, take the values they
//! know, and copy the raw text of every other value as it is (that is how unknown fields reach
//! `attrs` without being parsed and printed again). Strings borrow from the input unless they
//! contain escapes. The input must already be valid UTF-8; the scanner only checks JSON syntax.
//!
//! It is strict (docs/ARCHITECTURE.md §9): it accepts exactly the texts RFC 8259 allows, at
//! every depth, including inside values it only skips and copies. So whatever it hands out as
//! raw text is valid JSON. `crates/core/tests/json_differential.rs` proves the verdicts and
//! values against `serde_json`.

use std::borrow::Cow;

/// Nesting deeper than this is rejected instead of walked.
pub const MAX_DEPTH: usize = 64;

/// A JSON syntax error with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {offset}")]
pub struct JsonError {
    pub what: &'static str,
    pub offset: usize,
}

/// A scalar value, or the raw text of a container.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Str(Cow<'a, str>),
    /// The number's text, unparsed.
    Num(&'a str),
    Bool(bool),
    Null,
    /// An object or array, as raw JSON text.
    Raw(&'a str),
}

/// A cursor over one JSON text.
#[derive(Debug)]
pub struct Scanner<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    /// Current byte offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Moves to `pos` (clamped to the input), e.g. to resynchronise after an error.
    pub fn set_pos(&mut self, pos: usize) {
        self.pos = pos.min(self.src.len());
    }

    /// Skips `n` bytes.
    pub fn advance(&mut self, n: usize) {
        self.set_pos(self.pos + n);
    }

    /// The input from `start` to the current position.
    pub fn slice_from(&self, start: usize) -> &'a str {
        &self.src[start..self.pos]
    }

    /// The whole member whose raw key (as [`Scanner::object_memo`] handed it out: a slice of
    /// this scanner's input) is `raw_key`, from the key's opening quote to the current
    /// position (the end of its value): `"key":value` as it stands in the input, whitespace
    /// included. One copy of it puts the member into another object.
    pub fn member_from(&self, raw_key: &'a str) -> &'a str {
        let key_at = (raw_key.as_ptr() as usize).wrapping_sub(self.src.as_ptr() as usize);
        debug_assert!(key_at >= 1 && key_at <= self.pos, "a key of another input");
        self.src
            .get(key_at.saturating_sub(1)..self.pos)
            .unwrap_or_default()
    }

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn err(&self, what: &'static str) -> JsonError {
        JsonError {
            what,
            offset: self.pos,
        }
    }

    /// Skips JSON whitespace.
    #[inline]
    pub fn skip_ws(&mut self) {
        let b = self.bytes();
        while self.pos < b.len() && matches!(b[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    /// The next non-whitespace byte, without consuming it. Compact JSON has none to skip, so
    /// that is checked first.
    #[inline(always)]
    pub fn peek(&mut self) -> Option<u8> {
        match self.bytes().get(self.pos) {
            Some(&c) if c > b' ' => Some(c),
            _ => {
                self.skip_ws();
                self.bytes().get(self.pos).copied()
            }
        }
    }

    /// True when only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    #[inline]
    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// Enters the object or array at the position (`open` is `{` or `[`); true when it is empty,
    /// and then also left.
    fn open(&mut self, depth: usize, open: u8, close: u8) -> Result<bool, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        let what = if open == b'{' {
            "expected '{'"
        } else {
            "expected '['"
        };
        self.expect(open, what)?;
        let empty = self.peek() == Some(close);
        if empty {
            self.pos += 1;
        }
        Ok(empty)
    }

    /// Steps past the comma after a member or element (false), or past the object's or array's
    /// `close` (true).
    #[inline(always)]
    fn after_item(&mut self, close: u8, what: &'static str) -> Result<bool, JsonError> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(self.err(what)),
        }
    }

    /// Walks an object, calling `field(key, raw_key, scanner)` for each member; the callback must
    /// consume the member's value (with [`Scanner::value`], [`Scanner::skip_value`], or
    /// [`Scanner::object`] for a nested object). `raw_key` is the key's text between its quotes,
    /// escapes intact.
    pub fn object(
        &mut self,
        depth: usize,
        mut field: impl FnMut(&str, &'a str, &mut Scanner<'a>) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        if self.open(depth, b'{', b'}')? {
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a quoted key"));
            }
            let raw_start = self.pos + 1;
            let escaped;
            let key = match self.plain_string() {
                Some(key) => key,
                None => {
                    escaped = self.string_with_escapes()?;
                    &escaped
                }
            };
            let raw_key = &self.src[raw_start..self.pos - 1];
            self.expect(b':', "expected ':' after key")?;
            field(key, raw_key, self)?;
            if self.after_item(b'}', "expected ',' or '}'")? {
                return Ok(());
            }
        }
    }

    /// [`Scanner::object`] for objects whose keys repeat from record to record: the key at each
    /// position is first compared with the one `memo` remembers there, and when it is the same
    /// the key is neither searched for nor passed to `derive` again; the callback gets the
    /// value `derive` gave it the first time. Keys with escapes, and keys longer than
    /// [`MEMO_KEY_MAX`], are always read and derived.
    pub fn object_memo<T: Copy>(
        &mut self,
        depth: usize,
        memo: &mut KeyMemo<T>,
        derive: impl Fn(&str) -> T,
        mut field: impl FnMut(&str, &'a str, T, &mut Scanner<'a>) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        if self.open(depth, b'{', b'}')? {
            return Ok(());
        }
        let mut position = 0;
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a quoted key"));
            }
            let raw_start = self.pos + 1;
            let escaped;
            let (key, raw_key, value) = match memo.recall(position, self.src, raw_start) {
                Some((key, value)) => {
                    self.pos = raw_start + key.len() + 1;
                    (key, key, value)
                }
                None => {
                    let (key, value) = match self.plain_string() {
                        Some(key) => {
                            let value = derive(key);
                            memo.remember(position, key, value);
                            (key, value)
                        }
                        None => {
                            escaped = self.string_with_escapes()?;
                            (&*escaped, derive(&escaped))
                        }
                    };
                    (key, &self.src[raw_start..self.pos - 1], value)
                }
            };
            self.expect(b':', "expected ':' after key")?;
            field(key, raw_key, value, self)?;
            position += 1;
            if self.after_item(b'}', "expected ',' or '}'")? {
                return Ok(());
            }
        }
    }

    /// Walks an array, calling `element(scanner)` at each element; the callback must consume it
    /// (as [`Scanner::object`]'s callback consumes a member's value).
    pub fn array(
        &mut self,
        depth: usize,
        mut element: impl FnMut(&mut Scanner<'a>) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        if self.open(depth, b'[', b']')? {
            return Ok(());
        }
        loop {
            element(self)?;
            if self.after_item(b']', "expected ',' or ']'")? {
                return Ok(());
            }
        }
    }

    /// Reads any value; containers come back as [`Value::Raw`]. Always inlined: returned
    /// through memory, the value cost a store-forwarding stall per field.
    #[inline(always)]
    pub fn value(&mut self) -> Result<Value<'a>, JsonError> {
        match self.peek() {
            Some(b'"') => match self.plain_string() {
                Some(s) => Ok(Value::Str(Cow::Borrowed(s))),
                None => self.string_with_escapes().map(Value::Str),
            },
            Some(b'{' | b'[') => {
                let start = self.pos;
                self.skip_container()?;
                Ok(Value::Raw(self.slice_from(start)))
            }
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => Ok(Value::Num(self.number()?)),
            Some(_) => Err(self.err("unexpected character")),
            None => Err(self.err("unexpected end of input")),
        }
    }

    /// Skips any value and returns its raw text.
    pub fn skip_value(&mut self) -> Result<&'a str, JsonError> {
        self.skip_ws();
        let start = self.pos;
        match self.bytes().get(self.pos) {
            Some(b'"') => {
                self.skip_string()?;
            }
            Some(b'{' | b'[') => self.skip_container()?,
            _ => {
                self.value()?;
            }
        }
        Ok(self.slice_from(start))
    }

    fn literal<T>(&mut self, word: &'static str, value: T) -> Result<T, JsonError> {
        if self.src[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    /// Reads the number at the position (which must start with `-` or a digit) as its text:
    /// exactly RFC 8259's grammar, `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, and
    /// not followed by another byte a number could be made of (`007`, `1-2`, `1.2.3`).
    pub fn number(&mut self) -> Result<&'a str, JsonError> {
        let start = self.pos;
        let b = self.bytes();
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = start + usize::from(b.get(start) == Some(&b'-'));
        i = match b.get(i) {
            Some(b'0') => i + 1,
            Some(b'1'..=b'9') => digits(i + 1),
            _ => return Err(self.number_error(i)),
        };
        if b.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            if end == i + 1 {
                return Err(self.number_error(end));
            }
            i = end;
        }
        let int_digits = i - start;
        let mut exponent = false;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            exponent = true;
            i += 1 + usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
            let end = digits(i);
            if end == i {
                return Err(self.number_error(end));
            }
            i = end;
        }
        if b.get(i).is_some_and(|&c| NUMBER_BYTES[usize::from(c)]) {
            return Err(self.number_error(i));
        }
        self.pos = i;
        let text = self.slice_from(start);
        // Only an exponent or more than 300 digits can take a number past f64's range, which
        // serde_json (and most readers of `attrs`) refuse: so do we.
        if (exponent || int_digits > 300) && text.parse::<f64>().is_ok_and(f64::is_infinite) {
            self.pos = start;
            return Err(self.err("number out of range"));
        }
        Ok(text)
    }

    #[cold]
    fn number_error(&mut self, at: usize) -> JsonError {
        self.pos = at;
        self.err("invalid number")
    }

    /// Skips a string, escapes included (each checked), leaving the position after its closing
    /// quote.
    fn skip_string(&mut self) -> Result<(), JsonError> {
        let b = self.bytes();
        self.pos += 1;
        loop {
            let Some(at) = find_string_special(b, self.pos) else {
                self.pos = b.len();
                return Err(self.err("unterminated string"));
            };
            self.pos = at;
            match b[at] {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.escape()?;
                }
                _ => return Err(self.err("control character in string")),
            }
        }
    }

    /// The string at the position (which must be its opening quote) when it has no escapes,
    /// and the position moves past it; `None` leaves the position alone. Returns a plain `&str`
    /// (two registers), the fast path of keys and values.
    #[inline(always)]
    pub fn plain_string(&mut self) -> Option<&'a str> {
        let b = self.bytes();
        if b.get(self.pos) != Some(&b'"') {
            return None;
        }
        let start = self.pos + 1;
        let end = find_string_special(b, start)?;
        if b[end] != b'"' {
            return None;
        }
        #[allow(unsafe_code)]
        // SAFETY: `start` follows an ASCII quote and `end` is one (`start <= end <= len`), so
        // both are char boundaries of `src`. Checked slicing cost an out-of-line call per string.
        let text = unsafe { self.src.get_unchecked(start..end) };
        self.pos = end + 1;
        Some(text)
    }

    /// Reads a string, borrowing it when it has no escapes (inlined, as [`Scanner::value`]).
    #[inline(always)]
    pub fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a string"));
        }
        match self.plain_string() {
            Some(text) => Ok(Cow::Borrowed(text)),
            None => self.string_with_escapes(),
        }
    }

    /// The string at the position (its opening quote) that [`Scanner::plain_string`] could not
    /// borrow: unescaped into an owned copy, or an error when it is not terminated.
    #[cold]
    #[inline(never)]
    fn string_with_escapes(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.pos += 1;
        let mut out = String::new();
        self.unescape_into(&mut out)?;
        Ok(Cow::Owned(out))
    }

    /// Continues a string at an escape, appending to `out` until the closing quote.
    fn unescape_into(&mut self, out: &mut String) -> Result<(), JsonError> {
        let b = self.bytes();
        loop {
            let Some(at) = find_string_special(b, self.pos) else {
                self.pos = b.len();
                return Err(self.err("unterminated string"));
            };
            out.push_str(&self.src[self.pos..at]);
            self.pos = at;
            match b[at] {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => out.push(self.escape()?),
                _ => return Err(self.err("control character in string")),
            }
        }
    }

    /// Reads the escape at the position (its backslash) and steps past it: one of the eight
    /// single-character escapes, or `\uXXXX` (a high surrogate must be followed by an escaped
    /// low one; a lone surrogate is refused, as `serde_json` refuses it).
    fn escape(&mut self) -> Result<char, JsonError> {
        let b = self.bytes();
        let Some(&esc) = b.get(self.pos + 1) else {
            self.pos = b.len();
            return Err(self.err("unterminated escape"));
        };
        self.pos += 2;
        let c = match esc {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                if (0xD800..0xDC00).contains(&hi) {
                    if b.get(self.pos..self.pos + 2) != Some(b"\\u") {
                        return Err(self.err("lone surrogate"));
                    }
                    self.pos += 2;
                    let lo = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(self.err("invalid surrogate pair"));
                    }
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                        .ok_or_else(|| self.err("invalid \\u escape"))?
                } else {
                    char::from_u32(hi).ok_or_else(|| self.err("lone surrogate"))?
                }
            }
            _ => {
                self.pos -= 1;
                return Err(self.err("invalid escape"));
            }
        };
        Ok(c)
    }

    /// Four hex digits (exactly: no sign, no fewer).
    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .bytes()
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let mut v = 0;
        for &d in digits {
            let nibble = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.err("invalid \\u escape")),
            };
            v = v << 4 | u32::from(nibble);
        }
        self.pos += 4;
        Ok(v)
    }

    /// Skips an object or array without recursion, checking it as strictly as the rest: every
    /// key, colon, comma and value where the grammar puts them, at every depth.
    fn skip_container(&mut self) -> Result<(), JsonError> {
        // The closing bracket of each open container, innermost last.
        let mut stack = [0u8; MAX_DEPTH];
        let mut depth = 0usize;
        // At a value.
        'value: loop {
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    if depth == MAX_DEPTH {
                        return Err(self.err("nesting too deep"));
                    }
                    let close = if open == b'{' { b'}' } else { b']' };
                    stack[depth] = close;
                    depth += 1;
                    self.pos += 1;
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        depth -= 1;
                    } else {
                        if close == b'}' {
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => self.skip_string()?,
                Some(b't') => self.literal("true", ())?,
                Some(b'f') => self.literal("false", ())?,
                Some(b'n') => self.literal("null", ())?,
                Some(b'-' | b'0'..=b'9') => self.number().map(drop)?,
                Some(_) => return Err(self.err("unexpected character")),
                None => return Err(self.err("unexpected end of input")),
            }
            // After a value: a comma and the next member or element, or closing brackets.
            while depth > 0 {
                let close = stack[depth - 1];
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if close == b'}' {
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                    Some(c) if c == close => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    Some(_) if close == b'}' => return Err(self.err("expected ',' or '}'")),
                    Some(_) => return Err(self.err("expected ',' or ']'")),
                    None => return Err(self.err("unterminated object or array")),
                }
            }
            return Ok(());
        }
    }

    /// Skips a member's key and its colon.
    fn member_key(&mut self) -> Result<(), JsonError> {
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a quoted key"));
        }
        self.skip_string()?;
        self.expect(b':', "expected ':' after key")
    }
}

/// Keys longer than this are not remembered by a [`KeyMemo`].
pub const MEMO_KEY_MAX: usize = 32;
/// Members per object a [`KeyMemo`] remembers by position.
const MEMO_POSITIONS: usize = 64;
/// Buckets of a [`KeyMemo`]'s table (a power of two).
const MEMO_BUCKETS: usize = 256;

/// The keys of an object's members, as [`Scanner::object_memo`] saw them, each with what the
/// caller derived from it. Two ways to find one: by the key's first eight bytes, hashed to a
/// bucket of two keys, so that records whose services order and choose their keys each their
/// own way find them without scanning and deriving again; then, for a key whose bucket other
/// keys took, by position (the last two different keys at each position).
///
/// Hashing the first eight bytes rather than the first two matters: keys of one meaning in
/// several dialects start alike (`trace.id`, `trace_id`, `traceId`, `traceid`; `service`,
/// `serviceName`, `severity`), and with buckets chosen by two bytes records of different
/// services took turns pushing each other's keys out.
#[derive(Debug, Clone)]
pub struct KeyMemo<T> {
    slots: Vec<[Option<MemoKey<T>>; 2]>,
    table: Vec<[Option<MemoKey<T>>; 2]>,
}

impl<T> Default for KeyMemo<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            table: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct MemoKey<T> {
    /// The key's first eight bytes ([`key_head`]).
    head: u64,
    len: u8,
    text: [u8; MEMO_KEY_MAX],
    value: T,
}

impl<T> MemoKey<T> {
    /// Whether the input at `at`, whose [`key_head`] is `head` and `quote`, is this key and
    /// its closing quote.
    #[inline(always)]
    fn is_at(&self, b: &[u8], at: usize, (head, quote): (u64, usize)) -> bool {
        let n = usize::from(self.len);
        if self.head != head {
            return false;
        }
        if n < 8 {
            // The same bytes up to a quote where this key's closing quote is.
            return quote == n;
        }
        quote == 8
            && b.get(at + 8..=at + n).is_some_and(|c| {
                c[n - 8] == b'"' && same_short_bytes(&c[..n - 8], &self.text[8..n])
            })
    }
}

/// The first eight bytes of the input at `at` (zeros past its end) up to the first quote
/// among them, as an integer, and where that quote is (8 when there is none). A key shorter
/// than eight bytes is then all in the integer, its closing quote's offset being its length.
/// `None` at the end of the input.
#[inline(always)]
fn key_head(b: &[u8], at: usize) -> Option<(u64, usize)> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    let w = match b.get(at..at + 8) {
        Some(eight) => word::<8>(eight, 0),
        None => {
            let rest = b.get(at..).filter(|r| !r.is_empty())?;
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            u64::from_le_bytes(buf)
        }
    };
    let q = w ^ QUOTES;
    // The lowest mark is the first quote exactly (see `find_string_special`).
    let quotes = q.wrapping_sub(ONES) & !q & HIGH;
    let quote = (quotes.trailing_zeros() / 8) as usize;
    let kept = if quote == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * quote)) - 1
    };
    Some((w & kept, quote))
}

/// [`key_head`] of a plain key (one without a quote) as it stands in the input: followed by
/// its closing quote.
fn key_head_of(key: &[u8]) -> (u64, usize) {
    let mut buf = [0u8; 9];
    let n = key.len().min(8);
    buf[..n].copy_from_slice(&key[..n]);
    buf[n] = b'"';
    key_head(&buf, 0).unwrap_or((0, 0))
}

/// The table bucket of a key's head.
#[inline(always)]
fn memo_bucket(head: u64) -> usize {
    (head.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & (MEMO_BUCKETS - 1)
}

/// The remembered key of `pair` that the input at `at` is, if any.
#[inline(always)]
fn find_in<'k, T>(
    pair: &'k [Option<MemoKey<T>>; 2],
    b: &[u8],
    at: usize,
    head: (u64, usize),
) -> Option<&'k MemoKey<T>> {
    match &pair[0] {
        Some(k) if k.is_at(b, at, head) => Some(k),
        _ => pair[1].as_ref().filter(|k| k.is_at(b, at, head)),
    }
}

/// Puts `key` first in `pair`, the older one moving second and the second giving way.
fn push_front<T>(pair: &mut [Option<MemoKey<T>>; 2], key: MemoKey<T>) {
    pair[1] = pair[0].take();
    pair[0] = Some(key);
}

impl<T: Copy> KeyMemo<T> {
    /// The key at `position` when the input at `at` (just after its opening quote) is one of
    /// the remembered keys and its closing quote.
    #[inline(always)]
    fn recall<'a>(&self, position: usize, src: &'a str, at: usize) -> Option<(&'a str, T)> {
        let b = src.as_bytes();
        let head = key_head(b, at)?;
        let by_table = self
            .table
            .get(memo_bucket(head.0))
            .and_then(|pair| find_in(pair, b, at, head));
        let slot = match by_table {
            Some(k) => k,
            None => find_in(self.slots.get(position)?, b, at, head)?,
        };
        let end = at + usize::from(slot.len);
        #[allow(unsafe_code)]
        // SAFETY: `is_at` found the key's bytes at `at..end` and a quote at `end`. The key was a
        // whole `str`, so its first byte starts a char (`at` is a boundary), and the quote is
        // ASCII (so is `end`).
        let key = unsafe { src.get_unchecked(at..end) };
        Some((key, slot.value))
    }

    /// Keeps `key` in its table bucket and at `position`, the oldest of each giving way.
    fn remember(&mut self, position: usize, key: &str, value: T) {
        if key.len() > MEMO_KEY_MAX {
            return;
        }
        let mut text = [0; MEMO_KEY_MAX];
        text[..key.len()].copy_from_slice(key.as_bytes());
        let head = key_head_of(key.as_bytes());
        let memo = MemoKey {
            head: head.0,
            len: key.len() as u8,
            text,
            value,
        };
        if position < MEMO_POSITIONS {
            if self.slots.len() <= position {
                self.slots.resize_with(position + 1, || [None, None]);
            }
            push_front(&mut self.slots[position], memo);
        }
        if self.table.is_empty() {
            self.table.resize_with(MEMO_BUCKETS, || [None, None]);
        }
        push_front(&mut self.table[memo_bucket(head.0)], memo);
    }
}

/// Equality of two short byte strings (keys, names) without a call to `memcmp`: two
/// (possibly overlapping) loads from each end cover up to 16 bytes, four up to 32, a word at
/// a time up to 64 (attrs objects interned at write time are often longer than 32).
#[inline(always)]
pub fn same_short_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0..4 => a == b,
        4..8 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        8..=16 => word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8),
        17..=32 => {
            word::<8>(a, 0) == word::<8>(b, 0)
                && word::<8>(a, 8) == word::<8>(b, 8)
                && word::<8>(a, n - 16) == word::<8>(b, n - 16)
                && word::<8>(a, n - 8) == word::<8>(b, n - 8)
        }
        33..=64 => {
            // Whole words from the front, then the last eight bytes (overlapping the rest).
            let mut at = 0;
            while at + 8 < n {
                if word::<8>(a, at) != word::<8>(b, at) {
                    return false;
                }
                at += 8;
            }
            word::<8>(a, n - 8) == word::<8>(b, n - 8)
        }
        _ => a == b,
    }
}

/// `N` bytes of `s` from `at` as an integer (the caller checks that they exist).
#[inline(always)]
fn word<const N: usize>(s: &[u8], at: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf[..N].copy_from_slice(&s[at..at + N]);
    u64::from_le_bytes(buf)
}

/// The first byte at or after `from` that ends a string's plain run: `"`, `\\`, or a control
/// character (below 0x20, which a JSON string may not hold raw). Keys and most values are
/// short, so the first bytes are searched sixteen at a time in a vector register (SSE2 on
/// x86-64, NEON on arm64: both always present, no set-up), the tail eight at a time in a
/// general register (SWAR), the last few one at a time.
#[inline(always)]
fn find_string_special(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 16 <= b.len() {
        let Ok(chunk) = <&[u8; 16]>::try_from(&b[i..i + 16]) else {
            break;
        };
        if let Some(at) = vector::first_string_special(chunk) {
            return Some(i + at);
        }
        i += 16;
    }
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    const SPACES: u64 = ONES * b' ' as u64;
    while i + 8 <= b.len() {
        let Ok(word) = <[u8; 8]>::try_from(&b[i..i + 8]) else {
            break;
        };
        let w = u64::from_le_bytes(word);
        let (q, s) = (w ^ QUOTES, w ^ BACKSLASHES);
        // Each term marks the lowest matching byte exactly (higher marks may be false
        // positives), so the lowest mark of any is the first match: a zero byte of `q` or `s`,
        // or a byte of `w` below 0x20 (`w - 0x20` borrows into its high bit, which `w` lacks).
        let hits =
            (q.wrapping_sub(ONES) & !q | s.wrapping_sub(ONES) & !s | w.wrapping_sub(SPACES) & !w)
                & HIGH;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < b' ')
        .map(|off| i + off)
}

/// The first `"`, `\\` or control character of sixteen bytes, with the vector unit every CPU
/// of the target has.
mod vector {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub fn first_string_special(chunk: &[u8; 16]) -> Option<usize> {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        #[allow(unsafe_code)]
        // SAFETY: SSE2 is part of x86-64, so its intrinsics run on every CPU of the target; the
        // unaligned load reads exactly `chunk`'s 16 bytes.
        let mask = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            // Unsigned `v <= 0x1f` is `min(v, 0x1f) == v` (SSE2 has no unsigned compare).
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
            let hits = _mm_or_si128(
                _mm_or_si128(
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)),
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)),
                ),
                control,
            );
            // One bit per byte, byte 0 lowest.
            _mm_movemask_epi8(hits) as u32
        };
        (mask != 0).then(|| mask.trailing_zeros() as usize)
    }

    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    pub fn first_string_special(chunk: &[u8; 16]) -> Option<usize> {
        use std::arch::aarch64::{
            vceqq_u8, vcltq_u8, vdupq_n_u8, vget_lane_u64, vld1q_u8, vorrq_u8, vreinterpret_u64_u8,
            vreinterpretq_u16_u8, vshrn_n_u16,
        };
        #[allow(unsafe_code)]
        // SAFETY: NEON is part of AArch64, so its intrinsics run on every CPU of the target;
        // the load reads exactly `chunk`'s 16 bytes.
        let mask = unsafe {
            let v = vld1q_u8(chunk.as_ptr());
            let hits = vorrq_u8(
                vorrq_u8(
                    vceqq_u8(v, vdupq_n_u8(b'"')),
                    vceqq_u8(v, vdupq_n_u8(b'\\')),
                ),
                vcltq_u8(v, vdupq_n_u8(b' ')),
            );
            // Each 16-bit lane shifted right by 4 and narrowed keeps the high half of its low
            // byte and the low half of its high byte: four bits per byte, byte 0 lowest.
            let nibbles = vshrn_n_u16::<4>(vreinterpretq_u16_u8(hits));
            vget_lane_u64::<0>(vreinterpret_u64_u8(nibbles))
        };
        (mask != 0).then(|| (mask.trailing_zeros() / 4) as usize)
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    #[inline(always)]
    pub fn first_string_special(chunk: &[u8; 16]) -> Option<usize> {
        chunk
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < b' ')
    }
}

/// The bytes a JSON number's text is made of, as a table: one load per byte.
static NUMBER_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = b'0';
    while c <= b'9' {
        table[c as usize] = true;
        c += 1;
    }
    table[b'-' as usize] = true;
    table[b'+' as usize] = true;
    table[b'.' as usize] = true;
    table[b'e' as usize] = true;
    table[b'E' as usize] = true;
    table
};

/// Parses a JSON number's text as f64 (exactly, like `str::parse`).
///
/// Latencies and the like (`61.957`) take a short path: up to 15 digits, at most one point
/// and no exponent make an integer below 2^53 and a power of ten up to 10^15, both exact as
/// f64, so one division gives the correctly rounded result (Clinger's fast path). Anything
/// else goes to lexical.
pub fn parse_f64(text: &str) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let b = text.as_bytes();
    let (negative, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let mut mantissa = 0u64;
    let mut count = 0usize;
    let mut point = None;
    for (i, &c) in digits.iter().enumerate() {
        match c {
            b'0'..=b'9' if count < 15 => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                count += 1;
            }
            b'.' if point.is_none() && i > 0 && i + 1 < digits.len() => point = Some(i),
            _ => return lexical_core::parse::<f64>(b).ok(),
        }
    }
    if count == 0 {
        return lexical_core::parse::<f64>(b).ok();
    }
    let scale = point.map_or(0, |p| digits.len() - p - 1);
    let value = mantissa as f64 / POW10[scale];
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(src: &str) -> Result<Vec<(String, Value<'_>)>, JsonError> {
        let mut out = Vec::new();
        Scanner::new(src).object(0, |k, _, s| {
            out.push((k.to_owned(), s.value()?));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn reads_scalars_and_keeps_containers_raw() -> Result<(), JsonError> {
        let f = fields(r#"{"a":"x","b":-1.5e3,"c":true,"d":null,"e":{"k":[1,{"z":"}"}]}}"#)?;
        assert_eq!(f[0].1, Value::Str(Cow::Borrowed("x")));
        assert_eq!(f[1].1, Value::Num("-1.5e3"));
        assert_eq!(f[2].1, Value::Bool(true));
        assert_eq!(f[3].1, Value::Null);
        assert_eq!(f[4].1, Value::Raw(r#"{"k":[1,{"z":"}"}]}"#));
        Ok(())
    }

    #[test]
    fn unescapes_strings_including_surrogate_pairs() -> Result<(), JsonError> {
        let f = fields(r#"{"m":"a\"b\\c\n\u00e9\ud83d\ude00"}"#)?;
        assert_eq!(f[0].1, Value::Str(Cow::Owned("a\"b\\c\né😀".into())));
        Ok(())
    }

    #[test]
    fn finds_the_first_quote_backslash_or_control_character_at_every_offset_and_length() {
        for len in 0..160 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0x00, 0x0a, 0x1f] {
                    // Bytes one bit away from the specials, the first byte past the control
                    // range (space), DEL, and UTF-8 high bytes (negative as signed bytes).
                    let mut text: Vec<u8> = (0..len)
                        .map(|i| [b'a', b'#', b'!', b']', b' ', 0x7f, 0xa2, 0xdc, 0xff][i % 9])
                        .collect();
                    if at < len {
                        text[at] = special;
                    }
                    let want = (at < len).then_some(at);
                    assert_eq!(find_string_special(&text, 0), want, "{len} {at} {special}");
                    if at > 0 && at < len {
                        text[len - 1] = b'"';
                        assert_eq!(find_string_special(&text, 1), Some(at), "{len} {at}");
                    }
                }
            }
        }
        assert_eq!(find_string_special(b"ab", 5), None);
    }

    #[test]
    fn rejects_what_rfc_8259_does_not_allow_at_every_depth() {
        // Each is wrong in a value the scanner only skips (copied to `attrs` as it is), as a
        // member value, inside an array and inside a nested object.
        for (bad, what) in [
            ("1-2", "invalid number"),
            ("007", "invalid number"),
            ("-01", "invalid number"),
            ("1.2.3", "invalid number"),
            ("+1", "unexpected character"),
            (".5", "unexpected character"),
            ("1e+-5", "invalid number"),
            ("0x1f", "expected ',' or"),
            ("[1,,2]", "unexpected character"),
            ("[1,]", "unexpected character"),
            ("[,1]", "unexpected character"),
            (r#"{"k":1,}"#, "expected a quoted key"),
            (r#"{"k" 1}"#, "expected ':' after key"),
            (r#"{"k":1 "j":2}"#, "expected ',' or '}'"),
            (r#"{1:2}"#, "expected a quoted key"),
            ("[1 2]", "expected ',' or ']'"),
            ("[}", "unexpected character"),
            ("[1}", "expected ',' or ']'"),
            (r#""bad \q escape""#, "invalid escape"),
            (r#""\u12g4""#, "invalid \\u escape"),
            (r#""\u+abc""#, "invalid \\u escape"),
            (r#""\udc00""#, "lone surrogate"),
            (r#""\ud800\u0041""#, "invalid surrogate pair"),
            ("\"tab\there\"", "control character in string"),
            ("\"nul\u{0}\"", "control character in string"),
            ("tru", "invalid literal"),
            ("nul", "invalid literal"),
            ("1e309", "number out of range"),
            ("-1000000000e0000300", "number out of range"),
        ] {
            for wrapped in [
                format!(r#"{{"a":{bad}}}"#),
                format!(r#"{{"a":[0,{bad}]}}"#),
                format!(r#"{{"a":{{"b":{{"c":{bad}}}}}}}"#),
            ] {
                let err = fields(&wrapped).err();
                assert!(
                    err.as_ref().is_some_and(|e| e.what.starts_with(what)),
                    "{wrapped}: {err:?}, want {what}"
                );
                assert!(serde_json::from_str::<serde_json::Value>(&wrapped).is_err());
            }
        }
    }

    #[test]
    fn rejects_control_characters_and_bad_escapes_in_keys_and_read_values() {
        for bad in [
            "{\"k\u{1}\":1}",
            "{\"k\":\"a\u{1f}b\"}",
            r#"{"k\x":1}"#,
            r#"{"k":"a\xb"}"#,
        ] {
            assert!(fields(bad).is_err(), "{bad:?}");
        }
        // DEL and everything from a space up is allowed raw.
        assert!(fields("{\"k\":\"a\u{7f} b\u{e9}\"}").is_ok());
    }

    #[test]
    fn accepts_every_number_form_rfc_8259_allows() -> Result<(), JsonError> {
        for good in [
            "0",
            "-0",
            "0.0",
            "-0.5",
            "10",
            "1e5",
            "1E5",
            "1e+5",
            "1e-5",
            "0e0",
            "-1.25E-07",
        ] {
            for wrapped in [
                format!(r#"{{"n":{good}}}"#),
                format!(r#"{{"n":[{good},{good}]}}"#),
            ] {
                fields(&wrapped)?;
            }
        }
        Ok(())
    }

    #[test]
    fn rejects_malformed_json_with_offset() {
        for bad in [
            r#"{"a":}"#,
            r#"{"a":1"#,
            r#"{"a" 1}"#,
            r#"{"a":"x}"#,
            r#"{"a":[1,2}"#,
            r#"{"a":tru}"#,
            r#"{a:1}"#,
            r#"{"a":"\ud800"}"#,
        ] {
            assert!(fields(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn numbers_keep_their_text_and_must_end_in_a_digit() -> Result<(), JsonError> {
        for good in [
            "0",
            "-7",
            "61.957",
            "1e5",
            "-1.5E+3",
            "2e-8",
            "1700000000123",
        ] {
            let text = format!(r#"{{"n":{good},"x":1}}"#);
            let f = fields(&text)?;
            assert_eq!(f[0].1, Value::Num(good), "{good}");
        }
        for bad in ["-", "1.", "2e", "3E+", "4e-", "-."] {
            let text = format!(r#"{{"n":{bad}}}"#);
            let err = fields(&text).expect_err(bad);
            assert!(err.to_string().contains("invalid number"), "{bad}: {err}");
        }
        Ok(())
    }

    #[test]
    fn walks_array_elements_and_rejects_malformed_arrays() -> Result<(), JsonError> {
        let mut seen = Vec::new();
        let mut scanner = Scanner::new(r#" [ 1 , "two", {"x":[3]} , [] ] "#);
        scanner.array(0, |s| {
            seen.push(s.skip_value()?.to_owned());
            Ok(())
        })?;
        assert!(scanner.at_end());
        assert_eq!(seen, ["1", "\"two\"", r#"{"x":[3]}"#, "[]"]);
        Scanner::new("[]").array(0, |_| panic!("an empty array has no element"))?;
        for (bad, what) in [
            ("{}", "expected '['"),
            ("[1 2]", "expected ',' or ']'"),
            ("[1,", "unexpected end of input"),
        ] {
            let err = Scanner::new(bad).array(0, |s| s.value().map(drop));
            assert_eq!(err.map_err(|e| e.what), Err(what), "{bad}");
        }
        Ok(())
    }

    /// A member as `object_memo` reports it: key, raw key, and the value derived from the key.
    type Member = (String, String, usize);

    /// The members `object_memo` reports, and how many keys it had to derive a value for.
    fn memo_fields(
        src: &str,
        memo: &mut KeyMemo<usize>,
    ) -> Result<(Vec<Member>, usize), JsonError> {
        let derived = std::cell::Cell::new(0);
        let mut out = Vec::new();
        Scanner::new(src).object_memo(
            0,
            memo,
            |key| {
                derived.set(derived.get() + 1);
                key.len()
            },
            |key, raw, len, s| {
                out.push((key.to_owned(), raw.to_owned(), len));
                s.skip_value().map(drop)
            },
        )?;
        Ok((out, derived.get()))
    }

    #[test]
    fn memo_recalls_keys_of_two_alternating_shapes_and_reads_anything_else() -> Result<(), JsonError>
    {
        let mut memo = KeyMemo::default();
        let (a, b) = (r#"{"ts":1,"msg":"x"}"#, r#"{"level":2,"message":"y"}"#);
        assert_eq!(memo_fields(a, &mut memo)?.1, 2);
        assert_eq!(memo_fields(b, &mut memo)?.1, 2);
        for _ in 0..3 {
            let (fields, derived) = memo_fields(a, &mut memo)?;
            assert_eq!(derived, 0, "both keys of {a} recalled");
            assert_eq!(fields[1], ("msg".into(), "msg".into(), 3));
            assert_eq!(memo_fields(b, &mut memo)?.1, 0);
        }
        // A key that is a prefix of a remembered one, or has it as a prefix, is not it.
        let (fields, derived) = memo_fields(r#"{"t":1,"msgs":"x"}"#, &mut memo)?;
        assert_eq!(derived, 2);
        assert_eq!(fields[0].2, 1);
        assert_eq!(fields[1].2, 4);
        // Escaped keys are unescaped and derived every time; the raw key keeps its escapes.
        for _ in 0..2 {
            let (fields, derived) = memo_fields(r#"{"m\u0073g":1}"#, &mut memo)?;
            assert_eq!(derived, 1);
            assert_eq!(fields[0], ("msg".into(), "m\\u0073g".into(), 3));
        }
        // Keys past MEMO_KEY_MAX are never remembered.
        let long = format!(r#"{{"{}":1}}"#, "k".repeat(MEMO_KEY_MAX + 1));
        assert_eq!(memo_fields(&long, &mut memo)?.1, 1);
        assert_eq!(memo_fields(&long, &mut memo)?.1, 1);
        // A key at the very end of the input is not read past it.
        assert!(memo_fields(r#"{"ts"#, &mut memo).is_err());
        Ok(())
    }

    #[test]
    fn memo_recalls_keys_in_any_order_once_each_was_seen() -> Result<(), JsonError> {
        let keys = [
            "ts", "level", "msg", "service", "host", "user", "k8s", "retries",
        ];
        let mut memo = KeyMemo::default();
        let record = |order: &[usize]| {
            let members: Vec<String> = order
                .iter()
                .map(|&i| format!(r#""{}":1"#, keys[i]))
                .collect();
            format!("{{{}}}", members.join(","))
        };
        let first = record(&[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(memo_fields(&first, &mut memo)?.1, keys.len());
        // Eight services, each its own rotation of the keys, most of them a key short.
        for round in 0..3 {
            for shift in 1..8 {
                let order: Vec<usize> = (0..8).map(|i| (i + shift) % 8).skip(round % 2).collect();
                let (fields, derived) = memo_fields(&record(&order), &mut memo)?;
                assert_eq!(derived, 0, "order {order:?}");
                assert_eq!(fields[0].0, keys[order[0]]);
                assert_eq!(fields[0].2, keys[order[0]].len());
            }
        }
        Ok(())
    }

    #[test]
    fn short_byte_strings_differing_in_any_one_byte_are_not_the_same() {
        for n in 0..=72usize {
            let a: Vec<u8> = (0..n).map(|i| b'a' + i as u8).collect();
            assert!(same_short_bytes(&a, &a.clone()), "length {n}");
            if n > 0 {
                assert!(
                    !same_short_bytes(&a, &a[..n - 1]),
                    "length {n} against {}",
                    n - 1
                );
            }
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x20;
                assert!(!same_short_bytes(&a, &b), "length {n}, byte {i}");
            }
        }
    }

    #[test]
    fn rejects_nesting_beyond_the_limit() {
        let deep = format!(
            r#"{{"a":{}1{}}}"#,
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        let err = fields(&deep).err();
        assert_eq!(err.map(|e| e.what), Some("nesting too deep"));
    }

    #[test]
    fn parses_floats_exactly() {
        assert_eq!(parse_f64("0.1"), Some(0.1));
        assert_eq!(
            parse_f64("-0.0").map(f64::to_bits),
            Some((-0.0f64).to_bits())
        );
        assert_eq!(
            parse_f64("123.456789012345678"),
            "123.456789012345678".parse().ok()
        );
    }

    #[test]
    fn short_decimals_parse_as_before_and_as_the_standard_library_does() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "7",
            "61.957",
            "-61.957",
            "0.1",
            "0.3",
            "999999999999999",
            "99999999999999.9",
            "0.000000000000001",
            "1234567.1234567",
            "2.5",
            "1.",
            ".5",
            "1e3",
            "-",
            "1.2.3",
            "+5",
            "007",
            "12a",
            "",
            "9007199254740993",
            "0.1000000000000000055511151231257827",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        // Decimals of every length and point position, from a fixed pseudo-random sequence.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = format!("{}", x % 10u64.pow((x >> 60) as u32 % 16 + 1));
            let point = (x >> 40) as usize % (digits.len() + 1);
            texts.push(if point == 0 || point == digits.len() {
                digits
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            });
        }
        for text in &texts {
            // What the parser before the short path gave; std agrees wherever JSON allows.
            let want = lexical_core::parse::<f64>(text.as_bytes()).ok();
            if !text.starts_with('+') {
                assert_eq!(want, text.parse::<f64>().ok(), "{text:?}");
            }
            let got = parse_f64(text);
            assert_eq!(
                got.map(f64::to_bits),
                want.map(f64::to_bits),
                "{text:?}: {got:?} against {want:?}"
            );
        }
    }
}
