//! Which input field names (flat, dotted or nested) mean which canonical field.

use crate::decode::json::same_short_bytes;

/// A canonical field that input fields map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Ts,
    Tenant,
    Service,
    Level,
    Message,
    TraceId,
    SpanId,
    HttpMethod,
    HttpPath,
    HttpStatus,
    /// Latency, with the factor that converts the field's unit to milliseconds.
    Latency(Unit),
    Host,
    Region,
    EventId,
    /// `status` is an HTTP status when it is a number in 100..=599, a level otherwise.
    StatusOrLevel,
}

/// The unit a latency field is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Ms,
    Seconds,
    Micros,
    Nanos,
}

impl Unit {
    pub fn to_ms(self, v: f64) -> f64 {
        match self {
            Unit::Ms => v,
            Unit::Seconds => v * 1000.0,
            Unit::Micros => v / 1000.0,
            Unit::Nanos => v / 1_000_000.0,
        }
    }
}

/// The canonical field for a (possibly dotted) field name, if any: one hash and one compare,
/// through a table built once from [`lookup_slow`].
pub fn lookup(name: &str) -> Option<Field> {
    TABLE.get(0, name)
}

/// [`lookup`] of `container.key` (a member of a nested object; `None` is the top level),
/// without building the dotted string.
#[inline]
pub fn lookup_in(container: Option<Container>, key: &str) -> Option<Field> {
    TABLE.get(container.map_or(0, |c| c.index), key)
}

/// An object whose members are looked up as `name.member` (ECS / OpenTelemetry style nesting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Container {
    /// 1-based position in [`CONTAINERS`] (0 is the top level in the table).
    index: u8,
    pub name: &'static str,
}

impl Container {
    /// Distinct for every container, from 1 up to [`CONTAINER_SLOTS`] − 1 (0 stands for the
    /// top level).
    pub fn slot(self) -> usize {
        usize::from(self.index)
    }
}

/// Number of [`Container::slot`] values, the top level's 0 included.
pub const CONTAINER_SLOTS: usize = CONTAINERS.len() + 1;

/// Every container, in the order of [`Container::index`].
const CONTAINERS: [&str; 12] = [
    "http", "service", "host", "trace", "span", "log", "cloud", "url", "request", "response",
    "event", "tenant",
];

/// The container a top-level field name opens, if it is one.
#[inline]
pub fn container(name: &str) -> Option<Container> {
    CONTAINERS
        .iter()
        .position(|c| *c == name)
        .map(|i| Container {
            index: i as u8 + 1,
            name: CONTAINERS[i],
        })
}

/// Every alias, as the table is built from.
const ALIASES: &[&str] = &[
    "ts",
    "timestamp",
    "@timestamp",
    "time",
    "datetime",
    "eventTime",
    "event_time",
    "tenant",
    "tenant_id",
    "tenantId",
    "tenant.id",
    "service",
    "service.name",
    "service_name",
    "serviceName",
    "svc",
    "app",
    "application",
    "level",
    "lvl",
    "severity",
    "loglevel",
    "log_level",
    "log.level",
    "levelname",
    "severityText",
    "severity_text",
    "message",
    "msg",
    "@message",
    "log",
    "text",
    "trace_id",
    "traceId",
    "traceid",
    "trace.id",
    "trace",
    "span_id",
    "spanId",
    "spanid",
    "span.id",
    "http_method",
    "method",
    "http.method",
    "http.request.method",
    "request_method",
    "request.method",
    "http_path",
    "path",
    "url",
    "uri",
    "http.path",
    "http.url",
    "http.target",
    "http.route",
    "url.path",
    "request_path",
    "request.path",
    "request.url",
    "http_status",
    "status_code",
    "statusCode",
    "http.status",
    "http.status_code",
    "http.response.status_code",
    "response_status",
    "response.status",
    "response.status_code",
    "status",
    "latency_ms",
    "duration_ms",
    "elapsed_ms",
    "response_time_ms",
    "took_ms",
    "latency",
    "duration",
    "http.latency_ms",
    "http.duration_ms",
    "http.latency",
    "http.duration",
    "latency_s",
    "duration_s",
    "elapsed_s",
    "request_time",
    "response_time",
    "http.duration_s",
    "latency_us",
    "duration_us",
    "elapsed_us",
    "http.duration_us",
    "latency_ns",
    "duration_ns",
    "elapsed_ns",
    "http.duration_ns",
    "host",
    "hostname",
    "host.name",
    "host.hostname",
    "region",
    "aws_region",
    "cloud.region",
    "event_id",
    "eventId",
    "log_id",
    "_id",
    "event.id",
];

static TABLE: std::sync::LazyLock<AliasTable> = std::sync::LazyLock::new(AliasTable::build);

