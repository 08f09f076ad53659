//! `sluice rules upload`: a component and its manifest into the rules bucket (or a local
//! directory), then what the registry concluded.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use comfy_table::Cell;
use sluice_core::{BlobStore, LocalDirStore};
use sluice_rules::RuleId;
use sluice_rules::tenant_rules::{RegistryStatus, register};

use super::Refused;
use crate::{report, stores, ui};

/// The long `--help` text (clap takes the short one from the command's doc comment).
pub const LONG_ABOUT: &str = "Upload a rule component and its manifest as rules/<tenant>/<rule>/module.wasm and \
rules/<tenant>/<rule>/rule.toml, then show the registry's conclusion (status.json): accepted, \
with the precompiled artifact under compiled/, or rejected with the exact reason.\n\n\
To a local directory (the embedded default, --dir, sluice-data unless told otherwise) no \
function watches, so this command runs the registry itself. To an S3 bucket (--bucket, on \
AWS or any endpoint: --endpoint, SLUICE_ENDPOINT_URL or AWS_ENDPOINT_URL) the registry \
function reacts to the upload: the command waits for its status.json (--wait seconds) and \
says so when it is still pending.\n\n\
With --api (or SLUICE_API_URL) and --key (or SLUICE_API_KEY), and no --bucket, the upload goes \
through the tenant API (PUT /v1/rules/<rule>) for the key's tenant; --tenant is not needed.\n\n\
Exits non-zero when the rule is rejected.";

#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// The tenant the rule belongs to (the bucket path; through the API it is the key's).
    #[arg(long, required_unless_present = "api")]
    tenant: Option<String>,
    /// The rule's name (a directory under rules/<tenant>/).
    #[arg(long)]
    rule: String,
    /// The rule component.
    wasm: PathBuf,
    /// The rule's manifest, uploaded as rule.toml.
    #[arg(long, short)]
    manifest: PathBuf,
    /// A local directory standing in for the rules bucket (the embedded default).
    #[arg(long, conflicts_with = "bucket", default_value = "sluice-data")]
    dir: PathBuf,
    /// The rules bucket.
    #[arg(long)]
    bucket: Option<String>,
    /// S3 endpoint (moto, LocalStack, MinIO...); default: SLUICE_ENDPOINT_URL, then the SDK's
    /// own settings (AWS_ENDPOINT_URL).
    #[arg(long, requires = "bucket")]
    endpoint: Option<String>,
    /// With --bucket: how long to wait for the registry's status.json, in seconds.
    #[arg(long, default_value_t = 30, requires = "bucket")]
    wait: u64,
    /// Print the status as one JSON object.
    #[arg(long)]
    json: bool,
    /// The front door: upload through the tenant API instead of to the bucket.
    #[arg(long, env = "SLUICE_API_URL")]
    api: Option<String>,
    /// The tenant key presented to --api (`rules` or `admin` scope).
    #[arg(long, env = "SLUICE_API_KEY", hide_env_values = true)]
    key: Option<String>,
}

/// The upload through the tenant API; exits non-zero when the verdict is a rejection.
fn run_api(args: &UploadArgs, api: &str) -> anyhow::Result<()> {
    let key = args
        .key
        .clone()
        .context("--api needs --key (or SLUICE_API_KEY)")?;
    let wasm = super::read_wasm(&args.wasm)?;
    super::read_manifest(&args.manifest)?;
    let manifest = std::fs::read(&args.manifest)
        .with_context(|| format!("reading the manifest {}", args.manifest.display()))?;
    let api = crate::tenant_api::ApiArgs {
        api: api.to_owned(),
        key,
    };
    let verdict = crate::tenant_api::upload(&api, &args.rule, &manifest, &wasm)?;
    println!("{}", serde_json::to_string_pretty(&verdict)?);
    if verdict["status"] == "rejected" {
        return Err(Refused {
            what: "rule rejected",
            code: verdict["code"].as_str().unwrap_or("rejected").to_owned(),
            reason: verdict["reason"].as_str().unwrap_or_default().to_owned(),
        }
        .into());
    }
    Ok(())
}

