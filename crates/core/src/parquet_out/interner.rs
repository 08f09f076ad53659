//! Builds the dictionary of one string column at write time: each value of the column's PLAIN
//! data gets the index of its first occurrence. One column at a time keeps the table in cache,
//! which interning while rows arrive (five columns, many files at once) does not.

use std::sync::LazyLock;

// Values are mostly short: compared in registers, without a call to `memcmp`.
use crate::decode::json::same_short_bytes;

/// Values [`Interner::build_if_repeating`] interns before it judges whether they repeat.
pub const REPEAT_SAMPLE: usize = 512;

/// The repeat rule, part way through a column: at least [`REPEAT_SAMPLE`] of its `values`
/// interned, and more than half of them distinct (`entries`).
fn sample_is_mostly_distinct(entries: usize, values: usize) -> bool {
    values >= REPEAT_SAMPLE && !repeats(entries, values)
}

/// The repeat rule for a whole column: some values, at most half of them distinct.
fn repeats(entries: usize, values: usize) -> bool {
    values > 0 && entries * 2 <= values
}

/// Dictionary indices for one column, and where each entry's PLAIN bytes are in the data.
#[derive(Debug, Default)]
pub struct Interner {
    /// `(hash as u32, index + 1)` per slot, index 0 meaning empty; a power of two long.
    slots: Vec<(u32, u32)>,
    /// `(start, end)` of each entry's PLAIN encoding (length prefix included) in the data.
    pub entries: Vec<(usize, usize)>,
    /// PLAIN bytes of all entries.
    pub dictionary_bytes: usize,
    pub indices: Vec<u32>,
}

impl Interner {
    /// Interns the PLAIN-encoded `data` (the values of non-null rows, in order). Stops and
    /// returns `false` as soon as the dictionary passes `limit` bytes.
    pub fn build(&mut self, data: &[u8], limit: usize) -> bool {
        self.build_with(data, limit, false)
    }

    /// [`Interner::build`] for a column that is worth a dictionary only when its values
    /// repeat: also stops, and returns `false`, when more than half of the values are
    /// distinct. That is decided after the first [`REPEAT_SAMPLE`] values (and at the end of a
    /// shorter column), so a column of unique values costs that many hashes and no more. An
    /// empty column (nulls only) gets no dictionary either.
    pub fn build_if_repeating(&mut self, data: &[u8], limit: usize) -> bool {
        self.build_with(data, limit, true)
    }

    fn build_with(&mut self, data: &[u8], limit: usize, repeating: bool) -> bool {
        self.entries.clear();
        self.indices.clear();
        self.dictionary_bytes = 0;
        // A table grown for one column of many distinct values is not cleared for every later
        // one: past 64K slots it starts small again.
        if self.slots.is_empty() || self.slots.len() > 1 << 16 {
            self.slots = vec![(0, 0); 1024];
        } else {
            self.slots.fill((0, 0));
        }
        let mut at = 0;
        // The previous value and its index. Values come in runs (a file's tenant is one value
        // throughout; a shard's batch often holds a run of one service's records), and a run
        // costs a compare per row instead of a hash and a probe.
        let mut last: Option<(&[u8], u32)> = None;
        while at < data.len() {
            let len = crate::columns::value_len(data, at);
            let end = at + 4 + len;
            let value = &data[at + 4..end];
            let index = match last {
                Some((previous, index)) if same_short_bytes(previous, value) => index,
                _ => self.intern(data, at, end),
            };
            last = Some((value, index));
            self.indices.push(index);
            if self.dictionary_bytes > limit
                || (repeating && sample_is_mostly_distinct(self.entries.len(), self.indices.len()))
            {
                return false;
            }
            at = end;
        }
        !repeating || repeats(self.entries.len(), self.indices.len())
    }

    fn intern(&mut self, data: &[u8], start: usize, end: usize) -> u32 {
        let value = &data[start + 4..end];
        let hash = hash_bytes(value);
        let check = (hash >> 32) as u32;
        let mask = self.slots.len() - 1;
        let mut slot = hash as usize & mask;
        loop {
            let (c, entry) = self.slots[slot];
            if entry == 0 {
                break;
            }
            let index = entry - 1;
            if c == check {
                let (s, e) = self.entries[index as usize];
                if same_short_bytes(&data[s + 4..e], value) {
                    return index;
                }
            }
            slot = (slot + 1) & mask;
        }
        let index = self.entries.len() as u32;
        self.entries.push((start, end));
        self.dictionary_bytes += end - start;
        self.slots[slot] = (check, index + 1);
        if self.entries.len() * 2 > self.slots.len() {
            self.grow(data);
        }
        index
    }

