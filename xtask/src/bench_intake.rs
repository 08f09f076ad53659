//! The front door's figures in `cargo xtask bench` (docs/ARCHITECTURE.md §8), next to the
//! ingest tables:
//!
//! - intake throughput per core and protocol: the criterion bench `sluice-api`/`intake`
//!   (request parsing, re-encoding into record objects and stamping, no stream, one thread,
//!   the same generated logs for every protocol), run with `cargo bench --profile release`;
//!   each protocol's median time per request of 10,000 records is read from criterion's
//!   `estimates.json` and reported as records/s against its target;
//! - the API's latency in front of a local stream: `sluice serve --data DIR` (the embedded
//!   stream, drained into Parquet by its own pump in the same process) on 127.0.0.1, a tenant
//!   key made with `sluice tenants`, and requests of 1,000 generated records each to
//!   `POST /v1/ingest`, one at a time on one kept-alive connection; p50 and p99 of the time
//!   from the first byte sent to the last byte of the answer (every answer must be 200 with
//!   all records accepted).

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::util::{self, note};

/// Targets of the issue (records/s/core); `None`: the issue sets none.
const PROTOCOLS: &[(&str, &str, Option<f64>)] = &[
    ("ndjson", "NDJSON", Some(300_000.0)),
    ("otlp_protobuf", "OTLP protobuf", Some(300_000.0)),
    ("elasticsearch_bulk", "Elasticsearch bulk", Some(300_000.0)),
    ("otlp_json", "OTLP JSON", Some(150_000.0)),
    ("loki_protobuf", "Loki protobuf (snappy)", Some(150_000.0)),
    ("loki_json", "Loki JSON", Some(150_000.0)),
    ("hec_event", "Splunk HEC event", None),
    ("hec_raw", "Splunk HEC raw", None),
];

/// Records per latency request, as the issue asks.
const RECORDS_PER_REQUEST: usize = 1_000;

/// Options of the front door's part of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct IntakeArgs {
    /// Skip the front door's figures (intake throughput and API latency).
    #[arg(long)]
    pub no_intake: bool,
    /// Only the front door's figures (no ingest, baselines or agent runs).
    #[arg(long, conflicts_with = "no_intake")]
    pub intake_only: bool,
    /// Timed requests of 1,000 records for the latency figures (after 20 untimed ones).
    #[arg(long, default_value_t = 300)]
    pub latency_requests: usize,
}

/// One protocol's throughput.
#[derive(Debug)]
pub struct Throughput {
    id: &'static str,
    name: &'static str,
    target: Option<f64>,
    records_per_s: f64,
}

