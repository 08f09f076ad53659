//! Tenant records and API keys, stored through the [`BlobStore`] port in the rules/config
//! bucket (docs/ARCHITECTURE.md §8):
//!
//! - `control/tenants/<tenant>/tenant.json`: the tenant ([`TenantRecord`]);
//! - `control/keys/<key_id>.json`: one key ([`KeyRecord`]), the index the front door looks a
//!   presented key up in.
//!
//! A key is `slk_<key_id>_<secret>`: a 64-bit public id (16 hex digits) and a 256-bit secret
//! (64 hex digits) from the operating system's random source. It is shown once, when it is
//! made; the store keeps only HMAC-SHA256 of the whole key under the operator's [`Pepper`], so
//! a copy of the bucket gives no usable key. Checks compare the hash in constant time.

use std::path::Path;

use bytes::Bytes;
use hmac::{KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};

use crate::error::RejectReason;
use crate::normalize::{timestamp::format_rfc3339_ms, validate_name};
use crate::store::{BlobStore, Precondition, StoreError};

/// The prefix of every key token.
pub const TOKEN_PREFIX: &str = "slk_";
/// Where key records live.
pub const KEYS_PREFIX: &str = "control/keys/";
/// Where tenant records live.
pub const TENANTS_PREFIX: &str = "control/tenants/";

const KEY_ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// What a key may do. `admin` implies every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send records.
    #[default]
    Ingest,
    /// Manage the tenant's alert rules.
    Rules,
    /// Everything the tenant may do.
    Admin,
}

impl Scope {
    /// Whether a key of this scope may do what `needed` guards.
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::Admin || self == needed
    }

    /// The scope's name, as stored and typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Rules => "rules",
            Scope::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ingest" => Ok(Scope::Ingest),
            "rules" => Ok(Scope::Rules),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "unknown scope {other:?}: use ingest, rules or admin"
            )),
        }
    }
}

/// A tenant, as `control/tenants/<tenant>/tenant.json` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub tenant: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// One key, as `control/keys/<key_id>.json` holds it. The secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub tenant: String,
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Hex HMAC-SHA256 of the whole key under the pepper.
    pub hash: String,
    /// When the key was revoked (RFC 3339, UTC); a revoked key authenticates nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// A key just made: the token (shown once, never stored) and its record.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub token: String,
    pub record: KeyRecord,
}

/// Who a request is, once its key checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    pub key_id: String,
    pub scope: Scope,
}

/// The operator's secret that keys are hashed under: without it a stored hash is useless.
/// Its bytes never appear in `Debug` output or logs.
#[derive(Clone)]
pub struct Pepper(Vec<u8>);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

impl Pepper {
    /// The least a pepper must hold.
    pub const MIN_BYTES: usize = 16;

    /// A pepper from its text (as `SLUICE_KEY_PEPPER` or the secret holds it; surrounding
    /// whitespace is ignored).
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.len() < Self::MIN_BYTES {
            return Err(KeyError::WeakPepper {
                len: text.len(),
                min: Self::MIN_BYTES,
            });
        }
        Ok(Self(text.as_bytes().to_vec()))
    }

    /// The pepper in `path`; when there is no such file, a new random one written there
    /// (readable by its owner only). The embedded default's pepper when none is given.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::PepperFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::from_text(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let text = random_hex(32)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        write_private(path, text.as_bytes()).map_err(io)?;
        tracing::info!(path = %path.display(), "generated a new key pepper");
        Self::from_text(&text)
    }

    fn hash(&self, token: &str) -> hmac::Hmac<sha2::Sha256> {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| hmac::Hmac::<sha2::Sha256>::new(&Default::default()));
        mac.update(token.as_bytes());
        mac
    }

    /// The stored form of a key: hex HMAC-SHA256 of the whole token.
    pub fn hash_hex(&self, token: &str) -> String {
        hex::encode(self.hash(token).finalize().into_bytes())
    }

    /// Whether `token` hashes to `stored_hex`, compared in constant time.
    pub fn verify(&self, token: &str, stored_hex: &str) -> bool {
        let Ok(stored) = hex::decode(stored_hex) else {
            return false;
        };
        self.hash(token).verify_slice(&stored).is_ok()
    }
}

fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(body)?;
    file.sync_all()
}

/// `bytes` random bytes from the operating system, as hex.
fn random_hex(bytes: usize) -> Result<String, KeyError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// Splits a token into its key id and secret, if it has the shape of one.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex_of = |s: &str, len| s.len() == len && s.bytes().all(|c| c.is_ascii_hexdigit());
    (hex_of(id, KEY_ID_HEX) && hex_of(secret, SECRET_HEX)).then_some((id, secret))
}