    fn grow(&mut self, data: &[u8]) {
        let size = self.slots.len() * 2;
        self.slots = vec![(0, 0); size];
        let mask = size - 1;
        for (index, &(s, e)) in self.entries.iter().enumerate() {
            let hash = hash_bytes(&data[s + 4..e]);
            let mut slot = hash as usize & mask;
            while self.slots[slot].1 != 0 {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = ((hash >> 32) as u32, index as u32 + 1);
        }
    }
}

/// Builds the dictionary of a column of 64-bit numbers (doubles, by their bits: `-0.0` and
/// `0.0` stay apart, as do NaN payloads) when its values repeat, under the same rule as
/// [`Interner::build_if_repeating`].
#[derive(Debug, Default)]
pub struct BitsInterner {
    /// `index + 1` per slot, 0 meaning empty; a power of two long.
    slots: Vec<u32>,
    pub entries: Vec<u64>,
    pub indices: Vec<u32>,
}

impl BitsInterner {
    /// Interns `values`; `false` as soon as more than half of them are distinct (judged after
    /// [`REPEAT_SAMPLE`] values, or at the end of a shorter column).
    pub fn build_if_repeating(&mut self, values: impl ExactSizeIterator<Item = u64>) -> bool {
        self.entries.clear();
        self.indices.clear();
        // Sized for the sample's worst case; grown past it.
        let size = (values.len().min(2 * REPEAT_SAMPLE) * 2).next_power_of_two();
        if self.slots.len() == size {
            self.slots.fill(0);
        } else {
            self.slots = vec![0; size];
        }
        let mut last: Option<(u64, u32)> = None;
        for value in values {
            let index = match last {
                Some((previous, index)) if previous == value => index,
                _ => self.intern(value),
            };
            last = Some((value, index));
            self.indices.push(index);
            if sample_is_mostly_distinct(self.entries.len(), self.indices.len()) {
                return false;
            }
        }
        repeats(self.entries.len(), self.indices.len())
    }

    fn intern(&mut self, value: u64) -> u32 {
        let mask = self.slots.len() - 1;
        let mut slot = hash_bits(value) as usize & mask;
        loop {
            match self.slots[slot] {
                0 => break,
                entry if self.entries[entry as usize - 1] == value => return entry - 1,
                _ => slot = (slot + 1) & mask,
            }
        }
        let index = self.entries.len() as u32;
        self.entries.push(value);
        self.slots[slot] = index + 1;
        if self.entries.len() * 2 > self.slots.len() {
            let size = self.slots.len() * 2;
            self.slots = vec![0; size];
            for (i, &v) in self.entries.iter().enumerate() {
                let mut slot = hash_bits(v) as usize & (size - 1);
                while self.slots[slot] != 0 {
                    slot = (slot + 1) & (size - 1);
                }
                self.slots[slot] = i as u32 + 1;
            }
        }
        index
    }
}

fn hash_bits(v: u64) -> u64 {
    let h = (v ^ *HASH_KEY).wrapping_mul(K);
    h ^ (h >> 29)
}

/// A per-process key, so that the values a tenant sends cannot be chosen to collide.
static HASH_KEY: LazyLock<u64> = LazyLock::new(|| {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish()
});

const K: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(h: u64, word: u64) -> u64 {
    (h ^ word).wrapping_mul(K).rotate_left(29)
}

/// The eight bytes of `v` from `at`, little-endian (the caller checks that they exist).
pub(super) fn word(v: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&v[at..at + 8]);
    u64::from_le_bytes(w)
}

fn half(v: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&v[at..at + 4]);
    u64::from(u32::from_le_bytes(w))
}

