//! A fault-injecting HTTP/1.1 reverse proxy for the end-to-end tests.
//!
//! [`FaultProxy::start`] listens on a free `127.0.0.1` port and forwards every request to an
//! upstream endpoint (the emulator). Point the code under test at [`FaultProxy::endpoint`]
//! instead of the emulator, then arm faults through the shared [`FaultPlan`]: each `*_next`
//! field is a number of requests still to be hit by that fault, decremented as faults fire, so
//! a test can arm "the next 3 PutRecords calls are throttled" and read back, from
//! [`FaultPlan::injected`], how many faults really fired.
//!
//! Faults, checked in this order for each request:
//!
//! | field | applies to | what the client sees | reached the emulator? |
//! |---|---|---|---|
//! | `drop_next` | any request | the connection closes without an answer | no |
//! | `drop_response_next` | any request | the connection closes without an answer | **yes** (the answer is lost) |
//! | `kinesis_throttle_next` | Kinesis `PutRecords` | HTTP 400 `ProvisionedThroughputExceededException` | no |
//! | `kinesis_get_records_throttle_next` | Kinesis `GetRecords` | HTTP 400 `ProvisionedThroughputExceededException` | no |
//! | `kinesis_partial_next` | Kinesis `PutRecords` | HTTP 200 with the entries at even positions (0, 2, …) failed with `ProvisionedThroughputExceededException` | only the other entries |
//! | `s3_slowdown_next` | S3 requests | HTTP 503 `SlowDown` with S3's XML error body | no |
//!
//! Kinesis calls are recognised by their `X-Amz-Target` header (`Kinesis_20131202.PutRecords`);
//! S3 requests by the service in their SigV4 credential scope (`…/s3/aws4_request`), or, when
//! unsigned, by having no `X-Amz-Target`. The partial-failure mode really withholds the failed
//! entries from the emulator (it rewrites the request, then merges the answer), so it behaves
//! like Kinesis: a failed entry was not written, and a client that retries only the failed
//! entries ends up with every record exactly once.
//!
//! Bodies are buffered whole in both directions, which is fine for test traffic. Request
//! signatures are not recomputed after a rewrite: moto and LocalStack do not check them.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::atomic::Ordering;
//! let proxy = sluice_e2e::fault_proxy::FaultProxy::start(&sluice_e2e::endpoint()).await?;
//! proxy.plan().kinesis_throttle_next.store(3, Ordering::SeqCst);
//! // ... run the agent against proxy.endpoint() ...
//! assert_eq!(proxy.plan().injected().kinesis_throttles, 3);
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// `X-Amz-Target` of a Kinesis `PutRecords` call.
pub const PUT_RECORDS_TARGET: &str = "Kinesis_20131202.PutRecords";
/// `X-Amz-Target` of a Kinesis `GetRecords` call.
pub const GET_RECORDS_TARGET: &str = "Kinesis_20131202.GetRecords";
/// The error code of every injected Kinesis fault.
pub const THROTTLE_CODE: &str = "ProvisionedThroughputExceededException";

const JSON_1_1: &str = "application/x-amz-json-1.1";

/// The faults still to inject, and the faults injected so far. Shared (through an [`Arc`])
/// between the proxy and the test, which arms faults at any time.
#[derive(Debug, Default)]
pub struct FaultPlan {
    /// Close the next N connections' requests without answering (not forwarded).
    pub drop_next: AtomicU32,
    /// Forward the next N requests, then close the connection without passing the answer on.
    pub drop_response_next: AtomicU32,
    /// Answer the next N Kinesis `PutRecords` calls with HTTP 400 throttling (not forwarded).
    pub kinesis_throttle_next: AtomicU32,
    /// Answer the next N Kinesis `GetRecords` calls with HTTP 400 throttling (not forwarded).
    pub kinesis_get_records_throttle_next: AtomicU32,
    /// Fail the entries at even positions of the next N `PutRecords` calls (those entries are
    /// not forwarded; the others are).
    pub kinesis_partial_next: AtomicU32,
    /// Answer the next N S3 requests with 503 SlowDown (not forwarded).
    pub s3_slowdown_next: AtomicU32,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    drops: AtomicU64,
    dropped_responses: AtomicU64,
    kinesis_throttles: AtomicU64,
    kinesis_get_records_throttles: AtomicU64,
    kinesis_partial_calls: AtomicU64,
    kinesis_failed_entries: AtomicU64,
    s3_slowdowns: AtomicU64,
    upstream_errors: AtomicU64,
}

