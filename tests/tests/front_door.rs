//! The front door end to end, with clients we did not write: `sluice serve` in front of a
//! Kinesis stream on the emulator, the OpenTelemetry Python SDK (OTLP/HTTP protobuf), the
//! official Elasticsearch client (`helpers.bulk`), `splunk-handler` (HEC) and
//! `python-logging-loki` (Loki push JSON), the OpenTelemetry JS SDK (OTLP/HTTP JSON),
//! `winston-loki` (Loki push, snappy protobuf) and curl (HEC raw, as Splunk documents it)
//! shipping through it, `sluice local run` (in process) storing what reached the stream, and
//! DuckDB reading the Parquet back.
//!
//! Each client: N records sent → exactly N rows under the key's tenant, whatever tenant the
//! records claim. Wrong and revoked keys store nothing; a bomb and an oversized body are
//! refused while the valid requests around them are stored.
//!
//! Needs an emulator (`SLUICE_TEST_ENDPOINT`), `$SLUICE_PYTHON` with the clients of
//! `xtask/python/requirements.txt`, and `$SLUICE_NODE_MODULES` with those of
//! `xtask/node/package.json` (both installed by `cargo xtask test`).

use std::process::Command;
use std::sync::Arc;

use anyhow::{Context as _, ensure};
use aws_config::SdkConfig;
use serde_json::Value;
use sluice_core::tenancy::{KeyStore, Pepper, Scope};
use sluice_e2e::{TestBucket, endpoint, run_python};
use sluice_local::provision::{self, Clients, Resources};

type TestResult = anyhow::Result<()>;

const PEPPER: &str = "front-door-e2e-pepper";
const RECORDS: usize = 40;

/// A stream and buckets on the emulator, tenants with keys, and `sluice serve` in front.
struct FrontDoor {
    data: TestBucket,
    rules: TestBucket,
    stream: String,
    state_dir: tempfile::TempDir,
    sdk: SdkConfig,
    _server: sluice_e2e::Served,
    url: String,
    key: String,
    revoked_key: String,
}

impl FrontDoor {
    async fn start() -> anyhow::Result<Self> {
        let data = TestBucket::create().await?;
        let rules = TestBucket::create().await?;
        let suffix = format!("{}-{:08x}", std::process::id(), fastrand::u32(..));
        let sdk = sluice_e2e::sdk_config().await;
        let resources = Resources {
            stream: format!("sluice-e2e-door-{suffix}"),
            shards: 1,
            data_bucket: data.name.clone(),
            rules_bucket: rules.name.clone(),
            failure_queue: format!("sluice-e2e-door-failures-{suffix}"),
        };
        provision::up(&Clients::new(&sdk), &resources).await?;
        let keys = KeyStore::new(Arc::new(rules.store()), Pepper::from_text(PEPPER)?);
        keys.create_tenant("acme").await?;
        keys.create_tenant("globex").await?;
        let key = keys
            .create_key("acme", Scope::Ingest, Some("e2e"))
            .await?
            .token;
        let revoked = keys.create_key("acme", Scope::Ingest, None).await?;
        keys.revoke_key("acme", &revoked.record.key_id).await?;
        let server = sluice_e2e::serve(
            &[
                "--stream",
                &resources.stream,
                "--bucket",
                &rules.name,
                "--endpoint",
                &endpoint(),
            ],
            &[("SLUICE_KEY_PEPPER", PEPPER)],
        )?;
        Ok(Self {
            data,
            rules,
            stream: resources.stream,
            state_dir: tempfile::tempdir()?,
            sdk,
            url: server.url.clone(),
            _server: server,
            key,
            revoked_key: revoked.token,
        })
    }

    /// Runs the pipeline until the stream is drained, then reads every stored row.
    async fn stored_rows(&self) -> anyhow::Result<Vec<Value>> {
        sluice_e2e::drain_and_read_rows(
            &self.sdk,
            &self.stream,
            &self.data,
            &self.rules.name,
            self.state_dir.path(),
            &["tenant", "service", "message", "attrs"],
        )
        .await
    }