/// A fast keyed hash of (mostly short) strings, with fixed-size loads only: the first and last
/// eight bytes overlap for short values, and longer ones add every word in between.
#[inline]
pub fn hash_bytes(v: &[u8]) -> u64 {
    let len = v.len();
    let mut h = *HASH_KEY ^ (len as u64).wrapping_mul(K);
    if len >= 8 {
        h = mix(h, word(v, 0));
        let mut at = 8;
        while at + 8 < len {
            h = mix(h, word(v, at));
            at += 8;
        }
        h = mix(h, word(v, len - 8));
    } else if len >= 4 {
        h = mix(h, half(v, 0) | (half(v, len - 4) << 32));
    } else if len > 0 {
        let small = u64::from(v[0]) | u64::from(v[len / 2]) << 8 | u64::from(v[len - 1]) << 16;
        h = mix(h, small);
    }
    let h = (h ^ (h >> 32)).wrapping_mul(K);
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(values: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in values {
            crate::columns::put_plain(&mut out, v.as_bytes());
        }
        out
    }

    #[test]
    fn gives_each_distinct_value_its_first_index() {
        let hosts: Vec<String> = (0..5000)
            .map(|i| format!("ip-10-0-{}-{}", i % 40, i % 97))
            .collect();
        let mut values: Vec<&str> = hosts.iter().map(String::as_str).collect();
        values.extend([
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "a",
            "",
            "a much longer value than sixteen bytes",
        ]);
        let data = plain(&values);
        let mut interner = Interner::default();
        assert!(interner.build(&data, usize::MAX));
        let mut first: Vec<&str> = Vec::new();
        for (v, &index) in values.iter().zip(&interner.indices) {
            match first.iter().position(|f| f == v) {
                Some(i) => assert_eq!(index as usize, i, "{v}"),
                None => {
                    assert_eq!(index as usize, first.len(), "{v}");
                    first.push(v);
                }
            }
        }
        assert_eq!(interner.entries.len(), first.len());
        for (&(s, e), v) in interner.entries.iter().zip(&first) {
            assert_eq!(&data[s + 4..e], v.as_bytes());
        }
    }

    #[test]
    fn gives_every_row_of_a_run_its_values_index() {
        let values = ["b", "b", "b", "a", "a", "b", "c", "c", "a", "", "", "b"];
        let mut interner = Interner::default();
        assert!(interner.build(&plain(&values), usize::MAX));
        assert_eq!(interner.indices, [0, 0, 0, 1, 1, 0, 2, 2, 1, 3, 3, 0]);
        assert_eq!(interner.entries.len(), 4);
    }

    #[test]
    fn keeps_a_free_text_dictionary_only_while_values_repeat() {
        let mut interner = Interner::default();
        // Unique values: given up once the sample is in, without interning the rest.
        let unique: Vec<String> = (0..10 * REPEAT_SAMPLE)
            .map(|i| format!("GET /orders/{i}"))
            .collect();
        let refs: Vec<&str> = unique.iter().map(String::as_str).collect();
        assert!(!interner.build_if_repeating(&plain(&refs), usize::MAX));
        assert_eq!(interner.indices.len(), REPEAT_SAMPLE);
        // A column shorter than the sample is judged at its end.
        assert!(!interner.build_if_repeating(&plain(&refs[..100]), usize::MAX));
        // Fourteen values taking turns, and each value three times, keep their dictionary.
        let tiers: Vec<String> = (0..5000)
            .map(|i| format!(r#"{{"tier":"t{}"}}"#, i % 14))
            .collect();
        let refs: Vec<&str> = tiers.iter().map(String::as_str).collect();
        assert!(interner.build_if_repeating(&plain(&refs), usize::MAX));
        assert_eq!(interner.entries.len(), 14);
        assert_eq!(interner.indices.len(), 5000);
        let thirds: Vec<String> = (0..2000).map(|i| format!("v{}", i / 3)).collect();
        let refs: Vec<&str> = thirds.iter().map(String::as_str).collect();
        assert!(interner.build_if_repeating(&plain(&refs), usize::MAX));
        assert_eq!(interner.entries.len(), 667);
        // More than half distinct after the sample: given up part way.
        let mut mixed: Vec<String> = (0..2 * REPEAT_SAMPLE)
            .map(|i| format!("r{}", i % 2))
            .collect();
        mixed.extend((0..4 * REPEAT_SAMPLE).map(|i| format!("u{i}")));
        let refs: Vec<&str> = mixed.iter().map(String::as_str).collect();
        assert!(!interner.build_if_repeating(&plain(&refs), usize::MAX));
        assert!(interner.build(&plain(&refs), usize::MAX), "build keeps it");
    }

    #[test]
    fn numbers_get_a_dictionary_only_while_they_repeat() {
        let mut interner = BitsInterner::default();
        let latencies: Vec<f64> = (0..3000).map(|i| f64::from(i % 100) * 1.5).collect();
        assert!(interner.build_if_repeating(latencies.iter().map(|v| v.to_bits())));
        assert_eq!(interner.entries.len(), 100);
        for (v, &index) in latencies.iter().zip(&interner.indices) {
            assert_eq!(interner.entries[index as usize], v.to_bits());
        }
        // Zeros of both signs and NaNs keep their bits.
        let odd = [0.0, -0.0, f64::NAN, 0.0, -0.0, f64::NAN];
        assert!(interner.build_if_repeating(odd.iter().map(|v| v.to_bits())));
        assert_eq!(interner.indices, [0, 1, 2, 0, 1, 2]);
        assert_eq!(interner.entries[1], (-0.0f64).to_bits());
        let unique: Vec<f64> = (0..5000).map(|i| f64::from(i) / 7.0).collect();
        assert!(!interner.build_if_repeating(unique.iter().map(|v| v.to_bits())));
        assert_eq!(interner.indices.len(), REPEAT_SAMPLE);
        assert!(!interner.build_if_repeating([1u64, 2, 3].into_iter()));
        assert!(
            !interner.build_if_repeating(std::iter::empty()),
            "a column of nulls only is written PLAIN"
        );
    }

    #[test]
    fn stops_when_the_dictionary_passes_its_limit() {
        let values: Vec<String> = (0..1000).map(|i| format!("value-{i}")).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let mut interner = Interner::default();
        assert!(!interner.build(&plain(&refs), 100));
        assert!(
            interner.build(&plain(&["x", "x"]), 100),
            "reusable after a refusal"
        );
        assert_eq!(interner.indices, [0, 0]);
    }
}
