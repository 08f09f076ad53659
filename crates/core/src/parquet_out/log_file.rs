//! Writes the rows of a [`ColumnBuilder`] as one Parquet file, page by page, without going
//! through Arrow arrays: the builder already holds each column the way its pages are laid out
//! (PLAIN strings, plain numbers, definition levels), so writing is slicing, building the
//! dictionaries of the low-cardinality columns, a little level and delta encoding, and zstd
//! with one reused context.
//!
//! The layout is the one docs/ARCHITECTURE.md §6 tuned (parquet-rs's Arrow writer produced it before):
//! dictionaries for the low-cardinality columns (falling back to PLAIN when a dictionary outgrows
//! [`DICTIONARY_LIMIT`]), DELTA_BINARY_PACKED timestamps, DELTA_LENGTH_BYTE_ARRAY trace and
//! span ids, chunk statistics on everything but free text and ids, one row group, the Arrow
//! schema in the footer, rows sorted by `ts`. Since then:
//! - free text (message, path, attrs), trace and span ids and latencies get a dictionary too
//!   when a file's values repeat, that is when at most half of them are distinct;
//! - event ids are DELTA_BYTE_ARRAY (prefix-coded).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter as _};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, SchemaDescriptor};

use super::buffer_pool::BufferPool;
use super::interner::{BitsInterner, Interner, word};
use super::{delta, hybrid_rle};
use crate::columns::{
    self, ColumnBuilder, Nullable, PlainStrings, patch_len, put_plain, value_len,
};
use crate::error::CoreError;
use crate::level::Level;

/// Rows per data page at most (parquet-rs's default).
const PAGE_ROWS: usize = 20_000;
/// Uncompressed bytes per data page, roughly (a page ends after the row that passes it).
const PAGE_BYTES: usize = 1 << 20;
/// A dictionary larger than this (in PLAIN bytes) is not worth it: the column is written
/// PLAIN instead, as parquet-rs does past its dictionary page limit.
pub const DICTIONARY_LIMIT: usize = 1 << 20;
/// Room for the magic number and the footer (schema, Arrow schema, column metadata).
const FOOTER_ROOM: usize = 16 << 10;
/// Statistics bounds longer than this are shortened rather than bloating the footer.
const MAX_STATISTICS_VALUE: usize = 64;

/// Writes log files. Keeps its zstd context and scratch buffers from file to file.
pub struct LogFileWriter {
    schema: Arc<SchemaDescriptor>,
    properties: WriterPropertiesPtr,
    compression: Compression,
    compressor: zstd::bulk::Compressor<'static>,
    /// One uncompressed page at a time.
    page: Vec<u8>,
    /// Dictionary indices of the column being written.
    indices: Vec<u32>,
    /// Value lengths of the DELTA_LENGTH_BYTE_ARRAY page being written.
    lengths: Vec<i64>,
    /// Prefix lengths and suffixes of the DELTA_BYTE_ARRAY page being written.
    prefix_lengths: Vec<i64>,
    suffixes: Vec<u8>,
    /// The dictionary of the string column being written.
    interner: Interner,
    /// The dictionary of `latency_ms`.
    numbers: BitsInterner,
    /// `http_status` value → dictionary index + 1 (0: not in the dictionary yet).
    status_slots: Vec<u32>,
    /// Files are written into these, and come back once stored.
    files: BufferPool,
    /// Column chunks, and compressed pages, are written into these, and come back once copied
    /// into the file (fresh memory for each cost a page fault per 4 KiB).
    chunks: BufferPool,
    pages: BufferPool,
}

