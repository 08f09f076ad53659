//! Parquet's DELTA_BINARY_PACKED encoding for integers (timestamps, and the
//! value lengths of DELTA_LENGTH_BYTE_ARRAY pages): blocks of 128
//! deltas in four miniblocks of 32, each bit-packed at its own width above the block's
//! smallest delta.

use super::hybrid_rle::{pack_bits, put_varint};

const BLOCK: usize = 128;
const MINIBLOCKS: usize = 4;
const MINIBLOCK: usize = BLOCK / MINIBLOCKS;

/// Appends the encoding of `values` to `out`.
pub fn encode(values: &[i64], out: &mut Vec<u8>) {
    put_varint(out, BLOCK as u64);
    put_varint(out, MINIBLOCKS as u64);
    put_varint(out, values.len() as u64);
    let Some(&first) = values.first() else {
        put_varint(out, 0);
        return;
    };
    put_varint(out, zigzag(first));
    let mut deltas = [0i64; BLOCK];
    for start in (1..values.len()).step_by(BLOCK) {
        let block = &values[start - 1..(start + BLOCK).min(values.len())];
        let n = block.len() - 1;
        for (d, pair) in deltas.iter_mut().zip(block.windows(2)) {
            *d = pair[1].wrapping_sub(pair[0]);
        }
        let deltas = &deltas[..n];
        let min = deltas.iter().copied().min().unwrap_or(0);
        put_varint(out, zigzag(min));
        let mut widths = [0u8; MINIBLOCKS];
        for (w, mini) in widths.iter_mut().zip(deltas.chunks(MINIBLOCK)) {
            let max = mini
                .iter()
                .map(|&d| d.wrapping_sub(min) as u64)
                .max()
                .unwrap_or(0);
            *w = (64 - max.leading_zeros()) as u8;
        }
        out.extend_from_slice(&widths);
        for (&w, mini) in widths.iter().zip(deltas.chunks(MINIBLOCK)) {
            pack(mini, min, w, out);
        }
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Bit-packs one miniblock (`delta - min` each), padded with zeros to 32 values.
fn pack(deltas: &[i64], min: i64, width: u8, out: &mut Vec<u8>) {
    if width == 0 {
        return;
    }
    let padding = std::iter::repeat_n(0u64, MINIBLOCK - deltas.len());
    let values = deltas
        .iter()
        .map(|&d| d.wrapping_sub(min) as u64)
        .chain(padding);
    pack_bits(values, width, out);
}

#[cfg(test)]
mod tests {
    use super::super::hybrid_rle::tests::varint;
    use super::*;

    fn unzigzag(v: u64) -> i64 {
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }

    /// A reference decoder straight from the format description.
    fn decode(mut bytes: &[u8]) -> Vec<i64> {
        let block = varint(&mut bytes) as usize;
        let miniblocks = varint(&mut bytes) as usize;
        let count = varint(&mut bytes) as usize;
        let mut out = vec![unzigzag(varint(&mut bytes))];
        while out.len() < count {
            let min = unzigzag(varint(&mut bytes));
            let widths = bytes[..miniblocks].to_vec();
            bytes = &bytes[miniblocks..];
            for width in widths {
                if out.len() >= count {
                    break;
                }
                let width = usize::from(width);
                for k in 0..block / miniblocks {
                    let mut v = 0u64;
                    for b in 0..width {
                        let bit = k * width + b;
                        v |= u64::from((bytes[bit / 8] >> (bit % 8)) & 1) << b;
                    }
                    if out.len() < count {
                        let last = out[out.len() - 1];
                        out.push(last.wrapping_add(min).wrapping_add(v as i64));
                    }
                }
                bytes = &bytes[block / miniblocks * width / 8..];
            }
        }
        assert!(bytes.is_empty(), "{} bytes left over", bytes.len());
        out
    }

    #[test]
    fn round_trips_sorted_jittered_and_extreme_values() {
        let cases: Vec<Vec<i64>> = vec![
            vec![1_764_115_200_000],
            (0..1000).map(|i| 1_764_115_200_000 + i * 3).collect(),
            (0..777)
                .map(|i| 1_764_115_200_000 + (i * 7919) % 1000)
                .collect(),
            vec![5; 300],
            vec![i64::MIN, i64::MAX, 0, -1, i64::MAX, i64::MIN, 42],
            (0..129)
                .map(|i| if i % 2 == 0 { i64::MIN } else { i64::MAX })
                .collect(),
        ];
        for values in cases {
            let mut out = Vec::new();
            encode(&values, &mut out);
            assert_eq!(decode(&out), values);
        }
    }
}
