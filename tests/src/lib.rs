//! # sluice-e2e
//!
//! Support for the end-to-end tests in `tests/tests/`, which run sluice against a local AWS
//! emulator (moto 5.2.5 or LocalStack) and read the results back with pyarrow and DuckDB.
//!
//! The emulator is started by `cargo xtask test` (or `cargo xtask emulator up`), which exports
//! `SLUICE_TEST_ENDPOINT`. Every test creates its own uniquely named bucket, so tests run in
//! parallel and against a long-lived emulator without seeing each other's objects.
//!
//! Python (for pyarrow and DuckDB) is `$SLUICE_PYTHON`, else `python3`.
//!
//! [`fault_proxy`] puts a fault-injecting HTTP proxy between sluice and the emulator (S3
//! SlowDown, dropped connections, Kinesis throttling and partial `PutRecords` failures).

pub mod fault_proxy;
pub mod incident;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail, ensure};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Credentials;
use base64::Engine as _;
use bytes::Bytes;
use sluice_aws::S3BlobStore;

/// The emulator's endpoint, e.g. `http://127.0.0.1:5055`.
pub const ENDPOINT_ENV: &str = "SLUICE_TEST_ENDPOINT";
/// The Python interpreter with pyarrow and DuckDB.
pub const PYTHON_ENV: &str = "SLUICE_PYTHON";
/// Region of every test client.
pub const REGION: &str = "us-east-1";

/// The emulator endpoint. Panics, with what to do, when no emulator was configured.
pub fn endpoint() -> String {
    match std::env::var(ENDPOINT_ENV) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => panic!(
            "{ENDPOINT_ENV} is not set: start an emulator: cargo xtask test, or cargo xtask \
             emulator up and export {ENDPOINT_ENV}"
        ),
    }
}

/// The repository root (the workspace this package lives in).
pub fn repo_root() -> PathBuf {
    sluice_cargo_env::manifest_dir(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The Python interpreter to run pyarrow and DuckDB with.
pub fn python() -> String {
    std::env::var(PYTHON_ENV)
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "python3".to_owned())
}

/// The `sluice` command line binary: `$SLUICE_BIN`, else built (or found up to date) by
/// `cargo build --workspace --bin sluice`, so it is never a stale copy. `cargo xtask test` sets
/// `SLUICE_BIN` to the binary its test build has just made. The fallback selects the whole
/// workspace, as the test run does, so that features unify the same way and nothing is compiled
/// twice; the variables cargo set for this test are removed, since build scripts that watch them
/// would otherwise run again.
pub fn sluice_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SLUICE_BIN").filter(|b| !b.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--workspace",
        "--bin",
        "sluice",
        "--message-format=json",
    ])
    .current_dir(repo_root())
    .stderr(std::process::Stdio::inherit());
    sluice_cargo_env::remove_cargo_run_vars(&mut cmd, &["NEXTEST"]);
    let out = cmd
        .output()
        .context("running cargo build for the sluice binary")?;
    ensure!(
        out.status.success(),
        "cargo build --workspace --bin sluice failed"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["target"]["name"] == "sluice")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo build did not report the sluice executable")
}

/// An S3 client for the emulator, built the way the functions build theirs
/// ([`sluice_aws::s3_client`], so path-style addressing), with dummy credentials.
pub async fn s3_client() -> Client {
    sluice_aws::s3_client(&sdk_config().await)
}

/// The SDK configuration of every test client: the emulator's endpoint, dummy credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::from_static(REGION))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new("test", "test", None, None, "sluice-e2e"))
        .load()
        .await
}

/// Runs the local pipeline over `stream` until it is drained (state in `state_dir`), then
/// reads `columns` of every row stored in the raw tier (`raw/`) of `data` with DuckDB.
pub async fn drain_and_read_rows(
    sdk: &aws_config::SdkConfig,
    stream: &str,
    data: &TestBucket,
    rules_bucket: &str,
    state_dir: &Path,
    columns: &[&str],
) -> anyhow::Result<Vec<serde_json::Value>> {
    use sluice_local::runner::{RunConfig, Runner, StopReason};
    use std::time::Duration;
    let mut c = RunConfig::new(stream, &data.name, rules_bucket, state_dir.to_path_buf());
    c.failure_queue = None;
    c.evaluate_every = None;
    c.ingest.batching_window = Duration::from_millis(200);
    c.aggregate.batching_window = Duration::from_millis(200);
    c.until_idle = Some(Duration::from_millis(500));
    c.max_runtime = Some(Duration::from_secs(120));
    let report = Runner::connect(sdk, c)
        .await?
        .run(std::future::pending())
        .await?;
    ensure!(
        report.stop_reason == StopReason::Idle,
        "not drained: {report:#?}"
    );
    let dir = tempfile::tempdir()?;
    data.download("raw/", dir.path()).await?;
    duckdb_rows(dir.path(), columns)
}

/// A fresh bucket for one test, named uniquely.
#[derive(Debug, Clone)]
pub struct TestBucket {
    pub client: Client,
    pub name: String,
}

