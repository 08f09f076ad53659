//! Where the rules, alerts and backtest commands read and write: a local directory (the
//! embedded default, with the same keys as the buckets) or an S3 bucket on any endpoint.

use std::path::PathBuf;

use anyhow::Context as _;
use sluice_aws::{AwsSettings, S3BlobStore, load_sdk_config, s3_client};
use sluice_core::{BlobStore, LocalDirStore};

/// A single-threaded async runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// An S3 bucket as a blob store. The endpoint comes from `endpoint`, else `SLUICE_ENDPOINT_URL`,
/// else the SDK's own settings (`AWS_ENDPOINT_URL`, ...); credentials and region from the SDK's
/// usual chain.
pub async fn s3(bucket: &str, endpoint: Option<String>) -> anyhow::Result<S3BlobStore> {
    let settings = AwsSettings::from_env()
        .context("reading the AWS settings")?
        .with_endpoint(endpoint);
    let sdk = load_sdk_config(&settings).await;
    Ok(S3BlobStore::new(s3_client(&sdk), bucket))
}

/// A data location given as `DIR` or `s3://bucket[/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl std::str::FromStr for Location {
    type Err = String;

    fn from_str(s: &str) -> Result<Location, String> {
        let Some(rest) = s.strip_prefix("s3://") else {
            if s.is_empty() {
                return Err("empty location".into());
            }
            return Ok(Location::Dir(PathBuf::from(s)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{s}: no bucket name after s3://"));
        }
        let prefix = prefix.trim_matches('/');
        Ok(Location::S3 {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(dir) => write!(f, "{}", dir.display()),
            Location::S3 { bucket, prefix } => {
                write!(f, "s3://{bucket}/{}", prefix.trim_end_matches('/'))
            }
        }
    }
}

impl Location {
    /// Where `key` is, for messages: a path or an `s3://` URL.
    pub fn show_key(&self, key: &str) -> String {
        match self {
            Location::Dir(dir) => dir.join(key).display().to_string(),
            Location::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}{key}"),
        }
    }

    /// The store, and the prefix its keys live under (`""` for a directory).
    pub async fn open(
        &self,
        endpoint: Option<String>,
    ) -> anyhow::Result<(Box<dyn BlobStore>, String)> {
        Ok(match self {
            Location::Dir(dir) => (Box::new(LocalDirStore::new(dir)), String::new()),
            Location::S3 { bucket, prefix } => {
                (Box::new(s3(bucket, endpoint).await?), prefix.clone())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_directories_or_s3_urls_with_an_optional_prefix() {
        let parse = |s: &str| s.parse::<Location>();
        assert_eq!(parse("data"), Ok(Location::Dir("data".into())));
        assert_eq!(
            parse("s3://bucket"),
            Ok(Location::S3 {
                bucket: "bucket".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            parse("s3://bucket/a/b/"),
            Ok(Location::S3 {
                bucket: "bucket".into(),
                prefix: "a/b/".into()
            })
        );
        assert!(parse("s3:///x").is_err());
        let s3 = parse("s3://bucket/a/").expect("valid");
        assert_eq!(s3.show_key("metrics/x"), "s3://bucket/a/metrics/x");
        assert_eq!(s3.to_string(), "s3://bucket/a");
    }
}
