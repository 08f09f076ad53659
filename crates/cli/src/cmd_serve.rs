//! `sluice serve`: the front door (docs/ARCHITECTURE.md §8) on 127.0.0.1.
//!
//! - `--data DIR`: the embedded default. Records go to an in-process stream, which is drained
//!   into ingest as it fills (Parquet under DIR/raw/, one object per batch, rejects under DIR/dlq/); tenants and
//!   keys are read from DIR/control/.
//! - `--stream S --bucket B`: records go to the Kinesis stream S (an emulator through
//!   `AWS_ENDPOINT_URL`, or AWS), where `sluice local run` or the ingest function take them;
//!   tenants and keys are read from the bucket B.
//!
//! Either way the tenant routes (`/v1/config`, `/v1/rules`) use the same store (DIR or B), and
//! an upload or removal through them runs the registry in-process ([`InProcessRegistry`]), so
//! its `status.json` is there when the answer comes (on AWS the bucket notification does it).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use sluice_api::{ApiConfig, ApiState, EmbeddedSink, KinesisSink, RecordSink, RegistryHook};
use sluice_aws::AwsSettings;
use sluice_aws::kinesis_put::{KinesisWriter, StreamRef};
use sluice_core::embedded_stream::EmbeddedStream;
use sluice_core::tenancy::KeyCache;
use sluice_core::{BlobStore, IngestPipeline, LocalDirStore};
use sluice_rules::{EngineConfig, Host, Policy};

use crate::cmd_tenants::store::KeyStoreArgs;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen (loopback; port 0 picks a free one, printed on start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The Kinesis stream to put records on (with --bucket); without it, --data's embedded
    /// stream.
    #[arg(long, env = "SLUICE_STREAM", requires = "bucket")]
    stream: Option<String>,
    #[command(flatten)]
    store: KeyStoreArgs,
    /// Shards of the embedded stream (--data).
    #[arg(long, default_value_t = 2)]
    shards: usize,
}

/// A pump of the embedded stream into ingest: every shard drained, batch by batch.
async fn pump(stream: &Mutex<EmbeddedStream>, pipeline: &IngestPipeline, store: &LocalDirStore) {
    let shards = stream.lock().map(|s| s.shard_count()).unwrap_or(0);
    for shard in 0..shards {
        loop {
            let batch = match stream.lock() {
                Ok(mut s) => s.take_batch(shard, 10_000),
                Err(_) => return,
            };
            if batch.is_empty() {
                break;
            }
            let outcome = pipeline
                .process(store, &batch, crate::report::now_ms())
                .await;
            if outcome.retry_from.is_some() {
                tracing::error!(errors = ?outcome.errors, "storing a batch failed");
            } else {
                tracing::debug!(records = outcome.stats.records, "ingested a batch");
            }
        }
    }
}

/// The registry run by the front door itself on every upload and removal.
pub struct InProcessRegistry {
    host: Host,
    store: Arc<dyn BlobStore>,
}

impl std::fmt::Debug for InProcessRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessRegistry")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl RegistryHook for InProcessRegistry {
    async fn changed(&self, tenant: &str, rule: &str) {
        match sluice_rules::tenant_rules::register(
            &self.host,
            self.store.as_ref(),
            &Policy::default(),
            tenant,
            rule,
        )
        .await
        {
            Ok(status) => tracing::info!(tenant, rule, status = %status.status, "registry ran"),
            Err(e) => tracing::error!(tenant, rule, error = %e, "the registry could not conclude"),
        }
    }

    async fn rollback(&self, tenant: &str, rule: &str) {
        match sluice_rules::tenant_rules::roll_back(
            &self.host,
            self.store.as_ref(),
            &Policy::default(),
            tenant,
            rule,
        )
        .await
        {
            Ok(status) => {
                tracing::info!(tenant, rule, active_version = ?status.active_version, "rollback ran")
            }
            Err(e) => tracing::error!(tenant, rule, error = %e, "the rollback could not conclude"),
        }
    }
}

/// The front door's state: keys and the rules store from `store`, the in-process registry.
async fn api_state(
    store: &KeyStoreArgs,
    sink: Arc<dyn RecordSink>,
    config: ApiConfig,
) -> anyhow::Result<ApiState> {
    let keys = KeyCache::new(store.open().await?);
    let rules = store.blob_store().await?;
    let host = Host::new(EngineConfig::default()).context("starting the rules engine")?;
    let registry = Arc::new(InProcessRegistry {
        host,
        store: Arc::clone(&rules),
    });
    Ok(ApiState::new(keys, sink, config)
        .with_rules_store(rules)
        .with_registry(registry))
}

/// The front door's sink onto a Kinesis stream (name or ARN): endpoint and region from the
/// settings, no SDK retries (the writer retries the failed entries itself).
pub async fn kinesis_sink(
    stream: &str,
    endpoint: Option<String>,
) -> anyhow::Result<Arc<dyn RecordSink>> {
    let settings = AwsSettings::from_env()
        .context("reading the AWS settings")?
        .with_endpoint(endpoint);
    let sdk = sluice_aws::load_sdk_config(&AwsSettings {
        max_attempts: Some(1),
        ..settings
    })
    .await;
    let writer = KinesisWriter::new(sluice_aws::kinesis_client(&sdk), StreamRef::parse(stream));
    Ok(Arc::new(KinesisSink::new(writer)))
}

/// Serves the front door for `stream`, with keys from `store`, on `listen` until `shutdown`.
pub async fn serve_kinesis(
    listen: SocketAddr,
    stream: &str,
    store: &KeyStoreArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "{listen}: the front door binds loopback addresses only"
    );
    let sink = kinesis_sink(stream, store.endpoint.clone()).await?;
    let state = Arc::new(api_state(store, sink, ApiConfig::from_env()?).await?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!("front door: listening on http://{}", listener.local_addr()?);
    Ok(tokio::spawn(sluice_api::serve(
        listener,
        sluice_api::router(state),
        shutdown,
    )))
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "--listen {}: sluice serve binds loopback addresses only",
        args.listen
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let config = ApiConfig::from_env()?;
        let (sink, embedded): (Arc<dyn RecordSink>, _) = match (&args.stream, &args.store.data) {
            (Some(stream), _) => (
                kinesis_sink(stream, args.store.endpoint.clone()).await?,
                None,
            ),
            (None, Some(dir)) => {
                let stream = Arc::new(Mutex::new(EmbeddedStream::new(args.shards)));
                let sink = Arc::new(EmbeddedSink::new(Arc::clone(&stream)));
                (sink as _, Some((stream, LocalDirStore::new(dir))))
            }
            (None, None) => anyhow::bail!("--stream S with --bucket B, or --data DIR"),
        };
        let state = Arc::new(api_state(&args.store, sink, config).await?);
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("sluice serve: listening on http://{addr}");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let pumping = embedded.map(|(stream, store)| {
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let pipeline = IngestPipeline::default();
                loop {
                    pump(&stream, &pipeline, &store).await;
                    if *stop.borrow() {
                        break;
                    }
                    let _ = tokio::time::timeout(Duration::from_millis(200), stop.changed()).await;
                }
                // Whatever arrived before the server stopped is stored before exit.
                pump(&stream, &pipeline, &store).await;
            })
        });
        sluice_api::serve(
            listener,
            sluice_api::router(state),
            crate::cmd_local::shutdown_signal("sluice serve"),
        )
        .await
        .context("serving")?;
        let _ = stop_tx.send(true);
        if let Some(task) = pumping {
            task.await.context("the ingest pump failed")?;
        }
        Ok(())
    })
}