impl TestBucket {
    /// Creates a new, empty bucket on the emulator.
    pub async fn create() -> anyhow::Result<Self> {
        let client = s3_client().await;
        let name = format!(
            "sluice-e2e-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        );
        client
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "creating bucket {name} on {}: {}",
                    endpoint(),
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })?;
        Ok(Self { client, name })
    }

    /// The sluice store over this bucket (default multipart settings).
    pub fn store(&self) -> S3BlobStore {
        S3BlobStore::new(self.client.clone(), &self.name)
    }

    /// Every key under `prefix`, sorted, listed directly with the SDK (not through sluice).
    pub async fn keys(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.with_context(|| format!("listing {prefix} in {}", self.name))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys.sort();
        Ok(keys)
    }

    /// The object under `key`, read directly with the SDK.
    pub async fn object(&self, key: &str) -> anyhow::Result<Bytes> {
        let out = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .with_context(|| format!("getting {key} from {}", self.name))?;
        Ok(out
            .body
            .collect()
            .await
            .context("reading the body")?
            .into_bytes())
    }

    /// Downloads every object under `prefix` to `dir`, keeping the key as the relative path.
    /// Returns the files written.
    pub async fn download(&self, prefix: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for key in self.keys(prefix).await? {
            ensure!(
                !key.split('/').any(|p| p == ".." || p.is_empty()),
                "refusing to download the odd key {key:?}"
            );
            let path = dir.join(&key);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let body = self.object(&key).await?;
            std::fs::write(&path, &body).with_context(|| format!("writing {}", path.display()))?;
            files.push(path);
        }
        Ok(files)
    }
}

/// Runs a Python snippet with arguments; returns its stdout, or fails with its stderr.
pub fn run_python(script: &str, args: &[&str]) -> anyhow::Result<String> {
    let python = python();
    let output = Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .with_context(|| {
            format!("running {python} (set {PYTHON_ENV} to a Python with pyarrow and duckdb)")
        })?;
    if !output.status.success() {
        bail!(
            "{python} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).context("python printed non-UTF-8")
}

/// Checks the Parquet under `dir/` (both tiers, as the documented query reads them:
/// docs/ARCHITECTURE.md §11) with pyarrow and DuckDB (`xtask/python/verify_parquet.py`,
/// the check `cargo xtask demo` runs): both must read it and find `expect_rows` rows.
pub fn verify_parquet(dir: &Path, expect_rows: u64) -> anyhow::Result<()> {
    verify_parquet_tier(dir, "all", expect_rows)
}

/// [`verify_parquet`] for one tier: `logs` (compacted rows before the watermark), `recent`
/// (raw rows from it on) or `all` (docs/ARCHITECTURE.md §11).
pub fn verify_parquet_tier(dir: &Path, tier: &str, expect_rows: u64) -> anyhow::Result<()> {
    let dir_arg = dir.to_str().context("non-UTF-8 temp dir")?;
    let rows_arg = expect_rows.to_string();
    let script = repo_root().join("xtask/python/verify_parquet.py");
    let python = python();
    let output = Command::new(&python)
        .arg(&script)
        .arg(dir_arg)
        .args(["--tier", tier])
        .arg("--expect-rows")
        .arg(&rows_arg)
        .output()
        .with_context(|| format!("running {python} {}", script.display()))?;
    ensure!(
        output.status.success(),
        "{} rejected {dir_arg} ({}):\n{}\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Reads `columns` of every row under `dir/raw/` and `dir/logs/` (every row of every object,
/// both tiers, no watermark applied) with pyarrow, one JSON object per row, each
/// with `_key` (the object's key relative to `dir`) added. Timestamps come back as integer ms
/// since the epoch. Rows are in file order, then row order.
pub fn parquet_rows(dir: &Path, columns: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    rows_read_by("pyarrow", dir, columns)
}

/// [`parquet_rows`], read by DuckDB instead (`read_parquet`, one file at a time, rows in file
/// order): a second, independent decoder of every value.
pub fn duckdb_rows(dir: &Path, columns: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    rows_read_by("duckdb", dir, columns)
}

fn rows_read_by(
    reader: &str,
    dir: &Path,
    columns: &[&str],
) -> anyhow::Result<Vec<serde_json::Value>> {
    let dir_arg = dir.to_str().context("non-UTF-8 temp dir")?;
    let cols = columns.join(",");
    let out = run_python(ROW_READER, &[dir_arg, &cols, reader])?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out)
        .with_context(|| format!("python printed something other than JSON: {out}"))?;
    Ok(rows)
}

const ROW_READER: &str = r#"
import glob, json, os, sys
import pyarrow as pa
import pyarrow.parquet as pq

root, cols, reader = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
rows = []
files = [
    f
    for tier in ("logs", "raw")
    for f in sorted(glob.glob(os.path.join(root, tier, "**", "*.parquet"), recursive=True))
]
for f in files:
    key = os.path.relpath(f, root).replace(os.sep, "/")
    if reader == "duckdb":
        import duckdb
        quoted = ", ".join('"' + c + '"' for c in cols)
        table = duckdb.connect().execute(
            f"SELECT {quoted} FROM read_parquet(?, hive_partitioning=false)", [f]
        ).to_arrow_table()
    else:
        table = pq.ParquetFile(f).read(columns=cols)
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            # Timestamps as integer ms since the epoch, so Rust compares exact values.
            ms = table.column(i).cast(pa.timestamp("ms", tz=field.type.tz)).cast(pa.int64())
            table = table.set_column(i, field.name, ms)
    for row in table.to_pylist():
        row["_key"] = key
        rows.append(row)
print(json.dumps(rows, default=str))
"#;

/// One record of a test batch.
#[derive(Debug, Clone)]
pub struct TestRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
    /// `approximateArrivalTimestamp` exactly as Lambda writes it: seconds, ms in the fraction.
    pub arrival: String,
}

impl TestRecord {
    pub fn new(partition_key: &str, data: impl Into<Vec<u8>>, arrival: &str) -> Self {
        Self {
            partition_key: partition_key.to_owned(),
            data: data.into(),
            arrival: arrival.to_owned(),
        }
    }
}

/// The sequence number of the `index`-th record of a test batch: `prefix` and six digits, so
/// that numbers of one batch have one length and sort as numbers do. Real ones have 56 digits:
/// too many for any integer type.
pub fn sequence_number(prefix: &str, index: usize) -> String {
    format!("{prefix}{index:06}")
}

/// A Lambda Kinesis event as JSON, shaped exactly as Lambda delivers it (base64 data,
/// `eventID` = `shard:sequence`, seconds-with-fraction arrival). Record `i` has the sequence
/// number [`sequence_number`]`(sequence_prefix, i)`.
pub fn lambda_kinesis_event(
    shard_id: &str,
    sequence_prefix: &str,
    records: &[TestRecord],
) -> String {
    let records: Vec<String> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let sequence = sequence_number(sequence_prefix, i);
            let record = serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": sequence,
                    "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                    "approximateArrivalTimestamp": "ARRIVAL",
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard_id}:{sequence}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/sluice-ingest",
                "awsRegion": REGION,
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/sluice-logs",
            });
            // The arrival goes in as a bare JSON number with its digits as written.
            record.to_string().replace("\"ARRIVAL\"", &r.arrival)
        })
        .collect();
    format!("{{\"Records\":[{}]}}", records.join(","))
}