pub fn run(args: UploadArgs) -> anyhow::Result<()> {
    if let (Some(api), None) = (&args.api, &args.bucket) {
        return run_api(&args, api);
    }
    let tenant = args
        .tenant
        .as_deref()
        .context("--tenant is needed without --api")?;
    let id = RuleId::new(tenant, &args.rule)?;
    let wasm = super::read_wasm(&args.wasm)?;
    let manifest_text = std::fs::read(&args.manifest)
        .with_context(|| format!("reading the manifest {}", args.manifest.display()))?;
    // Refuse a manifest that cannot parse before uploading anything.
    super::read_manifest(&args.manifest)?;
    let runtime = stores::runtime()?;
    let status = match &args.bucket {
        None => runtime.block_on(upload_local(&args, &id, wasm, manifest_text))?,
        Some(bucket) => {
            let store = runtime.block_on(stores::s3(bucket, args.endpoint.clone()))?;
            let status = runtime.block_on(upload_s3(&args, &store, &id, wasm, manifest_text))?;
            match status {
                Some(status) => status,
                None => {
                    let key = status_key(&id);
                    if args.json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "status": "pending",
                                "tenant": id.tenant(),
                                "rule": id.rule(),
                                "status_key": format!("s3://{bucket}/{key}"),
                            })
                        );
                    } else {
                        println!(
                            "uploaded to s3://{bucket}/{}; the registry has not written its status yet (pending after {} s).\n\
                             It appears as s3://{bucket}/{key}; if it never does, check the registry function's logs.",
                            id.module_key(),
                            args.wait
                        );
                    }
                    return Ok(());
                }
            }
        }
    };
    let location = match &args.bucket {
        Some(bucket) => format!("s3://{bucket}"),
        None => args.dir.display().to_string(),
    };
    if args.json {
        let mut out = serde_json::to_value(&status)?;
        out["tenant"] = id.tenant().into();
        out["rule"] = id.rule().into();
        out["location"] = location.into();
        println!("{out}");
    } else {
        println!("{}", status_table(&status, &id, &location));
    }
    if !status.accepted() {
        return Err(Refused {
            what: "rule rejected",
            code: status.code.clone().unwrap_or_else(|| "rejected".into()),
            reason: status.reason.clone().unwrap_or_default(),
        }
        .into());
    }
    Ok(())
}

fn status_key(id: &RuleId) -> String {
    format!("rules/{}/{}/status.json", id.tenant(), id.rule())
}

async fn put_upload(
    store: &dyn BlobStore,
    id: &RuleId,
    wasm: Vec<u8>,
    manifest: Vec<u8>,
) -> anyhow::Result<()> {
    // The manifest first: the registry reacts to either object, and whichever reaction comes
    // after the module is written sees both.
    store
        .put(
            &id.manifest_key(),
            Bytes::from(manifest),
            "application/toml",
        )
        .await
        .with_context(|| format!("writing {}", id.manifest_key()))?;
    store
        .put(&id.module_key(), Bytes::from(wasm), "application/wasm")
        .await
        .with_context(|| format!("writing {}", id.module_key()))?;
    Ok(())
}

async fn upload_local(
    args: &UploadArgs,
    id: &RuleId,
    wasm: Vec<u8>,
    manifest: Vec<u8>,
) -> anyhow::Result<RegistryStatus> {
    let store = LocalDirStore::new(&args.dir);
    put_upload(&store, id, wasm, manifest).await?;
    let host = super::host()?;
    let spinner = ui::spinner(args.json, "validating and precompiling (registry)");
    let status = register(
        &host,
        &store,
        &sluice_rules::Policy::default(),
        id.tenant(),
        id.rule(),
    )
    .await
    .context("running the registry on the upload");
    spinner.finish_and_clear();
    status
}

/// Uploads, then polls for the registry's `status.json`; `None` when it has not appeared in
/// time.
async fn upload_s3(
    args: &UploadArgs,
    store: &dyn BlobStore,
    id: &RuleId,
    wasm: Vec<u8>,
    manifest: Vec<u8>,
) -> anyhow::Result<Option<RegistryStatus>> {
    let key = status_key(id);
    let size = wasm.len();
    // An earlier upload's status must not pass for this one's.
    store
        .delete(&key)
        .await
        .with_context(|| format!("removing the previous {key}"))?;
    put_upload(store, id, wasm, manifest).await?;
    let spinner = ui::spinner(args.json, "waiting for the registry function's status.json");
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let found = loop {
        if let Some(body) = store
            .get(&key)
            .await
            .with_context(|| format!("reading {key}"))?
        {
            match serde_json::from_slice::<RegistryStatus>(&body) {
                // A status about another module (the manifest's event, handled before the
                // module was written) is not the last word.
                Ok(status) if status.size_bytes == size => break Some(status),
                Ok(_) => {}
                Err(e) => tracing::warn!(%key, error = %e, "unreadable status.json"),
            }
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    spinner.finish_and_clear();
    Ok(found)
}

fn status_table(status: &RegistryStatus, id: &RuleId, location: &str) -> comfy_table::Table {
    let mut t = report::table(&["registry", "status"]);
    let mut rows: Vec<(&str, String)> = vec![
        ("rule", format!("{}/{}", id.tenant(), id.rule())),
        ("uploaded to", format!("{location}/{}", id.module_key())),
        ("status", status.status.clone()),
    ];
    if let Some(code) = &status.code {
        rows.push(("code", code.clone()));
    }
    if let Some(reason) = &status.reason {
        rows.push(("reason", reason.clone()));
    }
    rows.push(("size", report::bytes(status.size_bytes as u64)));
    if status.accepted() {
        rows.push(("imports", status.imports.join("\n")));
        rows.push(("fuel on canned window", report::count(status.fuel_used)));
        rows.push(("compile time", format!("{} ms", status.compile_ms)));
    }
    if let Some(compiled) = &status.compiled_key {
        rows.push(("precompiled", format!("{location}/{compiled}")));
    }
    for (name, value) in rows {
        t.add_row(vec![Cell::new(name), Cell::new(value)]);
    }
    t
}
