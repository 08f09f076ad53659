//! The blob storage port: everything sluice persists goes through [`BlobStore`].
//!
//! Two implementations ship: [`LocalDirStore`] here (the embedded default, a directory with the
//! same key layout as the bucket) and the S3 store in `sluice-aws`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key is not acceptable to the store (empty, absolute, or with `..`).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// Local filesystem failure.
    #[error("local store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A conditional write found the object changed (or present) since it was read.
    #[error("{key} was changed by someone else (precondition failed)")]
    PreconditionFailed { key: String },
    /// A remote backend failed after its own retries.
    #[error("{backend} {op} {key}: {message}")]
    Backend {
        backend: &'static str,
        op: &'static str,
        key: String,
        message: String,
    },
}

/// A version tag of a stored object: S3's ETag, or a content hash for stores without one.
pub type ETag = String;

/// The condition of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Only if no object exists under the key.
    Absent,
    /// Only if the object still has this version.
    Matches(ETag),
}

impl Precondition {
    /// Whether the condition holds for an object whose current version is `current` (`None`:
    /// no object).
    pub fn holds(&self, current: Option<&ETag>) -> bool {
        match (self, current) {
            (Precondition::Absent, None) => true,
            (Precondition::Matches(want), Some(have)) => want == have,
            _ => false,
        }
    }
}

/// The content hash used as a version tag where a store has none of its own.
pub fn content_etag(body: &[u8]) -> ETag {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(body)[..16])
}

/// A key/value blob store with S3 semantics: whole-object writes that replace, prefix listing,
/// and conditional writes for state that more than one writer may touch.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Writes `body` under `key`, replacing any object already there.
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError>;
    /// Reads the object under `key`, or `None` when there is none.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    /// Lists every key that starts with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Deletes `key`; deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Reads an object with its version tag. The default hashes the content.
    async fn get_versioned(&self, key: &str) -> Result<Option<(Bytes, ETag)>, StoreError> {
        Ok(self.get(key).await?.map(|body| {
            let tag = content_etag(&body);
            (body, tag)
        }))
    }

    /// A tag that changes whenever the object under `key` does, without reading its body
    /// (`None` when there is none): for caches of large objects. Comparable only with tags
    /// from this method on the same store. The default reads the object and hashes it.
    async fn head(&self, key: &str) -> Result<Option<ETag>, StoreError> {
        Ok(self.get_versioned(key).await?.map(|(_, tag)| tag))
    }

    /// The size in bytes of the object under `key` (`None` when there is none), without
    /// reading its body (S3's HeadObject): to refuse an object that is too large before
    /// downloading it. The default reads the object.
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.get(key).await?.map(|body| body.len() as u64))
    }

    /// Writes only if `precondition` holds, else fails with [`StoreError::PreconditionFailed`].
    /// The default checks, then writes (not atomic): stores override it with a native version.
    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        precondition: Precondition,
    ) -> Result<(), StoreError> {
        let current = self.get_versioned(key).await?.map(|(_, tag)| tag);
        if !precondition.holds(current.as_ref()) {
            return Err(StoreError::PreconditionFailed {
                key: key.to_owned(),
            });
        }
        self.put(key, body, content_type).await
    }
}

/// The embedded default: objects are files under a root directory, keys are relative paths.
///
/// Writes go to a temporary file that is renamed into place, so readers never see half an object
/// and a crashed write leaves nothing behind under the final key.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
    /// Serialises conditional writes within this process (the embedded default is one process).
    cas: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl LocalDirStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            cas: std::sync::Arc::default(),
        }
    }

    /// The directory this store writes under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_for(&self, key: &str) -> Result<PathBuf, StoreError> {
        let invalid = |reason| StoreError::InvalidKey {
            key: key.to_owned(),
            reason,
        };
        if key.is_empty() {
            return Err(invalid("empty"));
        }
        if key.starts_with('/') {
            return Err(invalid("absolute"));
        }
        if key
            .split('/')
            .any(|part| part == ".." || part == "." || part.is_empty())
        {
            return Err(invalid("empty, '.' or '..' path segment"));
        }
        Ok(self.root.join(key))
    }
}

/// Writes `body` to a temporary file beside `path`, then renames it over `path`: a reader sees
/// the old object or the new one, never part of one.
fn write_replacing(path: &Path, body: &[u8]) -> Result<(), StoreError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", fastrand::u64(..)));
    std::fs::write(&tmp, body).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[async_trait]