/// Decodes a gzip NDJSON dead-letter object into its JSON lines (read generically, to check
/// the wire format rather than sluice's own decoder).
pub fn dead_letter_lines(body: &[u8]) -> anyhow::Result<Vec<serde_json::Value>> {
    use std::io::Read as _;
    let mut text = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut text)
        .context("the dead-letter object is not gzip UTF-8")?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("not a JSON line: {l}")))
        .collect()
}

/// Base64 (standard alphabet) of `bytes`, as the dead-letter `data` field holds them.
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Bytes from standard base64.
pub fn from_base64(text: &str) -> anyhow::Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .with_context(|| format!("not base64: {text:?}"))
}

/// Puts `entries` into `stream` with PutRecords (500 a call), retrying the entries that
/// failed (up to ten times) until every one is in.
pub async fn put_records(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    entries: Vec<aws_sdk_kinesis::types::PutRecordsRequestEntry>,
) -> anyhow::Result<()> {
    for chunk in entries.chunks(500) {
        let mut pending = chunk.to_vec();
        for _ in 0..10 {
            let out = kinesis
                .put_records()
                .stream_name(stream)
                .set_records(Some(pending.clone()))
                .send()
                .await?;
            if out.failed_record_count().unwrap_or_default() == 0 {
                pending.clear();
                break;
            }
            pending = pending
                .into_iter()
                .zip(out.records())
                .filter(|(_, r)| r.error_code().is_some())
                .map(|(e, _)| e)
                .collect();
        }
        ensure!(pending.is_empty(), "PutRecords kept failing");
    }
    Ok(())
}

/// A built rule component from `plugins/` (`$SLUICE_PLUGINS_WASM_DIR`, else
/// `plugins/target/wasm32-wasip2/debug`), e.g. `threshold.wasm`.
pub fn rule_component(file: &str) -> anyhow::Result<Vec<u8>> {
    let dir = std::env::var_os("SLUICE_PLUGINS_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("plugins/target/wasm32-wasip2/debug"));
    let path = dir.join(file);
    std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (build the rule components: cargo build --target wasm32-wasip2 in plugins/, \
             or set SLUICE_PLUGINS_WASM_DIR)",
            path.display()
        )
    })
}

/// `sluice serve` running on 127.0.0.1 with the emulator's credentials; killed when dropped.
#[derive(Debug)]
pub struct Served {
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>`, as the server announced it.
    pub url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sluice serve --listen 127.0.0.1:0 <args>` with `env` and the emulator's dummy
/// credentials, and waits for the line that announces its URL.
pub fn serve(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Served> {
    use std::io::BufRead as _;
    let mut child = Command::new(sluice_binary()?)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", REGION)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting sluice serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let mut served = Served {
        child,
        url: String::new(),
    };
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://127.0.0.1:"))
        .with_context(|| format!("sluice serve said {line:?}"))?
        .to_owned();
    served.url = url;
    Ok(served)
}
