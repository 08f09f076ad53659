//! `sluice ingest` as a user runs it: NDJSON piped on stdin (read in blocks) or in a file (mapped,
//! or read with `--no-mmap`), cut into several batches, into a directory laid out like the data
//! bucket. The rows are read back with pyarrow
//! and DuckDB, and the rejected line is found in the dead-letter prefix.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, ensure};
use sluice_e2e::{dead_letter_lines, from_base64, parquet_rows, sluice_binary, verify_parquet};

const GOOD: usize = 2_500;
const BAD_LINE: &str = "no tenant on this plain text line";

/// `GOOD` events, a blank line every 400 lines, one plain-text line without a tenant, and a last
/// line with no newline after it.
fn input() -> String {
    let mut text = String::new();
    for i in 0..GOOD {
        if i % 400 == 0 {
            text.push_str("\n   \n");
        }
        if i == 1_234 {
            text.push_str(BAD_LINE);
            text.push('\n');
        }
        text.push_str(&format!(
            r#"{{"tenant":"acme","service":"api","level":"info","msg":"line {i} \"quoted\""}}"#
        ));
        if i + 1 < GOOD {
            text.push('\n');
        }
    }
    text
}

/// The files two directory levels below `dir` (`dt=…/hour=…/`).
fn partition_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = |d: &Path| std::fs::read_dir(d).into_iter().flatten().flatten();
    Ok(std::fs::read_dir(dir)?
        .flatten()
        .flat_map(|day| entries(&day.path()).collect::<Vec<_>>())
        .flat_map(|hour| entries(&hour.path()).collect::<Vec<_>>())
        .map(|file| file.path())
        .collect())
}

#[test]
fn ingest_from_stdin_stores_every_line_across_batches_and_dead_letters_the_bad_one()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut child = Command::new(sluice_binary()?)
        .args(["ingest", "--input", "-", "--batch-size", "1000", "--json"])
        .arg("--out")
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting sluice ingest")?;
    let text = input();
    let mut stdin = child.stdin.take().context("stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
    check_ingested(&out, &data)
}

#[test]
fn ingest_of_a_file_stores_the_same_whether_mapped_or_read() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("input.ndjson");
    std::fs::write(&file, input())?;
    let mut objects = Vec::new();
    for mode in [None, Some("--no-mmap")] {
        let data = dir.path().join(format!("data{}", objects.len()));
        let out = Command::new(sluice_binary()?)
            .arg("ingest")
            .arg(&file)
            .args(["--batch-size", "1000", "--json"])
            .args(mode)
            .arg("--out")
            .arg(&data)
            .output()
            .context("running sluice ingest")?;
        check_ingested(&out, &data).with_context(|| format!("reading with {mode:?}"))?;
        let mut keys: Vec<PathBuf> = partition_files(&data.join("raw"))?
            .iter()
            .filter_map(|f| f.strip_prefix(&data).ok().map(Path::to_path_buf))
            .collect();
        keys.sort();
        objects.push(keys);
    }
    assert!(!objects[0].is_empty());
    assert_eq!(objects[0], objects[1], "the same objects either way");
    Ok(())
}

/// What every way of ingesting [`input`] must leave: the report, each good line once as a row,
/// and the bad line in the dead-letter prefix.
fn check_ingested(out: &std::process::Output, data: &Path) -> anyhow::Result<()> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "sluice ingest failed: {stderr}");

    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("--json printed: {}", String::from_utf8_lossy(&out.stdout)))?;
    assert_eq!(
        report["records"],
        GOOD as u64 + 1,
        "blank lines are skipped"
    );
    assert_eq!(report["rows"], GOOD as u64);
    assert_eq!(report["rejected"]["no_tenant"], 1, "{report}");

    verify_parquet(data, GOOD as u64)?;
    let messages: BTreeSet<String> = parquet_rows(data, &["message"])?
        .iter()
        .filter_map(|row| row["message"].as_str().map(str::to_owned))
        .collect();
    let want: BTreeSet<String> = (0..GOOD).map(|i| format!("line {i} \"quoted\"")).collect();
    assert_eq!(messages, want, "every line once, escapes decoded");

    let letters = partition_files(&data.join("dlq"))?;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let lines = dead_letter_lines(&std::fs::read(&letters[0])?)?;
    assert_eq!(lines.len(), 1);
    let raw = from_base64(lines[0]["data"].as_str().context("data")?)?;
    assert_eq!(raw, BAD_LINE.as_bytes());
    Ok(())
}

#[test]
fn ingest_reads_on_past_a_batch_of_blank_lines() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("input.ndjson");
    let good = r#"{"tenant":"acme","service":"api","msg":"after the blanks"}"#;
    std::fs::write(&file, format!("\n  \n\t\n\n{good}\n{good}\n{good}\n"))?;
    let data = dir.path().join("data");
    let out = Command::new(sluice_binary()?)
        .arg("ingest")
        .arg(&file)
        .args(["--batch-size", "2", "--json", "--out"])
        .arg(&data)
        .output()
        .context("running sluice ingest")?;
    ensure!(
        out.status.success(),
        "sluice ingest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["rows"], 3, "{report}");
    verify_parquet(&data, 3)?;
    Ok(())
}
