//! The rules the demo installs: the example rules shipped in `plugins/`, registered for every
//! demo tenant through the same registry code the Lambda function runs.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bytes::Bytes;
use sluice_core::BlobStore;
use sluice_rules::tenant_rules::{RegistryStatus, register};
use sluice_rules::{Host, Policy};

/// Example rules the demo uses: (crate name, file name of the built component).
pub const DEMO_RULES: [(&str, &str); 2] = [
    ("threshold", "threshold.wasm"),
    ("new-pattern", "new_pattern.wasm"),
];

/// Where the built components are looked for.
pub fn default_rules_dir() -> PathBuf {
    PathBuf::from("plugins/target/wasm32-wasip2/release")
}

/// Uploads and registers the demo rules for `tenant`. Returns the statuses, or an empty list
/// when the components are not built.
pub async fn install(
    host: &Host,
    store: &dyn BlobStore,
    rules_dir: &Path,
    examples_dir: &Path,
    tenant: &str,
) -> anyhow::Result<Vec<(String, RegistryStatus)>> {
    let mut statuses = Vec::new();
    for (name, file) in DEMO_RULES {
        let wasm_path = rules_dir.join(file);
        let Ok(wasm) = std::fs::read(&wasm_path) else {
            continue;
        };
        let manifest_path = examples_dir.join(name).join("rule.toml");
        let manifest = std::fs::read(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        store
            .put(
                &format!("rules/{tenant}/{name}/module.wasm"),
                Bytes::from(wasm),
                "application/wasm",
            )
            .await?;
        store
            .put(
                &format!("rules/{tenant}/{name}/rule.toml"),
                Bytes::from(manifest),
                "application/toml",
            )
            .await?;
        let status = register(host, store, &Policy::default(), tenant, name).await?;
        statuses.push((name.to_owned(), status));
    }
    Ok(statuses)
}
