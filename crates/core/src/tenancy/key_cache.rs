//! The front door's cache of key records: each key id looked up is kept for at most
//! [`KeyCache::ttl`] (60 s by default), so a revocation reaches every warm instance within that
//! time; unknown ids are kept for a shorter time, so a flood of made-up keys costs one store
//! read per id and interval rather than one per request. The secret is checked against the
//! cached hash on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::keys::{AuthError, KeyRecord, KeyStore, Principal, parse_token};

/// Entries kept at most; past it the cache starts afresh (a flood of distinct ids cannot grow
/// it without bound).
const MAX_ENTRIES: usize = 50_000;

/// Looked-up keys, shared by every request of a process.
#[derive(Debug)]
pub struct KeyCache {
    keys: KeyStore,
    ttl: Duration,
    miss_ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Option<KeyRecord>)>>,
}

impl KeyCache {
    /// The longest a revoked key may still be accepted by a warm instance.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
    /// How long an unknown key id is remembered as unknown.
    pub const DEFAULT_MISS_TTL: Duration = Duration::from_secs(5);

    pub fn new(keys: KeyStore) -> Self {
        Self::with_ttl(keys, Self::DEFAULT_TTL, Self::DEFAULT_MISS_TTL)
    }

    /// A cache with other lifetimes (capped at [`Self::DEFAULT_TTL`]).
    pub fn with_ttl(keys: KeyStore, ttl: Duration, miss_ttl: Duration) -> Self {
        Self {
            keys,
            ttl: ttl.min(Self::DEFAULT_TTL),
            miss_ttl: miss_ttl.min(Self::DEFAULT_TTL),
            entries: Mutex::default(),
        }
    }

    /// How long a looked-up key is trusted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn cached(&self, key_id: &str, now: Instant) -> Option<Option<KeyRecord>> {
        let entries = self.entries.lock().ok()?;
        let (at, record) = entries.get(key_id)?;
        let ttl = if record.is_some() {
            self.ttl
        } else {
            self.miss_ttl
        };
        (now.duration_since(*at) < ttl).then(|| record.clone())
    }

    fn remember(&self, key_id: &str, now: Instant, record: Option<KeyRecord>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key_id.to_owned(), (now, record));
        }
    }

    /// Authenticates a token: its record from the cache or the store, then the secret checked.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let (key_id, _) = parse_token(token).ok_or(AuthError::Malformed)?;
        let now = Instant::now();
        let record = match self.cached(key_id, now) {
            Some(record) => record,
            None => {
                let record = self
                    .keys
                    .key_record(key_id)
                    .await
                    .map_err(|e| AuthError::Unavailable(e.to_string()))?;
                self.remember(key_id, now, record.clone());
                record
            }
        };
        self.keys.check(token, record.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalDirStore;
    use crate::tenancy::keys::{KeyError, Pepper, Scope};

    fn setup(dir: &std::path::Path, ttl: Duration) -> Result<(KeyStore, KeyCache), KeyError> {
        let keys = KeyStore::new(
            std::sync::Arc::new(LocalDirStore::new(dir)),
            Pepper::from_text("a pepper of enough bytes")?,
        );
        let cache = KeyCache::with_ttl(keys.clone(), ttl, ttl);
        Ok((keys, cache))
    }

    #[tokio::test]
    async fn a_revocation_is_seen_once_the_entry_expires() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let (keys, cache) = setup(dir.path(), Duration::ZERO)?;
        keys.create_tenant("acme").await?;
        let new = keys.create_key("acme", Scope::Ingest, None).await?;
        assert!(cache.authenticate(&new.token).await.is_ok());
        keys.revoke_key("acme", &new.record.key_id).await?;
        assert_eq!(
            cache.authenticate(&new.token).await,
            Err(AuthError::Revoked)
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_cached_key_is_served_without_the_store_within_its_ttl()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (keys, cache) = setup(dir.path(), Duration::from_secs(60))?;
        keys.create_tenant("acme").await?;
        let new = keys.create_key("acme", Scope::Ingest, None).await?;
        assert!(cache.authenticate(&new.token).await.is_ok());
        // The store is gone; the cached record still answers, and still checks the secret.
        drop(dir);
        assert!(cache.authenticate(&new.token).await.is_ok());
        let forged = format!("slk_{}_{}", new.record.key_id, "0".repeat(64));
        assert_eq!(cache.authenticate(&forged).await, Err(AuthError::Mismatch));
        Ok(())
    }

    #[test]
    fn the_ttl_never_exceeds_a_minute() -> Result<(), KeyError> {
        let keys = KeyStore::new(
            std::sync::Arc::new(LocalDirStore::new("/nonexistent")),
            Pepper::from_text("a pepper of enough bytes")?,
        );
        let cache = KeyCache::with_ttl(keys, Duration::from_secs(3600), Duration::from_secs(1));
        assert_eq!(cache.ttl(), Duration::from_secs(60));
        Ok(())
    }
}
