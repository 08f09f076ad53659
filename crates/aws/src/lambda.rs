//! What every sluice Lambda function does the same way at init: JSON logs through `tracing`,
//! the wall clock in ms, and its settings from the environment.

use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::EnvFilter;

/// JSON log lines on stdout (Lambda's JSON log format), filtered by `RUST_LOG`, else Lambda's
/// `AWS_LAMBDA_LOG_LEVEL`, else `info`.
pub fn init_json_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").unwrap_or_else(|_| "info".to_owned());
            EnvFilter::try_new(level.to_ascii_lowercase())
        })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_ansi(false)
        // CloudWatch stamps every line with its ingestion time.
        .without_time()
        .with_env_filter(filter)
        .init();
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A required, non-empty environment variable, with a hint that says what it is for.
pub fn required_env(name: &'static str, hint: &'static str) -> Result<String, crate::AwsError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or(crate::AwsError::MissingEnv { name, hint })
}

/// A whole number of seconds from the environment variable `name`, or `default` when it is
/// not set.
pub fn seconds_env(name: &'static str, default: i64) -> Result<i64, crate::AwsError> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse::<i64>()
            .map_err(|_| crate::AwsError::InvalidSetting {
                name,
                value,
                reason: "not a whole number of seconds".to_owned(),
            }),
        Err(_) => Ok(default),
    }
}

/// A positive whole number from the environment variable `name`, or `default` when it is not
/// set (e.g. `SLUICE_TENANT_BUCKETS`).
pub fn count_env(name: &'static str, default: u32) -> Result<u32, crate::AwsError> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| crate::AwsError::InvalidSetting {
                name,
                value,
                reason: "not a positive whole number".to_owned(),
            }),
        Err(_) => Ok(default),
    }
}
