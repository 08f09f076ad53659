//! Turns one batch of stream records into one Parquet object (its tenants in row groups of
//! their own, rows by tenant then time) and at most one dead-letter object
//! (docs/ARCHITECTURE.md §11). Pure CPU: no I/O happens here.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::columns::{ColumnBuilder, Origin, Row};
use crate::dead_letter::{self, DeadLetter};
use crate::decode::cloudwatch::CloudWatchMapping;
use crate::decode::json::same_short_bytes;
use crate::decode::{Budget, DecodeLimits, Decoder, EventDefaults, EventSink};
use crate::error::{CoreError, RejectReason};
use crate::ingest::{EncodedBatch, EncodedObject, IngestStats, ObjectKind};
use crate::input::{RecordRef, StreamRecord};
use crate::normalize::Fields;
use crate::parquet_out::{LogFileWriter, ParquetOptions};
use crate::partition;
use crate::resolve::resolve;
use crate::spares;

/// Everything the ingest path can be tuned with.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub limits: DecodeLimits,
    pub cloudwatch: CloudWatchMapping,
    /// Events older than this, relative to their record's arrival, are rejected.
    pub max_past_ms: i64,
    /// Events newer than this, relative to their record's arrival, are rejected.
    pub max_future_ms: i64,
    /// The most bytes one batch decodes to (gzip and KPL expanded): the records after the cap
    /// go, raw, to the dead letters as `batch_too_large` (docs/ARCHITECTURE.md §9).
    pub max_batch_decoded_bytes: usize,
    pub parquet: ParquetOptions,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            limits: DecodeLimits::default(),
            cloudwatch: CloudWatchMapping::default(),
            max_past_ms: 30 * 86_400_000,
            max_future_ms: 3_600_000,
            max_batch_decoded_bytes: DEFAULT_MAX_BATCH_DECODED_BYTES,
            parquet: ParquetOptions::default(),
        }
    }
}

/// A batch's default cap on decoded bytes. Encoding holds about four times its decoded bytes
/// at the peak (columns, pages, the file), so 128 MiB fits the ingest function's 1024 MB.
pub const DEFAULT_MAX_BATCH_DECODED_BYTES: usize = 128 << 20;

/// The environment variables [`IngestConfig::from_vars`] reads, each with what it sets.
pub const INGEST_ENV: [(&str, &str); 7] = [
    (
        "SLUICE_MAX_RECORD_BYTES",
        "largest record payload, bytes (1048576)",
    ),
    (
        "SLUICE_MAX_DECOMPRESSED_BYTES",
        "largest gzip payload once decompressed, bytes (16777216)",
    ),
    (
        "SLUICE_MAX_BATCH_DECODED_BYTES",
        "cap on one batch's decoded bytes (134217728)",
    ),
    (
        "SLUICE_MAX_PAST_SECONDS",
        "oldest accepted event time before arrival, seconds (2592000)",
    ),
    (
        "SLUICE_MAX_FUTURE_SECONDS",
        "newest accepted event time after arrival, seconds (3600)",
    ),
    ("SLUICE_ZSTD_LEVEL", "Parquet zstd level (1)"),
    (
        "SLUICE_CLOUDWATCH_MAPPING",
        "log group rules: `PATTERN [tenant=T] [service=S]; ...`",
    ),
];

