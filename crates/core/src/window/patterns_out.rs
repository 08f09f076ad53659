//! A window's log patterns as Parquet under
//! `patterns/tenant=T/dt=…/hour=…/<window start>.parquet`: one row per pattern and window (its
//! template, service, level, count, a sample, and whether it was new), beside the window's
//! metrics. `sluice report` reads them to show a tenant's new and most frequent patterns.

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{
    BooleanBuilder, StringBuilder, TimestampMillisecondBuilder, UInt64Builder,
};
use arrow_array::{
    Array as _, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray,
    UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::summary::{PatternSummary, WindowSummary};
use crate::error::CoreError;
use crate::level::Level;
use crate::partition;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("window_start", ts.clone(), false),
        Field::new("window_end", ts, false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("service", DataType::Utf8, false),
        Field::new("pattern_id", DataType::Utf8, false),
        Field::new("template", DataType::Utf8, false),
        Field::new("level", DataType::Utf8, false),
        Field::new("count", DataType::UInt64, false),
        Field::new("first_seen", DataType::Boolean, false),
        Field::new("sample", DataType::Utf8, false),
    ]))
});

/// `patterns/tenant=T/dt=…/hour=…/<start ms>.parquet`.
pub fn patterns_key(tenant: &str, start_ms: i64) -> String {
    format!(
        "patterns/tenant={tenant}/{}/{start_ms:013}.parquet",
        partition::dt_hour(partition::hour_of(start_ms))
    )
}

/// One stored pattern row: the window it was counted in, and the pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPattern {
    pub tenant: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub pattern: PatternSummary,
}

/// Encodes the patterns of `window` as one Parquet file.
pub fn encode(window: &WindowSummary) -> Result<Vec<u8>, CoreError> {
    let n = window.patterns.len();
    let mut start = TimestampMillisecondBuilder::with_capacity(n);
    let mut end = TimestampMillisecondBuilder::with_capacity(n);
    let mut text: Vec<StringBuilder> = (0..6).map(|_| StringBuilder::new()).collect();
    let mut count = UInt64Builder::with_capacity(n);
    let mut first_seen = BooleanBuilder::with_capacity(n);
    for p in &window.patterns {
        start.append_value(window.start_ms);
        end.append_value(window.end_ms);
        for (b, v) in text.iter_mut().zip([
            window.tenant.as_str(),
            &p.service,
            &p.id,
            &p.template,
            p.level.as_str(),
        ]) {
            b.append_value(v);
        }
        text[5].append_value(&p.sample);
        count.append_value(p.count);
        first_seen.append_value(p.first_seen);
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(start.finish().with_timezone("UTC")),
        Arc::new(end.finish().with_timezone("UTC")),
    ];
    let mut strings = text.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
    columns.extend(strings.by_ref().take(5));
    columns.push(Arc::new(count.finish()));
    columns.push(Arc::new(first_seen.finish()));
    columns.extend(strings);
    let batch = RecordBatch::try_new(SCHEMA.clone(), columns)?;
    crate::parquet_out::encode_small(&batch)
}

/// Reads the pattern rows of a file written by [`encode`].
pub fn decode(body: bytes::Bytes) -> Result<Vec<StoredPattern>, CoreError> {
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)?.build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| CoreError::Config(format!("patterns file lacks column {name}")))
        };
        fn cast<T: Clone + 'static>(a: ArrayRef, name: &str) -> Result<T, CoreError> {
            a.as_any().downcast_ref::<T>().cloned().ok_or_else(|| {
                CoreError::Config(format!("patterns column {name} has the wrong type"))
            })
        }
        let ts = |n: &str| cast::<TimestampMillisecondArray>(col(n)?, n);
        let text = |n: &str| cast::<StringArray>(col(n)?, n);
        let (start, end) = (ts("window_start")?, ts("window_end")?);
        let (tenant, service, id, template, level, sample) = (
            text("tenant")?,
            text("service")?,
            text("pattern_id")?,
            text("template")?,
            text("level")?,
            text("sample")?,
        );
        let count = cast::<UInt64Array>(col("count")?, "count")?;
        let first_seen = cast::<BooleanArray>(col("first_seen")?, "first_seen")?;
        for row in 0..batch.num_rows() {
            out.push(StoredPattern {
                tenant: tenant.value(row).to_owned(),
                window_start_ms: start.value(row),
                window_end_ms: end.value(row),
                pattern: PatternSummary {
                    id: id.value(row).to_owned(),
                    template: template.value(row).to_owned(),
                    service: service.value(row).to_owned(),
                    level: Level::parse(level.value(row)).unwrap_or(Level::Info),
                    count: count.value(row),
                    first_seen: first_seen.value(row),
                    sample: sample.value(row).to_owned(),
                },
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_round_trip_through_parquet() -> Result<(), CoreError> {
        let pattern = |id: &str, count, first_seen| PatternSummary {
            id: id.into(),
            template: format!("circuit breaker open after <n> failures ({id})"),
            service: "checkout".into(),
            level: Level::Fatal,
            count,
            first_seen,
            sample: "circuit breaker open after 7 failures".into(),
        };
        let window = WindowSummary {
            tenant: "acme".into(),
            start_ms: 1_764_115_200_000,
            end_ms: 1_764_115_260_000,
            services: Vec::new(),
            patterns: vec![pattern("p1", 12, true), pattern("p2", 3, false)],
        };
        let rows = decode(encode(&window)?.into())?;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].pattern, window.patterns[0]);
        assert_eq!(rows[1].pattern, window.patterns[1]);
        assert_eq!(rows[1].window_end_ms, window.end_ms);
        assert_eq!(rows[0].tenant, "acme");
        assert_eq!(
            patterns_key("acme", window.start_ms),
            "patterns/tenant=acme/dt=2025-11-26/hour=00/1764115200000.parquet"
        );
        Ok(())
    }
}
