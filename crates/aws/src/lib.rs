//! # sluice-aws
//!
//! The AWS adapters of sluice. Everything AWS-specific lives here, so that `sluice-core` stays
//! free of the SDK and the Lambda functions stay thin:
//!
//! - [`config`]: one [`aws_config::SdkConfig`] per process, with an optional endpoint override
//!   (`SLUICE_ENDPOINT_URL`, `AWS_ENDPOINT_URL` or an explicit URL) for moto, LocalStack or any
//!   S3-compatible store; S3 switches to path-style addressing whenever an override is present;
//!   [`kinesis_client`] builds the Kinesis client from the same configuration;
//! - [`s3_store`]: [`S3BlobStore`], the S3 implementation of [`sluice_core::BlobStore`]
//!   (single `PutObject` for small objects, multipart upload above a threshold);
//! - [`kinesis`]: Lambda's Kinesis event ([`aws_lambda_events::kinesis::KinesisEvent`]) to
//!   [`sluice_core::StreamRecord`], with arrival times read at full millisecond precision;
//! - [`kinesis_put`]: `PutRecords`, one call or whole sets of records with per-entry retries
//!   ([`kinesis_put::KinesisWriter`], the front door's writer);
//! - [`kinesis_records`]: the Lambda functions' payload type, the same event decoded straight
//!   into stream records in one pass (payloads base64-decoded into one shared buffer);
//! - [`emf`]: CloudWatch Embedded Metric Format lines for an ingest batch;
//! - [`sqs_queue`]: SQS as the evaluation's work and delivery queues, and SQS events with
//!   partial batch responses (docs/ARCHITECTURE.md §12);
//! - [`lambda`]: JSON logging and the clock, set up the same way by every function.
//!
//! Clients are built once at start-up (Lambda init) and reused for every invocation.

pub mod config;
pub mod emf;
pub mod error;
pub mod kinesis;
pub mod kinesis_put;
pub mod kinesis_records;
pub mod lambda;
pub mod s3_store;
pub mod sqs_queue;

pub use config::{AwsSettings, kinesis_client, load_sdk_config, s3_client};
pub use error::AwsError;
pub use s3_store::S3BlobStore;
