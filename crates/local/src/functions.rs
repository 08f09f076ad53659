//! The functions the mappings invoke, in-process: `sluice_ingest` and `sluice_aggregate`,
//! handed the events Lambda would hand them ([`crate::lambda_event`]).

use std::sync::Arc;

use async_trait::async_trait;
use sluice_aggregate::{LambdaWindow, WindowProperties};
use sluice_core::window::WindowConfig;
use sluice_core::{BlobStore, IngestConfig, IngestPipeline};

use crate::batch_delivery::Clock;
use crate::handler::{BatchHandler, FunctionError, Invocation, InvocationResult};
use crate::lambda_event::kinesis_event;

/// The ingest function: one Parquet object per batch under `raw/`, rejected records under `dlq/`.
#[derive(Debug, Clone)]
pub struct IngestFunction {
    store: Arc<dyn BlobStore>,
    pipeline: IngestPipeline,
    clock: Arc<dyn Clock>,
}

impl IngestFunction {
    pub fn new(store: Arc<dyn BlobStore>, config: IngestConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            pipeline: IngestPipeline::new(config),
            clock,
        }
    }
}

#[async_trait]
impl BatchHandler for IngestFunction {
    async fn invoke(&self, inv: Invocation<'_>) -> Result<InvocationResult, FunctionError> {
        let event = kinesis_event(inv.source, inv.shard_id, inv.records);
        let outcome = sluice_ingest::ingest(
            self.store.as_ref(),
            &self.pipeline,
            sluice_aws::kinesis::into_stream_records(event),
            self.clock.now_ms(),
        )
        .await;
        let response = sluice_ingest::response_for(&outcome);
        Ok(InvocationResult {
            batch_item_failures: response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            state: Default::default(),
            dead_lettered: outcome.stats.rejected_total(),
            rows_stored: outcome.stats.rows,
        })
    }
}

/// The aggregate function: per-shard window partials under `windows/partials/`, and each
/// shard's progress under `windows/progress/`.
#[derive(Debug, Clone)]
pub struct AggregateFunction {
    store: Arc<dyn BlobStore>,
    ingest: IngestConfig,
    windows: WindowConfig,
    clock: Arc<dyn Clock>,
}

impl AggregateFunction {
    pub fn new(
        store: Arc<dyn BlobStore>,
        ingest: IngestConfig,
        windows: WindowConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            ingest,
            windows,
            clock,
        }
    }
}

#[async_trait]
impl BatchHandler for AggregateFunction {
    async fn invoke(&self, inv: Invocation<'_>) -> Result<InvocationResult, FunctionError> {
        let window = inv.window.ok_or_else(|| {
            FunctionError(
                "aggregate needs a tumbling-window mapping (TumblingWindowInSeconds)".into(),
            )
        })?;
        let records = sluice_aws::kinesis::into_stream_records(kinesis_event(
            inv.source,
            inv.shard_id,
            inv.records,
        ));
        let props = WindowProperties {
            window: LambdaWindow {
                start: sluice_core::normalize::timestamp::format_rfc3339_ms(window.start_ms),
                end: sluice_core::normalize::timestamp::format_rfc3339_ms(window.end_ms),
            },
            state: window.state.clone(),
            shard_id: Some(inv.shard_id.to_owned()),
            is_final_invoke_for_window: window.is_final_invoke_for_window,
            is_window_terminated_early: window.is_window_terminated_early,
        };
        let response = sluice_aggregate::handle(
            self.store.as_ref(),
            &self.ingest,
            &self.windows,
            &records,
            &props,
            self.clock.now_ms(),
        )
        .await
        .map_err(|e| FunctionError(e.to_string()))?;
        Ok(InvocationResult {
            state: response.state,
            ..InvocationResult::default()
        })
    }
}