impl std::fmt::Debug for LogFileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFileWriter")
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl LogFileWriter {
    pub fn new(zstd_level: i32) -> Result<Self, CoreError> {
        let arrow_schema = columns::schema();
        let schema = Arc::new(ArrowSchemaConverter::new().convert(&arrow_schema)?);
        let compression = Compression::ZSTD(ZstdLevel::try_new(zstd_level)?);
        let mut properties = WriterProperties::builder()
            .set_compression(compression)
            .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")))
            .build();
        add_encoded_arrow_schema_to_metadata(&arrow_schema, &mut properties);
        Ok(Self {
            schema,
            properties: Arc::new(properties),
            compression,
            compressor: compressor(zstd_level)?,
            page: Vec::new(),
            indices: Vec::new(),
            lengths: Vec::new(),
            prefix_lengths: Vec::new(),
            suffixes: Vec::new(),
            interner: Interner::default(),
            numbers: BitsInterner::default(),
            status_slots: vec![0; 1 << 16],
            files: BufferPool::default(),
            chunks: BufferPool::default(),
            pages: BufferPool::default(),
        })
    }

    /// The whole file, footer included, with one row group. Its buffer comes back to this
    /// writer, for the next file, once the bytes are dropped.
    pub fn write(&mut self, rows: &ColumnBuilder) -> Result<Bytes, CoreError> {
        self.write_row_groups(&[rows])
    }

    /// One file with a row group per builder, in the order given (docs/ARCHITECTURE.md §11:
    /// a batch's object has its tenants in row groups of their own, so a reader filtering one
    /// tenant skips the others by their statistics). A builder not in write order
    /// ([`ColumnBuilder::is_sorted`]) is written sorted by `ts`.
    pub fn write_row_groups(&mut self, groups: &[&ColumnBuilder]) -> Result<Bytes, CoreError> {
        if groups.is_empty() || groups.iter().any(|g| g.is_empty()) {
            return Err(CoreError::Config(
                "a log file needs at least one row in each row group".into(),
            ));
        }
        let mut all = Vec::with_capacity(groups.len());
        for rows in groups {
            all.push(self.row_group_chunks(rows)?);
        }
        // Sized once: growing the file while splicing copied it and faulted in new pages.
        let size: usize = all.iter().flatten().map(|(bytes, _)| bytes.len()).sum();
        let mut file = SerializedFileWriter::new(
            self.files.take(size + FOOTER_ROOM * groups.len().min(64)),
            self.schema.root_schema_ptr(),
            Arc::clone(&self.properties),
        )?;
        for chunks in all {
            let mut group = file.next_row_group()?;
            for (bytes, close) in chunks {
                group.append_column(&bytes, close)?;
            }
            group.close()?;
        }
        Ok(self.files.bytes(file.into_inner()?))
    }

    /// The column chunks of one row group.
    fn row_group_chunks(&mut self, rows: &ColumnBuilder) -> Result<Vec<Written>, CoreError> {
        let sorted;
        let c = if rows.is_sorted() {
            rows
        } else {
            sorted = rows.sorted_by_ts();
            &sorted
        };
        let n = c.len();
        let schema = Arc::clone(&self.schema);
        let column = |i: usize| schema.column(i);
        Ok(vec![
            self.timestamps(column(0), &c.ts)?,
            self.timestamps(column(1), &c.received_at)?,
            self.dict_strings(column(2), &c.tenant, n)?,
            self.dict_strings(column(3), &c.service, n)?,
            self.levels(column(4), &c.level)?,
            self.free_text(column(5), &c.message, n)?,
            self.delta_length_strings(column(6), &c.trace_id, n)?,
            self.delta_length_strings(column(7), &c.span_id, n)?,
            self.dict_strings(column(8), &c.http_method, n)?,
            self.free_text(column(9), &c.http_path, n)?,
            self.statuses(column(10), &c.http_status)?,
            self.doubles(column(11), &c.latency_ms)?,
            self.dict_strings(column(12), &c.host, n)?,
            self.dict_strings(column(13), &c.region, n)?,
            self.prefixed_strings(column(14), &c.event_id, n)?,
            self.free_text(column(15), &c.attrs, n)?,
            self.prefixed_strings(column(16), &c.origin, n)?,
        ])
    }

    /// Compresses the page buffer.
    fn compress_page(&mut self) -> Result<Bytes, CoreError> {
        let mut out = self
            .pages
            .take(zstd::zstd_safe::compress_bound(self.page.len()));
        self.compressor
            .compress_to_buffer(&self.page, &mut out)
            .map_err(zstd_error)?;
        Ok(self.pages.bytes(out))
    }

    fn data_page(
        &mut self,
        chunk: &mut Chunk,
        rows: usize,
        encoding: Encoding,
    ) -> Result<(), CoreError> {
        let buf = self.compress_page()?;
        let page = Page::DataPage {
            buf,
            num_values: rows as u32,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        chunk.write(CompressedPage::new(page, self.page.len()), false)
    }

    fn dictionary_page(&mut self, chunk: &mut Chunk, entries: usize) -> Result<(), CoreError> {
        let buf = self.compress_page()?;
        let page = Page::DictionaryPage {
            buf,
            num_values: entries as u32,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        };
        chunk.write(CompressedPage::new(page, self.page.len()), true)
    }

    /// Starts a page with the definition levels of `rows` (nothing for a required column).
    fn start_page(&mut self, def: Option<&[u8]>) {
        self.page.clear();
        if let Some(levels) = def {
            // V1 pages: the levels' byte length, then the levels.
            self.page.extend_from_slice(&[0; 4]);
            hybrid_rle::encode(levels, 1, &mut self.page);
            patch_len(&mut self.page, 0);
        }
    }

    fn timestamps(&mut self, descr: ColumnDescPtr, values: &[i64]) -> Result<Written, CoreError> {
        let mut chunk = Chunk::new(descr, values.len(), values.len() * 8, &self.chunks);
        for (rows, _) in row_pages(None, values.len()) {
            self.start_page(None);
            delta::encode(&values[rows.clone()], &mut self.page);
            self.data_page(&mut chunk, rows.len(), Encoding::DELTA_BINARY_PACKED)?;
        }
        let min = values.iter().copied().min();
        let max = values.iter().copied().max();
        chunk.finish(
            self.compression,
            &[Encoding::DELTA_BINARY_PACKED, Encoding::RLE],
            Some(Statistics::int64(min, max, None, Some(0), false)),
        )
    }

    fn plain_strings(
        &mut self,
        descr: ColumnDescPtr,
        column: &PlainStrings,
        rows: usize,
    ) -> Result<Written, CoreError> {
        self.plain_strings_with(descr, column, rows, None)
    }

    fn plain_strings_with(
        &mut self,
        descr: ColumnDescPtr,
        column: &PlainStrings,
        rows: usize,
        statistics: Option<Statistics>,
    ) -> Result<Written, CoreError> {
        let mut chunk = Chunk::new(descr, rows, column.data.len() + rows, &self.chunks);
        let def = column.def.as_deref();
        for (page_rows, bytes) in string_pages(column, rows) {
            self.start_page(def.map(|d| &d[page_rows.clone()]));
            self.page.extend_from_slice(&column.data[bytes]);
            self.data_page(&mut chunk, page_rows.len(), Encoding::PLAIN)?;
        }
        chunk.finish(
            self.compression,
            &[Encoding::PLAIN, Encoding::RLE],
            statistics,
        )
    }

    /// A column of ids (trace and span ids): a dictionary when they repeat (the log lines of
    /// one request share its trace id), else DELTA_LENGTH_BYTE_ARRAY pages, the value
    /// lengths delta-packed and then the values back to back. zstd finds no matches in random
    /// hex and only entropy-codes it, which it does twice as fast when PLAIN's length prefixes
    /// are not interleaved with the text (a 4-byte prefix per value is a short match to try
    /// and to encode every 20-40 bytes); the output is smaller too.
    fn delta_length_strings(
        &mut self,
        descr: ColumnDescPtr,
        column: &PlainStrings,
        rows: usize,
    ) -> Result<Written, CoreError> {
        if self
            .interner
            .build_if_repeating(&column.data, DICTIONARY_LIMIT)
        {
            return self.interned_chunk(descr, column, rows, None);
        }
        let mut chunk = Chunk::new(descr, rows, column.data.len(), &self.chunks);
        let def = column.def.as_deref();
        let mut lengths = std::mem::take(&mut self.lengths);
        for (page_rows, bytes) in string_pages(column, rows) {
            let values = plain_values(&column.data[bytes]);
            lengths.clear();
            lengths.extend(values.clone().map(|v| v.len() as i64));
            self.start_page(def.map(|d| &d[page_rows.clone()]));
            delta::encode(&lengths, &mut self.page);
            for value in values {
                self.page.extend_from_slice(value);
            }
            self.data_page(
                &mut chunk,
                page_rows.len(),
                Encoding::DELTA_LENGTH_BYTE_ARRAY,
            )?;
        }
        self.lengths = lengths;
        chunk.finish(
            self.compression,
            &[Encoding::DELTA_LENGTH_BYTE_ARRAY, Encoding::RLE],
            None,
        )
    }

    /// A free-text column (message, path, attrs): a dictionary when its values repeat (a
    /// service logging a few fixed messages, attrs holding a version and a tier), else PLAIN.
    /// Either way without statistics. A dictionary spares zstd the repeated text: attrs of
    /// fourteen distinct values were a fifth of the bytes it compressed.
    fn free_text(
        &mut self,
        descr: ColumnDescPtr,
        column: &PlainStrings,
        rows: usize,
    ) -> Result<Written, CoreError> {
        if !self
            .interner
            .build_if_repeating(&column.data, DICTIONARY_LIMIT)
        {
            return self.plain_strings(descr, column, rows);
        }
        self.interned_chunk(descr, column, rows, None)
    }

    /// `event_id`: DELTA_BYTE_ARRAY pages, each value stored as the length of the prefix it
    /// shares with the one before it and the rest. Derived ids (`shard:sequence:sub`) share
    /// their shard and the high digits of their sequence numbers (Kinesis numbers of one
    /// shard, 56 digits long, differ from about the 27th on), so zstd gets well under half
    /// of a Lambda id's 79 bytes to compress.
    fn prefixed_strings(
        &mut self,
        descr: ColumnDescPtr,
        column: &PlainStrings,
        rows: usize,
    ) -> Result<Written, CoreError> {
        let mut chunk = Chunk::new(descr, rows, column.data.len(), &self.chunks);
        let def = column.def.as_deref();
        let mut prefixes = std::mem::take(&mut self.prefix_lengths);
        let mut lengths = std::mem::take(&mut self.lengths);
        let mut suffixes = std::mem::take(&mut self.suffixes);
        for (page_rows, bytes) in string_pages(column, rows) {
            prefixes.clear();
            lengths.clear();
            suffixes.clear();
            // Each page starts afresh: its first value shares nothing.
            let mut previous: &[u8] = &[];
            for value in plain_values(&column.data[bytes]) {
                let shared = shared_prefix(previous, value);
                prefixes.push(shared as i64);
                lengths.push((value.len() - shared) as i64);
                suffixes.extend_from_slice(&value[shared..]);
                previous = value;
            }
            self.start_page(def.map(|d| &d[page_rows.clone()]));
            delta::encode(&prefixes, &mut self.page);
            delta::encode(&lengths, &mut self.page);
            self.page.extend_from_slice(&suffixes);
            self.data_page(&mut chunk, page_rows.len(), Encoding::DELTA_BYTE_ARRAY)?;
        }
        self.prefix_lengths = prefixes;
        self.lengths = lengths;
        self.suffixes = suffixes;
        chunk.finish(
            self.compression,
            &[Encoding::DELTA_BYTE_ARRAY, Encoding::RLE],
            None,
        )
    }

    /// A low-cardinality string column: a dictionary page and index pages, or PLAIN pages
    /// when the dictionary passes [`DICTIONARY_LIMIT`].
    fn dict_strings(
        &mut self,
        descr: ColumnDescPtr,
        column: &PlainStrings,
        rows: usize,
    ) -> Result<Written, CoreError> {
        let nulls = column
            .def
            .as_ref()
            .map_or(0, |d| d.iter().filter(|&&d| d == 0).count());
        if !self.interner.build(&column.data, DICTIONARY_LIMIT) {
            let values = plain_values(&column.data);
            let statistics = byte_array_statistics(values, nulls);
            return self.plain_strings_with(descr, column, rows, Some(statistics));
        }
        let data = &column.data;
        let entries = &self.interner.entries;
        let statistics =
            byte_array_statistics(entries.iter().map(|&(s, e)| &data[s + 4..e]), nulls);
        self.interned_chunk(descr, column, rows, Some(statistics))
    }

    /// Writes the dictionary the interner just built for `column`, and its index pages.
    fn interned_chunk(
        &mut self,
        descr: ColumnDescPtr,
        column: &PlainStrings,
        rows: usize,
        statistics: Option<Statistics>,
    ) -> Result<Written, CoreError> {
        let data = &column.data;
        self.page.clear();
        for &(s, e) in &self.interner.entries {
            self.page.extend_from_slice(&data[s..e]);
        }
        let indices = std::mem::take(&mut self.interner.indices);
        let written = self.dictionary_chunk(
            descr,
            self.interner.entries.len(),
            &indices,
            column.def.as_deref(),
            rows,
            statistics,
        );
        self.interner.indices = indices;
        written
    }

    /// Writes the dictionary page already in `self.page`, then the index pages.
    fn dictionary_chunk(
        &mut self,
        descr: ColumnDescPtr,
        entries: usize,
        indices: &[u32],
        def: Option<&[u8]>,
        rows: usize,
        statistics: Option<Statistics>,
    ) -> Result<Written, CoreError> {
        let mut chunk = Chunk::new(descr, rows, self.page.len() + rows * 4, &self.chunks);
        self.dictionary_page(&mut chunk, entries)?;
        let width = hybrid_rle::bit_width(entries.saturating_sub(1) as u32);
        for (page_rows, values) in row_pages(def, rows) {
            self.start_page(def.map(|d| &d[page_rows.clone()]));
            self.page.push(width);
            hybrid_rle::encode(&indices[values], width, &mut self.page);
            self.data_page(&mut chunk, page_rows.len(), Encoding::RLE_DICTIONARY)?;
        }
        chunk.finish(
            self.compression,
            &[Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY],
            statistics,
        )
    }

    fn levels(&mut self, descr: ColumnDescPtr, levels: &[u8]) -> Result<Written, CoreError> {
        let mut slot = [u32::MAX; Level::ALL.len()];
        let mut names: Vec<&[u8]> = Vec::new();
        let mut indices = std::mem::take(&mut self.indices);
        indices.clear();
        for &l in levels {
            let s = &mut slot[usize::from(l)];
            if *s == u32::MAX {
                *s = names.len() as u32;
                names.push(Level::ALL[usize::from(l)].as_str().as_bytes());
            }
            indices.push(*s);
        }
        self.page.clear();
        for v in &names {
            put_plain(&mut self.page, v);
        }
        let statistics = byte_array_statistics(names.iter().copied(), 0);
        let written = self.dictionary_chunk(
            descr,
            names.len(),
            &indices,
            None,
            levels.len(),
            Some(statistics),
        );
        self.indices = indices;
        written
    }

    fn statuses(
        &mut self,
        descr: ColumnDescPtr,
        column: &Nullable<u16>,
    ) -> Result<Written, CoreError> {
        let mut dictionary: Vec<u16> = Vec::new();
        let mut indices = std::mem::take(&mut self.indices);
        indices.clear();
        for &v in &column.values {
            let slot = &mut self.status_slots[usize::from(v)];
            if *slot == 0 {
                dictionary.push(v);
                *slot = dictionary.len() as u32;
            }
            indices.push(*slot - 1);
        }
        for &v in &dictionary {
            self.status_slots[usize::from(v)] = 0;
        }
        self.page.clear();
        for &v in &dictionary {
            self.page.extend_from_slice(&i32::from(v).to_le_bytes());
        }
        let min = dictionary.iter().copied().min().map(i32::from);
        let max = dictionary.iter().copied().max().map(i32::from);
        let nulls = (column.def.len() - column.values.len()) as u64;
        let statistics = Statistics::int32(min, max, None, Some(nulls), false);
        let written = self.dictionary_chunk(
            descr,
            dictionary.len(),
            &indices,
            Some(&column.def),
            column.def.len(),
            Some(statistics),
        );
        self.indices = indices;
        written
    }

    /// `latency_ms`: a dictionary when the values repeat (whole milliseconds, a few hundred
    /// distinct), else PLAIN. zstd finds little to match in doubles and is slowest on them
    /// (about 300 MB/s, half its speed on text), so the dictionary's narrow indices save
    /// more time than interning costs.
    fn doubles(
        &mut self,
        descr: ColumnDescPtr,
        column: &Nullable<f64>,
    ) -> Result<Written, CoreError> {
        let rows = column.def.len();
        let (min, max) = float_bounds(&column.values);
        let nulls = (rows - column.values.len()) as u64;
        let statistics = Statistics::double(min, max, None, Some(nulls), false);
        let values = column.values.iter().map(|v| v.to_bits());
        if self.numbers.build_if_repeating(values) {
            self.page.clear();
            for &v in &self.numbers.entries {
                self.page.extend_from_slice(&v.to_le_bytes());
            }
            let indices = std::mem::take(&mut self.numbers.indices);
            let written = self.dictionary_chunk(
                descr,
                self.numbers.entries.len(),
                &indices,
                Some(&column.def),
                rows,
                Some(statistics),
            );
            self.numbers.indices = indices;
            return written;
        }
        let mut chunk = Chunk::new(descr, rows, rows * 9, &self.chunks);
        for (page_rows, values) in row_pages(Some(&column.def), rows) {
            self.start_page(Some(&column.def[page_rows.clone()]));
            for v in &column.values[values] {
                self.page.extend_from_slice(&v.to_le_bytes());
            }
            self.data_page(&mut chunk, page_rows.len(), Encoding::PLAIN)?;
        }
        chunk.finish(
            self.compression,
            &[Encoding::PLAIN, Encoding::RLE],
            Some(statistics),
        )
    }
}

/// The pages of a column written [`PAGE_ROWS`] rows at a time: each page's rows, and the
/// range of its values (its non-null rows) among the column's values.
fn row_pages(
    def: Option<&[u8]>,
    rows: usize,
) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
    let mut next_value = 0;
    (0..rows).step_by(PAGE_ROWS).map(move |start| {
        let end = (start + PAGE_ROWS).min(rows);
        let present = def.map_or(end - start, |d| {
            d[start..end].iter().filter(|&&l| l == 1).count()
        });
        let values = next_value..next_value + present;
        next_value += present;
        (start..end, values)
    })
}

