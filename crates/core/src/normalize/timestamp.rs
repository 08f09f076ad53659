//! Event-time parsing: RFC 3339 text, or epoch seconds, milliseconds, microseconds or nanoseconds.

/// Parses an RFC 3339 / ISO 8601 timestamp (`2024-05-01T12:34:56.789Z`, a space instead of `T`,
/// an offset like `+02:00` or `+0200`, no offset meaning UTC) to ms since the epoch.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let rest = &s[i + 1..];
            let (h, m) = match rest.len() {
                5 if rest.as_bytes()[2] == b':' => (rest.get(0..2)?, rest.get(3..5)?),
                4 => (rest.get(0..2)?, rest.get(2..4)?),
                2 => (rest.get(0..2)?, "00"),
                _ => return None,
            };
            let total = h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?;
            if sign == b'-' { -total } else { total }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
#[inline]
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Interprets an epoch number by its magnitude: seconds (with a fraction), ms, µs or ns.
pub fn epoch_to_ms(value: f64) -> Option<i64> {
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let ms = if value < 1e11 {
        value * 1000.0
    } else if value < 1e14 {
        value
    } else if value < 1e17 {
        value / 1000.0
    } else {
        value / 1_000_000.0
    };
    Some(ms as i64)
}

/// Parses an epoch number given as text; integers are parsed exactly.
pub fn parse_epoch_text_ms(text: &str) -> Option<i64> {
    // Up to 19 digits, read in one pass: they fit in a u64 (under 10^19), not always an i64.
    let digits = (!text.is_empty() && text.len() <= 19)
        .then(|| {
            text.bytes().try_fold(0u64, |v, c| {
                c.is_ascii_digit().then(|| v * 10 + u64::from(c - b'0'))
            })
        })
        .flatten();
    if let Some(v) = digits {
        let v = i64::try_from(v).ok()?;
        return Some(match v {
            v if v < 100_000_000_000 => v * 1000,
            v if v < 100_000_000_000_000 => v,
            v if v < 100_000_000_000_000_000 => v / 1000,
            v => v / 1_000_000,
        });
    }
    epoch_to_ms(crate::decode::json::parse_f64(text)?)
}

/// Formats ms since the epoch as RFC 3339 UTC with milliseconds.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_714_566_896_789; // 2024-05-01T12:34:56.789Z

    #[test]
    fn parses_rfc3339_variants() {
        assert_eq!(parse_rfc3339_ms("2024-05-01T12:34:56.789Z"), Some(T));
        assert_eq!(parse_rfc3339_ms("2024-05-01 12:34:56.789"), Some(T));
        assert_eq!(parse_rfc3339_ms("2024-05-01T14:34:56.789+02:00"), Some(T));
        assert_eq!(parse_rfc3339_ms("2024-05-01T07:34:56.789123-0500"), Some(T));
        assert_eq!(parse_rfc3339_ms("2024-05-01T12:34:56Z"), Some(T - 789));
        assert_eq!(parse_rfc3339_ms("2024-05-01T12:34:56.7Z"), Some(T - 89));
        for bad in [
            "2024-13-01T00:00:00Z",
            "yesterday",
            "2024-05-01T12:34:56.Z",
            "2024-05-01T12:34:56Zjunk",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn epoch_magnitude_picks_the_unit() {
        assert_eq!(parse_epoch_text_ms("1714566896"), Some(T - 789));
        assert_eq!(parse_epoch_text_ms("1714566896789"), Some(T));
        assert_eq!(parse_epoch_text_ms("1714566896789123"), Some(T));
        assert_eq!(parse_epoch_text_ms("1714566896789123456"), Some(T));
        assert_eq!(parse_epoch_text_ms("1714566896.789"), Some(T));
        assert_eq!(parse_epoch_text_ms("-5"), None);
        // Nineteen digits past i64::MAX are not a time.
        assert_eq!(parse_epoch_text_ms("9999999999999999999"), None);
        assert_eq!(parse_epoch_text_ms("17a4566896"), None);
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(format_rfc3339_ms(T), "2024-05-01T12:34:56.789Z");
        for days in [-800_000, -1, 0, 59, 60, 365, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
        }
    }
}
