//! Synthetic multi-tenant traffic: realistic JSON and text logs from many services, with an
//! optional incident (an error burst and a latency spike in one service of one tenant) and
//! optional malformed records. Deterministic for a given seed. Used by the demo, tests and benches.
//!
//! Two shapes: [`Shape::Uniform`] writes two fixed dialects (the demo's traffic), and
//! [`Shape::Varied`] (in [`varied`]) what many teams' services send: per-service dialects and key
//! orders, optional and nested fields, long and non-ASCII messages. The benchmark uses the
//! varied one, so its figure holds on data the code was not tuned on.

mod varied;

use std::fmt::Write as _;

use crate::normalize::timestamp::format_rfc3339_ms;

/// The tenants the generator draws from, in order.
pub const TENANTS: [&str; 8] = [
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka",
];
/// The services each tenant runs, in order.
pub const SERVICES: [&str; 8] = [
    "checkout",
    "payments",
    "search",
    "auth",
    "inventory",
    "gateway",
    "email",
    "recs",
];

/// An incident to inject.
#[derive(Debug, Clone)]
pub struct Incident {
    pub tenant: String,
    pub service: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Share of the service's requests that fail during the incident.
    pub error_rate: f64,
    /// Latency multiplier during the incident.
    pub latency_factor: f64,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub tenants: usize,
    pub services_per_tenant: usize,
    pub events: usize,
    pub start_ms: i64,
    pub duration_ms: i64,
    pub seed: u64,
    pub incident: Option<Incident>,
    /// One malformed record every N events (`None`: none).
    pub malformed_every: Option<usize>,
    /// Share of services that log plain text instead of JSON (0 for JSON only).
    pub text_services: bool,
    /// How the JSON records are written.
    pub shape: Shape,
}

/// How the generator writes JSON records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Shape {
    /// Two fixed dialects, always the same keys in the same order.
    #[default]
    Uniform,
    /// Per-service dialects and key orders, optional and free-form nested fields, long and
    /// non-ASCII messages.
    Varied,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            tenants: 4,
            services_per_tenant: 4,
            events: 100_000,
            start_ms: 1_714_564_800_000,
            duration_ms: 3_600_000,
            seed: 7,
            incident: None,
            malformed_every: None,
            text_services: false,
            shape: Shape::Uniform,
        }
    }
}

/// One generated record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthEvent {
    /// Event time.
    pub ts_ms: i64,
    /// `tenant/service`, as the agent would set it.
    pub partition_key: String,
    pub payload: Vec<u8>,
    /// True when the record is deliberately malformed and must be dead-lettered.
    pub malformed: bool,
}

/// An iterator of [`SynthEvent`]s in time order.
#[derive(Debug)]
pub struct Generator {
    config: SynthConfig,
    rng: fastrand::Rng,
    index: usize,
    buf: String,
}

impl Generator {
    pub fn new(config: SynthConfig) -> Self {
        let rng = fastrand::Rng::with_seed(config.seed);
        Self {
            config,
            rng,
            index: 0,
            buf: String::with_capacity(512),
        }
    }

    fn hex(&mut self, digits: usize) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for _ in 0..digits {
            self.buf.push(HEX[self.rng.usize(..16)] as char);
        }
    }
}

const PATHS: [&str; 6] = [
    "/api/v1/orders",
    "/api/v1/cart",
    "/api/v1/users",
    "/api/v1/search",
    "/healthz",
    "/api/v1/items",
];
const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];

impl Iterator for Generator {
    type Item = SynthEvent;

