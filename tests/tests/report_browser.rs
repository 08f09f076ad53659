//! `sluice report` as a person sees it: the demo's report opened in a real headless Chromium
//! (Debian's `chromium`, driven by Playwright from the tooling venv; `cargo xtask test`
//! installs both). The page must render with no console error and no network request, draw
//! one chart per service, put the incident's alert bands inside the incident's minutes, and
//! draw the values DuckDB reads from the stored metrics. The screenshot is kept under
//! `$SLUICE_TEST_ARTIFACTS` (`cargo xtask test`: `<target dir>/test-artifacts/report.png`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, ensure};
use serde_json::Value;
use sluice_e2e::{repo_root, run_python, sluice_binary};

/// The demo's hour ends here, so its incident is 11:35 to 11:45 UTC.
const UNTIL: &str = "2026-11-26T12:00:07Z";
const INCIDENT_START_MS: i64 = 1_795_692_900_000; // 2026-11-26T11:35:00Z
const INCIDENT_END_MS: i64 = INCIDENT_START_MS + 10 * 60_000;

/// Opens the page, records console errors, page errors and requests, reads every chart's axis
/// and alert bands and the embedded data, and takes a full-page screenshot.
const BROWSE: &str = r##"
import json, sys
from playwright.sync_api import sync_playwright
page_path, shot, chromium = sys.argv[1], sys.argv[2], sys.argv[3]
errors, requests = [], []
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"])
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto("file://" + page_path)
    page.wait_for_load_state("load")
    charts = page.eval_on_selector_all("figure.chart", """figures => figures.map(f => ({
        service: f.dataset.service,
        windows: Number(f.dataset.windows),
        x0: Number(f.dataset.x0Px), x1: Number(f.dataset.x1Px),
        t0: Number(f.dataset.t0Ms), t1: Number(f.dataset.t1Ms),
        width: f.querySelector("svg").getBoundingClientRect().width,
        lines: f.querySelectorAll("svg polyline").length,
        bands: Array.from(f.querySelectorAll('svg rect[fill="#E4572E"]')).map(r => ({
            x: Number(r.getAttribute("x")), width: Number(r.getAttribute("width"))})),
    }))""")
    data = json.loads(page.eval_on_selector("#report-data", "e => e.textContent"))
    page.screenshot(path=shot, full_page=True)
    browser.close()
print(json.dumps({"errors": errors, "requests": requests, "charts": charts, "data": data}))
"##;

fn chromium() -> anyhow::Result<String> {
    let path = std::env::var("SLUICE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    ensure!(
        std::path::Path::new(&path).exists(),
        "no Chromium at {path}: `cargo xtask test` installs Debian's chromium, or set SLUICE_CHROMIUM"
    );
    Ok(path)
}

