//! `sluice local up`: the resources the pipeline needs on the configured endpoint, created when
//! missing and reported either way, so running it twice changes nothing.

use aws_sdk_kinesis::error::ProvideErrorMetadata as _;
use serde::Serialize;

use crate::error::LocalError;

/// Names and sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub stream: String,
    pub shards: u32,
    pub data_bucket: String,
    pub rules_bucket: String,
    pub failure_queue: String,
}

/// Created now, or there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Found,
}

/// One resource's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provisioned {
    pub kind: &'static str,
    pub name: String,
    pub status: Status,
    /// ARN, URL or a short description.
    pub detail: String,
}

/// The clients provisioning uses.
#[derive(Debug, Clone)]
pub struct Clients {
    pub kinesis: aws_sdk_kinesis::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub region: String,
}

impl Clients {
    /// Clients for one SDK configuration (S3 path-style when an endpoint override is set).
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            kinesis: aws_sdk_kinesis::Client::new(sdk),
            s3: sluice_aws::s3_client(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            region: sdk.region().map_or_else(
                || sluice_aws::config::DEFAULT_REGION.to_owned(),
                |r| r.as_ref().to_owned(),
            ),
        }
    }
}

/// Creates what is missing; returns every resource with its status.
pub async fn up(clients: &Clients, resources: &Resources) -> Result<Vec<Provisioned>, LocalError> {
    if resources.shards == 0 {
        return Err(LocalError::Config(
            "a stream needs at least one shard".into(),
        ));
    }
    let mut out = vec![stream(clients, resources).await?];
    for bucket in [&resources.data_bucket, &resources.rules_bucket] {
        out.push(bucket_up(clients, bucket).await?);
    }
    out.push(queue(clients, &resources.failure_queue).await?);
    Ok(out)
}

async fn stream(clients: &Clients, r: &Resources) -> Result<Provisioned, LocalError> {
    let describe = || async {
        clients
            .kinesis
            .describe_stream_summary()
            .stream_name(&r.stream)
            .send()
            .await
    };
    let status = match describe().await {
        Ok(_) => Status::Found,
        Err(e) if e.code() == Some("ResourceNotFoundException") => {
            let created = clients
                .kinesis
                .create_stream()
                .stream_name(&r.stream)
                .shard_count(i32::try_from(r.shards).unwrap_or(i32::MAX))
                .send()
                .await;
            match created {
                Ok(_) => Status::Created,
                Err(e) if e.code() == Some("ResourceInUseException") => Status::Found,
                Err(e) => return Err(LocalError::aws("kinesis", "CreateStream", e)),
            }
        }
        Err(e) => return Err(LocalError::aws("kinesis", "DescribeStreamSummary", e)),
    };
    // Wait for ACTIVE (immediate on emulators; seconds on AWS).
    let mut detail = String::new();
    for _ in 0..120 {
        let summary = describe()
            .await
            .map_err(|e| LocalError::aws("kinesis", "DescribeStreamSummary", e))?;
        if let Some(s) = summary.stream_description_summary() {
            detail = format!("{} ({} open shards)", s.stream_arn(), s.open_shard_count());
            if s.stream_status().as_str() == "ACTIVE" {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Ok(Provisioned {
        kind: "kinesis stream",
        name: r.stream.clone(),
        status,
        detail,
    })
}

async fn bucket_up(clients: &Clients, bucket: &str) -> Result<Provisioned, LocalError> {
    let found = Provisioned {
        kind: "s3 bucket",
        name: bucket.to_owned(),
        status: Status::Found,
        detail: format!("s3://{bucket}"),
    };
    if clients.s3.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(found);
    }
    let mut request = clients.s3.create_bucket().bucket(bucket);
    if clients.region != "us-east-1" {
        request = request.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    clients.region.as_str(),
                ))
                .build(),
        );
    }
    match request.send().await {
        Ok(_) => Ok(Provisioned {
            status: Status::Created,
            ..found
        }),
        Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(found),
        Err(e) => Err(LocalError::aws("s3", "CreateBucket", e)),
    }
}

async fn queue(clients: &Clients, name: &str) -> Result<Provisioned, LocalError> {
    let (status, url) = match clients.sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => (
            Status::Found,
            out.queue_url().unwrap_or_default().to_owned(),
        ),
        Err(_) => {
            let out = clients
                .sqs
                .create_queue()
                .queue_name(name)
                .send()
                .await
                .map_err(|e| LocalError::aws("sqs", "CreateQueue", e))?;
            (
                Status::Created,
                out.queue_url().unwrap_or_default().to_owned(),
            )
        }
    };
    Ok(Provisioned {
        kind: "sqs queue (on-failure)",
        name: name.to_owned(),
        status,
        detail: url,
    })
}
