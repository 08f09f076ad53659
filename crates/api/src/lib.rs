//! # sluice-api
//!
//! The front door of sluice (docs/ARCHITECTURE.md §8): one HTTP router that authenticates a
//! tenant key, stamps the key's tenant on every record (a tenant named in the body never
//! wins), and puts the records on the stream before it answers. The same router is served by
//! the `functions/api` Lambda (behind an API Gateway HTTP API), by `sluice serve`, and inside
//! `sluice local run` and `sluice demo`.
//!
//! - [`config`]: body limits and the per-tenant request-rate quota;
//! - [`auth`]: the key a request presents (`Bearer`, `ApiKey`, `Basic`, `Splunk`), its scope,
//!   and the quota;
//! - [`body`]: reading a body within its limits, compressed and decompressed;
//! - [`intake`]: object texts to stamped stream records, with a reason per rejected record;
//! - [`sink`]: where stamped records go ([`RecordSink`]): Kinesis, the embedded stream, memory;
//! - [`ndjson`]: `POST /v1/ingest`;
//! - [`otlp`]: OTLP/HTTP logs, protobuf ([`otlp_proto`]) and JSON ([`otlp_json`]);
//! - [`object`]: the record object texts decoders write;
//! - [`loki`]: Loki push, JSON and snappy protobuf;
//! - [`elastic`]: the Elasticsearch bulk API and the handshake shippers make before it;
//! - [`hec`]: Splunk HTTP Event Collector;
//! - [`error`]: failures and how each protocol shows them;
//! - [`tenant`]: the tenant's configuration and rules (`/v1/config`, `/v1/rules`);
//! - [`router`]: the routes.

pub mod auth;
pub mod body;
pub mod config;
pub mod elastic;
pub mod error;
pub mod hec;
pub mod intake;
pub mod loki;
pub mod ndjson;
pub mod object;
pub mod otlp;
pub mod otlp_json;
pub mod otlp_proto;
pub mod quota;
pub mod router;
pub mod sink;
pub mod tenant;

pub use config::ApiConfig;
pub use error::ApiError;
pub use router::{ApiState, router, serve};
pub use sink::{EmbeddedSink, KinesisSink, MemorySink, OutRecord, RecordSink, SinkError};
pub use tenant::RegistryHook;
