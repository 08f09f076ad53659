//! Shared by the evaluation benches: ten `threshold` rules on ten metrics, installed for a
//! tenant as the registry installs accepted rules, and a webhook poster that answers at once.

#![allow(dead_code)] // Each bench uses a different part of this module.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sluice_core::aggregate::aggregate_records;
use sluice_core::alerting::delivery::{HttpPoster, PostError};
use sluice_core::synth::{Generator, Incident, SynthConfig};
use sluice_core::window::{TenantWindow, WindowAggregator, WindowConfig};
use sluice_core::{BlobStore, IngestConfig, StreamRecord};
use sluice_rules::accepted::{AcceptedRecord, sha256_hex};
use sluice_rules::{Host, RuleId, TrustedArtifact};

pub const RULES: [(&str, &str); 10] = [
    ("error_rate", "warning = 0.05\ncritical = 0.10"),
    ("errors", "warning = 50\ncritical = 200"),
    ("5xx", "warning = 20\ncritical = 100"),
    ("5xx_rate", "warning = 0.02\ncritical = 0.05"),
    ("4xx_rate", "warning = 0.2\ncritical = 0.4"),
    ("latency_p50", "warning = 200\ncritical = 500"),
    ("latency_p90", "warning = 400\ncritical = 800"),
    ("latency_p95", "warning = 500\ncritical = 1000"),
    ("latency_p99", "warning = 800\ncritical = 2000"),
    ("latency_max", "warning = 2000\ncritical = 5000"),
];

/// Answers 200 at once: delivery costs only the signing.
#[derive(Debug)]
pub struct Accepting;

#[async_trait]
impl HttpPoster for Accepting {
    async fn post(
        &self,
        _url: &str,
        _headers: &[(String, String)],
        _body: Bytes,
        _timeout: Duration,
    ) -> Result<u16, PostError> {
        Ok(200)
    }
}

/// Installs [`RULES`] for `tenant`: manifest, precompiled artifact, accepted module and the
/// registry's record, as the evaluator loads them.
pub async fn install_rules(
    rules: &dyn BlobStore,
    host: &Host,
    tenant: &str,
    module: &[u8],
    artifact: &TrustedArtifact,
) {
    for (metric, thresholds) in RULES {
        let name = format!("threshold-{}", metric.replace('_', "-"));
        let id = RuleId::new(tenant, &name).expect("valid rule id");
        let manifest = format!(
            "[rule]\nname = \"{name}\"\napi = \"0.1.0\"\n\n[params]\nmetric = \"{metric}\"\n{thresholds}\nmin_count = 10\n"
        );
        rules
            .put(
                &id.version_manifest_key(1),
                manifest.clone().into(),
                "application/toml",
            )
            .await
            .expect("manifest stored");
        rules
            .put(
                &id.compiled_key(host.fingerprint()),
                Bytes::from(artifact.bytes().to_vec()),
                "application/octet-stream",
            )
            .await
            .expect("artifact stored");
        // What the registry records beside it: the evaluator loads nothing else.
        let record = AcceptedRecord {
            engine_fingerprint: host.fingerprint().to_owned(),
            compiled_key: id.compiled_key(host.fingerprint()),
            artifact_sha256: sha256_hex(artifact.bytes()),
            module_sha256: sha256_hex(module),
            version: 1,
            manifest_sha256: sha256_hex(manifest.as_bytes()),
        };
        rules
            .put(
                &id.version_module_key(1),
                Bytes::from(module.to_vec()),
                "application/wasm",
            )
            .await
            .expect("module stored");
        rules
            .put(
                &id.accepted_record_key(),
                Bytes::from(serde_json::to_vec(&record).expect("JSON")),
                "application/json",
            )
            .await
            .expect("record stored");
    }
}

/// A directory in memory (`/dev/shm`) where there is one, so that the figure is the
/// evaluator's work rather than this machine's disk.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("temp dir")
}

/// `shards` shards' partials of one window for every tenant: generated traffic of the
/// synthetic tenants (one with an incident, so some rules fire), copied under `tenants` names.
pub fn partials(
    tenants: usize,
    shards: usize,
    window_start: i64,
) -> Vec<(String, Vec<TenantWindow>)> {
    let config = SynthConfig {
        tenants: 8,
        services_per_tenant: 8,
        events: 100_000,
        start_ms: window_start,
        duration_ms: 60_000,
        incident: Some(Incident {
            tenant: "acme".into(),
            service: "checkout".into(),
            start_ms: window_start,
            end_ms: window_start + 60_000,
            error_rate: 0.5,
            latency_factor: 4.0,
        }),
        ..SynthConfig::default()
    };
    let records: Vec<StreamRecord> = Generator::new(config)
        .enumerate()
        .map(|(i, e)| StreamRecord {
            shard_id: format!("shardId-{:012}", i % shards).into(),
            sequence_number: i.to_string().into(),
            partition_key: e.partition_key,
            arrival_ms: e.ts_ms + 200,
            data: e.payload.into(),
        })
        .collect();
    (0..shards)
        .map(|shard| {
            let id = format!("shardId-{shard:012}");
            let mine: Vec<StreamRecord> = records
                .iter()
                .filter(|r| *r.shard_id == *id)
                .cloned()
                .collect();
            // The records arrive 200 ms after they are logged: allow for it, so that each
            // tenant has the whole window (no lateness would move the last 200 ms on).
            let mut agg = WindowAggregator::new(WindowConfig {
                allowed_lateness_ms: 1_000,
                ..WindowConfig::default()
            });
            aggregate_records(&IngestConfig::default(), &mut agg, &mine, window_start);
            let base: Vec<TenantWindow> = agg
                .drain()
                .into_iter()
                .filter(|w| w.start_ms == window_start)
                .collect();
            let copies = (0..tenants)
                .map(|i| TenantWindow {
                    tenant: format!("tenant-{i:05}"),
                    ..base[i % base.len()].clone()
                })
                .collect();
            (id, copies)
        })
        .collect()
}
