//! # sluice-core
//!
//! The domain of sluice, with no AWS and no wasmtime in it:
//!
//! - [`input`]: a stream record as delivered (shard, sequence number, partition key, payload);
//! - [`decode`]: payload formats (NDJSON, CloudWatch Logs subscription gzip, KPL aggregates,
//!   plain text) and the hand-written JSON scanner behind them;
//! - [`normalize`]: field aliases, timestamps and levels, to the canonical record;
//! - [`columns`], [`parquet_out`]: the canonical schema, the column builder rows are appended
//!   to, and the tuned Parquet writer that pages those columns out directly;
//! - [`partition`]: the Hive-style storage keys;
//! - [`ingest`]: the whole ingest use case over the [`store::BlobStore`] port; [`compact`]: the
//!   hourly rewrite of the raw tier into one object per tenant-hour (docs/ARCHITECTURE.md §11);
//! - [`tenancy`]: tenants and their API keys (hashed, scoped, revocable), and [`stamp`]: the
//!   front door's stamping of the key's tenant on every record;
//! - [`synth`]: synthetic multi-tenant traffic with an incident, for the demo, tests and benches.

pub mod aggregate;
pub mod alerting;
pub mod columns;
pub mod compact;
pub mod counting_store;
pub mod dead_letter;
pub mod decode;
pub mod embedded_stream;
mod encode_batch;
pub mod error;
pub mod evaluate;
pub mod ingest;
pub mod input;
pub mod level;
pub mod normalize;
pub mod parquet_out;
pub mod partition;
pub mod resolve;
mod spares;
pub mod stamp;
pub mod store;
pub mod synth;
pub mod tenancy;
pub mod tenant_bucket;
pub mod window;

pub use error::{CoreError, RejectReason};
pub use ingest::{IngestConfig, IngestOutcome, IngestPipeline, IngestStats};
pub use input::StreamRecord;
pub use store::{BlobStore, LocalDirStore, StoreError};