impl IngestConfig {
    /// The defaults, with every variable of [`INGEST_ENV`] that `var` has applied; an unusable
    /// value is an error that names the variable.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, CoreError> {
        fn number<T: std::str::FromStr>(
            var: &impl Fn(&str) -> Option<String>,
            name: &str,
            into: &mut T,
        ) -> Result<(), CoreError> {
            if let Some(text) = var(name).filter(|t| !t.trim().is_empty()) {
                *into = text.trim().parse().map_err(|_| {
                    CoreError::Config(format!("{name}={text:?} is not a usable number"))
                })?;
            }
            Ok(())
        }
        let mut c = Self::default();
        let (mut past_s, mut future_s) = (c.max_past_ms / 1000, c.max_future_ms / 1000);
        number(
            &var,
            "SLUICE_MAX_RECORD_BYTES",
            &mut c.limits.max_record_bytes,
        )?;
        number(
            &var,
            "SLUICE_MAX_DECOMPRESSED_BYTES",
            &mut c.limits.max_decompressed_bytes,
        )?;
        number(
            &var,
            "SLUICE_MAX_BATCH_DECODED_BYTES",
            &mut c.max_batch_decoded_bytes,
        )?;
        number(&var, "SLUICE_MAX_PAST_SECONDS", &mut past_s)?;
        number(&var, "SLUICE_MAX_FUTURE_SECONDS", &mut future_s)?;
        number(&var, "SLUICE_ZSTD_LEVEL", &mut c.parquet.zstd_level)?;
        if let Some(spec) = var("SLUICE_CLOUDWATCH_MAPPING") {
            c.cloudwatch = CloudWatchMapping::parse(&spec)
                .map_err(|e| CoreError::Config(format!("SLUICE_CLOUDWATCH_MAPPING: {e}")))?;
        }
        if past_s < 0 || future_s < 0 {
            return Err(CoreError::Config(
                "SLUICE_MAX_PAST_SECONDS and SLUICE_MAX_FUTURE_SECONDS must not be negative".into(),
            ));
        }
        (c.max_past_ms, c.max_future_ms) =
            (past_s.saturating_mul(1000), future_s.saturating_mul(1000));
        if c.max_batch_decoded_bytes < c.limits.max_decompressed_bytes {
            return Err(CoreError::Config(format!(
                "SLUICE_MAX_BATCH_DECODED_BYTES ({}) must be at least SLUICE_MAX_DECOMPRESSED_BYTES ({}), \
                 or one record could never fit a batch",
                c.max_batch_decoded_bytes, c.limits.max_decompressed_bytes
            )));
        }
        if !(1..=22).contains(&c.parquet.zstd_level) {
            return Err(CoreError::Config(format!(
                "SLUICE_ZSTD_LEVEL={} is outside zstd's levels 1 to 22",
                c.parquet.zstd_level
            )));
        }
        Ok(c)
    }
}

/// What a batch's encoding keeps for the next one: cleared column builders (their memory is
/// already faulted in, so a warm pipeline appends rows without page faults) and the file
/// writer with its zstd context.
#[derive(Debug, Default)]
pub struct EncodeScratch {
    builders: Vec<ColumnBuilder>,
    writer: Option<LogFileWriter>,
}

/// Builders kept at most: enough for the tenants of a busy batch.
const KEPT_BUILDERS: usize = 32;
/// Memory the kept builders may hold in all: a builder that grew past what is left (one huge
/// group) is dropped rather than kept for ever.
const KEPT_BYTES: usize = 128 << 20;

/// Keeps a finished group's builder for the next group, within the limits above.
fn keep(builders: &mut Vec<ColumnBuilder>, mut builder: ColumnBuilder) {
    builder.clear();
    spares::keep_within(
        builders,
        builder,
        KEPT_BUILDERS,
        KEPT_BYTES,
        ColumnBuilder::capacity_bytes,
    );
}

/// A tenant's rows in the batch.
struct Group {
    tenant: String,
    builder: ColumnBuilder,
}

impl Group {
    fn is(&self, tenant: &str) -> bool {
        same_short_bytes(self.tenant.as_bytes(), tenant.as_bytes())
    }
}

/// Small tenants share a row group until it has this many rows: a row group per tenant
/// would put a footer entry per column per tenant into every object (a thousand one-row
/// tenants: a footer larger than their rows), while a row group of this size is one cheap
/// read for a reader filtering any tenant in its statistics' range.
pub(crate) const MIN_ROW_GROUP_ROWS: usize = 8192;

struct BatchSink<'b> {
    config: &'b IngestConfig,
    record: RecordRef<'b>,
    reference_ms: i64,
    groups: &'b mut Vec<Group>,
    last_group: usize,
    /// Rows a new group's builders reserve (see [`rows_hint`]).
    rows_hint: usize,
    letters: &'b mut Vec<DeadLetter>,
    rejected: &'b mut BTreeMap<String, u64>,
    spare: &'b mut Vec<ColumnBuilder>,
}

