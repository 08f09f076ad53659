//! The tenant API as a client (docs/ARCHITECTURE.md §10): `sluice config get|set|rotate-secret`,
//! `sluice rules status|versions|rollback` and `sluice rules upload --api`, with `--api`/`SLUICE_API_URL` and
//! `--key`/`SLUICE_API_KEY`. The tenant is the key's; nothing here names one.

use anyhow::Context as _;
use base64::Engine as _;

/// Where the front door is and the key to present.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The front door's URL (`FrontDoorUrl` on AWS, `http://127.0.0.1:8080` for `sluice serve`).
    #[arg(long, env = "SLUICE_API_URL")]
    pub api: String,
    /// A tenant key (`admin` scope for config, `rules` or `admin` for rules).
    #[arg(long, env = "SLUICE_API_KEY", hide_env_values = true)]
    pub key: String,
}

/// Sends one request; returns the body on 2xx, the server's exact reason otherwise.
pub fn call(
    api: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<(Vec<u8>, &'static str)>,
) -> anyhow::Result<String> {
    let url = format!("{}{path}", api.trim_end_matches('/'));
    let runtime = crate::stores::runtime()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut request = client.request(method.clone(), &url).bearer_auth(key);
        if let Some((bytes, content_type)) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        if status.is_success() {
            return Ok(text);
        }
        let reason = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        anyhow::bail!("{method} {path}: {status}: {reason}")
    })
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCommand {
    /// Print the tenant's configuration (TOML).
    Get,
    /// Validate and store a configuration (TOML file, `-` for stdin); prints each new webhook
    /// signing secret once.
    Set { file: std::path::PathBuf },
    /// Replace a webhook's signing secret; prints the new one once.
    RotateSecret { id: String },
}

pub fn run_config(args: ConfigArgs) -> anyhow::Result<()> {
    let ApiArgs { api, key } = &args.api;
    match args.command {
        ConfigCommand::Get => {
            print!(
                "{}",
                call(api, key, reqwest::Method::GET, "/v1/config", None)?
            );
        }
        ConfigCommand::Set { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let answer = call(
                api,
                key,
                reqwest::Method::PUT,
                "/v1/config",
                Some((text.into_bytes(), "application/toml")),
            )?;
            let answer: serde_json::Value =
                serde_json::from_str(&answer).context("reading the answer")?;
            println!("configuration stored");
            if let Some(secrets) = answer["new_secrets"].as_object() {
                for (id, secret) in secrets {
                    println!(
                        "webhook {id}: signing secret {} (shown once; keep it now)",
                        secret.as_str().unwrap_or_default()
                    );
                }
            }
        }
        ConfigCommand::RotateSecret { id } => {
            let path = format!("/v1/config/webhooks/{id}/rotate-secret");
            let answer = call(api, key, reqwest::Method::POST, &path, None)?;
            let answer: serde_json::Value =
                serde_json::from_str(&answer).context("reading the answer")?;
            println!(
                "webhook {id}: new signing secret {} (shown once; keep it now)",
                answer["secret"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `PUT /v1/rules/{name}`; returns the verdict as the API answers it.
pub fn upload(
    api: &ApiArgs,
    name: &str,
    manifest: &[u8],
    wasm: &[u8],
) -> anyhow::Result<serde_json::Value> {
    let body = serde_json::json!({
        "manifest": String::from_utf8_lossy(manifest),
        "component_base64": base64::engine::general_purpose::STANDARD.encode(wasm),
    });
    let answer = call(
        &api.api,
        &api.key,
        reqwest::Method::PUT,
        &format!("/v1/rules/{name}"),
        Some((body.to_string().into_bytes(), "application/json")),
    )?;
    serde_json::from_str(&answer).context("reading the answer")
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The rule; every rule of the key's tenant when omitted.
    name: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

/// `sluice rules status [NAME]`: the registry's verdicts through the API, as JSON.
pub fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let path = match &args.name {
        Some(name) => format!("/v1/rules/{name}"),
        None => "/v1/rules".to_owned(),
    };
    print_answer(&args.api, reqwest::Method::GET, &path)
}

#[derive(Debug, clap::Args)]
pub struct VersionsArgs {
    /// The rule.
    name: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// `sluice rules versions NAME`: every version the registry recorded and the active one, as
/// JSON.
pub fn run_versions(args: VersionsArgs) -> anyhow::Result<()> {
    print_answer(
        &args.api,
        reqwest::Method::GET,
        &format!("/v1/rules/{}/versions", args.name),
    )
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The rule.
    name: String,
    /// The earlier accepted version to make active again.
    #[arg(long)]
    to: u64,
    #[command(flatten)]
    api: ApiArgs,
}

/// `sluice rules rollback NAME --to V`: makes version V active again; prints the verdict.
pub fn run_rollback(args: RollbackArgs) -> anyhow::Result<()> {
    print_answer(
        &args.api,
        reqwest::Method::POST,
        &format!("/v1/rules/{}/rollback?to={}", args.name, args.to),
    )
}

fn print_answer(api: &ApiArgs, method: reqwest::Method, path: &str) -> anyhow::Result<()> {
    let answer = call(&api.api, &api.key, method, path, None)?;
    let value: serde_json::Value = serde_json::from_str(&answer).context("reading the answer")?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}
