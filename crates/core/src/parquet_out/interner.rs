//! Builds the dictionary of one string column at write time: each value of the column's PLAIN
//! data gets the index of its first occurrence. One column at a time keeps the table in cache,
//! which interning while rows arrive (five columns, many files at once) does not.

use std::sync::LazyLock;

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
                Some((previous, index)) if previous == value => index,
                _ => self.intern(data, at, end),
            };
            last = Some((value, index));
            self.indices.push(index);
            if self.dictionary_bytes > limit {
                return false;
            }
            at = end;
        }
        true
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
                if data[s + 4..e] == *value {
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

fn word(v: &[u8], at: usize) -> u64 {
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
