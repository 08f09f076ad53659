//! The varied shape of synthetic records ([`super::Shape::Varied`]): what many services built
//! by many teams send, rather than two dialects in a fixed order. Each service has its own
//! dialect (field names, flat or nested, time format) and its own key order; fields are
//! optional; `attrs` get free-form nested objects and arrays; some messages are long (stack
//! traces with escaped newlines), some carry non-ASCII text, escaped quotes or `\u` escapes.

use std::fmt::Write as _;

use crate::normalize::timestamp::format_rfc3339_ms;

/// What one event says, whatever shape it is written in.
#[derive(Debug)]
pub(super) struct Event<'a> {
    pub ts_ms: i64,
    pub tenant: &'a str,
    pub service: &'a str,
    pub level: &'a str,
    pub message: &'a str,
    pub status: u16,
    pub latency: f64,
    pub method: &'a str,
    pub path: &'a str,
    pub order: u32,
    pub region: &'a str,
    pub host_n: u8,
}

/// One member: its key and its value's JSON text.
type Member = (&'static str, String);

/// The member names of one dialect, for the fields every dialect has.
struct Dialect {
    time: &'static str,
    /// Epoch milliseconds as a number instead of RFC 3339 text.
    epoch: bool,
    level: &'static str,
    message: &'static str,
    service: &'static str,
    trace: &'static str,
    span: &'static str,
    /// HTTP fields nested in an `http` object (`method`, `status_code`, ...) instead of flat.
    nested_http: bool,
    latency: &'static str,
}

const DIALECTS: [Dialect; 4] = [
    Dialect {
        time: "@timestamp",
        epoch: false,
        level: "log.level",
        message: "message",
        service: "service.name",
        trace: "trace.id",
        span: "span.id",
        nested_http: true,
        latency: "duration_ms",
    },
    Dialect {
        time: "ts",
        epoch: true,
        level: "level",
        message: "msg",
        service: "service",
        trace: "trace_id",
        span: "span_id",
        nested_http: false,
        latency: "latency_ms",
    },
    Dialect {
        time: "time",
        epoch: false,
        level: "severity",
        message: "log",
        service: "app",
        trace: "traceId",
        span: "spanId",
        nested_http: false,
        latency: "elapsed_ms",
    },
    Dialect {
        time: "timestamp",
        epoch: true,
        level: "levelname",
        message: "message",
        service: "serviceName",
        trace: "traceid",
        span: "spanid",
        nested_http: true,
        latency: "duration_ms",
    },
];

/// Long and non-ASCII messages, used now and then instead of the event's own.
const UNICODE: [&str; 5] = [
    "Zahlung für Kunde Müller abgelehnt: Kartenprüfung fehlgeschlagen",
    "注文を処理しました (倉庫: 東京)",
    "commande expédiée à l'entrepôt de Besançon ✅",
    "пользователь вошёл в систему",
    "cache miss → fetched from origin in région eu-west-1 🚀",
];

/// A small, stable hash of a name, to pick a service's dialect and key order.
fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Appends `text` as a JSON string.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn hex(rng: &mut fastrand::Rng, digits: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(digits + 2);
    out.push('"');
    for _ in 0..digits {
        out.push(HEX[rng.usize(..16)] as char);
    }
    out.push('"');
    out
}

/// A stack trace of `frames` frames, as one string with escaped newlines and tabs.
fn stack_trace(message: &str, frames: usize, rng: &mut fastrand::Rng) -> String {
    let mut out = format!("java.lang.IllegalStateException: {message}");
    for i in 0..frames {
        let _ = write!(
            out,
            "\n\tat com.example.{}.{}Service.handle{}(\"{}Service.java\":{})",
            ["orders", "billing", "catalog", "identity"][i % 4],
            ["Order", "Invoice", "Item", "Session"][rng.usize(..4)],
            ["Request", "Event", "Retry"][i % 3],
            ["Order", "Invoice", "Item"][i % 3],
            rng.u32(20..900)
        );
    }
    out
}

/// Free-form members a service adds: nested objects, arrays, booleans, nulls.
fn extras(e: &Event<'_>, rng: &mut fastrand::Rng, out: &mut Vec<Member>) {
    if rng.f64() < 0.5 {
        out.push((
            "user",
            format!(
                r#"{{"id":"u-{}","roles":["{}","viewer"],"verified":{}}}"#,
                e.order % 5000,
                ["admin", "editor", "support"][rng.usize(..3)],
                rng.bool()
            ),
        ));
    }
    if rng.f64() < 0.4 {
        out.push((
            "k8s",
            format!(
                r#"{{"namespace":"{}","pod":"{}-{}-{}","labels":{{"app":"{}","team":"{}"}}}}"#,
                e.tenant,
                e.service,
                e.host_n,
                e.order % 97,
                e.service,
                ["core", "growth", "platform"][usize::from(e.host_n) % 3]
            ),
        ));
    }
    if rng.f64() < 0.3 {
        let n = rng.usize(1..4);
        let items: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"sku":"SKU-{}","qty":{}}}"#, e.order + i as u32, i + 1))
            .collect();
        out.push(("items", format!("[{}]", items.join(","))));
    }
    if rng.f64() < 0.3 {
        out.push(("request_id", hex(rng, 24)));
    }
    if rng.f64() < 0.2 {
        out.push((
            "timings",
            format!(
                r#"{{"db":{:.3},"cache":{:.3},"render":null}}"#,
                e.latency * 0.6,
                e.latency * 0.05
            ),
        ));
    }
    if rng.f64() < 0.2 {
        out.push(("retries", rng.u8(0..4).to_string()));
    }
    if rng.f64() < 0.1 {
        out.push((
            "feature_flags",
            r#"{"new_checkout":true,"dark_mode":false}"#.into(),
        ));
    }
}