/// A snapshot of what the proxy did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    /// Requests passed to the upstream (including those whose answer was then dropped, and the
    /// rewritten part of partial `PutRecords` calls).
    pub forwarded: u64,
    /// Connections closed before forwarding.
    pub drops: u64,
    /// Connections closed after forwarding.
    pub dropped_responses: u64,
    /// `PutRecords` calls answered with throttling.
    pub kinesis_throttles: u64,
    /// `GetRecords` calls answered with throttling.
    pub kinesis_get_records_throttles: u64,
    /// `PutRecords` calls answered with per-entry failures.
    pub kinesis_partial_calls: u64,
    /// Entries failed in those calls.
    pub kinesis_failed_entries: u64,
    /// S3 requests answered with 503 SlowDown.
    pub s3_slowdowns: u64,
    /// Requests the upstream could not be reached for (answered 502).
    pub upstream_errors: u64,
}

impl Injected {
    /// Every fault injected, of any kind.
    pub fn total_faults(&self) -> u64 {
        self.drops
            + self.dropped_responses
            + self.kinesis_throttles
            + self.kinesis_get_records_throttles
            + self.kinesis_partial_calls
            + self.s3_slowdowns
    }
}

impl FaultPlan {
    /// What the proxy did so far.
    pub fn injected(&self) -> Injected {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Injected {
            forwarded: get(&c.forwarded),
            drops: get(&c.drops),
            dropped_responses: get(&c.dropped_responses),
            kinesis_throttles: get(&c.kinesis_throttles),
            kinesis_get_records_throttles: get(&c.kinesis_get_records_throttles),
            kinesis_partial_calls: get(&c.kinesis_partial_calls),
            kinesis_failed_entries: get(&c.kinesis_failed_entries),
            s3_slowdowns: get(&c.s3_slowdowns),
            upstream_errors: get(&c.upstream_errors),
        }
    }

    /// Disarms every fault not yet injected (the counters stay).
    pub fn disarm(&self) {
        for armed in [
            &self.drop_next,
            &self.drop_response_next,
            &self.kinesis_throttle_next,
            &self.kinesis_get_records_throttle_next,
            &self.kinesis_partial_next,
            &self.s3_slowdown_next,
        ] {
            armed.store(0, Ordering::SeqCst);
        }
    }
}

/// Takes one fault from an armed counter: true when it was above zero (and is now one less).
fn take(armed: &AtomicU32) -> bool {
    armed
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::SeqCst);
}

