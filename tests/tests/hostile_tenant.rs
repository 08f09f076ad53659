//! The hostile tenant end to end (docs/ARCHITECTURE.md §10), on the emulator: `sluice serve` in
//! front of a Kinesis stream, its tenant API over the rules bucket with the registry running
//! in-process, and the local runner storing what reached the stream.
//!
//! acme uploads a rule and sets its configuration through the API; mallory, with keys of her
//! own, tries every way into acme's rules, configuration, secrets and data, and to get native
//! code or an inside address past the boundary. Each attempt is refused with its status; at
//! the end acme's rule, versions, configuration, webhook secret and rows are exactly as acme
//! left them, and acme keeps working (a new version, a rollback).
//!
//! Needs an emulator (`SLUICE_TEST_ENDPOINT`), the rule components built in `plugins/`
//! (or `SLUICE_PLUGINS_WASM_DIR`) and `$SLUICE_PYTHON` with DuckDB.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use aws_config::SdkConfig;
use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_core::BlobStore as _;
use sluice_core::alerting::webhook_secrets;
use sluice_core::tenancy::limits::TenantLimits;
use sluice_core::tenancy::{KeyStore, Pepper, Scope};
use sluice_e2e::{TestBucket, endpoint, rule_component};
use sluice_local::provision::{self, Clients, Resources};

type TestResult = anyhow::Result<()>;

const PEPPER: &str = "hostile-tenant-e2e-pepper";
/// The front door's body limit in this test, so that an oversized upload is cheap to send.
const MAX_BODY: usize = 1 << 20;
const ACME_CONFIG: &str = "[[webhooks]]\nid = \"ops\"\nurl = \"https://hooks.example.com/acme\"\n";

struct Keys {
    acme_admin: String,
    acme_ingest: String,
    mallory_admin: String,
    mallory_rules: String,
    mallory_ingest: String,
    mallory_revoked: String,
}

struct Door {
    data: TestBucket,
    rules: TestBucket,
    stream: String,
    sdk: SdkConfig,
    state_dir: tempfile::TempDir,
    server: sluice_e2e::Served,
    http: reqwest::Client,
    keys: Keys,
}

