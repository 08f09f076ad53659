//! Spare memory kept for reuse (cleared column builders, file buffers), within bounds: memory
//! already faulted in is reused instead of freed and faulted in again, but one huge batch
//! does not pin its memory for ever.

/// Keeps `spare` in `kept` if that stays within `max_items` items and `max_bytes` bytes in all
/// (`bytes` gives one item's size); otherwise drops it.
pub(crate) fn keep_within<T>(
    kept: &mut Vec<T>,
    spare: T,
    max_items: usize,
    max_bytes: usize,
    bytes: impl Fn(&T) -> usize,
) {
    let held: usize = kept.iter().map(&bytes).sum();
    if kept.len() < max_items && held + bytes(&spare) <= max_bytes {
        kept.push(spare);
    }
}
