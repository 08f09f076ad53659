//! Human output: tables, sizes, rates.

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use sluice_core::IngestStats;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `12.3 MB`-style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `1,234,567`-style counts.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().map(Cell::new).collect::<Vec<_>>());
    t
}

pub fn right(s: impl ToString) -> Cell {
    Cell::new(s.to_string()).set_alignment(CellAlignment::Right)
}

/// The ingest summary: totals, then rejections by reason.
pub fn ingest_summary(stats: &IngestStats, elapsed_s: f64) -> Table {
    let mut t = table(&["", "value"]);
    let rate = stats.records as f64 / elapsed_s.max(1e-9);
    t.add_row(vec![Cell::new("records in"), right(count(stats.records))]);
    t.add_row(vec![Cell::new("log events"), right(count(stats.events))]);
    t.add_row(vec![Cell::new("rows written"), right(count(stats.rows))]);
    t.add_row(vec![
        Cell::new("rejected → dlq/"),
        right(count(stats.rejected_total())),
    ]);
    for (reason, n) in &stats.rejected {
        t.add_row(vec![Cell::new(format!("  {reason}")), right(count(*n))]);
    }
    t.add_row(vec![Cell::new("objects"), right(count(stats.objects))]);
    t.add_row(vec![Cell::new("bytes in"), right(bytes(stats.bytes_in))]);
    t.add_row(vec![Cell::new("bytes out"), right(bytes(stats.bytes_out))]);
    t.add_row(vec![
        Cell::new("elapsed"),
        right(format!("{elapsed_s:.2} s")),
    ]);
    t.add_row(vec![Cell::new("records/s"), right(count(rate as u64))]);
    t
}

/// The ingest summary as JSON, for scripts.
pub fn ingest_json(stats: &IngestStats, elapsed_s: f64) -> serde_json::Value {
    serde_json::json!({
        "records": stats.records,
        "events": stats.events,
        "rows": stats.rows,
        "rejected": stats.rejected,
        "rejected_total": stats.rejected_total(),
        "tenants": stats.tenants,
        "objects": stats.objects,
        "bytes_in": stats.bytes_in,
        "bytes_out": stats.bytes_out,
        "elapsed_s": elapsed_s,
        "records_per_sec": stats.records as f64 / elapsed_s.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_counts_and_sizes_for_humans() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(12_300_000), "12.3 MB");
    }
}
