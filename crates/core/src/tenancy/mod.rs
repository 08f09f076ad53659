//! Tenants and their credentials (docs/ARCHITECTURE.md §8): who a request is, decided once at
//! the front door and stamped on every record it brings.
//!
//! - [`keys`]: tenant records, API keys (`slk_<key_id>_<secret>`, stored only as a keyed hash)
//!   and their scopes, over the [`crate::store::BlobStore`] port;
//! - [`key_cache`]: the front door's view of the key store: looked-up keys (and misses) kept
//!   for at most a minute, so a revocation reaches warm instances within 60 s;
//! - [`limits`]: what operators allow each tenant (sandbox budget, rules, state, per-window
//!   caps, ingest quota), at `control/tenants/<tenant>/limits.json` (docs/ARCHITECTURE.md §10);
//! - [`rule_registry`]: where the registry records each rule's versions and its active one,
//!   and what counts against `max_rules`.

pub mod key_cache;
pub mod keys;
pub mod limits;
pub mod rule_registry;

pub use key_cache::KeyCache;
pub use keys::{
    AuthError, KeyError, KeyRecord, KeyStore, NewKey, Pepper, Principal, Scope, TenantRecord,
};
