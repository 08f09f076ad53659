//! [`StreamSource`] over Kinesis (`aws-sdk-kinesis`): `ListShards`, `GetShardIterator` and
//! `GetRecords`, with the error codes the runner acts on told apart.

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::ShardIteratorType;

use crate::error::LocalError;
use crate::stream_source::{
    IteratorPosition, RecordsPage, ShardInfo, SourceError, SourceRecord, StreamSource,
};

/// A Kinesis stream, read with the SDK.
#[derive(Debug, Clone)]
pub struct KinesisSource {
    client: Client,
    stream_name: String,
    stream_arn: String,
    region: String,
}

impl KinesisSource {
    /// Looks the stream up (`DescribeStreamSummary`) for its ARN.
    pub async fn connect(
        client: Client,
        stream_name: &str,
        region: &str,
    ) -> Result<Self, LocalError> {
        let summary = client
            .describe_stream_summary()
            .stream_name(stream_name)
            .send()
            .await
            .map_err(|e| {
                if e.code() == Some("ResourceNotFoundException") {
                    LocalError::StreamNotFound(stream_name.to_owned())
                } else {
                    LocalError::aws("kinesis", "DescribeStreamSummary", e)
                }
            })?;
        let stream_arn = summary
            .stream_description_summary()
            .map(|s| s.stream_arn().to_owned())
            .unwrap_or_else(|| {
                format!("arn:aws:kinesis:{region}:000000000000:stream/{stream_name}")
            });
        Ok(Self {
            client,
            stream_name: stream_name.to_owned(),
            stream_arn,
            region: region.to_owned(),
        })
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }
}

fn classify<E, R>(err: SdkError<E, R>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = DisplayErrorContext(&err).to_string();
    match err.code() {
        Some(
            "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "KMSThrottlingException"
            | "ThrottlingException",
        ) => SourceError::Throttled(text),
        Some("ExpiredIteratorException") => SourceError::ExpiredIterator(text),
        Some("ResourceNotFoundException") => SourceError::NotFound(text),
        _ => SourceError::Other(text),
    }
}

#[async_trait]
impl StreamSource for KinesisSource {
    fn stream_arn(&self) -> &str {
        &self.stream_arn
    }

    fn region(&self) -> &str {
        &self.region
    }

    async fn list_shards(&self) -> Result<Vec<ShardInfo>, SourceError> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            // With a NextToken, the stream must not be named again.
            let request = match &next_token {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(&self.stream_name),
            };
            let page = request.send().await.map_err(classify)?;
            shards.extend(page.shards().iter().map(|s| ShardInfo {
                shard_id: s.shard_id().to_owned(),
                parent_shard_id: s.parent_shard_id().map(str::to_owned),
                adjacent_parent_shard_id: s.adjacent_parent_shard_id().map(str::to_owned),
            }));
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => break,
            }
        }
        Ok(shards)
    }

    async fn shard_iterator(
        &self,
        shard_id: &str,
        position: &IteratorPosition,
    ) -> Result<String, SourceError> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream_name)
            .shard_id(shard_id);
        let request = match position {
            IteratorPosition::TrimHorizon => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            IteratorPosition::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            IteratorPosition::AfterSequenceNumber(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
        };
        let out = request.send().await.map_err(classify)?;
        out.shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| SourceError::Other(format!("no shard iterator for {shard_id}")))
    }

    async fn get_records(&self, iterator: &str, limit: usize) -> Result<RecordsPage, SourceError> {
        let limit = i32::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000);
        let out = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit)
            .send()
            .await
            .map_err(classify)?;
        let millis_behind_latest = out.millis_behind_latest();
        let next_iterator = out.next_shard_iterator().map(str::to_owned);
        let records = out
            .records
            .into_iter()
            .map(|r| {
                let arrival_ms = r
                    .approximate_arrival_timestamp
                    .and_then(|t| t.to_millis().ok())
                    .unwrap_or_default();
                SourceRecord {
                    sequence_number: r.sequence_number,
                    partition_key: r.partition_key.unwrap_or_default(),
                    data: r.data.into_inner(),
                    arrival_ms,
                }
            })
            .collect();
        Ok(RecordsPage {
            records,
            next_iterator,
            millis_behind_latest,
        })
    }
}
