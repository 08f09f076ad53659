//! Reading the inputs: stdin (or any reader) to its end, and files the way `tail -F` follows
//! them.
//!
//! Following a file ([`follow_file`]):
//! - it starts at the end of the file (`--from-start`: at the beginning); a file that does not
//!   exist yet is waited for, and read from its beginning once it appears;
//! - at the end of the file it polls: when the path names another file than the one open
//!   (another inode: the file was rotated), it reads the old file to its end, then opens the
//!   new one and reads it from the beginning; when the path is gone, it keeps reading the old
//!   file, which a writer may still hold open;
//! - when the file got shorter than the position read (truncated in place, e.g. logrotate's
//!   `copytruncate`), it starts again from offset 0 and forgets the partial line it held.
//!
//! Without following (`--no-follow`), a file is read once from its beginning to its end.
//! Every reader stops when shutdown is signalled; a last line without a newline is sent as a
//! line when a file or stream ends (or the agent stops).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncSeekExt as _};
use tokio::sync::watch;

use super::lines::{LineSender, LineSplitter, Piece, PipelineClosed};

/// Bytes read per call.
const CHUNK: usize = 64 * 1024;

/// How files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowOptions {
    /// Keep reading at the end of the file (`tail -F`); otherwise stop there.
    pub follow: bool,
    /// Start following at the beginning of a file that exists at start-up, not at its end.
    pub from_start: bool,
    /// How often to look for more data, rotation and truncation at the end of a file.
    pub poll: Duration,
    /// The longest line sent; longer ones are counted as oversize.
    pub max_line: usize,
}

/// Why an input stopped early.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(path: &Path, source: std::io::Error) -> InputError {
    InputError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// True once shutdown was signalled.
fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow()
}

/// Waits for `poll`, or returns early (true) when shutdown is signalled.
async fn pause(poll: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if stopping(shutdown) {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(poll) => stopping(shutdown),
        changed = shutdown.changed() => changed.is_err() || stopping(shutdown),
    }
}

/// Reads `reader` to its end (or until shutdown), line by line.
pub async fn read_stream<R: AsyncRead + Unpin>(
    mut reader: R,
    name: &str,
    max_line: usize,
    sender: &LineSender,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), InputError> {
    let mut splitter = LineSplitter::new(max_line);
    let mut buf = vec![0u8; CHUNK];
    let mut pieces = Vec::new();
    loop {
        if stopping(&shutdown) {
            break;
        }
        let n = tokio::select! {
            read = reader.read(&mut buf) => read.map_err(|e| io_error(Path::new(name), e))?,
            // A dropped shutdown sender means nobody is left to wait for: stop too.
            changed = shutdown.changed() => if changed.is_err() { break } else { continue },
        };
        if n == 0 {
            break;
        }
        splitter.feed(&buf[..n], &mut pieces);
        if sender.send_pieces(&mut pieces, name).await.is_err() {
            return Ok(());
        }
    }
    splitter.finish(&mut pieces);
    let _ = sender.send_pieces(&mut pieces, name).await;
    Ok(())
}

/// The identity of a file: device and inode.
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// An open file being followed.
struct Open {
    file: tokio::fs::File,
    identity: (u64, u64),
    position: u64,
}

async fn open(path: &Path, at_end: bool) -> std::io::Result<Open> {
    let mut file = tokio::fs::File::open(path).await?;
    let meta = file.metadata().await?;
    let position = if at_end {
        file.seek(std::io::SeekFrom::End(0)).await?
    } else {
        0
    };
    Ok(Open {
        file,
        identity: identity(&meta),
        position,
    })
}

/// Splits what one file yields into lines and hands them on.
struct LineReader<'a> {
    path: &'a Path,
    name: String,
    sender: &'a LineSender,
    splitter: LineSplitter,
    pieces: Vec<Piece>,
    buf: Vec<u8>,
}

impl<'a> LineReader<'a> {
    fn new(path: &'a Path, max_line: usize, sender: &'a LineSender) -> Self {
        Self {
            path,
            name: path.display().to_string(),
            sender,
            splitter: LineSplitter::new(max_line),
            pieces: Vec::new(),
            buf: vec![0u8; CHUNK],
        }
    }

