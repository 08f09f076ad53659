//! Window summaries as Parquet under `metrics/tenant=T/dt=…/hour=…/<window start>.parquet`: one
//! row per service and window, for dashboards, Athena and backtests.

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{
    Float64Builder, StringBuilder, TimestampMillisecondBuilder, UInt64Builder,
};
use arrow_array::{
    Array as _, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::summary::{LevelCounts, ServiceSummary, WindowSummary};
use crate::error::CoreError;
use crate::partition;

const U64_COLUMNS: [&str; 10] = [
    "count", "trace", "debug", "info", "warn", "error", "fatal", "http_4xx", "http_5xx", "late",
];
const F64_COLUMNS: [&str; 6] = [
    "error_rate",
    "latency_p50",
    "latency_p90",
    "latency_p95",
    "latency_p99",
    "latency_max",
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let mut fields = vec![
        Field::new("window_start", ts.clone(), false),
        Field::new("window_end", ts, false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("service", DataType::Utf8, false),
    ];
    fields.extend(
        U64_COLUMNS
            .iter()
            .map(|n| Field::new(*n, DataType::UInt64, false)),
    );
    fields.extend(
        F64_COLUMNS
            .iter()
            .map(|n| Field::new(*n, DataType::Float64, false)),
    );
    Arc::new(Schema::new(fields))
});

/// The metrics schema.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// `metrics/tenant=T/dt=…/hour=…/<start ms>.parquet`.
pub fn metrics_key(tenant: &str, start_ms: i64) -> String {
    format!(
        "metrics/tenant={tenant}/{}/{start_ms:013}.parquet",
        partition::dt_hour(partition::hour_of(start_ms))
    )
}

fn u64s(s: &ServiceSummary) -> [u64; 10] {
    let l = s.levels;
    [
        s.count, l.trace, l.debug, l.info, l.warn, l.error, l.fatal, s.http_4xx, s.http_5xx, s.late,
    ]
}

fn f64s(s: &ServiceSummary) -> [f64; 6] {
    [
        s.error_rate,
        s.latency_p50,
        s.latency_p90,
        s.latency_p95,
        s.latency_p99,
        s.latency_max,
    ]
}

/// Encodes summaries (any tenants, any windows) as one Parquet file.
pub fn encode(summaries: &[&WindowSummary]) -> Result<Vec<u8>, CoreError> {
    let rows: usize = summaries.iter().map(|s| s.services.len()).sum();
    let mut start = TimestampMillisecondBuilder::with_capacity(rows);
    let mut end = TimestampMillisecondBuilder::with_capacity(rows);
    let mut tenant = StringBuilder::new();
    let mut service = StringBuilder::new();
    let mut ints: Vec<UInt64Builder> = U64_COLUMNS
        .iter()
        .map(|_| UInt64Builder::with_capacity(rows))
        .collect();
    let mut floats: Vec<Float64Builder> = F64_COLUMNS
        .iter()
        .map(|_| Float64Builder::with_capacity(rows))
        .collect();
    for w in summaries {
        for s in &w.services {
            start.append_value(w.start_ms);
            end.append_value(w.end_ms);
            tenant.append_value(&w.tenant);
            service.append_value(&s.name);
            for (b, v) in ints.iter_mut().zip(u64s(s)) {
                b.append_value(v);
            }
            for (b, v) in floats.iter_mut().zip(f64s(s)) {
                b.append_value(v);
            }
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(start.finish().with_timezone("UTC")),
        Arc::new(end.finish().with_timezone("UTC")),
        Arc::new(tenant.finish()),
        Arc::new(service.finish()),
    ];
    columns.extend(ints.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.extend(floats.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    let batch = RecordBatch::try_new(schema(), columns)?;
    crate::parquet_out::encode_small(&batch)
}

/// Reads summaries back from a metrics Parquet file (the backtest's input). Patterns are not
/// stored in metrics, so the summaries have none.
pub fn decode(body: bytes::Bytes) -> Result<Vec<WindowSummary>, CoreError> {
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)?.build()?;
    let mut out: Vec<WindowSummary> = Vec::new();
    for batch in reader {
        let batch = batch?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| CoreError::Config(format!("metrics file lacks column {name}")))
        };
        let ts = |name: &str| -> Result<TimestampMillisecondArray, CoreError> {
            col(name)?
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .cloned()
                .ok_or_else(|| CoreError::Config(format!("{name} is not a timestamp")))
        };
        let text = |name: &str| -> Result<StringArray, CoreError> {
            col(name)?
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| CoreError::Config(format!("{name} is not text")))
        };
        let (start, end, tenant, service) = (
            ts("window_start")?,
            ts("window_end")?,
            text("tenant")?,
            text("service")?,
        );
        let ints = U64_COLUMNS
            .iter()
            .map(|n| {
                col(n)?
                    .as_any()
                    .downcast_ref::<UInt64Array>()
                    .cloned()
                    .ok_or_else(|| CoreError::Config(format!("{n} is not u64")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let floats = F64_COLUMNS
            .iter()
            .map(|n| {
                col(n)?
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .cloned()
                    .ok_or_else(|| CoreError::Config(format!("{n} is not f64")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let i = |c: usize| ints[c].value(row);
            let f = |c: usize| floats[c].value(row);
            let summary = ServiceSummary {
                name: service.value(row).to_owned(),
                count: i(0),
                levels: LevelCounts {
                    trace: i(1),
                    debug: i(2),
                    info: i(3),
                    warn: i(4),
                    error: i(5),
                    fatal: i(6),
                },
                requests: 0,
                http_4xx: i(7),
                http_5xx: i(8),
                late: i(9),
                error_rate: f(0),
                latency_p50: f(1),
                latency_p90: f(2),
                latency_p95: f(3),
                latency_p99: f(4),
                latency_max: f(5),
            };
            let (s, e, t) = (start.value(row), end.value(row), tenant.value(row));
            match out.last_mut().filter(|w| w.start_ms == s && w.tenant == t) {
                Some(w) => w.services.push(summary),
                None => out.push(WindowSummary {
                    tenant: t.to_owned(),
                    start_ms: s,
                    end_ms: e,
                    services: vec![summary],
                    patterns: Vec::new(),
                }),
            }
        }
    }
    Ok(out)
}
