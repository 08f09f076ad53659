//! A canned window: realistic, deterministic, with a few services in trouble. The registry
//! test-evaluates every upload on it (and reports the fuel used), and the benchmarks use it.

use crate::window::{Latency, Level, LevelCounts, LogPattern, ServiceStats, Window};

/// A window of one minute ending at `end_ms`, with `services` services and `patterns` log
/// patterns. Every seventh service has a high error rate and 5xx responses, every fifth a
/// slow p99; every tenth pattern is new (half of them at error level); so threshold-style rules have something to find.
pub fn sample_window(tenant: &str, end_ms: i64, services: usize, patterns: usize) -> Window {
    let services: Vec<ServiceStats> = (0..services).map(sample_service).collect();
    let patterns = (0..patterns)
        .map(|i| {
            let service = &services[i % services.len().max(1)];
            let level = match i % 5 {
                0 => Level::Error,
                1 => Level::Warn,
                _ => Level::Info,
            };
            LogPattern {
                id: format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                template: format!(
                    "request <*> to {} finished in <*> ms (step {i})",
                    service.service
                ),
                service: service.service.clone(),
                level,
                count: 1000 / (i as u64 + 1),
                first_seen: i % 10 == 5,
                sample: format!(
                    "request 4f1c to {} finished in 42 ms (step {i})",
                    service.service
                ),
            }
        })
        .collect();
    Window {
        tenant: tenant.to_string(),
        start_ms: end_ms - 60_000,
        end_ms,
        services,
        patterns,
    }
}

fn sample_service(i: usize) -> ServiceStats {
    let i64 = i as u64;
    let count = 2_000 + 500 * i64;
    let troubled = i % 7 == 3;
    let error = if troubled { count / 8 } else { count / 200 };
    let fatal = u64::from(troubled);
    let warn = count / 50;
    let debug = count / 10;
    let info = count - error - fatal - warn - debug;
    let requests = count * 9 / 10;
    let slow = i % 5 == 2;
    let p50 = 20.0 + i as f64;
    ServiceStats {
        service: format!("service-{i:02}"),
        count,
        levels: LevelCounts {
            trace: 0,
            debug,
            info,
            warn,
            error,
            fatal,
        },
        requests,
        status4xx: requests / 40,
        status5xx: if troubled {
            requests / 10
        } else {
            requests / 1000
        },
        error_rate: (error + fatal) as f64 / count as f64,
        latency: Some(Latency {
            count: requests,
            p50,
            p90: p50 * 3.0,
            p95: p50 * 5.0,
            p99: if slow { 2_500.0 } else { p50 * 10.0 },
            max: if slow { 9_000.0 } else { p50 * 30.0 },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_window_has_the_requested_shape_and_consistent_counts() {
        let w = sample_window("acme", 120_000, 20, 25);
        assert_eq!((w.services.len(), w.patterns.len()), (20, 25));
        assert_eq!(w.end_ms - w.start_ms, 60_000);
        for s in &w.services {
            assert_eq!(s.levels.total(), s.count, "{}", s.service);
            assert!(s.requests <= s.count);
        }
        assert!(w.services.iter().any(|s| s.error_rate > 0.1));
        assert!(w.patterns.iter().any(|p| p.first_seen));
    }

    #[test]
    fn sample_window_is_deterministic() {
        assert_eq!(sample_window("a", 0, 5, 5), sample_window("a", 0, 5, 5));
    }
}
