//! `sluice tenants keys create|list|revoke`.

use clap::{Args, Subcommand};
use sluice_core::tenancy::{KeyStore, NewKey, Scope};

use crate::report;

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a key; it is printed once and never stored in clear.
    Create {
        tenant: String,
        /// What the key may do: ingest (send records), rules, or admin (everything).
        #[arg(long, default_value = "ingest")]
        scope: Scope,
        /// A name to recognise the key by.
        #[arg(long)]
        name: Option<String>,
    },
    /// List a tenant's keys (ids, scopes, names, dates; never secrets).
    List { tenant: String },
    /// Revoke a key: warm front doors stop accepting it within 60 s.
    Revoke { tenant: String, key_id: String },
}

pub async fn run(keys: &KeyStore, args: KeysArgs, json: bool) -> anyhow::Result<()> {
    match args.command {
        KeysCommand::Create {
            tenant,
            scope,
            name,
        } => {
            let new = keys.create_key(&tenant, scope, name.as_deref()).await?;
            if json {
                let mut value = serde_json::to_value(&new.record)?;
                value["token"] = new.token.clone().into();
                if let Some(map) = value.as_object_mut() {
                    map.remove("hash");
                }
                println!("{value}");
            } else {
                println!("{}", shown_once(&new));
            }
        }
        KeysCommand::List { tenant } => {
            let records = keys.list_keys(&tenant).await?;
            if json {
                let listed: Vec<serde_json::Value> = records
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "key_id": r.key_id, "tenant": r.tenant, "scope": r.scope,
                            "name": r.name, "created_at": r.created_at, "revoked_at": r.revoked_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::from(listed));
            } else {
                let mut table = report::table(&["key id", "scope", "name", "created", "revoked"]);
                for r in &records {
                    table.add_row(vec![
                        r.key_id.clone(),
                        r.scope.to_string(),
                        r.name.clone().unwrap_or_default(),
                        r.created_at.clone(),
                        r.revoked_at.clone().unwrap_or_else(|| "-".into()),
                    ]);
                }
                println!("{table}");
            }
        }
        KeysCommand::Revoke { tenant, key_id } => {
            let record = keys.revoke_key(&tenant, &key_id).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"key_id": record.key_id, "revoked_at": record.revoked_at})
                );
            } else {
                println!(
                    "revoked key {} of tenant {} at {} (front doors stop accepting it within 60 s)",
                    record.key_id,
                    record.tenant,
                    record.revoked_at.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

/// A new key as it is shown, once: its id, tenant and scope, and the key itself.
pub fn shown_once(new: &NewKey) -> String {
    format!(
        "created key {} for tenant {} (scope {})\n\n  {}\n\nThis is the only time the key is shown: keep it in a secret store.",
        new.record.key_id, new.record.tenant, new.record.scope, new.token
    )
}
