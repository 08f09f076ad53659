//! Number formatting for alert titles and descriptions that stays cheap inside the sandbox.
//!
//! `format!("{:.2}", x)` on an `f64` goes through Rust's exact float formatting, which costs
//! microseconds per number in wasm: a rule formatting a handful of values per alert spends
//! more time there than on its logic, and every microsecond is fuel. These helpers round to a
//! fixed number of decimals with integer arithmetic instead (exact enough for humans).

/// `value` with `decimals` (at most 6) digits after the point, e.g. `fixed(12.345, 1)` is
/// `"12.3"`. Non-finite values and magnitudes beyond 1e12 fall back to `format!`.
pub fn fixed(value: f64, decimals: u32) -> String {
    let decimals = decimals.min(6);
    let scale = 10u64.pow(decimals) as f64;
    if !value.is_finite() || value.abs() >= 1e12 {
        return format!("{value:.prec$}", prec = decimals as usize);
    }
    let scaled = (value.abs() * scale).round() as u64;
    let sign = if value < 0.0 && scaled != 0 { "-" } else { "" };
    if decimals == 0 {
        return format!("{sign}{scaled}");
    }
    let unit = 10u64.pow(decimals);
    format!(
        "{sign}{}.{:0width$}",
        scaled / unit,
        scaled % unit,
        width = decimals as usize
    )
}

/// A ratio (0.125) as a percentage with two decimals (`"12.50%"`).
pub fn percent(ratio: f64) -> String {
    let mut s = fixed(ratio * 100.0, 2);
    s.push('%');
    s
}

/// Milliseconds with one decimal (`"250.0 ms"`).
pub fn millis(ms: f64) -> String {
    let mut s = fixed(ms, 1);
    s.push_str(" ms");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_rounds_to_the_requested_decimals() {
        assert_eq!(fixed(12.345, 1), "12.3");
        assert_eq!(fixed(12.35, 1), "12.4");
        assert_eq!(fixed(0.0, 2), "0.00");
        assert_eq!(fixed(7.0, 0), "7");
        assert_eq!(fixed(0.05, 3), "0.050");
    }

    #[test]
    fn fixed_keeps_the_sign_but_not_of_zero() {
        assert_eq!(fixed(-1.25, 1), "-1.3");
        assert_eq!(fixed(-0.001, 1), "0.0");
    }

    #[test]
    fn fixed_falls_back_for_huge_and_non_finite_values() {
        assert_eq!(fixed(f64::INFINITY, 1), "inf");
        assert_eq!(fixed(1e13, 0), "10000000000000");
    }

    #[test]
    fn percent_and_millis_add_their_units() {
        assert_eq!(percent(0.125), "12.50%");
        assert_eq!(millis(250.0), "250.0 ms");
    }
}
