//! `POST /v1/ingest` through the router: auth, scopes, limits, stamping, answers.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{BrokenSink, Door, TestResult, gzip, json_of};
use sluice_api::{ApiConfig, MemorySink};

fn post(key: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut request = Request::post("/v1/ingest");
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    request.body(body.into()).unwrap_or_default()
}

#[tokio::test]
async fn stores_every_line_under_the_keys_tenant() -> TestResult {
    let door = Door::new().await?;
    let body = "{\"service\":\"web\",\"msg\":\"a\"}\n\nplain text line\r\n{\"service\":\"db\"}\n";
    let (status, _, answer) = door.send(post(Some(&door.ingest_key), body)).await?;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    assert_eq!(answer["accepted"], 3);
    let stored = door.stored();
    let keys: Vec<&str> = stored.iter().map(|r| r.partition_key.as_str()).collect();
    assert_eq!(keys, vec!["acme/web", "acme/unknown", "acme/db"]);
    let json = json_of(&stored);
    assert!(json.iter().all(|r| r["tenant"] == "acme"), "{json:?}");
    assert_eq!(json[1]["message"], "plain text line");
    Ok(())
}

#[tokio::test]
async fn a_body_claiming_another_tenant_lands_under_the_keys_tenant() -> TestResult {
    let door = Door::new().await?;
    let body = r#"{"tenant":"globex","tenant_id":"initech","msg":"sneaky"}"#;
    let (status, _, _) = door.send(post(Some(&door.ingest_key), body)).await?;
    assert_eq!(status, StatusCode::OK);
    let json = json_of(&door.stored());
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["tenant"], "acme");
    assert_eq!(
        json[0]["claimed_tenant"],
        serde_json::json!(["globex", "initech"])
    );
    Ok(())
}

#[tokio::test]
async fn rejects_a_missing_wrong_or_revoked_key_and_stores_nothing() -> TestResult {
    let door = Door::new().await?;
    // Change the secret's last hex digit (to one it is not), so the forgery differs by one byte.
    let (head, last) = door.ingest_key.split_at(door.ingest_key.len() - 1);
    let forged = format!("{head}{}", if last == "0" { '1' } else { '0' });
    let revoked = door
        .keys
        .create_key("acme", sluice_core::tenancy::Scope::Ingest, None)
        .await?;
    door.keys.revoke_key("acme", &revoked.record.key_id).await?;
    for key in [
        None,
        Some("slk_nonsense"),
        Some(forged.as_str()),
        Some(revoked.token.as_str()),
    ] {
        let (status, _, _) = door.send(post(key, "{\"msg\":\"x\"}")).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}");
    }
    assert!(door.stored().is_empty());
    Ok(())
}

#[tokio::test]
async fn rejects_a_key_without_the_ingest_scope_and_admin_implies_it() -> TestResult {
    let door = Door::new().await?;
    let (status, _, _) = door
        .send(post(Some(&door.rules_key), "{\"msg\":\"x\"}"))
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(door.stored().is_empty());
    let (status, _, _) = door
        .send(post(Some(&door.admin_key), "{\"msg\":\"x\"}"))
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(door.stored().len(), 1);
    Ok(())
}

#[tokio::test]
async fn accepts_gzip_and_refuses_a_gzip_bomb_while_requests_around_it_are_stored() -> TestResult {
    let door = Door::with_config(ApiConfig {
        max_decoded_bytes: 1 << 20,
        ..ApiConfig::default()
    })
    .await?;
    let gz = |body: Vec<u8>| {
        Request::post("/v1/ingest")
            .header(header::AUTHORIZATION, format!("Bearer {}", door.ingest_key))
            .header(header::CONTENT_ENCODING, "gzip")
            .body(Body::from(gzip(&body)))
            .unwrap_or_default()
    };
    let (status, _, _) = door.send(gz(b"{\"msg\":\"before\"}\n".to_vec())).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = door.send(gz(vec![b' '; 64 << 20])).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _, _) = door.send(gz(b"{\"msg\":\"after\"}\n".to_vec())).await?;
    assert_eq!(status, StatusCode::OK);
    let messages: Vec<String> = json_of(&door.stored())
        .iter()
        .map(|r| r["msg"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(messages, vec!["before", "after"]);
    Ok(())
}

#[tokio::test]
async fn refuses_a_body_over_the_limit_as_sent() -> TestResult {
    let door = Door::with_config(ApiConfig {
        max_body_bytes: 1000,
        ..ApiConfig::default()
    })
    .await?;
    let body = format!("{{\"msg\":\"{}\"}}", "x".repeat(2000));
    let (status, _, _) = door.send(post(Some(&door.ingest_key), body)).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(door.stored().is_empty());
    Ok(())
}

#[tokio::test]
async fn answers_the_exact_reason_of_each_rejected_line() -> TestResult {
    let door = Door::new().await?;
    let body = "{\"msg\":\"ok\"}\n{\"msg\": nope}\n";
    let (status, _, answer) = door.send(post(Some(&door.ingest_key), body)).await?;
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["rejected"][0]["line"], 2);
    let reason = answer["rejected"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("not JSON"), "{reason}");
    let (status, _, answer) = door
        .send(post(Some(&door.ingest_key), "{\"ts\":\"never\"}"))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    assert!(
        answer["rejected"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("timestamp")
    );
    assert_eq!(door.stored().len(), 1);
    Ok(())
}

#[tokio::test]
async fn answers_429_with_retry_after_once_the_tenant_is_over_its_quota() -> TestResult {
    let door = Door::with_config(ApiConfig {
        rate_per_second: 0.001,
        burst: 2.0,
        ..ApiConfig::default()
    })
    .await?;
    for _ in 0..2 {
        let (status, _, _) = door.send(post(Some(&door.ingest_key), "{}")).await?;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, headers, _) = door.send(post(Some(&door.ingest_key), "{}")).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!(retry >= 1, "{headers:?}");
    // Another tenant has its own quota.
    let (status, _, _) = door.send(post(Some(&door.other_tenant_key), "{}")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(door.stored().len(), 3);
    Ok(())
}

#[tokio::test]
async fn answers_503_when_the_stream_does_not_take_the_records() -> TestResult {
    let door = Door::with_sink(
        ApiConfig::default(),
        Arc::new(BrokenSink),
        Arc::new(MemorySink::default()),
    )
    .await?;
    let (status, headers, _) = door.send(post(Some(&door.ingest_key), "{}")).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key(header::RETRY_AFTER));
    Ok(())
}
