//! The component side (wasm32 only): the bindings generated from the WIT contract, and the
//! conversions between them and the SDK's plain types. [`export_rule!`](crate::export_rule)
//! expands to an implementation of the generated `Guest` trait that calls
//! [`evaluate_export`].

use crate::alert::{Alert, Severity};
use crate::rule::{Rule, RuleFailure, evaluate_encoded};
use crate::window::{Latency, Level, LevelCounts, LogPattern, ServiceStats, Window};

/// Bindings generated from `wit/since_v0.1.0/rules.wit`.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/since_v0.1.0",
        world: "sluice:rules/alert-rule@0.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_alert_rule",
        default_bindings_module: "sluice_rule_sdk::__private::bindings",
    });
}

use bindings::sluice::rules::types as wit;

/// The exported `evaluate`: converts the input, runs `R`, converts the output.
pub fn evaluate_export<R: Rule>(
    window: wit::Window,
    params: String,
    state: Option<Vec<u8>>,
) -> Result<wit::Evaluation, wit::RuleError> {
    let window = window_from_wit(window);
    let result = evaluate_encoded::<R>(&window, &params, state.as_deref());
    // Every evaluation runs in a fresh instance that is thrown away afterwards: freeing the
    // input, piece by piece, would be wasted work.
    std::mem::forget((window, params, state));
    match result {
        Ok(e) => Ok(wit::Evaluation {
            alerts: e.alerts.into_iter().map(alert_to_wit).collect(),
            state: e.state,
        }),
        Err(RuleFailure::InvalidParams(m)) => Err(wit::RuleError::InvalidParams(m)),
        Err(RuleFailure::Failed(m)) => Err(wit::RuleError::Failed(m)),
    }
}

fn window_from_wit(w: wit::Window) -> Window {
    Window {
        tenant: w.tenant,
        start_ms: w.start_ms,
        end_ms: w.end_ms,
        services: w.services.into_iter().map(service_from_wit).collect(),
        patterns: w.patterns.into_iter().map(pattern_from_wit).collect(),
    }
}

fn service_from_wit(s: wit::ServiceStats) -> ServiceStats {
    ServiceStats {
        service: s.service,
        count: s.count,
        levels: LevelCounts {
            trace: s.levels.trace,
            debug: s.levels.debug,
            info: s.levels.info,
            warn: s.levels.warn,
            error: s.levels.error,
            fatal: s.levels.fatal,
        },
        requests: s.requests,
        status4xx: s.status4xx,
        status5xx: s.status5xx,
        error_rate: s.error_rate,
        latency: s.latency.map(|l| Latency {
            count: l.count,
            p50: l.p50,
            p90: l.p90,
            p95: l.p95,
            p99: l.p99,
            max: l.max,
        }),
    }
}

fn pattern_from_wit(p: wit::LogPattern) -> LogPattern {
    LogPattern {
        id: p.id,
        template: p.template,
        service: p.service,
        level: match p.level {
            wit::Level::Trace => Level::Trace,
            wit::Level::Debug => Level::Debug,
            wit::Level::Info => Level::Info,
            wit::Level::Warn => Level::Warn,
            wit::Level::Error => Level::Error,
            wit::Level::Fatal => Level::Fatal,
        },
        count: p.count,
        first_seen: p.first_seen,
        sample: p.sample,
    }
}

fn alert_to_wit(a: Alert) -> wit::Alert {
    wit::Alert {
        key: a.key,
        severity: match a.severity {
            Severity::Info => wit::Severity::Info,
            Severity::Warning => wit::Severity::Warning,
            Severity::Critical => wit::Severity::Critical,
        },
        title: a.title,
        description: a.description,
        labels: a.labels,
        value: a.value,
    }
}
