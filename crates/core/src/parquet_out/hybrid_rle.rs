//! Parquet's RLE / bit-packing hybrid encoding, used for definition levels and dictionary
//! indices: runs of eight or more equal values become one RLE run, everything else is
//! bit-packed in groups of eight (least significant bit first).

/// Bit-packed groups per run header, as parquet-rs writes them (readers accept more; this
/// keeps the headers short and the format conventional).
const MAX_GROUPS_PER_RUN: usize = 63;

/// Bits needed to hold `max` (at least 1, so a one-entry dictionary still has a width).
pub fn bit_width(max: u32) -> u8 {
    (32 - max.leading_zeros()).max(1) as u8
}

/// Appends `values` (each below `2^bit_width`) to `out`, without a length prefix.
pub fn encode<T: Copy + PartialEq + Into<u32>>(values: &[T], bit_width: u8, out: &mut Vec<u8>) {
    let mut i = 0;
    while i < values.len() {
        let run = run_length(values, i);
        if run >= 8 {
            put_varint(out, (run as u64) << 1);
            put_value(out, values[i].into(), bit_width);
            i += run;
            continue;
        }
        let start = i;
        let mut groups = 0;
        loop {
            i = (i + 8).min(values.len());
            groups += 1;
            if i == values.len() || groups == MAX_GROUPS_PER_RUN || starts_run(values, i) {
                break;
            }
        }
        put_varint(out, ((groups as u64) << 1) | 1);
        pack(&values[start..i], groups * 8, bit_width, out);
    }
}

/// How many equal values start at `at`.
fn run_length<T: Copy + PartialEq>(values: &[T], at: usize) -> usize {
    let first = values[at];
    values[at..].iter().take_while(|&&v| v == first).count()
}

/// Whether at least eight equal values start at `at` (worth ending a bit-packed run for).
fn starts_run<T: Copy + PartialEq>(values: &[T], at: usize) -> bool {
    values
        .get(at..at + 8)
        .is_some_and(|w| w.iter().all(|&v| v == w[0]))
}

/// Bit-packs `values`, padded with zeros to `padded_len` values.
fn pack<T: Copy + Into<u32>>(values: &[T], padded_len: usize, bit_width: u8, out: &mut Vec<u8>) {
    let padding = std::iter::repeat_n(0, padded_len - values.len());
    let values = values.iter().map(|&v| u64::from(v.into())).chain(padding);
    pack_bits(values, bit_width, out);
}

/// Packs each value in `width` bits, least significant bit first, as Parquet bit-packs; the
/// last byte is padded with zeros.
pub fn pack_bits(values: impl Iterator<Item = u64>, width: u8, out: &mut Vec<u8>) {
    let width = u32::from(width);
    // Fewer than 64 bits wait in `acc` between values, so a value of up to 64 bits fits above
    // them; whole words go out eight bytes at a time.
    let mut acc: u128 = 0;
    let mut bits: u32 = 0;
    for v in values {
        acc |= u128::from(v) << bits;
        bits += width;
        if bits >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            bits -= 64;
        }
    }
    out.extend_from_slice(&(acc as u64).to_le_bytes()[..bits.div_ceil(8) as usize]);
}

fn put_value(out: &mut Vec<u8>, value: u32, bit_width: u8) {
    let bytes = usize::from(bit_width).div_ceil(8);
    out.extend_from_slice(&value.to_le_bytes()[..bytes]);
}

/// Unsigned LEB128.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Reads one unsigned LEB128 value.
    pub fn varint(bytes: &mut &[u8]) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = bytes[0];
            *bytes = &bytes[1..];
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                return v;
            }
        }
    }

    /// A reference decoder straight from the format description.
    fn decode(mut bytes: &[u8], bit_width: u8, count: usize) -> Vec<u32> {
        let mut out = Vec::new();
        while out.len() < count {
            let header = varint(&mut bytes);
            if header & 1 == 0 {
                let n = usize::from(bit_width).div_ceil(8);
                let mut le = [0u8; 4];
                le[..n].copy_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                out.extend(std::iter::repeat_n(
                    u32::from_le_bytes(le),
                    (header >> 1) as usize,
                ));
            } else {
                let values = (header >> 1) as usize * 8;
                let width = usize::from(bit_width);
                for k in 0..values {
                    let mut v = 0u32;
                    for b in 0..width {
                        let bit = k * width + b;
                        v |= u32::from((bytes[bit / 8] >> (bit % 8)) & 1) << b;
                    }
                    out.push(v);
                }
                bytes = &bytes[values * width / 8..];
            }
        }
        assert!(bytes.is_empty(), "{} bytes left over", bytes.len());
        out.truncate(count);
        out
    }

    #[test]
    fn round_trips_runs_literals_and_ragged_ends_at_every_width() {
        let patterns: Vec<Vec<u32>> = vec![
            vec![],
            vec![1u32],
            vec![1; 1000],
            (0..1000).map(|i| i % 7).collect(),
            (0..517)
                .map(|i| if i % 100 < 60 { 3 } else { i % 5 })
                .collect(),
            (0..2000u32)
                .map(|i| i.wrapping_mul(2_654_435_761) >> 20)
                .collect(),
            [vec![5; 9], vec![1, 2, 3], vec![5; 20], vec![0, 1]].concat(),
        ];
        for values in patterns {
            let max = values.iter().copied().max().unwrap_or(0);
            for width in bit_width(max)..=32 {
                let mut out = Vec::new();
                encode(&values, width, &mut out);
                assert_eq!(decode(&out, width, values.len()), values, "width {width}");
            }
        }
    }

    #[test]
    fn a_constant_column_is_one_short_run() {
        let mut out = Vec::new();
        encode(&[1u8; 100_000], 1, &mut out);
        // varint(100_000 << 1), then the value in one byte.
        assert_eq!(out, [0xc0, 0x9a, 0x0c, 1]);
    }

    #[test]
    fn bit_width_covers_the_largest_value() {
        assert_eq!(bit_width(0), 1);
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(2), 2);
        assert_eq!(bit_width(255), 8);
        assert_eq!(bit_width(256), 9);
        assert_eq!(bit_width(u32::MAX), 32);
    }
}
