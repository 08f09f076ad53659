//! `sluice gen`: synthetic NDJSON traffic, one record a line. A file carries no partition key,
//! so every JSON line names its tenant: the generator leaves it out of some record shapes (the
//! partition key carries it on Kinesis), and `gen` puts it back in.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use sluice_core::synth::{Generator, Shape, SynthConfig};

/// How the JSON records are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ShapeArg {
    /// Two fixed dialects, the same keys in the same order (the demo's traffic).
    Uniform,
    /// Per-service dialects and key orders, optional and nested fields, long and non-ASCII
    /// messages (what `cargo xtask bench` measures on).
    Varied,
}

#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// How many records to write.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Output file (`-` for stdout).
    #[arg(long, default_value = "-")]
    out: PathBuf,
    /// Random seed; the same seed gives the same file.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Number of tenants (1-8).
    #[arg(long, default_value_t = 8)]
    tenants: usize,
    /// Event time of the first record, ms since the epoch (default: one hour ago).
    #[arg(long)]
    start_ms: Option<i64>,
    /// Record shape.
    #[arg(long, value_enum, default_value = "uniform")]
    shape: ShapeArg,
}

pub fn run(args: GenArgs) -> anyhow::Result<()> {
    let now = crate::report::now_ms();
    let config = SynthConfig {
        tenants: args.tenants,
        services_per_tenant: 8,
        events: args.records,
        start_ms: args.start_ms.unwrap_or(now - 3_600_000),
        duration_ms: 3_600_000,
        seed: args.seed,
        shape: match args.shape {
            ShapeArg::Uniform => Shape::Uniform,
            ShapeArg::Varied => Shape::Varied,
        },
        ..SynthConfig::default()
    };
    let sink: Box<dyn std::io::Write> = if args.out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(&args.out)
                .with_context(|| format!("creating {}", args.out.display()))?,
        )
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, sink);
    let written = Generator::new(config)
        .try_for_each(|event| {
            let tenant = event.partition_key.split('/').next().unwrap_or_default();
            out.write_all(&with_tenant(&event.payload, tenant))?;
            out.write_all(b"\n")
        })
        .and_then(|()| out.flush());
    if args.out.as_os_str() == "-" {
        crate::stdout_closed::check(written)
    } else {
        written.with_context(|| format!("writing {}", args.out.display()))
    }
}

/// `payload` with a `"tenant"` field first when it is a JSON object that names none (text lines
/// and malformed records are left as they are).
fn with_tenant<'a>(payload: &'a [u8], tenant: &str) -> std::borrow::Cow<'a, [u8]> {
    let names_tenant = payload.windows(8).any(|w| w == b"\"tenant\"");
    if tenant.is_empty() || names_tenant || payload.first() != Some(&b'{') {
        return std::borrow::Cow::Borrowed(payload);
    }
    let mut out = Vec::with_capacity(payload.len() + tenant.len() + 12);
    out.extend_from_slice(b"{\"tenant\":");
    out.extend_from_slice(serde_json::Value::from(tenant).to_string().as_bytes());
    if payload
        .get(1..)
        .is_some_and(|rest| rest.iter().any(|b| !b.is_ascii_whitespace() && *b != b'}'))
    {
        out.push(b',');
    }
    out.extend_from_slice(&payload[1..]);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::synth::{Generator, SynthConfig};

    #[test]
    fn every_generated_json_line_names_its_tenant() {
        let config = SynthConfig {
            events: 2_000,
            ..SynthConfig::default()
        };
        let mut without = 0;
        for event in Generator::new(config) {
            let tenant = event.partition_key.split('/').next().unwrap_or_default();
            let line = with_tenant(&event.payload, tenant);
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(&line) {
                if !map.contains_key("tenant") {
                    without += 1;
                }
                if event.payload.windows(8).all(|w| w != b"\"tenant\"") {
                    assert_eq!(map["tenant"], tenant, "{}", String::from_utf8_lossy(&line));
                }
            }
        }
        assert_eq!(without, 0);
    }

    #[test]
    fn lines_that_name_a_tenant_or_are_not_objects_are_unchanged() {
        let named = br#"{"tenant":"acme","msg":"x"}"#;
        assert_eq!(with_tenant(named, "globex").as_ref(), named);
        assert_eq!(with_tenant(b"plain text", "acme").as_ref(), b"plain text");
        assert_eq!(with_tenant(b"{}", "acme").as_ref(), br#"{"tenant":"acme"}"#);
    }
}