/// A running proxy. Dropping it stops it (and closes its open connections).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    plan: Arc<FaultPlan>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free `127.0.0.1` port in front of `upstream` (e.g.
    /// `http://127.0.0.1:5055`), with no fault armed. Needs a tokio runtime.
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let upstream: Uri = upstream
            .trim()
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("the upstream {upstream:?} is not a URI"))?;
        anyhow::ensure!(
            upstream.scheme_str() == Some("http") && upstream.authority().is_some(),
            "the upstream {upstream} must be http://host:port"
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fault proxy to 127.0.0.1")?;
        let addr = listener.local_addr().context("the proxy's address")?;
        let plan = Arc::new(FaultPlan::default());
        let shared = Arc::new(Shared {
            upstream,
            plan: Arc::clone(&plan),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let task = tokio::spawn(accept_loop(listener, shared));
        Ok(Self { addr, plan, task })
    }

    /// The URL to give clients instead of the upstream's, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fault plan, to arm faults and read what was injected.
    pub fn plan(&self) -> &Arc<FaultPlan> {
        &self.plan
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Shared {
    upstream: Uri,
    plan: Arc<FaultPlan>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The error a request handler returns to make hyper close the connection unanswered.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault injected: connection dropped")
    }
}

impl std::error::Error for DropConnection {}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in this set, so aborting the loop closes them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = Arc::clone(&shared);
                        async move { handle(&shared, req).await }
                    });
                    // An error here is an injected drop or a client going away.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// What kind of call a request is, as far as faults go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    PutRecords,
    GetRecords,
    S3,
    Other,
}

fn classify(headers: &HeaderMap) -> Call {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    match target {
        Some(PUT_RECORDS_TARGET) => Call::PutRecords,
        Some(GET_RECORDS_TARGET) => Call::GetRecords,
        Some(_) => Call::Other,
        None => {
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match auth {
                Some(auth) if auth.contains("/s3/aws4_request") => Call::S3,
                Some(_) => Call::Other,
                None => Call::S3,
            }
        }
    }
}

async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let plan = &shared.plan;
    let (parts, body) = req.into_parts();
    // Read the request whole first, as a server would before failing it.
    let Ok(body) = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
    else {
        return Err(DropConnection);
    };
    if take(&plan.drop_next) {
        bump(&plan.counters.drops);
        return Err(DropConnection);
    }
    let call = classify(&parts.headers);
    match call {
        Call::PutRecords if take(&plan.kinesis_throttle_next) => {
            bump(&plan.counters.kinesis_throttles);
            return Ok(kinesis_throttle());
        }
        Call::GetRecords if take(&plan.kinesis_get_records_throttle_next) => {
            bump(&plan.counters.kinesis_get_records_throttles);
            return Ok(kinesis_throttle());
        }
        Call::S3 if take(&plan.s3_slowdown_next) => {
            bump(&plan.counters.s3_slowdowns);
            return Ok(s3_slowdown());
        }
        _ => {}
    }
    let drop_response = take(&plan.drop_response_next);
    let response = if call == Call::PutRecords && take(&plan.kinesis_partial_next) {
        partial_put_records(shared, &parts, body).await
    } else {
        forward(shared, &parts, body).await
    };
    if drop_response {
        bump(&plan.counters.dropped_responses);
        return Err(DropConnection);
    }
    Ok(response)
}

