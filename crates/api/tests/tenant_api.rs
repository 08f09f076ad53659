//! The tenant API as a hostile tenant (mallory) would attack it: config and rules reach only
//! the key's own tenant, scopes hold, webhooks that reach inside and named secrets are refused
//! with the exact reason, secrets are shown once, and the rule limit holds.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use common::{Door, TestResult};
use sluice_core::BlobStore as _;
use sluice_core::alerting::config_validation::validate_tenant_config;
use sluice_core::alerting::egress::EgressPolicy;
use sluice_core::alerting::webhook_secrets;
use sluice_core::tenancy::limits::TenantLimits;

const ACME_CONFIG: &str = "[[webhooks]]\nid = \"ops\"\nurl = \"https://hooks.example.com/acme\"\n";

fn request(method: Method, uri: &str, key: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(body.into())
        .unwrap_or_default()
}

/// Sends `method uri` with `key` through the router.
async fn call(
    door: &Door,
    method: Method,
    uri: &str,
    key: &str,
    body: impl Into<Body>,
) -> Result<(StatusCode, axum::http::HeaderMap, Vec<u8>), Box<dyn std::error::Error>> {
    door.send(request(method, uri, key, body)).await
}

fn upload_body(manifest: &str, component: &[u8], extra: Option<(&str, &str)>) -> String {
    let mut body = serde_json::json!({
        "manifest": manifest,
        "component_base64": base64::engine::general_purpose::STANDARD.encode(component),
    });
    if let (Some((k, v)), Some(map)) = (extra, body.as_object_mut()) {
        map.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
    }
    body.to_string()
}

