//! The Parquet writers, tuned as docs/ARCHITECTURE.md §6 measured.
//!
//! - [`LogFileWriter`] writes log rows straight from a [`crate::columns::ColumnBuilder`]: zstd,
//!   dictionaries for the low-cardinality columns and for free text, ids and latencies
//!   whose values repeat, prefix-coded event ids, delta-encoded timestamps, no statistics on
//!   free text and ids, one row group per file.
//! - [`encode`] writes any Arrow batch (the window metrics) through parquet-rs's Arrow writer.

mod buffer_pool;
mod delta;
mod hybrid_rle;
mod interner;
mod log_file;

use std::sync::Arc;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::error::CoreError;
pub use log_file::{DICTIONARY_LIMIT, LogFileWriter};

/// Writer settings that callers may change.
#[derive(Debug, Clone)]
pub struct ParquetOptions {
    /// zstd level (1 is the measured sweet spot for logs).
    pub zstd_level: i32,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        Self { zstd_level: 1 }
    }
}

/// Encodes a small table (window metrics, patterns) as a Parquet file with zstd level 3: the
/// evaluator's outputs, read by dashboards and reports rather than written on the hot path.
pub fn encode_small(batch: &RecordBatch) -> Result<Vec<u8>, CoreError> {
    use parquet::basic::{Compression, ZstdLevel};
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .build();
    encode(batch, &props)
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
