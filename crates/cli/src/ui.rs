//! Small pieces of terminal output shared by the rules, alerts and backtest commands: spinners
//! for slow steps, and formatting of times and measured values.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sluice_core::normalize::timestamp::format_rfc3339_ms;

/// A spinner on stderr for a slow step, or a hidden one when `quiet` (JSON output). indicatif
/// draws nothing when stderr is not a terminal.
pub fn spinner(quiet: bool, message: impl Into<String>) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// A progress bar on stderr over `len` steps, or a hidden one when `quiet`.
pub fn bar(quiet: bool, len: u64, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{bar:30}}] {{pos}}/{{len}} {what} {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// RFC 3339 in UTC (`2024-05-01T12:34:00Z`), with milliseconds only when there are some.
pub fn time(ms: i64) -> String {
    let full = format_rfc3339_ms(ms);
    if ms.rem_euclid(1000) == 0 {
        full.replace(".000Z", "Z")
    } else {
        full
    }
}

/// Milliseconds of a duration, with a fraction below 10 ms.
pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// A measured value for humans: whole numbers as they are, others with up to four decimals.
pub fn value(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" || s.is_empty() {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_short_for_humans() {
        assert_eq!(value(12.0), "12");
        assert_eq!(value(0.1234567), "0.1235");
        assert_eq!(value(0.5), "0.5");
        assert_eq!(value(-0.00001), "0");
    }

    #[test]
    fn times_drop_zero_seconds() {
        assert_eq!(time(1_714_566_840_000), "2024-05-01T12:34:00Z");
        assert_eq!(time(1_714_566_896_789), "2024-05-01T12:34:56.789Z");
    }
}
