//! `sluice tenants`: what operators set per tenant.

pub mod limits;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct TenantsArgs {
    #[command(subcommand)]
    command: TenantsCommand,
}

#[derive(Debug, Subcommand)]
enum TenantsCommand {
    /// Show or set a tenant's limits (sandbox budget, rules, state, per-window caps, ingest quota).
    Limits(limits::LimitsArgs),
}

pub fn run(args: TenantsArgs) -> anyhow::Result<()> {
    match args.command {
        TenantsCommand::Limits(a) => crate::stores::runtime()?.block_on(limits::run(a)),
    }
}
