//! Errors of the AWS adapters.

/// Why an AWS adapter could not be set up or used.
///
/// Storage calls themselves report [`sluice_core::StoreError`] (the port's error type); this
/// enum covers configuration and event decoding.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// A required environment variable is missing or empty.
    #[error("environment variable {name} is not set: {hint}")]
    MissingEnv {
        name: &'static str,
        hint: &'static str,
    },
    /// An environment variable or setting has a value that cannot be used.
    #[error("invalid setting {name}={value:?}: {reason}")]
    InvalidSetting {
        name: &'static str,
        value: String,
        reason: String,
    },
    /// The multipart settings of the S3 store are unusable.
    #[error("invalid multipart settings: {0}")]
    Multipart(String),
    /// A Lambda Kinesis event could not be decoded.
    #[error("invalid Kinesis event: {0}")]
    KinesisEvent(String),
}
