//! `sluice compact`: one compaction pass over a local data directory (docs/ARCHITECTURE.md
//! §11), as the compact function runs on its schedule: closed raw hours into one object per
//! tenant-hour under `logs/`. Prints the compacted objects with their sizes.

use std::path::PathBuf;

use clap::Args;
use sluice_core::LocalDirStore;

use crate::report;

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The data directory (raw/, logs/, control/compaction/).
    #[arg(long, default_value = "sluice-data")]
    data: PathBuf,
    /// How long after its end a raw hour waits before it is compacted. 0 compacts every hour
    /// before the current one: only for a directory nothing writes to any more.
    #[arg(long, default_value_t = 3600)]
    lateness_seconds: i64,
    /// Print a JSON summary instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(args: CompactArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = LocalDirStore::new(&args.data);
    let tiers = runtime.block_on(crate::tiers::compact_and_measure(
        &store,
        report::now_ms(),
        args.lateness_seconds.max(0) * 1000,
    ))?;
    if args.json {
        println!("{}", tiers.json());
    } else {
        tiers.print();
        println!(
            "\nBoth tiers, each row once (DuckDB):\n  {}",
            crate::tiers::union_query(&args.data.display().to_string())
        );
    }
    Ok(())
}