/// Open addressing over a cheap hash: field names are short, so this beats both a `match` on
/// strings (a compare per pattern) and a general-purpose hasher. Each entry is a name at the top
/// level (container 0) or a member name inside one container.
struct AliasTable {
    slots: Vec<Option<(u8, &'static str, Field)>>,
    mask: usize,
}

/// A cheap hash of the container, the length and three sampled bytes; collisions are resolved
/// by probing.
#[inline(always)]
fn quick_hash(container: u8, key: &[u8]) -> usize {
    let (Some(&first), Some(&last)) = (key.first(), key.last()) else {
        return usize::from(container);
    };
    let mixed = (key.len() as u64)
        | u64::from(first) << 8
        | u64::from(last) << 16
        | u64::from(key[key.len() / 2]) << 24
        | u64::from(container) << 32;
    (mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize
}

impl AliasTable {
    fn build() -> Self {
        let mut entries = Vec::new();
        for &alias in ALIASES {
            if let Some(field) = lookup_slow(alias) {
                entries.push((0, alias, field));
                let nested = alias
                    .split_once('.')
                    .and_then(|(prefix, rest)| Some((container(prefix)?, rest)));
                if let Some((c, rest)) = nested {
                    entries.push((c.index, rest, field));
                }
            }
        }
        let size = (entries.len() * 4).next_power_of_two();
        let mut slots = vec![None; size];
        let mask = size - 1;
        for (container, name, field) in entries {
            let mut i = quick_hash(container, name.as_bytes()) & mask;
            while slots[i].is_some() {
                i = (i + 1) & mask;
            }
            slots[i] = Some((container, name, field));
        }
        Self { slots, mask }
    }

    #[inline(always)]
    fn get(&self, container: u8, key: &str) -> Option<Field> {
        let key = key.as_bytes();
        let mut i = quick_hash(container, key) & self.mask;
        loop {
            match self.slots[i] {
                None => return None,
                Some((c, name, field))
                    if c == container && same_short_bytes(name.as_bytes(), key) =>
                {
                    return Some(field);
                }
                Some(_) => i = (i + 1) & self.mask,
            }
        }
    }
}

/// The alias mapping itself, as a `match` (the source of truth for [`lookup`]).
pub fn lookup_slow(name: &str) -> Option<Field> {
    use Field::*;
    Some(match name {
        "ts" | "timestamp" | "@timestamp" | "time" | "datetime" | "eventTime" | "event_time" => Ts,
        "tenant" | "tenant_id" | "tenantId" | "tenant.id" => Tenant,
        "service" | "service.name" | "service_name" | "serviceName" | "svc" | "app"
        | "application" => Service,
        "level" | "lvl" | "severity" | "loglevel" | "log_level" | "log.level" | "levelname"
        | "severityText" | "severity_text" => Level,
        "message" | "msg" | "@message" | "log" | "text" => Message,
        "trace_id" | "traceId" | "traceid" | "trace.id" | "trace" => TraceId,
        "span_id" | "spanId" | "spanid" | "span.id" => SpanId,
        "http_method"
        | "method"
        | "http.method"
        | "http.request.method"
        | "request_method"
        | "request.method" => HttpMethod,
        "http_path" | "path" | "url" | "uri" | "http.path" | "http.url" | "http.target"
        | "http.route" | "url.path" | "request_path" | "request.path" | "request.url" => HttpPath,
        "http_status"
        | "status_code"
        | "statusCode"
        | "http.status"
        | "http.status_code"
        | "http.response.status_code"
        | "response_status"
        | "response.status"
        | "response.status_code" => HttpStatus,
        "status" => StatusOrLevel,
        "latency_ms" | "duration_ms" | "elapsed_ms" | "response_time_ms" | "took_ms"
        | "latency" | "duration" | "http.latency_ms" | "http.duration_ms" | "http.latency"
        | "http.duration" => Latency(Unit::Ms),
        "latency_s" | "duration_s" | "elapsed_s" | "request_time" | "response_time"
        | "http.duration_s" => Latency(Unit::Seconds),
        "latency_us" | "duration_us" | "elapsed_us" | "http.duration_us" => Latency(Unit::Micros),
        "latency_ns" | "duration_ns" | "elapsed_ns" | "http.duration_ns" => Latency(Unit::Nanos),
        "host" | "hostname" | "host.name" | "host.hostname" => Host,
        "region" | "aws_region" | "cloud.region" => Region,
        "event_id" | "eventId" | "log_id" | "_id" | "event.id" => EventId,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_common_aliases() {
        assert_eq!(lookup("@timestamp"), Some(Field::Ts));
        assert_eq!(lookup("msg"), Some(Field::Message));
        assert_eq!(lookup("service.name"), Some(Field::Service));
        assert_eq!(lookup("http.status_code"), Some(Field::HttpStatus));
        assert_eq!(lookup("duration_ns"), Some(Field::Latency(Unit::Nanos)));
        assert_eq!(lookup("user_id"), None);
        assert_eq!(Unit::Seconds.to_ms(0.25), 250.0);
    }

    #[test]
    fn table_agrees_with_the_match_for_every_alias_and_misses() {
        for alias in ALIASES {
            assert!(
                lookup_slow(alias).is_some(),
                "{alias} is listed but not mapped"
            );
            assert_eq!(lookup(alias), lookup_slow(alias), "{alias}");
        }
        for miss in ["", "user", "tsx", "Level", "http.user_agent", "order_id"] {
            assert_eq!(lookup(miss), None, "{miss}");
        }
    }

    #[test]
    fn nested_members_are_looked_up_as_their_dotted_names() {
        for alias in ALIASES {
            if let Some((prefix, key)) = alias.split_once('.') {
                let c = container(prefix);
                assert!(
                    c.is_some(),
                    "{alias}: {prefix} must be a container to be found nested"
                );
                assert_eq!(lookup_in(c, key), lookup_slow(alias), "{alias}");
            }
            assert_eq!(lookup_in(None, alias), lookup_slow(alias), "{alias}");
        }
        let c = container;
        assert_eq!(lookup_in(c("http"), "status_code"), Some(Field::HttpStatus));
        assert_eq!(lookup_in(c("http"), "user_agent"), None);
        assert_eq!(
            lookup_in(c("http"), "request.method"),
            Some(Field::HttpMethod)
        );
        assert_eq!(lookup_in(c("service"), "name.x"), None);
        assert_eq!(lookup_in(c("service"), "status_code"), None);
        assert_eq!(lookup_in(c("host"), "name"), Some(Field::Host));
        assert_eq!(container("htt"), None);
    }
}
