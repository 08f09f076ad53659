//! The settings of one event source mapping, named as in Lambda's `CreateEventSourceMapping`,
//! with the defaults of `infra/template.yaml` so that the local pipeline behaves as the deployed
//! one does.

use std::time::Duration;

use crate::error::LocalError;

/// Where a mapping starts reading a shard that has no checkpoint yet. Child shards of a
/// reshard always start at the trim horizon, as with Lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartingPosition {
    /// The oldest record kept in the shard.
    #[default]
    TrimHorizon,
    /// Only records written after the mapping started.
    Latest,
}

/// Re-deliveries Lambda may make of a batch whose function wrote its objects and then timed
/// out (docs/ARCHITECTURE.md §11), rehearsed on every batch of a mapping without tumbling
/// windows, to show that its writes are exactly once: an invocation whose result is thrown
/// away (as a time-out's is) comes first, then the batch is delivered as usual.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redelivery {
    /// Every batch once (Lambda's normal case).
    #[default]
    None,
    /// The whole batch, then the whole batch again.
    Identical,
    /// The batch's first half, then the whole batch (a longer re-delivery from the same record).
    Longer,
    /// The whole batch, then its two halves in turn (a bisect after the time-out).
    Bisect,
}

impl std::str::FromStr for Redelivery {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "identical" => Ok(Self::Identical),
            "longer" => Ok(Self::Longer),
            "bisect" => Ok(Self::Bisect),
            other => Err(format!(
                "{other:?}: expected none, identical, longer or bisect"
            )),
        }
    }
}

/// One event source mapping: which function, and how batches are formed, retried and given
/// up on.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingConfig {
    /// Name of the mapping (and of its checkpoint files): `ingest` or `aggregate`.
    pub name: String,
    /// The function's ARN as it appears in the on-failure message.
    pub function_arn: String,
    /// `BatchSize`: records per invocation at most (1 to 10,000).
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds`: how long records are gathered before an invocation
    /// with fewer than `batch_size` of them.
    pub batching_window: Duration,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`: honour `batchItemFailures`.
    pub report_batch_item_failures: bool,
    /// `BisectBatchOnFunctionError`: split a failing batch in two (a split uses no retry).
    pub bisect_on_error: bool,
    /// `MaximumRetryAttempts`: `None` is -1, retry until the records expire.
    pub max_retry_attempts: Option<u32>,
    /// `MaximumRecordAgeInSeconds`: `None` is -1, no limit.
    pub max_record_age: Option<Duration>,
    /// `TumblingWindowInSeconds`: `None` for a mapping without windows.
    pub tumbling_window: Option<Duration>,
    /// `StartingPosition` for shards without a checkpoint.
    pub starting_position: StartingPosition,
    /// First pause between retries of a failing batch (doubled each time, up to
    /// `max_retry_backoff`). Lambda's own backoff is not documented; this is a setting of the
    /// runner, not of the mapping.
    pub retry_backoff: Duration,
    /// Longest pause between retries.
    pub max_retry_backoff: Duration,
    /// Re-deliveries to rehearse on every batch (a setting of the runner, not of Lambda).
    pub redelivery: Redelivery,
}

/// Lambda's cap on a synchronous invocation's payload, which also caps a batch.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

impl MappingConfig {
    /// The ingest mapping of the template.
    pub fn ingest() -> Self {
        Self {
            name: "ingest".into(),
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:sluice-ingest".into(),
            batch_size: 10_000,
            batching_window: Duration::from_secs(5),
            report_batch_item_failures: true,
            bisect_on_error: true,
            max_retry_attempts: Some(10),
            max_record_age: Some(Duration::from_secs(86_400)),
            tumbling_window: None,
            starting_position: StartingPosition::TrimHorizon,
            retry_backoff: Duration::from_millis(200),
            max_retry_backoff: Duration::from_secs(10),
            redelivery: Redelivery::None,
        }
    }

    /// The aggregate mapping of the template (tumbling windows of 60 s).
    pub fn aggregate() -> Self {
        Self {
            name: "aggregate".into(),
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:sluice-aggregate".into(),
            tumbling_window: Some(Duration::from_secs(60)),
            ..Self::ingest()
        }
    }

    /// Checks the ranges Lambda enforces.
    pub fn validate(&self) -> Result<(), LocalError> {
        let bad = |what: String| Err(LocalError::Config(format!("mapping {}: {what}", self.name)));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(format!(
                "name {:?} must be letters, digits, - and _",
                self.name
            ));
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return bad(format!(
                "BatchSize {} is outside 1..=10000",
                self.batch_size
            ));
        }
        if self.batching_window > Duration::from_secs(300) {
            return bad("MaximumBatchingWindowInSeconds is over 300".into());
        }
        if self.max_retry_attempts.is_some_and(|n| n > 10_000) {
            return bad("MaximumRetryAttempts is over 10000".into());
        }
        if self
            .max_record_age
            .is_some_and(|a| a > Duration::from_secs(604_800))
        {
            return bad("MaximumRecordAgeInSeconds is over 604800".into());
        }
        if let Some(w) = self.tumbling_window
            && (w.is_zero() || w > Duration::from_secs(900) || w.subsec_nanos() != 0)
        {
            return bad("TumblingWindowInSeconds must be whole seconds in 1..=900".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_defaults_are_valid_and_differ_only_by_window() {
        let ingest = MappingConfig::ingest();
        let aggregate = MappingConfig::aggregate();
        assert!(ingest.validate().is_ok());
        assert!(aggregate.validate().is_ok());
        assert_eq!(aggregate.tumbling_window, Some(Duration::from_secs(60)));
        assert_eq!(ingest.tumbling_window, None);
        assert_eq!(ingest.batch_size, aggregate.batch_size);
    }

    #[test]
    fn out_of_range_settings_are_refused_with_the_mapping_name() {
        let mut m = MappingConfig::ingest();
        m.batch_size = 0;
        let err = m.validate().expect_err("batch size 0");
        assert!(err.to_string().contains("mapping ingest"), "{err}");
        let mut m = MappingConfig::aggregate();
        m.tumbling_window = Some(Duration::from_millis(1500));
        assert!(m.validate().is_err());
    }
}