    fn python(&self, script: &str, key: &str) -> anyhow::Result<String> {
        run_python(script, &[&self.url, key, &RECORDS.to_string()])
    }

    /// Runs a Node.js script with the pinned clients of `xtask/node/package.json`, installed
    /// by `cargo xtask test` into `$SLUICE_NODE_MODULES`; returns its stdout.
    fn node(&self, script: &str, key: &str) -> anyhow::Result<String> {
        let modules = std::env::var(NODE_MODULES_ENV).with_context(|| {
            format!("{NODE_MODULES_ENV} is not set: run `cargo xtask test`, which installs the Node clients")
        })?;
        let output = Command::new("node")
            .args(["-e", script, &self.url, key, &RECORDS.to_string()])
            .env("NODE_PATH", &modules)
            .output()
            .context("running node (Node.js 20 or later)")?;
        ensure!(
            output.status.success(),
            "node failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Where `cargo xtask test` installed `xtask/node`'s packages (a `node_modules` directory).
const NODE_MODULES_ENV: &str = "SLUICE_NODE_MODULES";

/// Every row belongs to acme, and `service` has exactly `n` of them.
fn assert_rows(rows: &[Value], service: &str, n: usize) -> TestResult {
    let tenants: Vec<&Value> = rows.iter().map(|r| &r["tenant"]).collect();
    ensure!(
        tenants.iter().all(|t| *t == "acme"),
        "rows outside the key's tenant: {tenants:?}"
    );
    let count = rows.iter().filter(|r| r["service"] == service).count();
    ensure!(
        count == n,
        "{count} rows of {service}, expected {n}: {rows:#?}"
    );
    Ok(())
}

const OTEL_SDK: &str = r#"
import logging, sys
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

url, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
provider = LoggerProvider(resource=Resource.create({"service.name": "otel-py", "tenant.id": "globex"}))
provider.add_log_record_processor(BatchLogRecordProcessor(
    OTLPLogExporter(endpoint=url + "/v1/logs", headers={"Authorization": "Bearer " + key})))
set_logger_provider(provider)
log = logging.getLogger("e2e")
log.setLevel(logging.INFO)
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
for i in range(n):
    log.warning("order %d failed", i, extra={"order": i, "tenant": "globex"})
provider.force_flush()
provider.shutdown()
"#;

#[tokio::test]
async fn otel_python_sdk_logs_land_under_the_keys_tenant() -> TestResult {
    let door = FrontDoor::start().await?;
    door.python(OTEL_SDK, &door.key)?;
    door.python(OTEL_SDK, "slk_0000000000000000_wrong")?;
    let rows = door.stored_rows().await?;
    assert_rows(&rows, "otel-py", RECORDS)?;
    ensure!(
        rows.iter()
            .all(|r| r["attrs"].as_str().unwrap_or_default().contains("globex"))
    );
    Ok(())
}

const ES_CLIENT: &str = r#"
import sys
from elasticsearch import Elasticsearch, helpers
url, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
es = Elasticsearch(url, api_key=key, request_timeout=30)
assert es.info()["version"]["number"].startswith("8.")
docs = ({"_index": "app-logs", "_source": {"message": f"doc {i}", "service.name": "es-py",
         "log.level": "info", "tenant": "globex"}} for i in range(n))
ok, errors = helpers.bulk(es, docs)
print(ok)
"#;

#[tokio::test]
async fn elasticsearch_client_bulk_lands_under_the_keys_tenant() -> TestResult {
    let door = FrontDoor::start().await?;
    let ok = door.python(ES_CLIENT, &door.key)?;
    ensure!(ok.trim() == RECORDS.to_string(), "helpers.bulk said {ok}");
    ensure!(
        door.python(ES_CLIENT, &door.revoked_key).is_err(),
        "a revoked key was accepted"
    );
    let rows = door.stored_rows().await?;
    assert_rows(&rows, "es-py", RECORDS)?;
    Ok(())
}

const SPLUNK_HANDLER: &str = r#"
import logging, sys
from urllib.parse import urlparse
from splunk_handler import SplunkHandler
url, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urlparse(url)
handler = SplunkHandler(host=u.hostname, port=u.port, token=key, index="main", protocol="http",
                        verify=False, flush_interval=0, sourcetype="json", retry_count=1)
log = logging.getLogger("hec")
log.setLevel(logging.INFO)
log.addHandler(handler)
for i in range(n):
    log.info('{"service": "splunk-py", "msg": "event %d", "tenant_id": "globex"}' % i)
handler.close()
"#;

#[tokio::test]
async fn splunk_handler_events_land_under_the_keys_tenant() -> TestResult {
    let door = FrontDoor::start().await?;
    door.python(SPLUNK_HANDLER, &door.key)?;
    door.python(SPLUNK_HANDLER, "not-a-key")?;
    let rows = door.stored_rows().await?;
    // The handler sends each event's text; its JSON is the message.
    let splunk: Vec<&Value> = rows.iter().filter(|r| r["tenant"] == "acme").collect();
    ensure!(splunk.len() == RECORDS, "{} rows: {rows:#?}", splunk.len());
    ensure!(rows.iter().all(|r| r["tenant"] == "acme"));
    Ok(())
}

const LOKI_CLIENT: &str = r#"
import logging, sys
import logging_loki
url, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
handler = logging_loki.LokiHandler(url=url + "/loki/api/v1/push",
    tags={"service_name": "loki-py", "tenant": "globex"}, auth=("anyone", key), version="1")
log = logging.getLogger("loki")
log.setLevel(logging.INFO)
log.addHandler(handler)
for i in range(n):
    log.error("line %d", i)
"#;

#[tokio::test]
async fn loki_client_pushes_land_under_the_keys_tenant() -> TestResult {
    let door = FrontDoor::start().await?;
    door.python(LOKI_CLIENT, &door.key)?;
    door.python(LOKI_CLIENT, &door.revoked_key)?;
    let rows = door.stored_rows().await?;
    assert_rows(&rows, "loki-py", RECORDS)?;
    Ok(())
}

/// The OpenTelemetry JS SDK's OTLP/HTTP exporter, which sends OTLP/JSON.
const OTEL_JS: &str = r#"
const { LoggerProvider, BatchLogRecordProcessor } = require('@opentelemetry/sdk-logs');
const { OTLPLogExporter } = require('@opentelemetry/exporter-logs-otlp-http');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const [url, key, n] = process.argv.slice(1);
(async () => {
  const exporter = new OTLPLogExporter({ url: url + '/v1/logs', headers: { Authorization: 'Bearer ' + key } });
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ 'service.name': 'otel-js', 'tenant.id': 'globex' }),
    processors: [new BatchLogRecordProcessor({ exporter, maxExportBatchSize: 16 })],
  });
  const logger = provider.getLogger('e2e');
  for (let i = 0; i < Number(n); i++) {
    logger.emit({ severityNumber: 13, severityText: 'WARN', body: `order ${i} failed`,
                  attributes: { order: i, tenant: 'globex', ok: false } });
  }
  await provider.forceFlush();
  await provider.shutdown();
})().catch((e) => { console.error(e); process.exit(1); });
"#;

