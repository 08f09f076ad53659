//! `sluice gen`: synthetic NDJSON traffic.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use sluice_core::synth::{Generator, SynthConfig};

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
    for event in Generator::new(config) {
        out.write_all(&event.payload)?;
        out.write_all(b"\n")?;
    }
    out.flush().context("writing records")?;
    Ok(())
}
