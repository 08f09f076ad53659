//! Which input field names (flat, dotted or nested) mean which canonical field.

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

/// The canonical field for a (possibly dotted) field name, if any.
pub fn lookup(name: &str) -> Option<Field> {
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

/// Objects whose members are looked up as `prefix.member` (ECS / OpenTelemetry style nesting).
pub fn is_known_container(name: &str) -> bool {
    matches!(
        name,
        "http"
            | "service"
            | "host"
            | "trace"
            | "span"
            | "log"
            | "cloud"
            | "url"
            | "request"
            | "response"
            | "event"
            | "tenant"
    )
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
}