    /// Reads what `open` has up to its current end. `Ok(Err(PipelineClosed))` when the
    /// pipeline is gone, `Ok(Ok(true))` when shutdown interrupted the read.
    async fn drain(
        &mut self,
        open: &mut Open,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Result<bool, PipelineClosed>, InputError> {
        loop {
            if stopping(shutdown) {
                return Ok(Ok(true));
            }
            let n = open
                .file
                .read(&mut self.buf)
                .await
                .map_err(|e| io_error(self.path, e))?;
            if n == 0 {
                return Ok(Ok(false));
            }
            open.position += n as u64;
            self.splitter.feed(&self.buf[..n], &mut self.pieces);
            if let Err(closed) = self.sender.send_pieces(&mut self.pieces, &self.name).await {
                return Ok(Err(closed));
            }
        }
    }

    /// Sends a last line that has no newline (end of a file).
    async fn finish_line(&mut self) -> Result<(), PipelineClosed> {
        self.splitter.finish(&mut self.pieces);
        self.sender.send_pieces(&mut self.pieces, &self.name).await
    }
}

/// Follows `path` as `tail -F` does (or reads it once without `follow`), until shutdown.
pub async fn follow_file(
    path: PathBuf,
    options: FollowOptions,
    sender: LineSender,
    shutdown: watch::Receiver<bool>,
) -> Result<(), InputError> {
    FileFollower::open(path, options)
        .await?
        .run(sender, shutdown)
        .await
}

/// A file opened (or found missing) for following: [`FileFollower::open`] decides where
/// reading starts, [`FileFollower::run`] reads.
#[derive(Debug)]
pub struct FileFollower {
    path: PathBuf,
    options: FollowOptions,
    /// `None` while the file does not exist yet (following only).
    current: Option<Open>,
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Open")
            .field("identity", &self.identity)
            .field("position", &self.position)
            .finish()
    }
}

impl FileFollower {
    /// Opens `path`: at its end when following (unless `from_start`), at its beginning
    /// otherwise. A missing file is an error unless following, which waits for it.
    pub async fn open(path: PathBuf, options: FollowOptions) -> Result<Self, InputError> {
        let current = match open(&path, options.follow && !options.from_start).await {
            Ok(open) => Some(open),
            Err(e) if options.follow && e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(path = %path.display(), "waiting for the file to appear");
                None
            }
            Err(e) => return Err(io_error(&path, e)),
        };
        Ok(Self {
            path,
            options,
            current,
        })
    }

    /// Reads until the end (without follow) or until shutdown.
    pub async fn run(
        self,
        sender: LineSender,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), InputError> {
        let Self {
            path,
            options,
            current,
        } = self;
        let mut current = match current {
            Some(open) => open,
            None => loop {
                if pause(options.poll, &mut shutdown).await {
                    return Ok(());
                }
                match open(&path, false).await {
                    Ok(open) => break open,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(&path, e)),
                }
            },
        };
        let mut reader = LineReader::new(&path, options.max_line, &sender);
        follow_open(&mut reader, options, &mut current, &mut shutdown).await?;
        let _ = reader.finish_line().await;
        Ok(())
    }
}

