//! The runner's counters and gauges, served as Prometheus text (exposition format 0.0.4) at
//! `/metrics` on a loopback address, and summed up for the progress line and the final report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::batch_delivery::BatchOutcome;
use crate::error::LocalError;

/// Counters of one mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MappingCounters {
    /// Records read from the stream and handed to the mapping.
    pub records: u64,
    /// Batches resolved (processed, or sent to the destination).
    pub batches: u64,
    pub invocations: u64,
    /// Invocations that ended in a function error or reported failed items.
    pub function_errors: u64,
    /// Events the function dead-lettered (`dlq/`).
    pub dead_lettered: u64,
    /// Rows the function stored (Parquet).
    pub rows_stored: u64,
    /// Records sent to the on-failure destination, and the messages that carried them.
    pub records_to_destination: u64,
    pub destination_messages: u64,
    /// Tumbling windows closed with a final invocation.
    pub windows_closed: u64,
}

/// Counters of the scheduled evaluator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EvaluatorCounters {
    pub runs: u64,
    pub run_errors: u64,
    pub windows_evaluated: u64,
    pub rule_evaluations: u64,
    pub rule_errors: u64,
    pub alerts_sent: u64,
    pub alerts_undelivered: u64,
}

/// Everything, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub mappings: BTreeMap<String, MappingCounters>,
    /// (mapping, shard) → iterator age in ms.
    pub iterator_age_ms: BTreeMap<String, BTreeMap<String, i64>>,
    pub evaluator: EvaluatorCounters,
}

impl Snapshot {
    /// The largest iterator age of a mapping, in ms.
    pub fn max_iterator_age_ms(&self, mapping: &str) -> i64 {
        self.iterator_age_ms
            .get(mapping)
            .and_then(|shards| shards.values().max().copied())
            .unwrap_or_default()
    }
}

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Snapshot>>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Snapshot) -> T) -> T {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// A copy of every figure.
    pub fn snapshot(&self) -> Snapshot {
        self.with(|s| s.clone())
    }

    /// Records read for a mapping.
    pub fn records_read(&self, mapping: &str, n: usize) {
        self.with(|s| s.mappings.entry(mapping.to_owned()).or_default().records += n as u64);
    }

    /// A batch resolved (or interrupted) with this outcome.
    pub fn batch(&self, mapping: &str, outcome: &BatchOutcome) {
        self.with(|s| {
            let m = s.mappings.entry(mapping.to_owned()).or_default();
            m.batches += 1;
            m.invocations += u64::from(outcome.invocations);
            m.function_errors += u64::from(outcome.function_errors);
            m.dead_lettered += outcome.dead_lettered;
            m.rows_stored += outcome.rows_stored;
            m.records_to_destination += outcome.records_to_destination;
            m.destination_messages += u64::from(outcome.destination_messages);
        });
    }

    /// A final invocation of a window (`ok` false when it failed for good).
    pub fn window_closed(&self, mapping: &str, invocations: u32, errors: u32) {
        self.with(|s| {
            let m = s.mappings.entry(mapping.to_owned()).or_default();
            m.windows_closed += 1;
            m.invocations += u64::from(invocations);
            m.function_errors += u64::from(errors);
        });
    }

    /// The iterator age of a mapping's shard.
    pub fn iterator_age(&self, mapping: &str, shard: &str, age_ms: i64) {
        self.with(|s| {
            s.iterator_age_ms
                .entry(mapping.to_owned())
                .or_default()
                .insert(shard.to_owned(), age_ms.max(0));
        });
    }

    /// An evaluator run's counts.
    pub fn evaluation(&self, counts: Option<&sluice_evaluate::RunCounts>) {
        self.with(|s| {
            let e = &mut s.evaluator;
            e.runs += 1;
            match counts {
                None => e.run_errors += 1,
                Some(c) => {
                    e.windows_evaluated += c.windows;
                    e.rule_evaluations += c.rules_run;
                    e.rule_errors += c.rule_failures;
                    e.alerts_sent += c.delivered;
                    e.alerts_undelivered += c.undelivered;
                }
            }
        });
    }

    /// The Prometheus text.
    pub fn render(&self) -> String {
        render(&self.snapshot())
    }

    /// Serves `/metrics` on `addr` until the task is dropped; returns the bound address.
    pub async fn serve(
        &self,
        addr: SocketAddr,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), LocalError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| LocalError::Metrics {
                addr: addr.to_string(),
                source,
            })?;
        let bound = listener
            .local_addr()
            .map_err(|source| LocalError::Metrics {
                addr: addr.to_string(),
                source,
            })?;
        let metrics = self.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        );
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "metrics endpoint stopped");
            }
        });
        Ok((bound, task))
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Reads one counter of a mapping.
type CounterOf = dyn Fn(&MappingCounters) -> u64;