/// The pages of a string column: each page's rows, and the byte range of its values in the
/// PLAIN data. A page ends at [`PAGE_ROWS`] rows or after the value that takes it past
/// [`PAGE_BYTES`].
fn string_pages(
    column: &PlainStrings,
    rows: usize,
) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
    let def = column.def.as_deref();
    let (mut row, mut at) = (0, 0);
    std::iter::from_fn(move || {
        if row >= rows {
            return None;
        }
        let (first_row, first_byte) = (row, at);
        while row < rows && row - first_row < PAGE_ROWS && at - first_byte < PAGE_BYTES {
            if def.is_none_or(|d| d[row] == 1) {
                at += 4 + value_len(&column.data, at);
            }
            row += 1;
        }
        Some((first_row..row, first_byte..at))
    })
}

/// The hash table's size (log2 entries) at zstd level 1, which would use 2^13 on pages of
/// this size. Measured on the bench's pages (`zstd -b1 -B364K`): message and http_path
/// compress 8–11% faster for output 0.5–1% larger; ids and numbers are unchanged.
const LEVEL_1_HASH_LOG: u32 = 12;

fn compressor(zstd_level: i32) -> Result<zstd::bulk::Compressor<'static>, CoreError> {
    let mut compressor = zstd::bulk::Compressor::new(zstd_level).map_err(zstd_error)?;
    if zstd_level == 1 {
        compressor
            .set_parameter(zstd::zstd_safe::CParameter::HashLog(LEVEL_1_HASH_LOG))
            .map_err(zstd_error)?;
    }
    Ok(compressor)
}