    fn next(&mut self) -> Option<SynthEvent> {
        let c = &self.config;
        if self.index >= c.events {
            return None;
        }
        let i = self.index;
        self.index += 1;
        let tenants = c.tenants.clamp(1, TENANTS.len());
        let services = c.services_per_tenant.clamp(1, SERVICES.len());
        let ts_ms =
            c.start_ms + (c.duration_ms as i128 * i as i128 / c.events.max(1) as i128) as i64;
        let tenant = TENANTS[self.rng.usize(..tenants)];
        let service = SERVICES[self.rng.usize(..services)];
        let partition_key = format!("{tenant}/{service}");

        if let Some(every) = c.malformed_every.filter(|&n| n > 0)
            && i % every == every - 1
        {
            let payload = match (i / every) % 4 {
                0 => {
                    format!("{{\"ts\":{ts_ms},\"level\":\"info\",\"msg\":\"truncated").into_bytes()
                }
                1 => vec![0xff, 0xfe, b'o', b'o', b'p', b's'],
                2 => format!(
                    "{{\"ts\":\"not a time\",\"msg\":\"bad clock\",\"tenant\":\"{tenant}\"}}"
                )
                .into_bytes(),
                _ => format!("{{\"ts\":{ts_ms},\"tenant\":\"bad/tenant\",\"msg\":\"x\"}}")
                    .into_bytes(),
            };
            return Some(SynthEvent {
                ts_ms,
                partition_key,
                payload,
                malformed: true,
            });
        }

        let in_incident = c.incident.as_ref().is_some_and(|inc| {
            inc.tenant == tenant
                && inc.service == service
                && (inc.start_ms..inc.end_ms).contains(&ts_ms)
        });
        let (error_rate, latency_factor) = match (&c.incident, in_incident) {
            (Some(inc), true) => (inc.error_rate, inc.latency_factor),
            _ => (0.004, 1.0),
        };
        let failed = self.rng.f64() < error_rate;
        let status: u16 = if failed {
            [500, 502, 503, 504][self.rng.usize(..4)]
        } else if self.rng.f64() < 0.03 {
            [400, 401, 404, 429][self.rng.usize(..4)]
        } else {
            [200, 200, 200, 201, 204][self.rng.usize(..5)]
        };
        // Log-normal-ish latency: a body around 40 ms with a long tail.
        let base = 8.0
            + 30.0 * (-self.rng.f64().max(1e-9).ln())
            + if self.rng.f64() < 0.02 {
                400.0 * self.rng.f64()
            } else {
                0.0
            };
        let latency = (base * latency_factor * 1000.0).round() / 1000.0;
        let method = METHODS[self.rng.usize(..METHODS.len())];
        let path = PATHS[self.rng.usize(..PATHS.len())];
        let order = self.rng.u32(1000..999_999);
        let region = REGIONS[(tenant.len() + service.len()) % REGIONS.len()];
        let host_n = self.rng.u8(1..12);
        let level = if status >= 500 {
            "error"
        } else if status >= 400 {
            "warn"
        } else {
            "info"
        };
        // During an incident a third of the failures are a circuit breaker tripping: a message
        // (and a fatal level) the service never logs otherwise.
        let breaker = failed && in_incident && self.rng.usize(..3) == 0;
        let level = if breaker { "fatal" } else { level };
        let message = if breaker {
            format!(
                "circuit breaker open for payment-provider after {} consecutive failures",
                self.rng.u32(5..50)
            )
        } else if status >= 500 {
            match self.rng.usize(..3) {
                0 => format!("upstream inventory returned {status} after {latency:.0}ms"),
                1 => format!("database timeout after {latency:.0}ms on query q-{order}"),
                _ => format!("failed to process order {order}: connection reset by peer"),
            }
        } else {
            match self.rng.usize(..3) {
                0 => format!("{method} {path}/{order} completed in {latency:.0}ms"),
                1 => format!(
                    "user u-{order} authenticated from 10.0.{}.{}",
                    host_n,
                    order % 250
                ),
                _ => format!("cache hit for key order:{order} in region {region}"),
            }
        };
        let text_service = c.text_services && service == "email";
        self.buf.clear();
        if c.shape == Shape::Varied && !text_service {
            let event = varied::Event {
                ts_ms,
                tenant,
                service,
                level,
                message: &message,
                status,
                latency,
                method,
                path,
                order,
                region,
                host_n,
            };
            varied::write(&mut self.buf, &mut self.rng, &event);
        } else if text_service {
            let _ = write!(
                self.buf,
                "{} {} [{service}] {message} status={status}",
                format_rfc3339_ms(ts_ms),
                level.to_uppercase()
            );
        } else if service.len().is_multiple_of(2) {
            // One JSON dialect: ECS-like, nested http, @timestamp.
            let _ = write!(
                self.buf,
                r#"{{"@timestamp":"{}","log.level":"{level}","message":"{message}","service":{{"name":"{service}","version":"1.{}.0"}},"tenant":"{tenant}","trace.id":""#,
                format_rfc3339_ms(ts_ms),
                host_n % 4
            );
            self.hex(32);
            self.buf.push_str(r#"","span.id":""#);
            self.hex(16);
            let _ = write!(
                self.buf,
                r#"","http":{{"method":"{method}","target":"{path}/{order}","status_code":{status},"duration_ms":{latency}}},"host":{{"name":"ip-10-0-{host_n}-{}"}},"cloud.region":"{region}","customer_tier":"{}"}}"#,
                order % 200,
                ["free", "pro", "enterprise"][order as usize % 3]
            );
        } else {
            // Another dialect: flat fields, epoch ms, msg/level.
            let _ = write!(
                self.buf,
                r#"{{"ts":{ts_ms},"level":"{level}","msg":"{message}","service":"{service}","trace_id":""#
            );
            self.hex(32);
            self.buf.push_str(r#"","span_id":""#);
            self.hex(16);
            let _ = write!(
                self.buf,
                r#"","method":"{method}","path":"{path}/{order}","status":{status},"latency_ms":{latency},"host":"ip-10-0-{host_n}-{}","region":"{region}","cache":"{}"}}"#,
                order % 200,
                if order.is_multiple_of(3) {
                    "hit"
                } else {
                    "miss"
                }
            );
        }
        Some(SynthEvent {
            ts_ms,
            partition_key,
            payload: self.buf.as_bytes().to_vec(),
            malformed: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_deterministic_records_of_realistic_size() {
        let config = SynthConfig {
            events: 2000,
            ..SynthConfig::default()
        };
        let a: Vec<_> = Generator::new(config.clone()).collect();
        let b: Vec<_> = Generator::new(config).collect();
        assert_eq!(a, b);
        let mean = a.iter().map(|e| e.payload.len()).sum::<usize>() / a.len();
        assert!((330..=480).contains(&mean), "mean record size {mean}");
        for e in &a {
            let v: serde_json::Value =
                serde_json::from_slice(&e.payload).expect("generated JSON parses");
            assert!(v.is_object());
        }
    }

    #[test]
    fn varied_records_are_json_with_many_key_orders_and_long_and_unicode_messages() {
        let config = SynthConfig {
            events: 4000,
            tenants: 8,
            services_per_tenant: 8,
            shape: Shape::Varied,
            ..SynthConfig::default()
        };
        let events: Vec<_> = Generator::new(config).collect();
        let mut first_keys = std::collections::BTreeSet::new();
        let (mut long, mut unicode, mut nested) = (0, 0, 0);
        for e in &events {
            let v: serde_json::Value =
                serde_json::from_slice(&e.payload).expect("generated JSON parses");
            let object = v.as_object().expect("an object");
            // The first key as written (serde_json's map sorts its keys).
            let first = e
                .payload
                .get(2..)
                .and_then(|t| t.split(|&b| b == b'"').next());
            first_keys.insert(first.map(<[u8]>::to_vec).unwrap_or_default());
            long += usize::from(e.payload.len() > 1500);
            unicode += usize::from(!e.payload.is_ascii());
            nested += usize::from(object.values().any(|v| v.is_object() || v.is_array()));
        }
        assert!(first_keys.len() >= 8, "first keys {first_keys:?}");
        assert!(long * 100 > events.len(), "{long} long records");
        assert!(unicode * 20 > events.len(), "{unicode} non-ASCII records");
        assert!(nested * 2 > events.len(), "{nested} with nested values");
        let mean = events.iter().map(|e| e.payload.len()).sum::<usize>() / events.len();
        assert!((300..=700).contains(&mean), "mean record size {mean}");
    }

    #[test]
    fn incident_raises_errors_only_in_its_service_and_window() {
        let start = 1_714_564_800_000;
        let config = SynthConfig {
            events: 40_000,
            start_ms: start,
            duration_ms: 600_000,
            incident: Some(Incident {
                tenant: "acme".into(),
                service: "checkout".into(),
                start_ms: start + 200_000,
                end_ms: start + 400_000,
                error_rate: 0.5,
                latency_factor: 8.0,
            }),
            ..SynthConfig::default()
        };
        let (mut inside, mut inside_err, mut outside, mut outside_err) = (0, 0, 0, 0);
        for e in Generator::new(config) {
            let text = String::from_utf8_lossy(&e.payload);
            let is_err = text.contains("\"error\"") || text.contains("\"fatal\"");
            if e.partition_key == "acme/checkout"
                && (start + 200_000..start + 400_000).contains(&e.ts_ms)
            {
                inside += 1;
                inside_err += usize::from(is_err);
            } else {
                outside += 1;
                outside_err += usize::from(is_err);
            }
        }
        assert!(
            inside_err * 3 > inside,
            "{inside_err}/{inside} errors inside the incident"
        );
        assert!(
            outside_err * 50 < outside,
            "{outside_err}/{outside} errors outside"
        );
    }
}