/// Forwards a request to the upstream and returns its answer (502 when it cannot be reached).
async fn forward(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    match try_forward(shared, parts, body).await {
        Ok(response) => {
            bump(&shared.plan.counters.forwarded);
            response
        }
        Err(e) => {
            bump(&shared.plan.counters.upstream_errors);
            let mut response = Response::new(Full::new(Bytes::from(format!(
                "fault proxy: upstream {} failed: {e:#}",
                shared.upstream
            ))));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

async fn try_forward(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> anyhow::Result<Response<Full<Bytes>>> {
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", hyper::http::uri::PathAndQuery::as_str);
    let uri = Uri::builder()
        .scheme("http")
        .authority(
            shared
                .upstream
                .authority()
                .context("the upstream has no authority")?
                .clone(),
        )
        .path_and_query(path)
        .build()
        .context("building the upstream URI")?;
    let mut req = Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .body(Full::new(body))
        .context("building the upstream request")?;
    *req.headers_mut() = end_to_end(&parts.headers);
    let response = shared
        .client
        .request(req)
        .await
        .context("sending to the upstream")?;
    let (mut head, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .context("reading the upstream's answer")?
        .to_bytes();
    head.headers = end_to_end(&head.headers);
    Ok(Response::from_parts(head, Full::new(body)))
}

/// The headers without hop-by-hop ones, without the length (bodies are re-framed) and without
/// `Expect: 100-continue` (the proxy already has the whole body).
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for name in [
        header::CONNECTION,
        header::EXPECT,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        out.remove(name);
    }
    out.remove("keep-alive");
    out
}

/// Forwards only the entries at odd positions of a `PutRecords` call and answers as Kinesis
/// would had the even ones been throttled.
async fn partial_put_records(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let Ok(mut request) = serde_json::from_slice::<Value>(&body) else {
        return forward(shared, parts, body).await;
    };
    let Some(entries) = request.get_mut("Records").and_then(Value::as_array_mut) else {
        return forward(shared, parts, body).await;
    };
    let all = std::mem::take(entries);
    let total = all.len();
    let kept: Vec<Value> = all.into_iter().skip(1).step_by(2).collect();
    let failed = total - kept.len();
    let mut kept_results: Vec<Value> = Vec::new();
    if !kept.is_empty() {
        if let Some(entries) = request.get_mut("Records").and_then(Value::as_array_mut) {
            *entries = kept;
        }
        let upstream = forward(shared, parts, Bytes::from(request.to_string())).await;
        if upstream.status() != StatusCode::OK {
            // Pass real failures on unchanged: the whole call failed anyway.
            return upstream;
        }
        // A buffered body cannot fail to be read.
        let answer = upstream
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        let Ok(answer) = serde_json::from_slice::<Value>(&answer) else {
            return kinesis_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure");
        };
        kept_results = answer
            .get("Records")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
    }
    let mut kept_results = kept_results.into_iter();
    let mut failed_count = 0u64;
    let records: Vec<Value> = (0..total)
        .map(|i| {
            let entry = if i % 2 == 0 {
                None
            } else {
                kept_results.next()
            };
            match entry {
                Some(ok) => {
                    if ok.get("ErrorCode").is_some() {
                        failed_count += 1;
                    }
                    ok
                }
                None => {
                    failed_count += 1;
                    json!({
                        "ErrorCode": THROTTLE_CODE,
                        "ErrorMessage": "Rate exceeded for shard shardId-000000000000 (fault injected)",
                    })
                }
            }
        })
        .collect();
    bump(&shared.plan.counters.kinesis_partial_calls);
    shared
        .plan
        .counters
        .kinesis_failed_entries
        .fetch_add(failed as u64, Ordering::SeqCst);
    json_response(
        StatusCode::OK,
        &json!({"FailedRecordCount": failed_count, "Records": records}),
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_1_1));
    response.headers_mut().insert(
        "x-amzn-requestid",
        HeaderValue::from_static("00000000-0000-0000-0000-00000fa017ed"),
    );
    response
}

fn kinesis_error(status: StatusCode, code: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({"__type": code, "message": "fault proxy: the upstream answer was unreadable"}),
    )
}

/// Kinesis's answer to a throttled call.
fn kinesis_throttle() -> Response<Full<Bytes>> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"__type": THROTTLE_CODE, "message": "Rate exceeded for shard"}),
    )
}