/// Renders a snapshot in the Prometheus text format.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    };
    let per_mapping = |f: &dyn Fn(&MappingCounters) -> u64| -> Vec<(String, String)> {
        s.mappings
            .iter()
            .map(|(m, c)| (format!("mapping=\"{}\"", escape(m)), f(c).to_string()))
            .collect()
    };
    family(
        "sluice_local_iterator_age_milliseconds",
        "gauge",
        "Age of the last record read, or Kinesis' MillisBehindLatest, per mapping and shard.",
        s.iterator_age_ms
            .iter()
            .flat_map(|(m, shards)| {
                shards.iter().map(move |(shard, age)| {
                    (
                        format!("mapping=\"{}\",shard=\"{}\"", escape(m), escape(shard)),
                        age.to_string(),
                    )
                })
            })
            .collect(),
    );
    let counters: [(&str, &str, &CounterOf); 9] = [
        (
            "sluice_local_records_total",
            "Records read from the stream, per mapping.",
            &|c| c.records,
        ),
        (
            "sluice_local_batches_total",
            "Batches resolved, per mapping.",
            &|c| c.batches,
        ),
        (
            "sluice_local_invocations_total",
            "Function invocations, per mapping.",
            &|c| c.invocations,
        ),
        (
            "sluice_local_function_errors_total",
            "Invocations that failed or reported failed items, per mapping.",
            &|c| c.function_errors,
        ),
        (
            "sluice_local_dead_lettered_total",
            "Events the ingest function wrote to dlq/ (bad records).",
            &|c| c.dead_lettered,
        ),
        (
            "sluice_local_rows_stored_total",
            "Rows written to Parquet.",
            &|c| c.rows_stored,
        ),
        (
            "sluice_local_destination_records_total",
            "Records sent to the on-failure destination and skipped, per mapping.",
            &|c| c.records_to_destination,
        ),
        (
            "sluice_local_destination_messages_total",
            "On-failure destination messages sent, per mapping.",
            &|c| c.destination_messages,
        ),
        (
            "sluice_local_windows_closed_total",
            "Tumbling windows closed with a final invocation, per mapping.",
            &|c| c.windows_closed,
        ),
    ];
    for (name, help, f) in counters {
        family(name, "counter", help, per_mapping(f));
    }
    let e = &s.evaluator;
    for (name, help, value) in [
        (
            "sluice_local_evaluation_runs_total",
            "Scheduled evaluator runs.",
            e.runs,
        ),
        (
            "sluice_local_evaluation_errors_total",
            "Evaluator runs that failed.",
            e.run_errors,
        ),
        (
            "sluice_local_windows_evaluated_total",
            "Windows evaluated.",
            e.windows_evaluated,
        ),
        (
            "sluice_local_rule_evaluations_total",
            "Tenant rule evaluations.",
            e.rule_evaluations,
        ),
        (
            "sluice_local_rule_errors_total",
            "Tenant rule evaluations that failed.",
            e.rule_errors,
        ),
        (
            "sluice_local_alerts_sent_total",
            "Alert notifications delivered.",
            e.alerts_sent,
        ),
        (
            "sluice_local_alerts_undelivered_total",
            "Alert notifications kept for redrive after failing.",
            e.alerts_undelivered,
        ),
    ] {
        family(
            name,
            "counter",
            help,
            vec![(String::new(), value.to_string())],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_exposition_has_typed_families_with_labels() {
        let m = Metrics::default();
        m.records_read("ingest", 10);
        m.iterator_age("ingest", "shardId-000000000000", 1500);
        m.batch(
            "ingest",
            &BatchOutcome {
                invocations: 2,
                function_errors: 1,
                dead_lettered: 3,
                records_to_destination: 1,
                destination_messages: 1,
                rows_stored: 6,
                ..BatchOutcome::default()
            },
        );
        let text = m.render();
        for line in [
            "# TYPE sluice_local_iterator_age_milliseconds gauge",
            "sluice_local_iterator_age_milliseconds{mapping=\"ingest\",shard=\"shardId-000000000000\"} 1500",
            "# TYPE sluice_local_records_total counter",
            "sluice_local_records_total{mapping=\"ingest\"} 10",
            "sluice_local_function_errors_total{mapping=\"ingest\"} 1",
            "sluice_local_dead_lettered_total{mapping=\"ingest\"} 3",
            "sluice_local_destination_records_total{mapping=\"ingest\"} 1",
            "sluice_local_rule_errors_total 0",
            "sluice_local_alerts_sent_total 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