fn artifacts() -> PathBuf {
    std::env::var_os("SLUICE_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("sluice-test-artifacts"))
}

#[test]
fn the_demo_report_renders_offline_with_the_incident_band_and_the_stored_values()
-> anyhow::Result<()> {
    let chromium = chromium()?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("demo");
    let wasm = std::env::var_os("SLUICE_PLUGINS_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("plugins/target/wasm32-wasip2/debug"));
    let demo = Command::new(sluice_binary()?)
        .args(["demo", "--records", "30000", "--tenants", "2", "--json"])
        .args(["--until", UNTIL, "--out"])
        .arg(&out)
        .arg("--rules-dir")
        .arg(&wasm)
        .output()?;
    ensure!(
        demo.status.success(),
        "sluice demo failed: {}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let report = out.join("report.html");
    ensure!(report.is_file(), "the demo wrote no {}", report.display());

    std::fs::create_dir_all(artifacts())?;
    let shot = artifacts().join("report.png");
    let seen: Value = serde_json::from_str(&run_python(
        BROWSE,
        &[
            report.to_str().context("non-UTF-8 path")?,
            shot.to_str().context("non-UTF-8 path")?,
            &chromium,
        ],
    )?)?;
    eprintln!("screenshot: {}", shot.display());

    ensure!(
        seen["errors"] == serde_json::json!([]),
        "console: {}",
        seen["errors"]
    );
    let requests: Vec<&str> = seen["requests"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    ensure!(
        requests.iter().all(|u| u.starts_with("file://")) && requests.len() == 1,
        "the page fetched {requests:?}"
    );

    // One chart per service, each a line per series with a point per window.
    let data = &seen["data"];
    let services = data["services"].as_object().context("services")?;
    let charts = seen["charts"].as_array().context("charts")?;
    ensure!(
        charts.len() == services.len() && charts.len() >= 4,
        "{} charts",
        charts.len()
    );
    for chart in charts {
        let service = chart["service"].as_str().unwrap_or_default();
        ensure!(
            chart["width"].as_f64() > Some(500.0),
            "{service} drawn {}",
            chart["width"]
        );
        ensure!(
            chart["lines"].as_u64() >= Some(5),
            "{service}: {} lines",
            chart["lines"]
        );
        ensure!(
            chart["windows"] == services[service].as_array().map_or(0, Vec::len),
            "{service}"
        );
    }

    // The incident's alerts are bands on the checkout chart, inside the incident's minutes
    // (firing needs two windows in a row; resolving, the first window without it).
    let checkout = charts
        .iter()
        .find(|c| c["service"] == "checkout")
        .context("no checkout chart")?;
    let (x0, x1) = (
        checkout["x0"].as_f64().unwrap_or(0.0),
        checkout["x1"].as_f64().unwrap_or(1.0),
    );
    let (t0, t1) = (
        checkout["t0"].as_f64().unwrap_or(0.0),
        checkout["t1"].as_f64().unwrap_or(1.0),
    );
    let time_at = |x: f64| t0 + (x - x0) / (x1 - x0) * (t1 - t0);
    let bands = checkout["bands"].as_array().context("bands")?;
    ensure!(!bands.is_empty(), "no alert band on the checkout chart");
    for band in bands {
        let x = band["x"].as_f64().unwrap_or(0.0);
        let (start, end) = (
            time_at(x),
            time_at(x + band["width"].as_f64().unwrap_or(0.0)),
        );
        let minute = |ms: f64| (ms - INCIDENT_START_MS as f64) / 60_000.0;
        ensure!(
            (INCIDENT_START_MS as f64 - 30_000.0..INCIDENT_END_MS as f64).contains(&start)
                && end <= INCIDENT_END_MS as f64 + 4.0 * 60_000.0
                && end > start,
            "band from minute {:.1} to {:.1} of the incident",
            minute(start),
            minute(end)
        );
    }
    for chart in charts.iter().filter(|c| c["service"] != "checkout") {
        ensure!(
            chart["bands"] == serde_json::json!([]),
            "band on {}",
            chart["service"]
        );
    }

    // What is drawn is what DuckDB reads from the stored metrics, window by window.
    let stored: Vec<Vec<Value>> = serde_json::from_str(&run_python(
        r#"
import duckdb, json, sys
rows = duckdb.connect().execute(f"""
    SELECT epoch_ms(window_start), count, http_5xx, error_rate, latency_p50, latency_p99
    FROM read_parquet('{sys.argv[1]}/metrics/tenant=acme/**/*.parquet')
    WHERE service = 'checkout' ORDER BY window_start""").fetchall()
print(json.dumps([list(r) for r in rows]))
"#,
        &[out.to_str().context("non-UTF-8 path")?],
    )?)?;
    let drawn = services["checkout"].as_array().context("checkout points")?;
    ensure!(
        stored.len() == drawn.len(),
        "{} stored, {} drawn",
        stored.len(),
        drawn.len()
    );
    for (row, point) in stored.iter().zip(drawn) {
        let near = |a: &Value, b: &Value| {
            (a.as_f64().unwrap_or(f64::NAN) - b.as_f64().unwrap_or(f64::NAN)).abs() < 1e-9
        };
        ensure!(
            row[0] == point["start_ms"]
                && row[1] == point["events"]
                && row[2] == point["http_5xx"]
                && near(&row[3], &point["error_rate"])
                && near(&row[4], &point["latency_p50"])
                && near(&row[5], &point["latency_p99"]),
            "stored {row:?}, drawn {point}"
        );
    }
    Ok(())
}
