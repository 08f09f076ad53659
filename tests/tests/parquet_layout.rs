//! Log files written by sluice's own Parquet writer, read back by pyarrow and DuckDB: every value
//! of every column comes back, through the cases the writer has special paths for: rows out of
//! time order, nulls (and a column of nulls only), pages cut by row count and by bytes, a
//! dictionary column with too many distinct values for a dictionary, free text, trace ids and
//! latencies that repeat (dictionaries) or do not, and prefix-coded event ids.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use sluice_core::columns::{COLUMNS, ColumnBuilder, Origin, Row};
use sluice_core::level::Level;
use sluice_core::normalize::Fields;
use sluice_core::parquet_out::LogFileWriter;
use sluice_e2e::{duckdb_rows, parquet_rows, verify_parquet};

const ROWS: usize = 45_000;

/// Whether the free-text columns, trace ids and `latency_ms` of a file repeat their values.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Text {
    Distinct,
    Repeating,
}

/// The fields of row `i`, and the row as pyarrow should read it back.
fn row(i: usize, text: Text) -> (i64, i64, Fields<'static>, Option<String>, Value) {
    let repeating = text == Text::Repeating;
    // Blocks of 1,000 rows in reverse time order, with ties inside each block.
    let ts = 1_764_115_200_000 + ((ROWS - i) / 1_000) as i64 * 60_000 + (i % 1_000 / 3) as i64;
    let received_at = 1_764_115_200_000
        + if i.is_multiple_of(2) {
            0
        } else {
            86_400_000 * 3
        };
    let message = match i % 1_000 {
        0 => "x".repeat(3_000),
        1 => String::new(),
        _ if repeating => format!("GET /orders → ok ✓ {}", "y".repeat(i % 9)),
        _ => format!("GET /orders/{i} → ok ✓ {}", "y".repeat(i % 90)),
    };
    let status = (!i.is_multiple_of(7)).then(|| [200u16, 204, 404, 500, 503, 100, 599][i % 7]);
    let latency = (!i.is_multiple_of(4)).then(|| match i % 9 {
        0 => 0.0,
        1 => 1e300,
        _ if repeating => (i % 40) as f64 / 4.0 - 2.0,
        _ => i as f64 / 7.0,
    });
    let level = Level::ALL[i % Level::ALL.len()];
    let fields = Fields {
        message: Some(Cow::Owned(message.clone())),
        // Repeating: the rows of one request (four in a row) share its trace id.
        trace_id: (!i.is_multiple_of(3))
            .then(|| Cow::Owned(format!("{:032x}", if repeating { i / 4 } else { i } * 7919))),
        span_id: None,
        http_method: (!i.is_multiple_of(5)).then(|| Cow::Borrowed(["GET", "POST", "PUT"][i % 3])),
        http_path: Some(Cow::Owned(if repeating {
            format!("/orders/{}", i % 100)
        } else {
            format!("/orders/{i}")
        })),
        http_status: status,
        latency_ms: latency,
        host: Some(Cow::Owned(format!(
            "host-{i:06}.eu-west-1.compute.internal"
        ))),
        region: (!i.is_multiple_of(11)).then(|| Cow::Borrowed(["eu-west-1", "us-east-1"][i % 2])),
        ..Fields::default()
    };
    let attrs = (i.is_multiple_of(2)).then(|| {
        if repeating {
            format!(r#"{{"tier":"t{}","v":"1.{}"}}"#, i % 3, i % 5)
        } else {
            format!(r#"{{"k":{i}}}"#)
        }
    });
    let expected = json!({
        "ts": ts,
        "received_at": received_at,
        "tenant": "acme",
        "service": format!("svc-{}", i % 5),
        "level": level.as_str(),
        "message": message,
        "trace_id": fields.trace_id.as_deref(),
        "span_id": null,
        "http_method": fields.http_method.as_deref(),
        "http_path": fields.http_path.as_deref(),
        "http_status": status,
        "latency_ms": latency,
        "host": fields.host.as_deref(),
        "region": fields.region.as_deref(),
        "event_id": format!("shard-1:{}:{}", 1_000 + i, i % 3),
        "attrs": attrs,
        "origin": format!("shard-1:{}:{}", 1_000 + i, i % 3),
    });
    (ts, received_at, fields, attrs, expected)
}

fn write_file(dir: &Path, text: Text) -> anyhow::Result<Vec<Value>> {
    let mut builder = ColumnBuilder::default();
    let mut expected = Vec::with_capacity(ROWS);
    for i in 0..ROWS {
        let (ts, received_at, fields, attrs, want) = row(i, text);
        let service = format!("svc-{}", i % 5);
        let sequence = (1_000 + i).to_string();
        builder.push(&Row {
            ts_ms: ts,
            received_at_ms: received_at,
            tenant: "acme",
            service: &service,
            level: Level::ALL[i % Level::ALL.len()],
            fields: &fields,
            attrs: attrs.as_deref(),
            event_id: None,
            origin: Origin {
                shard_id: "shard-1",
                sequence_number: &sequence,
                sub_index: (i % 3) as u32,
            },
        });
        expected.push(want);
    }
    ensure!(
        !builder.is_sorted(),
        "the rows must arrive out of time order"
    );
    let body = LogFileWriter::new(1)?.write(&builder)?;
    let path = dir.join("raw/dt=2025-11-26/hour=00");
    std::fs::create_dir_all(&path)?;
    std::fs::write(path.join("layout.parquet"), &body)?;
    // Stable: rows with the same ts keep their arrival order.
    expected.sort_by_key(|v| v["ts"].as_i64());
    Ok(expected)
}

#[test]
fn log_files_read_back_exactly_with_pyarrow_and_duckdb() -> anyhow::Result<()> {
    for text in [Text::Distinct, Text::Repeating] {
        let dir = tempfile::tempdir()?;
        let expected = write_file(dir.path(), text)?;
        verify_parquet(dir.path(), ROWS as u64)?;
        // Both readers decode every value: dictionaries, prefix-coded ids, nulls.
        for (reader, rows) in [
            ("pyarrow", parquet_rows(dir.path(), &COLUMNS)?),
            ("DuckDB", duckdb_rows(dir.path(), &COLUMNS)?),
        ] {
            ensure!(
                rows.len() == ROWS,
                "{text:?}: {reader} read {} rows",
                rows.len()
            );
            for (i, (got, want)) in rows.iter().zip(&expected).enumerate() {
                for column in COLUMNS {
                    let (g, w) = (&got[column], &want[column]);
                    let same = match (g.as_f64(), w.as_f64()) {
                        (Some(a), Some(b)) if column == "latency_ms" => a == b,
                        _ => g == w,
                    };
                    ensure!(
                        same,
                        "{text:?}, {reader}, row {i}, {column}: read {g}, wrote {w}"
                    );
                }
            }
        }
    }
    Ok(())
}

/// The encodings of each column of the file [`write_file`] wrote, by column name.
fn column_encodings(
    dir: &Path,
) -> anyhow::Result<std::collections::BTreeMap<String, Vec<parquet::basic::Encoding>>> {
    use parquet::file::reader::{FileReader as _, SerializedFileReader};

    let path = dir.join("raw/dt=2025-11-26/hour=00/layout.parquet");
    let reader = SerializedFileReader::new(std::fs::File::open(&path)?)?;
    let group = reader.metadata().row_group(0);
    Ok(group
        .columns()
        .iter()
        .map(|c| (c.column_path().string(), c.encodings().collect()))
        .collect())
}

#[test]
fn free_text_ids_and_latencies_get_a_dictionary_only_when_their_values_repeat() -> anyhow::Result<()>
{
    use parquet::basic::Encoding;

    for (text, dictionary) in [(Text::Distinct, false), (Text::Repeating, true)] {
        let dir = tempfile::tempdir()?;
        write_file(dir.path(), text)?;
        let encodings = column_encodings(dir.path())?;
        for name in ["message", "http_path", "attrs", "latency_ms", "trace_id"] {
            let got = &encodings[name];
            ensure!(
                got.contains(&Encoding::RLE_DICTIONARY) == dictionary,
                "{text:?} {name}: {got:?}"
            );
            let plain = if name == "trace_id" && !dictionary {
                Encoding::DELTA_LENGTH_BYTE_ARRAY
            } else {
                Encoding::PLAIN
            };
            ensure!(got.contains(&plain), "{text:?} {name}: {got:?}");
        }
        let event_id = &encodings["event_id"];
        ensure!(
            event_id.contains(&Encoding::DELTA_BYTE_ARRAY),
            "event_id: {event_id:?}"
        );
    }
    Ok(())
}

#[test]
fn a_dictionary_too_large_falls_back_to_plain_and_keeps_its_statistics() -> anyhow::Result<()> {
    use parquet::basic::Encoding;
    use parquet::file::reader::{FileReader as _, SerializedFileReader};

    let dir = tempfile::tempdir()?;
    write_file(dir.path(), Text::Distinct)?;
    let path = dir.path().join("raw/dt=2025-11-26/hour=00/layout.parquet");
    let reader = SerializedFileReader::new(std::fs::File::open(&path)?)?;
    let group = reader.metadata().row_group(0);
    let column = |name: &str| {
        group
            .columns()
            .iter()
            .find(|c| c.column_path().string() == name)
            .with_context(|| format!("no column {name}"))
    };
    let host = column("host")?;
    ensure!(
        !host.encodings().any(|e| e == Encoding::RLE_DICTIONARY),
        "host stayed a dictionary"
    );
    ensure!(
        host.statistics().and_then(|s| s.min_bytes_opt())
            == Some(b"host-000000.eu-west-1.compute.internal".as_slice())
    );
    ensure!(
        host.statistics().and_then(|s| s.max_bytes_opt())
            == Some(b"host-044999.eu-west-1.compute.internal".as_slice())
    );
    let service = column("service")?;
    ensure!(
        service.encodings().any(|e| e == Encoding::RLE_DICTIONARY),
        "service lost its dictionary"
    );
    let span = column("span_id")?;
    ensure!(span.num_values() == ROWS as i64);
    // Several data pages per column: the page index is not written, so count them by reading.
    let pages = reader.get_row_group(0)?.get_column_page_reader(5)?.count();
    ensure!(pages >= 3, "message: {pages} pages");
    Ok(())
}