/// Failures of the key store.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    InvalidName(#[from] RejectReason),
    #[error("tenant {0:?} already exists")]
    TenantExists(String),
    #[error("no tenant {0:?}: create it first (sluice tenants create {0})")]
    NoSuchTenant(String),
    #[error("tenant {tenant:?} has no key {key_id:?}")]
    NoSuchKey { tenant: String, key_id: String },
    #[error("{key} is not a valid record: {detail}")]
    Corrupt { key: String, detail: String },
    #[error("the key pepper has {len} bytes; it needs at least {min}")]
    WeakPepper { len: usize, min: usize },
    #[error("key pepper file {path}: {source}")]
    PepperFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no random bytes from the operating system: {0}")]
    Random(String),
}

/// Why a presented key was not accepted. Responses say only "invalid key"; the variant is for
/// logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no key presented")]
    Missing,
    #[error("the key is not of the form slk_<id>_<secret>")]
    Malformed,
    #[error("unknown key id")]
    Unknown,
    #[error("the key does not match its record")]
    Mismatch,
    #[error("the key was revoked")]
    Revoked,
    /// The store could not be read: the key may be fine (answer 503, not 401).
    #[error("key store unavailable: {0}")]
    Unavailable(String),
}

/// Tenants and keys over a blob store.
#[derive(Debug, Clone)]
pub struct KeyStore {
    store: std::sync::Arc<dyn BlobStore>,
    pepper: Pepper,
}

fn now_rfc3339() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    format_rfc3339_ms(ms)
}

fn tenant_key(tenant: &str) -> String {
    format!("{TENANTS_PREFIX}{tenant}/tenant.json")
}

fn key_record_key(key_id: &str) -> String {
    format!("{KEYS_PREFIX}{key_id}.json")
}

fn to_json<T: Serialize>(value: &T) -> Bytes {
    // Serialising these plain structs cannot fail.
    Bytes::from(serde_json::to_vec_pretty(value).unwrap_or_default())
}

impl KeyStore {
    pub fn new(store: std::sync::Arc<dyn BlobStore>, pepper: Pepper) -> Self {
        Self { store, pepper }
    }