impl Door {
    async fn start() -> anyhow::Result<Self> {
        let data = TestBucket::create().await?;
        let rules = TestBucket::create().await?;
        let suffix = format!("{}-{:08x}", std::process::id(), fastrand::u32(..));
        let sdk = sluice_e2e::sdk_config().await;
        let resources = Resources {
            stream: format!("sluice-e2e-hostile-{suffix}"),
            shards: 1,
            data_bucket: data.name.clone(),
            rules_bucket: rules.name.clone(),
            failure_queue: format!("sluice-e2e-hostile-failures-{suffix}"),
        };
        provision::up(&Clients::new(&sdk), &resources).await?;
        let store = KeyStore::new(Arc::new(rules.store()), Pepper::from_text(PEPPER)?);
        store.create_tenant("acme").await?;
        store.create_tenant("mallory").await?;
        let key = |tenant: &'static str, scope| {
            let store = store.clone();
            async move { anyhow::Ok(store.create_key(tenant, scope, None).await?) }
        };
        let revoked = key("mallory", Scope::Admin).await?;
        store.revoke_key("mallory", &revoked.record.key_id).await?;
        let keys = Keys {
            acme_admin: key("acme", Scope::Admin).await?.token,
            acme_ingest: key("acme", Scope::Ingest).await?.token,
            mallory_admin: key("mallory", Scope::Admin).await?.token,
            mallory_rules: key("mallory", Scope::Rules).await?.token,
            mallory_ingest: key("mallory", Scope::Ingest).await?.token,
            mallory_revoked: revoked.token,
        };
        let max_body = MAX_BODY.to_string();
        let server = sluice_e2e::serve(
            &[
                "--stream",
                &resources.stream,
                "--bucket",
                &rules.name,
                "--endpoint",
                &endpoint(),
            ],
            &[
                ("SLUICE_KEY_PEPPER", PEPPER),
                ("SLUICE_API_MAX_BODY_BYTES", &max_body),
            ],
        )?;
        Ok(Self {
            data,
            rules,
            stream: resources.stream,
            sdk,
            state_dir: tempfile::tempdir()?,
            server,
            // A fresh connection per request: the server refuses some requests before it has
            // read their bodies and then closes the connection, and a pooled connection it has
            // just closed would fail the next request with a broken pipe.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .pool_max_idle_per_host(0)
                .build()?,
            keys,
        })
    }

    /// Sends a request; the status and the body as JSON (`Null` when it is not JSON).
    async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .http
            .request(method.clone(), format!("{}{path}", self.server.url))
            .bearer_auth(key)
            .body(body)
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `call` that must answer `want`; returns the body.
    async fn expect(
        &self,
        want: StatusCode,
        method: Method,
        path: &str,
        key: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<Value> {
        let (status, answer) = self.call(method.clone(), path, key, body).await?;
        ensure!(
            status == want,
            "{method} {path}: {status}, expected {want}: {answer}"
        );
        Ok(answer)
    }

    /// Everything acme has in the rules bucket that is not a verdict: what mallory must not
    /// change.
    async fn acme_objects(&self) -> anyhow::Result<Vec<(String, bytes::Bytes)>> {
        let store = self.rules.store();
        let mut out = Vec::new();
        for prefix in [
            "rules/acme/",
            "control/registry/acme/",
            "tenants/acme",
            "control/tenants/acme/",
        ] {
            for key in store.list(prefix).await? {
                let body = store.get(&key).await?.unwrap_or_default();
                out.push((key, body));
            }
        }
        Ok(out)
    }

    /// Runs the pipeline until the stream is drained, then reads every stored row.
    async fn stored_rows(&self) -> anyhow::Result<Vec<Value>> {
        sluice_e2e::drain_and_read_rows(
            &self.sdk,
            &self.stream,
            &self.data,
            &self.rules.name,
            self.state_dir.path(),
            &["tenant", "service", "message"],
        )
        .await
    }
}

fn upload(manifest: &str, component: &[u8]) -> String {
    json!({
        "manifest": manifest,
        "component_base64": base64::engine::general_purpose::STANDARD.encode(component),
    })
    .to_string()
}

fn threshold_toml(warning: f64) -> String {
    format!(
        "[rule]\nname = \"threshold\"\napi = \"0.1.0\"\n\n[params]\nmetric = \"error_rate\"\nwarning = {warning}\ncritical = 0.5\nmin_count = 10\n"
    )
}

