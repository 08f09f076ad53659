//! Ingest stores only what is valid JSON (docs/ARCHITECTURE.md §9): a file that mixes valid
//! records with almost-valid ones (each of the mistakes a hand-rolled scanner lets through),
//! through `sluice ingest`, read back with DuckDB. Exactly the lines `serde_json` accepts become
//! rows, every other one is dead-lettered as `not_json`, and every stored `attrs` is valid JSON,
//! so `json_extract` over the whole column works.

use std::fmt::Write as _;
use std::process::Command;

use anyhow::{Context as _, ensure};
use sluice_core::synth::{Generator, Shape, SynthConfig};
use sluice_e2e::{run_python, sluice_binary};

/// Members that look like JSON but are not, each appended to an otherwise valid record.
const ALMOST: [&str; 14] = [
    r#""n":1-2"#,
    r#""n":007"#,
    r#""a":[1,,2]"#,
    r#""a":"bad \q escape""#,
    "\"t\":\"tab\there\"",
    r#""o":{"k":1,}"#,
    r#""o":{"k" 1}"#,
    r#""u":"\ud800""#,
    r#""u":"\u+abc""#,
    r#""n":+1"#,
    r#""n":.5"#,
    r#""n":1.e5"#,
    r#""a":[1 2]"#,
    r#""o":{k:1}"#,
];

#[test]
fn a_mix_of_valid_and_almost_valid_records_stores_exactly_the_valid_ones() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("mix.ndjson");
    let config = SynthConfig {
        events: 600,
        tenants: 8,
        services_per_tenant: 8,
        shape: Shape::Varied,
        start_ms: sluice_core_now_ms() - 600_000,
        duration_ms: 300_000,
        ..SynthConfig::default()
    };
    let mut text = String::new();
    let mut valid = 0;
    for (i, event) in Generator::new(config).enumerate() {
        let record = String::from_utf8(event.payload)?;
        let tenant = event.partition_key.split('/').next().unwrap_or_default();
        let body = record
            .strip_suffix('}')
            .context("a generated record is an object")?;
        let line = if i % 2 == 0 {
            format!(r#"{body},"tenant":"{tenant}"}}"#)
        } else {
            format!(
                r#"{body},"tenant":"{tenant}",{}}}"#,
                ALMOST[i / 2 % ALMOST.len()]
            )
        };
        let accepted = serde_json::from_str::<serde_json::Value>(&line).is_ok();
        ensure!(
            accepted == (i % 2 == 0),
            "line {i} should be {}",
            i % 2 == 0
        );
        valid += usize::from(accepted);
        writeln!(text, "{line}")?;
    }
    std::fs::write(&input, &text)?;
    let out = dir.path().join("data");
    let output = Command::new(sluice_binary()?)
        .args(["ingest", "--json", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "sluice ingest failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("sluice ingest --json printed no report")?;
    ensure!(report["rows"] == valid, "rows: {report}");
    ensure!(
        report["rejected"]["not_json"] == 600 - valid,
        "rejected: {report}"
    );

    let counts = run_python(
        r#"
import duckdb, json, sys
print(json.dumps(duckdb.connect().execute(f"""
    SELECT count(*), count(*) FILTER (WHERE attrs IS NOT NULL AND NOT json_valid(attrs)),
           count(json_extract(attrs, '$.user'))
    FROM read_parquet('{sys.argv[1]}/raw/**/*.parquet')
""").fetchone()))
"#,
        &[out.to_str().context("non-UTF-8 temp dir")?],
    )?;
    let counts: Vec<usize> = serde_json::from_str(counts.trim())
        .with_context(|| format!("DuckDB printed {counts:?}"))?;
    ensure!(
        counts[0] == valid,
        "DuckDB read {} rows, want {valid}",
        counts[0]
    );
    ensure!(
        counts[1] == 0,
        "{} rows have attrs that are not JSON",
        counts[1]
    );
    ensure!(
        counts[2] > 0,
        "json_extract found no user in attrs: {counts:?}"
    );
    Ok(())
}

fn sluice_core_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
