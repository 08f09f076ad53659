//! The error type of the crate.

use std::path::PathBuf;

/// What can go wrong while provisioning or running locally.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// An AWS call failed (after the SDK's own retries).
    #[error("{service} {op} failed: {message}")]
    Aws {
        service: &'static str,
        op: &'static str,
        message: String,
    },
    /// Reading or writing a checkpoint file failed.
    #[error("checkpoint {path}: {source}")]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint file exists but cannot be read back.
    #[error("checkpoint {path} is corrupt: {detail}")]
    CorruptCheckpoint { path: PathBuf, detail: String },
    /// The metrics endpoint could not be served.
    #[error("serving metrics on {addr}: {source}")]
    Metrics {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The rules engine or the webhook client could not start.
    #[error("starting the evaluator: {0}")]
    Evaluator(String),
    /// A setting is out of range or inconsistent.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The stream does not exist or has no shards.
    #[error("stream {0} not found: run `sluice local up` first")]
    StreamNotFound(String),
}

impl LocalError {
    /// An AWS error, described with the SDK's full error context.
    pub fn aws(service: &'static str, op: &'static str, err: impl std::error::Error) -> Self {
        Self::Aws {
            service,
            op,
            message: aws_sdk_s3::error::DisplayErrorContext(err).to_string(),
        }
    }
}
