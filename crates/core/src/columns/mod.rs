//! The canonical schema (docs/ARCHITECTURE.md §3) and the column builder rows are appended to.

mod storage;

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::level::Level;
use crate::normalize::Fields;
pub(crate) use storage::{Nullable, PlainStrings, patch_len, put_plain, value_len};

/// Column names in schema order.
pub const COLUMNS: [&str; 17] = [
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
    "origin",
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
        Field::new("origin", DataType::Utf8, false),
    ]))
});

/// The canonical record schema.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Where a row comes from: `shard:sequence:sub`, the `origin` column, unique per input event
/// (docs/ARCHITECTURE.md §11: compaction de-duplicates on it), and the row's `event_id` when
/// the event has none of its own.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    /// Index of the event inside its stream record (KPL sub-record, NDJSON line, log event).
    pub sub_index: u32,
}

/// Appends `shard:sequence:sub` to `column`, written straight in: no temporary String and no
/// formatting machinery on the hot path.
fn push_origin(column: &mut PlainStrings, o: Origin<'_>) {
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
    let data = &mut column.data;
    let at = data.len();
    data.extend_from_slice(&[0; 4]);
    for part in [
        o.shard_id.as_bytes(),
        b":",
        o.sequence_number.as_bytes(),
        b":",
    ] {
        data.extend_from_slice(part);
    }
    data.extend_from_slice(&digits[i..]);
    patch_len(data, at);
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

/// Every canonical column of one file's rows, stored ready for the Parquet writer
/// ([`crate::parquet_out::LogFileWriter`]). Cleared builders keep their memory, so a pool of
/// them serves batch after batch without page faults.
#[derive(Debug, Clone)]
pub struct ColumnBuilder {
    pub(crate) ts: Vec<i64>,
    pub(crate) received_at: Vec<i64>,
    pub(crate) tenant: PlainStrings,
    pub(crate) service: PlainStrings,
    /// `Level as u8` per row.
    pub(crate) level: Vec<u8>,
    pub(crate) message: PlainStrings,
    pub(crate) trace_id: PlainStrings,
    pub(crate) span_id: PlainStrings,
    pub(crate) http_method: PlainStrings,
    pub(crate) http_path: PlainStrings,
    pub(crate) http_status: Nullable<u16>,
    pub(crate) latency_ms: Nullable<f64>,
    pub(crate) host: PlainStrings,
    pub(crate) region: PlainStrings,
    pub(crate) event_id: PlainStrings,
    pub(crate) attrs: PlainStrings,
    /// `shard:sequence:sub` of every row (docs/ARCHITECTURE.md §11).
    pub(crate) origin: PlainStrings,
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
        Self {
            ts: Vec::with_capacity(rows),
            received_at: Vec::with_capacity(rows),
            tenant: PlainStrings::new(false, rows, 8),
            service: PlainStrings::new(false, rows, 12),
            level: Vec::with_capacity(rows),
            message: PlainStrings::new(false, rows, 96),
            trace_id: PlainStrings::new(true, rows, 32),
            span_id: PlainStrings::new(true, rows, 16),
            http_method: PlainStrings::new(true, rows, 4),
            http_path: PlainStrings::new(true, rows, 24),
            http_status: Nullable::new(rows),
            latency_ms: Nullable::new(rows),
            host: PlainStrings::new(true, rows, 16),
            region: PlainStrings::new(true, rows, 10),
            event_id: PlainStrings::new(false, rows, 40),
            attrs: PlainStrings::new(true, rows, 64),
            origin: PlainStrings::new(false, rows, 40),
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

    /// Whether the rows are in the order to write them: by `ts`, or as [`Self::append`]ed
    /// from builders that were.
    pub fn is_sorted(&self) -> bool {
        self.sorted
    }

    /// Appends one row.
    pub fn push(&mut self, row: &Row<'_, '_>) {
        let f = row.fields;
        self.ts.push(row.ts_ms);
        self.sorted &= row.ts_ms >= self.last_ts;
        self.last_ts = row.ts_ms;
        self.received_at.push(row.received_at_ms);
        storage::prefetch_tail(&self.ts);
        storage::prefetch_tail(&self.received_at);
        self.tenant.push(Some(row.tenant));
        self.service.push(Some(row.service));
        self.level.push(row.level as u8);
        storage::prefetch_tail(&self.level);
        self.message
            .push(Some(f.message.as_deref().unwrap_or_default()));
        self.trace_id.push(f.trace_id.as_deref());
        self.span_id.push(f.span_id.as_deref());
        self.http_method.push(f.http_method.as_deref());
        self.http_path.push(f.http_path.as_deref());
        self.http_status.push(f.http_status);
        self.latency_ms.push(f.latency_ms);
        self.host.push(f.host.as_deref());
        self.region.push(f.region.as_deref());
        let origin_at = self.origin.data.len();
        push_origin(&mut self.origin, row.origin);
        match row.event_id {
            Some(id) => self.event_id.push(Some(id)),
            // The origin's bytes just written, length prefix included: copied, not formatted
            // again.
            None => self
                .event_id
                .data
                .extend_from_slice(&self.origin.data[origin_at..]),
        }
        self.attrs.push(row.attrs);
        self.len += 1;
    }

    /// Bytes of memory the builder holds (what [`Self::clear`] keeps).
    pub fn capacity_bytes(&self) -> usize {
        let strings = [
            &self.tenant,
            &self.service,
            &self.message,
            &self.trace_id,
            &self.span_id,
            &self.http_method,
            &self.http_path,
            &self.host,
            &self.region,
            &self.event_id,
            &self.attrs,
            &self.origin,
        ];
        strings.iter().map(|c| c.capacity_bytes()).sum::<usize>()
            + (self.ts.capacity() + self.received_at.capacity()) * 8
            + self.level.capacity()
            + self.http_status.capacity_bytes()
            + self.latency_ms.capacity_bytes()
    }

    /// Empties the builder, keeping its memory.
    pub fn clear(&mut self) {
        self.ts.clear();
        self.received_at.clear();
        self.tenant.clear();
        self.service.clear();
        self.level.clear();
        self.message.clear();
        self.trace_id.clear();
        self.span_id.clear();
        self.http_method.clear();
        self.http_path.clear();
        self.http_status.clear();
        self.latency_ms.clear();
        self.host.clear();
        self.region.clear();
        self.event_id.clear();
        self.attrs.clear();
        self.origin.clear();
        self.len = 0;
        self.sorted = true;
        self.last_ts = i64::MIN;
    }

    /// Appends every row of `other` after these, in `other`'s order: to gather small tenants'
    /// rows, each already in `ts` order, into one row group (docs/ARCHITECTURE.md §11). The
    /// result is in write order if both were.
    pub fn append(&mut self, other: &Self) {
        self.ts.extend_from_slice(&other.ts);
        self.received_at.extend_from_slice(&other.received_at);
        self.level.extend_from_slice(&other.level);
        for (into, from) in [
            (&mut self.tenant, &other.tenant),
            (&mut self.service, &other.service),
            (&mut self.message, &other.message),
            (&mut self.trace_id, &other.trace_id),
            (&mut self.span_id, &other.span_id),
            (&mut self.http_method, &other.http_method),
            (&mut self.http_path, &other.http_path),
            (&mut self.host, &other.host),
            (&mut self.region, &other.region),
            (&mut self.event_id, &other.event_id),
            (&mut self.attrs, &other.attrs),
            (&mut self.origin, &other.origin),
        ] {
            into.append(from);
        }
        self.http_status.append(&other.http_status);
        self.latency_ms.append(&other.latency_ms);
        self.len += other.len;
        self.sorted &= other.sorted;
        self.last_ts = other.last_ts;
    }

    /// The same rows ordered by `ts` (stable, so arrival order breaks ties).
    pub fn sorted_by_ts(&self) -> Self {
        let mut order: Vec<u32> = (0..self.len as u32).collect();
        order.sort_by_key(|&i| self.ts[i as usize]);
        let pick = |v: &[i64]| -> Vec<i64> { order.iter().map(|&i| v[i as usize]).collect() };
        let ts = pick(&self.ts);
        Self {
            last_ts: ts.last().copied().unwrap_or(i64::MIN),
            ts,
            received_at: pick(&self.received_at),
            tenant: self.tenant.permuted(&order),
            service: self.service.permuted(&order),
            level: order.iter().map(|&i| self.level[i as usize]).collect(),
            message: self.message.permuted(&order),
            trace_id: self.trace_id.permuted(&order),
            span_id: self.span_id.permuted(&order),
            http_method: self.http_method.permuted(&order),
            http_path: self.http_path.permuted(&order),
            http_status: self.http_status.permuted(&order),
            latency_ms: self.latency_ms.permuted(&order),
            host: self.host.permuted(&order),
            region: self.region.permuted(&order),
            event_id: self.event_id.permuted(&order),
            attrs: self.attrs.permuted(&order),
            origin: self.origin.permuted(&order),
            len: self.len,
            sorted: true,
        }
    }
}
