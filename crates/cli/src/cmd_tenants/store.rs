//! Where tenants and keys live, as the tenants and serve commands name it: a local directory
//! (`--data DIR`, the embedded default) or the rules/config bucket (`--bucket B`, on AWS or an
//! emulator through `AWS_ENDPOINT_URL`), and the pepper keys are hashed under.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use sluice_core::tenancy::{KeyStore, Pepper};
use sluice_core::{BlobStore, LocalDirStore};

/// The environment variable that holds the key pepper.
pub const PEPPER_ENV: &str = "SLUICE_KEY_PEPPER";

/// `--data DIR` or `--bucket B`.
#[derive(Debug, Clone, Args)]
pub struct KeyStoreArgs {
    /// The embedded default's directory (keys under DIR/control/).
    #[arg(long, global = true, conflicts_with = "bucket")]
    pub data: Option<PathBuf>,
    /// The rules/config bucket (keys under control/); endpoint from --endpoint,
    /// SLUICE_ENDPOINT_URL or AWS_ENDPOINT_URL.
    #[arg(long, global = true, env = "SLUICE_RULES_BUCKET")]
    pub bucket: Option<String>,
    /// Endpoint of S3 (moto, LocalStack).
    #[arg(long, global = true)]
    pub endpoint: Option<String>,
    /// Where a generated key pepper is kept when SLUICE_KEY_PEPPER is not set and --bucket is
    /// used (with --data it is DIR/.sluice/key-pepper).
    #[arg(long, global = true, default_value = ".sluice")]
    pub state_dir: PathBuf,
}

impl KeyStoreArgs {
    /// The blob store holding tenants and keys.
    pub async fn blob_store(&self) -> anyhow::Result<Arc<dyn BlobStore>> {
        match (&self.data, &self.bucket) {
            (Some(dir), _) => Ok(Arc::new(LocalDirStore::new(dir))),
            (None, Some(bucket)) => Ok(Arc::new(
                crate::stores::s3(bucket, self.endpoint.clone()).await?,
            )),
            (None, None) => anyhow::bail!(
                "say where tenants live: --data DIR (embedded default) or --bucket B (or SLUICE_RULES_BUCKET)"
            ),
        }
    }

    /// The pepper: `SLUICE_KEY_PEPPER`, else a generated file next to the data or state.
    pub fn pepper(&self) -> anyhow::Result<Pepper> {
        if let Ok(text) = std::env::var(PEPPER_ENV)
            && !text.trim().is_empty()
        {
            return Pepper::from_text(&text).with_context(|| format!("reading {PEPPER_ENV}"));
        }
        let path = match &self.data {
            Some(dir) => dir.join(".sluice").join("key-pepper"),
            None => self.state_dir.join("key-pepper"),
        };
        Pepper::load_or_create(&path)
            .with_context(|| format!("reading or creating the key pepper {}", path.display()))
    }

    /// The key store.
    pub async fn open(&self) -> anyhow::Result<KeyStore> {
        Ok(KeyStore::new(self.blob_store().await?, self.pepper()?))
    }
}