/// S3's answer when asked to slow down.
fn s3_slowdown() -> Response<Full<Bytes>> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                <Message>Please reduce your request rate.</Message>\
                <RequestId>FA017ED000000000</RequestId>\
                <HostId>fault-proxy</HostId></Error>";
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::Mutex;

    /// An upstream that records every request it gets and answers `200 ok:<path>`, or, for
    /// `PutRecords`, as Kinesis does (one sequence number per entry).
    struct Upstream {
        endpoint: String,
        seen: Arc<Mutex<Vec<(String, Bytes)>>>,
        _task: tokio::task::JoinHandle<()>,
    }

    async fn upstream() -> anyhow::Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let seen: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let log = Arc::clone(&log);
                        async move { Ok::<_, Infallible>(answer(&log, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Upstream {
            endpoint,
            seen,
            _task: task,
        })
    }

    async fn answer(
        log: &Mutex<Vec<(String, Bytes)>>,
        req: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let put_records = classify(req.headers()) == Call::PutRecords;
        let body = req
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        if let Ok(mut seen) = log.lock() {
            seen.push((path.clone(), body.clone()));
        }
        if put_records {
            let request: Value = serde_json::from_slice(&body).unwrap_or_default();
            let n = request["Records"].as_array().map_or(0, Vec::len);
            let records: Vec<Value> = (0..n)
                .map(|i| json!({"SequenceNumber": format!("{i}"), "ShardId": "shardId-000000000000"}))
                .collect();
            return json_response(
                StatusCode::OK,
                &json!({"FailedRecordCount": 0, "Records": records}),
            );
        }
        Response::new(Full::new(Bytes::from(format!("ok:{path}"))))
    }

    async fn send(
        proxy: &FaultProxy,
        path: &str,
        target: Option<&str>,
        body: &str,
    ) -> Result<(StatusCode, String), hyper_util::client::legacy::Error> {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let mut req = Request::builder()
            .method("POST")
            .uri(format!("{}{path}", proxy.endpoint()));
        if let Some(target) = target {
            req = req.header("x-amz-target", target);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap_or_default();
        let response = client.request(req).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    fn seen_paths(up: &Upstream) -> Vec<String> {
        up.seen
            .lock()
            .map(|s| s.iter().map(|(p, _)| p.clone()).collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn forwards_requests_and_answers_unchanged_when_no_fault_is_armed() -> anyhow::Result<()>
    {
        let up = upstream().await?;
        let proxy = FaultProxy::start(&up.endpoint).await?;
        let (status, body) = send(&proxy, "/bucket/key?x=1", None, "hello").await?;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok:/bucket/key"));
        let seen = up.seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen, vec![("/bucket/key".to_owned(), Bytes::from("hello"))]);
        assert_eq!(
            proxy.plan().injected(),
            Injected {
                forwarded: 1,
                ..Injected::default()
            }
        );
        Ok(())
    }

    #[tokio::test]
    async fn s3_slowdown_answers_503_with_the_s3_error_body_without_forwarding()
    -> anyhow::Result<()> {
        let up = upstream().await?;
        let proxy = FaultProxy::start(&up.endpoint).await?;
        proxy.plan().s3_slowdown_next.store(2, Ordering::SeqCst);
        for _ in 0..2 {
            let (status, body) = send(&proxy, "/bucket/a", None, "x").await?;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(body.contains("<Code>SlowDown</Code>"), "{body}");
        }
        let (status, _) = send(&proxy, "/bucket/b", None, "x").await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(seen_paths(&up), vec!["/bucket/b"]);
        let injected = proxy.plan().injected();
        assert_eq!((injected.s3_slowdowns, injected.forwarded), (2, 1));
        Ok(())
    }

    #[test]
    fn requests_are_told_apart_by_target_header_and_signing_scope() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let s3 = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
                  SignedHeaders=host, Signature=00";
        let sqs = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, \
                   SignedHeaders=host, Signature=00";
        assert_eq!(classify(&headers(&[("authorization", s3)])), Call::S3);
        assert_eq!(classify(&headers(&[("authorization", sqs)])), Call::Other);
        assert_eq!(
            classify(&headers(&[
                ("authorization", sqs),
                ("x-amz-target", "AmazonSQS.SendMessage")
            ])),
            Call::Other
        );
        assert_eq!(
            classify(&headers(&[("x-amz-target", PUT_RECORDS_TARGET)])),
            Call::PutRecords
        );
        assert_eq!(
            classify(&headers(&[("x-amz-target", GET_RECORDS_TARGET)])),
            Call::GetRecords
        );
    }

    #[tokio::test]
    async fn kinesis_throttling_hits_only_put_records_calls() -> anyhow::Result<()> {
        let up = upstream().await?;
        let proxy = FaultProxy::start(&up.endpoint).await?;
        proxy
            .plan()
            .kinesis_throttle_next
            .store(1, Ordering::SeqCst);
        let (status, _) = send(&proxy, "/", Some("Kinesis_20131202.DescribeStream"), "{}").await?;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = send(&proxy, "/", Some(PUT_RECORDS_TARGET), "{}").await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let body: Value = serde_json::from_str(&body)?;
        assert_eq!(body["__type"], THROTTLE_CODE);
        let (status, _) = send(&proxy, "/", Some(PUT_RECORDS_TARGET), "{}").await?;
        assert_eq!(status, StatusCode::OK);
        let injected = proxy.plan().injected();
        assert_eq!((injected.kinesis_throttles, injected.forwarded), (1, 2));
        Ok(())
    }

    #[tokio::test]
    async fn a_dropped_connection_gets_no_answer_and_never_reaches_the_upstream()
    -> anyhow::Result<()> {
        let up = upstream().await?;
        let proxy = FaultProxy::start(&up.endpoint).await?;
        proxy.plan().drop_next.store(1, Ordering::SeqCst);
        let dropped = send(&proxy, "/bucket/dropped", None, "x").await;
        assert!(dropped.is_err(), "{dropped:?}");
        let (status, _) = send(&proxy, "/bucket/kept", None, "x").await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(seen_paths(&up), vec!["/bucket/kept"]);
        assert_eq!(proxy.plan().injected().drops, 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_dropped_response_reaches_the_upstream_but_not_the_client() -> anyhow::Result<()> {
        let up = upstream().await?;
        let proxy = FaultProxy::start(&up.endpoint).await?;
        proxy.plan().drop_response_next.store(1, Ordering::SeqCst);
        let dropped = send(&proxy, "/bucket/lost-answer", None, "x").await;
        assert!(dropped.is_err(), "{dropped:?}");
        assert_eq!(seen_paths(&up), vec!["/bucket/lost-answer"]);
        let injected = proxy.plan().injected();
        assert_eq!((injected.dropped_responses, injected.forwarded), (1, 1));
        Ok(())
    }

    #[tokio::test]
    async fn partial_put_records_withholds_the_failed_entries_and_merges_the_answer()
    -> anyhow::Result<()> {
        let up = upstream().await?;
        let proxy = FaultProxy::start(&up.endpoint).await?;
        proxy.plan().kinesis_partial_next.store(1, Ordering::SeqCst);
        let request = json!({
            "StreamName": "s",
            "Records": (0..5).map(|i| json!({"Data": format!("{i}"), "PartitionKey": "k"})).collect::<Vec<_>>(),
        });
        let (status, body) =
            send(&proxy, "/", Some(PUT_RECORDS_TARGET), &request.to_string()).await?;
        assert_eq!(status, StatusCode::OK);
        let answer: Value = serde_json::from_str(&body)?;
        assert_eq!(answer["FailedRecordCount"], 3);
        let codes: Vec<bool> = answer["Records"]
            .as_array()
            .map(|r| r.iter().map(|e| e.get("ErrorCode").is_some()).collect())
            .unwrap_or_default();
        assert_eq!(codes, vec![true, false, true, false, true]);
        // The upstream saw entries 1 and 3 only.
        let seen = up.seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen.len(), 1);
        let forwarded: Value = serde_json::from_slice(&seen[0].1)?;
        assert_eq!(forwarded["Records"][0]["Data"], "1");
        assert_eq!(forwarded["Records"][1]["Data"], "3");
        assert_eq!(forwarded["Records"].as_array().map(Vec::len), Some(2));
        let injected = proxy.plan().injected();
        assert_eq!(
            (
                injected.kinesis_partial_calls,
                injected.kinesis_failed_entries
            ),
            (1, 3)
        );
        Ok(())
    }
}
