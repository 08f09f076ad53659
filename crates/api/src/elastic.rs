//! The Elasticsearch bulk API, and the handshake that shippers make before they send
//! (Fluent Bit's `es` output, Vector's `elasticsearch` sink, Filebeat, the official clients).
//!
//! - `POST /_bulk`, `POST /{index}/_bulk` (and `PUT`): NDJSON pairs of an action line and a
//!   document; `index` and `create` are stored (the document is a record), `delete` and
//!   `update` are answered per item as not supported. The answer has one item per action, in
//!   order, with `status` 201 or the exact reason of a rejection (`errors: true`), as
//!   Elasticsearch answers.
//! - `GET /` (version 8), `GET /_license`, and the template, ILM and pipeline probes: answered
//!   as a cluster that has what is asked for, so that shippers go on to send.
//!
//! Every answer carries `X-Elastic-Product: Elasticsearch`, which the clients check. Keys come
//! as `Authorization: ApiKey <key>` or `Basic` with the key as the password.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use sluice_core::RejectReason;
use sluice_core::tenancy::Scope;

use crate::error::{ApiError, Dialect};
use crate::intake::IntakeBuilder;
use crate::router::ApiState;

/// The version the handshake reports (clients of 7.x and 8.x accept it).
const VERSION: &str = "8.11.0";

/// The routes of this module.
pub fn routes() -> Router<Arc<ApiState>> {
    let router = Router::new()
        .route("/", get(root).head(root))
        .route("/_bulk", post(bulk_all).put(bulk_all))
        .route("/{index}/_bulk", post(bulk_index).put(bulk_index))
        .route("/_license", get(license))
        .route("/_xpack", get(xpack))
        .route("/_cluster/health", get(acknowledged));
    // Probes for what a shipper would install before sending: answered as present.
    PROBES.iter().fold(router, |router, path| {
        router.route(path, get(exists).head(exists).put(acknowledged))
    })
}

/// Index templates, ILM policies, ingest pipelines and data streams.
const PROBES: [&str; 5] = [
    "/_index_template/{name}",
    "/_template/{name}",
    "/_ilm/policy/{name}",
    "/_ingest/pipeline/{name}",
    "/_data_stream/{name}",
];

fn product(mut response: Response) -> Response {
    response.headers_mut().insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    response
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    product((status, axum::Json(body)).into_response())
}

