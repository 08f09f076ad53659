//! The rules the demo installs: the example rules shipped in `plugins/`, registered for every
//! demo tenant through the same registry code the Lambda function runs. Their manifests are
//! built into the binary, so `sluice demo` runs from any directory once it finds the components.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bytes::Bytes;
use sluice_core::BlobStore;
use sluice_rules::tenant_rules::{RegistryStatus, register};
use sluice_rules::{Host, Policy};

/// An example rule the demo installs.
#[derive(Debug, Clone, Copy)]
pub struct DemoRule {
    /// The rule's name (its crate under `plugins/examples/`).
    pub name: &'static str,
    /// File name of its built component.
    pub component: &'static str,
    /// Its `rule.toml`, as shipped.
    pub manifest: &'static str,
}

/// The example rules the demo uses.
pub const DEMO_RULES: [DemoRule; 2] = [
    DemoRule {
        name: "threshold",
        component: "threshold.wasm",
        manifest: include_str!("../../../plugins/examples/threshold/rule.toml"),
    },
    DemoRule {
        name: "new-pattern",
        component: "new_pattern.wasm",
        manifest: include_str!("../../../plugins/examples/new-pattern/rule.toml"),
    },
];

/// Where `cargo xtask demo` builds the components, relative to the repository.
const COMPONENTS: &str = "plugins/target/wasm32-wasip2/release";

/// Where the built components are looked for: under the current directory when it is the
/// repository, else in the repository this binary was built from.
pub fn default_rules_dir() -> PathBuf {
    let here = PathBuf::from(COMPONENTS);
    if here.is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(COMPONENTS)
}

/// Uploads and registers the demo rules for `tenant`. Returns the statuses, or an empty list
/// when the components are not built.
pub async fn install(
    host: &Host,
    store: &dyn BlobStore,
    rules_dir: &Path,
    examples_dir: Option<&Path>,
    tenant: &str,
) -> anyhow::Result<Vec<(String, RegistryStatus)>> {
    let mut statuses = Vec::new();
    for DemoRule {
        name,
        component,
        manifest,
    } in DEMO_RULES
    {
        let wasm_path = rules_dir.join(component);
        let Ok(wasm) = std::fs::read(&wasm_path) else {
            continue;
        };
        let manifest = match examples_dir {
            Some(dir) => {
                let path = dir.join(name).join("rule.toml");
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
            }
            None => manifest.as_bytes().to_vec(),
        };
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
