//! Checkpoints: one small JSON file per mapping and shard in the state directory,
//! `<mapping>--<shard>.json`, replaced atomically (write a temporary file, flush it to disk,
//! rename it over the old one) and only after the records up to its sequence number were
//! processed or sent to the on-failure destination.
//!
//! A restart opens the shard `AFTER_SEQUENCE_NUMBER` of the checkpoint: nothing done is
//! delivered again, and a batch in flight at a crash is delivered again (at least once).
//!
//! Tumbling windows: the open window and its state are saved in the same file, in the same
//! write as the sequence number they include, so a restart carries on the window exactly where
//! it stopped (rather than replaying from the window's start).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::LocalError;
use crate::tumbling_window::OpenWindow;

/// Where a mapping is in one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub mapping: String,
    pub shard_id: String,
    /// The last record done; `None` when nothing has been done yet.
    pub sequence_number: Option<String>,
    /// The shard was closed (reshard) and read to its end: its children may start.
    #[serde(default)]
    pub shard_finished: bool,
    /// The open tumbling window, with the state that covers the records up to
    /// `sequence_number`.
    #[serde(default)]
    pub window: Option<OpenWindow>,
    /// The end of the last tumbling window closed. A record that arrives before it (arrival
    /// times tie, and emulators report a page as caught up while its tied records are still
    /// unread) joins the next window: a window is never opened, and its partials written, twice.
    #[serde(default)]
    pub closed_through_ms: Option<i64>,
    /// When it was written (RFC 3339), for people reading the file.
    #[serde(default)]
    pub updated_at: String,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    /// Uses (and creates) `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, LocalError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| LocalError::Checkpoint {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of a mapping's shard.
    pub fn path(&self, mapping: &str, shard_id: &str) -> PathBuf {
        let safe = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        self.dir
            .join(format!("{}--{}.json", safe(mapping), safe(shard_id)))
    }

    /// The checkpoint of a mapping's shard, if one was written.
    pub fn load(&self, mapping: &str, shard_id: &str) -> Result<Option<Checkpoint>, LocalError> {
        let path = self.path(mapping, shard_id);
        let body = match std::fs::read(&path) {
            Ok(body) => body,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LocalError::Checkpoint { path, source }),
        };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| LocalError::CorruptCheckpoint {
                path,
                detail: e.to_string(),
            })
    }

    /// Replaces the checkpoint atomically.
    pub fn save(&self, checkpoint: &Checkpoint) -> Result<(), LocalError> {
        let path = self.path(&checkpoint.mapping, &checkpoint.shard_id);
        let io = |source| LocalError::Checkpoint {
            path: path.clone(),
            source,
        };
        let mut stamped = checkpoint.clone();
        stamped.updated_at = sluice_core::normalize::timestamp::format_rfc3339_ms(
            chrono::Utc::now().timestamp_millis(),
        );
        let body = serde_json::to_vec_pretty(&stamped)
            .map_err(std::io::Error::from)
            .map_err(io)?;
        // A name of its own per write, so that two writers never share a temporary file.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("json.{}-{n}.tmp", std::process::id()));
        {
            let mut file = std::fs::File::create(&tmp).map_err(io)?;
            file.write_all(&body).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_checkpoint_reads_back_and_replaces_the_old_one() -> Result<(), LocalError> {
        let dir = tempfile::tempdir().map_err(|source| LocalError::Checkpoint {
            path: PathBuf::from("tempdir"),
            source,
        })?;
        let store = CheckpointStore::open(dir.path().join("state"))?;
        assert_eq!(store.load("ingest", "shardId-000000000000")?, None);
        let mut cp = Checkpoint {
            mapping: "ingest".into(),
            shard_id: "shardId-000000000000".into(),
            sequence_number: Some(
                "49590338271490256608559692538361571095921575989136588898".into(),
            ),
            ..Checkpoint::default()
        };
        store.save(&cp)?;
        cp.sequence_number =
            Some("49590338271490256608559692538361571095921575989136588899".into());
        cp.window = Some(OpenWindow {
            start_ms: 60_000,
            end_ms: 120_000,
            state: [("partials".to_owned(), "H4sI".to_owned())].into(),
        });
        store.save(&cp)?;
        let back = store
            .load("ingest", "shardId-000000000000")?
            .expect("saved");
        assert_eq!(back.sequence_number, cp.sequence_number);
        assert_eq!(back.window, cp.window);
        assert!(!back.updated_at.is_empty());
        let files: Vec<_> = std::fs::read_dir(store.dir())
            .map_err(|source| LocalError::Checkpoint {
                path: store.dir().into(),
                source,
            })?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            files,
            vec!["ingest--shardId-000000000000.json".to_owned()],
            "no temporary file left"
        );
        Ok(())
    }

    #[test]
    fn a_corrupt_checkpoint_is_an_error_naming_the_file() -> Result<(), LocalError> {
        let dir = tempfile::tempdir().map_err(|source| LocalError::Checkpoint {
            path: PathBuf::from("tempdir"),
            source,
        })?;
        let store = CheckpointStore::open(dir.path())?;
        std::fs::write(store.path("aggregate", "s"), b"{not json").map_err(|source| {
            LocalError::Checkpoint {
                path: store.path("aggregate", "s"),
                source,
            }
        })?;
        let err = store.load("aggregate", "s").expect_err("corrupt");
        assert!(err.to_string().contains("aggregate--s.json"), "{err}");
        Ok(())
    }
}