/// The reading loop of [`FileFollower::run`]; returns when reading is over.
async fn follow_open(
    reader: &mut LineReader<'_>,
    options: FollowOptions,
    current: &mut Open,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), InputError> {
    let path = reader.path;
    loop {
        match reader.drain(current, shutdown).await? {
            Err(PipelineClosed) | Ok(true) => return Ok(()),
            Ok(false) => {}
        }
        if !options.follow {
            return Ok(());
        }
        // At the end of the file: rotated, truncated, or just nothing new yet?
        match tokio::fs::metadata(path).await {
            Ok(meta) if identity(&meta) != current.identity => {
                // Rotated. The old file may have grown since the read above: finish it.
                if let Err(PipelineClosed) = reader.drain(current, shutdown).await? {
                    return Ok(());
                }
                if reader.finish_line().await.is_err() {
                    return Ok(());
                }
                match open(path, false).await {
                    Ok(next) => {
                        tracing::info!(path = %reader.name, "file rotated: following the new file");
                        *current = next;
                        continue;
                    }
                    // Gone again between the stat and the open: look again later.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(path, e)),
                }
            }
            Ok(meta) if meta.len() < current.position => {
                tracing::warn!(
                    path = %reader.name,
                    was = current.position,
                    now = meta.len(),
                    "file truncated: reading it again from the beginning"
                );
                current
                    .file
                    .seek(std::io::SeekFrom::Start(0))
                    .await
                    .map_err(|e| io_error(path, e))?;
                current.position = 0;
                reader.splitter.clear();
                continue;
            }
            // Unchanged, or moved away with no successor yet: keep the old file.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(path, e)),
        }
        if pause(options.poll, shutdown).await {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::budget::Budget;
    use crate::agent::counters::Counters;
    use crate::agent::lines::Line;
    use std::io::Write as _;
    use std::sync::Arc;
    use tokio::sync::mpsc;

    /// Generous: only reached when a line never arrives (the test then fails, not hangs).
    const PATIENCE: Duration = Duration::from_secs(20);

    struct Follower {
        rx: mpsc::Receiver<Line>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<Result<(), InputError>>,
    }

    impl Follower {
        /// Opens the file (deciding where reading starts) before returning, then reads in a
        /// task.
        async fn start(path: &Path, from_start: bool) -> anyhow::Result<Self> {
            let (tx, rx) = mpsc::channel(1024);
            let sender = LineSender::new(tx, Budget::new(1 << 20), Arc::new(Counters::default()));
            let (stop, shutdown) = watch::channel(false);
            let options = FollowOptions {
                follow: true,
                from_start,
                poll: Duration::from_millis(10),
                max_line: 1 << 20,
            };
            let follower = FileFollower::open(path.to_owned(), options).await?;
            let task = tokio::spawn(follower.run(sender, shutdown));
            Ok(Self { rx, stop, task })
        }

        async fn next(&mut self) -> anyhow::Result<String> {
            let line = tokio::time::timeout(PATIENCE, self.rx.recv())
                .await
                .map_err(|_| anyhow::anyhow!("no line within {PATIENCE:?}"))?
                .ok_or_else(|| anyhow::anyhow!("the follower stopped"))?;
            Ok(String::from_utf8(line.data)?)
        }

        async fn lines(&mut self, n: usize) -> anyhow::Result<Vec<String>> {
            let mut out = Vec::new();
            for _ in 0..n {
                out.push(self.next().await?);
            }
            Ok(out)
        }

        async fn stop(self) -> anyhow::Result<Vec<String>> {
            let _ = self.stop.send(true);
            self.task.await??;
            let mut rx = self.rx;
            let mut rest = Vec::new();
            while let Some(line) = rx.recv().await {
                rest.push(String::from_utf8(line.data)?);
            }
            Ok(rest)
        }
    }

    fn append(path: &Path, text: &str) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    }

    #[tokio::test]
    async fn starts_at_the_end_of_an_existing_file_unless_from_start() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("app.log");
        append(&path, "old 1\nold 2\n")?;
        let mut tail = Follower::start(&path, false).await?;
        append(&path, "new\n")?;
        assert_eq!(tail.next().await?, "new");
        assert!(tail.stop().await?.is_empty());

        let mut head = Follower::start(&path, true).await?;
        assert_eq!(head.lines(3).await?, vec!["old 1", "old 2", "new"]);
        assert!(head.stop().await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn follows_a_file_across_rotation_without_losing_what_was_written_to_the_old_one()
    -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("app.log");
        append(&path, "a\n")?;
        let mut tail = Follower::start(&path, true).await?;
        assert_eq!(tail.next().await?, "a");

        // logrotate's default: rename, the writer still appends to the old file for a while,
        // then a new file appears under the name.
        let rotated = dir.path().join("app.log.1");
        std::fs::rename(&path, &rotated)?;
        append(&rotated, "b written to the old file\n")?;
        append(&path, "c in the new file\nd\n")?;
        assert_eq!(
            tail.lines(3).await?,
            vec!["b written to the old file", "c in the new file", "d"]
        );
        append(&path, "e\n")?;
        assert_eq!(tail.next().await?, "e");
        assert!(tail.stop().await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn starts_again_from_the_beginning_when_the_file_is_truncated() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("app.log");
        append(&path, "first line, quite long\nsecond line, quite long\n")?;
        let mut tail = Follower::start(&path, true).await?;
        assert_eq!(tail.lines(2).await?.len(), 2);

        // copytruncate: same inode, emptied, then written again (shorter than before).
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)?
            .set_len(0)?;
        // Shorter than the position read, so the follower notices whether it looks before or
        // after the new lines are written.
        append(&path, "x\ny\n")?;
        assert_eq!(tail.lines(2).await?, vec!["x", "y"]);
        assert!(tail.stop().await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn waits_for_a_file_that_does_not_exist_yet_and_reads_it_from_the_beginning()
    -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("later.log");
        let mut tail = Follower::start(&path, false).await?;
        append(&path, "hello\n")?;
        assert_eq!(tail.next().await?, "hello");
        assert!(tail.stop().await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn a_last_line_without_newline_is_sent_when_the_agent_stops() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("app.log");
        append(&path, "one\ntwo without newline")?;
        let mut tail = Follower::start(&path, true).await?;
        assert_eq!(tail.next().await?, "one");
        assert_eq!(tail.stop().await?, vec!["two without newline"]);
        Ok(())
    }

    #[tokio::test]
    async fn without_follow_a_file_is_read_once_to_its_end() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("app.log");
        append(&path, "1\n2\n3")?;
        let (tx, mut rx) = mpsc::channel(16);
        let sender = LineSender::new(tx, Budget::new(1 << 20), Arc::new(Counters::default()));
        let (_stop, shutdown) = watch::channel(false);
        let options = FollowOptions {
            follow: false,
            from_start: false,
            poll: Duration::from_millis(10),
            max_line: 100,
        };
        follow_file(path, options, sender, shutdown).await?;
        let mut got = Vec::new();
        while let Some(line) = rx.recv().await {
            got.push(String::from_utf8(line.data)?);
        }
        assert_eq!(got, vec!["1", "2", "3"]);
        Ok(())
    }
}