fn ndjson(service: &str, claimed_tenant: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({"service": service, "msg": format!("m{i}"), "tenant": claimed_tenant})
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn mallory_is_refused_everywhere_and_acme_is_untouched_and_keeps_working() -> TestResult {
    let door = Door::start().await?;
    let k = &door.keys;
    let threshold = rule_component("threshold.wasm")?;

    // acme: a rule (version 1), a configuration with a generated secret, 5 records.
    let v1 = door
        .expect(
            StatusCode::OK,
            Method::PUT,
            "/v1/rules/threshold",
            &k.acme_admin,
            upload(&threshold_toml(0.1), &threshold),
        )
        .await?;
    ensure!(
        v1["status"] == "accepted" && v1["version"] == 1 && v1["active_version"] == 1,
        "{v1}"
    );
    let config = door
        .expect(
            StatusCode::OK,
            Method::PUT,
            "/v1/config",
            &k.acme_admin,
            ACME_CONFIG,
        )
        .await?;
    let acme_secret = config["new_secrets"]["ops"]
        .as_str()
        .context("acme's secret is shown once")?
        .to_owned();
    door.expect(
        StatusCode::OK,
        Method::POST,
        "/v1/ingest",
        &k.acme_ingest,
        ndjson("acme-api", "acme", 5),
    )
    .await?;
    let acme_before = door.acme_objects().await?;

    // 1. acme's rules and configuration through mallory's keys: bodies and URLs naming acme,
    //    names that climb out of her namespace. Each is refused or reaches only her own.
    for key in [&k.mallory_admin, &k.mallory_rules] {
        let (status, _) = door
            .call(
                Method::PUT,
                "/v1/rules/threshold",
                key,
                json!({"manifest": threshold_toml(0.9), "component_base64": "AA==", "tenant": "acme"})
                    .to_string(),
            )
            .await?;
        ensure!(
            status == StatusCode::BAD_REQUEST,
            "a body naming acme: {status}"
        );
        for path in ["/v1/rules/threshold", "/v1/rules/threshold/versions"] {
            door.expect(StatusCode::NOT_FOUND, Method::GET, path, key, "")
                .await?;
        }
        door.expect(
            StatusCode::NOT_FOUND,
            Method::DELETE,
            "/v1/rules/threshold",
            key,
            "",
        )
        .await?;
        door.expect(
            StatusCode::NOT_FOUND,
            Method::POST,
            "/v1/rules/threshold/rollback?to=1",
            key,
            "",
        )
        .await?;
        for path in [
            "/v1/rules/..%2Facme%2Fthreshold",
            "/v1/rules/acme%2Fthreshold",
            "/v1/rules/..",
            "/v1/rules/%2E%2E",
            "/v1/rules/..%5Cacme",
            "/v1/tenants/acme/rules/threshold",
            "/v1/rules/acme/threshold",
        ] {
            for method in [Method::GET, Method::PUT, Method::DELETE] {
                // The router refuses such a path before it reads the body, and may close the
                // connection while the upload is still being sent. Then the same request
                // without a body must be refused too (and the end of the test checks that
                // nothing of acme's changed).
                let status = match door
                    .call(
                        method.clone(),
                        path,
                        key,
                        upload(&threshold_toml(0.9), &threshold),
                    )
                    .await
                {
                    Ok((status, _)) => status,
                    Err(_) => door.call(method.clone(), path, key, "").await?.0,
                };
                ensure!(
                    status.is_client_error(),
                    "{method} {path}: {status} must be refused"
                );
            }
        }
        let (status, listed) = door.call(Method::GET, "/v1/rules", key, "").await?;
        ensure!(
            status == StatusCode::OK && listed["rules"] == json!([]),
            "mallory sees no rules: {status} {listed}"
        );
    }
    door.expect(
        StatusCode::NOT_FOUND,
        Method::GET,
        "/v1/config",
        &k.mallory_admin,
        "",
    )
    .await?;
    door.expect(
        StatusCode::NOT_FOUND,
        Method::POST,
        "/v1/config/webhooks/ops/rotate-secret",
        &k.mallory_admin,
        "",
    )
    .await?;
    for path in ["/v1/tenants/acme/config", "/v1/config/../tenants/acme"] {
        let (status, _) = door.call(Method::GET, path, &k.mallory_admin, "").await?;
        ensure!(status.is_client_error(), "GET {path}: {status}");
    }
    // A configuration naming acme, an env variable or a file as the secret: unknown fields.
    for hostile in [
        "tenant = \"acme\"\n[[webhooks]]\nid = \"x\"\nurl = \"https://hooks.example.com/m\"\n",
        "[[webhooks]]\nid = \"x\"\nurl = \"https://hooks.example.com/m\"\nsecret_env = \"AWS_SECRET_ACCESS_KEY\"\n",
        "[[webhooks]]\nid = \"x\"\nurl = \"https://hooks.example.com/m\"\nsecret_file = \"/proc/self/environ\"\n",
    ] {
        door.expect(
            StatusCode::BAD_REQUEST,
            Method::PUT,
            "/v1/config",
            &k.mallory_admin,
            hostile,
        )
        .await?;
    }

    // 2. Webhooks that reach inside: refused on write with the reason.
    for url in [
        "https://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[fd00:ec2::254]/hook",
        "https://localhost/hook",
        "https://2130706433/hook",
        "http://hooks.example.com/plain-http",
    ] {
        let config = format!("[[webhooks]]\nid = \"x\"\nurl = \"{url}\"\n");
        let answer = door
            .expect(
                StatusCode::BAD_REQUEST,
                Method::PUT,
                "/v1/config",
                &k.mallory_admin,
                config,
            )
            .await?;
        ensure!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{url}: the reason is given: {answer}"
        );
    }

    // 3. Native code and things that are not components: judged and rejected, never active.
    let host = sluice_rules::Host::new(sluice_rules::EngineConfig::default())?;
    let native = host.precompile(&threshold)?.bytes().to_vec();
    for (name, bytes) in [
        ("cwasm", native),
        ("elf", b"\x7fELF\x02\x01\x01\0native".to_vec()),
        ("core-module", b"\0asm\x01\0\0\0".to_vec()),
    ] {
        let path = format!("/v1/rules/{name}");
        if upload(&threshold_toml(0.1), &bytes).len() > MAX_BODY {
            // A precompiled debug build of the rule, base64 in JSON, is bigger than the front door
            // takes: it is
            // refused there, before anything is stored (the ELF case below is judged).
            door.expect(
                StatusCode::PAYLOAD_TOO_LARGE,
                Method::PUT,
                &path,
                &k.mallory_rules,
                upload(&threshold_toml(0.1), &bytes),
            )
            .await?;
            continue;
        }
        let verdict = door
            .expect(
                StatusCode::OK,
                Method::PUT,
                &path,
                &k.mallory_rules,
                upload(&threshold_toml(0.1), &bytes),
            )
            .await?;
        ensure!(
            verdict["status"] == "rejected"
                && verdict["code"].is_string()
                && verdict["active_version"].is_null(),
            "{name}: {verdict}"
        );
    }

    // 4. Oversized: a body past the front door's limit, a manifest past 64 KiB.
    let (status, _) = door
        .call(
            Method::PUT,
            "/v1/rules/huge",
            &k.mallory_rules,
            upload(&threshold_toml(0.1), &vec![0_u8; MAX_BODY]),
        )
        .await?;
    ensure!(
        status == StatusCode::PAYLOAD_TOO_LARGE,
        "oversized body: {status}"
    );
    door.expect(
        StatusCode::PAYLOAD_TOO_LARGE,
        Method::PUT,
        "/v1/rules/huge",
        &k.mallory_rules,
        upload(&"#".repeat(65 << 10), b"\0asm"),
    )
    .await?;

    // 5. Her limits: one rule. A second one is refused; replacing the first is not.
    let mut limits = TenantLimits::default();
    limits.set("max_rules=1")?;
    limits.save(&door.rules.store(), "mallory").await?;
    door.expect(
        StatusCode::OK,
        Method::PUT,
        "/v1/rules/first",
        &k.mallory_rules,
        upload(&threshold_toml(0.1), &threshold),
    )
    .await?;
    let refused = door
        .expect(
            StatusCode::CONFLICT,
            Method::PUT,
            "/v1/rules/second",
            &k.mallory_rules,
            upload(&threshold_toml(0.1), &threshold),
        )
        .await?;
    ensure!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("limit")),
        "{refused}"
    );

    // 6. Keys: revoked, forged, acme's key id with mallory's secret, an ingest key for rules.
    let (_, mallory_secret) = k
        .mallory_admin
        .rsplit_once('_')
        .context("a key is slk_<id>_<secret>")?;
    let acme_id = k
        .acme_admin
        .strip_prefix("slk_")
        .and_then(|t| t.split_once('_'))
        .map(|(id, _)| id)
        .context("a key is slk_<id>_<secret>")?;
    let spliced = format!("slk_{acme_id}_{mallory_secret}");
    for key in [
        k.mallory_revoked.as_str(),
        "slk_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000",
        spliced.as_str(),
    ] {
        for (method, path) in [
            (Method::GET, "/v1/config"),
            (Method::GET, "/v1/rules"),
            (Method::DELETE, "/v1/rules/threshold"),
            (Method::POST, "/v1/ingest"),
        ] {
            door.expect(StatusCode::UNAUTHORIZED, method, path, key, "")
                .await?;
        }
    }
    door.expect(
        StatusCode::FORBIDDEN,
        Method::GET,
        "/v1/rules",
        &k.mallory_ingest,
        "",
    )
    .await?;
    door.expect(
        StatusCode::FORBIDDEN,
        Method::GET,
        "/v1/config",
        &k.mallory_rules,
        "",
    )
    .await?;

    // 7. Records claiming acme: stored under mallory.
    door.expect(
        StatusCode::OK,
        Method::POST,
        "/v1/ingest",
        &k.mallory_ingest,
        ndjson("mallory-claims-acme", "acme", 7),
    )
    .await?;

    // acme: untouched, byte for byte.
    ensure!(
        door.acme_objects().await? == acme_before,
        "acme's rules, versions, configuration or secrets changed"
    );
    let secret = webhook_secrets::lookup(&door.rules.store(), "acme", "ops").await?;
    ensure!(secret.as_ref().map(|s| s.expose()) == Some(acme_secret.as_str()));
    let rows = door.stored_rows().await?;
    let acme_rows: Vec<&Value> = rows.iter().filter(|r| r["tenant"] == "acme").collect();
    ensure!(
        acme_rows.len() == 5 && acme_rows.iter().all(|r| r["service"] == "acme-api"),
        "acme's rows: {rows:#?}"
    );
    ensure!(
        rows.iter()
            .filter(|r| r["service"] == "mallory-claims-acme")
            .all(|r| r["tenant"] == "mallory"),
        "{rows:#?}"
    );

    // acme keeps working: a rejected upload leaves version 1 active; a new version, a rollback.
    let rejected = door
        .expect(
            StatusCode::OK,
            Method::PUT,
            "/v1/rules/threshold",
            &k.acme_admin,
            upload(&threshold_toml(0.2), b"\0asm\x01\0\0\0"),
        )
        .await?;
    ensure!(
        rejected["status"] == "rejected"
            && rejected["version"] == 2
            && rejected["active_version"] == 1,
        "{rejected}"
    );
    let v3 = door
        .expect(
            StatusCode::OK,
            Method::PUT,
            "/v1/rules/threshold",
            &k.acme_admin,
            upload(&threshold_toml(0.3), &threshold),
        )
        .await?;
    ensure!(v3["version"] == 3 && v3["active_version"] == 3, "{v3}");
    door.expect(
        StatusCode::CONFLICT,
        Method::POST,
        "/v1/rules/threshold/rollback?to=2",
        &k.acme_admin,
        "",
    )
    .await?;
    let back = door
        .expect(
            StatusCode::OK,
            Method::POST,
            "/v1/rules/threshold/rollback?to=1",
            &k.acme_admin,
            "",
        )
        .await?;
    ensure!(back["active_version"] == 1, "{back}");
    let versions = door
        .expect(
            StatusCode::OK,
            Method::GET,
            "/v1/rules/threshold/versions",
            &k.acme_admin,
            "",
        )
        .await?;
    let summary: Vec<(u64, String)> = versions["versions"]
        .as_array()
        .context("versions")?
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap_or_default(),
                v["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    ensure!(
        summary
            == [
                (1, "accepted".to_owned()),
                (2, "rejected".to_owned()),
                (3, "accepted".to_owned())
            ]
            && versions["active_version"] == 1,
        "{versions}"
    );
    // And acme's DELETE removes the rule, its versions and its verdict.
    door.expect(
        StatusCode::NO_CONTENT,
        Method::DELETE,
        "/v1/rules/threshold",
        &k.acme_admin,
        "",
    )
    .await?;
    door.expect(
        StatusCode::NOT_FOUND,
        Method::GET,
        "/v1/rules/threshold",
        &k.acme_admin,
        "",
    )
    .await?;
    let store = door.rules.store();
    ensure!(store.list("control/registry/acme/").await?.is_empty());
    ensure!(store.list("rules/acme/").await?.is_empty());
    Ok(())
}
