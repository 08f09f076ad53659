//! Log levels: parsing the many spellings services use, and inferring a level from plain text.

use serde::{Deserialize, Serialize};

/// The canonical level of a record.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    /// All levels, lowest first.
    pub const ALL: [Level; 6] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    /// The canonical lowercase name stored in Parquet.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }

    /// Error or worse.
    pub fn is_error(self) -> bool {
        self >= Level::Error
    }

    /// Parses a level name in any common spelling, case-insensitively: `WARNING`, `err`,
    /// `critical`, `E`, syslog names, and numeric bunyan/pino (10..60) or syslog (0..7) levels.
    pub fn parse(s: &str) -> Option<Level> {
        // The spellings nearly every logger sends, matched as they come, before trimming and
        // case folding.
        match s.as_bytes() {
            b"info" | b"INFO" => return Some(Level::Info),
            b"error" | b"ERROR" => return Some(Level::Error),
            b"warn" | b"WARN" | b"warning" | b"WARNING" => return Some(Level::Warn),
            b"debug" | b"DEBUG" => return Some(Level::Debug),
            _ => {}
        }
        let s = s.trim();
        if s.is_empty() || s.len() > 12 {
            return None;
        }
        let mut buf = [0u8; 12];
        let lower = &mut buf[..s.len()];
        lower.copy_from_slice(s.as_bytes());
        lower.make_ascii_lowercase();
        Some(match &*lower {
            b"trace" | b"trc" | b"t" | b"finest" | b"verbose" => Level::Trace,
            b"debug" | b"dbg" | b"d" | b"fine" | b"finer" => Level::Debug,
            b"info" | b"information" | b"informational" | b"i" | b"notice" | b"log" => Level::Info,
            b"warn" | b"warning" | b"w" | b"wrn" => Level::Warn,
            b"error" | b"err" | b"e" | b"severe" => Level::Error,
            b"fatal" | b"critical" | b"crit" | b"f" | b"panic" | b"alert" | b"emerg"
            | b"emergency" => Level::Fatal,
            digits if digits.iter().all(u8::is_ascii_digit) => {
                return Level::from_number(s.parse().ok()?);
            }
            _ => return None,
        })
    }

    /// Numeric levels: bunyan/pino (10 trace … 60 fatal) or syslog severities (0 emerg … 7 debug).
    pub fn from_number(n: i64) -> Option<Level> {
        Some(match n {
            0..=2 => Level::Fatal,
            3 => Level::Error,
            4 => Level::Warn,
            5 | 6 => Level::Info,
            7 => Level::Debug,
            10 => Level::Trace,
            20 => Level::Debug,
            30 => Level::Info,
            40 => Level::Warn,
            50 => Level::Error,
            60 => Level::Fatal,
            _ => return None,
        })
    }

    /// Infers a level from a plain-text line when it is obvious: an upper-case level word near
    /// the start (`ERROR`, `[WARN]`, `level=error`), or a Python/Java exception header.
    pub fn infer_from_text(line: &str) -> Option<Level> {
        let head = match line.char_indices().nth(96) {
            Some((i, _)) => &line[..i],
            None => line,
        };
        if let Some(pos) = head.find("level=") {
            let rest = &head[pos + 6..];
            let word: &str = rest
                .trim_start_matches('"')
                .split(|c: char| !c.is_ascii_alphabetic())
                .next()
                .unwrap_or_default();
            if let Some(level) = Level::parse(word) {
                return Some(level);
            }
        }
        for word in head.split(|c: char| !c.is_ascii_alphabetic()) {
            let level = match word {
                "TRACE" => Level::Trace,
                "DEBUG" => Level::Debug,
                "INFO" | "NOTICE" => Level::Info,
                "WARN" | "WARNING" => Level::Warn,
                "ERROR" | "ERR" | "SEVERE" => Level::Error,
                "FATAL" | "CRITICAL" | "CRIT" | "PANIC" | "EMERG" => Level::Fatal,
                _ => continue,
            };
            return Some(level);
        }
        if line.starts_with("Traceback (most recent call last)") || line.starts_with("panic:") {
            return Some(Level::Error);
        }
        if line.starts_with("Exception in thread") {
            return Some(Level::Error);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_spellings_case_insensitively() {
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        for (spellings, level) in [
            (["info", "INFO", "Info", " info "], Level::Info),
            (["error", "ERROR", "Error", "error\n"], Level::Error),
            (["warn", "WARN", "Warning", "\twarning"], Level::Warn),
            (["debug", "DEBUG", "Debug", "debug "], Level::Debug),
        ] {
            for s in spellings {
                assert_eq!(Level::parse(s), Some(level), "{s:?}");
            }
        }
        assert_eq!(Level::parse("err"), Some(Level::Error));
        assert_eq!(Level::parse("Critical"), Some(Level::Fatal));
        assert_eq!(Level::parse(" info "), Some(Level::Info));
        assert_eq!(Level::parse("50"), Some(Level::Error));
        assert_eq!(Level::parse("3"), Some(Level::Error));
        assert_eq!(Level::parse("loud"), None);
        assert_eq!(Level::parse("a-very-long-level-name"), None);
    }

    #[test]
    fn infers_level_from_obvious_text_only() {
        assert_eq!(
            Level::infer_from_text("2024-01-01 ERROR db timeout"),
            Some(Level::Error)
        );
        assert_eq!(
            Level::infer_from_text("[WARN] disk 91% full"),
            Some(Level::Warn)
        );
        assert_eq!(
            Level::infer_from_text("ts=1 level=debug msg=x"),
            Some(Level::Debug)
        );
        assert_eq!(
            Level::infer_from_text("Traceback (most recent call last):"),
            Some(Level::Error)
        );
        assert_eq!(Level::infer_from_text("user says error is fine"), None);
        assert_eq!(Level::infer_from_text("GET /health 200"), None);
    }
}
