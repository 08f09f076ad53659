//! The canonical Arrow schema (DESIGN.md §3) and the column builders rows are appended to.

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{
    Float64Builder, StringBuilder, TimestampMillisecondBuilder, UInt16Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::CoreError;
use crate::level::Level;
use crate::normalize::Fields;

/// Column names in schema order.
pub const COLUMNS: [&str; 16] = [
    "ts",
    "received_at",
    "tenant",
    "service",
    "level",
    "message",
    "trace_id",
    "span_id",
    "http_method",
    "http_path",
    "http_status",
    "latency_ms",
    "host",
    "region",
    "event_id",
    "attrs",
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("ts", ts.clone(), false),
        Field::new("received_at", ts, false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("service", DataType::Utf8, false),
        Field::new("level", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("span_id", DataType::Utf8, true),
        Field::new("http_method", DataType::Utf8, true),
        Field::new("http_path", DataType::Utf8, true),
        Field::new("http_status", DataType::UInt16, true),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("host", DataType::Utf8, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("attrs", DataType::Utf8, true),
    ]))
});

/// The canonical record schema.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Where a row's `event_id` comes from when the event has none of its own.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    /// Index of the event inside its stream record (KPL sub-record, NDJSON line, log event).
    pub sub_index: u32,
}

/// One row, resolved and ready to append.
#[derive(Debug)]
pub struct Row<'r, 'a> {
    pub ts_ms: i64,
    pub received_at_ms: i64,
    pub tenant: &'r str,
    pub service: &'r str,
    pub level: Level,
    pub fields: &'r Fields<'a>,
    pub attrs: Option<&'r str>,
    /// The event's own id, if it has one; otherwise one is derived from `origin`.
    pub event_id: Option<&'r str>,
    pub origin: Origin<'r>,
}

/// Arrow builders for every canonical column.
#[derive(Debug)]
pub struct ColumnBuilder {
    ts: TimestampMillisecondBuilder,
    received_at: TimestampMillisecondBuilder,
    tenant: StringBuilder,
    service: StringBuilder,
    level: StringBuilder,
    message: StringBuilder,
    trace_id: StringBuilder,
    span_id: StringBuilder,
    http_method: StringBuilder,
    http_path: StringBuilder,
    http_status: UInt16Builder,
    latency_ms: Float64Builder,
    host: StringBuilder,
    region: StringBuilder,
    event_id: StringBuilder,
    attrs: StringBuilder,
    len: usize,
    sorted: bool,
    last_ts: i64,
}

impl Default for ColumnBuilder {
    fn default() -> Self {
        Self::with_capacity(1024)
    }
}

impl ColumnBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        let s = |bytes_per_row: usize| StringBuilder::with_capacity(rows, rows * bytes_per_row);
        Self {
            ts: TimestampMillisecondBuilder::with_capacity(rows),
            received_at: TimestampMillisecondBuilder::with_capacity(rows),
            tenant: s(8),
            service: s(12),
            level: s(5),
            message: s(96),
            trace_id: s(32),
            span_id: s(16),
            http_method: s(4),
            http_path: s(24),
            http_status: UInt16Builder::with_capacity(rows),
            latency_ms: Float64Builder::with_capacity(rows),
            host: s(16),
            region: s(10),
            event_id: s(40),
            attrs: s(64),
            len: 0,
            sorted: true,
            last_ts: i64::MIN,
        }
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one row.
    pub fn push(&mut self, row: &Row<'_, '_>) {
        let f = row.fields;
        self.ts.append_value(row.ts_ms);
        self.sorted &= row.ts_ms >= self.last_ts;
        self.last_ts = row.ts_ms;
        self.received_at.append_value(row.received_at_ms);
        self.tenant.append_value(row.tenant);
        self.service.append_value(row.service);
        self.level.append_value(row.level.as_str());
        self.message
            .append_value(f.message.as_deref().unwrap_or_default());
        self.trace_id.append_option(f.trace_id.as_deref());
        self.span_id.append_option(f.span_id.as_deref());
        self.http_method.append_option(f.http_method.as_deref());
        self.http_path.append_option(f.http_path.as_deref());
        self.http_status.append_option(f.http_status);
        self.latency_ms.append_option(f.latency_ms);
        self.host.append_option(f.host.as_deref());
        self.region.append_option(f.region.as_deref());
        match row.event_id {
            Some(id) => self.event_id.append_value(id),
            None => {
                let o = row.origin;
                // Written piecewise into the builder's value buffer: no temporary String and no
                // formatting machinery on the hot path.
                let mut digits = [0u8; 10];
                let mut n = o.sub_index;
                let mut i = digits.len();
                loop {
                    i -= 1;
                    digits[i] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                let sub = std::str::from_utf8(&digits[i..]).unwrap_or("0");
                for part in [o.shard_id, ":", o.sequence_number, ":", sub] {
                    let _ = self.event_id.write_str(part);
                }
                self.event_id.append_value("");
            }
        }
        self.attrs.append_option(row.attrs);
        self.len += 1;
    }

    /// Finishes the columns into a batch, sorted by `ts` (stable, so arrival order breaks ties).
    pub fn finish(&mut self) -> Result<RecordBatch, CoreError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish().with_timezone("UTC")),
            Arc::new(self.received_at.finish().with_timezone("UTC")),
            Arc::new(self.tenant.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.level.finish()),
            Arc::new(self.message.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.http_method.finish()),
            Arc::new(self.http_path.finish()),
            Arc::new(self.http_status.finish()),
            Arc::new(self.latency_ms.finish()),
            Arc::new(self.host.finish()),
            Arc::new(self.region.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.attrs.finish()),
        ];
        let sorted = self.sorted;
        self.len = 0;
        self.sorted = true;
        self.last_ts = i64::MIN;
        let batch = RecordBatch::try_new(schema(), columns)?;
        if sorted {
            return Ok(batch);
        }
        let ts = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::TimestampMillisecondArray>()
            .ok_or_else(|| CoreError::Config("ts column is not a timestamp".into()))?
            .values();
        let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
        order.sort_by_key(|&i| ts[i as usize]);
        let indices = arrow_array::UInt32Array::from(order);
        Ok(arrow_select::take::take_record_batch(&batch, &indices)?)
    }
}
