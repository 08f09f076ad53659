//! Where precompiled rules are kept, keyed by engine fingerprint.
//!
//! The rules bucket (S3, or a local directory for the embedded default) holds:
//! - `rules/<tenant>/<rule>/module.wasm` and `rule.toml`: written by tenants;
//! - `compiled/<fingerprint>/<tenant>/<rule>.cwasm`: written only by the registry, after
//!   validating the module. The fingerprint in the path means a new wasmtime version or
//!   configuration never picks up stale code: it finds nothing and recompiles.
//!
//! [`ArtifactCache`] implements the `compiled/` side on a local directory, and remembers
//! which module each artifact came from (its SHA-256), so a re-uploaded module is recompiled,
//! and the artifact's own SHA-256, so an artifact changed on disk is never loaded
//! (docs/ARCHITECTURE.md §10).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::artifact::TrustedArtifact;
use crate::error::RuleError;
use crate::host::{Host, LoadedRule};

/// A tenant and one of its rules, both safe to use as path segments and key parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId {
    tenant: String,
    rule: String,
}

/// A tenant or rule name that cannot be a path segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {what} name `{name}`: use 1 to 128 letters, digits, `-`, `_` or `.`, not starting with `.`"
)]
pub struct InvalidName {
    what: &'static str,
    name: String,
}

fn check_name(what: &'static str, name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(InvalidName {
            what,
            name: name.chars().take(140).collect(),
        })
    }
}

impl RuleId {
    /// Checks both names.
    pub fn new(tenant: &str, rule: &str) -> Result<RuleId, InvalidName> {
        check_name("tenant", tenant)?;
        check_name("rule", rule)?;
        Ok(RuleId {
            tenant: tenant.to_string(),
            rule: rule.to_string(),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// `rules/<tenant>/<rule>/module.wasm`: the tenant's upload.
    pub fn module_key(&self) -> String {
        format!("rules/{}/{}/module.wasm", self.tenant, self.rule)
    }

    /// `rules/<tenant>/<rule>/rule.toml`: the upload's manifest.
    pub fn manifest_key(&self) -> String {
        format!("rules/{}/{}/rule.toml", self.tenant, self.rule)
    }

    /// `compiled/<fingerprint>/<tenant>/<rule>.cwasm`: the registry's precompiled code.
    pub fn compiled_key(&self, fingerprint: &str) -> String {
        format!("compiled/{fingerprint}/{}/{}.cwasm", self.tenant, self.rule)
    }
}

/// The hex SHA-256 of a module, to tell whether an artifact was compiled from it.
pub fn module_digest(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// A local cache failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("artifact cache: {0}")]
    Io(String),
    #[error(transparent)]
    Rule(#[from] RuleError),
}

/// Precompiled rules in a local directory laid out like the rules bucket
/// (`<root>/compiled/<fingerprint>/<tenant>/<rule>.cwasm`). The directory must be writable
/// by this process (or the registry) only, never by tenants: what it holds runs as native
/// code.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    root: PathBuf,
}

impl ArtifactCache {
    pub fn new(root: impl Into<PathBuf>) -> ArtifactCache {
        ArtifactCache { root: root.into() }
    }

    /// Where the artifact of `id` for `fingerprint` lives.
    pub fn path(&self, fingerprint: &str, id: &RuleId) -> PathBuf {
        self.root.join(id.compiled_key(fingerprint))
    }

    fn digest_path(artifact: &Path) -> PathBuf {
        artifact.with_extension("cwasm.sha256")
    }

    /// The artifact of `id` for the host's engine, if it was compiled from `wasm` and is
    /// byte for byte what was put (its SHA-256 is the recorded one).
    pub fn get(
        &self,
        host: &Host,
        id: &RuleId,
        wasm: &[u8],
    ) -> Result<Option<TrustedArtifact>, CacheError> {
        let path = self.path(host.fingerprint(), id);
        let recorded = match fs::read_to_string(Self::digest_path(&path)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, e)),
        };
        let mut lines = recorded.lines();
        let (Some(module), Some(artifact_digest)) = (lines.next(), lines.next()) else {
            return Ok(None);
        };
        if module.trim() != module_digest(wasm) {
            return Ok(None);
        }
        match fs::read(&path) {
            Ok(bytes) => {
                match TrustedArtifact::from_verified_store(
                    host.fingerprint(),
                    bytes,
                    artifact_digest.trim(),
                ) {
                    Ok(artifact) => Ok(Some(artifact)),
                    Err(mismatch) => {
                        tracing::error!(path = %path.display(), %mismatch,
                            "cached artifact changed since it was written; not loading it");
                        Ok(None)
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// Stores an artifact compiled from `wasm` (atomically: a reader never sees half of it).
    pub fn put(
        &self,
        id: &RuleId,
        wasm: &[u8],
        artifact: &TrustedArtifact,
    ) -> Result<PathBuf, CacheError> {
        let path = self.path(artifact.fingerprint(), id);
        write_atomically(&path, artifact.bytes())?;
        let digests = format!(
            "{}\n{}\n",
            module_digest(wasm),
            crate::accepted::sha256_hex(artifact.bytes())
        );
        write_atomically(&Self::digest_path(&path), digests.as_bytes())?;
        Ok(path)
    }

    /// Loads `id` from its cached artifact if it was compiled from `wasm` by this engine;
    /// otherwise compiles `wasm` (checking it), caches the artifact, and returns the rule.
    /// An artifact that no longer loads is replaced.
    pub fn load_or_compile(
        &self,
        host: &Host,
        id: &RuleId,
        wasm: &[u8],
    ) -> Result<LoadedRule, CacheError> {
        if let Some(artifact) = self.get(host, id, wasm)? {
            match host.load_precompiled(&artifact) {
                Ok(rule) => return Ok(rule),
                Err(e) => tracing::warn!(tenant = id.tenant(), rule = id.rule(), error = %e,
                    "cached artifact does not load; recompiling"),
            }
        }
        let rule = host.load(wasm)?;
        self.put(id, wasm, &rule.artifact()?)?;
        Ok(rule)
    }
}

fn io_error(path: &Path, e: std::io::Error) -> CacheError {
    CacheError::Io(format!("{}: {e}", path.display()))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let dir = path
        .parent()
        .ok_or_else(|| CacheError::Io(format!("{} has no parent", path.display())))?;
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io_error(&tmp, e))?;
    f.sync_all().map_err(|e| io_error(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_safe_path_segments() {
        assert!(RuleId::new("acme", "high-error-rate_v2.1").is_ok());
        for bad in ["", "..", ".hidden", "a/b", "a b", "ünï"] {
            assert!(RuleId::new(bad, "r").is_err(), "{bad:?}");
            assert!(RuleId::new("t", bad).is_err(), "{bad:?}");
        }
        assert!(RuleId::new(&"x".repeat(129), "r").is_err());
    }

    #[test]
    fn keys_follow_the_bucket_layout() {
        let id = RuleId::new("acme", "errors").expect("valid");
        assert_eq!(id.module_key(), "rules/acme/errors/module.wasm");
        assert_eq!(id.manifest_key(), "rules/acme/errors/rule.toml");
        assert_eq!(
            id.compiled_key("x86_64-ab"),
            "compiled/x86_64-ab/acme/errors.cwasm"
        );
    }
}