impl BatchSink<'_> {
    fn group_for(&mut self, tenant: &str) -> &mut ColumnBuilder {
        let hit = self
            .groups
            .get(self.last_group)
            .is_some_and(|g| g.is(tenant));
        if !hit {
            self.last_group = match self.groups.iter().position(|g| g.is(tenant)) {
                Some(i) => i,
                None => {
                    self.groups.push(Group {
                        tenant: tenant.to_owned(),
                        builder: self
                            .spare
                            .pop()
                            .unwrap_or_else(|| ColumnBuilder::with_capacity(self.rows_hint)),
                    });
                    self.groups.len() - 1
                }
            };
        }
        &mut self.groups[self.last_group].builder
    }
}

impl EventSink for BatchSink<'_> {
    fn event(
        &mut self,
        sub: u32,
        fields: &Fields<'_>,
        attrs: Option<&str>,
        defaults: &EventDefaults<'_>,
    ) -> Result<(), RejectReason> {
        let r = resolve(
            self.config,
            self.record,
            self.reference_ms,
            fields,
            defaults,
        )?;
        let row = Row {
            ts_ms: r.ts_ms,
            received_at_ms: self.reference_ms,
            tenant: r.tenant,
            service: r.service,
            level: r.level,
            fields,
            attrs,
            event_id: fields.event_id.as_deref().or(defaults.event_id),
            origin: Origin {
                shard_id: self.record.shard_id,
                sequence_number: self.record.sequence_number,
                sub_index: sub,
            },
        };
        self.group_for(r.tenant).push(&row);
        Ok(())
    }

    fn reject(&mut self, sub: Option<u32>, reason: RejectReason, raw: &[u8]) {
        *self.rejected.entry(reason.kind().to_owned()).or_default() += 1;
        tracing::debug!(
            shard = %self.record.shard_id,
            sequence = %self.record.sequence_number,
            sub,
            reason = %reason,
            "record rejected to the dead-letter prefix"
        );
        self.letters
            .push(DeadLetter::new(self.record, sub, &reason, raw));
    }
}

/// Rows each new tenant group reserves room for: a quarter of the batch, within bounds.
/// Reserving is cheap (pages are only touched as rows arrive), while growing from a small
/// builder copies every column several times; a batch rarely has fewer than four big groups.
fn rows_hint(records: usize) -> usize {
    (records / 4).clamp(1024, 32_768)
}

/// Encodes a batch. Records should come from one shard (as Lambda delivers them); keys use the
/// first record's shard and sequence number.
pub fn encode_batch(
    config: &IngestConfig,
    records: &[StreamRecord],
    now_ms: i64,
) -> Result<EncodedBatch, CoreError> {
    encode_batch_with(config, records, now_ms, &mut EncodeScratch::default())
}

/// [`encode_batch`], reusing (and refilling) what an earlier batch left in `scratch`.
pub fn encode_batch_with(
    config: &IngestConfig,
    records: &[StreamRecord],
    now_ms: i64,
    scratch: &mut EncodeScratch,
) -> Result<EncodedBatch, CoreError> {
    let mut encoder = BatchEncoder::new(config, now_ms, records.len(), std::mem::take(scratch));
    encoder.push_all(records);
    let (encoded, used) = encoder.finish();
    *scratch = used;
    encoded
}

/// The first record of a batch, which names the batch's objects.
struct First {
    shard_id: String,
    sequence_number: String,
    arrival_ms: i64,
}

/// Encodes a batch one record at a time, for a caller that produces records as it goes (the
/// CLI's line reader): each record is decoded while its bytes are still in the CPU cache,
/// instead of in a second pass over a batch that outgrew the cache. The objects are the same as
/// [`encode_batch`] makes from the same records.
pub struct BatchEncoder<'c> {
    config: &'c IngestConfig,
    now_ms: i64,
    scratch: EncodeScratch,
    decoder: Decoder,
    groups: Vec<Group>,
    letters: Vec<DeadLetter>,
    last_group: usize,
    rows_hint: usize,
    stats: IngestStats,
    first: Option<First>,
    /// Bytes the batch's records decoded to so far, against `max_batch_decoded_bytes`.
    decoded: usize,
}

