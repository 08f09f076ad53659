//! The Elasticsearch bulk API (and its handshake) and Splunk HEC through the router.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use common::{Door, TestResult, json_of};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("elastic:{key}"))
    )
}

#[tokio::test]
async fn the_handshake_says_elasticsearch_8_with_the_product_header() -> TestResult {
    let door = Door::new().await?;
    for path in ["/", "/_license", "/_index_template/logs"] {
        let (status, headers, body) = door.send(Request::get(path).body(Body::empty())?).await?;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            headers.get("x-elastic-product").map(|v| v.as_bytes()),
            Some(&b"Elasticsearch"[..]),
            "{path}"
        );
        if path == "/" {
            let info: serde_json::Value = serde_json::from_slice(&body)?;
            assert!(
                info["version"]["number"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("8.")
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn bulk_answers_each_item_and_stores_documents_under_the_keys_tenant() -> TestResult {
    let door = Door::new().await?;
    let now = sluice_core::normalize::timestamp::format_rfc3339_ms(now_ms());
    let body = [
        "{\"index\":{\"_index\":\"app\",\"_id\":\"1\"}}\n",
        &format!("{{\"@timestamp\":\"{now}\",\"message\":\"a\",\"service.name\":\"web\",\"tenant\":\"globex\"}}\n"),
        "{\"create\":{}}\n",
        "{\"message\": broken}\n",
        "{\"delete\":{\"_id\":\"1\"}}\n",
        "{\"create\":{}}\n",
        "{\"message\":\"b\"}\n",
    ]
    .concat();
    let request = Request::post("/logs/_bulk")
        .header(header::AUTHORIZATION, basic(&door.ingest_key))
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from(body))?;
    let (status, headers, answer) = door.send(request).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("x-elastic-product"));
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    assert_eq!(answer["errors"], true);
    let statuses: Vec<u64> = answer["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_object()?.values().next()?["status"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(statuses, vec![201, 400, 400, 201]);
    assert_eq!(answer["items"][0]["index"]["_index"], "app");
    assert_eq!(answer["items"][3]["create"]["_index"], "logs");
    let stored = json_of(&door.stored());
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|r| r["tenant"] == "acme"), "{stored:?}");
    Ok(())
}

#[tokio::test]
async fn bulk_refuses_a_wrong_key_in_the_elasticsearch_shape() -> TestResult {
    let door = Door::new().await?;
    let request = Request::post("/_bulk")
        .header(header::AUTHORIZATION, "ApiKey slk_wrong")
        .body(Body::from("{\"index\":{}}\n{}\n"))?;
    let (status, headers, answer) = door.send(request).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("x-elastic-product"));
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    assert_eq!(answer["error"]["type"], "security_exception");
    assert!(door.stored().is_empty());
    Ok(())
}

#[tokio::test]
async fn hec_stores_concatenated_events_and_names_the_invalid_one() -> TestResult {
    let door = Door::new().await?;
    let secs = now_ms() / 1000;
    let body = format!(
        "{{\"time\":{secs},\"event\":{{\"msg\":\"a\",\"tenant\":\"globex\"}},\"fields\":{{\"service\":\"web\"}}}}{{\"event\":\"plain\"}}\n{{\"time\":\"{secs}\"}}"
    );
    let request = Request::post("/services/collector/event")
        .header(header::AUTHORIZATION, format!("Splunk {}", door.ingest_key))
        .body(Body::from(body))?;
    let (status, _, answer) = door.send(request).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    assert_eq!(answer["code"], 6);
    assert_eq!(answer["invalid-event-number"], 2);
    let stored = door.stored();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].partition_key, "acme/web");
    let json = json_of(&stored);
    assert_eq!(json[0]["claimed_tenant"], "globex");
    assert_eq!(json[1]["message"], "plain");
    Ok(())
}

#[tokio::test]
async fn hec_answers_success_and_refuses_a_bad_token_with_code_4() -> TestResult {
    let door = Door::new().await?;
    let send = |token: String| {
        Request::post("/services/collector/raw")
            .header(header::AUTHORIZATION, format!("Splunk {token}"))
            .body(Body::from("line one\nline two\n"))
    };
    let (status, _, answer) = door.send(send(door.ingest_key.clone())?).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&answer)?["code"],
        0
    );
    let (status, _, answer) = door.send(send("nope".into())?).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&answer)?["code"],
        4
    );
    assert_eq!(door.stored().len(), 2);
    Ok(())
}