/// Writes one event in the varied shape into `buf`.
pub(super) fn write(buf: &mut String, rng: &mut fastrand::Rng, e: &Event<'_>) {
    let key = hash(e.service) ^ hash(e.tenant).rotate_left(17);
    let d = &DIALECTS[(key % DIALECTS.len() as u64) as usize];
    let message = match rng.usize(..100) {
        0..3 => stack_trace(e.message, rng.usize(4..40), rng),
        3..10 => UNICODE[rng.usize(..UNICODE.len())].to_owned(),
        10..13 => format!(
            "{} (reason: \"{}\")",
            e.message,
            ["timeout", "quota"][rng.usize(..2)]
        ),
        13..15 => format!("{} \u{2014} retry {}", e.message, rng.u8(1..4)),
        _ => e.message.to_owned(),
    };
    let mut members: Vec<Member> = Vec::with_capacity(20);
    members.push((
        d.time,
        if d.epoch {
            e.ts_ms.to_string()
        } else {
            quoted(&format_rfc3339_ms(e.ts_ms))
        },
    ));
    let level = if key.is_multiple_of(3) {
        e.level.to_uppercase()
    } else {
        e.level.to_owned()
    };
    members.push((d.level, quoted(&level)));
    members.push((d.message, quoted(&message)));
    members.push((d.service, quoted(e.service)));
    if key.is_multiple_of(2) {
        members.push(("tenant", quoted(e.tenant)));
    }
    if rng.f64() < 0.7 {
        members.push((d.trace, hex(rng, 32)));
        members.push((d.span, hex(rng, 16)));
    }
    if rng.f64() < 0.8 {
        let target = format!("{}/{}", e.path, e.order);
        if d.nested_http {
            members.push((
                "http",
                format!(
                    r#"{{"method":"{}","target":{},"status_code":{},"{}":{}}}"#,
                    e.method,
                    quoted(&target),
                    e.status,
                    d.latency,
                    e.latency
                ),
            ));
        } else {
            members.push(("method", quoted(e.method)));
            members.push(("path", quoted(&target)));
            members.push(("status", e.status.to_string()));
            members.push((d.latency, e.latency.to_string()));
        }
    }
    if rng.f64() < 0.6 {
        members.push((
            "host",
            format!(r#""ip-10-0-{}-{}""#, e.host_n, e.order % 200),
        ));
    }
    if rng.f64() < 0.5 {
        members.push(("region", quoted(e.region)));
    }
    extras(e, rng, &mut members);
    // The service's own key order: a fixed rotation and swap of its members.
    let n = members.len();
    members.rotate_left((key % n as u64) as usize);
    if n > 3 {
        members.swap(1, n - 2);
    }
    buf.push('{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            buf.push(',');
        }
        buf.push('"');
        buf.push_str(k);
        buf.push_str("\":");
        buf.push_str(v);
    }
    buf.push('}');
}