impl BlobStore for LocalDirStore {
    async fn put(&self, key: &str, body: Bytes, _content_type: &str) -> Result<(), StoreError> {
        let path = self.path_for(key)?;
        // One blocking task for the whole write, handed the body itself: `tokio::fs::write`
        // would copy it first (fresh memory, so a page fault per 4 KiB of output).
        let written = path.clone();
        tokio::task::spawn_blocking(move || write_replacing(&written, &body))
            .await
            .map_err(|e| StoreError::Io {
                path,
                source: std::io::Error::other(e),
            })?
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path_for(key)?;
        match tokio::fs::read(&path).await {
            Ok(body) => Ok(Some(Bytes::from(body))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Size, modification time and inode: every write replaces the file by a rename, so
    /// any change gives another tag.
    async fn head(&self, key: &str) -> Result<Option<ETag>, StoreError> {
        use std::os::unix::fs::MetadataExt as _;
        let path = self.path_for(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(format!(
                "{}-{}.{}-{}",
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ino()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let path = self.path_for(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // Walk from the deepest directory the prefix names, then filter by the full prefix.
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        let mut keys = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir)(e)),
            };
            while let Some(entry) = entries.next_entry().await.map_err(io_err(&dir))? {
                let path = entry.path();
                let file_type = entry.file_type().await.map_err(io_err(&path))?;
                if file_type.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let key = rel.to_string_lossy().replace('\\', "/");
                if key.contains(".tmp-") {
                    continue;
                }
                if key.starts_with(prefix) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_for(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        precondition: Precondition,
    ) -> Result<(), StoreError> {
        let _guard = self.cas.lock().await;
        let current = self.get_versioned(key).await?.map(|(_, tag)| tag);
        if !precondition.holds(current.as_ref()) {
            return Err(StoreError::PreconditionFailed {
                key: key.to_owned(),
            });
        }
        self.put(key, body, content_type).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_round_trips_and_lists_by_prefix() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(io_err(Path::new("tmp")))?;
        let store = LocalDirStore::new(dir.path());
        store
            .put(
                "logs/tenant=a/x.parquet",
                Bytes::from_static(b"1"),
                "application/octet-stream",
            )
            .await?;
        store
            .put(
                "logs/tenant=b/y.parquet",
                Bytes::from_static(b"22"),
                "application/octet-stream",
            )
            .await?;
        store
            .put("dlq/z.gz", Bytes::from_static(b"3"), "application/gzip")
            .await?;
        assert_eq!(
            store.list("logs/").await?,
            vec!["logs/tenant=a/x.parquet", "logs/tenant=b/y.parquet"]
        );
        assert_eq!(
            store.list("logs/tenant=a").await?,
            vec!["logs/tenant=a/x.parquet"]
        );
        assert_eq!(
            store.get("logs/tenant=b/y.parquet").await?.as_deref(),
            Some(&b"22"[..])
        );
        assert_eq!(store.get("missing").await?, None);
        store.delete("dlq/z.gz").await?;
        store.delete("dlq/z.gz").await?;
        assert!(store.list("dlq/").await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn conditional_writes_refuse_a_stale_version() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(io_err(Path::new("tmp")))?;
        let store = LocalDirStore::new(dir.path());
        store
            .put_if(
                "state.json",
                Bytes::from_static(b"v1"),
                "x",
                Precondition::Absent,
            )
            .await?;
        let again = store
            .put_if(
                "state.json",
                Bytes::from_static(b"v1"),
                "x",
                Precondition::Absent,
            )
            .await;
        assert!(matches!(again, Err(StoreError::PreconditionFailed { .. })));
        let (_, tag) = store
            .get_versioned("state.json")
            .await?
            .ok_or(StoreError::PreconditionFailed { key: "gone".into() })?;
        store
            .put_if(
                "state.json",
                Bytes::from_static(b"v2"),
                "x",
                Precondition::Matches(tag.clone()),
            )
            .await?;
        let stale = store
            .put_if(
                "state.json",
                Bytes::from_static(b"v3"),
                "x",
                Precondition::Matches(tag),
            )
            .await;
        assert!(matches!(stale, Err(StoreError::PreconditionFailed { .. })));
        assert_eq!(store.get("state.json").await?.as_deref(), Some(&b"v2"[..]));
        Ok(())
    }

    #[tokio::test]
    async fn head_tag_changes_when_an_object_is_rewritten() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(io_err(Path::new("tmp")))?;
        let store = LocalDirStore::new(dir.path());
        assert_eq!(store.head("rules/a.cwasm").await?, None);
        store
            .put("rules/a.cwasm", Bytes::from_static(b"v1"), "x")
            .await?;
        let first = store.head("rules/a.cwasm").await?;
        assert!(first.is_some());
        assert_eq!(
            store.head("rules/a.cwasm").await?,
            first,
            "stable while unchanged"
        );
        // Same size, same content even: a rewrite is still a new version.
        store
            .put("rules/a.cwasm", Bytes::from_static(b"v1"), "x")
            .await?;
        assert_ne!(store.head("rules/a.cwasm").await?, first);
        Ok(())
    }

    #[tokio::test]
    async fn size_is_read_without_the_body_and_none_when_absent() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(io_err(Path::new("tmp")))?;
        let store = LocalDirStore::new(dir.path());
        assert_eq!(store.size("rules/a/b/module.wasm").await?, None);
        store
            .put("rules/a/b/module.wasm", Bytes::from(vec![0u8; 1234]), "x")
            .await?;
        assert_eq!(store.size("rules/a/b/module.wasm").await?, Some(1234));
        Ok(())
    }

    #[tokio::test]
    async fn local_store_rejects_keys_that_escape_the_root() {
        let store = LocalDirStore::new("/nonexistent-root");
        for key in ["", "/etc/passwd", "logs/../../etc", "a//b"] {
            let err = store.put(key, Bytes::new(), "x").await;
            assert!(
                matches!(err, Err(StoreError::InvalidKey { .. })),
                "{key}: {err:?}"
            );
        }
    }
}
