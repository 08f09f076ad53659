//! The front door's settings, with their environment variables.

use sluice_core::IngestConfig;

use crate::error::ApiError;

/// Limits and quotas of the front door.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The largest body accepted as sent (`SLUICE_API_MAX_BODY_BYTES`, default 6 MiB: Lambda's
    /// request payload limit).
    pub max_body_bytes: usize,
    /// The largest body once decompressed (`SLUICE_API_MAX_DECODED_BYTES`, default 32 MiB).
    pub max_decoded_bytes: usize,
    /// Requests per second a tenant may make, sustained (`SLUICE_API_RATE`, default 500).
    pub rate_per_second: f64,
    /// Requests a tenant may make in a burst (`SLUICE_API_BURST`, default 1000).
    pub burst: f64,
    /// What ingest accepts (record size, event-time window): the front door rejects the same.
    pub ingest: IngestConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 6 << 20,
            max_decoded_bytes: 32 << 20,
            rate_per_second: 500.0,
            burst: 1000.0,
            ingest: IngestConfig::default(),
        }
    }
}

impl ApiConfig {
    /// The defaults, overridden by whichever of the variables above are set.
    pub fn from_env() -> Result<Self, ApiError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any source of variables.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ApiError> {
        let mut config = Self::default();
        let number = |name: &str| -> Result<Option<f64>, ApiError> {
            match get(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => match v.trim().parse::<f64>() {
                    Ok(n) if n.is_finite() && n > 0.0 => Ok(Some(n)),
                    _ => Err(ApiError::Config(format!(
                        "{name}={v:?}: expected a positive number"
                    ))),
                },
            }
        };
        if let Some(n) = number("SLUICE_API_MAX_BODY_BYTES")? {
            config.max_body_bytes = n as usize;
        }
        if let Some(n) = number("SLUICE_API_MAX_DECODED_BYTES")? {
            config.max_decoded_bytes = n as usize;
        }
        if let Some(n) = number("SLUICE_API_RATE")? {
            config.rate_per_second = n;
        }
        if let Some(n) = number("SLUICE_API_BURST")? {
            config.burst = n;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_override_the_defaults_and_bad_values_are_refused() -> Result<(), ApiError> {
        let config = ApiConfig::from_lookup(|name| match name {
            "SLUICE_API_RATE" => Some("5".into()),
            "SLUICE_API_MAX_BODY_BYTES" => Some("1024".into()),
            _ => None,
        })?;
        assert_eq!(config.rate_per_second, 5.0);
        assert_eq!(config.max_body_bytes, 1024);
        assert_eq!(config.burst, ApiConfig::default().burst);
        let bad = ApiConfig::from_lookup(|name| (name == "SLUICE_API_BURST").then(|| "-1".into()));
        assert!(matches!(bad, Err(ApiError::Config(_))), "{bad:?}");
        Ok(())
    }
}