impl std::fmt::Debug for BatchEncoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchEncoder")
            .field("records", &self.stats.records)
            .field("groups", &self.groups.len())
            .field("dead_letters", &self.letters.len())
            .finish_non_exhaustive()
    }
}

impl<'c> BatchEncoder<'c> {
    /// An encoder for a batch of about `expected_records` records (it sizes new column builders
    /// by it), reusing what an earlier batch left in `scratch`.
    pub fn new(
        config: &'c IngestConfig,
        now_ms: i64,
        expected_records: usize,
        scratch: EncodeScratch,
    ) -> Self {
        Self {
            config,
            now_ms,
            scratch,
            decoder: Decoder::new(config.limits.clone(), config.cloudwatch.clone()),
            groups: Vec::new(),
            letters: Vec::new(),
            last_group: 0,
            rows_hint: rows_hint(expected_records),
            stats: IngestStats::default(),
            first: None,
            decoded: 0,
        }
    }

    /// Records pushed so far.
    pub fn records(&self) -> u64 {
        self.stats.records
    }

    /// The sequence number of the first record pushed: a failed batch is retried from it.
    pub fn first_sequence_number(&self) -> Option<&str> {
        self.first.as_ref().map(|f| f.sequence_number.as_str())
    }

    /// Decodes one record into its rows (or dead letters). Nothing refers to `record` afterwards.
    pub fn push(&mut self, record: RecordRef<'_>) {
        let arrival = record.reference_ms(self.now_ms);
        if self.first.is_none() {
            self.first = Some(First {
                shard_id: record.shard_id.to_owned(),
                sequence_number: record.sequence_number.to_owned(),
                arrival_ms: arrival,
            });
        }
        let stats = &mut self.stats;
        stats.records += 1;
        stats.bytes_in += record.data.len() as u64;
        stats.oldest_arrival_ms = Some(stats.oldest_arrival_ms.map_or(arrival, |o| o.min(arrival)));
        let mut sink = BatchSink {
            config: self.config,
            record,
            reference_ms: arrival,
            groups: &mut self.groups,
            last_group: self.last_group,
            rows_hint: self.rows_hint,
            letters: &mut self.letters,
            rejected: &mut stats.rejected,
            spare: &mut self.scratch.builders,
        };
        let limit = self.config.max_batch_decoded_bytes;
        let budget = Budget {
            left: limit.saturating_sub(self.decoded),
            limit,
        };
        self.decoded += self.decoder.decode_within(record.data, &mut sink, budget);
        self.last_group = sink.last_group;
    }

    /// [`Self::push`] for each of `records`, in order.
    pub fn push_all(&mut self, records: &[StreamRecord]) {
        for record in records {
            self.push(record.view());
        }
    }

    /// Writes the batch's objects, and hands back the scratch for the next batch (even when
    /// writing failed).
    pub fn finish(mut self) -> (Result<EncodedBatch, CoreError>, EncodeScratch) {
        let encoded = self.encode();
        (encoded, self.scratch)
    }

