//! The Parquet writer, tuned as DESIGN.md §6 measured: zstd, dictionaries only for
//! low-cardinality columns, delta-encoded timestamps, no statistics on free text and ids, and
//! large row groups.

use std::sync::Arc;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::CoreError;

/// Writer settings that callers may change.
#[derive(Debug, Clone)]
pub struct ParquetOptions {
    /// zstd level (1 is the measured sweet spot for logs).
    pub zstd_level: i32,
    /// Maximum rows per row group.
    pub row_group_rows: usize,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        Self {
            zstd_level: 1,
            row_group_rows: 1 << 20,
        }
    }
}

/// Columns with few distinct values: dictionary-encoded, with statistics.
const DICTIONARY_COLUMNS: [&str; 7] = [
    "tenant",
    "service",
    "level",
    "http_method",
    "host",
    "region",
    "http_status",
];
/// High-cardinality free text and ids: plain, no statistics.
const NO_STATS_COLUMNS: [&str; 6] = [
    "message",
    "trace_id",
    "span_id",
    "event_id",
    "attrs",
    "http_path",
];

impl ParquetOptions {
    /// The writer properties for the canonical schema.
    pub fn writer_properties(&self) -> Result<WriterProperties, CoreError> {
        let level = ZstdLevel::try_new(self.zstd_level)?;
        let mut builder = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")));
        for name in DICTIONARY_COLUMNS {
            builder = builder.set_column_dictionary_enabled(ColumnPath::from(name), true);
        }
        for name in NO_STATS_COLUMNS {
            builder = builder
                .set_column_statistics_enabled(ColumnPath::from(name), EnabledStatistics::None);
        }
        for name in ["ts", "received_at"] {
            builder =
                builder.set_column_encoding(ColumnPath::from(name), Encoding::DELTA_BINARY_PACKED);
        }
        Ok(builder.build())
    }
}

/// Encodes one batch as a complete Parquet file in memory.
pub fn encode(batch: &RecordBatch, props: &WriterProperties) -> Result<Vec<u8>, CoreError> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 4 + 4096);
    let mut writer =
        ArrowWriter::try_new(&mut out, Arc::clone(&batch.schema()), Some(props.clone()))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(out)
}
