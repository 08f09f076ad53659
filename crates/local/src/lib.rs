//! # sluice-local
//!
//! sluice, whole, on one machine against whatever Kinesis, S3 and SQS endpoint is configured
//! (moto, LocalStack, or real AWS). No emulator runs a Lambda function without Docker, so this
//! crate plays the part of Lambda's **event source mappings** (ESM) and of the EventBridge
//! schedule, and calls the functions' handlers in-process:
//!
//! - [`provision`]: `sluice local up`: the stream, the data and rules buckets and the on-failure
//!   queue, created when missing and reported either way;
//! - [`runner`]: `sluice local run`: one [`shard_worker`] per (mapping, shard), shard discovery
//!   after a reshard, the evaluator on its schedule, `/metrics`, clean shutdown;
//! - [`batch_delivery`]: the ESM semantics of one batch: `ReportBatchItemFailures`,
//!   `BisectBatchOnFunctionError`, `MaximumRetryAttempts`, `MaximumRecordAgeInSeconds`, and the
//!   on-failure [`destination`]; tested with fake [`handler::BatchHandler`]s;
//! - [`mapping`]: the per-mapping settings, with the template's defaults;
//! - [`lambda_event`]: the exact event shapes Lambda delivers (Kinesis records, tumbling-window
//!   fields);
//! - [`functions`]: the ingest and aggregate handlers behind [`handler::BatchHandler`];
//! - [`tumbling_window`]: Lambda's tumbling windows (by arrival time) and their state;
//! - [`checkpoint`]: a JSON file per mapping and shard, written atomically after a batch is
//!   done, holding the window state too, so a restart resumes where it stopped;
//! - [`stream_source`] and [`kinesis_source`]: the reads the runner needs from a stream, and
//!   their Kinesis implementation;
//! - [`metrics`]: counters and gauges served as Prometheus text on 127.0.0.1;
//! - [`scheduled_evaluate`]: the evaluate function, wired as `functions/evaluate` wires it;
//!   [`scheduled_compact`]: the compact function (docs/ARCHITECTURE.md §11).
//!
//! Delivery is at least once, as with Lambda: a batch is checkpointed only after the handler
//! succeeded (or the batch went to the on-failure destination); a crash in between re-delivers
//! that batch, and the functions write retry-safe keys, so re-delivery overwrites.

pub mod batch_delivery;
pub mod checkpoint;
pub mod destination;
pub mod error;
pub mod functions;
pub mod handler;
pub mod kinesis_source;
pub mod lambda_event;
pub mod mapping;
pub mod metrics;
pub mod provision;
pub mod runner;
pub mod scheduled_compact;
pub mod scheduled_evaluate;
pub mod sequence;
pub mod shard_worker;
pub mod stream_source;
pub mod tumbling_window;

pub use error::LocalError;
pub use mapping::{MappingConfig, Redelivery, StartingPosition};
pub use runner::{RunConfig, RunReport, Runner};