    fn encode(&mut self) -> Result<EncodedBatch, CoreError> {
        let mut stats = std::mem::take(&mut self.stats);
        let Some(first) = self.first.take() else {
            return Ok(EncodedBatch {
                objects: Vec::new(),
                stats,
            });
        };
        let scratch = &mut self.scratch;
        let writer = match &mut scratch.writer {
            Some(writer) => writer,
            None => scratch
                .writer
                .insert(LogFileWriter::new(self.config.parquet.zstd_level)?),
        };
        let mut groups = std::mem::take(&mut self.groups);
        let mut objects = Vec::with_capacity(2);
        groups.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        if !groups.is_empty() {
            let row_groups = row_groups(groups, &mut scratch.builders);
            let parts: Vec<&ColumnBuilder> = row_groups.iter().map(|g| &g.rows).collect();
            let body = writer.write_row_groups(&parts)?;
            let mut rows = 0;
            for group in row_groups {
                for (tenant, n) in group.tenants {
                    rows += n;
                    *stats.tenants.entry(tenant).or_default() += n;
                }
                keep(&mut scratch.builders, group.rows);
            }
            stats.rows += rows;
            stats.bytes_out += body.len() as u64;
            objects.push(EncodedObject {
                key: partition::raw_key(first.arrival_ms, &first.shard_id, &first.sequence_number),
                body,
                content_type: "application/vnd.apache.parquet",
                rows,
                kind: ObjectKind::Raw,
            });
        }
        if !self.letters.is_empty() {
            let body = dead_letter::encode(&self.letters)?;
            stats.bytes_out += body.len() as u64;
            objects.push(EncodedObject {
                key: partition::dead_letter_key(
                    first.arrival_ms,
                    &first.shard_id,
                    &first.sequence_number,
                ),
                body: Bytes::from(body),
                content_type: "application/gzip",
                rows: self.letters.len() as u64,
                kind: ObjectKind::DeadLetter,
            });
        }
        stats.objects = objects.len() as u64;
        stats.events = stats.rows + stats.rejected_total();
        Ok(EncodedBatch { objects, stats })
    }
}

/// One row group of a batch's object: its rows, in write order, and the tenants in it.
struct RowGroup {
    rows: ColumnBuilder,
    tenants: Vec<(String, u64)>,
}

/// Cuts tenant groups (sorted by tenant) into row groups: a tenant with
/// [`MIN_ROW_GROUP_ROWS`] rows or more has one of its own, smaller neighbours share one until
/// it has that many. A tenant is never split, and every row group is in (tenant, ts) order.
fn row_groups(groups: Vec<Group>, spare: &mut Vec<ColumnBuilder>) -> Vec<RowGroup> {
    let mut out: Vec<RowGroup> = Vec::new();
    let mut open: Option<RowGroup> = None;
    for group in groups {
        let n = group.builder.len();
        if n >= MIN_ROW_GROUP_ROWS {
            out.extend(open.take());
            out.push(RowGroup {
                rows: group.builder,
                tenants: vec![(group.tenant, n as u64)],
            });
            continue;
        }
        let shared = open.get_or_insert_with(|| RowGroup {
            rows: spare.pop().unwrap_or_default(),
            tenants: Vec::new(),
        });
        if group.builder.is_sorted() {
            shared.rows.append(&group.builder);
        } else {
            shared.rows.append(&group.builder.sorted_by_ts());
        }
        shared.tenants.push((group.tenant, n as u64));
        keep(spare, group.builder);
        if shared.rows.len() >= MIN_ROW_GROUP_ROWS {
            out.extend(open.take());
        }
    }
    out.extend(open);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_cleared_builders_only_within_the_memory_budget() {
        let mut kept = Vec::new();
        // Reserved, not touched: the budget counts capacity, which is what stays allocated.
        let huge = ColumnBuilder::with_capacity(KEPT_BYTES / 64);
        assert!(huge.capacity_bytes() > KEPT_BYTES);
        keep(&mut kept, huge);
        assert!(kept.is_empty(), "a builder over the budget was kept");

        let mut small = ColumnBuilder::with_capacity(1024);
        small.push(&Row {
            ts_ms: 1,
            received_at_ms: 1,
            tenant: "acme",
            service: "api",
            level: crate::level::Level::Info,
            fields: &Fields::default(),
            attrs: None,
            event_id: Some("e-1"),
            origin: Origin {
                shard_id: "s",
                sequence_number: "1",
                sub_index: 0,
            },
        });
        keep(&mut kept, small);
        assert_eq!(kept.len(), 1);
        assert!(kept[0].is_empty(), "a kept builder must come back cleared");
        for _ in 0..KEPT_BUILDERS * 2 {
            keep(&mut kept, ColumnBuilder::with_capacity(1024));
        }
        assert_eq!(kept.len(), KEPT_BUILDERS);
    }
}