#[tokio::test]
async fn otel_js_sdk_json_logs_land_under_the_keys_tenant() -> TestResult {
    let door = FrontDoor::start().await?;
    door.node(OTEL_JS, &door.key)?;
    door.node(OTEL_JS, &door.revoked_key)?;
    let rows = door.stored_rows().await?;
    assert_rows(&rows, "otel-js", RECORDS)?;
    ensure!(
        rows.iter()
            .all(|r| r["attrs"].as_str().unwrap_or_default().contains("globex")),
        "the claimed tenant is kept in attrs: {rows:#?}"
    );
    Ok(())
}

/// winston-loki, which pushes snappy-compressed protobuf when `snappy` loads (and falls back to
/// JSON silently otherwise: the script refuses to run then).
const WINSTON_LOKI: &str = r#"
const winston = require('winston');
const LokiTransport = require('winston-loki');
const [url, key, n] = process.argv.slice(1);
(async () => {
  const loki = new LokiTransport({ host: url, basicAuth: 'anyone:' + key, json: false,
    labels: { service_name: 'loki-js', tenant: 'globex' }, interval: 1, clearOnError: true,
    gracefulShutdown: false, onConnectionError: (e) => console.error('push failed:', e.message) });
  if (loki.batcher.contentType !== 'application/x-protobuf') {
    throw new Error('winston-loki would send ' + loki.batcher.contentType + ', not protobuf');
  }
  const log = winston.createLogger({ transports: [loki] });
  for (let i = 0; i < Number(n); i++) log.error(`line ${i}`);
  await loki.flush();
  loki.close();
})().catch((e) => { console.error(e); process.exit(1); });
"#;