fn zstd_error(e: std::io::Error) -> CoreError {
    CoreError::Parquet(parquet::errors::ParquetError::External(Box::new(e)))
}

/// How many leading bytes `a` and `b` have in common, compared eight at a time.
fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut at = 0;
    while at + 8 <= n {
        let (x, y) = (word(a, at), word(b, at));
        if x != y {
            return at + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + a[at..n]
        .iter()
        .zip(&b[at..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Min and max ignoring NaN, with zeros signed as parquet-rs writes them.
fn float_bounds(values: &[f64]) -> (Option<f64>, Option<f64>) {
    let mut bounds: Option<(f64, f64)> = None;
    for &v in values.iter().filter(|v| !v.is_nan()) {
        bounds = Some(match bounds {
            None => (v, v),
            Some((lo, hi)) => (lo.min(v), hi.max(v)),
        });
    }
    match bounds {
        None => (None, None),
        Some((lo, hi)) => (
            Some(if lo == 0.0 { -0.0 } else { lo }),
            Some(if hi == 0.0 { 0.0 } else { hi }),
        ),
    }
}

/// The values of PLAIN-encoded strings.
fn plain_values(data: &[u8]) -> impl Iterator<Item = &[u8]> + Clone {
    let mut at = 0;
    std::iter::from_fn(move || {
        (at < data.len()).then(|| {
            let start = at + 4;
            at = start + value_len(data, at);
            &data[start..at]
        })
    })
}

/// Min and max of the values. A bound longer than [`MAX_STATISTICS_VALUE`] bytes is shortened
/// as parquet-rs does, so the footer stays small and the bounds still prune: the minimum to a
/// prefix, the maximum to a prefix with its last character incremented; both are then marked
/// inexact.
fn byte_array_statistics<'v>(
    values: impl Iterator<Item = &'v [u8]> + Clone,
    nulls: usize,
) -> Statistics {
    let min = values.clone().min();
    let max = values.max();
    let (min, min_exact) = match min {
        Some(v) if v.len() > MAX_STATISTICS_VALUE => {
            (Some(&v[..char_boundary(v, MAX_STATISTICS_VALUE)]), false)
        }
        v => (v, true),
    };
    let (max, max_exact) = match max {
        Some(v) if v.len() > MAX_STATISTICS_VALUE => (truncated_upper_bound(v), false),
        v => (v.map(<[u8]>::to_vec), true),
    };
    let (min, max) = match (min, max) {
        (Some(min), Some(max)) => (
            Some(ByteArray::from(min.to_vec())),
            Some(ByteArray::from(max)),
        ),
        _ => (None, None),
    };
    let statistics = ValueStatistics::new(min, max, None, Some(nulls as u64), false)
        .with_min_is_exact(min_exact)
        .with_max_is_exact(max_exact);
    Statistics::ByteArray(statistics)
}

/// The largest `n <= limit` at which `v` can be cut without splitting a UTF-8 character.
fn char_boundary(v: &[u8], limit: usize) -> usize {
    (0..=limit.min(v.len()))
        .rev()
        .find(|&n| n == v.len() || v[n] & 0xc0 != 0x80)
        .unwrap_or(0)
}

/// A value of at most [`MAX_STATISTICS_VALUE`] bytes greater than every value starting with
/// `v`'s prefix: the prefix with its last character incremented (dropping characters that
/// cannot be). `None` when no such value exists.
fn truncated_upper_bound(v: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(v).ok()?;
    let mut prefix: Vec<char> = text[..char_boundary(v, MAX_STATISTICS_VALUE)]
        .chars()
        .collect();
    while let Some(last) = prefix.pop() {
        let next = (u32::from(last) + 1..=0x10_ffff).find_map(char::from_u32);
        if let Some(next) = next {
            prefix.push(next);
            let bound: String = prefix.into_iter().collect();
            return (bound.len() <= MAX_STATISTICS_VALUE).then(|| bound.into_bytes());
        }
    }
    None
}

/// One column chunk's bytes and the metadata the row group needs to splice it in.
type Written = (Bytes, ColumnCloseResult);

/// The pages of one column chunk as they are written.
struct Chunk {
    descr: ColumnDescPtr,
    rows: usize,
    sink: TrackedWrite<Vec<u8>>,
    /// Where `sink`'s buffer goes back to.
    pool: BufferPool,
    dictionary_offset: Option<i64>,
    data_offset: Option<i64>,
    compressed: i64,
    uncompressed: i64,
}

impl Chunk {
    /// `room`: bytes to reserve, at least the chunk's compressed size (reserving more costs
    /// nothing until it is touched; growing copies and faults in pages).
    fn new(descr: ColumnDescPtr, rows: usize, room: usize, pool: &BufferPool) -> Self {
        Self {
            descr,
            rows,
            sink: TrackedWrite::new(pool.take(room + 1024)),
            pool: pool.clone(),
            dictionary_offset: None,
            data_offset: None,
            compressed: 0,
            uncompressed: 0,
        }
    }

    fn write(&mut self, page: CompressedPage, dictionary: bool) -> Result<(), CoreError> {
        let spec = SerializedPageWriter::new(&mut self.sink).write_page(page)?;
        let offset = spec.offset as i64;
        if dictionary {
            self.dictionary_offset.get_or_insert(offset);
        } else {
            self.data_offset.get_or_insert(offset);
        }
        self.compressed += spec.compressed_size as i64;
        self.uncompressed += spec.uncompressed_size as i64;
        Ok(())
    }

    fn finish(
        self,
        compression: Compression,
        encodings: &[Encoding],
        statistics: Option<Statistics>,
    ) -> Result<Written, CoreError> {
        let bytes = self.sink.into_inner()?;
        let mut metadata = ColumnChunkMetaData::builder(self.descr)
            .set_compression(compression)
            .set_encodings(encodings.to_vec())
            .set_num_values(self.rows as i64)
            .set_total_compressed_size(self.compressed)
            .set_total_uncompressed_size(self.uncompressed)
            .set_data_page_offset(self.data_offset.unwrap_or(0))
            .set_dictionary_page_offset(self.dictionary_offset);
        if let Some(statistics) = statistics {
            metadata = metadata.set_statistics(statistics);
        }
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: self.rows as u64,
            metadata: metadata.build()?,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        Ok((self.pool.bytes(bytes), close))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_bounds_are_shortened_and_still_bound_every_value() {
        // Bytes order: "a…" < "m" < "é…" (0xc3 0xa9); both ends are long, and the high one is
        // cut where a two-byte character would be split.
        let low = format!("{}-tail", "a".repeat(70));
        let high = format!("{}-tail", "é".repeat(40));
        let values = [high.as_bytes(), b"m", low.as_bytes()];
        let Statistics::ByteArray(s) = byte_array_statistics(values.iter().copied(), 2) else {
            panic!("not byte-array statistics");
        };
        let (min, max) = (s.min_opt().expect("a min"), s.max_opt().expect("a max"));
        assert!(min.len() <= MAX_STATISTICS_VALUE && max.len() <= MAX_STATISTICS_VALUE);
        assert!(
            std::str::from_utf8(min.data()).is_ok(),
            "the min was cut inside a character"
        );
        assert!(std::str::from_utf8(max.data()).is_ok());
        for v in values {
            assert!(
                min.data() <= v && v <= max.data(),
                "{v:?} outside the bounds"
            );
        }
        assert!(!s.min_is_exact() && !s.max_is_exact());
        assert_eq!(s.null_count_opt(), Some(2));
    }

    #[test]
    fn shared_prefix_counts_common_leading_bytes_at_every_length() {
        let id = b"shardId-000000000000:49590338271490256608559692538361571095921575989136588898:0";
        for n in 0..id.len() {
            let mut other = id.to_vec();
            other[n] ^= 1;
            assert_eq!(shared_prefix(id, &other), n, "differing at {n}");
            assert_eq!(shared_prefix(&id[..n], id), n, "a prefix of length {n}");
            assert_eq!(shared_prefix(id, &id[..n]), n);
        }
        assert_eq!(shared_prefix(id, id), id.len());
        assert_eq!(shared_prefix(b"", b""), 0);
    }

    #[test]
    fn short_bounds_are_kept_exact() {
        let values: [&[u8]; 3] = [b"eu-west-1", b"us-east-1", b"ap-south-1"];
        let Statistics::ByteArray(s) = byte_array_statistics(values.iter().copied(), 0) else {
            panic!("not byte-array statistics");
        };
        assert_eq!(
            s.min_opt().map(ByteArray::data),
            Some(b"ap-south-1".as_slice())
        );
        assert_eq!(
            s.max_opt().map(ByteArray::data),
            Some(b"us-east-1".as_slice())
        );
        assert!(s.min_is_exact() && s.max_is_exact());
    }
}
