//! `sluice tenants`: tenants and their API keys for the front door (docs/ARCHITECTURE.md §8).
//!
//! - `sluice tenants create T`, `sluice tenants list`;
//! - `sluice tenants keys create|list|revoke` ([`keys`]).
//!
//! Every subcommand takes `--data DIR` (the embedded default) or `--bucket B` (the rules/config
//! bucket), prints a table, or JSON with `--json`; `sluice tenants limits` ([`limits`]) shows or
//! sets a tenant's limits.

pub mod keys;
pub mod limits;
pub mod store;

use clap::{Args, Subcommand};

use crate::report;
use store::KeyStoreArgs;

pub const TENANTS_ABOUT: &str = "\
Tenants and their API keys for the front door (sluice serve, the api function). A key is shown
once, when it is made; the store keeps only its HMAC-SHA256 under the key pepper
(SLUICE_KEY_PEPPER; if unset, a generated file: DIR/.sluice/key-pepper with --data, else
.sluice/key-pepper). Every host of the front door must use the same pepper.

  sluice tenants create acme --data sluice-data
  sluice tenants keys create acme --scope ingest --name ci --data sluice-data
  sluice tenants keys list acme --data sluice-data
  sluice tenants keys revoke acme KEY_ID --data sluice-data";

#[derive(Debug, Args)]
pub struct TenantsArgs {
    #[command(flatten)]
    store: KeyStoreArgs,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: TenantsCommand,
}

#[derive(Debug, Subcommand)]
enum TenantsCommand {
    /// Record a new tenant.
    Create {
        /// 1-64 characters of [A-Za-z0-9._-].
        tenant: String,
    },
    /// List the tenants.
    List,
    /// A tenant's API keys: create, list, revoke.
    Keys(keys::KeysArgs),
    /// Show or set a tenant's limits (sandbox budget, rules, state, per-window caps, ingest
    /// quota).
    Limits(limits::LimitsArgs),
}

pub fn run(args: TenantsArgs) -> anyhow::Result<()> {
    let runtime = crate::stores::runtime()?;
    runtime.block_on(async {
        if let TenantsCommand::Limits(limits_args) = args.command {
            // Limits need the store, not the key pepper.
            let store = args.store.blob_store().await?;
            return limits::run(store.as_ref(), limits_args, args.json).await;
        }
        let keys = args.store.open().await?;
        match args.command {
            TenantsCommand::Create { tenant } => {
                let record = keys.create_tenant(&tenant).await?;
                if args.json {
                    println!("{}", serde_json::to_string(&record)?);
                } else {
                    println!("created tenant {} at {}", record.tenant, record.created_at);
                }
            }
            TenantsCommand::List => {
                let tenants = keys.tenants().await?;
                if args.json {
                    println!("{}", serde_json::to_string(&tenants)?);
                } else {
                    let mut table = report::table(&["tenant", "created"]);
                    for t in &tenants {
                        table.add_row(vec![t.tenant.clone(), t.created_at.clone()]);
                    }
                    println!("{table}");
                }
            }
            TenantsCommand::Keys(keys_args) => keys::run(&keys, keys_args, args.json).await?,
            TenantsCommand::Limits(_) => {}
        }
        Ok(())
    })
}
