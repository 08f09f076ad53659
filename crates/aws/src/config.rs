//! SDK configuration, built once per process.
//!
//! Endpoint override, in order of precedence:
//! 1. an explicit URL ([`AwsSettings::endpoint_url`], e.g. from a `--endpoint` flag);
//! 2. `SLUICE_ENDPOINT_URL` (read by [`AwsSettings::from_env`]);
//! 3. `AWS_ENDPOINT_URL` (and the SDK's other standard endpoint settings), which the SDK reads
//!    by itself.
//!
//! Whenever an override is in force, S3 uses path-style addressing (`http://host/bucket/key`),
//! which moto, LocalStack and most S3-compatible stores need.
//!
//! Retries use the SDK's standard retry mode. The number of attempts (3 by default) can be set
//! with `SLUICE_AWS_MAX_ATTEMPTS`, or with the SDK's own `AWS_MAX_ATTEMPTS` / `AWS_RETRY_MODE`.
//!
//! The region comes from [`AwsSettings::region`], else the SDK's default chain (`AWS_REGION`,
//! profile, instance metadata), else [`DEFAULT_REGION`].

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::error::AwsError;

/// sluice's own endpoint override variable; wins over `AWS_ENDPOINT_URL`.
pub const ENDPOINT_ENV: &str = "SLUICE_ENDPOINT_URL";
/// Maximum attempts per AWS call (standard retry mode), including the first.
pub const MAX_ATTEMPTS_ENV: &str = "SLUICE_AWS_MAX_ATTEMPTS";
/// The SDK's own endpoint override variable (read by the SDK, listed here for diagnostics).
pub const AWS_ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL";
/// The SDK's S3-only endpoint override variable.
pub const AWS_S3_ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_S3";
/// Region used when neither the settings nor the environment name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// What a process decides about AWS before building its clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// Endpoint override for every service (moto, LocalStack, MinIO...).
    pub endpoint_url: Option<String>,
    /// Region; `None` defers to the SDK's chain, then [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// Maximum attempts per call in standard retry mode; `None` keeps the SDK default.
    pub max_attempts: Option<u32>,
}

impl AwsSettings {
    /// Settings from the process environment (`SLUICE_ENDPOINT_URL`, `SLUICE_AWS_MAX_ATTEMPTS`).
    pub fn from_env() -> Result<Self, AwsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Settings from any variable lookup (the environment, a test map...).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AwsError> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let max_attempts = match non_empty(MAX_ATTEMPTS_ENV) {
            None => None,
            Some(raw) => Some(parse_max_attempts(&raw)?),
        };
        Ok(Self {
            endpoint_url: non_empty(ENDPOINT_ENV).map(|v| v.trim().to_owned()),
            region: None,
            max_attempts,
        })
    }

    /// The same settings with an explicit endpoint override (ignored when `None`).
    #[must_use]
    pub fn with_endpoint(mut self, endpoint_url: Option<String>) -> Self {
        if let Some(url) = endpoint_url.filter(|u| !u.trim().is_empty()) {
            self.endpoint_url = Some(url);
        }
        self
    }

    /// The same settings with an explicit region.
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
}

fn parse_max_attempts(raw: &str) -> Result<u32, AwsError> {
    let invalid = |reason: &str| AwsError::InvalidSetting {
        name: MAX_ATTEMPTS_ENV,
        value: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let n: u32 = raw
        .trim()
        .parse()
        .map_err(|_| invalid("expected a whole number"))?;
    if n == 0 {
        return Err(invalid("at least 1 attempt is needed"));
    }
    Ok(n)
}

/// Loads the shared SDK configuration. Call it once, at start-up, and build every client from
/// the result.
pub async fn load_sdk_config(settings: &AwsSettings) -> SdkConfig {
    let region = RegionProviderChain::first_try(settings.region.clone().map(Region::new))
        .or_default_provider()
        .or_else(Region::from_static(DEFAULT_REGION));
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(attempts) = settings.max_attempts {
        loader = loader.retry_config(RetryConfig::standard().with_max_attempts(attempts));
    }
    let config = loader.load().await;
    tracing::debug!(
        region = config.region().map(Region::as_ref),
        endpoint_url = config.endpoint_url(),
        "AWS SDK configuration loaded"
    );
    config
}

/// Whether S3 must use path-style addressing: yes whenever any endpoint override is in force.
pub fn needs_path_style(config: &SdkConfig, s3_endpoint_env: Option<&str>) -> bool {
    config.endpoint_url().is_some() || s3_endpoint_env.is_some_and(|v| !v.trim().is_empty())
}

/// An S3 client for `config`, path-style when an endpoint override is in force.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let s3_env = std::env::var(AWS_S3_ENDPOINT_ENV).ok();
    let path_style = needs_path_style(config, s3_env.as_deref());
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

/// A Kinesis client for `config` (the endpoint override, region, retries and credentials all
/// come from `config`). Build it once and clone it: clones share the connection pool.
pub fn kinesis_client(config: &SdkConfig) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn sluice_endpoint_and_attempts_are_read_from_the_environment() -> Result<(), AwsError> {
        let settings = AwsSettings::from_lookup(lookup(&[
            (ENDPOINT_ENV, " http://127.0.0.1:5055 "),
            (MAX_ATTEMPTS_ENV, "5"),
        ]))?;
        assert_eq!(
            settings.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5055")
        );
        assert_eq!(settings.max_attempts, Some(5));
        Ok(())
    }

    #[test]
    fn empty_variables_mean_no_override() -> Result<(), AwsError> {
        let settings =
            AwsSettings::from_lookup(lookup(&[(ENDPOINT_ENV, ""), (MAX_ATTEMPTS_ENV, " ")]))?;
        assert_eq!(settings, AwsSettings::default());
        Ok(())
    }

    #[test]
    fn zero_or_garbage_max_attempts_is_rejected_with_the_variable_name() {
        for bad in ["0", "three", "-1"] {
            let err = AwsSettings::from_lookup(lookup(&[(MAX_ATTEMPTS_ENV, bad)]));
            match err {
                Err(e @ AwsError::InvalidSetting { .. }) => {
                    assert!(e.to_string().contains(MAX_ATTEMPTS_ENV), "{e}");
                }
                other => panic!("{bad}: expected InvalidSetting, got {other:?}"),
            }
        }
    }

    #[test]
    fn explicit_endpoint_wins_over_the_environment() -> Result<(), AwsError> {
        let settings = AwsSettings::from_lookup(lookup(&[(ENDPOINT_ENV, "http://env:1")]))?
            .with_endpoint(Some("http://flag:2".to_owned()));
        assert_eq!(settings.endpoint_url.as_deref(), Some("http://flag:2"));
        let kept = settings.clone().with_endpoint(None);
        assert_eq!(kept.endpoint_url.as_deref(), Some("http://flag:2"));
        Ok(())
    }

    #[tokio::test]
    async fn an_endpoint_override_switches_s3_to_path_style() {
        let with_override = load_sdk_config(
            &AwsSettings::default()
                .with_region("eu-west-1")
                .with_endpoint(Some("http://127.0.0.1:9".to_owned())),
        )
        .await;
        assert_eq!(with_override.endpoint_url(), Some("http://127.0.0.1:9"));
        assert_eq!(
            with_override.region().map(Region::as_ref),
            Some("eu-west-1")
        );
        assert!(needs_path_style(&with_override, None));

        let plain = SdkConfig::builder()
            .region(Region::from_static("us-east-1"))
            .build();
        assert!(!needs_path_style(&plain, None));
        assert!(needs_path_style(&plain, Some("http://s3.local")));
    }
}
