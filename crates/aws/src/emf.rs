//! CloudWatch Embedded Metric Format (EMF).
//!
//! Lambda sends every stdout line to CloudWatch Logs, and CloudWatch turns a line shaped like
//! EMF into metrics with no API call and no extra latency. One line per batch:
//!
//! ```json
//! {"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"sluice",
//!   "Dimensions":[["Function"]],"Metrics":[{"Name":"RecordsIn","Unit":"Count"},…]}]},
//!  "Function":"sluice-ingest","RecordsIn":500,…}
//! ```

use serde_json::{Map, Number, Value, json};
use sluice_core::IngestStats;

/// The CloudWatch namespace of every sluice metric.
pub const NAMESPACE: &str = "sluice";
/// The dimension every sluice metric carries.
pub const FUNCTION_DIMENSION: &str = "Function";

/// CloudWatch metric units used by sluice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Milliseconds,
}

impl Unit {
    /// The unit's name as CloudWatch spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One metric value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
    pub value: Number,
}

impl Metric {
    /// A metric with a whole-number value.
    pub fn int(name: &'static str, unit: Unit, value: u64) -> Self {
        Self {
            name,
            unit,
            value: Number::from(value),
        }
    }
}

/// Renders one EMF line (no trailing newline) with a single `Function` dimension.
pub fn render(function: &str, metrics: &[Metric], timestamp_ms: i64) -> String {
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|m| json!({ "Name": m.name, "Unit": m.unit.as_str() }))
        .collect();
    let mut root = Map::new();
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[FUNCTION_DIMENSION]],
                "Metrics": definitions,
            }],
        }),
    );
    root.insert(FUNCTION_DIMENSION.to_owned(), Value::from(function));
    for metric in metrics {
        root.insert(metric.name.to_owned(), Value::Number(metric.value.clone()));
    }
    Value::Object(root).to_string()
}

/// The metrics of one ingest batch:
///
/// | name | unit | meaning |
/// |---|---|---|
/// | `RecordsIn` | Count | stream records in the batch |
/// | `Bytes` | Bytes | payload bytes in |
/// | `Rejected` | Count | events sent to the dead-letter prefix |
/// | `ObjectsWritten` | Count | objects produced (zero when the batch failed) |
/// | `FailedBatches` | Count | 1 when the batch is handed back for a retry |
/// | `BatchAgeMs` | Milliseconds | `now - oldest arrival` (absent for an empty batch) |
pub fn ingest_metrics(stats: &IngestStats, failed: bool, now_ms: i64) -> Vec<Metric> {
    let mut metrics = vec![
        Metric::int("RecordsIn", Unit::Count, stats.records),
        Metric::int("Bytes", Unit::Bytes, stats.bytes_in),
        Metric::int("Rejected", Unit::Count, stats.rejected_total()),
        Metric::int(
            "ObjectsWritten",
            Unit::Count,
            if failed { 0 } else { stats.objects },
        ),
        Metric::int("FailedBatches", Unit::Count, u64::from(failed)),
    ];
    if let Some(oldest) = stats.oldest_arrival_ms {
        let age = u64::try_from(now_ms.saturating_sub(oldest)).unwrap_or(0);
        metrics.push(Metric::int("BatchAgeMs", Unit::Milliseconds, age));
    }
    metrics
}

/// The EMF line of one ingest batch (see [`ingest_metrics`]).
pub fn ingest_line(function: &str, stats: &IngestStats, failed: bool, now_ms: i64) -> String {
    render(function, &ingest_metrics(stats, failed, now_ms), now_ms)
}

/// Writes one EMF line to stdout, where Lambda's log agent picks it up.
pub fn emit(line: &str) {
    use std::io::Write;
    // One write of the whole line (with its newline) under the stdout lock, so that log lines
    // from other threads cannot split it.
    let mut out = std::io::stdout().lock();
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    if let Err(e) = out.write_all(buf.as_bytes()).and_then(|()| out.flush()) {
        tracing::warn!(error = %e, "could not write the EMF metrics line");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn stats() -> IngestStats {
        IngestStats {
            records: 12,
            events: 14,
            rows: 11,
            rejected: BTreeMap::from([("not_json".to_owned(), 2), ("no_tenant".to_owned(), 1)]),
            tenants: BTreeMap::from([("acme".to_owned(), 11)]),
            bytes_in: 4096,
            bytes_out: 2048,
            objects: 3,
            oldest_arrival_ms: Some(1_700_000_000_000),
        }
    }

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).expect("an EMF line is one JSON object")
    }

    #[test]
    fn ingest_line_is_valid_emf_with_values_for_every_declared_metric() {
        let line = ingest_line("sluice-ingest", &stats(), false, 1_700_000_001_500);
        assert!(!line.contains('\n'), "one line: {line}");
        let v = parse(&line);
        assert_eq!(v["_aws"]["Timestamp"], json!(1_700_000_001_500_i64));
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], json!("sluice"));
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        assert_eq!(
            directive["Metrics"],
            json!([
                {"Name": "RecordsIn", "Unit": "Count"},
                {"Name": "Bytes", "Unit": "Bytes"},
                {"Name": "Rejected", "Unit": "Count"},
                {"Name": "ObjectsWritten", "Unit": "Count"},
                {"Name": "FailedBatches", "Unit": "Count"},
                {"Name": "BatchAgeMs", "Unit": "Milliseconds"},
            ])
        );
        assert_eq!(v["Function"], json!("sluice-ingest"));
        assert_eq!(v["RecordsIn"], json!(12));
        assert_eq!(v["Bytes"], json!(4096));
        assert_eq!(v["Rejected"], json!(3));
        assert_eq!(v["ObjectsWritten"], json!(3));
        assert_eq!(v["FailedBatches"], json!(0));
        assert_eq!(v["BatchAgeMs"], json!(1500));
        // Every declared metric has a value at the root, as EMF requires.
        for def in directive["Metrics"].as_array().expect("metrics array") {
            let name = def["Name"].as_str().expect("metric name");
            assert!(v[name].is_number(), "{name} has no value in {line}");
        }
    }

    #[test]
    fn a_failed_batch_counts_one_failure_and_no_objects() {
        let v = parse(&ingest_line("f", &stats(), true, 1_700_000_000_000));
        assert_eq!(v["FailedBatches"], json!(1));
        assert_eq!(v["ObjectsWritten"], json!(0));
        assert_eq!(v["BatchAgeMs"], json!(0));
    }

    #[test]
    fn an_empty_batch_has_no_batch_age_and_never_a_negative_one() {
        let v = parse(&ingest_line("f", &IngestStats::default(), false, 5));
        assert!(v.get("BatchAgeMs").is_none(), "{v}");
        let names: Vec<&str> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("metrics array")
            .iter()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        assert!(!names.contains(&"BatchAgeMs"), "{names:?}");

        let future = IngestStats {
            oldest_arrival_ms: Some(10_000),
            ..IngestStats::default()
        };
        let v = parse(&ingest_line("f", &future, false, 5));
        assert_eq!(v["BatchAgeMs"], json!(0));
    }
}
