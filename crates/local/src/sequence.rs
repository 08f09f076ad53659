//! Kinesis sequence numbers: decimal strings of up to 128 bits, too long for `u64`. They are
//! compared as numbers (shorter is smaller, then digit by digit).

use std::cmp::Ordering;

/// Compares two sequence numbers numerically.
pub fn compare(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The smallest of `numbers` (numerically), if any.
pub fn lowest<'a>(numbers: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    numbers.into_iter().min_by(|a, b| compare(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_numbers_are_larger_whatever_their_digits() {
        assert_eq!(compare("9", "10"), Ordering::Less);
        assert_eq!(compare("0010", "9"), Ordering::Greater);
        assert_eq!(
            compare(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Ordering::Less
        );
        assert_eq!(compare("7", "007"), Ordering::Equal);
        assert_eq!(lowest(["30", "4", "100"]), Some("4"));
    }
}