#[tokio::test]
async fn winston_loki_protobuf_pushes_land_under_the_keys_tenant() -> TestResult {
    let door = FrontDoor::start().await?;
    door.node(WINSTON_LOKI, &door.key)?;
    door.node(WINSTON_LOKI, "slk_0000000000000000_wrong")?;
    let rows = door.stored_rows().await?;
    assert_rows(&rows, "loki-js", RECORDS)?;
    Ok(())
}

#[tokio::test]
async fn hec_raw_lines_sent_with_curl_land_under_the_keys_tenant() -> TestResult {
    let door = FrontDoor::start().await?;
    // Splunk's documented way to use the raw endpoint: curl, a channel, one event per line.
    let body: String = (0..RECORDS)
        .map(|i| format!("{{\"service\":\"hec-raw\",\"msg\":\"raw {i}\",\"tenant\":\"globex\"}}\n"))
        .collect();
    let curl = |key: &str| -> anyhow::Result<String> {
        let output = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "-H"])
            .arg(format!("Authorization: Splunk {key}"))
            .args([
                "-H",
                "X-Splunk-Request-Channel: 0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba",
                "--data-binary",
                &body,
            ])
            .arg(format!(
                "{}/services/collector/raw?sourcetype=_json",
                door.url
            ))
            .output()
            .context("running curl")?;
        ensure!(output.status.success(), "curl failed: {output:?}");
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let answer = curl(&door.key)?;
    ensure!(answer.ends_with("\n200"), "HEC raw answered {answer}");
    let refused = curl(&door.revoked_key)?;
    ensure!(refused.ends_with("\n401"), "a revoked key got {refused}");
    let rows = door.stored_rows().await?;
    assert_rows(&rows, "hec-raw", RECORDS)?;
    Ok(())
}

const REFUSALS: &str = r#"
import gzip, http.client, json, sys
from urllib.parse import urlparse
url, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urlparse(url)
def post(path, body, headers):
    # A server may answer 413 and close before a large body is sent: read the answer anyway.
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.putrequest("POST", path)
    for k, v in {**headers, "Content-Length": str(len(body))}.items():
        conn.putheader(k, v)
    conn.endheaders()
    try:
        conn.send(body)
    except (BrokenPipeError, ConnectionResetError):
        pass
    status = conn.getresponse().status
    conn.close()
    return status
auth = {"Authorization": "Bearer " + key}
good = "\n".join(json.dumps({"service": "ndjson", "msg": f"m{i}"}) for i in range(5)).encode()
codes = [
    post("/v1/ingest", good, auth),
    post("/v1/ingest", gzip.compress(b" " * (64 << 20)), {**auth, "Content-Encoding": "gzip"}),
    post("/v1/ingest", good, auth),
    post("/v1/ingest", b"x" * (7 << 20), auth),
    post("/v1/ingest", good, {"Authorization": "Bearer slk_0123456789abcdef_" + "0" * 64}),
    post("/v1/ingest", good, auth),
]
print(json.dumps(codes))
"#;

#[tokio::test]
async fn bombs_oversized_bodies_and_bad_keys_are_refused_while_valid_requests_are_stored()
-> TestResult {
    let door = FrontDoor::start().await?;
    let codes: Vec<u16> = serde_json::from_str(&door.python(REFUSALS, &door.key)?)?;
    ensure!(codes == [200, 413, 200, 413, 401, 200], "{codes:?}");
    let rows = door.stored_rows().await?;
    assert_rows(&rows, "ndjson", 15)?;
    Ok(())
}
