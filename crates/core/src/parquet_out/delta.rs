//! Parquet's DELTA_BINARY_PACKED encoding for 64-bit integers (timestamps): blocks of 128
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