async fn root() -> Response {
    json(
        StatusCode::OK,
        serde_json::json!({
            "name": "sluice",
            "cluster_name": "sluice",
            "cluster_uuid": "c2x1aWNlLWZyb250LWRvb3I",
            "version": {
                "number": VERSION,
                "build_flavor": "default",
                "build_type": "tar",
                "build_hash": "sluice",
                "build_date": "2023-11-04T10:04:57.184859352Z",
                "build_snapshot": false,
                "lucene_version": "9.8.0",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }),
    )
}

async fn license() -> Response {
    json(
        StatusCode::OK,
        serde_json::json!({"license": {"status": "active", "uid": "sluice", "type": "basic", "mode": "basic"}}),
    )
}

async fn xpack() -> Response {
    json(
        StatusCode::OK,
        serde_json::json!({"build": {}, "license": {"status": "active", "type": "basic", "mode": "basic"}, "features": {}}),
    )
}

async fn exists() -> Response {
    json(StatusCode::OK, serde_json::json!({}))
}

async fn acknowledged() -> Response {
    json(StatusCode::OK, serde_json::json!({"acknowledged": true}))
}

async fn bulk_all(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Body) -> Response {
    respond(bulk(&state, &headers, body, None).await)
}

async fn bulk_index(
    State(state): State<Arc<ApiState>>,
    axum::extract::Path(index): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(bulk(&state, &headers, body, Some(index)).await)
}

fn respond(result: Result<Response, ApiError>) -> Response {
    match result {
        Ok(response) => product(response),
        Err(e) => product(e.render(Dialect::Elastic)),
    }
}

/// One action of a bulk body, as it is answered.
#[derive(Debug)]
pub struct Item {
    op: String,
    index: String,
    id: Option<String>,
    /// Position in the intake, for actions that carried a document to store.
    intake: Option<usize>,
    /// An error found before stamping.
    error: Option<String>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

async fn bulk(
    state: &ApiState,
    headers: &HeaderMap,
    body: Body,
    default_index: Option<String>,
) -> Result<Response, ApiError> {
    let principal = state.authorize(headers, Scope::Ingest).await?;
    let body = crate::body::read(body, headers, &state.config).await?;
    let started = std::time::Instant::now();
    let (items, intake) = parse(
        &principal.tenant,
        &body,
        default_index.as_deref(),
        &state.config.ingest,
    )?;
    let outcomes = intake.outcomes.clone();
    state.deliver(&principal.tenant, intake.records).await?;
    let mut errors = false;
    let answers: Vec<serde_json::Value> = items
        .into_iter()
        .map(|item| {
            let rejection = item.error.or_else(|| {
                item.intake
                    .and_then(|i| outcomes.get(i).cloned().flatten().map(|r| r.to_string()))
            });
            let id = item
                .id
                .unwrap_or_else(|| format!("{:020}", NEXT_ID.fetch_add(1, Ordering::Relaxed)));
            let answer = match rejection {
                None => serde_json::json!({
                    "_index": item.index, "_id": id, "_version": 1, "result": "created",
                    "_shards": {"total": 1, "successful": 1, "failed": 0},
                    "_seq_no": 0, "_primary_term": 1, "status": 201
                }),
                Some(reason) => {
                    errors = true;
                    serde_json::json!({
                        "_index": item.index, "_id": id, "status": 400,
                        "error": {"type": "document_parsing_exception", "reason": reason}
                    })
                }
            };
            serde_json::json!({ item.op: answer })
        })
        .collect();
    let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({"took": took, "errors": errors, "items": answers})),
    )
        .into_response())
}

/// Reads a bulk body into its actions and the intake of their documents.
pub fn parse(
    tenant: &str,
    body: &[u8],
    default_index: Option<&str>,
    config: &sluice_core::IngestConfig,
) -> Result<(Vec<Item>, crate::intake::Intake), ApiError> {
    let mut builder = IntakeBuilder::new(tenant, config);
    let mut pushed = 0usize;
    let mut items = Vec::new();
    let mut lines = body
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace));
    while let Some((n, line)) = lines.next() {
        let action: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line)
            .map_err(|e| {
                ApiError::BadRequest(format!(
                    "line {}: the action is not a JSON object: {e}",
                    n + 1
                ))
            })?;
        let Some((op, meta)) = action.into_iter().next() else {
            return Err(ApiError::BadRequest(format!(
                "line {}: empty action",
                n + 1
            )));
        };
        let index = meta
            .get("_index")
            .and_then(|v| v.as_str())
            .or(default_index)
            .unwrap_or("logs")
            .to_owned();
        let id = meta.get("_id").and_then(|v| v.as_str()).map(str::to_owned);
        let mut item = Item {
            op: op.clone(),
            index,
            id,
            intake: None,
            error: None,
        };
        match op.as_str() {
            "index" | "create" => {
                let Some((_, doc)) = lines.next() else {
                    return Err(ApiError::BadRequest(format!(
                        "line {}: the {op} action has no document after it",
                        n + 1
                    )));
                };
                match std::str::from_utf8(doc) {
                    Ok(text) => builder.push(text),
                    Err(e) => builder.reject(RejectReason::NotUtf8 {
                        offset: e.valid_up_to(),
                    }),
                }
                item.intake = Some(pushed);
                pushed += 1;
            }
            "update" => {
                // Its document line is skipped: records are immutable once on the stream.
                lines.next();
                item.error = Some("update is not supported: records are append-only".into());
            }
            "delete" => {
                item.error = Some("delete is not supported: records are append-only".into());
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "line {}: unknown bulk action {other:?}",
                    n + 1
                )));
            }
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(ApiError::BadRequest("no actions in the bulk body".into()));
    }
    Ok((items, builder.finish()))
}