/// The API's latency per request.
#[derive(Debug)]
pub struct Latency {
    requests: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// What the front door's part measured.
#[derive(Debug)]
pub struct IntakeReport {
    throughput: Vec<Throughput>,
    latency: Latency,
}

/// Runs the intake bench and the latency run with `sluice` (a release build).
pub fn measure(args: &IntakeArgs, sluice: &Path) -> Result<IntakeReport> {
    let throughput = throughput()?;
    let latency = latency(sluice, args.latency_requests)?;
    Ok(IntakeReport {
        throughput,
        latency,
    })
}

/// `cargo bench --profile release -p sluice-api --bench intake`, then criterion's medians.
fn throughput() -> Result<Vec<Throughput>> {
    util::run(util::cargo().args([
        "bench",
        "--profile",
        "release",
        "-p",
        "sluice-api",
        "--bench",
        "intake",
        "--",
        "--noplot",
    ]))?;
    let dir = util::target_dir()?.join("criterion").join("intake");
    PROTOCOLS
        .iter()
        .map(|&(id, name, target)| {
            let bench = dir.join(id);
            let estimates = read_json(&bench.join("new").join("estimates.json"))?;
            let info = read_json(&bench.join("new").join("benchmark.json"))?;
            let ns = estimates["median"]["point_estimate"]
                .as_f64()
                .with_context(|| format!("{id}: no median in criterion's estimates"))?;
            let records = info["throughput"]["Elements"]
                .as_f64()
                .with_context(|| format!("{id}: no element throughput in criterion's record"))?;
            Ok(Throughput {
                id,
                name,
                target,
                records_per_s: records / (ns * 1e-9),
            })
        })
        .collect()
}

fn read_json(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// `sluice serve` with the embedded stream, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves the front door over `DIR` with a fresh tenant key and times `requests` requests.
fn latency(sluice: &Path, requests: usize) -> Result<Latency> {
    let tmp = tempfile::Builder::new()
        .prefix("sluice-bench-door-")
        .tempdir()
        .context("creating a temporary directory")?;
    let data = tmp.path().join("data");
    let data_arg = data.display().to_string();
    util::output(
        Command::new(sluice)
            .args(["tenants", "create", "bench", "--data", &data_arg])
            .stdout(Stdio::piped()),
    )?;
    let created = util::output(
        Command::new(sluice)
            .args(["tenants", "keys", "create", "bench", "--json", "--data"])
            .arg(&data)
            .stdout(Stdio::piped()),
    )?;
    let key = util::last_json_object(&created)?["token"]
        .as_str()
        .context("`sluice tenants keys create --json` printed no token")?
        .to_owned();

    let records = tmp.path().join("records.ndjson");
    util::run(
        Command::new(sluice)
            .args(["gen", "--shape", "varied", "--records"])
            .arg((RECORDS_PER_REQUEST * 10).to_string())
            .arg("--out")
            .arg(&records)
            .stdout(Stdio::null()),
    )?;
    let lines: Vec<String> = fs::read_to_string(&records)
        .with_context(|| format!("reading {}", records.display()))?
        .lines()
        .map(str::to_owned)
        .collect();
    ensure!(
        lines.len() >= RECORDS_PER_REQUEST,
        "sluice gen wrote too few records"
    );
    let bodies: Vec<String> = lines
        .chunks(RECORDS_PER_REQUEST)
        .filter(|c| c.len() == RECORDS_PER_REQUEST)
        .map(|c| c.join("\n") + "\n")
        .collect();

    let mut child = Command::new(sluice)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting sluice serve")?;
    let stdout = child.stdout.take().context("sluice serve has no stdout")?;
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("reading sluice serve's address")?;
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .filter(|a| a.starts_with("127.0.0.1:"))
        .with_context(|| format!("sluice serve said {line:?}"))?
        .to_owned();
    note(format!(
        "latency: {requests} requests of {RECORDS_PER_REQUEST} records to sluice serve at {addr}"
    ));

    let mut conn = TcpStream::connect(&addr).with_context(|| format!("connecting to {addr}"))?;
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut times = Vec::with_capacity(requests);
    for i in 0..requests + 20 {
        let body = &bodies[i % bodies.len()];
        let started = Instant::now();
        write!(
            conn,
            "POST /v1/ingest HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        conn.write_all(body.as_bytes())?;
        let (status, answer) = read_response(&mut reader)?;
        let elapsed = started.elapsed();
        ensure!(status == 200, "request {i} answered {status}: {answer}");
        let accepted: Value = serde_json::from_str(&answer).unwrap_or_default();
        ensure!(
            accepted["accepted"].as_u64() == Some(RECORDS_PER_REQUEST as u64),
            "request {i}: not every record was accepted: {answer}"
        );
        if i >= 20 {
            times.push(elapsed.as_secs_f64() * 1e3);
        }
    }
    drop(server);
    Ok(summarize(&mut times))
}

/// Reads one HTTP/1.1 response with a `Content-Length`: status and body.
fn read_response(reader: &mut BufReader<TcpStream>) -> Result<(u16, String)> {
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP status line: {status_line:?}"))?;
    let mut length = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let Some(length) = length else {
        bail!("the answer has no Content-Length");
    };
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// p50, p99 (nearest rank) and max of the times.
fn summarize(times: &mut [f64]) -> Latency {
    times.sort_by(f64::total_cmp);
    let rank = |q: f64| {
        let i = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len().max(1)) - 1;
        times.get(i).copied().unwrap_or(0.0)
    };
    Latency {
        requests: times.len(),
        p50_ms: rank(0.50),
        p99_ms: rank(0.99),
        max_ms: times.last().copied().unwrap_or(0.0),
    }
}

fn verdict(t: &Throughput) -> String {
    match t.target {
        Some(target) if t.records_per_s >= target => "met".into(),
        Some(_) => "NOT met".into(),
        None => "-".into(),
    }
}

/// Prints both tables.
pub fn print(report: &IntakeReport) {
    let rows: Vec<Vec<String>> = report
        .throughput
        .iter()
        .map(|t| {
            vec![
                t.name.to_owned(),
                format!("{:.0}", t.records_per_s),
                t.target.map_or("-".into(), |x| format!("{x:.0}")),
                verdict(t),
            ]
        })
        .collect();
    println!();
    println!("front door intake, one core (parse + re-encode + stamp, no stream):");
    println!(
        "{}",
        util::table(&["protocol", "records/s", "target", "target met"], &rows)
    );
    let l = &report.latency;
    println!(
        "front door latency, POST /v1/ingest of {RECORDS_PER_REQUEST} records to `sluice serve` \
         over its embedded stream, {} requests: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.requests, l.p50_ms, l.p99_ms, l.max_ms
    );
}

/// The report as JSON (the `intake` member of `cargo xtask bench --json`).
pub fn to_json(report: &IntakeReport) -> Value {
    let l = &report.latency;
    json!({
        "throughput": report.throughput.iter().map(|t| json!({
            "protocol": t.id,
            "records_per_s": t.records_per_s,
            "target": t.target,
            "met": t.target.map(|x| t.records_per_s >= x),
        })).collect::<Vec<_>>(),
        "latency": {
            "records_per_request": RECORDS_PER_REQUEST,
            "requests": l.requests,
            "p50_ms": l.p50_ms,
            "p99_ms": l.p99_ms,
            "max_ms": l.max_ms,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_nearest_rank_percentiles() {
        let mut times: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        let l = summarize(&mut times);
        assert_eq!((l.p50_ms, l.p99_ms, l.max_ms), (100.0, 198.0, 200.0));
        let l = summarize(&mut [3.0]);
        assert_eq!((l.p50_ms, l.p99_ms), (3.0, 3.0));
    }
}
