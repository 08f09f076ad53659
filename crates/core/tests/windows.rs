//! Window aggregation: per-shard partials merge into exactly the single-pass window; quantiles,
//! patterns and lateness behave as a tenant relies on.

use sluice_core::aggregate::{aggregate_records, decode_state, encode_state};
use sluice_core::embedded_stream::EmbeddedStream;
use sluice_core::synth::{Generator, Incident, SynthConfig};
use sluice_core::window::{AggEvent, TenantWindow, WindowAggregator, WindowConfig};
use sluice_core::{IngestConfig, StreamRecord, level::Level};

const START: i64 = 1_714_564_800_000;

fn traffic(events: usize) -> Vec<(String, Vec<u8>, i64)> {
    let config = SynthConfig {
        tenants: 3,
        services_per_tenant: 4,
        events,
        start_ms: START,
        duration_ms: 600_000,
        incident: Some(Incident {
            tenant: "acme".into(),
            service: "checkout".into(),
            start_ms: START + 120_000,
            end_ms: START + 240_000,
            error_rate: 0.4,
            latency_factor: 5.0,
        }),
        ..SynthConfig::default()
    };
    Generator::new(config)
        .map(|e| (e.partition_key, e.payload, e.ts_ms))
        .collect()
}

fn sorted(mut windows: Vec<TenantWindow>) -> Vec<TenantWindow> {
    windows.sort_by(|a, b| (a.tenant.as_str(), a.start_ms).cmp(&(b.tenant.as_str(), b.start_ms)));
    windows
}

#[test]
fn merging_shard_partials_equals_a_single_pass() {
    let events = traffic(30_000);
    let config = IngestConfig::default();
    let mut stream = EmbeddedStream::new(4);
    for (key, payload, ts) in &events {
        stream.put(key, payload.clone(), ts + 500);
    }
    let mut all: Vec<StreamRecord> = Vec::new();
    // Records arrive 500 ms after they were logged: allow them that (the default of no
    // lateness would count the last half second of each window in the next, marked late).
    let windows = WindowConfig {
        allowed_lateness_ms: 1_000,
        ..WindowConfig::default()
    };
    let mut merged = WindowAggregator::new(windows.clone());
    for shard in 0..4 {
        let batch = stream.take_batch(shard, usize::MAX);
        let mut per_shard = WindowAggregator::new(windows.clone());
        aggregate_records(&config, &mut per_shard, &batch, START);
        // Round-trip through the Lambda state encoding on the way, as the function does.
        let state = encode_state(&per_shard.drain()).expect("state encodes");
        merged.absorb(decode_state(&state).expect("state decodes"));
        all.extend(batch);
    }
    let mut single = WindowAggregator::new(windows);
    let stats = aggregate_records(&config, &mut single, &all, START);
    assert_eq!(stats.events, 30_000);
    let (merged, single) = (sorted(merged.drain()), sorted(single.drain()));
    assert_eq!(merged.len(), 3 * 10, "3 tenants x 10 one-minute windows");
    assert_eq!(merged, single);
}

#[test]
fn window_quantiles_are_within_one_percent_and_the_incident_shows() {
    let events = traffic(30_000);
    let records: Vec<StreamRecord> = events
        .iter()
        .enumerate()
        .map(|(i, (key, payload, ts))| StreamRecord {
            shard_id: "s".into(),
            sequence_number: i.to_string().into(),
            partition_key: key.clone(),
            arrival_ms: ts + 100,
            data: payload.clone().into(),
        })
        .collect();
    let mut agg = WindowAggregator::new(WindowConfig::default());
    aggregate_records(&IngestConfig::default(), &mut agg, &records, START);
    let windows = agg.drain();
    // Exact p99 for acme/checkout in the third minute, from the raw records.
    let mut exact: Vec<f64> = events
        .iter()
        .filter(|(k, _, ts)| {
            k == "acme/checkout" && (START + 120_000..START + 180_000).contains(ts)
        })
        .filter_map(|(_, p, _)| serde_json::from_slice::<serde_json::Value>(p).ok())
        .filter_map(|v| {
            v["latency_ms"]
                .as_f64()
                .or(v["http"]["duration_ms"].as_f64())
        })
        .collect();
    exact.sort_by(f64::total_cmp);
    let want = exact[((exact.len() - 1) as f64 * 0.99).floor() as usize];
    let w = windows
        .iter()
        .find(|w| w.tenant == "acme" && w.start_ms == START + 120_000)
        .expect("window");
    let checkout = &w.services["checkout"];
    let got = checkout.latency.quantile(0.99);
    assert!(
        (got - want).abs() <= want * 0.01,
        "p99 {got} vs exact {want}"
    );
    let calm = windows
        .iter()
        .find(|w| w.tenant == "acme" && w.start_ms == START)
        .expect("window");
    assert!(
        checkout.error_rate() > 0.25,
        "incident error rate {}",
        checkout.error_rate()
    );
    assert!(
        calm.services["checkout"].error_rate() < 0.05,
        "calm error rate {}",
        calm.services["checkout"].error_rate()
    );
}