    /// Records a new tenant; fails if it exists.
    pub async fn create_tenant(&self, tenant: &str) -> Result<TenantRecord, KeyError> {
        validate_name("tenant", tenant)?;
        let record = TenantRecord {
            tenant: tenant.to_owned(),
            created_at: now_rfc3339(),
        };
        let put = self
            .store
            .put_if(
                &tenant_key(tenant),
                to_json(&record),
                "application/json",
                Precondition::Absent,
            )
            .await;
        match put {
            Ok(()) => Ok(record),
            Err(StoreError::PreconditionFailed { .. }) => {
                Err(KeyError::TenantExists(tenant.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The tenant's record, if it exists.
    pub async fn tenant(&self, tenant: &str) -> Result<Option<TenantRecord>, KeyError> {
        validate_name("tenant", tenant)?;
        let key = tenant_key(tenant);
        self.store
            .get(&key)
            .await?
            .map(|body| parse(&key, &body))
            .transpose()
    }

    /// Every tenant, sorted.
    pub async fn tenants(&self) -> Result<Vec<TenantRecord>, KeyError> {
        let mut out = Vec::new();
        for key in self.store.list(TENANTS_PREFIX).await? {
            if key.ends_with("/tenant.json")
                && let Some(body) = self.store.get(&key).await?
            {
                out.push(parse(&key, &body)?);
            }
        }
        Ok(out)
    }

    /// Makes a key for an existing tenant. The token in the answer is the only copy.
    pub async fn create_key(
        &self,
        tenant: &str,
        scope: Scope,
        name: Option<&str>,
    ) -> Result<NewKey, KeyError> {
        if self.tenant(tenant).await?.is_none() {
            return Err(KeyError::NoSuchTenant(tenant.to_owned()));
        }
        loop {
            let key_id = random_hex(KEY_ID_HEX / 2)?;
            let token = format!("{TOKEN_PREFIX}{key_id}_{}", random_hex(SECRET_HEX / 2)?);
            let record = KeyRecord {
                key_id: key_id.clone(),
                tenant: tenant.to_owned(),
                scope,
                name: name.map(str::to_owned),
                created_at: now_rfc3339(),
                hash: self.pepper.hash_hex(&token),
                revoked_at: None,
            };
            let put = self
                .store
                .put_if(
                    &key_record_key(&key_id),
                    to_json(&record),
                    "application/json",
                    Precondition::Absent,
                )
                .await;
            match put {
                Ok(()) => {
                    tracing::info!(tenant, key_id, %scope, "created a tenant key");
                    return Ok(NewKey { token, record });
                }
                // A 64-bit id taken already: draw another.
                Err(StoreError::PreconditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The tenant's keys, revoked ones included, oldest first.
    pub async fn list_keys(&self, tenant: &str) -> Result<Vec<KeyRecord>, KeyError> {
        validate_name("tenant", tenant)?;
        let mut out = Vec::new();
        for key in self.store.list(KEYS_PREFIX).await? {
            if let Some(body) = self.store.get(&key).await? {
                let record: KeyRecord = parse(&key, &body)?;
                if record.tenant == tenant {
                    out.push(record);
                }
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(out)
    }

    /// Revokes one of the tenant's keys (revoking twice keeps the first time).
    pub async fn revoke_key(&self, tenant: &str, key_id: &str) -> Result<KeyRecord, KeyError> {
        let missing = || KeyError::NoSuchKey {
            tenant: tenant.to_owned(),
            key_id: key_id.to_owned(),
        };
        if key_id.len() != KEY_ID_HEX || !key_id.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(missing());
        }
        let key = key_record_key(key_id);
        let Some((body, etag)) = self.store.get_versioned(&key).await? else {
            return Err(missing());
        };
        let mut record: KeyRecord = parse(&key, &body)?;
        if record.tenant != tenant {
            return Err(missing());
        }
        if record.revoked_at.is_none() {
            record.revoked_at = Some(now_rfc3339());
            self.store
                .put_if(
                    &key,
                    to_json(&record),
                    "application/json",
                    Precondition::Matches(etag),
                )
                .await?;
            tracing::info!(tenant, key_id, "revoked a tenant key");
        }
        Ok(record)
    }

    /// The record of a key id, straight from the store.
    pub async fn key_record(&self, key_id: &str) -> Result<Option<KeyRecord>, KeyError> {
        let key = key_record_key(key_id);
        self.store
            .get(&key)
            .await?
            .map(|body| parse(&key, &body))
            .transpose()
    }

    /// Checks a presented token against a record of its key id.
    pub fn check(&self, token: &str, record: Option<&KeyRecord>) -> Result<Principal, AuthError> {
        let record = record.ok_or(AuthError::Unknown)?;
        if !self.pepper.verify(token, &record.hash) {
            return Err(AuthError::Mismatch);
        }
        if record.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        Ok(Principal {
            tenant: record.tenant.clone(),
            key_id: record.key_id.clone(),
            scope: record.scope,
        })
    }

    /// Authenticates a token against the store (no cache: see [`super::KeyCache`]).
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let (key_id, _) = parse_token(token).ok_or(AuthError::Malformed)?;
        let record = self
            .key_record(key_id)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        self.check(token, record.as_ref())
    }
}

fn parse<T: for<'de> Deserialize<'de>>(key: &str, body: &[u8]) -> Result<T, KeyError> {
    serde_json::from_slice(body).map_err(|e| KeyError::Corrupt {
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalDirStore;

    fn io(source: std::io::Error) -> KeyError {
        KeyError::PepperFile {
            path: "test".into(),
            source,
        }
    }

    fn store(dir: &Path) -> Result<KeyStore, KeyError> {
        Ok(KeyStore::new(
            std::sync::Arc::new(LocalDirStore::new(dir)),
            Pepper::from_text("a pepper of enough bytes")?,
        ))
    }

    #[tokio::test]
    async fn a_new_key_authenticates_as_its_tenant_and_scope() -> Result<(), KeyError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let keys = store(dir.path())?;
        keys.create_tenant("acme").await?;
        let new = keys.create_key("acme", Scope::Ingest, Some("ci")).await?;
        assert!(parse_token(&new.token).is_some(), "{}", new.token);
        let who = keys.authenticate(&new.token).await;
        assert_eq!(
            who,
            Ok(Principal {
                tenant: "acme".into(),
                key_id: new.record.key_id.clone(),
                scope: Scope::Ingest
            })
        );
        Ok(())
    }

    #[tokio::test]
    async fn the_secret_is_never_stored_in_clear() -> Result<(), KeyError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let keys = store(dir.path())?;
        keys.create_tenant("acme").await?;
        let new = keys.create_key("acme", Scope::Admin, None).await?;
        let secret = new.token.rsplit('_').next().unwrap_or_default().to_owned();
        let raw = std::fs::read_to_string(
            dir.path()
                .join(format!("control/keys/{}.json", new.record.key_id)),
        )
        .map_err(io)?;
        assert!(!raw.contains(&secret), "{raw}");
        assert!(!raw.contains(&new.token), "{raw}");
        Ok(())
    }

    #[tokio::test]
    async fn rejects_a_forged_secret_and_a_revoked_key() -> Result<(), KeyError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let keys = store(dir.path())?;
        keys.create_tenant("acme").await?;
        let new = keys.create_key("acme", Scope::Ingest, None).await?;
        let forged = format!(
            "{TOKEN_PREFIX}{}_{}",
            new.record.key_id,
            "0".repeat(SECRET_HEX)
        );
        assert_eq!(keys.authenticate(&forged).await, Err(AuthError::Mismatch));
        assert_eq!(
            keys.authenticate("slk_nothex_x").await,
            Err(AuthError::Malformed)
        );
        let unknown = format!("{TOKEN_PREFIX}{}_{}", "f".repeat(16), "0".repeat(64));
        assert_eq!(keys.authenticate(&unknown).await, Err(AuthError::Unknown));
        let revoked = keys.revoke_key("acme", &new.record.key_id).await?;
        assert!(revoked.revoked_at.is_some());
        assert_eq!(keys.authenticate(&new.token).await, Err(AuthError::Revoked));
        Ok(())
    }

    #[tokio::test]
    async fn a_key_made_under_another_pepper_does_not_authenticate() -> Result<(), KeyError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let keys = store(dir.path())?;
        keys.create_tenant("acme").await?;
        let new = keys.create_key("acme", Scope::Ingest, None).await?;
        let other = KeyStore::new(
            std::sync::Arc::new(LocalDirStore::new(dir.path())),
            Pepper::from_text("another pepper entirely")?,
        );
        assert_eq!(
            other.authenticate(&new.token).await,
            Err(AuthError::Mismatch)
        );
        Ok(())
    }

    #[tokio::test]
    async fn rejects_revoking_the_key_of_another_tenant() -> Result<(), KeyError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let keys = store(dir.path())?;
        keys.create_tenant("acme").await?;
        keys.create_tenant("globex").await?;
        let new = keys.create_key("acme", Scope::Ingest, None).await?;
        let err = keys.revoke_key("globex", &new.record.key_id).await;
        assert!(matches!(err, Err(KeyError::NoSuchKey { .. })), "{err:?}");
        assert!(keys.authenticate(&new.token).await.is_ok());
        Ok(())
    }

    #[tokio::test]
    async fn lists_only_the_tenants_own_keys() -> Result<(), KeyError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let keys = store(dir.path())?;
        keys.create_tenant("acme").await?;
        keys.create_tenant("globex").await?;
        let a = keys.create_key("acme", Scope::Ingest, Some("a")).await?;
        keys.create_key("globex", Scope::Ingest, None).await?;
        let listed = keys.list_keys("acme").await?;
        assert_eq!(listed, vec![a.record]);
        Ok(())
    }

    #[tokio::test]
    async fn refuses_a_key_for_a_tenant_that_does_not_exist() -> Result<(), KeyError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let keys = store(dir.path())?;
        let err = keys.create_key("nobody", Scope::Ingest, None).await;
        assert!(matches!(err, Err(KeyError::NoSuchTenant(_))), "{err:?}");
        keys.create_tenant("acme").await?;
        let again = keys.create_tenant("acme").await;
        assert!(matches!(again, Err(KeyError::TenantExists(_))), "{again:?}");
        let bad = keys.create_tenant("a/b").await;
        assert!(matches!(bad, Err(KeyError::InvalidName(_))), "{bad:?}");
        Ok(())
    }

    #[test]
    fn admin_implies_every_scope_and_the_others_only_their_own() {
        assert!(Scope::Admin.allows(Scope::Ingest));
        assert!(Scope::Admin.allows(Scope::Rules));
        assert!(Scope::Ingest.allows(Scope::Ingest));
        assert!(!Scope::Ingest.allows(Scope::Rules));
        assert!(!Scope::Rules.allows(Scope::Ingest));
        assert!(!Scope::Ingest.allows(Scope::Admin));
    }

    #[test]
    fn a_generated_pepper_file_is_reused_and_private() -> Result<(), KeyError> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().map_err(io)?;
        let path = dir.path().join("state/key-pepper");
        let first = Pepper::load_or_create(&path)?;
        let second = Pepper::load_or_create(&path)?;
        assert_eq!(first.hash_hex("x"), second.hash_hex("x"));
        let mode = std::fs::metadata(&path).map_err(io)?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(Pepper::from_text("short").is_err());
        Ok(())
    }
}