fn error_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn acme_sets_its_config(door: &Door) -> Result<String, Box<dyn std::error::Error>> {
    let (status, _, body) = call(
        door,
        Method::PUT,
        "/v1/config",
        &door.admin_key,
        ACME_CONFIG,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(answer["new_secrets"]["ops"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::test]
async fn a_generated_secret_is_shown_once_and_never_in_the_stored_config() -> TestResult {
    let door = &Door::new().await?;
    let secret = acme_sets_its_config(door).await?;
    assert!(
        secret.starts_with(webhook_secrets::SECRET_PREFIX),
        "{secret}"
    );
    let stored = webhook_secrets::lookup(door.rules.as_ref(), "acme", "ops").await?;
    assert_eq!(stored.as_ref().map(|s| s.expose()), Some(secret.as_str()));

    let (status, headers, body) =
        call(door, Method::GET, "/v1/config", &door.admin_key, "").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/toml");
    let text = String::from_utf8(body)?;
    assert_eq!(text, ACME_CONFIG);
    assert!(!text.contains(&secret));

    // Writing the same configuration again shows no secret: the webhook has one.
    let (status, _, body) = call(
        door,
        Method::PUT,
        "/v1/config",
        &door.admin_key,
        ACME_CONFIG,
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(answer["new_secrets"], serde_json::json!({}));
    assert!(!String::from_utf8_lossy(&body).contains(&secret));
    Ok(())
}

#[tokio::test]
async fn rotate_replaces_the_secret_and_shows_the_new_one_once() -> TestResult {
    let door = &Door::new().await?;
    let first = acme_sets_its_config(door).await?;
    let (status, _, body) = call(
        door,
        Method::POST,
        "/v1/config/webhooks/ops/rotate-secret",
        &door.admin_key,
        "",
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    let second = answer["secret"].as_str().unwrap_or_default().to_owned();
    assert!(second.starts_with(webhook_secrets::SECRET_PREFIX));
    assert_ne!(first, second);
    let stored = webhook_secrets::lookup(door.rules.as_ref(), "acme", "ops").await?;
    assert_eq!(stored.as_ref().map(|s| s.expose()), Some(second.as_str()));

    let (status, _, _) = call(
        door,
        Method::POST,
        "/v1/config/webhooks/nope/rotate-secret",
        &door.admin_key,
        "",
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn webhooks_that_reach_inside_or_name_a_secret_are_refused_with_the_exact_reason()
-> TestResult {
    let door = &Door::new().await?;
    for config in [
        "[[webhooks]]\nid = \"x\"\nurl = \"https://169.254.169.254/latest/meta-data\"\n",
        "[[webhooks]]\nid = \"x\"\nurl = \"http://hooks.example.com/x\"\n",
        "[[webhooks]]\nid = \"x\"\nurl = \"https://hooks.example.com/x\"\nsecret_env = \"AWS_SECRET_ACCESS_KEY\"\n",
        "[[webhooks]]\nid = \"x\"\nurl = \"https://hooks.example.com/x\"\nsecret_file = \"/etc/shadow\"\n",
        "[[webhooks]]\nid = \"x\"\nurl = \"https://127.0.0.1/x\"\n",
        "[[webhooks]]\nid = \"x\"\nurl = \"https://10.0.0.1/x\"\n",
    ] {
        let expected = match validate_tenant_config(config, EgressPolicy::public_only()) {
            Err(e) => e.to_string(),
            Ok(_) => return Err(format!("the validator accepted {config}").into()),
        };
        let (status, _, body) =
            call(door, Method::PUT, "/v1/config", &door.admin_key, config).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{config}");
        assert_eq!(error_of(&body), expected, "{config}");
    }
    let (status, _, _) = call(door, Method::GET, "/v1/config", &door.admin_key, "").await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    assert_eq!(door.rules.get("tenants/acme.toml").await?, None);
    assert_eq!(
        webhook_secrets::lookup(door.rules.as_ref(), "acme", "x").await?,
        None,
        "no secret for a refused configuration"
    );
    Ok(())
}

#[tokio::test]
async fn mallory_cannot_read_or_write_acmes_config_by_any_path() -> TestResult {
    let door = &Door::new().await?;
    let acme_secret = acme_sets_its_config(door).await?;
    let hostile = "[[webhooks]]\nid = \"ops\"\nurl = \"https://evil.example.net/steal\"\n";
    for uri in [
        "/v1/config",
        "/v1/config?tenant=acme",
        "/v1/tenants/acme/config",
        "/v1/config/../acme",
    ] {
        let (_, _, body) = call(door, Method::PUT, uri, &door.mallory_admin_key, hostile).await?;
        assert!(
            !String::from_utf8_lossy(&body).contains(&acme_secret),
            "{uri}"
        );
        let (_, _, body) = call(door, Method::GET, uri, &door.mallory_admin_key, "").await?;
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("hooks.example.com/acme"), "{uri}: {text}");
    }
    // Mallory's writes landed under mallory, with mallory's own secret.
    let acme = door.rules.get("tenants/acme.toml").await?;
    assert_eq!(acme.as_deref(), Some(ACME_CONFIG.as_bytes()));
    assert!(door.rules.get("tenants/mallory.toml").await?.is_some());
    let acme_stored = webhook_secrets::lookup(door.rules.as_ref(), "acme", "ops").await?;
    assert_eq!(
        acme_stored.as_ref().map(|s| s.expose()),
        Some(acme_secret.as_str())
    );
    let mallory_stored = webhook_secrets::lookup(door.rules.as_ref(), "mallory", "ops").await?;
    assert!(mallory_stored.is_some_and(|s| s.expose() != acme_secret));

    // Rotating "ops" with mallory's key rotates mallory's, never acme's.
    let (status, _, body) = call(
        door,
        Method::POST,
        "/v1/config/webhooks/ops/rotate-secret",
        &door.mallory_admin_key,
        "",
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(!String::from_utf8_lossy(&body).contains(&acme_secret));
    let acme_after = webhook_secrets::lookup(door.rules.as_ref(), "acme", "ops").await?;
    assert_eq!(
        acme_after.as_ref().map(|s| s.expose()),
        Some(acme_secret.as_str())
    );
    Ok(())
}

#[tokio::test]
async fn ingest_keys_get_403_and_rules_keys_cannot_touch_config() -> TestResult {
    let door = &Door::new().await?;
    let upload = upload_body("name = \"r\"\n", b"\0asm", None);
    for (method, uri, body) in [
        (Method::GET, "/v1/config", String::new()),
        (Method::PUT, "/v1/config", ACME_CONFIG.to_owned()),
        (
            Method::POST,
            "/v1/config/webhooks/ops/rotate-secret",
            String::new(),
        ),
        (Method::GET, "/v1/rules", String::new()),
        (Method::GET, "/v1/rules/r", String::new()),
        (Method::PUT, "/v1/rules/r", upload.clone()),
        (Method::DELETE, "/v1/rules/r", String::new()),
    ] {
        let (status, _, _) =
            call(door, method.clone(), uri, &door.ingest_key, body.clone()).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
    }
    let (status, _, _) = call(door, Method::GET, "/v1/config", &door.rules_key, "").await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = call(
        door,
        Method::PUT,
        "/v1/config",
        &door.rules_key,
        ACME_CONFIG,
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(door.rules.list("rules/").await?.is_empty());
    assert_eq!(door.rules.get("tenants/acme.toml").await?, None);
    Ok(())
}

#[tokio::test]
async fn an_upload_is_stored_under_the_keys_tenant_and_pending_until_judged() -> TestResult {
    let door = &Door::new().await?;
    let manifest = "name = \"threshold\"\n";
    let (status, _, body) = call(
        door,
        Method::PUT,
        "/v1/rules/threshold",
        &door.rules_key,
        upload_body(manifest, b"\0asm-component", None),
    )
    .await?;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        door.rules.get("rules/acme/threshold/rule.toml").await?,
        Some(manifest.as_bytes().to_vec().into())
    );
    assert_eq!(
        door.rules.get("rules/acme/threshold/module.wasm").await?,
        Some(b"\0asm-component".to_vec().into())
    );
    let (status, _, body) = call(
        door,
        Method::GET,
        "/v1/rules/threshold",
        &door.rules_key,
        "",
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(answer["status"], "pending");

    // The registry's verdict, as it writes it, is shown with its code and exact reason.
    door.rules
        .put(
            "rules/acme/threshold/status.json",
            bytes::Bytes::from_static(
                br#"{"status":"rejected","code":"forbidden_import","reason":"imports wasi:filesystem","size_bytes":14,"imports":[],"exports":[],"fuel_used":0,"compile_ms":0,"engine_fingerprint":"x"}"#,
            ),
            "application/json",
        )
        .await?;
    let (_, _, body) = call(door, Method::GET, "/v1/rules", &door.admin_key, "").await?;
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(
        answer["rules"],
        serde_json::json!([{
            "name": "threshold", "status": "rejected", "code": "forbidden_import",
            "reason": "imports wasi:filesystem", "size_bytes": 14, "fuel_used": 0,
        }])
    );

    let (status, _, _) = call(
        door,
        Method::DELETE,
        "/v1/rules/threshold",
        &door.rules_key,
        "",
    )
    .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The upload is gone at once; the verdict (with the active version) is the registry's to
    // remove, last: until then the rule reads `removing`.
    assert_eq!(
        door.rules.list("rules/acme/").await?,
        vec!["rules/acme/threshold/status.json".to_owned()]
    );
    let (status, _, body) = call(
        door,
        Method::GET,
        "/v1/rules/threshold",
        &door.rules_key,
        "",
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body)?["status"],
        "removing"
    );
    door.rules
        .delete("rules/acme/threshold/status.json")
        .await?;
    let (status, _, _) = call(
        door,
        Method::GET,
        "/v1/rules/threshold",
        &door.rules_key,
        "",
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn mallory_cannot_read_write_or_delete_acmes_rules() -> TestResult {
    let door = &Door::new().await?;
    let (status, _, _) = call(
        door,
        Method::PUT,
        "/v1/rules/threshold",
        &door.rules_key,
        upload_body("name = \"threshold\"\n", b"acme's", None),
    )
    .await?;
    assert_eq!(status, StatusCode::ACCEPTED);

    // A body naming acme, or a name that tries to climb out, changes nothing of acme's.
    let hostile = upload_body(
        "name = \"threshold\"\n",
        b"mallory's",
        Some(("tenant", "acme")),
    );
    let (status, _, _) = call(
        door,
        Method::PUT,
        "/v1/rules/threshold",
        &door.mallory_rules_key,
        hostile,
    )
    .await?;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unknown fields are refused"
    );
    for uri in [
        "/v1/rules/..",
        "/v1/rules/..%2Facme%2Fthreshold",
        "/v1/rules/acme%2Fthreshold",
        "/v1/rules/../acme/threshold",
        "/v1/tenants/acme/rules/threshold",
    ] {
        for method in [Method::PUT, Method::DELETE, Method::GET] {
            let body = upload_body("name = \"x\"\n", b"mallory's", None);
            let (status, _, _) =
                call(door, method.clone(), uri, &door.mallory_rules_key, body).await?;
            assert!(
                status.is_client_error(),
                "{method} {uri}: {status} must be refused"
            );
        }
    }
    let (status, _, body) = call(
        door,
        Method::PUT,
        "/v1/rules/threshold",
        &door.mallory_rules_key,
        upload_body("name = \"threshold\"\n", b"mallory's", None),
    )
    .await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(!String::from_utf8_lossy(&body).contains("acme"));
    let (status, _, body) =
        call(door, Method::GET, "/v1/rules", &door.mallory_rules_key, "").await?;
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(answer["rules"].as_array().map(Vec::len), Some(1));
    let (status, _, _) = call(
        door,
        Method::DELETE,
        "/v1/rules/threshold",
        &door.mallory_admin_key,
        "",
    )
    .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);

    assert_eq!(
        door.rules.get("rules/acme/threshold/module.wasm").await?,
        Some(b"acme's".to_vec().into()),
        "acme's rule is untouched"
    );
    assert!(door.rules.list("rules/mallory/").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn an_upload_past_max_rules_is_refused_but_replacing_one_is_not() -> TestResult {
    let door = &Door::new().await?;
    let mut limits = TenantLimits::default();
    limits.set("max_rules=2")?;
    limits.save(door.rules.as_ref(), "acme").await?;
    for name in ["a", "b"] {
        let (status, _, _) = call(
            door,
            Method::PUT,
            &format!("/v1/rules/{name}"),
            &door.rules_key,
            upload_body("name = \"x\"\n", b"wasm", None),
        )
        .await?;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}");
        // Only a rule with an active version counts (the registry's count): accept it.
        door.rules
            .put(
                &format!("control/registry/acme/{name}/accepted.json"),
                bytes::Bytes::from_static(b"{}"),
                "application/json",
            )
            .await?;
    }
    let (status, _, body) = call(
        door,
        Method::PUT,
        "/v1/rules/c",
        &door.rules_key,
        upload_body("name = \"x\"\n", b"wasm", None),
    )
    .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        error_of(&body),
        "tenant acme already has 2 rules, its limit of 2; remove one first"
    );
    assert!(door.rules.list("rules/acme/c/").await?.is_empty());
    let (status, _, _) = call(
        door,
        Method::PUT,
        "/v1/rules/a",
        &door.rules_key,
        upload_body("name = \"x\"\n", b"wasm v2", None),
    )
    .await?;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "replacing a rule is not a new one"
    );
    // Another tenant's rules do not count against acme, nor acme's against it.
    let (status, _, _) = call(
        door,
        Method::PUT,
        "/v1/rules/c",
        &door.mallory_rules_key,
        upload_body("name = \"x\"\n", b"wasm", None),
    )
    .await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    Ok(())
}

#[tokio::test]
async fn rule_names_outside_the_allowed_characters_are_refused() -> TestResult {
    let door = &Door::new().await?;
    let long = "x".repeat(65);
    for name in ["..", "a%20b", "a%2Fb", long.as_str(), "%C3%A9"] {
        let (status, _, _) = call(
            door,
            Method::PUT,
            &format!("/v1/rules/{name}"),
            &door.rules_key,
            upload_body("name = \"x\"\n", b"wasm", None),
        )
        .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
    }
    assert!(door.rules.list("rules/").await?.is_empty());
    Ok(())
}

/// Writes what the registry records for version `version` of acme's `threshold`.
async fn registry_recorded(door: &Door, version: u64, status: &str) -> TestResult {
    let record = serde_json::json!({
        "version": version, "status": status, "module_sha256": "m", "manifest_sha256": "t",
        "registered_at_ms": 1, "reason": (status == "rejected").then_some("not a component"),
    });
    door.rules
        .put(
            &format!("control/registry/acme/threshold/versions/{version}/version.json"),
            bytes::Bytes::from(record.to_string()),
            "application/json",
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn versions_are_listed_and_rollback_asks_the_registry_for_an_accepted_one() -> TestResult {
    let door = &Door::new().await?;
    let (status, _, _) = call(
        door,
        Method::PUT,
        "/v1/rules/threshold",
        &door.rules_key,
        upload_body("name = \"threshold\"\n", b"wasm", None),
    )
    .await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    registry_recorded(door, 1, "accepted").await?;
    registry_recorded(door, 2, "rejected").await?;
    door.rules
        .put(
            "control/registry/acme/threshold/accepted.json",
            bytes::Bytes::from_static(br#"{"version": 1}"#),
            "application/json",
        )
        .await?;
    let (status, _, body) = call(
        door,
        Method::GET,
        "/v1/rules/threshold/versions",
        &door.rules_key,
        "",
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(answer["active_version"], 1);
    assert_eq!(answer["versions"][1]["status"], "rejected");
    assert_eq!(answer["versions"][1]["reason"], "not a component");

    for (query, expected) in [
        ("to=2", StatusCode::CONFLICT),
        ("to=7", StatusCode::NOT_FOUND),
        ("to=x", StatusCode::BAD_REQUEST),
        ("", StatusCode::BAD_REQUEST),
    ] {
        let (status, _, body) = call(
            door,
            Method::POST,
            &format!("/v1/rules/threshold/rollback?{query}"),
            &door.rules_key,
            "",
        )
        .await?;
        assert_eq!(status, expected, "{query}: {}", error_of(&body));
    }
    assert_eq!(
        door.rules.get("rules/acme/threshold/rollback.json").await?,
        None
    );
    // Mallory's key finds no such rule of hers, and writes nothing of acme's.
    for uri in [
        "/v1/rules/threshold/rollback?to=1",
        "/v1/rules/threshold/versions",
    ] {
        let method = if uri.contains("rollback") {
            Method::POST
        } else {
            Method::GET
        };
        let (status, _, _) = call(door, method, uri, &door.mallory_rules_key, "").await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    assert_eq!(
        door.rules.get("rules/acme/threshold/rollback.json").await?,
        None
    );

    let (status, _, body) = call(
        door,
        Method::POST,
        "/v1/rules/threshold/rollback?to=1",
        &door.rules_key,
        "",
    )
    .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{}", error_of(&body));
    assert_eq!(
        door.rules.get("rules/acme/threshold/rollback.json").await?,
        Some(bytes::Bytes::from_static(br#"{"to":1}"#))
    );
    Ok(())
}

#[tokio::test]
async fn a_secret_generated_by_a_config_write_that_failed_is_replaced_and_shown_on_retry()
-> TestResult {
    let door = &Door::new().await?;
    // What a PUT that generated the secret and then failed to store the configuration leaves.
    let unshown = webhook_secrets::create(door.rules.as_ref(), "acme", "ops").await?;
    assert_eq!(door.rules.get("tenants/acme.toml").await?, None);
    let shown = acme_sets_its_config(door).await?;
    assert!(
        shown.starts_with(webhook_secrets::SECRET_PREFIX),
        "{shown:?}"
    );
    assert_ne!(shown, unshown.expose(), "a secret nobody saw is not kept");
    let signing = webhook_secrets::lookup(door.rules.as_ref(), "acme", "ops").await?;
    assert_eq!(signing.as_ref().map(|s| s.expose()), Some(shown.as_str()));
    Ok(())
}