#[test]
fn pattern_mining_recovers_the_generated_templates() {
    let events = traffic(20_000);
    let records: Vec<StreamRecord> = events
        .iter()
        .enumerate()
        .map(|(i, (key, payload, ts))| StreamRecord {
            shard_id: "s".into(),
            sequence_number: i.to_string().into(),
            partition_key: key.clone(),
            arrival_ms: ts + 100,
            data: payload.clone().into(),
        })
        .collect();
    let mut agg = WindowAggregator::new(WindowConfig::default());
    aggregate_records(&IngestConfig::default(), &mut agg, &records, START);
    let mut templates: Vec<String> = agg
        .drain()
        .iter()
        .flat_map(|w| {
            w.patterns
                .values()
                .filter(|p| p.service == "checkout")
                .map(|p| p.template.clone())
        })
        .collect();
    templates.sort();
    templates.dedup();
    assert_eq!(
        templates,
        vec![
            "GET <path> completed in <num>",
            "POST <path> completed in <num>",
            "PUT <path> completed in <num>",
            "cache hit for key order:<num> in region <*>",
            "circuit breaker open for payment-provider after <num> consecutive failures",
            "database timeout after <num> on query <*>",
            "failed to process order <num>: connection reset by peer",
            "upstream inventory returned <num> after <num>",
            "user <*> authenticated from <ip>",
        ]
    );
}

#[test]
fn late_events_count_in_the_open_window_and_are_not_dropped() {
    let config = WindowConfig {
        allowed_lateness_ms: 120_000,
        ..WindowConfig::default()
    };
    let mut agg = WindowAggregator::new(config.clone());
    let event = |ts_ms, arrival_ms| AggEvent {
        tenant: "acme",
        service: "api",
        ts_ms,
        arrival_ms,
        level: Level::Error,
        http_status: Some(500),
        latency_ms: Some(10.0),
        message: "boom",
    };
    agg.add(&event(START + 5_000, START + 6_000));
    // Within the allowed lateness (window end + 120 s): still its own window.
    agg.add(&event(START + 5_000, START + 60_000 + 100_000));
    // Later than that: counted, as late, in the window open at arrival minus lateness.
    let arrival = START + 60_000 + config.allowed_lateness_ms + 30_000;
    agg.add(&event(START + 5_000, arrival));
    let windows = sorted(agg.drain());
    assert_eq!(windows.len(), 2);
    assert_eq!((windows[0].start_ms, windows[0].count()), (START, 2));
    assert_eq!(
        windows[1].start_ms,
        config.window_start(arrival - config.allowed_lateness_ms)
    );
    assert_eq!(
        (windows[1].count(), windows[1].services["api"].late),
        (1, 1)
    );
}

#[test]
fn with_the_default_of_no_lateness_a_record_arriving_after_its_window_counts_late_where_it_arrives()
{
    // The default pages soonest (docs/ARCHITECTURE.md §12): a window holds exactly what
    // arrived before its end, so Lambda's final invocation of the tumbling window vouches for it.
    let config = WindowConfig::default();
    assert_eq!(config.allowed_lateness_ms, 0);
    let mut agg = WindowAggregator::new(config.clone());
    let event = |ts_ms, arrival_ms| AggEvent {
        tenant: "acme",
        service: "api",
        ts_ms,
        arrival_ms,
        level: Level::Info,
        http_status: Some(200),
        latency_ms: Some(10.0),
        message: "ok",
    };
    agg.add(&event(START + 59_000, START + 59_900));
    // Logged in the last second of the window, buffered by its client past the end.
    agg.add(&event(START + 59_500, START + 60_200));
    let windows = sorted(agg.drain());
    assert_eq!(windows.len(), 2);
    assert_eq!(
        (
            windows[0].start_ms,
            windows[0].count(),
            windows[0].services["api"].late
        ),
        (START, 1, 0)
    );
    assert_eq!(
        (
            windows[1].start_ms,
            windows[1].count(),
            windows[1].services["api"].late
        ),
        (START + 60_000, 1, 1)
    );
}
